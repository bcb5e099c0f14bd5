//! The JSON-lines event log: one event per line, each written with a single `write` on a file
//! opened for appending, so writers sharing the file (a recording, resumed uploads, a service's
//! rooms) never interleave inside a line, and a kill leaves every line before it whole.

use std::io::Write;
use std::path::{Path, PathBuf};
#[cfg(feature = "upload")]
use std::sync::Arc;
#[cfg(feature = "upload")]
use std::sync::Mutex;
#[cfg(feature = "upload")]
use std::time::Duration;

use serde_json::Value;

use super::{Host, HostEvent};
#[cfg(feature = "upload")]
use crate::model::events::{OutputInfo, OutputState};
#[cfg(feature = "upload")]
use crate::output::upload::{UploadEvent, Uploader};
#[cfg(feature = "upload")]
use crate::output::Storage;
#[cfg(feature = "upload")]
use crate::pipeline::MixerSettings;

/// Output ids of resumed uploads in the events: from here on, apart from the recording's own.
pub const RESUMED_OUTPUT_IDS: u32 = 1000;

/// An upload an earlier run left pending, tried again by this one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResumedUpload {
    /// The local file.
    pub file: PathBuf,
    /// Its object key.
    pub key: String,
    /// `None`: uploaded; else why it failed again (the file and journal are kept).
    pub error: Option<String>,
}

/// Where a resumed upload's output info goes at each state (4 uploading, 5 uploaded, 6 failed).
#[cfg(feature = "upload")]
pub type ResumedSink = Box<dyn Fn(&OutputInfo) + Send + Sync>;

/// Uploads of files an earlier run left pending under a storage root (signed journals), run
/// again with the storage settings of this run.
#[cfg(feature = "upload")]
pub struct Resumer {
    up: Uploader,
    done: Arc<Mutex<Vec<ResumedUpload>>>,
}

#[cfg(feature = "upload")]
impl Resumer {
    /// `None` when nothing is pending (or the uploader cannot start: a recording's own upload
    /// reports that). Each resumed file's output info (an id from [`RESUMED_OUTPUT_IDS`] on)
    /// goes to `sink` at every state change.
    pub fn start(
        st: &crate::model::config::StorageSettings,
        settings: &MixerSettings,
        root: &Path,
        sink: ResumedSink,
    ) -> Option<Resumer> {
        if !root.is_dir() {
            return None;
        }
        let done: Arc<Mutex<Vec<_>>> = Arc::default();
        let d = done.clone();
        let ids: Mutex<(u32, std::collections::HashMap<PathBuf, OutputInfo>)> =
            Mutex::new((RESUMED_OUTPUT_IDS, Default::default()));
        let up = Uploader::new(
            st.clone(),
            settings.upload.clone(),
            Storage::new(root),
            settings.journal_key.clone(),
            move |ev| {
                {
                    let mut g = ids.lock().unwrap_or_else(|e| e.into_inner());
                    let (next, infos) = &mut *g;
                    let info = infos.entry(ev.file().to_path_buf()).or_insert_with(|| {
                        *next += 1;
                        OutputInfo {
                            id: *next - 1,
                            state: OutputState::Uploading,
                            svr_file_path_name: String::new(),
                            start_time: 0,
                            duration: 0,
                            file_size: ev.file().metadata().map(|m| m.len()).unwrap_or(0),
                            err_code: 0,
                            err_desc: String::new(),
                            progress: None,
                        }
                    });
                    crate::pipeline::apply_upload_event(info, &ev);
                    sink(info);
                }
                let r = match ev {
                    UploadEvent::Uploaded { file, key, .. } => ResumedUpload {
                        file,
                        key,
                        error: None,
                    },
                    UploadEvent::Failed {
                        file, key, desc, ..
                    } => ResumedUpload {
                        file,
                        key,
                        error: Some(desc),
                    },
                    _ => return,
                };
                d.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            },
        )
        .map_err(|e| tracing::warn!("pending uploads not resumed: {e}"))
        .ok()?;
        match up.resume_pending(root) {
            Ok(0) => None,
            Ok(n) => {
                tracing::info!("resuming {n} pending uploads under {}", root.display());
                Some(Resumer { up, done })
            }
            Err(e) => {
                tracing::warn!("pending uploads not resumed: {e}");
                None
            }
        }
    }

    /// Waits until every resumed upload ended (bounded by each upload's retry budget) or
    /// `timeout` passed, and returns what they came to. Ones still running are dropped with
    /// their journals kept (the next run resumes them).
    pub fn finish(self, timeout: Duration) -> Vec<ResumedUpload> {
        self.up.wait_idle(timeout);
        drop(self.up);
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Opens (creating it) an events file for appending.
pub fn open_events(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(p)
}

/// Writes one event as a JSON line with a single `write`.
pub fn write_event(mut file: &std::fs::File, ev: &Value) -> std::io::Result<()> {
    file.write_all(format!("{ev}\n").as_bytes())
}

/// Appends every event of `host` from now on to `file` (each with its `mixerID` and `seq`), on
/// a thread of its own, until the host is gone or a write fails (logged). A log that falls
/// behind by more than the host's subscriber queue picks up from the backlog, so nothing kept
/// is lost.
pub fn log_events(
    host: &Host,
    file: std::fs::File,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let host = host.clone();
    std::thread::Builder::new()
        .name("cm-event-log".into())
        .spawn(move || {
            let (_, rx) = host.subscribe(None);
            host.follow(rx, |e| match write_line(&file, e) {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!("event log: {err}; no more events are logged");
                    false
                }
            });
        })
}

fn write_line(file: &std::fs::File, e: &HostEvent) -> std::io::Result<()> {
    let mut v = e.to_json();
    v["seq"] = Value::from(e.seq);
    write_event(file, &v)
}
