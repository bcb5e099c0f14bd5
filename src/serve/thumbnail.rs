//! `GET /v1/recordings/{path}/thumbnail.jpg`: one frame of a recording, from 10 % into it,
//! 320 pixels wide, as a JPEG; cached by (path, size, modification time).
//!
//! The file is opened like a download (confined to the storage root, no symlinks, a regular
//! file with a media extension) and read by FFmpeg through that descriptor, held to the
//! demuxers of the containers the recorder writes. A playlist (`.m3u8`) or an audio-only file
//! has no thumbnail (404). A recording still being written has no declared duration yet: its
//! first frame is shown, and not cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::recordings::{open_recording, FORMATS};
use super::{blocking, ApiError, App};
use crate::media::decode::Decoder;
use crate::media::jpeg::{encode_jpeg, shrink};
use crate::model::events::codes;

/// Thumbnail width in pixels.
pub const WIDTH: u32 = 320;
/// How far into a recording the thumbnail's frame is, in percent of its duration.
pub const AT_PERCENT: u32 = 10;
/// Thumbnails kept in memory, at most (about 10–20 KB each).
const CACHE_MAX: usize = 2048;

/// Encoded thumbnails by (path, size, mtime).
pub(super) type ThumbCache = Arc<Mutex<HashMap<(String, u64, i64), Bytes>>>;

fn no_picture(why: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        codes::PARAM_ERR,
        format!("path: no picture ({why})"),
    )
}

/// Decodes the frame at [`AT_PERCENT`] of the recording `rel` and encodes it.
fn make(root: &std::path::Path, rel: &str, cache: &ThumbCache) -> Result<Bytes, ApiError> {
    let (_, name, file) = open_recording(root, rel)?;
    let md = file.metadata().map_err(|_| no_picture("unreadable"))?;
    let key = {
        use std::os::unix::fs::MetadataExt;
        (
            rel.to_string(),
            md.len(),
            md.mtime() * 1000 + md.mtime_nsec() / 1_000_000,
        )
    };
    if let Some(j) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(j.clone());
    }
    if name.to_string_lossy().ends_with(".m3u8") {
        return Err(no_picture("a playlist"));
    }
    let mut dec = Decoder::open_file(&file, std::path::Path::new(rel), FORMATS)
        .map_err(|_| no_picture("no video stream that can be decoded"))?;
    let duration = dec.duration();
    let at = duration.map_or(Duration::ZERO, |d| d * AT_PERCENT / 100);
    dec.seek(at).map_err(|_| no_picture("cannot seek"))?;
    let frame = match dec.next_frame() {
        Ok(Some(f)) => f,
        // a file shorter than its declared duration: its first frame
        _ => {
            let mut d = Decoder::open_file(&file, std::path::Path::new(rel), FORMATS)
                .map_err(|_| no_picture("no video stream that can be decoded"))?;
            match d.next_frame() {
                Ok(Some(f)) => f,
                _ => return Err(no_picture("no frame decoded")),
            }
        }
    };
    let jpg = shrink(&frame, WIDTH)
        .and_then(|img| encode_jpeg(&img, 5))
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                e.to_string(),
            )
        })?;
    let jpg = Bytes::from(jpg);
    if duration.is_some() {
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_MAX {
            c.clear();
        }
        c.insert(key, jpg.clone());
    }
    Ok(jpg)
}

/// Answers the thumbnail of the recording at `rel` (the path without `/thumbnail.jpg`).
pub(super) async fn get(app: App, rel: String) -> Response {
    let root = app.host.settings().storage.clone();
    let cache = app.thumbs.clone();
    match blocking(move || make(&root, &rel, &cache)).await {
        Ok(Ok(jpg)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            jpg,
        )
            .into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(r) => r,
    }
}
