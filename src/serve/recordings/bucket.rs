//! The bucket side of the recordings API (feature `upload`): list, read and delete objects in
//! the upload targets the host knows ([`crate::host::Host::upload_targets`]), with the
//! uploader's S3 client (see the [parent module](super) for the rules).

use std::future::poll_fn;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt};
use serde_json::{json, Value};

use super::{content_type, http_date, if_none_match, not_found, range, BucketObject};
use crate::model::config::StorageSettings;
use crate::model::events::codes;
use crate::output::upload::{describe_error, s3_client, scrub_keys};

/// How long one bucket's listing, `HEAD` or delete may take.
pub const BUCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// Objects listed per bucket, at most (the rest is named in `errors`).
pub const MAX_OBJECTS: usize = 100_000;

/// What names a bucket in an answer: `{"bucket", "endpoint", "region"}` (no credentials: an
/// endpoint with `user:password@` is refused when the room is created).
pub(super) fn label(t: &StorageSettings) -> Value {
    let endpoint = match t.resolved_endpoint() {
        Ok(Some((url, _))) => json!(url),
        _ => Value::Null,
    };
    json!({"bucket": t.bucket, "endpoint": endpoint, "region": t.region})
}

/// An `errors` entry: the bucket and what went wrong (without the target's keys).
pub(super) fn error_entry(t: &StorageSettings, what: &str) -> Value {
    let mut v = label(t);
    v["error"] = json!(scrub_keys(what, t));
    v
}

/// The targets by bucket (vendor, endpoint, region, bucket), each with its credentials
/// newest first: indexes into `targets`, buckets in the order of their newest target.
fn groups(targets: &[StorageSettings]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let same = |g: &Vec<usize>| {
            let a = &targets[g[0]];
            a.vendor == t.vendor
                && a.endpoint == t.endpoint
                && a.region == t.region
                && a.bucket == t.bucket
        };
        match out.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(i),
            None => out.push(vec![i]),
        }
    }
    out
}

