//! After the files are final: uploads them to `storageConfig` and reports each file's output
//! states 4 UPLOADING (with `progress`), 5 UPLOADED or 6 UPLOADFAIL (1107), then NULL.
//!
//! It runs on its own thread, started by the writer once every file is finalised, so
//! [`Mixer::destroy`](super::Mixer::destroy) returns when the recording is complete, not when
//! it is uploaded; the mixer stays STOPPING and its event stream ends with NULL after the last
//! upload. At most [`MAX_UPLOADING_MIXERS`] mixers of one [`super::Services`] (a host's rooms,
//! or a bare mixer alone) upload at once (each with `UploadOptions::workers` files in flight);
//! the others wait, their files reported STOPPED.
//!
//! Without the cargo feature `upload` there is no uploader: [`check_storage`] refuses a config
//! with a `storageConfig` when the mixer is created, and [`UploadPlan`] has no value.

use std::path::PathBuf;
#[cfg(feature = "upload")]
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[cfg(doc)]
use super::services::MAX_UPLOADING_MIXERS;
#[cfg(feature = "upload")]
use super::state::Shared;
#[cfg(feature = "upload")]
use crate::model::config::StorageSettings;
use crate::model::config::{ConfigError, MixerConfig};
use crate::model::events::OutputInfo;
#[cfg(feature = "upload")]
use crate::model::events::OutputState;
#[cfg(feature = "upload")]
use crate::model::events::{codes, MixerEvent};
#[cfg(feature = "upload")]
use crate::output::upload::{write_pending, UploadEvent, Uploader};
use crate::output::upload::{JournalKey, UploadOptions};
use crate::output::Storage;

/// Checks a config's `storageConfig` when a mixer is created: its endpoint and bucket (a bad
/// one is a config error, code 5). A build without the `upload` feature refuses any
/// `storageConfig` with a [`ConfigError::Invalid`] at `storageConfig` that names the feature.
pub(crate) fn check_storage(cfg: &MixerConfig) -> Result<(), ConfigError> {
    let Some(st) = &cfg.storage else {
        return Ok(());
    };
    #[cfg(feature = "upload")]
    {
        st.resolved_endpoint()
            .map(drop)
            .map_err(|e| ConfigError::Invalid {
                path: "storageConfig".into(),
                rule: e.to_string(),
            })
    }
    #[cfg(not(feature = "upload"))]
    {
        let _ = st;
        Err(ConfigError::Invalid {
            path: "storageConfig".into(),
            rule: "uploads are not in this build of cloudmixer (built without its cargo feature \
                   `upload`); remove storageConfig to keep the files local, or build with \
                   --features upload"
                .into(),
        })
    }
}

/// What a mixer uploads to: `None` without a `storageConfig` (or in a build without the
/// `upload` feature, where [`check_storage`] refused it already).
pub(crate) fn plan_of(
    cfg: &MixerConfig,
    (upload, journal_key): (&UploadOptions, &JournalKey),
    storage: &Storage,
) -> Option<UploadPlan> {
    #[cfg(feature = "upload")]
    {
        cfg.storage
            .as_ref()
            .map(|st| UploadPlan::new(st, upload, storage, journal_key))
    }
    #[cfg(not(feature = "upload"))]
    {
        let _ = (cfg, upload, journal_key, storage);
        None
    }
}

/// No uploads in a build without the `upload` feature: a plan never exists.
#[cfg(not(feature = "upload"))]
#[derive(Debug, Clone)]
pub(crate) enum UploadPlan {}

/// Never called: there is no [`UploadPlan`] without the `upload` feature.
#[cfg(not(feature = "upload"))]
pub(crate) fn spawn(
    _shared: std::sync::Arc<super::state::Shared>,
    plan: UploadPlan,
    _files: Vec<Finished>,
    _code: i32,
    _desc: String,
) {
    match plan {}
}

/// Why a file was not uploaded when the uploads were abandoned (state 6).
#[cfg(feature = "upload")]
const INTERRUPTED: &str = "upload interrupted (the recorder was stopped); the file is kept \
                           and the next run with the same storage uploads it";

/// What a mixer uploads to, from its config and settings.
#[cfg(feature = "upload")]
#[derive(Debug, Clone)]
pub(crate) struct UploadPlan {
    pub target: StorageSettings,
    pub opts: UploadOptions,
    pub storage: Storage,
    pub journal_key: JournalKey,
}

#[cfg(feature = "upload")]
impl UploadPlan {
    pub(crate) fn new(
        st: &StorageSettings,
        opts: &UploadOptions,
        storage: &Storage,
        journal_key: &JournalKey,
    ) -> UploadPlan {
        UploadPlan {
            target: st.clone(),
            opts: opts.clone(),
            storage: storage.clone(),
            journal_key: journal_key.clone(),
        }
    }
}

