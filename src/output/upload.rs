//! Upload of finished recordings to S3-compatible object storage (the vendor's `storageConfig`).
//!
//! An [`Uploader`] owns a small pool of worker threads and one small tokio runtime; nothing
//! async leaks out. [`Uploader::submit`] writes a sidecar journal `<file>.upload.json` first
//! (atomically: temporary file + rename), then queues the file on a bounded queue and returns at
//! once: it never blocks a recording. A worker uploads the file as an S3 multipart upload
//! (several parts in flight), checks with a `HEAD` that the object's size equals the file's, and
//! only then deletes the local file (unless [`UploadTarget::keep_local`]) and the journal.
//!
//! Failures: network errors, timeouts and 5xx/408/429 answers are retried with exponential
//! backoff ([`UploadOptions::backoff_start`] doubling up to [`UploadOptions::backoff_max`]);
//! the parts already stored are kept, so an upload interrupted by a server restart resumes
//! where it stopped (or restarts from the first part when the server forgot the upload). The
//! retry budget ([`UploadOptions::retries`]) counts consecutive failed attempts that stored no
//! new part. Credential errors (401/403), a missing bucket and other client errors fail at
//! once. On a final failure the file and its journal are kept (a later
//! [`Uploader::resume_pending`] tries again) and [`UploadEvent::Failed`] carries
//! [`ERR_UPLOAD_FAIL`] (1107) and a description of why.
//!
//! Events map to the vendor's output states: [`UploadEvent::output_state`] gives 4 UPLOADING
//! (with `progress` 0–100, at least once per [`UploadOptions::progress_interval`]), 5 UPLOADED
//! or 6 UPLOADFAIL.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use cloudmixer::output::upload::{UploadEvent, UploadOptions, UploadTarget, Uploader};
//!
//! let target: UploadTarget = serde_json::from_str(
//!     r#"{"vendor": 1, "region": "cn-hangzhou", "bucket": "records",
//!         "accessKey": "AK", "secretKey": "SK"}"#,
//! )?;
//! let up = Uploader::new(target, UploadOptions::default(), |ev: UploadEvent| {
//!     println!("state {}: {ev:?}", ev.output_state());
//! })?;
//! up.resume_pending(Path::new("/srv/records"))?; // journals left by an earlier process
//! up.submit(Path::new("/srv/records/2021-09-24/rec.mp4"), "2021-09-24/rec.mp4")?;
//! up.wait_idle(Duration::from_secs(600));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The vendor error code of a failed upload (output state 6 UPLOADFAIL).
pub const ERR_UPLOAD_FAIL: i32 = 1107;
/// Vendor output state: uploading (with `progress`).
pub const STATE_UPLOADING: u32 = 4;
/// Vendor output state: uploaded.
pub const STATE_UPLOADED: u32 = 5;
/// Vendor output state: the upload failed.
pub const STATE_UPLOADFAIL: u32 = 6;
/// `storageConfig.vendor` of Aliyun OSS.
pub const VENDOR_ALIYUN_OSS: u32 = 1;
/// The suffix of the sidecar journal: `rec.mp4` → `rec.mp4.upload.json`.
pub const JOURNAL_SUFFIX: &str = ".upload.json";

/// S3 parts must be at least 5 MiB (except the last), and an upload has at most 10 000 parts.
const MIN_PART: usize = 5 * 1024 * 1024;
const MAX_PART: usize = 5 * 1024 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// One HTTP request (one part) may take this long before it counts as a network failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where recordings go: the vendor's `storageConfig` plus our extensions. Deserialises from the
/// vendor JSON (`vendor`, `region`, `bucket`, `accessKey`, `secretKey`, and ours: `endpoint`,
/// `keepLocal`). Its `Debug` output hides the secret key.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadTarget {
    /// 1 = Aliyun OSS (virtual-hosted style, `https://oss-{region}.aliyuncs.com` without an
    /// endpoint); anything else is plain S3 (AWS S3 of `region` without an endpoint).
    #[serde(default)]
    pub vendor: u32,
    /// The region (`cn-hangzhou` or `oss-cn-hangzhou` for OSS, `us-east-1` for AWS…); also the
    /// SigV4 signing region (empty = `us-east-1`).
    #[serde(default)]
    pub region: String,
    /// The bucket, which must exist.
    pub bucket: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// Extension: the service URL (`http://127.0.0.1:9000`, an R2 or MinIO endpoint…); path-style
    /// requests except for vendor 1.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Extension: keep the local file after a verified upload (default: delete it).
    #[serde(default)]
    pub keep_local: bool,
}

