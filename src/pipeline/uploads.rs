//! After the files are final: uploads them to `storageConfig` and reports each file's output
//! states 4 UPLOADING (with `progress`), 5 UPLOADED or 6 UPLOADFAIL (1107), then NULL.
//!
//! It runs on its own thread, started by the writer once every file is finalised, so
//! [`Mixer::destroy`](super::Mixer::destroy) returns when the recording is complete, not when
//! it is uploaded; the mixer stays STOPPING and its event stream ends with NULL after the last
//! upload. At most [`MAX_UPLOADING_MIXERS`] mixers of a process upload at once (each with
//! [`UploadOptions::workers`] files in flight); the others wait, their files reported STOPPED.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use super::state::Shared;
use crate::model::config::StorageSettings;
use crate::model::events::{codes, MixerEvent, OutputInfo, OutputState};
use crate::output::upload::{
    write_pending, JournalKey, UploadEvent, UploadOptions, UploadTarget, Uploader,
};
use crate::output::Storage;

/// Mixers of one process that upload at the same time; the rest queue.
pub const MAX_UPLOADING_MIXERS: usize = 4;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One of the [`MAX_UPLOADING_MIXERS`] slots, held while a mixer uploads.
struct Slot;

impl Slot {
    #[cfg(test)]
    fn take() -> Slot {
        Self::take_unless(|| false).expect("never given up")
    }

