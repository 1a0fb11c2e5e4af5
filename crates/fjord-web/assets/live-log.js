// The task page's live log: follows GET /api/tasks/{id}/log (server-sent events) and appends each
// line as it is written; when the task ends, shows its final status and reloads the page for the
// final steps. Without JavaScript the page refreshes itself instead (a <noscript> meta refresh).
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || !window.EventSource) return;
  var status = document.getElementById("task-status");
  var live = document.getElementById("live");
  var after = log.getAttribute("data-after") || "0";
  var url = "/api/tasks/" + encodeURIComponent(log.getAttribute("data-task")) + "/log?after=" + encodeURIComponent(after);

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function time(ms) {
    var d = new Date(ms);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  // Text with its http(s) URLs as links, built from text nodes (never HTML from the log).
  function linked(text) {
    var frag = document.createDocumentFragment();
    var re = /https?:\/\/[^\s<>"']+/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      frag.appendChild(document.createTextNode(text.slice(last, m.index)));
      var a = document.createElement("a");
      a.href = m[0];
      a.textContent = m[0];
      frag.appendChild(a);
      last = m.index + m[0].length;
    }
    frag.appendChild(document.createTextNode(text.slice(last)));
    return frag;
  }
  function setStatus(s) {
    if (!status) return;
    status.textContent = s;
    status.className = "badge s-" + s;
  }

  var empty = document.getElementById("log-empty");
  var source = new EventSource(url);
  if (live) live.textContent = "Following the log live.";
  source.addEventListener("log", function (e) {
    var line = JSON.parse(e.data);
    if (empty) { empty.remove(); empty = null; }
    var li = document.createElement("li");
    li.className = "l-" + line.level + " s-" + line.stream;
    var ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = time(line.ts);
    var text = document.createElement("span");
    text.appendChild(linked(line.text));
    li.appendChild(ts);
    li.appendChild(text);
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(li);
    if (atBottom) log.scrollTop = log.scrollHeight;
    if (status && status.textContent === "queued") setStatus("running");
  });
  source.addEventListener("end", function (e) {
    source.close();
    var task = JSON.parse(e.data);
    setStatus(task.status);
    if (live) live.textContent = "The task has ended: " + task.status + ".";
    // The final steps and the actions that now apply are on the server-rendered page.
    setTimeout(function () { window.location.reload(); }, 1500);
  });
  source.onerror = function () {
    // EventSource reconnects by itself (resuming after the last line it got); say so meanwhile.
    if (live && source.readyState !== EventSource.CLOSED) live.textContent = "Reconnecting to the live log…";
  };
})();
