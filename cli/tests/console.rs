//! The management console (`GET /`): its session cookie over real HTTP (reads only, refused
//! for anything that acts, the token never echoed), and the page itself in a real browser:
//! Debian's `chromium` driven through `chromedriver` (WebDriver, the `fantoccini` client).
//!
//! The browser test opens the console, signs in with the token, sees a mixer created through
//! the API with a snapshot that changes, tries to delete its file while it records (the
//! server's 409 shown), stops it from the page, finds its recording, plays it in the page
//! (`currentTime` advances, `videoWidth` is the recording's width, no media error), seeks to the
//! middle, downloads it (the bytes equal the file: through Chrome's downloads and through a
//! `fetch` of the link), and deletes it (gone from the list and from disk). It saves screenshots
//! (live view, recordings, a 390 × 844 phone window) to `target/console-gallery/`, and to
//! `docs/gallery/` with `CLOUDMIXER_GALLERY=1`.
//!
//! Where chromium or chromedriver cannot start the test says why and passes, unless
//! `CLOUDMIXER_REQUIRE_BROWSER=1` (CI sets it): then it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

#[path = "common/browser.rs"]
mod browser_kit;
mod common;
use browser_kit::{chromium, Driver};
use common::{header, ROOT, TOKEN};

fn dir(name: &str) -> PathBuf {
    common::test_dir("console", name)
}

/// A running `cloudmixer serve` with a token, storage `d/rec`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    storage: PathBuf,
    agent: ureq::Agent,
}

impl Server {
    fn start(d: &Path) -> Server {
        Server::start_with(d, true)
    }

    /// With the token, or without one (loopback, no auth).
    fn start_with(d: &Path, token: bool) -> Server {
        let (child, base) = common::spawn_serve(d, token, &[], Stdio::null());
        Server {
            child,
            base,
            storage: d.join("rec"),
            agent: common::agent(),
        }
    }