/// A finished file: its path, and its final output info (id, name, sizes, times).
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    // read by the uploader only (feature `upload`)
    #[cfg_attr(not(feature = "upload"), allow(dead_code))]
    pub path: PathBuf,
    pub info: OutputInfo,
}

/// The object key of a reported name: the path as in `svrPathName`, without the leading '/'.
#[cfg(feature = "upload")]
fn key_of(name: &str) -> String {
    name.trim_start_matches('/').to_string()
}

/// An output's info after an uploader event: 4 UPLOADING (with `progress`, or why it
/// retries), 5 UPLOADED (under the next free name when the bucket had the key), 6 UPLOADFAIL.
#[cfg(feature = "upload")]
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
#[cfg(feature = "upload")]
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

#[cfg(feature = "upload")]
fn run(shared: &Arc<Shared>, plan: UploadPlan, files: Vec<Finished>) {
    let abandoned = || {
        shared
            .uploads_abandoned
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let Some(_slot) = shared.services.upload_slots().take_unless(abandoned) else {
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

#[cfg(all(test, feature = "upload"))]
mod tests {
    use super::*;

    #[test]
    fn object_key_is_the_reported_name_without_leading_slash() {
        assert_eq!(key_of("/rec/2026/a.mp4"), "rec/2026/a.mp4");
        assert_eq!(key_of("a_0002.mp4"), "a_0002.mp4");
    }
}

#[cfg(all(test, not(feature = "upload")))]
mod no_upload_tests {
    use serde_json::json;

    use crate::model::config::{ConfigError, MixerConfig};
    use crate::model::events::codes;
    use crate::output::Storage;
    use crate::pipeline::{Mixer, MixerError, MixerSettings, StreamRecorder};

    fn storage_config() -> serde_json::Value {
        json!({"vendor": 1, "region": "cn-hangzhou", "bucket": "records",
               "accessKey": "AK", "secretKey": "SK"})
    }

    /// The error of a create refused for its `storageConfig`: a config error (code 5) at
    /// `storageConfig` that names the missing cargo feature.
    fn assert_refused(e: &MixerError) {
        match e {
            MixerError::Config(ConfigError::Invalid { path, rule }) => {
                assert_eq!(path, "storageConfig");
                assert!(rule.contains("feature `upload`"), "{rule}");
            }
            other => panic!("not a storageConfig error: {other:?}"),
        }
        assert_eq!(e.code(), codes::PARAM_ERR);
        assert!(e.to_string().starts_with("storageConfig: "), "{e}");
    }

    /// Without the `upload` feature a config with a `storageConfig` still parses (a config
    /// checker can read it), but a mixer (mode 0) or a stream recorder (mode 1) refuses it at
    /// create with a typed config error; nothing is recorded.
    #[test]
    fn a_storage_config_is_refused_without_the_upload_feature() {
        let root = std::env::temp_dir().join(format!("cm-no-upload-{}", std::process::id()));
        let mut v: serde_json::Value = serde_json::from_str(include_str!(
            "../../fixtures/layouts/seed_side_by_side.json"
        ))
        .unwrap();
        v["videoFileCfg"]["svrPathName"] = json!("/rec.mp4");
        v["storageConfig"] = storage_config();
        let cfg = MixerConfig::from_value(v.clone()).expect("parses");
        assert!(cfg.storage.is_some());
        let e = Mixer::create_with(cfg, Storage::new(&root), MixerSettings::offline())
            .err()
            .expect("refused");
        assert_refused(&e);
        assert!(!root.join("rec.mp4").exists(), "nothing recorded");
        // the same config without storageConfig records locally
        v.as_object_mut().unwrap().remove("storageConfig");
        let mut m = Mixer::create_with(
            MixerConfig::from_value(v).unwrap(),
            Storage::new(&root),
            MixerSettings::offline(),
        )
        .expect("no storageConfig: created");
        m.destroy().unwrap();

        let mode1 = json!({"mode": 1,
            "videoFileCfg": {"svrPath": "/r", "svrFileNameSuffix": ".mp4",
                             "subscribeVideos": ["_cr_all_"]},
            "storageConfig": storage_config()});
        let e = StreamRecorder::create(
            MixerConfig::from_value(mode1).unwrap(),
            Storage::new(&root),
            MixerSettings::default(),
        )
        .err()
        .expect("refused");
        assert_refused(&e);
        let _ = std::fs::remove_dir_all(&root);
    }
}
