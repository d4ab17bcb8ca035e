//! A small W3C WebDriver client for end-to-end tests of web pages: Debian's headless
//! Chromium (`chromium`) driven through `chromedriver` (`chromium-driver`), both started on
//! loopback for a test and killed when dropped.
//!
//! [`Browser::start`] spawns `chromedriver` in its own process group on a [`free_port`],
//! opens a session with a scratch profile, and on drop deletes the session and kills the
//! group (the driver and every Chromium process it started). Every WebDriver error becomes
//! a panic naming the command and the driver's message; [`Browser::wait_for`] is bounded
//! and saves a screenshot under [`artefacts_dir`] when it gives up.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::guard::Scratch;
use crate::servers::free_port;

/// How long `chromedriver` may take to report ready.
const DRIVER_READY: Duration = Duration::from_secs(20);

/// Bound on any single WebDriver request (page loads and scripts are bounded below it).
const REQUEST: Duration = Duration::from_secs(60);

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where a test's artefacts (screenshots) go: `$HYDRANT_ARTEFACTS/<test>` when that
/// variable is set, else `<workspace>/target/test-artefacts/<test>`. Created.
pub fn artefacts_dir(test: &str) -> PathBuf {
    let root = std::env::var_os("HYDRANT_ARTEFACTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artefacts"));
    let dir = root.join(test);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create artefacts dir {}: {e}", dir.display()));
    dir
}

/// Whether a script's result counts as true, as JavaScript would (not null, false, 0, "").
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `s` reduced to characters safe in a file name.
fn file_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.trim_matches('-').chars().take(60).collect()
}

/// One entry of the browser's log (console messages, uncaught errors, failed loads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `javascript`, `network`, …
    pub source: String,
    /// The text, prefixed by Chromium with the script location.
    pub message: String,
}

/// A headless Chromium driven over WebDriver; killed (with its driver) when dropped.
#[derive(Debug)]
pub struct Browser {
    /// `http://127.0.0.1:<port>` of chromedriver.
    driver: SocketAddr,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    /// The session id.
    id: String,
    http: reqwest::Client,
    child: Child,
    /// Where screenshots of failed waits go ([`artefacts_dir`] of this name).
    test: String,
    /// The Chromium profile, then chromedriver's log.
    scratch: Scratch,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (window 1366×900, browser logs
    /// on). Panics with the install command when a package is missing.
    pub async fn start() -> Browser {
        let driver_bin = Path::new("/usr/bin/chromedriver");
        assert!(
            driver_bin.exists(),
            "chromedriver is not installed; run `apt-get install -y chromium chromium-driver`"
        );
        assert!(
            Path::new("/usr/bin/chromium").exists(),
            "chromium is not installed; run `apt-get install -y chromium chromium-driver`"
        );
        let scratch = Scratch::new("chromium");
        let log = scratch.join("chromedriver.log");
        let driver = free_port();
        let child = Command::new(driver_bin)
            .arg(format!("--port={}", driver.port()))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .and_then(|n| n.rsplit("::").next())
            .unwrap_or("browser")
            .to_owned();
        let mut browser = Browser {
            driver,
            session: String::new(),
            id: String::new(),
            http: hydrant_runtime::https::plain_client(),
            child,
            test,
            scratch,
        };
        browser.wait_ready().await;
        let profile = browser.scratch.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"pageLoad": 30_000, "script": 30_000, "implicit": 0},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let url = format!("http://{driver}/session");
        let value = match browser.request(Method::POST, &url, Some(caps)).await {
            Ok(v) => v,
            Err(e) => panic!("{e}\nchromedriver log:\n{}", browser.driver_log()),
        };
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: no sessionId in {value}"))
            .to_owned();
        browser.session = format!("http://{driver}/session/{id}");
        browser.id = id;
        browser
    }

