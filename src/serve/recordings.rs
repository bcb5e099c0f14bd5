//! The recordings the service knows: the files under its storage root (`--storage`) and the
//! objects in the buckets it uploaded to (`storageConfig`); list, download, delete.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/recordings?prefix=&from=&to=&mixerID=&where=&page=&pageSize=` | the recordings, newest first, `{"total","page","pageSize","recordings":[…]}` (+ `"errors"` of buckets that could not be listed) |
//! | `GET /v1/recordings/{*path}?where=local\|bucket` | the recording's bytes, from the local file, else from a bucket; `Range` (one range), `ETag`/`If-None-Match` |
//! | `GET /v1/recordings/{*path}/thumbnail.jpg` | a frame from 10 % in, 320 px wide ([`super::thumbnail`]) |
//! | `DELETE /v1/recordings/{*path}?where=local\|bucket\|all` | deletes the local file (and an HLS playlist's segments) and/or the bucket objects (default `all`) |
//!
//! A recording is a regular file with a media extension ([`MEDIA_EXT`]); side files (upload
//! journals, `*.tmp`) and an HLS playlist's segments (`stem_N.ts`, `stem_N.m4s`,
//! `stem_init.mp4` next to `stem.m3u8`) are not listed. `from`/`to` are Unix milliseconds
//! (`modified` is too), inclusive.
//!
//! **Buckets.** The buckets are the upload targets the host knows
//! ([`crate::host::Host::upload_targets`]): the `storageConfig` of every room this process
//! created (the same target as the uploads it resumed from the journals under the root, which
//! are resumed when a room with that target is created), newest first. A bucket (vendor,
//! endpoint, region, bucket) may come with several credentials: each request tries them
//! newest first until one gets an answer, so a room created with a wrong key does not hide a
//! bucket another key reads. A process that has not created a room yet knows no bucket:
//! journals name the bucket but carry no credentials, so an embedder that wants a bucket
//! listed from the start gives it to [`crate::host::Host::add_upload_target`] (`cloudmixer
//! serve --bucket-config FILE`). Upload keys
//! are the output's path under the storage root (`svrPathName` without its leading `/`), and
//! the bucket has no prefix of its own, so a file's path and its object's key are the same
//! string: the listing merges the two by it. An object's key goes through the same path rule
//! as a local path (below): one the rule refuses is neither listed nor reachable.
//!
//! **Listing.** Each recording: `path`, `where` (`local`, `uploaded` or `both`; the `where`
//! filter takes the same words), `size` and `modified` (of the local file when there is one,
//! else of the object), `bucket` (the first bucket holding it), `state`, and what is known of
//! its contents. `state` is the room's view when a room of this process wrote it
//! (`recording`, `final`, `failed`, `uploading` with `progress` 0–100, `uploaded`,
//! `uploadFailed` with `errCode`/`errDesc`; with `mixerID`, `startTime`, `duration`), else
//! `uploadPending` (a local file with an upload journal next to it), `uploaded` (an object in
//! a bucket) or `final`. `duration` (ms), `width`, `height` and `codecs` are read by FFmpeg
//! from a local file that is not being written (cached by path, size and time); an object
//! only in a bucket is not downloaded to be probed. Each bucket is listed at once with a
//! limit of 10 s and at most 100 000 objects (only under
//! `prefix`'s folder): a bucket that fails (store down, credentials refused, too slow) does
//! not fail the answer: it has the local files and the other buckets' objects, and
//! `"errors": [{"bucket","endpoint","region","error"}]`.
//!
//! **Download.** The local file when there is one (`?where=local` only it); else the object
//! of the first bucket that has it (`?where=bucket` only there), streamed from the store:
//! `HEAD` gives size, `ETag` (the object's) and `Last-Modified`; `Range` is answered as for a
//! local file (206 / 416 / whole) and passed to the store as a ranged `GET` (with `If-Match`
//! on the object's ETag, so the bytes are those of the object the headers describe). The
//! header `x-recording-where` says `local` or `bucket`. No presigned URLs: a presigned URL
//! carries the access key id, and no key leaves the service. 404 when nothing has it, 502
//! when no bucket has it and one could not be asked.
//!
//! **Delete.** `?where=local`, `bucket` or `all` (default). 409 while a room of this process
//! still writes or uploads the file (a room's output in a state before `uploaded` /
//! `uploadFailed` while the room runs), whatever `where` says, and for a local delete while
//! an uploader holds the file's journal (a resumed upload); a local file's upload journal
//! (`<file>.upload.json`) is removed with it (its pending upload is dropped). 404 when
//! nothing was deleted and nothing failed; 502 when nothing was deleted and a bucket could
//! not be asked. The
//! answer: `{"deleted": [local paths], "bucket": [{"bucket","endpoint","region","key"}]}`
//! (`bucket` when the host knows a bucket) and `errors` when a bucket failed.
//!
//! **Secrets.** No answer, log line or error text carries a target's access key or secret
//! key: errors are the uploader's descriptions with both keys replaced by `***`.
//!
//! **Confinement.** A path is `/`-separated plain names under the root: an empty, `.` or `..`
//! component, a backslash, a NUL, a component over 255 bytes or a path over 4096 bytes is
//! refused (400) before anything is opened (percent-encoded forms are decoded first, then
//! checked). The file is reached with the storage module's
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

