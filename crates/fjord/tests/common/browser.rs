//! Headless Chromium for end-to-end tests of the web UI: Debian's `chromium`, driven through its
//! `chromedriver` (started here on a free loopback port) with the `fantoccini` WebDriver client.
//!
//! The tests read as a person uses the UI (go to a page, fill a field, press a button, read the page),
//! so [`Browser`] wraps the async client in blocking calls on its own runtime; the rest of the test
//! harness (`common::Fjord`) is blocking too.
#![allow(dead_code, clippy::disallowed_methods)]

use crate::common::Fjord;
use fantoccini::{elements::Element, key::Key, Locator};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page or an element may take to appear.
const WAIT: Duration = Duration::from_secs(60);

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<fantoccini::Client>,
    driver: Child,
    /// Chromium's profile: empty at start, removed on drop.
    _profile: tempfile::TempDir,
    driver_log: PathBuf,
}

/// Restarts `fjord` serve with the UI on a free loopback port (`extra`: more flags, e.g. `--workers 0`)
/// and returns the panel's base URL.
pub fn serve_panel(f: &mut Fjord, extra: &[&str]) -> String {
    let web = crate::common::free_port();
    serve_panel_on(f, web, extra)
}

/// [`serve_panel`] on a given port: a restarted daemon keeps the browser's session cookie (bound to the
/// host and port; the session itself is in the state database).
pub fn serve_panel_on(f: &mut Fjord, web: u16, extra: &[&str]) -> String {
    f.stop();
    let mut flags = vec!["--workers", "4"];
    if extra.contains(&"--workers") {
        flags.clear();
    }
    flags.extend_from_slice(extra);
    f.start_serve_with(&flags, &[("FJORD_LISTEN", &format!("127.0.0.1:{web}"))]);
    format!("http://127.0.0.1:{web}")
}

