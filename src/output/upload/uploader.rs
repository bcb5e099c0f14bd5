//! The uploader itself (feature `upload`): the S3 client, the worker threads and their tokio
//! runtime, signed journals (see the [parent module](super)).

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};
use ring::hmac;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::*;
use crate::output::storage::{identity, Dir, Storage};

/// S3 parts must be at least 5 MiB (except the last), and an upload has at most 10 000 parts.
const MIN_PART: usize = 5 * 1024 * 1024;
const MAX_PART: usize = 5 * 1024 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// One HTTP request (one part) may take this long before it counts as a network failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A response that sends nothing for this long counts as a network failure.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

impl UploadTarget {
    fn signing_region(&self) -> String {
        let r = self.region.trim();
        if r.is_empty() {
            "us-east-1".into()
        } else {
            r.into()
        }
    }
}

/// Replaces every `scheme://user:pass@` in a text (error messages from the HTTP client).
fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

impl JournalKey {
    fn sign(&self, body: &[u8]) -> String {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        hmac::sign(&k, body)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn verify(&self, body: &[u8], mac_hex: &str) -> bool {
        let Some(mac) = (0..mac_hex.len())
            .step_by(2)
            .map(|i| {
                mac_hex
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        hmac::verify(&k, body, &mac).is_ok()
    }
}

/// The sidecar journal `<file>.upload.json`: the file is pending until it is gone. `mac` is
/// the HMAC of the journal with `mac` empty (fields in this order).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    version: u32,
    key: String,
    size: u64,
    bucket: String,
    endpoint: String,
    /// The file's path under the storage root.
    rel: String,
    dev: u64,
    ino: u64,
    /// The file's status-change time (ns): a new file that reuses the inode number differs.
    ctime_ns: i128,
    created_ms: u64,
    #[serde(default)]
    mac: String,
}

/// A recording has one name; a second hard link could be a file from outside the root.
const HARD_LINKED: &str =
    "the file has other hard links (it could be a file from outside the storage root)";

fn nlink(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.nlink()
}

/// The file's status-change time in nanoseconds (not settable by its owner: `utimes` and
/// every write move it to now).
fn ctime_ns(f: &File) -> i128 {
    use std::os::unix::fs::MetadataExt;
    f.metadata()
        .map(|m| m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128)
        .unwrap_or(0)
}

const JOURNAL_VERSION: u32 = 2;

impl Journal {
    fn body(&self) -> Vec<u8> {
        let mut j = self.clone();
        j.mac.clear();
        serde_json::to_vec(&j).expect("journal serialises")
    }
}

fn journal_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut s = name.to_os_string();
    s.push(JOURNAL_SUFFIX);
    s
}

/// Takes an exclusive `flock` on `f` without waiting; false when another holds it.
fn try_lock(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Writes the journal next to the file (temporary + rename through the directory), locked.
fn write_journal(dir: &Dir, name: &std::ffi::OsStr, j: &Journal) -> Result<File, UploadError> {
    let jn = journal_name(name);
    let err = |e: std::io::Error| UploadError::Journal {
        path: dir.path().join(&jn).display().to_string(),
        reason: e.to_string(),
    };
    let body = serde_json::to_vec_pretty(j).expect("journal serialises");
    let f = dir.write_atomic(&jn, &body).map_err(err)?;
    try_lock(&f);
    Ok(f)
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

struct Job {
    /// The file's absolute path (for events and messages).
    file: PathBuf,
    key: String,
    /// The directory of the file and its journal, and the file's name there.
    dir: Arc<Dir>,
    name: std::ffi::OsString,
    /// The file, opened without following a symlink (`None`: gone, maybe uploaded already).
    data: Option<Arc<File>>,
    /// The journal, open and locked while the job lives.
    journal: File,
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
    /// Object keys chosen by uploads in flight (no two of ours pick the same free name).
    keys: Mutex<HashSet<String>>,
}

/// The S3 client of `target` (checked endpoint and bucket, no retries of its own: callers
/// decide), with the uploader's connect and read timeouts; `request_timeout` bounds a whole
/// request (`None`: unbounded, for a download streamed to a slow client). Used by the
/// uploader and by the service's recordings API (list, download, delete in the bucket).
pub(crate) fn s3_client(
    target: &UploadTarget,
    request_timeout: Option<Duration>,
) -> Result<AmazonS3, UploadError> {
    let endpoint = target.resolved_endpoint()?;
    install_tls_provider();
    let mut client = ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_read_timeout(READ_TIMEOUT);
    client = match request_timeout {
        Some(t) => client.with_timeout(t),
        None => client.with_timeout_disabled(),
    };
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
    b.with_client_options(client)
        .build()
        .map_err(|e| UploadError::Config(e.to_string()))
}

/// A bounded pool of upload workers (see the [module docs](super)).
///
/// Dropping it stops accepting work and abandons what runs and what waits: running uploads
/// are cancelled at once (their parts stay on the server, their files and journals stay on
/// disk) and no event is sent for them, so a later [`Uploader::resume_pending`] finishes them.
/// Call [`Uploader::wait_idle`] first to let them finish.
pub struct Uploader {
    tx: Option<Sender<Job>>,
    shared: Arc<Shared>,
    storage: Storage,
    journal_key: JournalKey,
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
    /// Checks the target and options, builds the S3 client and starts the workers. Files are
    /// uploaded from under `storage` only; journals are signed with `journal_key`. `events` is
    /// called from the worker threads (it must not block for long nor panic).
    pub fn new(
        target: UploadTarget,
        opts: UploadOptions,
        storage: Storage,
        journal_key: JournalKey,
        events: impl Fn(UploadEvent) + Send + Sync + 'static,
    ) -> Result<Uploader, UploadError> {
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
        let store = s3_client(&target, Some(REQUEST_TIMEOUT))?;

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
            keys: Mutex::new(HashSet::new()),
        });
        let mut up = Uploader {
            tx: Some(tx),
            shared: shared.clone(),
            storage,
            journal_key,
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

    /// Queues `file` (a path under the storage root) for upload as object `key` (a leading
    /// '/' is dropped). The file is opened without following a symlink and must be a regular
    /// file under the root. Writes the signed journal `<file>.upload.json` first, then queues
    /// without blocking: a full queue is [`UploadError::QueueFull`] (the journal stays for
    /// [`Uploader::resume_pending`]). A file already queued or uploading is not queued twice.
    pub fn submit(&self, file: &Path, key: &str) -> Result<(), UploadError> {
        let job = journal_file(
            &self.shared.target,
            &self.storage,
            &self.journal_key,
            file,
            key,
        )?;
        self.enqueue(job).map(|_| ())
    }

    /// Finds the journals (`*.upload.json`) under `dir` (the storage root or a folder below
    /// it), recursively, without following a symlink, and queues again the files whose journals
    /// prove themselves (see the [module docs](super)); returns how many were queued. Journals
    /// that fail a check are skipped with a warning and left alone, journals locked by another
    /// process (uploading them now) are skipped, files already queued are not counted, and
    /// when the queue fills up the rest is left for a later call.
    pub fn resume_pending(&self, dir: &Path) -> Result<usize, UploadError> {
        let derr = |reason: String| UploadError::File {
            path: dir.display().to_string(),
            reason,
        };
        let rel = self
            .storage
            .rel_of(dir)
            .ok_or_else(|| derr("not under the storage root".into()))?;
        let start = self
            .storage
            .open_dir(&rel, false)
            .map_err(|e| derr(e.to_string()))?;
        let mut journals = Vec::new();
        find_journals(Arc::new(start), &mut journals, 0).map_err(|e| derr(e.to_string()))?;
        journals.sort_by(|a, b| (a.0.rel(), &a.1).cmp(&(b.0.rel(), &b.1)));
        let mut queued = 0;
        for (d, jn) in journals {
            let job = match self.check_journal(&d, &jn) {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(why) => {
                    tracing::warn!("not resuming {}: {why}", d.path().join(&jn).display());
                    continue;
                }
            };
            match self.enqueue(job) {
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

    /// A journal's job, if it proves itself; `Ok(None)` when another process holds it.
    fn check_journal(&self, d: &Arc<Dir>, jn: &std::ffi::OsStr) -> Result<Option<Job>, String> {
        let journal = d.open_read(jn).map_err(|e| e.to_string())?;
        if !try_lock(&journal) {
            return Ok(None);
        }
        let mut body = Vec::new();
        {
            use std::io::Read;
            (&journal)
                .take(64 * 1024)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
        }
        let j: Journal = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if j.version != JOURNAL_VERSION || !self.journal_key.verify(&j.body(), &j.mac) {
            return Err(
                "the journal's signature is not valid (not written by a recorder \
                        holding this journal key)"
                    .into(),
            );
        }
        let jb = jn.as_encoded_bytes();
        let name = std::ffi::OsStr::new(
            std::str::from_utf8(&jb[..jb.len() - JOURNAL_SUFFIX.len()])
                .map_err(|_| "the file name is not UTF-8".to_string())?,
        )
        .to_os_string();
        let rel = rel_string(&d.rel().join(&name));
        if j.rel != rel {
            return Err(format!(
                "the journal names {:?}, not the file beside it",
                j.rel
            ));
        }
        if j.key.trim_start_matches('/') != rel {
            return Err(format!(
                "object key {:?} is not the file's path under the storage root",
                j.key
            ));
        }
        parse_key(&j.key).map_err(|e| e.to_string())?;
        let t = &self.shared.target;
        if j.bucket != t.bucket || j.endpoint != t.endpoint.clone().unwrap_or_default() {
            return Err(format!(
                "it is for bucket {:?} at {:?}, not this storageConfig",
                j.bucket,
                redact_url(&j.endpoint)
            ));
        }
        let data = match d.open_read(&name) {
            Ok(f) => {
                let id = identity(&f).unwrap_or_default();
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if f.metadata().map(|m| nlink(&m)).unwrap_or(0) > 1 {
                    return Err(HARD_LINKED.into());
                }
                if id != (j.dev, j.ino) || ctime_ns(&f) != j.ctime_ns {
                    return Err("the file is not the one the journal was written for".into());
                }
                if len != j.size {
                    return Err(format!(
                        "the file has {len} bytes, the journal says {}",
                        j.size
                    ));
                }
                Some(Arc::new(f))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(format!("cannot open the file: {e}")),
        };
        Ok(Some(Job {
            file: d.path().join(&name),
            key: j.key,
            dir: d.clone(),
            name,
            data,
            journal,
            size: j.size,
        }))
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

/// Makes rustls' ring provider the process's default crypto provider unless one is installed
/// already: the HTTP client (reqwest, built with `rustls-no-provider`, so that aws-lc-rs and its C
/// build stay out) takes the process default and has none of its own (without one, building an
/// S3 client panics). Called before every object_store client is built.
pub(crate) fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // fails only when another thread installed one meanwhile: that one is used
        let _ = rustls::crypto::ring::default_provider().install_default();
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

/// Leaves `file` (under `storage`) pending for upload as `key` without uploading it: writes
/// its signed journal, so that a later [`Uploader::resume_pending`] (with the same key and
/// `storageConfig`) uploads it. Same checks as [`Uploader::submit`].
pub fn write_pending(
    target: &UploadTarget,
    storage: &Storage,
    journal_key: &JournalKey,
    file: &Path,
    key: &str,
) -> Result<(), UploadError> {
    journal_file(target, storage, journal_key, file, key).map(drop)
}

/// Opens `file` without following a symlink, writes its signed journal: the upload's job.
fn journal_file(
    target: &UploadTarget,
    storage: &Storage,
    journal_key: &JournalKey,
    file: &Path,
    key: &str,
) -> Result<Job, UploadError> {
    parse_key(key)?;
    let ferr = |reason: String| UploadError::File {
        path: file.display().to_string(),
        reason,
    };
    let rel = storage
        .rel_of(file)
        .ok_or_else(|| ferr("not under the storage root".into()))?;
    let (dir, name) = Storage::split(&rel).map_err(|e| ferr(e.to_string()))?;
    let dir = Arc::new(
        storage
            .open_dir(&dir, false)
            .map_err(|e| ferr(e.to_string()))?,
    );
    let data = dir.open_read(&name).map_err(|e| ferr(e.to_string()))?;
    let meta = data.metadata().map_err(|e| ferr(e.to_string()))?;
    if nlink(&meta) > 1 {
        return Err(ferr(HARD_LINKED.into()));
    }
    let (dev, ino) = identity(&data).unwrap_or_default();
    let created_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut j = Journal {
        version: JOURNAL_VERSION,
        key: key.to_string(),
        size: meta.len(),
        bucket: target.bucket.clone(),
        endpoint: target.endpoint.clone().unwrap_or_default(),
        rel: rel_string(&rel),
        dev,
        ino,
        ctime_ns: ctime_ns(&data),
        created_ms,
        mac: String::new(),
    };
    j.mac = journal_key.sign(&j.body());
    let journal = write_journal(&dir, &name, &j)?;
    Ok(Job {
        file: dir.path().join(&name),
        key: key.to_string(),
        dir,
        name,
        data: Some(Arc::new(data)),
        journal,
        size: meta.len(),
    })
}

/// The path as '/'-separated text (object keys and journals).
fn rel_string(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Journals under `dir` (depth-limited), walked through directory descriptors: symlinks are
/// neither followed nor taken.
fn find_journals(
    dir: Arc<Dir>,
    out: &mut Vec<(Arc<Dir>, std::ffi::OsString)>,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 64 {
        return Ok(());
    }
    for name in dir.entries()? {
        let Ok(Some(st)) = dir.stat(&name) else {
            continue;
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if let Ok(sub) = dir.subdir(&name) {
                    find_journals(Arc::new(sub), out, depth + 1)?;
                }
            }
            libc::S_IFREG => {
                let b = name.as_encoded_bytes();
                if b.ends_with(JOURNAL_SUFFIX.as_bytes()) && b.len() > JOURNAL_SUFFIX.len() {
                    out.push((dir.clone(), name));
                }
            }
            _ => {}
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
    /// The free key this upload goes to, chosen when the multipart upload is created.
    key: Option<(String, ObjectPath)>,
}

/// `a/rec.mp4` → `a/rec_3.mp4` (0: the key itself).
fn numbered_key(key: &str, i: u32) -> String {
    if i == 0 {
        return key.to_string();
    }
    let (dir, name) = match key.rfind('/') {
        Some(k) => key.split_at(k + 1),
        None => ("", key),
    };
    match name.rfind('.').filter(|&d| d > 0) {
        Some(d) => format!("{dir}{}_{i}{}", &name[..d], &name[d..]),
        None => format!("{dir}{name}_{i}"),
    }
}

/// The first free key `key`, `stem_1.ext`, … (no object of that name in the bucket, none
/// chosen by another upload of ours), reserved in `sh.keys` until released.
async fn free_key(sh: &Shared, key: &str) -> Result<(String, ObjectPath), Failure> {
    let key = key.trim_start_matches('/');
    for i in 0..10_000u32 {
        let cand = numbered_key(key, i);
        let loc = parse_key(&cand).map_err(|e| Failure::Fatal(e.to_string()))?;
        if !sh
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cand.clone())
        {
            continue;
        }
        match sh.store.head(&loc).await {
            Err(object_store::Error::NotFound { .. }) => return Ok((cand, loc)),
            Ok(_) => {}
            Err(e) => {
                release_key(sh, &cand);
                return Err(classify(&e, &sh.target));
            }
        }
        release_key(sh, &cand);
    }
    Err(Failure::Fatal(format!(
        "10 000 objects named like {key:?} exist already"
    )))
}

fn release_key(sh: &Shared, key: &str) {
    sh.keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
}

/// Removes `name` from `dir` only while it is still the file `f` (same device and inode).
fn unlink_if_same(dir: &Dir, name: &std::ffi::OsStr, f: &File) -> std::io::Result<()> {
    let now = dir.stat(name)?.map(|st| (st.st_dev, st.st_ino));
    if now.is_some() && now == identity(f) {
        dir.unlink(name)
    } else {
        Err(std::io::Error::other(
            "it was replaced meanwhile; left alone",
        ))
    }
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
            code: crate::model::events::codes::UPLOAD_FAIL,
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
    let jname = journal_name(&job.name);
    let Some(file) = job.data.clone() else {
        // uploaded by an earlier process that stopped before removing the journal?
        if let Ok(meta) = sh.store.head(&location).await {
            if meta.size == job.size {
                let _ = unlink_if_same(&job.dir, &jname, &job.journal);
                return emit(UploadEvent::Uploaded {
                    file: job.file.clone(),
                    key: job.key.clone(),
                    size: meta.size,
                });
            }
        }
        return fail(format!("{}: file missing", job.file.display()));
    };
    let size = match file.metadata() {
        Ok(m) => m.len(),
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
        key: None,
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
            let res = attempt(sh, &job.key, &file, size, part_size, &mut mp, &progress).await;
            let desc = match res {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(d)) => return Err(d),
                Err(Failure::Retry(d)) => d,
                Err(Failure::Restart(d)) => {
                    mp.id = None;
                    mp.parts.iter_mut().for_each(|p| *p = None);
                    mp.stored.store(0, Ordering::Relaxed);
                    if let Some((k, _)) = mp.key.take() {
                        release_key(sh, &k);
                    }
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
    let chosen = mp.key.take().map(|(k, _)| k);
    if let Some(k) = &chosen {
        release_key(sh, k);
    }
    if let Err(desc) = res {
        return fail(desc);
    }
    if !sh.target.keep_local {
        if let Err(e) = unlink_if_same(&job.dir, &job.name, &file) {
            tracing::warn!("uploaded, but cannot remove {}: {e}", job.file.display());
        }
    }
    if let Err(e) = unlink_if_same(&job.dir, &jname, &job.journal) {
        tracing::warn!(
            "uploaded, but cannot remove {}: {e}",
            job.dir.path().join(&jname).display()
        );
    }
    emit(UploadEvent::Uploaded {
        file: job.file.clone(),
        key: chosen.unwrap_or_else(|| job.key.trim_start_matches('/').to_string()),
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
    key: &str,
    file: &Arc<File>,
    size: u64,
    part_size: u64,
    mp: &mut Multipart,
    progress: &Progress<'_>,
) -> Result<(), Failure> {
    let store = &sh.store;
    if mp.key.is_none() {
        mp.key = Some(free_key(sh, key).await?);
    }
    let location = &mp.key.as_ref().expect("chosen above").1.clone();
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
    // never overwrite: an object that appeared under this name since it was chosen sends the
    // upload to the next free name
    match store.head(location).await {
        Err(object_store::Error::NotFound { .. }) => {}
        Ok(_) => {
            let _ = store.abort_multipart(location, &id).await;
            return Err(Failure::Restart(format!(
                "an object named {location} appeared while uploading; choosing another name"
            )));
        }
        Err(e) => return Err(classify(&e, &sh.target)),
    }
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
    // an endpoint's user:password must never reach an event or a log
    let text = redact_text(&text);
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

/// What went wrong with a request to `target`, in words (the uploader's classification,
/// without credentials: any `user:password@` of a URL is replaced, and the target's keys never
/// appear), for the service's recordings API.
pub(crate) fn describe_error(e: &object_store::Error, target: &UploadTarget) -> String {
    let text = match classify(e, target) {
        Failure::Fatal(s) | Failure::Retry(s) | Failure::Restart(s) => s,
    };
    let text = text.replace("the upload", "the request");
    scrub_keys(&text, target)
}

/// `text` with the target's access key and secret key replaced by `***`.
pub(crate) fn scrub_keys(text: &str, target: &UploadTarget) -> String {
    let mut t = text.to_string();
    for k in [&target.secret_key, &target.access_key] {
        if !k.is_empty() {
            t = t.replace(k.as_str(), "***");
        }
    }
    t
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
        assert_eq!(
            redact_text("error sending request for url (http://u:pw@h:1/b/k?x=1): refused"),
            "error sending request for url (http://***@h:1/b/k?x=1): refused"
        );
        let n = "Generic S3 error: Error performing POST http://h/b/k?uploads= in 286µs - HTTP \
                 error: error sending request: client error (Connect): tcp connect error: \
                 Connection refused (os error 111)";
        assert_eq!(
            network_desc(n),
            "network error (POST http://h/b/k?uploads=): tcp connect error: Connection refused \
             (os error 111)"
        );
    }

    fn st() -> Storage {
        Storage::new(std::env::temp_dir().join("cm-upload-unit"))
    }

    #[test]
    fn journal_mac_and_keys() {
        let k = JournalKey::random();
        let j = Journal {
            version: JOURNAL_VERSION,
            key: "a/rec.mp4".into(),
            size: 10,
            bucket: "b".into(),
            endpoint: String::new(),
            rel: "a/rec.mp4".into(),
            dev: 1,
            ino: 2,
            ctime_ns: 4,
            created_ms: 3,
            mac: String::new(),
        };
        let mac = k.sign(&j.body());
        assert!(k.verify(&j.body(), &mac));
        let mut forged = j.clone();
        forged.key = "other-tenant/room42/rec.mp4".into();
        assert!(!k.verify(&forged.body(), &mac));
        assert!(!JournalKey::random().verify(&j.body(), &mac));
        assert!(!k.verify(&j.body(), "zz"));
        assert_eq!(format!("{k:?}"), "JournalKey(***)");
        assert_eq!(numbered_key("a/rec.mp4", 0), "a/rec.mp4");
        assert_eq!(numbered_key("a/rec.mp4", 2), "a/rec_2.mp4");
        assert_eq!(numbered_key("a.b/rec", 1), "a.b/rec_1");
        // a key file is created once and read back
        let p = std::env::temp_dir().join(format!("cm-jk-{}/k", std::process::id()));
        let a = JournalKey::load_or_create(&p).unwrap();
        assert_eq!(JournalKey::load_or_create(&p).unwrap(), a);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn bad_config_is_an_error() {
        let mut t = target(0, Some("http://127.0.0.1:1"));
        t.bucket = " ".into();
        assert!(Uploader::new(
            t,
            UploadOptions::default(),
            st(),
            JournalKey::random(),
            |_| {}
        )
        .is_err());
        let o = UploadOptions {
            part_size: 1024,
            ..UploadOptions::default()
        };
        assert!(Uploader::new(
            target(0, Some("http://127.0.0.1:1")),
            o,
            st(),
            JournalKey::random(),
            |_| {}
        )
        .is_err());
        assert!(Uploader::new(
            target(0, Some("nope")),
            UploadOptions::default(),
            st(),
            JournalKey::random(),
            |_| {}
        )
        .is_err());
    }
}