use std::collections::{HashMap, HashSet};
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
use crate::model::config::StorageSettings;
use crate::model::events::{codes, OutputInfo, OutputState};
use crate::output::storage::Dir;
use crate::output::upload::JOURNAL_SUFFIX;
use crate::output::{MuxError, Storage};

#[cfg(feature = "upload")]
mod bucket;

/// Without the `upload` feature there are no buckets (a `storageConfig` is refused at create,
/// so the host knows no target).
#[cfg(not(feature = "upload"))]
mod bucket {
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    use serde_json::Value;

    use super::{not_found, BucketObject};
    use crate::model::config::StorageSettings;

    pub(super) async fn list(_: &[StorageSettings], _: &str) -> (Vec<BucketObject>, Vec<Value>) {
        (Vec::new(), Vec::new())
    }

    pub(super) async fn download(_: &[StorageSettings], _: &str, _: &HeaderMap) -> Response {
        not_found().into_response()
    }

    pub(super) async fn delete(_: &[StorageSettings], _: &str) -> (Vec<Value>, Vec<Value>) {
        (Vec::new(), Vec::new())
    }

    pub(super) fn bad_gateway(_: Vec<Value>) -> Response {
        not_found().into_response()
    }
}

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

/// What a room of this service says about one of its files.
struct RoomFile {
    mixer_id: String,
    /// The room has not ended (its mixer state is not NULL).
    running: bool,
    info: OutputInfo,
}

impl RoomFile {
    /// The room still writes or uploads the file (or will upload it).
    fn busy(&self) -> bool {
        self.running
            && !matches!(
                self.info.state,
                OutputState::Uploaded | OutputState::UploadFail | OutputState::Fail
            )
    }

    fn state(&self) -> &'static str {
        match self.info.state {
            OutputState::Running => "recording",
            OutputState::Null if self.running => "recording",
            OutputState::Null | OutputState::Stopped => "final",
            OutputState::Fail => "failed",
            OutputState::Uploading => "uploading",
            OutputState::Uploaded => "uploaded",
            OutputState::UploadFail => "uploadFailed",
        }
    }
}

