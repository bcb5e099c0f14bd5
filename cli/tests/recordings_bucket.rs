//! The bucket side of the recordings API of `cloudmixer serve`, over real HTTP against a real
//! S3-compatible server on loopback (the test kit's `s3s-fs`): a room records with a
//! `storageConfig`, its upload lands in the bucket; the list merges the local file and the
//! object (`where`, `state`), an uploaded-only recording is streamed from the bucket (bytes,
//! ranges, 416, ETag), deletes go local / bucket (checked in the server's directory on disk),
//! hostile keys are refused, a store that is down fails only its own part (`errors`), a
//! restarted service told the bucket (`--bucket-config`) lists it again, and no answer or log
//! line carries the access key or the secret key.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cloudmixer::testkit::s3::S3Server;
use serde_json::{json, Value};

mod common;
use common::{header, ROOT, TOKEN};

/// A secret key the S3 server refuses (searched for in the answers like the right one).
const WRONG_SECRET: &str = "wrong-secret-7f3a9c1e5b";

fn dir(name: &str) -> PathBuf {
    common::test_dir("recordings_bucket", name)
}

/// A running `cloudmixer serve` (storage `d/rec`, a token, its stderr in `d/serve.log`),
/// killed when dropped. Every answer body is kept, to look for the keys in them.
struct Server {
    child: Child,
    base: String,
    addr: String,
    storage: PathBuf,
    log: PathBuf,
    agent: ureq::Agent,
    seen: std::cell::RefCell<Vec<u8>>,
}

