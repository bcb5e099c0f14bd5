//! Upload of finished recordings to S3-compatible object storage (the vendor's `storageConfig`).
//!
//! An [`Uploader`] owns a small pool of worker threads and one small tokio runtime; nothing
//! async leaks out. It works inside one [`Storage`](crate::output::Storage) root:
//! [`Uploader::submit`] opens the file with `O_NOFOLLOW` (a regular file under the root, reached
//! without following a symlink), writes a sidecar journal `<file>.upload.json` next to it
//! (atomically: temporary file + rename, both through the directory's descriptor), then queues
//! the file on a bounded queue and returns at once: it never blocks a recording. A worker
//! uploads the file from that descriptor as an S3 multipart upload (several parts in flight),
//! checks with a `HEAD` that the object's size equals the file's, and only then deletes the
//! local file (unless [`UploadTarget::keep_local`]; only if the name still holds the same inode)
//! and the journal.
//!
//! **Journals prove themselves.** A journal carries an HMAC-SHA256 (key: a [`JournalKey`] kept
//! outside the storage tree) over its fields: the object key, the bucket and endpoint, the
//! file's path under the root, its device, inode and size. [`Uploader::resume_pending`] uploads
//! a file only when its journal's MAC is valid, the journal lies next to the file it names, the
//! key is that path (the `svrPathName` rule), and the file is a regular file with the recorded
//! inode and size; anything else is skipped with a warning and left alone. A journal being
//! uploaded holds an exclusive `flock`: a second process resuming from the same root skips it.
//!
//! **Never overwrite an object.** Before a multipart upload starts, and again before it is
//! completed, the key is checked with `HEAD`: when an object of that name exists, the file goes
//! to the first free `stem_1.ext`, `stem_2.ext`, … instead (the key used is in
//! [`UploadEvent::Uploaded`]). Keys in flight in this uploader are reserved. The race left:
//! another process storing the same key between our last `HEAD` and the completion (S3's
//! conditional `If-None-Match` completion is not reachable through this client).
//!
//! Failures: network errors, timeouts and 5xx/408/429 answers are retried with exponential
//! backoff ([`UploadOptions::backoff_start`] doubling up to [`UploadOptions::backoff_max`]);
//! the parts already stored are kept, so an upload interrupted by a server restart resumes
//! where it stopped (or restarts from the first part when the server forgot the upload). The
//! retry budget ([`UploadOptions::retries`]) counts consecutive failed attempts that stored no
//! new part. Credential errors (401/403), a missing bucket and other client errors fail at
//! once. On a final failure the file and its journal are kept (a later
//! [`Uploader::resume_pending`] tries again) and [`UploadEvent::Failed`] carries
//! [`UPLOAD_FAIL`](crate::model::events::codes::UPLOAD_FAIL) (1107) and a description of why.
//!
//! Events map to the vendor's output states: [`UploadEvent::output_state`] gives 4 UPLOADING
//! (with `progress` 0–100, at least once per [`UploadOptions::progress_interval`]), 5 UPLOADED
//! or 6 UPLOADFAIL.
//!
//! **Cargo feature `upload`** (on by default) brings the uploader: [`Uploader`] and
//! [`write_pending`], with the S3 client (object_store over rustls with the ring provider) and a
//! tokio runtime. Without it this module keeps only its plain types ([`UploadTarget`],
//! [`UploadOptions`], [`UploadEvent`], [`UploadError`], [`JournalKey`] and the constants), so
//! that settings naming them compile in every build, and a mixer refuses a config with a
//! `storageConfig` at create.
//!
//! TLS: the first [`Uploader`] installs rustls' ring provider as the process's default
//! `rustls::crypto::CryptoProvider` unless one is installed already (an embedder that uses
//! rustls with another provider installs it first).
//!
//! ```no_run
//! # #[cfg(feature = "upload")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use std::time::Duration;
//! use cloudmixer::output::upload::{JournalKey, UploadEvent, UploadOptions, UploadTarget, Uploader};
//! use cloudmixer::output::Storage;
//!
//! let target: UploadTarget = serde_json::from_str(
//!     r#"{"vendor": 1, "region": "cn-hangzhou", "bucket": "records",
//!         "accessKey": "AK", "secretKey": "SK"}"#,
//! )?;
//! // kept outside the storage tree, so nobody who can write there can forge a journal
//! let key = JournalKey::load_or_create(Path::new("/var/lib/cloudmixer/journal.key"))?;
//! let storage = Storage::new("/srv/records");
//! let up = Uploader::new(target, UploadOptions::default(), storage, key, |ev: UploadEvent| {
//!     println!("state {}: {ev:?}", ev.output_state());
//! })?;
//! up.resume_pending(Path::new("/srv/records"))?; // journals left by an earlier process
//! up.submit(Path::new("/srv/records/2021-09-24/rec.mp4"), "2021-09-24/rec.mp4")?;
//! up.wait_idle(Duration::from_secs(600));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "upload"))]
//! # fn main() {}
//! ```
// Without `upload` the links to the uploader above have no target: plain text there.
#![cfg_attr(not(feature = "upload"), allow(rustdoc::broken_intra_doc_links))]

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