/// The files of the rooms of this service by path under the root (= object key).
fn rooms_files(app: &App) -> HashMap<String, RoomFile> {
    let mut m = HashMap::new();
    for r in app.host.list() {
        let running = r.state != 0;
        for o in &r.outputs {
            let rel = o.svr_file_path_name.trim_start_matches('/').to_string();
            if !rel.is_empty() {
                m.insert(
                    rel,
                    RoomFile {
                        mixer_id: r.mixer_id.clone(),
                        running,
                        info: o.clone(),
                    },
                );
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
    /// An upload journal lies next to it.
    pending: bool,
}

/// One object found in a bucket.
pub(super) struct BucketObject {
    /// Its key (the path under the storage root of the file it was uploaded from).
    pub(super) key: String,
    pub(super) size: u64,
    /// Unix milliseconds.
    pub(super) modified: i64,
    /// Which of the host's upload targets holds it.
    pub(super) target: usize,
}

/// One recording: the local file and/or the bucket object of one path.
struct Entry {
    rel: String,
    local: Option<Found>,
    object: Option<BucketObject>,
}

impl Entry {
    fn modified(&self) -> i64 {
        match (&self.local, &self.object) {
            (Some(f), _) => f.modified,
            (None, Some(o)) => o.modified,
            (None, None) => 0,
        }
    }

    fn place(&self) -> &'static str {
        match (&self.local, &self.object) {
            (Some(_), Some(_)) => "both",
            (None, Some(_)) => "uploaded",
            _ => "local",
        }
    }
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
    let journals: HashSet<String> = names
        .iter()
        .filter_map(|n| n.to_str()?.strip_suffix(JOURNAL_SUFFIX).map(str::to_string))
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
                    pending: journals.contains(name),
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

/// The objects that are recordings: keys the path rule takes, with a media extension, not an
/// HLS segment of a playlist next to them (as for local files).
fn bucket_recordings(objects: Vec<BucketObject>) -> Vec<BucketObject> {
    let split = |k: &str| -> (String, String) {
        match k.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), k.to_string()),
        }
    };
    let mut playlists: HashMap<(usize, String), Vec<String>> = HashMap::new();
    for o in &objects {
        let (d, n) = split(&o.key);
        if let Some(stem) = n.strip_suffix(".m3u8") {
            playlists
                .entry((o.target, d))
                .or_default()
                .push(stem.to_string());
        }
    }
    objects
        .into_iter()
        .filter(|o| {
            let (d, n) = split(&o.key);
            check_path(&o.key).is_ok()
                && content_type(&n).is_some()
                && !playlists
                    .get(&(o.target, d))
                    .is_some_and(|p| is_segment(&n, p))
        })
        .collect()
}

/// A recording as listed (see the module docs); `meta` is what FFmpeg read from the file.
fn describe(
    e: &Entry,
    rooms: &HashMap<String, RoomFile>,
    targets: &[StorageSettings],
    meta: Option<Value>,
) -> Value {
    let size = match (&e.local, &e.object) {
        (Some(f), _) => f.size,
        (None, Some(o)) => o.size,
        (None, None) => 0,
    };
    let mut v = json!({"path": e.rel, "where": e.place(), "size": size,
        "modified": e.modified()});
    if let Some(t) = e.object.as_ref().and_then(|o| targets.get(o.target)) {
        v["bucket"] = json!(t.bucket);
    }
    let pending = e.local.as_ref().is_some_and(|f| f.pending);
    if let Some(Value::Object(m)) = meta {
        for (k, x) in m {
            v[k] = x;
        }
    }
    match rooms.get(&e.rel) {
        Some(r) => {
            v["mixerID"] = json!(r.mixer_id);
            let st = r.state();
            v["state"] = json!(if st == "final" && pending {
                "uploadPending"
            } else {
                st
            });
            if let Some(p) = r.info.progress.filter(|_| st == "uploading") {
                v["progress"] = json!(p);
            }
            if r.info.err_code != 0 {
                v["errCode"] = json!(r.info.err_code);
                v["errDesc"] = json!(r.info.err_desc);
            }
            if r.info.start_time > 0 {
                v["startTime"] = json!(r.info.start_time);
            }
            if r.info.duration > 0 && v.get("duration").is_none() {
                v["duration"] = json!(r.info.duration);
            }
        }
        None => {
            v["state"] = json!(if pending {
                "uploadPending"
            } else if e.object.is_some() {
                "uploaded"
            } else {
                "final"
            });
        }
    }
    v
}

/// What FFmpeg reads from the local file at `rel`, cached by (path, size, mtime).
fn probe_cached(root: &FsPath, f: &Found, cache: &ProbeCache) -> Option<Value> {
    let key = (f.rel.clone(), f.size, f.modified);
    let hit = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    hit.or_else(|| {
        let (_, _, file) = open_recording(root, &f.rel).ok()?;
        let m = probe(&file, &f.rel);
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() > 10_000 {
            c.clear();
        }
        c.insert(key, m.clone());
        Some(m)
    })
}

