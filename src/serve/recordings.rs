//! The recordings under the service's storage root (`--storage`): list, download, delete.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/recordings?prefix=&from=&to=&mixerID=&page=&pageSize=` | the recording files, newest first, `{"total","page","pageSize","recordings":[…]}` |
//! | `GET /v1/recordings/{*path}` | the file's bytes; `Range` (one range), `ETag`/`If-None-Match` |
//! | `GET /v1/recordings/{*path}/thumbnail.jpg` | a frame from 10 % in, 320 px wide ([`super::thumbnail`]) |
//! | `DELETE /v1/recordings/{*path}` | unlinks the file (and an HLS playlist's segments) |
//!
//! A recording is a regular file with a media extension ([`MEDIA_EXT`]); side files (upload
//! journals, `*.tmp`) and an HLS playlist's segments (`stem_N.ts`, `stem_N.m4s`,
//! `stem_init.mp4` next to `stem.m3u8`) are not listed. `from`/`to` are Unix milliseconds
//! (`modified` is too), inclusive.
//!
//! **Confinement.** A path is `/`-separated plain names under the root: an empty, `.` or `..`
//! component, a backslash, a NUL, a component over 255 bytes or a path over 4096 bytes is
//! refused (400) before anything is opened. The file is reached with the storage module's
//! walk ([`crate::output::Storage::open_dir`], then [`crate::output::storage::Dir::open_read`]):
//! each directory opened with `openat(…, O_DIRECTORY | O_NOFOLLOW)` from the root, the file
//! with `O_NOFOLLOW` and checked to be a regular file, so a symlink anywhere below the root
//! (to a file or a directory, leading out or staying in) is refused (400), as is a FIFO, a
//! device or a directory (404). The listing walks the tree the same way and skips symlinks.
//!
//! **Ranges.** `bytes=a-b`, `a-` and `-n` are answered 206 with `Content-Range`; one that starts
//! past the end is 416 with `Content-Range: bytes */size`; a request for several ranges (or a
//! `Range` header that does not parse) is answered with the whole file (200). A file still
//! being written is served as far as it is on disk when the request comes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{bad_request, blocking, error, ApiError, App};
use crate::model::events::codes;
use crate::output::storage::Dir;
use crate::output::{MuxError, Storage};

/// The extensions of the containers the recorder writes, and their `Content-Type`.
pub const MEDIA_EXT: &[(&str, &str)] = &[
    ("mp4", "video/mp4"),
    ("mkv", "video/x-matroska"),
    ("flv", "video/x-flv"),
    ("ts", "video/mp2t"),
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("aac", "audio/aac"),
    ("m4a", "audio/mp4"),
    ("mp3", "audio/mpeg"),
    ("wav", "audio/wav"),
];

/// The FFmpeg demuxers a recording is read with (probe, thumbnail): those of the containers
/// the recorder writes, nothing that follows references to other files.
pub(super) const FORMATS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,flv,mpegts,aac,mp3,wav";

/// `pageSize` by default and at most.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 1000;
/// Directory levels the listing descends, at most.
const MAX_DEPTH: usize = 32;

/// What was read from a file the service did not record, by (path, size, mtime).
pub(super) type ProbeCache = Arc<Mutex<HashMap<(String, u64, i64), Value>>>;

fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    MEDIA_EXT.iter().find(|(e, _)| *e == ext).map(|(_, t)| *t)
}

/// Why a request path is refused, or where it points (directory part, file name).
fn check_path(p: &str) -> Result<(PathBuf, OsString), ApiError> {
    let bad = |why: &str| bad_request(format!("path: {why}"));
    if p.is_empty() {
        return Err(bad("empty"));
    }
    if p.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    if p.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if p.contains('\\') {
        return Err(bad("contains a backslash"));
    }
    let parts: Vec<&str> = p.split('/').collect();
    for c in &parts {
        if c.is_empty() || *c == "." || *c == ".." {
            return Err(bad(
                "expected names under the storage root, without '', '.' or '..' components",
            ));
        }
        if c.len() > 255 {
            return Err(bad("a component is longer than 255 bytes"));
        }
    }
    let (name, dir) = parts.split_last().expect("not empty");
    Ok((dir.iter().collect(), OsString::from(name)))
}

fn mux_err(e: MuxError) -> ApiError {
    match e {
        MuxError::Escape { .. } => bad_request(format!("path: {e}")),
        _ => not_found(),
    }
}

fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        codes::PARAM_ERR,
        "path: no such recording".into(),
    )
}

fn io_err(e: &std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        // a symlink, or not a regular file
        bad_request(format!("path: {e}"))
    } else {
        not_found()
    }
}

