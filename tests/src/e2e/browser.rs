//! The WebDriver client ([`crate::browser`]) drives Debian's headless Chromium: a page
//! served in-process is loaded, typed into, clicked, waited on and photographed.

use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde_json::json;

use crate::browser::{Browser, artefacts_dir};
use crate::listener;

/// A button whose click writes a greeting for the input's value 200 ms later.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Hydrant browser test</title>
<style>
html { height: 100%; }
body { font-family: sans-serif; margin: 2em; background: linear-gradient(#e8f0ff, #fff8e8); }
#out { margin-top: 1em; padding: 1em; border: 2px solid #36c; min-height: 1.5em; }
</style></head>
<body>
<h1>Hydrant</h1>
<input id="name" type="text" placeholder="your name">
<button id="go">Greet</button>
<div id="out"></div>
<script>
document.getElementById('go').addEventListener('click', () => {
  const name = document.getElementById('name').value;
  setTimeout(() => { document.getElementById('out').textContent = 'Hello, ' + name + '!'; }, 200);
});
</script>
</body></html>
"#;

#[tokio::test]
async fn webdriver_drives_headless_chromium() {
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    tokio::spawn(async move { axum::serve(l, app).await });

    let browser = Browser::start().await;
    let url = format!("http://{addr}/");
    browser.goto(&url).await;
    assert_eq!(browser.current_url().await, url);
    assert_eq!(
        browser.eval("return document.title", vec![]).await,
        json!("Hydrant browser test")
    );
    assert_eq!(
        browser
            .eval(
                "return arguments[0] + arguments[1]",
                vec![json!(2), json!(3)]
            )
            .await,
        json!(5)
    );
    assert_eq!(
        browser
            .eval_async(
                "const done = arguments[arguments.length - 1]; setTimeout(() => done(arguments[0] * 2), 50);",
                vec![json!(21)],
            )
            .await,
        json!(42)
    );

    let input = browser.find("#name").await;
    input.send_keys("typo").await;
    input.clear().await;
    input.send_keys("Hydrant").await;
    assert_eq!(
        browser
            .eval("return arguments[0].value", vec![input.as_arg()])
            .await,
        json!("Hydrant")
    );
    browser.find("#go").await.click().await;
    let got = browser
        .wait_for(
            "the greeting",
            "return document.getElementById('out').textContent",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(got, json!("Hello, Hydrant!"));
    assert_eq!(browser.find("#out").await.text().await, "Hello, Hydrant!");

    browser.set_window_size(1024, 768).await;
    assert_eq!(
        browser.eval("return window.outerWidth", vec![]).await,
        json!(1024)
    );
    let shot = artefacts_dir("webdriver_drives_headless_chromium").join("greeting.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("read the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    assert!(png.len() > 1024, "screenshot only {} bytes", png.len());
    assert_eq!(browser.js_errors().await, Vec::<String>::new());
}