impl fmt::Debug for UploadTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadTarget")
            .field("vendor", &self.vendor)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field("endpoint", &self.endpoint)
            .field("keep_local", &self.keep_local)
            .finish()
    }
}

impl UploadTarget {
    /// The URL requests go to and whether it is virtual-hosted style (the bucket in the host
    /// name, already included in the URL); `None` for AWS S3 of `region`.
    pub fn resolved_endpoint(&self) -> Result<Option<(String, bool)>, UploadError> {
        let oss = self.vendor == VENDOR_ALIYUN_OSS;
        let url = match (&self.endpoint, oss) {
            (Some(e), _) => e.trim().trim_end_matches('/').to_string(),
            (None, true) => {
                let region = self.region.trim();
                let region = region.strip_prefix("oss-").unwrap_or(region);
                if region.is_empty() {
                    return Err(UploadError::Config(
                        "storageConfig.region is required for vendor 1 (Aliyun OSS)".into(),
                    ));
                }
                format!("https://oss-{region}.aliyuncs.com")
            }
            (None, false) => return Ok(None),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            UploadError::Config(format!(
                "storageConfig.endpoint {url:?}: not an http:// or https:// URL"
            ))
        })?;
        let host = rest.split('/').next().unwrap_or("");
        if !matches!(scheme, "http" | "https")
            || host.is_empty()
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(UploadError::Config(format!(
                "storageConfig.endpoint {url:?}: not an http:// or https:// URL"
            )));
        }
        if !oss {
            return Ok(Some((url, false)));
        }
        let prefix = format!("{}.", self.bucket);
        if host.starts_with(&prefix) {
            Ok(Some((url, true)))
        } else {
            Ok(Some((format!("{scheme}://{prefix}{rest}"), true)))
        }
    }

    fn signing_region(&self) -> String {
        let r = self.region.trim();
        if r.is_empty() {
            "us-east-1".into()
        } else {
            r.into()
        }
    }
}

/// How the uploader works; [`Default`] gives the documented values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadOptions {
    /// Files uploaded at the same time (default 2).
    pub workers: usize,
    /// Consecutive failed attempts retried before a file fails (default 5); an attempt that
    /// stored at least one new part resets the count.
    pub retries: u32,
    /// The first retry delay (default 1 s); each next one doubles.
    pub backoff_start: Duration,
    /// The longest retry delay (default 30 s).
    pub backoff_max: Duration,
    /// The size of a part (default 8 MiB; 5 MiB – 5 GiB). Grown for a file that would need more
    /// than 10 000 parts.
    pub part_size: usize,
    /// Parts of one file in flight at once (default 4).
    pub part_concurrency: usize,
    /// The longest time between two [`UploadEvent::Progress`] of a running upload (default
    /// 1 s); zero reports every stored part (and still ticks every 10 ms).
    pub progress_interval: Duration,
    /// Files waiting for a worker before [`Uploader::submit`] refuses more (default 64).
    pub queue: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            workers: 2,
            retries: 5,
            backoff_start: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            part_size: 8 * 1024 * 1024,
            part_concurrency: 4,
            progress_interval: Duration::from_secs(1),
            queue: 64,
        }
    }
}

/// What the uploader reports, from its worker threads.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadEvent {
    /// A worker began (or resumed) the upload of `file`.
    Started {
        /// The local file.
        file: PathBuf,
        /// The object key.
        key: String,
    },
    /// Bytes stored so far (0–100 %); sent at least once per `progress_interval`. It goes back
    /// only when the server forgot a partial upload and it starts again.
    Progress {
        /// The local file.
        file: PathBuf,
        /// The object key.
        key: String,
        /// 0–100.
        percent: f64,
        /// Bytes stored.
        bytes: u64,
    },
    /// An attempt failed with a retryable error; the next one starts after `delay`.
    Retrying {
        /// The local file.
        file: PathBuf,
        /// The object key.
        key: String,
        /// The consecutive failed attempts so far (1 = the first retry follows).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// Why the attempt failed.
        desc: String,
    },
    /// The object is stored and its size checked; the local file (unless kept) and the journal
    /// are gone.
    Uploaded {
        /// The local file.
        file: PathBuf,
        /// The object key.
        key: String,
        /// The object's size in bytes.
        size: u64,
    },
    /// The upload failed for good; the file and its journal are kept.
    Failed {
        /// The local file.
        file: PathBuf,
        /// The object key.
        key: String,
        /// [`ERR_UPLOAD_FAIL`] (1107).
        code: i32,
        /// Why, e.g. "access denied (check accessKey/secretKey): SignatureDoesNotMatch".
        desc: String,
    },
}