/// The objects of every bucket (keys under `prefix`'s folder), the buckets listed at once,
/// each with its credentials newest first until one works, all within [`BUCKET_TIMEOUT`]; a
/// bucket that no credential lists (or not in time) is an `errors` entry (the newest
/// credential's error), the others are still listed.
pub(super) async fn list(
    targets: &[StorageSettings],
    prefix: &str,
) -> (Vec<BucketObject>, Vec<Value>) {
    let mut tasks = tokio::task::JoinSet::new();
    for (n, g) in groups(targets).into_iter().enumerate() {
        let ts: Vec<(usize, StorageSettings)> =
            g.iter().map(|&i| (i, targets[i].clone())).collect();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let mut first_err: Option<String> = None;
            let tries = async {
                for (i, t) in &ts {
                    match list_one(t, &prefix).await {
                        Ok(r) => return Some((*i, r)),
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                None
            };
            let r = match tokio::time::timeout(BUCKET_TIMEOUT, tries).await {
                Ok(Some((i, r))) => Ok((i, r)),
                Ok(None) => Err(first_err.unwrap_or_default()),
                Err(_) => Err(format!(
                    "the listing took longer than {} s",
                    BUCKET_TIMEOUT.as_secs()
                )),
            };
            (n, ts[0].1.clone(), r)
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(x) = r {
            done.push(x);
        }
    }
    // in the order of the buckets (newest first): a key in several buckets is the first's
    done.sort_by_key(|(n, _, _)| *n);
    let (mut objects, mut errors) = (Vec::new(), Vec::new());
    for (_, t, r) in done {
        match r {
            Ok((i, (metas, truncated))) => {
                if truncated {
                    errors.push(error_entry(
                        &t,
                        &format!(
                            "the listing stopped after {MAX_OBJECTS} objects; narrow it with prefix"
                        ),
                    ));
                }
                objects.extend(metas.into_iter().map(|m| BucketObject {
                    key: m.location.to_string(),
                    size: m.size,
                    modified: m.last_modified.timestamp_millis(),
                    target: i,
                }));
            }
            Err(e) => {
                let e = scrub_keys(&e, &t);
                tracing::warn!("recordings: bucket {:?}: {e}", t.bucket);
                errors.push(error_entry(&t, &e));
            }
        }
    }
    (objects, errors)
}

/// The objects of one target under `prefix`'s folder (`a/b/c` lists under `a/b/`), and
/// whether the listing stopped at [`MAX_OBJECTS`].
async fn list_one(t: &StorageSettings, prefix: &str) -> Result<(Vec<ObjectMeta>, bool), String> {
    let store = s3_client(t, Some(BUCKET_TIMEOUT)).map_err(|e| scrub_keys(&e.to_string(), t))?;
    let folder = match prefix.rsplit_once('/') {
        Some((d, _)) if !d.is_empty() => match ObjectPath::parse(d) {
            Ok(p) => Some(p),
            // no key that parses lies under it
            Err(_) => return Ok((Vec::new(), false)),
        },
        _ => None,
    };
    let mut s = store.list(folder.as_ref());
    let mut out = Vec::new();
    while let Some(r) = poll_fn(|cx| s.as_mut().poll_next(cx)).await {
        out.push(r.map_err(|e| describe_error(&e, t))?);
        if out.len() >= MAX_OBJECTS {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

/// The object at `key` in `t`: `Ok(None)` when there is none.
async fn head(t: &StorageSettings, key: &str) -> Result<Option<ObjectMeta>, String> {
    let Ok(loc) = ObjectPath::parse(key) else {
        return Ok(None);
    };
    let store = s3_client(t, Some(BUCKET_TIMEOUT)).map_err(|e| scrub_keys(&e.to_string(), t))?;
    match tokio::time::timeout(BUCKET_TIMEOUT, store.head(&loc)).await {
        Err(_) => Err(format!("no answer within {} s", BUCKET_TIMEOUT.as_secs())),
        Ok(Ok(m)) => Ok(Some(m)),
        Ok(Err(object_store::Error::NotFound { .. })) => Ok(None),
        Ok(Err(e)) => Err(describe_error(&e, t)),
    }
}

/// The object at `key` in one bucket, asked with its credentials newest first until one
/// answers: the target that answered and what it said, or the newest credential's error.
async fn head_in(
    targets: &[StorageSettings],
    group: &[usize],
    key: &str,
) -> Result<(usize, Option<ObjectMeta>), String> {
    let mut first_err = None;
    for &i in group {
        match head(&targets[i], key).await {
            Ok(m) => return Ok((i, m)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_default())
}

pub(super) fn bad_gateway(errors: Vec<Value>) -> Response {
    let msg = errors
        .iter()
        .map(|e| {
            format!(
                "bucket {}: {}",
                e["bucket"].as_str().unwrap_or(""),
                e["error"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    (
        StatusCode::BAD_GATEWAY,
        axum::Json(json!({"code": codes::INTERNAL, "error": msg, "errors": errors})),
    )
        .into_response()
}

/// `GET /v1/recordings/{key}` from the first bucket that has the object (newest first, each
/// asked with the first of its credentials that answers):
/// `Range`, `ETag`/`If-None-Match` as for a local file. 404 when no bucket has it, 502 when
/// none has it and a bucket could not be asked.
pub(super) async fn download(
    targets: &[StorageSettings],
    key: &str,
    headers: &HeaderMap,
) -> Response {
    let mut errors = Vec::new();
    let mut found = None;
    for g in groups(targets) {
        match head_in(targets, &g, key).await {
            Ok((i, Some(m))) => {
                found = Some((&targets[i], m));
                break;
            }
            Ok((_, None)) => {}
            Err(e) => errors.push(error_entry(&targets[g[0]], &e)),
        }
    }
    let Some((t, meta)) = found else {
        return if errors.is_empty() {
            not_found().into_response()
        } else {
            bad_gateway(errors)
        };
    };
    let size = meta.size;
    let etag = match &meta.e_tag {
        Some(e) if e.starts_with('"') || e.starts_with("W/") => e.clone(),
        Some(e) => format!("\"{e}\""),
        None => format!("\"{:x}-{:x}\"", size, meta.last_modified.timestamp_millis()),
    };
    let name = key.rsplit('/').next().unwrap_or(key);
    let ctype = content_type(name).unwrap_or("application/octet-stream");
    let resp = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(
            header::LAST_MODIFIED,
            http_date(meta.last_modified.timestamp()),
        )
        .header("x-recording-where", "bucket");
    if if_none_match(headers, &etag) {
        return resp
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| not_found().into_response());
    }
    let r = range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let resp = resp.header(header::CONTENT_TYPE, ctype);
    let (status, a, len) = match r {
        Some(Err(())) => {
            return resp
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_else(|_| not_found().into_response());
        }
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if len == 0 {
        Body::empty()
    } else {
        // the object read is the one the HEAD saw (If-Match), else the request fails
        let mut opts = GetOptions::new().with_range(Some(a..a + len));
        if let Some(e) = &meta.e_tag {
            opts = opts.with_if_match(Some(e.clone()));
        }
        let store = match s3_client(t, None) {
            Ok(s) => s,
            Err(e) => return bad_gateway(vec![error_entry(t, &e.to_string())]),
        };
        let got = tokio::time::timeout(BUCKET_TIMEOUT, store.get_opts(&meta.location, opts)).await;
        match got {
            Ok(Ok(g)) => Body::from_stream(g.into_stream()),
            Ok(Err(object_store::Error::NotFound { .. })) => return not_found().into_response(),
            Ok(Err(e)) => return bad_gateway(vec![error_entry(t, &describe_error(&e, t))]),
            Err(_) => {
                return bad_gateway(vec![error_entry(
                    t,
                    &format!("no answer within {} s", BUCKET_TIMEOUT.as_secs()),
                )])
            }
        }
    };
    let mut resp = resp
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .header("x-recording-bucket", t.bucket.as_str());
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {a}-{}/{size}", a + len - 1),
        );
    }
    resp.body(body)
        .unwrap_or_else(|_| not_found().into_response())
}

/// Deletes `key` in every bucket that has it (asked with the first of its credentials that
/// answers): the `{"bucket", "endpoint", "region", "key"}` of each object deleted, and the
/// `errors` of the buckets that could not be asked or refused.
pub(super) async fn delete(targets: &[StorageSettings], key: &str) -> (Vec<Value>, Vec<Value>) {
    let (mut deleted, mut errors) = (Vec::new(), Vec::new());
    for g in groups(targets) {
        let (t, meta) = match head_in(targets, &g, key).await {
            Ok((i, Some(m))) => (&targets[i], m),
            Ok((_, None)) => continue,
            Err(e) => {
                errors.push(error_entry(&targets[g[0]], &e));
                continue;
            }
        };
        let store = match s3_client(t, Some(BUCKET_TIMEOUT)) {
            Ok(s) => s,
            Err(e) => {
                errors.push(error_entry(t, &e.to_string()));
                continue;
            }
        };
        match tokio::time::timeout(BUCKET_TIMEOUT, store.delete(&meta.location)).await {
            Ok(Ok(())) => {
                let mut v = label(t);
                v["key"] = json!(key);
                deleted.push(v);
            }
            Ok(Err(e)) => errors.push(error_entry(t, &describe_error(&e, t))),
            Err(_) => errors.push(error_entry(
                t,
                &format!("no answer within {} s", BUCKET_TIMEOUT.as_secs()),
            )),
        }
    }
    (deleted, errors)
}