/// Opens the recording at `p` (checked, confined, a regular file with a media extension).
pub(super) fn open_recording(root: &FsPath, p: &str) -> Result<(Dir, OsString, File), ApiError> {
    let (dir, name) = check_path(p)?;
    if content_type(&name.to_string_lossy()).is_none() {
        return Err(not_found());
    }
    let d = Storage::new(root).open_dir(&dir, false).map_err(mux_err)?;
    let f = d.open_read(&name).map_err(|e| io_err(&e))?;
    Ok((d, name, f))
}

/// Files being written by a room of this service, and which room wrote which file.
fn rooms_files(app: &App) -> HashMap<String, (String, bool)> {
    let mut m = HashMap::new();
    for r in app.host.list() {
        let running = r.state != 0;
        for o in &r.outputs {
            let rel = o.svr_file_path_name.trim_start_matches('/').to_string();
            if !rel.is_empty() {
                m.insert(rel, (r.mixer_id.clone(), running));
            }
        }
    }
    m
}

/// One file found by the listing.
struct Found {
    rel: String,
    size: u64,
    modified: i64,
}

/// The name is an HLS segment of a playlist in `names` (`stem_N.ts`, `stem_N.m4s`,
/// `stem_init.mp4` next to `stem.m3u8`).
fn is_segment(name: &str, playlists: &[String]) -> bool {
    let Some((base, ext)) = name.rsplit_once('.') else {
        return false;
    };
    playlists.iter().any(|stem| {
        base.strip_prefix(stem.as_str())
            .and_then(|r| r.strip_prefix('_'))
            .is_some_and(|r| {
                (r == "init" && ext == "mp4")
                    || (matches!(ext, "ts" | "m4s")
                        && !r.is_empty()
                        && r.bytes().all(|b| b.is_ascii_digit()))
            })
    })
}

fn walk(d: &Dir, rel: &str, depth: usize, out: &mut Vec<Found>) {
    let Ok(names) = d.entries() else { return };
    let playlists: Vec<String> = names
        .iter()
        .filter_map(|n| n.to_str()?.strip_suffix(".m3u8").map(str::to_string))
        .collect();
    for n in names {
        let Ok(Some(st)) = d.stat(&n) else { continue };
        let Some(name) = n.to_str() else { continue };
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR if depth < MAX_DEPTH => {
                if let Ok(sub) = d.subdir(&n) {
                    walk(&sub, &path, depth + 1, out);
                }
            }
            libc::S_IFREG if content_type(name).is_some() && !is_segment(name, &playlists) => out
                .push(Found {
                    rel: path,
                    size: st.st_size as u64,
                    modified: st.st_mtime * 1000 + st.st_mtime_nsec / 1_000_000,
                }),
            _ => {}
        }
    }
}

/// Duration, picture size and codecs read from the file by FFmpeg (through our descriptor).
///
/// Only self-contained containers are probed, with FFmpeg held to them: the demuxers of the
/// containers the recorder writes (`format_whitelist`, so a file whose bytes are an HLS
/// playlist or an ffconcat list is not opened as one) and the `file` protocol only; playlists
/// (`.m3u8`, whose entries name other files) are not probed at all.
fn probe(f: &File, name: &str) -> Value {
    if name.ends_with(".m3u8") {
        return json!({});
    }
    crate::media::decode::init_ffmpeg();
    let url = format!("/proc/self/fd/{}", f.as_raw_fd());
    let mut opts = ffmpeg_next::Dictionary::new();
    opts.set("format_whitelist", FORMATS);
    opts.set("protocol_whitelist", "file");
    let Ok(input) = ffmpeg_next::format::input_with_dictionary(&url, opts) else {
        return json!({});
    };
    let mut v = json!({});
    if input.duration() > 0 {
        v["duration"] = json!(input.duration() / 1000);
    }
    let mut codecs = Vec::new();
    for st in input.streams() {
        let p = st.parameters();
        codecs.push(format!("{:?}", p.id()).to_lowercase());
        if p.medium() == ffmpeg_next::media::Type::Video && v.get("width").is_none() {
            // SAFETY: the parameters of an open stream, read only.
            let (w, h) = unsafe { ((*p.as_ptr()).width, (*p.as_ptr()).height) };
            v["width"] = json!(w);
            v["height"] = json!(h);
        }
    }
    v["codecs"] = json!(codecs);
    v
}

fn query_err(field: &str, what: &str) -> Response {
    bad_request(format!("{field}: {what}")).into_response()
}

