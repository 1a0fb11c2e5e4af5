//! The UI's templates and assets, embedded in the binary: minijinja templates under
//! `templates/ui/` (HTML auto-escaped by their `.html` names) and the hand-written CSS and JS under
//! `assets/`. The filters here format what the pages show (times, sizes, counts, log links).

use fjord_core::Millis;
use minijinja::{Environment, Value};
use sha2::Digest as _;
use std::sync::OnceLock;

/// Every template, by name, with its text.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/ui/base.html")),
    ("macros.html", include_str!("../../templates/ui/macros.html")),
    ("login.html", include_str!("../../templates/ui/login.html")),
    ("account.html", include_str!("../../templates/ui/account.html")),
    ("error.html", include_str!("../../templates/ui/error.html")),
    ("dashboard.html", include_str!("../../templates/ui/dashboard.html")),
    ("sites.html", include_str!("../../templates/ui/sites.html")),
    ("site.html", include_str!("../../templates/ui/site.html")),
    ("site_new.html", include_str!("../../templates/ui/site_new.html")),
    ("site_settings.html", include_str!("../../templates/ui/site_settings.html")),
    ("tasks.html", include_str!("../../templates/ui/tasks.html")),
    ("task.html", include_str!("../../templates/ui/task.html")),
    ("platforms.html", include_str!("../../templates/ui/platforms.html")),
    ("platform.html", include_str!("../../templates/ui/platform.html")),
    ("servers.html", include_str!("../../templates/ui/servers.html")),
    ("server.html", include_str!("../../templates/ui/server.html")),
    ("clients.html", include_str!("../../templates/ui/clients.html")),
    ("users.html", include_str!("../../templates/ui/users.html")),
];

/// A static file the UI serves under `/ui/assets/`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const ASSETS: &[Asset] = &[
    Asset { name: "style.css", content_type: "text/css; charset=utf-8", body: include_str!("../../assets/style.css") },
    Asset {
        name: "live-log.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/live-log.js"),
    },
];

/// A short hash of all assets, put in their URLs (`?v=`) so a new binary's CSS is never stale.
pub fn asset_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h = sha2::Sha256::new();
        for a in ASSETS {
            h.update(a.body.as_bytes());
        }
        hex::encode(&h.finalize()[..5])
    })
}

/// The template environment, built once.
pub fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source).unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
        }
        env.add_filter("when", |ms: Option<i64>| ms.map(when).unwrap_or_else(|| "—".into()));
        env.add_filter("iso", |ms: Option<i64>| ms.map(iso).unwrap_or_default());
        env.add_filter("clock", |ms: i64| iso(ms)[11..19].to_string());
        env.add_filter("bytes", |n: i64| bytes(n));
        env.add_filter("num", |n: i64| num(n));
        env.add_filter("duration", |secs: i64| duration(secs));
        env.add_filter("ms", |ms: i64| elapsed(ms));
        env.add_filter("linkify", |text: &str| Value::from_safe_string(linkify(text)));
        env
    })
}

/// `2026-11-26T15:40:07Z` (the stamp's digits rearranged; the calendar math lives in fjord-core).
pub fn iso(ms: Millis) -> String {
    let s = fjord_core::backups::backup_stamp(ms);
    format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15])
}

/// `2026-11-26 15:40 UTC`.
pub fn when(ms: Millis) -> String {
    let i = iso(ms);
    format!("{} {} UTC", &i[0..10], &i[11..16])
}

pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n.max(0) as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// `12,345`.
pub fn num(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        // A comma before each group of three digits counted from the right.
        if i > 0 && (digits.len() - i) / 3 * 3 == digits.len() - i {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// `1 h`, `15 min`, `1 day`, `90 s`.
/// A step's or a task's run time: `840 ms`, `2.4 s`.
pub fn millis(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

pub fn duration(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 && s >= 86_400 => plural(s / 86_400, "day"),
        s if s % 3600 == 0 && s >= 3600 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn plural(n: i64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A task's run time: `850 ms`, `12.3 s`, `4 min 5 s`.
pub fn elapsed(ms: i64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// HTML of a log line: escaped, with its http(s) URLs as links (one-time login links, sites).
pub fn linkify(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = ["http://", "https://"].iter().filter_map(|p| rest.find(p)).min() {
        out.push_str(&escape(&rest[..start]));
        let url_len =
            rest[start..].find(|c: char| c.is_whitespace() || "<>\"'".contains(c)).unwrap_or(rest.len() - start);
        let url = escape(&rest[start..start + url_len]);
        out.push_str(&format!("<a href=\"{url}\">{url}</a>"));
        rest = &rest[start + url_len..];
    }
    out.push_str(&escape(rest));
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            env().get_template(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn formats() {
        assert_eq!(iso(1_795_005_000_000), "2026-11-18T12:30:00Z");
        assert_eq!(when(1_795_005_000_000), "2026-11-18 12:30 UTC");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(50 * 1024 * 1024), "50 MB");
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(num(-1000), "-1,000");
        assert_eq!(num(999), "999");
        assert_eq!(duration(3600), "1 h");
        assert_eq!(duration(86_400), "1 day");
        assert_eq!(duration(90), "90 s");
        assert_eq!(elapsed(12_345), "12.3 s");
    }

    #[test]
    fn log_links_are_escaped_links() {
        assert_eq!(
            linkify("login: http://a.example/user/reset/1?x=1&y=<2> done"),
            "login: <a href=\"http://a.example/user/reset/1?x=1&amp;y=\">http://a.example/user/reset/1?x=1&amp;y=</a>&lt;2&gt; done"
        );
        assert_eq!(linkify("<b>no links</b>"), "&lt;b&gt;no links&lt;/b&gt;");
        assert_eq!(
            linkify("javascript:alert(1) https://x.example"),
            "javascript:alert(1) <a href=\"https://x.example\">https://x.example</a>"
        );
    }
}