impl UploadEvent {
    /// The vendor output state: 4 UPLOADING (Started, Progress, Retrying), 5 UPLOADED,
    /// 6 UPLOADFAIL.
    pub fn output_state(&self) -> u32 {
        match self {
            UploadEvent::Started { .. }
            | UploadEvent::Progress { .. }
            | UploadEvent::Retrying { .. } => STATE_UPLOADING,
            UploadEvent::Uploaded { .. } => STATE_UPLOADED,
            UploadEvent::Failed { .. } => STATE_UPLOADFAIL,
        }
    }

    /// The local file the event is about.
    pub fn file(&self) -> &Path {
        match self {
            UploadEvent::Started { file, .. }
            | UploadEvent::Progress { file, .. }
            | UploadEvent::Retrying { file, .. }
            | UploadEvent::Uploaded { file, .. }
            | UploadEvent::Failed { file, .. } => file,
        }
    }
}

/// Why the uploader refused something (failures of an upload itself are
/// [`UploadEvent::Failed`]).
#[derive(Debug, Error)]
pub enum UploadError {
    /// A bad `storageConfig` or option (endpoint URL, empty bucket, part size…).
    #[error("upload config: {0}")]
    Config(String),
    /// An object key that S3 cannot store.
    #[error("bad object key {key:?}: {reason}")]
    Key {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A file that is missing, not a regular file or unreadable.
    #[error("cannot upload {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The journal could not be written or read.
    #[error("upload journal {path}: {reason}")]
    Journal {
        /// The journal file.
        path: String,
        /// The OS or JSON error.
        reason: String,
    },
    /// The queue is full: the journal is written, a later `resume_pending` picks the file up.
    #[error("upload queue full, {path} left for a later resume")]
    QueueFull {
        /// The file.
        path: String,
    },
    /// Threads or the runtime could not start.
    #[error("uploader: {0}")]
    Runtime(String),
}

impl UploadError {
    /// The vendor error code ([`ERR_UPLOAD_FAIL`]).
    pub fn code(&self) -> i32 {
        ERR_UPLOAD_FAIL
    }
}

/// The sidecar journal `<file>.upload.json`: the file is pending until it is gone.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    version: u32,
    key: String,
    size: u64,
    bucket: String,
    created_ms: u64,
}

fn journal_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(JOURNAL_SUFFIX);
    PathBuf::from(s)
}