/// `GET /v1/recordings`.
pub(super) async fn list(
    State(app): State<App>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let mut prefix = String::new();
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    let mut mixer: Option<String> = None;
    let mut place: Option<&'static str> = None;
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
            "where" => match v.as_str() {
                "local" => place = Some("local"),
                "uploaded" => place = Some("uploaded"),
                "both" => place = Some("both"),
                _ => return query_err("where", "expected local, uploaded or both"),
            },
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
    let targets = app.host.upload_targets();
    let root2 = root.clone();
    let local = blocking(move || {
        let mut all = Vec::new();
        if let Ok(d) = Storage::new(&root2).root_dir() {
            walk(&d, "", 0, &mut all);
        }
        all
    });
    let (local, (objects, errors)) = tokio::join!(local, bucket::list(&targets, &prefix));
    let local = match local {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut merged: HashMap<String, Entry> = HashMap::new();
    for f in local {
        merged.insert(
            f.rel.clone(),
            Entry {
                rel: f.rel.clone(),
                local: Some(f),
                object: None,
            },
        );
    }
    // in target order: a key in several buckets is shown with the newest target's
    for o in bucket_recordings(objects) {
        let e = merged.entry(o.key.clone()).or_insert_with(|| Entry {
            rel: o.key.clone(),
            local: None,
            object: None,
        });
        if e.object.is_none() {
            e.object = Some(o);
        }
    }
    let mut all: Vec<Entry> = merged
        .into_values()
        .filter(|e| e.rel.starts_with(&prefix))
        .filter(|e| (from..=to).contains(&e.modified()))
        .filter(|e| match &mixer {
            Some(m) => rooms.get(&e.rel).is_some_and(|r| r.mixer_id == *m),
            None => true,
        })
        .filter(|e| place.is_none_or(|p| e.place() == p))
        .collect();
    all.sort_by(|a, b| b.modified().cmp(&a.modified()).then(a.rel.cmp(&b.rel)));
    let total = all.len();
    let items: Vec<Entry> = all
        .into_iter()
        .skip((page - 1).saturating_mul(page_size))
        .take(page_size)
        .collect();
    let res = blocking(move || {
        items
            .iter()
            .map(|e| {
                let busy = rooms.get(&e.rel).is_some_and(RoomFile::busy);
                let meta = match &e.local {
                    Some(f) if !busy => probe_cached(&root, f, &cache),
                    _ => None,
                };
                describe(e, &rooms, &targets, meta)
            })
            .collect::<Vec<Value>>()
    })
    .await;
    match res {
        Ok(items) => {
            let mut v =
                json!({"total": total, "page": page, "pageSize": page_size, "recordings": items});
            if !errors.is_empty() {
                v["errors"] = json!(errors);
            }
            Json(v).into_response()
        }
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

/// Whether `If-None-Match` names `etag` (or is `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.trim() == "*"
                || inm
                    .split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag.trim_start_matches("W/"))
        })
}

/// `?where=` of a download or delete: `None` both places, or one of `words`.
fn where_param(
    q: &[(String, String)],
    words: &[&'static str],
) -> Result<Option<&'static str>, ApiError> {
    let mut out = None;
    for (k, v) in q {
        if k == "where" {
            match words.iter().find(|w| **w == v.as_str()) {
                Some(w) => out = Some(*w),
                None => return Err(bad_request(format!("where: expected {}", words.join(", ")))),
            }
        }
    }
    Ok(out)
}

/// `GET /v1/recordings/{*path}`.
pub(super) async fn download(
    State(app): State<App>,
    Path(p): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(rec) = p.strip_suffix("/thumbnail.jpg") {
        return super::thumbnail::get(app, rec.to_string()).await;
    }
    let place = match where_param(&q, &["local", "bucket"]) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    // the same rule for a key as for a local path, before anything is asked
    if let Err(r) = check_path(&p) {
        return r.into_response();
    }
    if place != Some("bucket") {
        match download_local(&app, &p, &headers).await {
            Err(r) if r.0 == StatusCode::NOT_FOUND && place.is_none() => {}
            Ok(r) => return r,
            Err(r) => return r.into_response(),
        }
    }
    if content_type(p.rsplit('/').next().unwrap_or(&p)).is_none() {
        return not_found().into_response();
    }
    bucket::download(&app.host.upload_targets(), &p, &headers).await
}

/// The local file at `p`: `Err` 404 when there is none (400 for a refused path).
async fn download_local(app: &App, p: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let root = app.host.settings().storage.clone();
    let p2 = p.to_string();
    let opened = match blocking(move || open_recording(&root, &p2)).await {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let (_, name, file) = opened?;
    let md = file.metadata().map_err(|e| io_err(&e))?;
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
        .header(header::LAST_MODIFIED, http_date(md.mtime()))
        .header("x-recording-where", "local");
    if if_none_match(headers, &etag) {
        return Ok(resp
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| not_found().into_response()));
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
    Ok(built.unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, e)))
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