#[cfg(feature = "upload")]
mod uploader;
#[cfg(feature = "upload")]
pub use uploader::{write_pending, Uploader};
// for the test kit's own S3 client
#[cfg(all(feature = "upload", feature = "testkit"))]
pub(crate) use uploader::install_tls_provider;
// the service's recordings API lists, reads and deletes in the buckets with the same client
#[cfg(all(feature = "upload", feature = "serve"))]
pub(crate) use uploader::{describe_error, s3_client, scrub_keys};

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

/// Where recordings go: the vendor's `storageConfig` plus our extensions. The config's own
/// type, under the uploader's name (one definition of the fields, the serde names and the
/// redacted `Debug`).
pub use crate::model::config::StorageSettings as UploadTarget;

impl UploadTarget {
    /// The URL requests go to and whether it is virtual-hosted style (the bucket in the host
    /// name, already included in the URL); `None` for AWS S3 of `region`.
    pub fn resolved_endpoint(&self) -> Result<Option<(String, bool)>, UploadError> {
        check_bucket(&self.bucket)?;
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
        if host.contains('@') {
            return Err(UploadError::Config(format!(
                "storageConfig.endpoint {:?}: must not carry a user name or password \
                 (give them as accessKey/secretKey)",
                redact_url(&url)
            )));
        }
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
}

/// S3's bucket naming rules (3–63 characters: lower-case letters, digits, '.', '-'; a letter or
/// digit at both ends; no "..", no IP address): a name like `records/../other` is refused.
fn check_bucket(bucket: &str) -> Result<(), UploadError> {
    let b = bucket.trim();
    let bad = |why: &str| {
        Err(UploadError::Config(format!(
            "storageConfig.bucket {bucket:?}: {why}"
        )))
    };
    if b.is_empty() {
        return bad("is empty");
    }
    if !(3..=63).contains(&b.len()) {
        return bad("must be 3 to 63 characters long");
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return bad("may hold only lower-case letters, digits, '.' and '-'");
    }
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !edge(b.as_bytes()[0]) || !edge(b.as_bytes()[b.len() - 1]) {
        return bad("must begin and end with a letter or digit");
    }
    if b.contains("..") || b.contains(".-") || b.contains("-.") {
        return bad("must not contain \"..\", \".-\" or \"-.\"");
    }
    if b.split('.').count() == 4 && b.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return bad("must not be an IP address");
    }
    Ok(())
}

/// A URL with any `user:password@` replaced by `***@` (for messages).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The secret that authenticates upload journals (HMAC-SHA256). Keep it outside the storage
/// tree: whoever can write there must not be able to read it. Its `Debug` output hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct JournalKey([u8; 32]);

impl fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JournalKey(***)")
    }
}

impl Default for JournalKey {
    /// A random key: journals it writes can be resumed by this process only.
    fn default() -> Self {
        JournalKey::random()
    }
}

impl JournalKey {
    /// 32 random bytes from the system's generator (`getrandom(2)`).
    pub fn random() -> JournalKey {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the system random generator works");
        JournalKey(k)
    }

    /// A key from bytes (e.g. from a secret store).
    pub fn from_bytes(bytes: [u8; 32]) -> JournalKey {
        JournalKey(bytes)
    }

    /// Reads the key file at `path`, or creates it (mode 0600, its folder 0700) with a random
    /// key when it does not exist; two processes creating it at once end with the same key.
    pub fn load_or_create(path: &Path) -> std::io::Result<JournalKey> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let read = |p: &Path| -> std::io::Result<JournalKey> {
            let b = std::fs::read(p)?;
            let k: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: a journal key file holds 32 bytes", p.display()),
                )
            })?;
            Ok(JournalKey(k))
        };
        match read(path) {
            Ok(k) => return Ok(k),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let key = JournalKey::random();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&key.0)?;
        f.sync_all()?;
        // link fails when another process was first: then its key is the key
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
            Err(e) => Err(e),
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
        /// [`UPLOAD_FAIL`](crate::model::events::codes::UPLOAD_FAIL) (1107).
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
    /// The vendor error code ([`UPLOAD_FAIL`](crate::model::events::codes::UPLOAD_FAIL)).
    pub fn code(&self) -> i32 {
        crate::model::events::codes::UPLOAD_FAIL
    }
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
    fn bucket_names_and_endpoint_credentials() {
        for bad in [
            "records/../other",
            "a",
            "UPPER",
            "-abc",
            "ab..cd",
            "192.168.1.1",
            "x y z",
        ] {
            let mut t = target(0, Some("http://127.0.0.1:9000"));
            t.bucket = bad.into();
            let e = t.resolved_endpoint().unwrap_err().to_string();
            assert!(e.contains("storageConfig.bucket"), "{bad}: {e}");
        }
        let t = target(0, Some("http://user:s3cr3t@127.0.0.1:9000"));
        let e = t.resolved_endpoint().unwrap_err().to_string();
        assert!(!e.contains("s3cr3t") && e.contains("***@127.0.0.1"), "{e}");
    }
}