    /// Polls `/status` until chromedriver is ready, or panics after [`DRIVER_READY`].
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + DRIVER_READY;
        let url = format!("http://{}/status", self.driver);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromedriver exited ({status}) before ready:\n{}",
                    self.driver_log()
                );
            }
            let ready = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(body) = ready
                && let Ok(v) = body.await
                && v["value"]["ready"] == json!(true)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready after {DRIVER_READY:?}:\n{}",
                self.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of chromedriver's log, for failure messages.
    fn driver_log(&self) -> String {
        let text =
            std::fs::read_to_string(self.scratch.join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// One WebDriver request; the `value` of the answer, or the error naming the command.
    async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let what = format!(
            "webdriver {method} {}",
            url.strip_prefix(&self.session).unwrap_or(url)
        );
        let mut req = self.http.request(method, url).timeout(REQUEST);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("{what}: {e}"))?;
        let mut v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{what}: {status}, not JSON ({e}): {text}"))?;
        let value = v["value"].take();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            // The message repeats the error and ends with "(Session info: …)"; the stack
            // trace is noise.
            let message = value["message"].as_str().unwrap_or_default().trim();
            let message = message.strip_prefix(error).unwrap_or(message);
            let message = message.trim_start_matches(':').trim_start();
            return Err(format!("{what}: {error}: {message}"));
        }
        if !status.is_success() {
            return Err(format!("{what}: {status}: {text}"));
        }
        Ok(value)
    }

    /// A command of this session (`path` after `/session/<id>`); panics on any error.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        self.request(method, &url, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The URL of the current page.
    pub async fn current_url(&self) -> String {
        let v = self.cmd(Method::GET, "/url", None).await;
        v.as_str()
            .unwrap_or_else(|| panic!("current url: not a string: {v}"))
            .to_owned()
    }

    /// Runs `script` as a function body (`arguments[i]` are `args`; `return` gives the
    /// result) and returns its result. A thrown exception panics.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script` with a callback appended to `args` (`arguments[arguments.length - 1]`)
    /// and returns what it passes to the callback (bounded by the 30 s script timeout).
    pub async fn eval_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script` (as [`Browser::eval`]) every 100 ms until its result is truthy (not
    /// null, false, 0 or ""), and returns that result. After `timeout`, saves a screenshot
    /// and panics with `what`, the last result and the screenshot's path.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(script, Vec::new()).await;
            if truthy(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                let path = artefacts_dir(&self.test).join(format!("wait-{}.png", file_safe(what)));
                let shot = match self.try_screenshot(&path).await {
                    Ok(()) => path.display().to_string(),
                    Err(e) => format!("(no screenshot: {e})"),
                };
                panic!(
                    "timed out after {timeout:?} waiting for: {what}; last value {v}; screenshot {shot}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching the CSS selector `css`; panics when there is none.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let id = v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: no element reference in {v}"))
            .to_owned();
        Element { browser: self, id }
    }

    /// Saves a PNG screenshot of the viewport to `path` (creating its directory).
    pub async fn screenshot(&self, path: &Path) {
        self.try_screenshot(path)
            .await
            .unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
    }

    async fn try_screenshot(&self, path: &Path) -> Result<(), String> {
        let url = format!("{}/screenshot", self.session);
        let v = self.request(Method::GET, &url, None).await?;
        let b64 = v.as_str().ok_or_else(|| format!("not a string: {v}"))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("base64: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// Resizes the window to `width`×`height` CSS pixels.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// The browser log entries since the last call (console messages, uncaught errors,
    /// failed loads), from chromedriver's `/se/log`.
    pub async fn logs(&self) -> Vec<LogEntry> {
        let v = self
            .cmd(Method::POST, "/se/log", Some(json!({ "type": "browser" })))
            .await;
        let field = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_owned();
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| LogEntry {
                        level: field(e, "level"),
                        source: field(e, "source"),
                        message: field(e, "message"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The page's JavaScript errors since the last [`Browser::logs`] or call of this:
    /// `SEVERE` entries from the console or uncaught exceptions (failed loads, such as a
    /// missing favicon, are left out).
    pub async fn js_errors(&self) -> Vec<String> {
        self.logs()
            .await
            .into_iter()
            .filter(|e| e.level == "SEVERE" && e.source != "network")
            .map(|e| e.message)
            .collect()
    }

    /// Deletes the session over a plain blocking socket (drop cannot await), bounded.
    fn delete_session(&self) {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.driver, Duration::from_secs(1))
        else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        let req = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.id, self.driver
        );
        if s.write_all(req.as_bytes()).is_ok() {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
}

/// Deletes the session (Chromium quits cleanly), then kills chromedriver's process group
/// (whatever is left of Chromium with it) and removes the profile.
impl Drop for Browser {
    fn drop(&mut self) {
        if !self.id.is_empty() && self.child.try_wait().ok().flatten().is_none() {
            self.delete_session();
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An element of the current page, found by [`Browser::find`].
#[derive(Debug)]
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    async fn cmd(&self, method: Method, what: &str, body: Option<Value>) -> Value {
        let path = format!("/element/{}/{what}", self.id);
        self.browser.cmd(method, &path, body).await
    }

    /// Clicks it (scrolled into view; panics if something else would get the click).
    pub async fn click(&self) {
        self.cmd(Method::POST, "click", Some(json!({}))).await;
    }

    /// Its rendered text.
    pub async fn text(&self) -> String {
        let v = self.cmd(Method::GET, "text", None).await;
        v.as_str()
            .unwrap_or_else(|| panic!("element text: not a string: {v}"))
            .to_owned()
    }

    /// Types `text` into it.
    pub async fn send_keys(&self, text: &str) {
        self.cmd(Method::POST, "value", Some(json!({ "text": text })))
            .await;
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) {
        self.cmd(Method::POST, "clear", Some(json!({}))).await;
    }

    /// The reference to pass it to [`Browser::eval`] (arrives there as the DOM element).
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }
}