/// `GET /v1/recordings`.
pub(super) async fn list(
    State(app): State<App>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let mut prefix = String::new();
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    let mut mixer: Option<String> = None;
    let (mut page, mut page_size) = (1usize, PAGE_DEFAULT);
    for (k, v) in &q {
        match k.as_str() {
            "prefix" => prefix = v.clone(),
            "from" | "to" => {
                let Ok(t) = v.parse::<i64>() else {
                    return query_err(k, "expected Unix milliseconds");
                };
                if k == "from" {
                    from = t
                } else {
                    to = t
                }
            }
            "mixerID" => mixer = Some(v.clone()),
            "page" => match v.parse::<usize>() {
                Ok(n) if n >= 1 => page = n,
                _ => return query_err("page", "expected a page number from 1"),
            },
            "pageSize" => match v.parse::<usize>() {
                Ok(n) if (1..=PAGE_MAX).contains(&n) => page_size = n,
                _ => return query_err("pageSize", "expected 1 to 1000"),
            },
            _ => {}
        }
    }
    if from > to {
        return query_err("from", "after to");
    }
    let root = app.host.settings().storage.clone();
    let rooms = rooms_files(&app);
    let cache = app.probes.clone();
    let res = blocking(move || {
        let Ok(d) = Storage::new(&root).root_dir() else {
            return json!({"total": 0, "page": page, "pageSize": page_size, "recordings": []});
        };
        let mut all = Vec::new();
        walk(&d, "", 0, &mut all);
        let mut all: Vec<Found> = all
            .into_iter()
            .filter(|f| f.rel.starts_with(&prefix))
            .filter(|f| (from..=to).contains(&f.modified))
            .filter(|f| match &mixer {
                Some(m) => rooms.get(&f.rel).is_some_and(|(id, _)| id == m),
                None => true,
            })
            .collect();
        all.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.rel.cmp(&b.rel)));
        let total = all.len();
        let items: Vec<Value> = all
            .into_iter()
            .skip((page - 1).saturating_mul(page_size))
            .take(page_size)
            .map(|f| {
                let mut v = json!({"path": f.rel, "where": "local", "size": f.size,
                    "modified": f.modified});
                if let Some((id, running)) = rooms.get(&f.rel) {
                    v["mixerID"] = json!(id);
                    v["state"] = json!(if *running { "recording" } else { "final" });
                } else {
                    let key = (f.rel.clone(), f.size, f.modified);
                    let hit = cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&key)
                        .cloned();
                    let meta = hit.or_else(|| {
                        let (_, _, file) = open_recording(&root, &f.rel).ok()?;
                        let m = probe(&file, &f.rel);
                        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
                        if c.len() > 10_000 {
                            c.clear();
                        }
                        c.insert(key, m.clone());
                        Some(m)
                    });
                    if let Some(Value::Object(m)) = meta {
                        for (k, x) in m {
                            v[k] = x;
                        }
                    }
                }
                v
            })
            .collect();
        json!({"total": total, "page": page, "pageSize": page_size, "recordings": items})
    })
    .await;
    match res {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// An HTTP date (IMF-fixdate) of a Unix time in seconds.
fn http_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // days to civil (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} GMT",
        WD[days.rem_euclid(7) as usize],
        MON[(m - 1) as usize]
    )
}

/// The one range asked for: `Some(Ok((start, end)))` inclusive, `Some(Err(()))` unsatisfiable,
/// `None` the whole file (no header, several ranges, or one that does not parse).
#[allow(clippy::result_unit_err)]
fn range(h: Option<&str>, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h?.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size.saturating_sub(n), size - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() {
        u64::MAX
    } else {
        b.parse::<u64>().ok()?
    };
    if end < start {
        return None;
    }
    if start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(size - 1))))
}

/// Bytes of a file read off the async threads, chunk by chunk.
struct FileBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_core::Stream for FileBody {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn stream(file: File, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut off = start;
        let end = start + len;
        while off < end {
            let mut buf = vec![0u8; (end - off).min(256 * 1024) as usize];
            match file.read_at(&mut buf, off) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    off += n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Body::from_stream(FileBody(rx))
}

/// `GET /v1/recordings/{*path}`.
pub(super) async fn download(
    State(app): State<App>,
    Path(p): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(rec) = p.strip_suffix("/thumbnail.jpg") {
        return super::thumbnail::get(app, rec.to_string()).await;
    }
    let root = app.host.settings().storage.clone();
    let p2 = p.clone();
    let opened = match blocking(move || open_recording(&root, &p2)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (_, name, file) = match opened {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let md = match file.metadata() {
        Ok(m) => m,
        Err(e) => return io_err(&e).into_response(),
    };
    let size = md.len();
    let etag = format!(
        "\"{:x}-{:x}-{:x}\"",
        md.ino(),
        size,
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128
    );
    let ctype = content_type(&name.to_string_lossy()).unwrap_or("application/octet-stream");
    let mut resp = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, http_date(md.mtime()));
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if let Some(inm) = inm {
        if inm.trim() == "*"
            || inm
                .split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        {
            return resp
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .unwrap_or_else(|_| not_found().into_response());
        }
    }
    let r = range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    resp = resp.header(header::CONTENT_TYPE, ctype);
    let built = match r {
        Some(Err(())) => resp
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{size}"))
            .body(Body::empty()),
        Some(Ok((a, b))) => resp
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{size}"))
            .header(header::CONTENT_LENGTH, b - a + 1)
            .body(stream(file, a, b - a + 1)),
        None => resp
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size)
            .body(stream(file, 0, size)),
    };
    built.unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, e))
}