/// Sets a user's password through the CLI (stdin, never argv).
pub fn set_password(f: &Fjord, user: &str, password: &str) {
    let mut child = f
        .command(&["user", "passwd", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("fjord runs");
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password written");
    assert!(child.wait().expect("fjord exits").success(), "fjord user passwd {user} failed");
}

/// Where screenshots go: `$FJORD_TEST_ARTIFACTS/screenshots`, or `target/test-artifacts/screenshots`
/// in the workspace.
pub fn screenshot_dir() -> PathBuf {
    match std::env::var_os("FJORD_TEST_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir).join("screenshots"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/screenshots"),
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or says why not and returns `None` when
    /// Chromium or chromedriver is not installed (`scripts/test.sh` installs both).
    pub fn start() -> Option<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                eprintln!("skipped: {bin} is missing (apt-get install chromium chromium-driver; scripts/test.sh does)");
                return None;
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let profile = tempfile::tempdir().expect("profile dir");
        let driver_log = profile.path().join("chromedriver.log");
        let port = crate::common::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", driver_log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut b = Browser { rt, client: None, driver, _profile: profile, driver_log };
        let url = format!("http://127.0.0.1:{port}");
        let profile_dir = b._profile.path().join("chromium");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile_dir.display()),
                ],
            },
        });
        let caps = caps.as_object().expect("an object").clone();
        let t0 = Instant::now();
        let client = loop {
            let mut builder = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match b.rt.block_on(builder.connect(&url)) {
                Ok(c) => break c,
                // chromedriver is still starting.
                Err(_) if t0.elapsed() < Duration::from_secs(20) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("no WebDriver session: {e}\n{}", b.driver_log()),
            }
        };
        b.client = Some(client);
        Some(b)
    }

    fn c(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("a session")
    }

    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub fn url(&self) -> String {
        self.rt.block_on(self.c().current_url()).expect("current url").to_string()
    }

    /// The path and query of the current URL.
    pub fn path(&self) -> String {
        let u = self.rt.block_on(self.c().current_url()).expect("current url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits until the current path (and query) satisfies `cond`: a click that submits a form returns
    /// before the next page has always loaded.
    pub fn wait_path(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let p = self.path();
            if cond(&p) {
                return p;
            }
            assert!(t0.elapsed() < WAIT, "timed out waiting for {what}: still on {p}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn source(&self) -> String {
        self.rt.block_on(self.c().source()).expect("page source")
    }

    pub fn title(&self) -> String {
        self.rt.block_on(self.c().title()).expect("title")
    }

    /// The visible text of the whole page.
    pub fn text(&self) -> String {
        self.text_of("body")
    }

    /// Waits for the element `css` and returns its visible text.
    pub fn text_of(&self, css: &str) -> String {
        let t0 = Instant::now();
        loop {
            let e = self.find(css);
            match self.rt.block_on(e.text()) {
                Ok(text) => return text,
                // The page was replaced under us (the task page reloads itself when its task ends).
                Err(_) if t0.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(100)),
                Err(err) => panic!("text of {css}: {err}"),
            }
        }
    }

    /// Waits for the element `css` and returns its attribute `name` (empty when it has none).
    pub fn attr(&self, css: &str, name: &str) -> String {
        let e = self.find(css);
        self.rt.block_on(e.attr(name)).expect("attribute").unwrap_or_default()
    }

    /// Waits for the element `css` to appear.
    pub fn find(&self, css: &str) -> Element {
        self.rt
            .block_on(self.c().wait().at_most(WAIT).for_element(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("no element {css} on {}: {e}\n{}", self.url(), self.text_or_empty()))
    }

    /// Every element matching `css` now (without waiting).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.rt.block_on(self.c().find_all(Locator::Css(css))).expect("find_all")
    }

    pub fn exists(&self, css: &str) -> bool {
        !self.find_all(css).is_empty()
    }

    fn text_or_empty(&self) -> String {
        self.rt.block_on(async { self.c().find(Locator::Css("body")).await?.text().await }).unwrap_or_default()
    }

    /// Replaces the value of the field `css` (an input, textarea or select option text).
    pub fn fill(&self, css: &str, value: &str) {
        let e = self.find(css);
        self.rt
            .block_on(async {
                e.clear().await?;
                e.send_keys(value).await
            })
            .unwrap_or_else(|err| panic!("fill {css}: {err}"));
    }

    /// Picks the option with value `value` in the select `css`.
    pub fn select(&self, css: &str, value: &str) {
        let e = self.find(css);
        self.rt.block_on(e.select_by_value(value)).unwrap_or_else(|err| panic!("select {value} in {css}: {err}"));
    }

    /// Clicks the element `css` (a button submits its form; the next page has loaded when this returns,
    /// as WebDriver waits for navigations it starts).
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.rt.block_on(e.click()).unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    /// Clicks the button or link whose visible text is exactly `text`.
    pub fn click_text(&self, text: &str) {
        let xpath = format!(
            "//*[self::button or self::a or self::input[@type='submit']][normalize-space(.)={q} or @value={q}]",
            q = xpath_literal(text)
        );
        let e =
            self.rt.block_on(self.c().wait().at_most(WAIT).for_element(Locator::XPath(&xpath))).unwrap_or_else(|err| {
                panic!("no button or link {text:?} on {}: {err}\n{}", self.url(), self.text_or_empty())
            });
        self.rt.block_on(e.click()).unwrap_or_else(|err| panic!("click {text:?}: {err}"));
    }

    /// Clicks the element found by `xpath` (e.g. a `<summary>` that opens a form).
    pub fn click_xpath(&self, xpath: &str) {
        let e = self.find_xpath(xpath);
        self.rt.block_on(e.click()).unwrap_or_else(|err| panic!("click {xpath}: {err}"));
    }

    /// Waits for the element found by `xpath` and returns its visible text.
    pub fn xpath_text(&self, xpath: &str) -> String {
        let e = self.find_xpath(xpath);
        self.rt.block_on(e.text()).unwrap_or_else(|err| panic!("text of {xpath}: {err}"))
    }

    /// Moves the focus to the element found by `xpath`, as Tab would, without clicking it.
    pub fn focus_xpath(&self, xpath: &str) {
        let e = self.find_xpath(xpath);
        let arg = serde_json::to_value(&e).expect("an element reference");
        self.rt.block_on(self.c().execute("arguments[0].focus();", vec![arg])).expect("focus");
    }

    fn find_xpath(&self, xpath: &str) -> Element {
        self.rt
            .block_on(self.c().wait().at_most(WAIT).for_element(Locator::XPath(xpath)))
            .unwrap_or_else(|e| panic!("no element {xpath} on {}: {e}\n{}", self.url(), self.text_or_empty()))
    }

    /// Waits until `cond` holds for the page's visible text, re-reading it (without reloading).
    pub fn wait_for_text(&self, what: &str, mut cond: impl FnMut(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let text = self.text_or_empty();
            if cond(&text) {
                return text;
            }
            assert!(t0.elapsed() < WAIT, "timed out waiting for {what} on {}:\n{text}", self.url());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs a script in the page and returns its value.
    pub fn script(&self, js: &str) -> serde_json::Value {
        self.rt.block_on(self.c().execute(js, vec![])).unwrap_or_else(|e| panic!("script {js}: {e}"))
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.rt.block_on(self.c().set_window_size(width, height)).expect("window size");
    }

    /// Logs in through the login form and waits to land on another page.
    pub fn log_in(&self, panel: &str, user: &str, password: &str) {
        self.goto(&format!("{panel}/login"));
        self.fill("#f-name", user);
        self.fill("#f-password", password);
        self.click_text("Log in");
        self.wait_path("a page after the login", |p| !p.starts_with("/login"));
    }

    /// Waits until the task page shows its task finished with `status`, and returns the page's text.
    pub fn wait_task(&self, status: &str) -> String {
        self.wait_path("a task page", |p| p.starts_with("/tasks/"));
        let t0 = Instant::now();
        let got = loop {
            let got = self.text_of("#task-status");
            if ["succeeded", "failed", "cancelled"].contains(&got.as_str()) {
                break got;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "the task did not end: {}", self.text());
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(got, status, "task ended {got}, not {status}:\n{}", self.text());
        self.text()
    }

    /// Types `keys` into whatever has the focus, as a keyboard does (no element is clicked).
    pub fn keys(&self, keys: &str) {
        let e = self.rt.block_on(self.c().active_element()).expect("an active element");
        self.rt.block_on(e.send_keys(keys)).unwrap_or_else(|err| panic!("typing {keys:?}: {err}"));
    }

    /// Presses Tab.
    pub fn tab(&self) {
        self.keys(&char::from(Key::Tab).to_string());
    }

    /// Presses Enter.
    pub fn enter(&self) {
        self.keys(&char::from(Key::Enter).to_string());
    }

    /// What has the focus: its id, or its tag and text when it has none.
    pub fn focused(&self) -> String {
        let v = self.script(
            "const e = document.activeElement; return e.id || (e.tagName.toLowerCase() + ':' + (e.textContent || '').trim());",
        );
        v.as_str().unwrap_or_default().to_string()
    }

    /// Whether the focused element shows the focus ring (an outline or the style's box shadow).
    pub fn focus_visible(&self) -> bool {
        self.script(
            "const s = getComputedStyle(document.activeElement); \
             return document.activeElement.matches(':focus-visible') && (s.boxShadow !== 'none' || (s.outlineStyle !== 'none' && s.outlineWidth !== '0px'));",
        )
        .as_bool()
        .unwrap_or(false)
    }

    /// Asserts that every visible form control of the page has a label (a `<label>`, or `aria-label`),
    /// and every button a name.
    pub fn assert_labelled(&self) {
        let missing = self.script(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')] \
               .filter(e => e.tagName === 'BUTTON' ? !e.textContent.trim() && !e.getAttribute('aria-label') \
                                                   : !(e.labels && e.labels.length) && !e.getAttribute('aria-label')) \
               .map(e => e.outerHTML.slice(0, 120));",
        );
        assert_eq!(missing, serde_json::json!([]), "controls without a label on {}", self.url());
    }

    /// Asserts that the page does not scroll sideways at the current window width.
    pub fn assert_no_horizontal_overflow(&self) {
        let v = self.script("return [document.documentElement.scrollWidth, window.innerWidth];");
        let (scroll, inner) = (v[0].as_u64().unwrap_or(u64::MAX), v[1].as_u64().unwrap_or(0));
        assert!(scroll <= inner, "{} scrolls sideways: {scroll}px wide in a {inner}px window", self.url());
    }

    /// Saves a PNG of the visible page as `NAME.png` in [`screenshot_dir`] and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Saves a PNG of the whole page (as tall as its content, at the current width).
    pub fn screenshot_full(&self, name: &str) -> PathBuf {
        let (w, h) = self.rt.block_on(self.c().get_window_size()).expect("window size");
        let height = self.script("return Math.ceil(document.documentElement.scrollHeight)").as_u64().unwrap_or(h);
        // The window's outer height includes no browser chrome in headless mode.
        self.set_window_size(w as u32, (height as u32).clamp(300, 4000));
        let path = self.screenshot(name);
        self.set_window_size(w as u32, h as u32);
        path
    }
}

/// An XPath string literal for any text (XPath 1.0 has no escapes).
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