fn write_journal(path: &Path, j: &Journal) -> Result<(), UploadError> {
    let err = |e: std::io::Error| UploadError::Journal {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let body = serde_json::to_vec_pretty(j).expect("journal serialises");
    {
        use std::io::Write;
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

fn read_journal(path: &Path) -> Result<Journal, UploadError> {
    let err = |reason: String| UploadError::Journal {
        path: path.display().to_string(),
        reason,
    };
    let body = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| err(e.to_string()))
}

fn parse_key(key: &str) -> Result<ObjectPath, UploadError> {
    let bad = |reason: &str| UploadError::Key {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = key.strip_prefix('/').unwrap_or(key);
    if trimmed.is_empty() || trimmed.ends_with('/') {
        return Err(bad("empty, or ends with '/'"));
    }
    ObjectPath::parse(trimmed).map_err(|e| bad(&e.to_string()))
}

#[derive(Debug, Clone)]
struct Job {
    file: PathBuf,
    key: String,
    journal: PathBuf,
    /// The size recorded in the journal (to recognise an object uploaded by an earlier process
    /// whose file is already gone).
    size: u64,
}

struct Pending {
    count: usize,
    files: HashSet<PathBuf>,
}

struct Shared {
    store: Arc<AmazonS3>,
    target: UploadTarget,
    opts: UploadOptions,
    events: Box<dyn Fn(UploadEvent) + Send + Sync>,
    pending: Mutex<Pending>,
    idle: Condvar,
}

/// A bounded pool of upload workers (see the [module docs](self)).
///
/// Dropping it stops accepting work and abandons what runs and what waits: running uploads
/// are cancelled at once (their parts stay on the server, their files and journals stay on
/// disk) and no event is sent for them, so a later [`Uploader::resume_pending`] finishes them.
/// Call [`Uploader::wait_idle`] first to let them finish.
pub struct Uploader {
    tx: Option<Sender<Job>>,
    shared: Arc<Shared>,
    cancel: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for Uploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uploader")
            .field("target", &self.shared.target)
            .field("opts", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

impl Uploader {
    /// Checks the target and options, builds the S3 client and starts the workers. `events`
    /// is called from the worker threads (it must not block for long nor panic).
    pub fn new(
        target: UploadTarget,
        opts: UploadOptions,
        events: impl Fn(UploadEvent) + Send + Sync + 'static,
    ) -> Result<Uploader, UploadError> {
        if target.bucket.trim().is_empty() {
            return Err(UploadError::Config("storageConfig.bucket is empty".into()));
        }
        if opts.workers == 0 || opts.part_concurrency == 0 || opts.queue == 0 {
            return Err(UploadError::Config(
                "workers, part_concurrency and queue must be at least 1".into(),
            ));
        }
        if !(MIN_PART..=MAX_PART).contains(&opts.part_size) {
            return Err(UploadError::Config(format!(
                "part_size {} outside 5 MiB – 5 GiB",
                opts.part_size
            )));
        }
        let endpoint = target.resolved_endpoint()?;
        let mut client = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(target.bucket.trim())
            .with_region(target.signing_region())
            .with_access_key_id(&target.access_key)
            .with_secret_access_key(&target.secret_key)
            // our own retry loop counts attempts and keeps the parts already stored
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            });
        if let Some((url, virtual_hosted)) = endpoint {
            client = client.with_allow_http(url.starts_with("http://"));
            b = b
                .with_endpoint(url)
                .with_virtual_hosted_style_request(virtual_hosted);
        }
        let store = b
            .with_client_options(client)
            .build()
            .map_err(|e| UploadError::Config(e.to_string()))?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cm-upload-io")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| UploadError::Runtime(e.to_string()))?;
        let (tx, rx) = crossbeam_channel::bounded::<Job>(opts.queue);
        let (cancel, cancel_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: Arc::new(store),
            target,
            opts,
            events: Box::new(events),
            pending: Mutex::new(Pending {
                count: 0,
                files: HashSet::new(),
            }),
            idle: Condvar::new(),
        });
        let mut up = Uploader {
            tx: Some(tx),
            shared: shared.clone(),
            cancel,
            workers: Vec::new(),
            runtime: None,
        };
        for i in 0..shared.opts.workers {
            let (rx, sh, handle, c) = (
                rx.clone(),
                shared.clone(),
                runtime.handle().clone(),
                cancel_rx.clone(),
            );
            let w = std::thread::Builder::new()
                .name(format!("cm-upload-{i}"))
                .spawn(move || {
                    lower_priority();
                    worker(rx, sh, handle, c)
                })
                .map_err(|e| UploadError::Runtime(e.to_string()))?;
            up.workers.push(w);
        }
        up.runtime = Some(runtime);
        Ok(up)
    }

    /// Queues `file` for upload as object `key` (a leading '/' is dropped). Writes the journal
    /// `<file>.upload.json` first, then queues without blocking: a full queue is
    /// [`UploadError::QueueFull`] (the journal stays for [`Uploader::resume_pending`]). A file
    /// already queued or uploading is not queued twice.
    pub fn submit(&self, file: &Path, key: &str) -> Result<(), UploadError> {
        parse_key(key)?;
        let meta = std::fs::metadata(file).map_err(|e| UploadError::File {
            path: file.display().to_string(),
            reason: e.to_string(),
        })?;
        if !meta.is_file() {
            return Err(UploadError::File {
                path: file.display().to_string(),
                reason: "not a regular file".into(),
            });
        }
        File::open(file).map_err(|e| UploadError::File {
            path: file.display().to_string(),
            reason: e.to_string(),
        })?;
        let journal = journal_path(file);
        let created_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        write_journal(
            &journal,
            &Journal {
                version: 1,
                key: key.to_string(),
                size: meta.len(),
                bucket: self.shared.target.bucket.clone(),
                created_ms,
            },
        )?;
        self.enqueue(Job {
            file: file.to_path_buf(),
            key: key.to_string(),
            journal,
            size: meta.len(),
        })
        .map(|_| ())
    }

    /// Finds the journals (`*.upload.json`) under `dir`, recursively (symbolic links are not
    /// followed), and queues their files again; returns how many were queued. Journals that
    /// cannot be read are skipped with a warning, files already queued are not counted, and when
    /// the queue fills up the rest is left for a later call.
    pub fn resume_pending(&self, dir: &Path) -> Result<usize, UploadError> {
        let mut journals = Vec::new();
        find_journals(dir, &mut journals).map_err(|e| UploadError::File {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        journals.sort();
        let mut queued = 0;
        for jp in journals {
            let j = match read_journal(&jp) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!("skipping {e}");
                    continue;
                }
            };
            if let Err(e) = parse_key(&j.key) {
                tracing::warn!("skipping {}: {e}", jp.display());
                continue;
            }
            let s = jp.as_os_str().to_string_lossy();
            let file = PathBuf::from(&s[..s.len() - JOURNAL_SUFFIX.len()]);
            match self.enqueue(Job {
                file,
                key: j.key,
                journal: jp,
                size: j.size,
            }) {
                Ok(true) => queued += 1,
                Ok(false) => {}
                Err(e @ UploadError::QueueFull { .. }) => {
                    tracing::warn!("{e}; resume_pending stops here");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(queued)
    }

    /// Waits until every queued upload has finished (uploaded or failed); false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while p.count > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            p = self
                .shared
                .idle
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Queues a job; Ok(false) when its file is already queued or running.
    fn enqueue(&self, job: Job) -> Result<bool, UploadError> {
        let tx = self.tx.as_ref().expect("sender lives until drop");
        let mut p = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if p.files.contains(&job.file) {
            return Ok(false);
        }
        let file = job.file.clone();
        match tx.try_send(job) {
            Ok(()) => {
                p.files.insert(file);
                p.count += 1;
                Ok(true)
            }
            Err(TrySendError::Full(_)) => Err(UploadError::QueueFull {
                path: file.display().to_string(),
            }),
            Err(TrySendError::Disconnected(_)) => Err(UploadError::Runtime(
                "the upload workers have stopped".into(),
            )),
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        let _ = self.cancel.send(true);
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Upload threads run at nice 10: a recording's clock, compose and encode threads come first
/// when the cores are busy (measured: BENCHMARKS.md "Outputs").
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; failure only leaves the priority.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

fn find_journals(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let path = entry.path();
        if ty.is_dir() {
            find_journals(&path, out)?;
        } else if ty.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(JOURNAL_SUFFIX) && n.len() > JOURNAL_SUFFIX.len())
        {
            out.push(path);
        }
    }
    Ok(())
}

fn worker(
    rx: Receiver<Job>,
    sh: Arc<Shared>,
    rt: tokio::runtime::Handle,
    mut cancel: watch::Receiver<bool>,
) {
    while let Ok(job) = rx.recv() {
        if *cancel.borrow() {
            break; // abandoned: the journal stays
        }
        rt.block_on(async {
            tokio::select! {
                _ = run_job(&sh, &job) => {}
                _ = cancel.wait_for(|c| *c) => {}
            }
        });
        let mut p = sh.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.files.remove(&job.file);
        p.count -= 1;
        if p.count == 0 {
            sh.idle.notify_all();
        }
    }
    // abandoned jobs still queued: count them out so wait_idle does not hang
    while let Ok(job) = rx.try_recv() {
        let mut p = sh.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.files.remove(&job.file);
        p.count -= 1;
    }
    sh.idle.notify_all();
}

/// How an attempt failed.
#[derive(Debug)]
enum Failure {
    /// Retrying cannot help.
    Fatal(String),
    /// A network or server error: retry (keeping the parts stored).
    Retry(String),
    /// The server forgot the multipart upload, or the object came out wrong: start over.
    Restart(String),
}

/// The state of a multipart upload across attempts.
struct Multipart {
    id: Option<String>,
    parts: Vec<Option<PartId>>,
    stored: Arc<AtomicU64>,
}

struct Progress<'a> {
    sh: &'a Shared,
    job: &'a Job,
    size: u64,
    stored: Arc<AtomicU64>,
    last: Mutex<Instant>,
}

impl Progress<'_> {
    fn emit(&self) {
        let bytes = self.stored.load(Ordering::Relaxed).min(self.size);
        let percent = if self.size == 0 {
            100.0
        } else {
            bytes as f64 * 100.0 / self.size as f64
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        (self.sh.events)(UploadEvent::Progress {
            file: self.job.file.clone(),
            key: self.job.key.clone(),
            percent,
            bytes,
        });
    }

    /// Emits when `progress_interval` has passed since the last report.
    fn maybe_emit(&self) {
        let due = self
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            >= self.sh.opts.progress_interval;
        if due {
            self.emit();
        }
    }
}

async fn run_job(sh: &Shared, job: &Job) {
    let emit = |ev| (sh.events)(ev);
    let fail = |desc: String| {
        emit(UploadEvent::Failed {
            file: job.file.clone(),
            key: job.key.clone(),
            code: ERR_UPLOAD_FAIL,
            desc,
        })
    };
    emit(UploadEvent::Started {
        file: job.file.clone(),
        key: job.key.clone(),
    });
    let location = match parse_key(&job.key) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    let size = match std::fs::metadata(&job.file) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return fail(format!("{}: not a regular file", job.file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // uploaded by an earlier process that stopped before removing the journal?
            if let Ok(meta) = sh.store.head(&location).await {
                if meta.size == job.size {
                    let _ = std::fs::remove_file(&job.journal);
                    return emit(UploadEvent::Uploaded {
                        file: job.file.clone(),
                        key: job.key.clone(),
                        size: meta.size,
                    });
                }
            }
            return fail(format!("{}: file missing", job.file.display()));
        }
        Err(e) => return fail(format!("cannot read {}: {e}", job.file.display())),
    };
    let file = match File::open(&job.file) {
        Ok(f) => Arc::new(f),
        Err(e) => return fail(format!("cannot read {}: {e}", job.file.display())),
    };
    let mut part_size = sh.opts.part_size as u64;
    while size.div_ceil(part_size) > MAX_PARTS {
        part_size *= 2;
    }
    let n_parts = size.div_ceil(part_size).max(1) as usize;
    let stored = Arc::new(AtomicU64::new(0));
    let mut mp = Multipart {
        id: None,
        parts: vec![None; n_parts],
        stored: stored.clone(),
    };
    let progress = Progress {
        sh,
        job,
        size,
        stored,
        last: Mutex::new(Instant::now()),
    };
    progress.emit();

    let upload = async {
        let mut failures = 0u32;
        loop {
            let before = mp.parts.iter().filter(|p| p.is_some()).count();
            let res = attempt(sh, &location, &file, size, part_size, &mut mp, &progress).await;
            let desc = match res {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(d)) => return Err(d),
                Err(Failure::Retry(d)) => d,
                Err(Failure::Restart(d)) => {
                    mp.id = None;
                    mp.parts.iter_mut().for_each(|p| *p = None);
                    mp.stored.store(0, Ordering::Relaxed);
                    d
                }
            };
            let after = mp.parts.iter().filter(|p| p.is_some()).count();
            if after > before {
                failures = 0;
            }
            failures += 1;
            if failures > sh.opts.retries {
                return Err(format!("{desc} (gave up after {failures} attempts)"));
            }
            let delay = backoff(&sh.opts, failures);
            emit(UploadEvent::Retrying {
                file: job.file.clone(),
                key: job.key.clone(),
                attempt: failures,
                delay,
                desc,
            });
            tokio::time::sleep(delay).await;
        }
    };
    let tick = sh.opts.progress_interval.max(Duration::from_millis(10));
    let ticker = async {
        loop {
            tokio::time::sleep(tick).await;
            progress.maybe_emit();
        }
    };
    let res = tokio::select! {
        r = upload => r,
        _ = ticker => unreachable!("the ticker never ends"),
    };
    if let Err(desc) = res {
        return fail(desc);
    }
    if !sh.target.keep_local {
        if let Err(e) = std::fs::remove_file(&job.file) {
            tracing::warn!("uploaded, but cannot remove {}: {e}", job.file.display());
        }
    }
    if let Err(e) = std::fs::remove_file(&job.journal) {
        tracing::warn!("uploaded, but cannot remove {}: {e}", job.journal.display());
    }
    emit(UploadEvent::Uploaded {
        file: job.file.clone(),
        key: job.key.clone(),
        size,
    });
}

/// The delay before retry `n` (1-based): `backoff_start · 2^(n-1)`, at most `backoff_max`.
fn backoff(opts: &UploadOptions, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(20);
    opts.backoff_start
        .saturating_mul(factor)
        .min(opts.backoff_max)
}

/// One attempt: create the upload if needed, store the missing parts, complete, check the size.
async fn attempt(
    sh: &Shared,
    location: &ObjectPath,
    file: &Arc<File>,
    size: u64,
    part_size: u64,
    mp: &mut Multipart,
    progress: &Progress<'_>,
) -> Result<(), Failure> {
    let store = &sh.store;
    let id = match &mp.id {
        Some(id) => id.clone(),
        None => {
            let id = store
                .create_multipart(location)
                .await
                .map_err(|e| classify(&e, &sh.target))?;
            mp.id = Some(id.clone());
            id
        }
    };
    let todo: Vec<usize> = (0..mp.parts.len())
        .filter(|&i| mp.parts[i].is_none())
        .collect();
    let mut next = todo.into_iter();
    let mut set = JoinSet::new();
    let mut first_err: Option<Failure> = None;
    loop {
        while first_err.is_none() && set.len() < sh.opts.part_concurrency {
            let Some(idx) = next.next() else { break };
            let (store, location, id, file) =
                (store.clone(), location.clone(), id.clone(), file.clone());
            let offset = idx as u64 * part_size;
            let len = part_size.min(size - offset.min(size)) as usize;
            set.spawn(async move {
                let data = tokio::task::spawn_blocking(move || read_part(&file, offset, len))
                    .await
                    .map_err(|e| Failure::Fatal(format!("reading the file: {e}")))?
                    .map_err(|e| Failure::Fatal(format!("cannot read the file: {e}")))?;
                let part = store
                    .put_part(&location, &id, idx, PutPayload::from(data))
                    .await;
                Ok::<_, Failure>((idx, len as u64, part))
            });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let r = match done {
            Ok(Ok((idx, len, Ok(part)))) => {
                mp.parts[idx] = Some(part);
                mp.stored.fetch_add(len, Ordering::Relaxed);
                progress.maybe_emit();
                Ok(())
            }
            Ok(Ok((_, _, Err(e)))) => Err(classify(&e, &sh.target)),
            Ok(Err(f)) => Err(f),
            Err(e) => Err(Failure::Fatal(format!("upload task: {e}"))),
        };
        if let Err(f) = r {
            // a fatal error wins over a retryable one
            if !matches!(first_err, Some(Failure::Fatal(_))) {
                first_err = Some(f);
            }
        }
    }
    if let Some(f) = first_err {
        return Err(f);
    }
    progress.emit();
    let parts: Vec<PartId> = mp
        .parts
        .iter()
        .map(|p| p.clone().expect("all parts stored"))
        .collect();
    if let Err(e) = store.complete_multipart(location, &id, parts).await {
        match classify(&e, &sh.target) {
            // an earlier complete whose answer was lost may have finished it: the HEAD below
            // tells (and restarts the upload when the object is not there)
            Failure::Restart(_) => {}
            f => return Err(f),
        }
    }
    let meta = store
        .head(location)
        .await
        .map_err(|e| match classify(&e, &sh.target) {
            Failure::Restart(d) => Failure::Restart(format!("object missing after upload: {d}")),
            f => f,
        })?;
    if meta.size != size {
        return Err(Failure::Restart(format!(
            "stored object has {} bytes, the file {size}",
            meta.size
        )));
    }
    Ok(())
}

fn read_part(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut buf, offset)?;
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut buf)?;
    }
    Ok(buf)
}

/// Sorts an object_store error into fatal / retryable / restart, with a short description.
fn classify(e: &object_store::Error, target: &UploadTarget) -> Failure {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        src = s.source();
    }
    let status = match e {
        object_store::Error::PermissionDenied { .. } => Some(403),
        object_store::Error::Unauthenticated { .. } => Some(401),
        object_store::Error::NotFound { .. } => Some(404),
        _ => status_in(&text),
    };
    let s3code = s3_code(&text);
    let code_txt = s3code.map(|c| format!(": {c}")).unwrap_or_default();
    match status {
        Some(401 | 403) => Failure::Fatal(format!(
            "access denied (check accessKey/secretKey){code_txt}"
        )),
        Some(404) if s3code == Some("NoSuchBucket") => {
            Failure::Fatal(format!("bucket {:?} not found", target.bucket))
        }
        Some(404) => Failure::Restart(format!("not found on the server{code_txt}")),
        Some(400) if matches!(s3code, Some("RequestTimeout" | "ExpiredToken" | "SlowDown")) => {
            Failure::Retry(format!("server answered 400{code_txt}"))
        }
        Some(408 | 429) => {
            Failure::Retry(format!("server answered {}{code_txt}", status.unwrap_or(0)))
        }
        Some(s) if s >= 500 => Failure::Retry(format!("server error {s}{code_txt}")),
        Some(s) => Failure::Fatal(format!(
            "server refused the upload ({s}{code_txt}): {}",
            short(&text)
        )),
        None => Failure::Retry(network_desc(&text)),
    }
}

/// The HTTP status an object_store error text names ("… status code: 503 …").
fn status_in(text: &str) -> Option<u16> {
    let i = text.find("status code: ")? + "status code: ".len();
    text.get(i..i + 3)?.parse().ok()
}

/// The S3 error code of an XML error body (`<Code>AccessDenied</Code>`).
fn s3_code(text: &str) -> Option<&str> {
    let i = text.find("<Code>")? + "<Code>".len();
    let j = text[i..].find("</Code>")? + i;
    Some(&text[i..j])
}

/// "network error (POST http://host/bucket/key?uploads=): tcp connect error: Connection
/// refused" from object_store's "Generic S3 error: Error performing POST … in 1ms - HTTP error:
/// error sending request: …".
fn network_desc(text: &str) -> String {
    let request = text
        .split_once("Error performing ")
        .and_then(|(_, r)| r.split_once(" in "))
        .map(|(req, _)| req);
    let cause = text.split_once(" - ").map_or(text, |(_, c)| c);
    // the innermost reason is the most telling ("tcp connect error: Connection refused")
    let cause = [
        "tcp connect error",
        "connection closed",
        "operation timed out",
        "timed out",
    ]
    .iter()
    .find_map(|m| cause.find(m).map(|i| &cause[i..]))
    .unwrap_or(cause);
    match request {
        Some(r) => format!("network error ({r}): {}", short(cause)),
        None => format!("network error: {}", short(cause)),
    }
}

/// The error text without XML bodies, cut to a readable length.
fn short(text: &str) -> String {
    let t = match text.find('<') {
        Some(i) => text[..i].trim_end_matches([':', ' ']),
        None => text,
    };
    let mut s: String = t.chars().take(300).collect();
    if t.chars().count() > 300 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(vendor: u32, endpoint: Option<&str>) -> UploadTarget {
        UploadTarget {
            vendor,
            region: "cn-hangzhou".into(),
            bucket: "rec".into(),
            access_key: "ak".into(),
            secret_key: "sk".into(),
            endpoint: endpoint.map(str::to_string),
            keep_local: false,
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            target(1, None).resolved_endpoint().unwrap(),
            Some(("https://rec.oss-cn-hangzhou.aliyuncs.com".into(), true))
        );
        let mut t = target(1, None);
        t.region = "oss-cn-beijing".into();
        assert_eq!(
            t.resolved_endpoint().unwrap().unwrap().0,
            "https://rec.oss-cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            target(0, Some("http://127.0.0.1:9000/"))
                .resolved_endpoint()
                .unwrap(),
            Some(("http://127.0.0.1:9000".into(), false))
        );
        assert_eq!(target(0, None).resolved_endpoint().unwrap(), None);
        for bad in ["127.0.0.1:9000", "ftp://x", "http://", "http://a b"] {
            assert!(
                matches!(
                    target(0, Some(bad)).resolved_endpoint(),
                    Err(UploadError::Config(_))
                ),
                "{bad}"
            );
        }
        assert!(format!("{:?}", target(0, None)).contains("***"));
        assert!(!format!("{:?}", target(0, None)).contains("\"sk\""));
    }

    #[test]
    fn vendor_json() {
        let t: UploadTarget = serde_json::from_str(
            r#"{"vendor":1,"region":"cn-hangzhou","bucket":"b","accessKey":"a","secretKey":"s"}"#,
        )
        .unwrap();
        assert_eq!((t.vendor, t.bucket.as_str(), t.keep_local), (1, "b", false));
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let o = UploadOptions::default();
        let got: Vec<u64> = (1..=7).map(|n| backoff(&o, n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(&o, 200).as_secs(), 30);
    }

    #[test]
    fn keys_and_error_text() {
        assert!(parse_key("/2021-09-24/rec.mp4").is_ok());
        assert!(parse_key("").is_err());
        assert!(parse_key("a//b").is_err());
        assert!(parse_key("a/").is_err());
        let t = "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code></Error>";
        assert_eq!(status_in(t), Some(403));
        assert_eq!(s3_code(t), Some("SignatureDoesNotMatch"));
        assert!(!short(t).contains('<'));
        let n = "Generic S3 error: Error performing POST http://h/b/k?uploads= in 286µs - HTTP \
                 error: error sending request: client error (Connect): tcp connect error: \
                 Connection refused (os error 111)";
        assert_eq!(
            network_desc(n),
            "network error (POST http://h/b/k?uploads=): tcp connect error: Connection refused \
             (os error 111)"
        );
    }

    #[test]
    fn bad_config_is_an_error() {
        let mut t = target(0, Some("http://127.0.0.1:1"));
        t.bucket = " ".into();
        assert!(Uploader::new(t, UploadOptions::default(), |_| {}).is_err());
        let o = UploadOptions {
            part_size: 1024,
            ..UploadOptions::default()
        };
        assert!(Uploader::new(target(0, Some("http://127.0.0.1:1")), o, |_| {}).is_err());
        assert!(Uploader::new(target(0, Some("nope")), UploadOptions::default(), |_| {}).is_err());
    }
}