/// Unlinks the local recording at `p` (and a playlist's own segments): the paths deleted.
fn delete_local(root: &FsPath, p: &str) -> Result<Vec<String>, ApiError> {
    let (d, name, f) = open_recording(root, p)?;
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
    // its upload journal goes with it (nothing is left to upload), unless an uploader holds
    // it (a resumed upload running: it has the file open and would report it uploaded)
    let mut jn = name.clone();
    jn.push(JOURNAL_SUFFIX);
    let journal = match d.stat(&jn) {
        Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFREG => d.open_read(&jn).ok(),
        _ => None,
    };
    if let Some(j) = &journal {
        // SAFETY: flock on an open descriptor we own; released when `j` is dropped.
        let locked = unsafe { libc::flock(j.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            return Err(ApiError(
                StatusCode::CONFLICT,
                codes::ALREADY_STARTED,
                "path: an upload of it is running".into(),
            ));
        }
    }
    d.unlink(&name).map_err(|e| io_err(&e))?;
    if journal.is_some() {
        let _ = d.unlink(&jn);
    }
    let prefix = p.rsplit_once('/').map(|(a, _)| format!("{a}/"));
    let mut deleted = vec![p.to_string()];
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
}

/// `DELETE /v1/recordings/{*path}`.
pub(super) async fn delete(
    State(app): State<App>,
    Path(p): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let place = match where_param(&q, &["local", "bucket", "all"]) {
        Ok(w) => w.unwrap_or("all"),
        Err(r) => return r.into_response(),
    };
    if let Err(r) = check_path(&p) {
        return r.into_response();
    }
    let rooms = rooms_files(&app);
    if let Some(r) = rooms.get(p.as_str()).filter(|r| r.busy()) {
        let what = if r.info.state == OutputState::Running || r.state() == "recording" {
            "recording"
        } else {
            "uploading"
        };
        return error(
            StatusCode::CONFLICT,
            codes::ALREADY_STARTED,
            format!("path: mixer {} is {what} it", r.mixer_id),
        );
    }
    let mut local = Vec::new();
    if place != "bucket" {
        let root = app.host.settings().storage.clone();
        let p2 = p.clone();
        match blocking(move || delete_local(&root, &p2)).await {
            Ok(Ok(d)) => local = d,
            Ok(Err(r)) if r.0 == StatusCode::NOT_FOUND => {}
            Ok(Err(r)) => return r.into_response(),
            Err(r) => return r,
        }
    }
    let targets = app.host.upload_targets();
    let (mut objects, mut errors) = (Vec::new(), Vec::new());
    if place != "local" && content_type(p.rsplit('/').next().unwrap_or(&p)).is_some() {
        (objects, errors) = bucket::delete(&targets, &p).await;
    }
    if local.is_empty() && objects.is_empty() {
        return if errors.is_empty() {
            not_found().into_response()
        } else {
            bucket::bad_gateway(errors)
        };
    }
    let mut v = json!({"deleted": local});
    if !targets.is_empty() {
        v["bucket"] = json!(objects);
    }
    if !errors.is_empty() {
        v["errors"] = json!(errors);
    }
    Json(v).into_response()
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

    #[test]
    fn bucket_keys_and_where() {
        let o = |key: &str, target| BucketObject {
            key: key.into(),
            size: 1,
            modified: 0,
            target,
        };
        let kept: Vec<String> = bucket_recordings(vec![
            o("day/rec.mp4", 0),
            o("day/rec.mp4.upload.json", 0),
            o("hls/p.m3u8", 0),
            o("hls/p_0.ts", 0),
            // a segment name with no playlist in its own bucket is a recording there
            o("hls/p_1.ts", 1),
            o("a//b.mp4", 0),
            o("a/../b.mp4", 0),
            o("a\\b.mp4", 0),
        ])
        .into_iter()
        .map(|o| o.key)
        .collect();
        assert_eq!(kept, ["day/rec.mp4", "hls/p.m3u8", "hls/p_1.ts"]);
        let q = |v: &str| vec![("where".to_string(), v.to_string())];
        assert_eq!(
            where_param(&q("bucket"), &["local", "bucket"]).ok(),
            Some(Some("bucket"))
        );
        assert_eq!(where_param(&[], &["local", "bucket"]).ok(), Some(None));
        assert!(where_param(&q("all"), &["local", "bucket"]).is_err());
    }
}
