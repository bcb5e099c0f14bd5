//! The recordings API of `cloudmixer serve` over real HTTP: list (filters, pages, what FFmpeg
//! reads from a file the service did not record), download (ranges, ETag), delete (409 while a
//! room writes the file), and hostile paths sent raw over a `TcpStream` (the client library
//! would normalise them), each refused without touching anything outside the storage root.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

mod common;
use common::{header, ROOT, TOKEN};

fn dir(name: &str) -> PathBuf {
    common::test_dir("recordings", name)
}

/// A running `cloudmixer serve` (storage `d/rec`, with a token), killed when dropped.
struct Server {
    child: Child,
    base: String,
    addr: String,
    storage: PathBuf,
    agent: ureq::Agent,
}

impl Server {
    fn start(d: &Path) -> Server {
        let (child, base) = common::spawn_serve(d, true, &[], Stdio::null());
        let addr = base.trim_start_matches("http://").to_string();
        Server {
            child,
            base,
            addr,
            storage: d.join("rec"),
            agent: common::agent(),
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
        let h = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let st = resp.status().as_u16();
        (st, h, resp.body_mut().read_to_vec().unwrap_or_default())
    }

    /// A raw HTTP/1.1 request with `target` sent byte for byte: the status.
    fn raw(&self, method: &str, target: &str) -> (u16, String) {
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
        let text = String::from_utf8_lossy(&out).to_string();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{method} {target}: no status in {text:?}"));
        (code, text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn put(storage: &Path, rel: &str, clip: &str, age_s: u64) -> Vec<u8> {
    let p = storage.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let bytes = std::fs::read(format!("{ROOT}/fixtures/clips/{clip}")).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
        .unwrap();
    bytes
}

fn ffprobe_duration_ms(p: &str) -> i64 {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("{ROOT}/fixtures/clips/{p}"))
        .output()
        .unwrap();
    let s: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    (s * 1000.0).round() as i64
}

fn paths(v: &Value) -> Vec<String> {
    v["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect()
}

/// Several files copied in (none recorded by the service): newest first, filters, pages,
/// side files and HLS segments left out, width × height and duration read from the file;
/// then ranges, ETag revalidation and delete.
#[test]
fn list_download_delete() {
    let d = dir("list");
    let s = Server::start(&d);
    let st = s.storage.clone();
    let cam1 = put(&st, "2024/a/cam1.mp4", "cam1_640x480_15.mp4", 400);
    put(&st, "2024/b/cam9.mkv", "cam9_320x240_15.mkv", 300);
    put(&st, "cam7.mp4", "cam7_180x320_30.mp4", 200);
    put(&st, "2025/cam8.mp4", "cam8_480x270_30.mp4", 100);
    // side files, not recordings
    std::fs::write(st.join("cam7.mp4.upload.json"), b"{}").unwrap();
    std::fs::write(st.join("cam7.mp4.tmp"), b"x").unwrap();
    std::fs::write(st.join("notes.txt"), b"x").unwrap();
    // an HLS playlist and its segments: one recording
    std::fs::create_dir_all(st.join("hls")).unwrap();
    std::fs::write(
        st.join("hls/live.m3u8"),
        "#EXTM3U\n#EXT-X-MAP:URI=\"live_init.mp4\"\n#EXTINF:2,\nlive_0.m4s\n#EXTINF:2,\nlive_1.m4s\n",
    )
    .unwrap();
    for n in ["live_init.mp4", "live_0.m4s", "live_1.m4s"] {
        std::fs::write(st.join("hls").join(n), b"seg").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(st.join("hls/live.m3u8"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(500))
        .unwrap();

    let (code, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["total"], 5, "{v}");
    assert_eq!(
        paths(&v),
        [
            "2025/cam8.mp4",
            "cam7.mp4",
            "2024/b/cam9.mkv",
            "2024/a/cam1.mp4",
            "hls/live.m3u8"
        ]
    );
    let c1 = &v["recordings"][3];
    assert_eq!(c1["where"], "local");
    assert_eq!(c1["size"], cam1.len());
    assert_eq!(
        (c1["width"].as_i64(), c1["height"].as_i64()),
        (Some(640), Some(480)),
        "{c1}"
    );
    let dur = c1["duration"].as_i64().unwrap();
    assert!(
        (dur - ffprobe_duration_ms("cam1_640x480_15.mp4")).abs() <= 50,
        "{c1}"
    );
    assert!(c1.get("mixerID").is_none());
    let c9 = &v["recordings"][2];
    assert_eq!(
        (c9["width"].as_i64(), c9["height"].as_i64()),
        (Some(320), Some(240)),
        "{c9}"
    );
    let m = c1["modified"].as_i64().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - 400_000 - m).abs() < 5_000, "{m} {now}");

    // filters and pages
    let (_, v) = s.json("GET", "/v1/recordings?prefix=2024/", None);
    assert_eq!(paths(&v), ["2024/b/cam9.mkv", "2024/a/cam1.mp4"]);
    let (_, v) = s.json(
        "GET",
        &format!("/v1/recordings?from={}&to={}", now - 350_000, now - 150_000),
        None,
    );
    assert_eq!(paths(&v), ["cam7.mp4", "2024/b/cam9.mkv"]);
    let (_, v) = s.json("GET", "/v1/recordings?pageSize=2&page=2", None);
    assert_eq!(v["total"], 5);
    assert_eq!(paths(&v), ["2024/b/cam9.mkv", "2024/a/cam1.mp4"]);
    let (_, v) = s.json("GET", "/v1/recordings?pageSize=2&page=3", None);
    assert_eq!(paths(&v), ["hls/live.m3u8"]);
    let (_, v) = s.json("GET", "/v1/recordings?mixerID=nobody", None);
    assert_eq!(v["total"], 0);
    for (q, field) in [
        ("page=0", "page"),
        ("pageSize=1001", "pageSize"),
        ("pageSize=x", "pageSize"),
        ("from=yesterday", "from"),
        ("to=1.5", "to"),
    ] {
        let (code, v) = s.json("GET", &format!("/v1/recordings?{q}"), None);
        assert_eq!((code, v["code"].as_i64()), (400, Some(5)), "{q}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{v}"
        );
    }

    // download: whole, ranges, ETag
    let url = "/v1/recordings/2024/a/cam1.mp4";
    let (code, h, body) = s.get(url, &[]);
    assert_eq!(code, 200);
    assert_eq!(body, cam1);
    assert_eq!(header(&h, "content-type"), "video/mp4");
    assert_eq!(header(&h, "content-length"), cam1.len().to_string());
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert!(header(&h, "last-modified").ends_with(" GMT"));
    let etag = header(&h, "etag").to_string();
    assert!(etag.starts_with('"'), "{etag}");
    let n = cam1.len();
    for (r, a, b) in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=-500", n - 500, n - 1),
        (&format!("bytes={}-", n - 10), n - 10, n - 1),
        (&format!("bytes=100-{}", n + 100), 100, n - 1),
    ] {
        let (code, h, body) = s.get(url, &[("Range", r)]);
        assert_eq!(code, 206, "{r}");
        assert_eq!(body, &cam1[a..=b], "{r}");
        assert_eq!(header(&h, "content-range"), format!("bytes {a}-{b}/{n}"));
        assert_eq!(header(&h, "content-length"), (b - a + 1).to_string());
    }
    let (code, h, _) = s.get(url, &[("Range", &format!("bytes={n}-"))]);
    assert_eq!(code, 416);
    assert_eq!(header(&h, "content-range"), format!("bytes */{n}"));
    // several ranges: the whole file
    let (code, _, body) = s.get(url, &[("Range", "bytes=0-1,5-6")]);
    assert_eq!((code, body.len()), (200, n));
    let (code, _, body) = s.get(url, &[("If-None-Match", &etag)]);
    assert_eq!((code, body.len()), (304, 0));
    let (code, _, _) = s.get(url, &[("If-None-Match", "\"other\"")]);
    assert_eq!(code, 200);
    let (_, h, _) = s.get("/v1/recordings/2024/b/cam9.mkv", &[]);
    assert_eq!(header(&h, "content-type"), "video/x-matroska");
    let (code, _, _) = s.get("/v1/recordings/nope.mp4", &[]);
    assert_eq!(code, 404);
    let (code, _, _) = s.get("/v1/recordings/notes.txt", &[]);
    assert_eq!(code, 404);
    // no token: 401
    let r = s.agent.get(format!("{}{url}", s.base)).call().unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // delete
    let (code, v) = s.json("DELETE", url, None);
    assert_eq!((code, &v), (200, &json!({"deleted": ["2024/a/cam1.mp4"]})));
    assert!(!st.join("2024/a/cam1.mp4").exists());
    let (code, _) = s.json("DELETE", url, None);
    assert_eq!(code, 404);
    let (_, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!(v["total"], 4);
    assert!(!paths(&v).contains(&"2024/a/cam1.mp4".to_string()));
    // a playlist goes with its segments
    let (code, v) = s.json("DELETE", "/v1/recordings/hls/live.m3u8", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(std::fs::read_dir(st.join("hls")).unwrap().count(), 0);
    // ... but only its own segments: another recording a playlist names stays
    std::fs::write(
        st.join("hls/p.m3u8"),
        "#EXTM3U\n#EXTINF:2,\np_0.m4s\nkeep.mp4\n",
    )
    .unwrap();
    std::fs::write(st.join("hls/p_0.m4s"), b"seg").unwrap();
    std::fs::write(st.join("hls/keep.mp4"), b"not a segment").unwrap();
    let (code, v) = s.json("DELETE", "/v1/recordings/hls/p.m3u8", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["deleted"], json!(["hls/p.m3u8", "hls/p_0.m4s"]), "{v}");
    assert!(st.join("hls/keep.mp4").exists());
}

/// A file a room of this service is writing: listed with its mixerID as "recording", DELETE
/// refused with 409; once the room ended, "final" and deletable.
#[test]
fn the_file_a_room_writes_is_not_deleted() {
    let d = dir("room");
    let s = Server::start(&d);
    // the name is taken by a file the service did not record: the room writes live/r1_1.mp4
    put(&s.storage, "live/r1.mp4", "cam9_320x240_15.mp4", 1000);
    let body = json!({"mixerID": "r1", "inputs": {"Usr1.-1": "cam1_640x480_15.mp4"},
        "mode":0,"videoFileCfg":{"svrPathName":"/live/r1.mp4","vWidth":160,"vHeight":120,"vFps":15,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"Usr1.-1"}}]}});
    let (code, v) = s.json("POST", "/v1/mixers", Some(&body));
    assert_eq!(code, 201, "{v}");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, v) = s.json("GET", "/v1/recordings?mixerID=r1", None);
    assert_eq!(v["total"], 1, "{v}");
    let r = &v["recordings"][0];
    assert_eq!(
        (r["path"].as_str(), r["state"].as_str()),
        (Some("live/r1_1.mp4"), Some("recording")),
        "{v}"
    );
    // what is on disk now can be read while it is written
    let (code, _, _) = s.get("/v1/recordings/live/r1_1.mp4", &[("Range", "bytes=0-7")]);
    assert_eq!(code, 206);
    let (code, v) = s.json("DELETE", "/v1/recordings/live/r1_1.mp4", None);
    assert_eq!(code, 409, "{v}");
    assert!(v["code"].as_i64().is_some());
    assert!(s.storage.join("live/r1_1.mp4").exists());
    // the file it did not record (the name the config asked for) is not the room's
    let (_, v) = s.json("GET", "/v1/recordings?prefix=live/r1.mp4", None);
    assert_eq!(v["total"], 1, "{v}");
    assert!(v["recordings"][0].get("mixerID").is_none(), "{v}");
    assert_eq!(v["recordings"][0]["width"], 320, "{v}");
    let (code, v) = s.json("DELETE", "/v1/recordings/live/r1.mp4", None);
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.json("DELETE", "/v1/mixers/r1", None);
    assert_eq!(code, 200, "{v}");
    let (_, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!(v["recordings"][0]["state"], "final", "{v}");
    assert_eq!(v["recordings"][0]["mixerID"], "r1", "{v}");
    let (code, v) = s.json("DELETE", "/v1/recordings/live/r1_1.mp4", None);
    assert_eq!(code, 200, "{v}");
    assert!(!s.storage.join("live/r1_1.mp4").exists());
}

/// Hostile paths, sent raw: each GET and DELETE is refused (400/404), nothing outside the root
/// is read or removed, the symlinks, FIFO and directory below the root stay as they were.
#[test]
fn hostile_paths_are_refused() {
    let d = dir("hostile");
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("secret.mp4");
    std::fs::write(&secret, b"SECRET-BYTES").unwrap();
    let s = Server::start(&d);
    let st = s.storage.clone();
    put(&st, "a/cam1.mp4", "cam1_640x480_15.mp4", 10);
    let ln = |target: &Path, name: &str| std::os::unix::fs::symlink(target, st.join(name)).unwrap();
    ln(&secret, "link.mp4");
    ln(&outside, "linkdir");
    ln(Path::new("/etc/passwd"), "passwd.mp4");
    ln(Path::new("/etc"), "etc");
    ln(&st.join("a/cam1.mp4"), "inlink.mp4");
    ln(&st.join("a"), "indir");
    std::fs::create_dir_all(st.join("dir.mp4")).unwrap();
    let fifo = st.join("fifo.mp4");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let abs = secret.to_str().unwrap().to_string();
    let long_name = format!("{}.mp4", "x".repeat(300));
    let long_path = format!("{}x.mp4", "a/".repeat(2100));
    let hostile: Vec<String> = vec![
        "../outside/secret.mp4".into(),
        "a/../../outside/secret.mp4".into(),
        "..%2foutside%2fsecret.mp4".into(),
        "%2e%2e%2foutside%2fsecret.mp4".into(),
        "%2e%2e/outside/secret.mp4".into(),
        "%2E%2E%2Foutside%2Fsecret.mp4".into(),
        "%252e%252e%252foutside%252fsecret.mp4".into(),
        "..%5c..%5coutside%5csecret.mp4".into(),
        "..\\..\\outside\\secret.mp4".into(),
        format!("/{abs}"),
        format!("%2f{}", abs.trim_start_matches('/').replace('/', "%2f")),
        "a/cam1.mp4%00".into(),
        "a%00/cam1.mp4".into(),
        "a//cam1.mp4".into(),
        "./a/cam1.mp4".into(),
        "a/./cam1.mp4".into(),
        long_name,
        long_path,
        "link.mp4".into(),
        "linkdir/secret.mp4".into(),
        "passwd.mp4".into(),
        "etc/passwd".into(),
        "inlink.mp4".into(),
        "indir/cam1.mp4".into(),
        "dir.mp4".into(),
        "fifo.mp4".into(),
    ];
    assert!(hostile.len() >= 20);
    for p in &hostile {
        for method in ["GET", "DELETE"] {
            let (code, text) = s.raw(method, &format!("/v1/recordings/{p}"));
            eprintln!("{method} {}: {code}", &p[..p.len().min(60)]);
            assert!(
                code == 400 || code == 404,
                "{method} {p}: {code} {}",
                &text[..text.len().min(300)]
            );
            assert!(!text.contains("SECRET-BYTES"), "{method} {p}");
            assert!(!text.contains("root:"), "{method} {p}");
        }
    }
    assert_eq!(std::fs::read(&secret).unwrap(), b"SECRET-BYTES");
    assert!(Path::new("/etc/passwd").exists());
    assert!(st.join("a/cam1.mp4").is_file());
    for l in [
        "link.mp4",
        "linkdir",
        "passwd.mp4",
        "etc",
        "inlink.mp4",
        "indir",
    ] {
        assert!(
            st.join(l)
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink(),
            "{l}"
        );
    }
    assert!(st.join("dir.mp4").is_dir());
    assert!(fifo.symlink_metadata().is_ok());
    // the listing shows the one real recording: no symlink, FIFO or directory
    let (_, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!(paths(&v), ["a/cam1.mp4"], "{v}");
    // files whose bytes are a playlist or a concat list naming a FIFO outside the root: the
    // listing's probe opens neither as one (it would block on the FIFO, the list would hang)
    let out_fifo = outside.join("trap.ts");
    let c = std::ffi::CString::new(out_fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let trap = out_fifo.to_str().unwrap();
    std::fs::write(
        st.join("evil_hls.mp4"),
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{trap}\n#EXT-X-ENDLIST\n"),
    )
    .unwrap();
    std::fs::write(
        st.join("evil_concat.mkv"),
        format!("ffconcat version 1.0\nfile {trap}\n"),
    )
    .unwrap();
    std::fs::write(
        st.join("evil.m3u8"),
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{trap}\n#EXT-X-ENDLIST\n"),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let (code, v) = s.json("GET", "/v1/recordings", None);
    assert_eq!((code, v["total"].as_u64()), (200, Some(4)), "{v}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    for r in v["recordings"].as_array().unwrap() {
        if r["path"].as_str().unwrap().contains("evil") {
            assert!(
                r.get("width").is_none() && r.get("duration").is_none(),
                "{r}"
            );
        }
    }
}

/// Encodes a 10 s clip that is red for its first 0.5 s and green after (colour bars are
/// not needed: one colour per part makes "the frame at 10 %" a colour check).
fn red_then_green(out: &Path) {
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("color=c=red:s=640x360:r=15:d=0.5[a];color=c=0x00ff00:s=640x360:r=15:d=9.5[b];[a][b]concat=n=2:v=1:a=0")
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "150"])
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `…/thumbnail.jpg`: a JPEG 320 px wide of the frame at 10 % (green, after the red start),
/// served again from the cache; none for a playlist, an audio-only file or a hostile path.
#[test]
fn thumbnails() {
    let d = dir("thumbs");
    let s = Server::start(&d);
    std::fs::create_dir_all(s.storage.join("day")).unwrap();
    red_then_green(&s.storage.join("day/rg.mp4"));
    put(&s.storage, "cam.mp4", "cam1_640x480_15.mp4", 5);
    std::fs::write(s.storage.join("pl.m3u8"), "#EXTM3U\n#EXT-X-ENDLIST\n").unwrap();
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=1"])
        .arg(s.storage.join("tone.m4a"))
        .status()
        .unwrap();
    assert!(st.success());

    let (st, h, jpg) = s.get("/v1/recordings/day/rg.mp4/thumbnail.jpg", &[]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&jpg));
    assert_eq!(header(&h, "content-type"), "image/jpeg");
    let f = cloudmixer::media::decode::decode_image(&jpg).unwrap();
    assert_eq!((f.width(), f.height()), (320, 180));
    let rgb = cloudmixer::model::frame::I420Image {
        width: 320,
        height: 180,
        y: f.packed_plane(0),
        u: f.packed_plane(1),
        v: f.packed_plane(2),
    }
    .to_rgb();
    let px = &rgb[(90 * 320 + 160) * 3..][..3];
    assert!(
        px[1] > 200 && px[0] < 60 && px[2] < 60,
        "the frame at 10 % is green, got {px:?}"
    );
    // the same bytes again (cached)
    let (st, _, again) = s.get("/v1/recordings/day/rg.mp4/thumbnail.jpg", &[]);
    assert_eq!((st, again), (200, jpg));

    // a 4:3 camera clip keeps its aspect
    let (st, _, jpg) = s.get("/v1/recordings/cam.mp4/thumbnail.jpg", &[]);
    assert_eq!(st, 200);
    let f = cloudmixer::media::decode::decode_image(&jpg).unwrap();
    assert_eq!((f.width(), f.height()), (320, 240));

    for (p, want) in [
        ("/v1/recordings/pl.m3u8/thumbnail.jpg", 404),
        ("/v1/recordings/tone.m4a/thumbnail.jpg", 404),
        ("/v1/recordings/none.mp4/thumbnail.jpg", 404),
        ("/v1/recordings/day/%2e%2e/cam.mp4/thumbnail.jpg", 400),
        ("/v1/recordings/day//rg.mp4/thumbnail.jpg", 400),
    ] {
        let (st, _, body) = s.get(p, &[]);
        assert_eq!(st, want, "{p}: {}", String::from_utf8_lossy(&body));
    }
    // the token is needed
    let r = s
        .agent
        .get(format!("{}/v1/recordings/cam.mp4/thumbnail.jpg", s.base))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