    /// (status, headers (lowercase name, value), body) of a request with the given headers.
    fn call(
        &self,
        method: &str,
        path: &str,
        hdrs: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Vec<(String, String)>, String) {
        let url = format!("{}{path}", self.base);
        macro_rules! with_headers {
            ($r:expr) => {{
                let mut r = $r;
                for (k, v) in hdrs {
                    r = r.header(*k, *v);
                }
                r
            }};
        }
        let resp = match method {
            "GET" => with_headers!(self.agent.get(&url)).call(),
            "HEAD" => with_headers!(self.agent.head(&url)).call(),
            "DELETE" => with_headers!(self.agent.delete(&url)).call(),
            "POST" => match body {
                Some(b) => with_headers!(self.agent.post(&url)).send_json(b),
                None => with_headers!(self.agent.post(&url)).send_empty(),
            },
            m => panic!("method {m}"),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let h = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let st = resp.status().as_u16();
        (st, h, resp.body_mut().read_to_string().unwrap_or_default())
    }

    fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let (st, _, b) = self.call(method, path, &[("Authorization", &auth)], body);
        (st, serde_json::from_str(&b).unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The session cookie over HTTP: it authenticates reads (GET/HEAD) and nothing else; a wrong
/// or closed session is 401; the page and its assets are public, with their security headers;
/// the token is never in any answer.
#[test]
fn session_cookie_is_for_reads_only() {
    let d = dir("session");
    let s = Server::start(&d);
    let mut seen = String::new();
    let mut note = |h: &[(String, String)], b: &str| {
        for (k, v) in h {
            seen.push_str(&format!("{k}: {v}\n"));
        }
        seen.push_str(b);
    };

    // the page and its assets: public, strict policy, revalidated by ETag
    for (path, ctype) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/style.css", "text/css"),
    ] {
        let (st, h, b) = s.call("GET", path, &[], None);
        assert_eq!(st, 200, "{path}");
        assert!(
            header(&h, "content-type").starts_with(ctype),
            "{path}: {h:?}"
        );
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        let csp = header(&h, "content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        let etag = header(&h, "etag").to_string();
        assert!(!etag.is_empty());
        let (st, _, b2) = s.call("GET", path, &[("If-None-Match", &etag)], None);
        assert_eq!((st, b2.as_str()), (304, ""), "{path}");
        note(&h, &b);
    }

    // no token, no data; a session needs the token
    let (st, h, b) = s.call("GET", "/v1/mixers", &[], None);
    assert_eq!(st, 401, "{b}");
    note(&h, &b);
    let (st, h, b) = s.call("POST", "/v1/session", &[], None);
    assert_eq!(st, 401, "{b}");
    note(&h, &b);
    let (st, h, b) = s.call(
        "POST",
        "/v1/session",
        &[("Authorization", "Bearer wrong-token-0123456789")],
        None,
    );
    assert_eq!(st, 401, "{b}");
    note(&h, &b);
    let auth = format!("Bearer {TOKEN}");
    let (st, h, b) = s.call("POST", "/v1/session", &[("Authorization", &auth)], None);
    assert_eq!(st, 204, "{b}");
    let set = header(&h, "set-cookie").to_string();
    note(&h, &b);
    let id = set
        .strip_prefix("cm_session=")
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("set-cookie {set:?}"))
        .to_string();
    assert_eq!(id.len(), 64, "{set}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = format!("theme=dark; cm_session={id}");
    let ck = [("Cookie", cookie.as_str())];

    // reads with the cookie
    for path in ["/v1/mixers", "/v1/recordings", "/metrics", "/readyz"] {
        let (st, h, b) = s.call("GET", path, &ck, None);
        assert_eq!(st, 200, "GET {path}: {b}");
        note(&h, &b);
    }
    let (st, _, _) = s.call("HEAD", "/v1/mixers", &ck, None);
    assert_eq!(st, 200);

    // a file to try to delete, and a mixer body to try to create, with the cookie alone
    std::fs::copy(
        format!("{ROOT}/fixtures/clips/cam8_480x270_30.mp4"),
        s.storage.join("keep.mp4"),
    )
    .unwrap();
    let body = json!({"mixerID": "forged", "mode": 0, "inputs": {"Usr1.-1": "cam8_480x270_30.mp4"},
        "videoFileCfg": {"svrPathName": "/forged.mp4", "vWidth": 160, "vHeight": 120, "vFps": 15,
        "layoutConfig": [{"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"Usr1.-1"}}]}});
    let (st, h, b) = s.call("POST", "/v1/mixers", &ck, Some(&body));
    assert_eq!(st, 401, "POST with a cookie: {b}");
    assert!(b.contains("reads only"), "{b}");
    note(&h, &b);
    for (m, path) in [
        ("DELETE", "/v1/recordings/keep.mp4"),
        ("DELETE", "/v1/mixers/forged"),
        ("POST", "/v1/mixers/forged/content"),
        ("POST", "/v1/session"),
        ("DELETE", "/v1/session"),
    ] {
        let (st, h, b) = s.call(m, path, &ck, None);
        assert_eq!(st, 401, "{m} {path} with a cookie: {b}");
        note(&h, &b);
    }
    assert!(s.storage.join("keep.mp4").exists());
    assert_eq!(s.api("GET", "/v1/mixers", None).1["mixers"], json!([]));

    // a wrong or malformed cookie
    let other = "0".repeat(64);
    for bad in [
        format!("cm_session={other}"),
        "cm_session=".to_string(),
        format!("cm_session={}", &id[..63]),
        format!("cm_session={id}x"),
        format!("x_cm_session={id}"),
    ] {
        let (st, h, b) = s.call("GET", "/v1/mixers", &[("Cookie", &bad)], None);
        assert_eq!(st, 401, "{bad}: {b}");
        note(&h, &b);
    }

    // sign out: the cookie is cleared and no longer works
    let (st, h, b) = s.call(
        "DELETE",
        "/v1/session",
        &[("Authorization", &auth), ("Cookie", &cookie)],
        None,
    );
    assert_eq!(st, 204, "{b}");
    assert!(header(&h, "set-cookie").contains("Max-Age=0"), "{h:?}");
    note(&h, &b);
    let (st, _, _) = s.call("GET", "/v1/mixers", &ck, None);
    assert_eq!(st, 401);

    assert!(!seen.contains(TOKEN), "the token was echoed:\n{seen}");
    drop(s);

    // without a token (loopback): no session needed, none made; everything answers
    let s = Server::start_with(&dir("open"), false);
    let (st, h, b) = s.call("POST", "/v1/session", &[], None);
    assert_eq!(st, 204, "{b}");
    assert_eq!(header(&h, "set-cookie"), "", "{h:?}");
    let (st, _, b) = s.call("GET", "/v1/mixers", &[], None);
    assert_eq!(st, 200, "{b}");
    let (st, _, _) = s.call("GET", "/", &[], None);
    assert_eq!(st, 200);
    // ...but only from this machine's own pages: a rebound DNS name or another site's page is
    // refused before anything happens (sent raw: the client library sets Host itself)
    let addr = s.base.trim_start_matches("http://").to_string();
    let raw = |req: String| -> String {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(&addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = t.read_to_string(&mut out);
        out
    };
    let body = r#"{"mixerID":"evil","mode":0}"#;
    for (host, origin, want) in [
        ("evil.example:80", None, "403"),
        ("127.0.0.1.nip.io", None, "403"),
        (addr.as_str(), Some("http://evil.example"), "403"),
        (addr.as_str(), Some("null"), "403"),
        ("localhost", None, "400"),
        (
            addr.as_str(),
            Some(format!("http://{addr}").as_str()),
            "400",
        ),
    ] {
        let o = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        let r = raw(format!(
            "POST /v1/mixers HTTP/1.1\r\nHost: {host}\r\n{o}Content-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        let status = r.split(' ').nth(1).unwrap_or("");
        assert_eq!(status, want, "Host {host} Origin {origin:?}: {r}");
        if want == "403" {
            assert!(r.contains("\"code\":5"), "{r}");
        }
    }
    let (st, v) = s.api("GET", "/v1/mixers/evil", None);
    assert_eq!(st, 404, "no mixer was made: {v}");
}

// ---- the browser ----------------------------------------------------------------------------

/// A headless chromium for the console: a desktop-sized window, downloads into `downloads`.
async fn browser(downloads: &Path) -> Result<(Driver, Client), String> {
    let args = [
        "--window-size=1280,900",
        "--mute-audio",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ]
    .map(String::from);
    let prefs = json!({
        "download.default_directory": downloads,
        "download.prompt_for_download": false,
        "download.directory_upgrade": true,
        "safebrowsing.enabled": false
    });
    chromium(&args, prefs).await
}

/// Runs `script` (a function body returning a value) every 200 ms until the value is neither
/// null nor false, for at most `secs`.
async fn wait_js(c: &Client, script: &str, secs: u64, what: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let last = match c.execute(script, vec![]).await {
            Ok(v) if !v.is_null() && v != Value::Bool(false) => return v,
            Ok(v) => v,
            Err(e) => Value::String(format!("script error: {e}")),
        };
        if t0.elapsed() > Duration::from_secs(secs) {
            let page = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            panic!("{what}: not within {secs} s (last: {last})\npage text:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

fn gallery_dirs() -> Vec<PathBuf> {
    let mut v = vec![Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-gallery")];
    if std::env::var("CLOUDMIXER_GALLERY").as_deref() == Ok("1") {
        v.push(Path::new(ROOT).join("docs/gallery"));
    }
    v
}

/// The page's viewport made `w` × `h` CSS pixels (the window is larger by its frame).
async fn viewport(c: &Client, w: u32, h: u32) {
    c.set_window_size(w, h).await.unwrap();
    let inner = c
        .execute("return [innerWidth, innerHeight]", vec![])
        .await
        .unwrap();
    let (iw, ih) = (
        inner[0].as_u64().unwrap_or(0),
        inner[1].as_u64().unwrap_or(0),
    );
    if (iw, ih) != (w as u64, h as u64) && iw > 0 && ih > 0 {
        let ww = (2 * w as u64).saturating_sub(iw) as u32;
        let wh = (2 * h as u64).saturating_sub(ih) as u32;
        c.set_window_size(ww, wh).await.unwrap();
    }
}

/// A screenshot of the window without the transient message (if one is up), to
/// `target/console-gallery/` (and `docs/gallery/` with `CLOUDMIXER_GALLERY=1`, `docs`).
async fn screenshot(c: &Client, name: &str) {
    shot(c, name, true).await
}

async fn shot(c: &Client, name: &str, docs: bool) {
    c.execute(
        "document.getElementById('toast').hidden = true; window.scrollTo(0, 0)",
        vec![],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    for d in gallery_dirs().into_iter().take(if docs { 2 } else { 1 }) {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), &png).unwrap();
    }
}

/// The pixels of the mixer's snapshot `<img>` as the page shows them: size and a digest.
const SNAP_DIGEST: &str = r#"
    const img = document.querySelector('.mixer[data-id="console1"] img.snap');
    if (!img || !img.complete || !img.naturalWidth) return null;
    const cv = document.createElement('canvas');
    cv.width = img.naturalWidth; cv.height = img.naturalHeight;
    const g = cv.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, cv.width, cv.height).data;
    let h = 2166136261;
    for (let i = 0; i < d.length; i += 4) { h = Math.imul(h ^ d[i] ^ (d[i + 1] << 8), 16777619); }
    return {w: img.naturalWidth, h: img.naturalHeight, digest: h >>> 0, src: img.src};
"#;

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let s: Vec<u8> = s.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

fn mixer_body(id: &str, w: u32, h: u32, inputs: &[(&str, &str)]) -> Value {
    let n = inputs.len() as u32;
    let layout: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (cam, _))| {
            json!({"type": 0, "left": i as u32 * w / n, "top": 0, "width": w / n, "height": h,
                   "param": {"camid": cam}})
        })
        .collect();
    let ins: serde_json::Map<String, Value> = inputs
        .iter()
        .map(|(cam, f)| (cam.to_string(), Value::from(*f)))
        .collect();
    json!({"mixerID": id, "mode": 0, "inputs": ins,
        "videoFileCfg": {"svrPathName": format!("/{id}.mp4"), "vWidth": w, "vHeight": h,
                         "vFps": 15, "layoutConfig": layout}})
}

/// The Done-means sequence of the console in chromium.
#[test]
fn console_in_a_real_browser() {
    let required = std::env::var("CLOUDMIXER_REQUIRE_BROWSER").as_deref() == Ok("1");
    let d = dir("browser");
    let downloads = d.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let s = Server::start(&d);
    // recordings the service did not make (probed: duration, size, codecs), for the list
    for (rel, clip, age_h) in [
        ("2026/lobby/cam9.mkv", "cam9_320x240_15.mkv", 30),
        ("archive/cam8.mp4", "cam8_480x270_30.mp4", 80),
    ] {
        let p = s.storage.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(format!("{ROOT}/fixtures/clips/{clip}"), &p).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(age_h * 3600))
            .unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let started = rt.block_on(browser(&downloads));
    let (driver, c) = match started {
        Ok(x) => x,
        Err(why) if required => panic!("CLOUDMIXER_REQUIRE_BROWSER=1 and no browser: {why}"),
        Err(why) => {
            eprintln!("skipping the console's browser test: {why}");
            return;
        }
    };
    let res = rt.block_on(async {
        // the whole sequence, bounded
        tokio::time::timeout(Duration::from_secs(240), run(&c, &s, &downloads)).await
    });
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), c.close()).await });
    drop(driver);
    res.expect("the console's browser test took over 240 s");
    eprintln!("console browser test: {:.1} s", t0.elapsed().as_secs_f64());
}

async fn run(c: &Client, s: &Server, downloads: &Path) {
    c.goto(&format!("{}/", s.base)).await.unwrap();
    viewport(c, 1280, 800).await;

    // sign in: the token is asked, kept in sessionStorage, never in a URL
    wait_js(
        c,
        "return !document.getElementById('login').hidden",
        15,
        "sign-in form",
    )
    .await;
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(c, "#login-submit").await;
    wait_js(
        c,
        "return !document.getElementById('view-live').hidden",
        15,
        "live view after sign-in",
    )
    .await;
    let url = c.current_url().await.unwrap();
    assert!(!url.as_str().contains(TOKEN), "{url}");

    // a mixer created through the API shows up with a changing snapshot
    let body = mixer_body(
        "console1",
        640,
        360,
        &[
            ("Usr1.-1", "cam1_640x480_15.mp4"),
            ("Usr2.-1", "cam4_1280x720_30.mp4"),
        ],
    );
    let (st, v) = s.api("POST", "/v1/mixers", Some(&body));
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.api(
        "POST",
        "/v1/mixers",
        Some(&mixer_body(
            "lobby",
            480,
            270,
            &[("Usr1.-1", "cam8_480x270_30.mp4")],
        )),
    );
    assert_eq!(st, 201, "{v}");
    let first = wait_js(c, SNAP_DIGEST, 20, "the first snapshot in the page").await;
    assert_eq!(
        (first["w"].as_u64(), first["h"].as_u64()),
        (Some(640), Some(360)),
        "{first}"
    );
    let t = Instant::now();
    let second = wait_js(
        c,
        &format!(
            "const f = (() => {{ {SNAP_DIGEST} }})(); return f && f.digest !== {} && f.src !== {} ? f : null;",
            first["digest"], first["src"]
        ),
        10,
        "a changed snapshot",
    )
    .await;
    eprintln!(
        "snapshot changed after {:.1} s: {} -> {}",
        t.elapsed().as_secs_f64(),
        first["src"],
        second["src"]
    );
    for src in [&first["src"], &second["src"]] {
        assert!(!src.as_str().unwrap().contains(TOKEN));
    }
    let card = wait_js(
        c,
        r#"const m = document.querySelector('.mixer[data-id="console1"]');
           return m && m.dataset.state === 'running' ? m.innerText : null;"#,
        10,
        "the card says running",
    )
    .await;
    for what in ["Duration", "Size", "Late ticks", "console1.mp4", "Stop"] {
        assert!(
            card.as_str()
                .unwrap()
                .to_lowercase()
                .contains(&what.to_lowercase()),
            "{what} in {card}"
        );
    }

    // while it records: the recording is listed as such, and deleting it is refused (409)
    click(c, "#tab-recs").await;
    wait_js(
        c,
        r#"const r = document.querySelector('tr.rec[data-path="console1.mp4"] .c-state');
           return r && r.innerText.includes('recording');"#,
        15,
        "console1.mp4 listed as recording",
    )
    .await;
    click(c, r#"tr.rec[data-path="console1.mp4"] button.delete"#).await;
    wait_js(
        c,
        "return document.getElementById('confirm').open",
        5,
        "delete confirmation",
    )
    .await;
    click(c, "#confirm-yes").await;
    let msg = wait_js(
        c,
        r#"const t = document.getElementById('toast');
           return !t.hidden && t.innerText.includes('recording it') ? t.innerText : null;"#,
        10,
        "the server's 409 shown",
    )
    .await;
    eprintln!("delete while recording: {msg}");
    assert!(s.storage.join("console1.mp4").exists());

    // the live view, for the gallery (a few seconds in)
    click(c, "#tab-live").await;
    wait_js(
        c,
        r#"const m = [...document.querySelectorAll('.mixer .snapbox')];
           return m.length === 2 && m.every(b => b.classList.contains('has'));"#,
        10,
        "both snapshots shown",
    )
    .await;
    screenshot(c, "console-live.png").await;
    viewport(c, 390, 844).await;
    shot(c, "console-phone-live.png", false).await;
    viewport(c, 1280, 800).await;

    // stop it from the page (with the confirmation); the other one through the API
    click(c, r#".mixer[data-id="console1"] button.stop"#).await;
    wait_js(
        c,
        "return document.getElementById('confirm').open",
        5,
        "stop confirmation",
    )
    .await;
    click(c, "#confirm-yes").await;
    let (st, v) = s.api("DELETE", "/v1/mixers/lobby", None);
    assert_eq!(st, 200, "{v}");
    wait_js(
        c,
        r#"return !document.querySelector('.mixer[data-id="console1"]');"#,
        30,
        "the stopped mixer leaves the live list",
    )
    .await;
    let (st, v) = s.api("GET", "/v1/mixers/console1", None);
    assert_eq!((st, v["state"].as_u64()), (200, Some(0)), "{v}");
    let file = s.storage.join("console1.mp4");
    let bytes = std::fs::read(&file).unwrap();

    // the recording, final
    click(c, "#tab-recs").await;
    wait_js(
        c,
        r#"const r = document.querySelector('tr.rec[data-path="console1.mp4"] .c-state');
           return r && r.innerText.includes('final');"#,
        15,
        "console1.mp4 listed as final",
    )
    .await;
    wait_js(
        c,
        "return document.querySelectorAll('tr.rec').length === 4",
        15,
        "four recordings listed",
    )
    .await;
    // its thumbnail: the server's 320-px frame, not the placeholder
    let w = wait_js(
        c,
        r#"const i = document.querySelector('tr.rec[data-path="console1.mp4"] img.thumb');
           return i && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null;"#,
        15,
        "console1.mp4's thumbnail loaded",
    )
    .await;
    assert_eq!(w, json!([320, 180]), "thumbnail size");
    // the filter
    c.find(Locator::Id("f-mixer"))
        .await
        .unwrap()
        .send_keys("console")
        .await
        .unwrap();
    let rows = wait_js(
        c,
        r#"const r = [...document.querySelectorAll('tr.rec')].map(t => t.dataset.path);
           return r.length === 1 ? r : null;"#,
        5,
        "filtered to console1",
    )
    .await;
    assert_eq!(rows, json!(["console1.mp4"]));
    click(c, "#f-clear").await;
    // sorted by size, smallest first (a click on the header: largest first, then again)
    click(c, r#"button.sort[data-key="size"]"#).await;
    click(c, r#"button.sort[data-key="size"]"#).await;
    let sizes = c
        .execute(
            r#"return [...document.querySelectorAll('tr.rec')].map(t => t.dataset.path);"#,
            vec![],
        )
        .await
        .unwrap();
    let mut by_size: Vec<(u64, String)> = sizes
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p.as_str().unwrap().to_string();
            (std::fs::metadata(s.storage.join(&p)).unwrap().len(), p)
        })
        .collect();
    let shown: Vec<String> = by_size.iter().map(|(_, p)| p.clone()).collect();
    by_size.sort();
    assert_eq!(
        shown,
        by_size.into_iter().map(|(_, p)| p).collect::<Vec<_>>(),
        "smallest first"
    );
    click(c, r#"button.sort[data-key="modified"]"#).await;
    screenshot(c, "console-recordings.png").await;

    // play it in the page
    click(c, r#"tr.rec[data-path="console1.mp4"] button.play"#).await;
    let playing = wait_js(
        c,
        r#"const v = document.getElementById('player-video');
           return v.error ? {error: v.error.code + ' ' + v.error.message}
                : v.currentTime > 0.5 ? {t: v.currentTime, w: v.videoWidth, h: v.videoHeight,
                                         d: v.duration} : null;"#,
        20,
        "the recording plays (currentTime advances)",
    )
    .await;
    assert!(playing.get("error").is_none(), "media error: {playing}");
    assert_eq!(
        (playing["w"].as_u64(), playing["h"].as_u64()),
        (Some(640), Some(360)),
        "{playing}"
    );
    let dur = playing["d"].as_f64().unwrap();
    assert!(dur > 2.0, "{playing}");
    // seek to the middle
    let seeked = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const v = document.getElementById('player-video');
               v.pause();
               v.addEventListener('seeked', () => done({t: v.currentTime, d: v.duration,
                   err: v.error && v.error.code}), {once: true});
               v.currentTime = v.duration / 2;"#,
            vec![],
        )
        .await
        .unwrap();
    let mid = seeked["d"].as_f64().unwrap() / 2.0;
    let t = seeked["t"].as_f64().unwrap();
    assert!((t - mid).abs() < 0.5, "seeked to {t}, asked {mid}");
    assert!(seeked["err"].is_null(), "{seeked}");
    // and it plays on from there
    c.execute("document.getElementById('player-video').play()", vec![])
        .await
        .unwrap();
    wait_js(
        c,
        &format!(
            "const v = document.getElementById('player-video'); return !v.error && v.currentTime > {};",
            t + 0.3
        ),
        10,
        "plays on after the seek",
    )
    .await;
    c.execute("document.getElementById('player-video').pause()", vec![])
        .await
        .unwrap();
    screenshot(c, "console-player.png").await;
    click(c, "#player-close").await;

    // download: through Chrome's downloads (the link's `download` name) and a fetch of the link
    let link = c
        .find(Locator::Css(
            r#"tr.rec[data-path="console1.mp4"] a.download"#,
        ))
        .await
        .unwrap();
    assert_eq!(
        link.attr("download").await.unwrap().as_deref(),
        Some("console1.mp4")
    );
    link.click().await.unwrap();
    let got = downloads.join("console1.mp4");
    let t = Instant::now();
    loop {
        let done = std::fs::metadata(&got).is_ok_and(|m| m.len() == bytes.len() as u64)
            && !downloads.join("console1.mp4.crdownload").exists();
        if done {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no download in {}: {:?}",
            downloads.display(),
            std::fs::read_dir(downloads)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .ok()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        std::fs::read(&got).unwrap() == bytes,
        "downloaded bytes differ"
    );
    let fetched = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const a = document.querySelector('tr.rec[data-path="console1.mp4"] a.download');
               fetch(a.href).then(r => r.blob()).then(b => {
                 const fr = new FileReader();
                 fr.onload = () => done(fr.result.split(',')[1]);
                 fr.readAsDataURL(b);
               }).catch(e => done('error ' + e));"#,
            vec![],
        )
        .await
        .unwrap();
    let fetched = b64_decode(fetched.as_str().unwrap());
    assert_eq!(fetched.len(), bytes.len());
    assert!(fetched == bytes, "fetched bytes differ");

    // the phone-sized window: cards instead of the table
    viewport(c, 390, 844).await;
    let shape = wait_js(
        c,
        r#"const t = document.querySelector('#recs thead');
           return innerWidth === 390 && getComputedStyle(t).display === 'none' ? innerWidth : null;"#,
        5,
        "the phone layout",
    )
    .await;
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(0), "horizontal scroll at width {shape}");
    screenshot(c, "console-phone.png").await;
    viewport(c, 1280, 800).await;

    // delete it, with the confirmation: gone from the list and from disk
    click(c, r#"tr.rec[data-path="console1.mp4"] button.delete"#).await;
    wait_js(
        c,
        "return document.getElementById('confirm').open",
        5,
        "delete confirmation",
    )
    .await;
    let text = c
        .find(Locator::Id("confirm-text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("console1.mp4"), "{text}");
    click(c, "#confirm-yes").await;
    wait_js(
        c,
        r#"return !document.querySelector('tr.rec[data-path="console1.mp4"]')
                 && document.querySelectorAll('tr.rec').length === 3;"#,
        10,
        "the deleted recording leaves the list",
    )
    .await;
    assert!(!file.exists(), "{} still on disk", file.display());
    // no URL the page asked for, and nothing in it, holds the token
    let html = c.source().await.unwrap();
    assert!(!html.contains(TOKEN));
    let urls = c
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]).join('\\n')",
            vec![],
        )
        .await
        .unwrap();
    let urls = urls.as_str().unwrap();
    assert!(urls.contains("/snapshot.jpg?n="), "{urls}");
    assert!(!urls.contains(TOKEN), "{urls}");

    // sign out: the form again, the token gone from the tab, the cookie no longer good
    click(c, "#logout").await;
    wait_js(
        c,
        "return !document.getElementById('login').hidden && sessionStorage.length === 0",
        10,
        "signed out",
    )
    .await;
    let after = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               fetch('/v1/mixers').then(r => done(r.status), e => done(String(e)));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(after, json!(401), "the cookie after signing out");
}