/// The plain names an HLS playlist refers to (its segments and init file), in its directory.
fn playlist_files(f: &File) -> Vec<OsString> {
    let mut body = vec![0u8; 1 << 20];
    let n = f.read_at(&mut body, 0).unwrap_or(0);
    body.truncate(n);
    let text = String::from_utf8_lossy(&body);
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        let name = if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            rest.split("URI=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
        } else if line.is_empty() || line.starts_with('#') {
            None
        } else {
            Some(line)
        };
        if let Some(n) = name {
            let ok = !n.is_empty()
                && n != "."
                && n != ".."
                && !n.contains(['/', '\\', '\0', '?', ':'])
                && n.len() <= 255;
            if ok {
                out.push(OsString::from(n));
            }
        }
    }
    out
}

/// `DELETE /v1/recordings/{*path}`.
pub(super) async fn delete(State(app): State<App>, Path(p): Path<String>) -> Response {
    let root = app.host.settings().storage.clone();
    let rooms = rooms_files(&app);
    if let Some((id, true)) = rooms.get(p.as_str()) {
        if check_path(&p).is_ok() {
            return error(
                StatusCode::CONFLICT,
                codes::ALREADY_STARTED,
                format!("path: mixer {id} is recording it"),
            );
        }
    }
    let res = blocking(move || -> Result<Vec<String>, ApiError> {
        let (d, name, f) = open_recording(&root, &p)?;
        // a playlist's own segments go with it: the names it lists that are segments of its
        // stem by the rule the listing hides them by (a hand-edited playlist naming another
        // recording does not get that one deleted)
        let mut side = Vec::new();
        if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".m3u8")) {
            let stems = [stem.to_string()];
            side = playlist_files(&f)
                .into_iter()
                .filter(|s| s.to_str().is_some_and(|s| is_segment(s, &stems)))
                .collect();
        }
        drop(f);
        d.unlink(&name).map_err(|e| io_err(&e))?;
        let prefix = p.rsplit_once('/').map(|(a, _)| format!("{a}/"));
        let mut deleted = vec![p.clone()];
        for s in side {
            // only regular files (a symlink or anything else there is left alone)
            let regular =
                matches!(d.stat(&s), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFREG);
            if regular && d.unlink(&s).is_ok() {
                deleted.push(format!(
                    "{}{}",
                    prefix.as_deref().unwrap_or(""),
                    OsStr::new(&s).to_string_lossy()
                ));
            }
        }
        Ok(deleted)
    })
    .await;
    match res {
        Ok(Ok(deleted)) => Json(json!({"deleted": deleted})).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_ranges_dates() {
        for bad in [
            "",
            "/etc/passwd",
            "../x.mp4",
            "a/../x.mp4",
            "a//x.mp4",
            "./x.mp4",
            "a\\x.mp4",
            "a\0.mp4",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a".repeat(256)).is_err());
        assert!(check_path(&format!("{}/x.mp4", ["a"; 2100].join("/"))).is_err());
        let Ok((d, n)) = check_path("2021/09/rec.mp4") else {
            panic!("refused")
        };
        assert_eq!(
            (d, n),
            (PathBuf::from("2021/09"), OsString::from("rec.mp4"))
        );
        assert_eq!(range(Some("bytes=0-9"), 100), Some(Ok((0, 9))));
        assert_eq!(range(Some("bytes=90-"), 100), Some(Ok((90, 99))));
        assert_eq!(range(Some("bytes=-10"), 100), Some(Ok((90, 99))));
        assert_eq!(range(Some("bytes=-200"), 100), Some(Ok((0, 99))));
        assert_eq!(range(Some("bytes=50-500"), 100), Some(Ok((50, 99))));
        assert_eq!(range(Some("bytes=100-"), 100), Some(Err(())));
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), None);
        assert_eq!(range(Some("items=0-1"), 100), None);
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert!(is_segment("rec_3.ts", &["rec".into()]));
        assert!(is_segment("rec_init.mp4", &["rec".into()]));
        assert!(!is_segment("rec_1.mp4", &["rec".into()]));
        assert!(!is_segment("other_3.ts", &["rec".into()]));
        assert_eq!(content_type("a.MKV"), Some("video/x-matroska"));
        assert_eq!(content_type("a.mp4.upload.json"), None);
        assert_eq!(content_type("a.mp4.tmp"), None);
    }
}