    /// Waits for a slot; `None` once `give_up()` says so (checked every 50 ms).
    fn take_unless(give_up: impl Fn() -> bool) -> Option<Slot> {
        let (m, cv) = &SLOTS;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_UPLOADING_MIXERS {
            if give_up() {
                return None;
            }
            n = cv
                .wait_timeout(n, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *n += 1;
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (m, cv) = &SLOTS;
        *m.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

/// Why a file was not uploaded when the uploads were abandoned (state 6).
const INTERRUPTED: &str = "upload interrupted (the recorder was stopped); the file is kept \
                           and the next run with the same storage uploads it";

/// What a mixer uploads to, from its config and settings.
#[derive(Debug, Clone)]
pub(crate) struct UploadPlan {
    pub target: UploadTarget,
    pub opts: UploadOptions,
    pub storage: Storage,
    pub journal_key: JournalKey,
}

impl UploadPlan {
    pub(crate) fn new(
        st: &StorageSettings,
        opts: &UploadOptions,
        storage: &Storage,
        journal_key: &JournalKey,
    ) -> UploadPlan {
        UploadPlan {
            target: target_of(st),
            opts: opts.clone(),
            storage: storage.clone(),
            journal_key: journal_key.clone(),
        }
    }
}

/// The uploader's view of a config's `storageConfig`.
pub fn target_of(st: &StorageSettings) -> UploadTarget {
    UploadTarget {
        vendor: st.vendor,
        region: st.region.clone(),
        bucket: st.bucket.clone(),
        access_key: st.access_key.clone(),
        secret_key: st.secret_key.clone(),
        endpoint: st.endpoint.clone(),
        keep_local: st.keep_local,
    }
}

/// A finished file: its path, and its final output info (id, name, sizes, times).
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub path: PathBuf,
    pub info: OutputInfo,
}

/// The object key of a reported name: the path as in `svrPathName`, without the leading '/'.
fn key_of(name: &str) -> String {
    name.trim_start_matches('/').to_string()
}

/// An output's info after an uploader event: 4 UPLOADING (with `progress`, or why it
/// retries), 5 UPLOADED (under the next free name when the bucket had the key), 6 UPLOADFAIL.
pub(crate) fn apply_upload_event(info: &mut OutputInfo, ev: &UploadEvent) {
    match ev {
        UploadEvent::Started { key, .. } => {
            if info.svr_file_path_name.is_empty() {
                info.svr_file_path_name = format!("/{}", key.trim_start_matches('/'));
            }
            info.state = OutputState::Uploading;
            info.progress = Some(0.0);
            info.err_desc.clear();
        }
        UploadEvent::Progress { percent, .. } => {
            info.state = OutputState::Uploading;
            info.progress = Some((percent * 10.0).round() / 10.0);
            info.err_desc.clear();
        }
        UploadEvent::Retrying {
            attempt,
            delay,
            desc,
            ..
        } => {
            info.state = OutputState::Uploading;
            info.err_desc = format!(
                "attempt {attempt} failed ({desc}); retrying in {:.0} s",
                delay.as_secs_f64()
            );
        }
        UploadEvent::Uploaded { size, key, .. } => {
            info.state = OutputState::Uploaded;
            info.progress = Some(100.0);
            info.file_size = *size;
            info.err_desc.clear();
            // the bucket had an object of that name: stored under the next free one
            if *key != key_of(&info.svr_file_path_name) {
                info.svr_file_path_name = format!("/{key}");
            }
        }
        UploadEvent::Failed { code, desc, .. } => {
            info.state = OutputState::UploadFail;
            info.progress = None;
            info.err_code = *code;
            info.err_desc = desc.clone();
        }
    }
}

/// Starts the upload thread; it ends the mixer (NULL with `code`/`desc`) when every file is
/// uploaded or failed. Falls back to ending at once if the thread cannot start.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    plan: UploadPlan,
    files: Vec<Finished>,
    code: i32,
    desc: String,
) {
    let s = shared.clone();
    let started = std::thread::Builder::new()
        .name("cm-upload".into())
        .spawn(move || {
            run(&s, plan, files);
            s.end_null(code, desc);
        });
    if let Err(e) = started {
        tracing::error!("cannot start the upload thread: {e}");
        shared.end_null(code, format!("upload not started: {e}"));
    }
}

fn run(shared: &Arc<Shared>, plan: UploadPlan, files: Vec<Finished>) {
    let abandoned = || {
        shared
            .uploads_abandoned
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let Some(_slot) = Slot::take_unless(abandoned) else {
        // stopped while waiting for a slot: nothing was uploaded; every file is kept with a
        // signed journal, for the next run
        for f in &files {
            let desc = match write_pending(
                &plan.target,
                &plan.storage,
                &plan.journal_key,
                &f.path,
                &key_of(&f.info.svr_file_path_name),
            ) {
                Ok(()) => INTERRUPTED.to_string(),
                Err(e) => format!("upload interrupted; {e}"),
            };
            shared.emit(MixerEvent::OutputInfoChanged(OutputInfo {
                state: OutputState::UploadFail,
                err_code: codes::UPLOAD_FAIL,
                err_desc: desc,
                progress: None,
                ..f.info.clone()
            }));
        }
        return;
    };
    let infos: Arc<Mutex<HashMap<PathBuf, OutputInfo>>> = Arc::new(Mutex::new(
        files
            .iter()
            .map(|f| (f.path.clone(), f.info.clone()))
            .collect(),
    ));
    let fail = |info: &OutputInfo, desc: String| {
        shared.emit(MixerEvent::OutputInfoChanged(OutputInfo {
            state: OutputState::UploadFail,
            err_code: codes::UPLOAD_FAIL,
            err_desc: desc,
            progress: None,
            ..info.clone()
        }));
    };
    let (s, map) = (shared.clone(), infos.clone());
    let up = Uploader::new(
        plan.target,
        plan.opts,
        plan.storage,
        plan.journal_key,
        move |ev: UploadEvent| {
            let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
            let Some(info) = m.get_mut(ev.file()) else {
                return;
            };
            apply_upload_event(info, &ev);
            s.emit(MixerEvent::OutputInfoChanged(info.clone()));
        },
    );
    let up = match up {
        Ok(u) => u,
        Err(e) => {
            for f in &files {
                fail(&f.info, e.to_string());
            }
            return;
        }
    };
    for f in &files {
        if let Err(e) = up.submit(&f.path, &key_of(&f.info.svr_file_path_name)) {
            infos
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&f.path);
            fail(&f.info, e.to_string());
        }
    }
    // the retry budget bounds every upload; a stop request ends them at once
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(24 * 3600);
    while !up.wait_idle(std::time::Duration::from_millis(50)) {
        let abandoned = shared
            .uploads_abandoned
            .load(std::sync::atomic::Ordering::Acquire);
        if abandoned || std::time::Instant::now() >= deadline {
            // cancels what runs (files and journals stay) and sends no more events
            drop(up);
            let left: Vec<OutputInfo> = infos
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|i| !matches!(i.state, OutputState::Uploaded | OutputState::UploadFail))
                .cloned()
                .collect();
            for info in left {
                fail(&info, INTERRUPTED.into());
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_key_is_the_reported_name_without_leading_slash() {
        assert_eq!(key_of("/rec/2026/a.mp4"), "rec/2026/a.mp4");
        assert_eq!(key_of("a_0002.mp4"), "a_0002.mp4");
    }

    #[test]
    fn slots_bound_concurrent_uploaders() {
        let held: Vec<Slot> = (0..MAX_UPLOADING_MIXERS).map(|_| Slot::take()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _s = Slot::take();
            tx.send(()).unwrap();
        });
        // all slots held: the next one waits
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