impl Server {
    fn start(d: &Path, extra: &[&str]) -> Server {
        let log = d.join("serve.log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let key = d.join("journal.key");
        let mut args = vec!["--journal-key", key.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (child, base) = common::spawn_serve(d, true, &args, err.into());
        let addr = base.trim_start_matches("http://").to_string();
        Server {
            child,
            base,
            addr,
            storage: d.join("rec"),
            log,
            agent: common::agent(),
            seen: Default::default(),
        }
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {TOKEN}");
        let mut resp = match method {
            "GET" => self.agent.get(&url).header("Authorization", &auth).call(),
            "DELETE" => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            _ => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body.cloned().unwrap_or(Value::Null)),
        }
        .unwrap();
        let st = resp.status().as_u16();
        let t = resp.body_mut().read_to_string().unwrap_or_default();
        self.seen.borrow_mut().extend_from_slice(t.as_bytes());
        (st, serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    /// GET with extra headers: (status, headers as (lowercase name, value), body).
    fn get(&self, path: &str, hdrs: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"));
        for (k, v) in hdrs {
            r = r.header(*k, *v);
        }
        let mut resp = r.call().unwrap();
        let h: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let st = resp.status().as_u16();
        let body = resp.body_mut().read_to_vec().unwrap_or_default();
        let mut seen = self.seen.borrow_mut();
        for (k, v) in &h {
            seen.extend_from_slice(format!("{k}: {v}\n").as_bytes());
        }
        seen.extend_from_slice(&body);
        (st, h, body)
    }

    /// A raw HTTP/1.1 request with `target` sent byte for byte: the status.
    fn raw(&self, method: &str, target: &str) -> u16 {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        self.seen.borrow_mut().extend_from_slice(&out);
        let text = String::from_utf8_lossy(&out).to_string();
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{method} {target}: no status in {text:?}"))
    }

    /// Neither key of `s3` in any answer so far nor in the service's log.
    fn assert_no_keys(&self, s3: &S3Server) {
        let log = std::fs::read(&self.log).unwrap_or_default();
        for (what, text) in [("answers", self.seen.borrow().clone()), ("log", log)] {
            let text = String::from_utf8_lossy(&text);
            assert!(!text.is_empty() || what == "log");
            assert!(
                !text.contains(&s3.secret_key),
                "the secret key in the {what}"
            );
            assert!(
                !text.contains(&s3.access_key),
                "the access key in the {what}"
            );
            assert!(!text.contains(WRONG_SECRET), "a secret key in the {what}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn storage_config(s3: &S3Server, keep_local: bool) -> Value {
    json!({"vendor": 0, "region": "us-east-1", "bucket": s3.bucket,
        "accessKey": s3.access_key, "secretKey": s3.secret_key, "endpoint": s3.endpoint,
        "keepLocal": keep_local})
}

/// The create body of room `id` recording `path` (160x120) with `storageConfig` `st`.
fn room(id: &str, path: &str, st: &Value) -> Value {
    json!({"mixerID": id, "inputs": {"Usr1.-1": "cam9_320x240_15.mp4"},
        "mode": 0, "storageConfig": st,
        "videoFileCfg": {"svrPathName": path, "vWidth": 160, "vHeight": 120, "vFps": 15,
        "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 160, "height": 120,
            "param": {"camid": "Usr1.-1"}}]}})
}

/// Records `path` for about 1.5 s in room `id` with `storageConfig` `st`, then waits until the
/// listing says it is uploaded: that listing entry.
fn record_and_upload(s: &Server, id: &str, path: &str, st: &Value) -> Value {
    let body = room(id, path, st);
    let (code, v) = s.json("POST", "/v1/mixers", Some(&body));
    assert_eq!(code, 201, "{v}");
    std::thread::sleep(Duration::from_millis(1500));
    let (code, v) = s.json("DELETE", &format!("/v1/mixers/{id}"), None);
    assert_eq!(code, 200, "{v}");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = s.json("GET", &format!("/v1/recordings?mixerID={id}"), None);
        assert_eq!(code, 200, "{v}");
        if v["recordings"][0]["state"] == "uploaded" {
            assert_eq!(v["total"], 1, "{v}");
            return v["recordings"][0].clone();
        }
        assert!(Instant::now() < end, "not uploaded in 60 s: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Uploaded with `keepLocal`: listed in both places; the local copy deleted, it is listed as
/// uploaded and still downloads (whole, ranges, 416, ETag revalidation) from the bucket;
/// hostile keys are refused and leave the object alone; `?where=bucket` removes the object;
/// then nothing is left (404). No answer or log line has the keys.
#[test]
fn an_uploaded_recording_is_listed_served_and_deleted_in_the_bucket() {
    let d = dir("flow");
    let s3 = S3Server::start(&d.join("s3"));
    let s = Server::start(&d, &[]);
    let r = record_and_upload(&s, "up1", "/day/up1.mp4", &storage_config(&s3, true));
    let local = s.storage.join("day/up1.mp4");
    let object = s3.root().join(&s3.bucket).join("day/up1.mp4");
    let bytes = std::fs::read(&local).unwrap();
    assert!(bytes.len() > 1000);
    assert_eq!(
        std::fs::read(&object).unwrap(),
        bytes,
        "the object is the file"
    );
    assert_eq!(r["path"], "day/up1.mp4", "{r}");
    assert_eq!(r["where"], "both", "{r}");
    assert_eq!(r["bucket"], s3.bucket.as_str(), "{r}");
    assert_eq!(r["size"], bytes.len(), "{r}");
    assert_eq!(r["mixerID"], "up1", "{r}");
    assert!(r["startTime"].as_u64().unwrap() > 1_600_000_000_000, "{r}");
    assert_eq!(
        (r["width"].as_i64(), r["height"].as_i64()),
        (Some(160), Some(120)),
        "{r}"
    );
    assert!(r["duration"].as_u64().unwrap() >= 500, "{r}");

    // a room with a wrong secret: its upload fails (1107) and the file stays; the bucket is
    // still listed with the key that works, and neither secret is in any answer
    let mut bad = storage_config(&s3, true);
    bad["secretKey"] = json!(WRONG_SECRET);
    let body = room("bad1", "/day/bad1.mp4", &bad);
    let (code, v) = s.json("POST", "/v1/mixers", Some(&body));
    assert_eq!(code, 201, "{v}");
    std::thread::sleep(Duration::from_millis(1500));
    let (code, v) = s.json("DELETE", "/v1/mixers/bad1", None);
    assert_eq!(code, 200, "{v}");
    let end = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let (_, v) = s.json("GET", "/v1/recordings?mixerID=bad1", None);
        if v["recordings"][0]["state"] == "uploadFailed" {
            break v["recordings"][0].clone();
        }
        assert!(Instant::now() < end, "no upload failure in 60 s: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(failed["where"], "local", "{failed}");
    assert_eq!(failed["errCode"], 1107, "{failed}");
    assert!(!failed["errDesc"].as_str().unwrap().is_empty(), "{failed}");
    let (_, v) = s.json("GET", "/v1/recordings?prefix=day/", None);
    assert_eq!(v["total"], 2, "{v}");
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(v["recordings"][1]["path"], "day/up1.mp4", "{v}");
    assert_eq!(v["recordings"][1]["where"], "both", "{v}");
    let (code, v) = s.json("DELETE", "/v1/recordings/day/bad1.mp4", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"], json!(["day/bad1.mp4"]), "{v}");
    assert_eq!(v["bucket"], json!([]), "{v}");
    assert!(v.get("errors").is_none(), "{v}");

    // the local copy goes, the object stays
    let (code, v) = s.json("DELETE", "/v1/recordings/day/up1.mp4?where=local", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"], json!(["day/up1.mp4"]), "{v}");
    assert_eq!(v["bucket"], json!([]), "{v}");
    assert!(!local.exists());
    assert!(object.exists());
    let (code, v) = s.json("DELETE", "/v1/recordings/day/up1.mp4?where=local", None);
    assert_eq!(code, 404, "{v}");
    let (_, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!(v["total"], 1, "{v}");
    let r = &v["recordings"][0];
    assert_eq!(
        (r["path"].as_str(), r["where"].as_str(), r["state"].as_str()),
        (Some("day/up1.mp4"), Some("uploaded"), Some("uploaded")),
        "{v}"
    );
    assert_eq!(r["size"], bytes.len(), "{r}");
    assert!(v.get("errors").is_none(), "{v}");
    for (q, n) in [("uploaded", 1), ("local", 0), ("both", 0)] {
        let (_, v) = s.json("GET", &format!("/v1/recordings?where={q}"), None);
        assert_eq!(v["total"], n, "where={q}: {v}");
    }
    let (code, v) = s.json("GET", "/v1/recordings?where=cloud", None);
    assert_eq!(code, 400, "{v}");
    let (_, v) = s.json("GET", "/v1/recordings?prefix=day/up", None);
    assert_eq!(v["total"], 1, "{v}");
    let (_, v) = s.json("GET", "/v1/recordings?prefix=night/", None);
    assert_eq!(v["total"], 0, "{v}");

    // served from the bucket
    let (code, h, body) = s.get("/v1/recordings/day/up1.mp4", &[]);
    assert_eq!(code, 200);
    assert_eq!(body, bytes, "the whole object");
    assert_eq!(header(&h, "x-recording-where"), "bucket");
    assert_eq!(header(&h, "content-type"), "video/mp4");
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    let etag = header(&h, "etag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    let (code, h, body) = s.get("/v1/recordings/day/up1.mp4", &[("Range", "bytes=100-299")]);
    assert_eq!(code, 206);
    assert_eq!(body, bytes[100..300]);
    assert_eq!(
        header(&h, "content-range"),
        format!("bytes 100-299/{}", bytes.len())
    );
    let (code, _, body) = s.get("/v1/recordings/day/up1.mp4", &[("Range", "bytes=-16")]);
    assert_eq!(code, 206);
    assert_eq!(body, bytes[bytes.len() - 16..]);
    let open_end = format!("bytes={}-", bytes.len() - 10);
    let (code, _, body) = s.get("/v1/recordings/day/up1.mp4", &[("Range", &open_end)]);
    assert_eq!(code, 206);
    assert_eq!(body, bytes[bytes.len() - 10..]);
    let past = format!("bytes={}-", bytes.len());
    let (code, h, body) = s.get("/v1/recordings/day/up1.mp4", &[("Range", &past)]);
    assert_eq!(code, 416);
    assert!(body.is_empty());
    assert_eq!(
        header(&h, "content-range"),
        format!("bytes */{}", bytes.len())
    );
    let (code, _, body) = s.get("/v1/recordings/day/up1.mp4", &[("If-None-Match", &etag)]);
    assert_eq!(code, 304);
    assert!(body.is_empty());
    let (code, _, _) = s.get("/v1/recordings/day/up1.mp4?where=local", &[]);
    assert_eq!(code, 404);
    let (code, _, body) = s.get("/v1/recordings/day/up1.mp4?where=bucket", &[]);
    assert_eq!((code, body.len()), (200, bytes.len()));
    let (code, _, _) = s.get("/v1/recordings/day/nothing.mp4", &[]);
    assert_eq!(code, 404);

    // hostile keys: refused before the bucket is asked; the object stays
    for target in [
        "/v1/recordings/day/../day/up1.mp4",
        "/v1/recordings/day/%2E%2E/day/up1.mp4",
        "/v1/recordings/day/..%2Fday%2Fup1.mp4",
        "/v1/recordings/%2Fday%2Fup1.mp4",
        "/v1/recordings/day//up1.mp4",
        "/v1/recordings/day/./up1.mp4",
        "/v1/recordings/day%5Cup1.mp4",
        "/v1/recordings/day/up1.mp4%00",
        "/v1/recordings/..%2F..%2Fs3%2Fdata%2Frecordings%2Fday%2Fup1.mp4",
    ] {
        for q in ["", "?where=bucket"] {
            let code = s.raw("GET", &format!("{target}{q}"));
            assert!(code == 400 || code == 404, "GET {target}{q}: {code}");
            let code = s.raw("DELETE", &format!("{target}{q}"));
            assert!(code == 400 || code == 404, "DELETE {target}{q}: {code}");
        }
    }
    assert!(object.exists(), "a hostile key deleted the object");
    let (code, v) = s.json(
        "DELETE",
        "/v1/recordings/day/up1.mp4?where=everywhere",
        None,
    );
    assert_eq!(code, 400, "{v}");
    assert!(object.exists());

    // the object goes
    let (code, v) = s.json("DELETE", "/v1/recordings/day/up1.mp4?where=bucket", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"], json!([]), "{v}");
    assert_eq!(v["bucket"][0]["key"], "day/up1.mp4", "{v}");
    assert_eq!(v["bucket"][0]["bucket"], s3.bucket.as_str(), "{v}");
    assert!(!object.exists(), "the object is still in the bucket");
    let (_, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!(v["total"], 0, "{v}");
    let (code, _, _) = s.get("/v1/recordings/day/up1.mp4", &[]);
    assert_eq!(code, 404);
    let (code, v) = s.json("DELETE", "/v1/recordings/day/up1.mp4", None);
    assert_eq!(code, 404, "{v}");
    s.assert_no_keys(&s3);
}

/// A store that is down: the list still answers, with the local recordings and an `errors`
/// entry naming the bucket (no keys), in bounded time; a download or delete only the bucket
/// could serve is a 502 naming the bucket; `?where=local` deletes go on. With
/// `--bucket-config`, a restarted service lists and serves the bucket's recordings before
/// any room names it; an uploaded recording (no local copy kept) is `uploaded` only and
/// `?where=all` (the default) deletes it in the bucket.
#[test]
fn a_store_that_is_down_fails_only_its_part_and_a_restart_lists_the_bucket_again() {
    let d = dir("down");
    let mut s3 = S3Server::start(&d.join("s3"));
    let s = Server::start(&d, &[]);
    let r = record_and_upload(&s, "gone1", "/gone1.mp4", &storage_config(&s3, false));
    assert_eq!(r["where"], "uploaded", "{r}");
    assert!(!s.storage.join("gone1.mp4").exists());
    let object = s3.root().join(&s3.bucket).join("gone1.mp4");
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(r["size"], bytes.len(), "{r}");
    // a file of its own next to it
    let clip = std::fs::read(format!("{ROOT}/fixtures/clips/cam9_320x240_15.mp4")).unwrap();
    std::fs::write(s.storage.join("mine.mp4"), &clip).unwrap();

    s3.kill();
    let t0 = Instant::now();
    let (code, v) = s.json("GET", "/v1/recordings", None);
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["recordings"][0]["path"], "mine.mp4", "{v}");
    assert_eq!(v["recordings"][0]["where"], "local", "{v}");
    let e = &v["errors"][0];
    assert_eq!(e["bucket"], s3.bucket.as_str(), "{v}");
    assert_eq!(e["endpoint"], s3.endpoint.as_str(), "{v}");
    assert!(!e["error"].as_str().unwrap().is_empty(), "{v}");
    let (code, h, body) = s.get("/v1/recordings/gone1.mp4", &[]);
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&body));
    assert!(header(&h, "content-type").starts_with("application/json"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"][0]["bucket"], s3.bucket.as_str(), "{v}");
    let (code, v) = s.json("DELETE", "/v1/recordings/gone1.mp4?where=bucket", None);
    assert_eq!(code, 502, "{v}");
    assert!(object.exists());
    let (code, _, body) = s.get("/v1/recordings/mine.mp4", &[]);
    assert_eq!((code, body.len()), (200, clip.len()));
    // a local file with an upload journal: pending; not deleted while an uploader holds the
    // journal, deleted with its journal once none does
    let clip2 = s.storage.join("pend.mp4");
    let journal = s.storage.join("pend.mp4.upload.json");
    std::fs::write(&clip2, &clip).unwrap();
    std::fs::write(&journal, b"{}").unwrap();
    let (_, v) = s.json("GET", "/v1/recordings?prefix=pend", None);
    assert_eq!(v["recordings"][0]["state"], "uploadPending", "{v}");
    let held = std::fs::File::open(&journal).unwrap();
    // SAFETY: flock on a descriptor this test owns
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) },
        0
    );
    let (code, v) = s.json("DELETE", "/v1/recordings/pend.mp4?where=local", None);
    assert_eq!(code, 409, "{v}");
    assert!(clip2.exists() && journal.exists());
    drop(held);
    let (code, v) = s.json("DELETE", "/v1/recordings/pend.mp4?where=local", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"], json!(["pend.mp4"]), "{v}");
    assert!(!clip2.exists() && !journal.exists());
    s.assert_no_keys(&s3);
    drop(s);

    // a new service that was told the bucket: listed before any room names it
    s3.restart();
    let cfg = d.join("bucket.json");
    std::fs::write(&cfg, storage_config(&s3, false).to_string()).unwrap();
    let s = Server::start(&d, &["--bucket-config", cfg.to_str().unwrap()]);
    let (code, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let gone = v["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "gone1.mp4")
        .unwrap_or_else(|| panic!("gone1.mp4 not listed: {v}"));
    assert_eq!(
        (gone["where"].as_str(), gone["state"].as_str()),
        (Some("uploaded"), Some("uploaded")),
        "{v}"
    );
    assert_eq!(gone["size"], bytes.len(), "{v}");
    let (code, _, body) = s.get("/v1/recordings/gone1.mp4", &[("Range", "bytes=0-63")]);
    assert_eq!(code, 206);
    assert_eq!(body, bytes[..64]);
    let (code, v) = s.json("DELETE", "/v1/recordings/gone1.mp4", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"], json!([]), "{v}");
    assert_eq!(v["bucket"][0]["key"], "gone1.mp4", "{v}");
    assert!(!object.exists());
    assert!(s.storage.join("mine.mp4").exists());
    s.assert_no_keys(&s3);
    drop(s);

    // a bucket config that is not one: refused at start, without echoing a value
    std::fs::write(
        &cfg,
        json!({"bucket": s3.bucket, "accessKey": 7, "secretKey": s3.secret_key}).to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--storage")
        .arg(d.join("rec"))
        .arg("--journal-key")
        .arg(d.join("journal.key"))
        .arg("--bucket-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bucket-config"), "{err}");
    assert!(!err.contains(&s3.secret_key), "{err}");
}
