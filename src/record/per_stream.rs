//! `record` of a mode 1 config (one file per stream), offline: each subscribed `--input`
//! camera is recorded on its own, at its size and frame rate (or `vFps`), with its user's audio
//! or everyone's (`aStreamType`); each subscribed user's audio into its own audio file. The
//! streams run one after the other; their events go to one log, each file its own output id
//! (in the log and in the summary). Each stream is a mode 0 room of a host of its own
//! (`record_one`), recorded offline. A stream that fails (its file cannot be written) does not
//! end the others: they are all recorded, then the first failure is returned, naming its stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{
    audio_format, audio_inputs, longest_input, record_one, EventLog, Progress, RecordError,
    RecordOptions, RecordSummary,
};
use crate::media::decode::{frame_at, Decoder};
use crate::model::events::{MixerEvent, MixerState, OutputInfo};
use crate::model::time::PaceMode;
use crate::pipeline::{start_stamp, user_of, MixerError};

pub(super) fn record(
    opts: RecordOptions,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<RecordSummary, RecordError> {
    let ps = opts
        .config
        .per_stream
        .clone()
        .ok_or_else(|| RecordError::Usage("not a mode 1 config".into()))?;
    if opts.settings.mode == PaceMode::Realtime {
        return Err(RecordError::Usage(
            "mode 1 (one file per stream) is recorded offline here; a live server feeds a \
             StreamRecorder"
                .into(),
        ));
    }
    if !opts.updates.is_empty() || !opts.pictures.is_empty() {
        return Err(RecordError::Usage(
            "mode 1 has no layout: --update and --picture do not apply".into(),
        ));
    }
    let t0 = Instant::now();
    let room_audio = if opts.settings.audio {
        audio_inputs(&opts.inputs, &opts.audio)?
    } else {
        Vec::new()
    };
    let duration = match opts.duration {
        Some(d) => d,
        None => longest_input(opts.inputs.iter().chain(&opts.audio).map(|(_, p)| p))?,
    };
    let stamp = start_stamp(opts.settings.start_time.unwrap_or_else(SystemTime::now));
    let sub = |config, inputs, audio| RecordOptions {
        config,
        inputs,
        audio,
        pictures: Vec::new(),
        updates: Vec::new(),
        storage: opts.storage.clone(),
        duration: Some(duration),
        settings: opts.settings.clone(),
        events: None,
    };
    let mut runs = Vec::new();
    let mut default_cam: HashMap<&str, &str> = HashMap::new();
    for (camid, path) in &opts.inputs {
        let user = user_of(camid);
        let first = *default_cam.entry(user).or_insert(camid);
        if !ps.subscribes_video(camid, first == camid || camid.ends_with(".-1")) {
            continue;
        }
        let frame = frame_at(path, std::time::Duration::ZERO)?;
        let (w, h) = if frame.rotation.swaps_axes() {
            (frame.height(), frame.width())
        } else {
            (frame.width(), frame.height())
        };
        let fps = Decoder::open(path)?.fps().round().clamp(1.0, 30.0) as u32;
        let cfg = ps.video_config(camid, w, h, fps, &stamp)?;
        let room = ps.video.as_ref().is_some_and(|v| v.room_audio);
        let audio = room_audio
            .iter()
            .filter(|(u, _)| room || u == user)
            .cloned()
            .collect();
        runs.push((
            camid.clone(),
            sub(cfg, vec![(camid.clone(), path.clone())], audio),
        ));
    }
    for (user, path) in &room_audio {
        if ps.subscribes_audio(user) {
            let cfg = ps.audio_config(user, &stamp)?;
            runs.push((
                format!("{user} (audio)"),
                sub(cfg, Vec::new(), vec![(user.clone(), path.clone())]),
            ));
        }
    }
    if runs.is_empty() {
        return Err(RecordError::Usage(
            "mode 1: no --input camera matches subscribeVideos and no audio matches \
             subscribeAudios"
                .into(),
        ));
    }
    // created empty by record_until; appended to line by line (resumed uploads write too)
    let file = match &opts.events {
        Some(p) => Some(super::open_events(p)?),
        None => None,
    };
    let log = |ev: MixerEvent| -> Result<(), RecordError> {
        if let Some(f) = file.as_ref() {
            super::write_event(f, &ev.to_json())?;
        }
        Ok(())
    };
    log(MixerEvent::state(MixerState::Starting))?;
    log(MixerEvent::state(MixerState::Running))?;
    let ids = Arc::new(AtomicU32::new(0));
    let total: u64 = runs
        .iter()
        .map(|(_, r)| crate::model::time::frames_for(r.config.output.fps, duration))
        .sum();
    let mut done = 0;
    let mut summaries = Vec::new();
    let mut failures: Vec<(String, RecordError)> = Vec::new();
    let streams = runs.len();
    for (what, run) in runs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let n = crate::model::time::frames_for(run.config.output.fps, duration);
        let el = match &file {
            Some(f) => Some(EventLog {
                file: f.try_clone()?,
                ids: Some(ids.clone()),
            }),
            None => None,
        };
        let before: Vec<_> = summaries
            .iter()
            .flat_map(|s: &RecordSummary| s.outputs.iter().cloned())
            .collect();
        // without an events log the stream's outputs keep their own ids (0, 1…): number them
        // after the outputs of the streams before (the log numbers them as they appear)
        let offset = if file.is_some() {
            None
        } else {
            Some(before.len() as u32)
        };
        let s = record_one(
            run,
            stop,
            |p| {
                let mut outputs = before.clone();
                outputs.extend(renumbered(&p.outputs, offset));
                progress(&Progress {
                    frames: done + p.frames,
                    total,
                    fps: p.fps,
                    elapsed: t0.elapsed(),
                    outputs,
                })
            },
            el,
        );
        done += n;
        match s {
            Ok(mut s) => {
                s.outputs = renumbered(&s.outputs, offset);
                s.output = s.outputs.first().cloned();
                summaries.push(s);
            }
            Err(e) => {
                // this stream only: the others are recorded all the same
                log(MixerEvent::Error {
                    code: e.code(),
                    desc: format!("stream {what}: {e}"),
                })?;
                failures.push((what, e));
            }
        }
    }
    if let Some((what, e)) = failures.into_iter().next() {
        let code = e.code();
        let desc = if summaries.is_empty() {
            None
        } else {
            Some(format!(
                "stream {what}: {e} ({} of {streams} streams recorded)",
                summaries.len()
            ))
        };
        log(MixerEvent::StateChanged {
            state: MixerState::Null,
            err: code,
            err_desc: desc
                .clone()
                .unwrap_or_else(|| format!("stream {what}: {e}")),
            encoder: None,
            backend: None,
        })?;
        return Err(match desc {
            // nothing was recorded: the error as it is (a usage error stays one)
            None => e,
            Some(desc) => RecordError::Mixer(MixerError::Stopped { code, desc }),
        });
    }
    log(MixerEvent::state(MixerState::Stopping))?;
    log(MixerEvent::state(MixerState::Null))?;
    let wall = t0.elapsed().as_secs_f64();
    let video: Vec<&RecordSummary> = summaries.iter().filter(|s| s.video).collect();
    let first = summaries
        .first()
        .cloned()
        .ok_or_else(|| RecordError::Usage("stopped before the first stream was recorded".into()))?;
    let duration_ms = summaries.iter().map(|s| s.duration_ms).max().unwrap_or(0);
    Ok(RecordSummary {
        frames: video.iter().map(|s| s.frames).sum(),
        fps: video.first().map_or(first.fps, |s| s.fps),
        duration_ms,
        bytes: summaries.iter().map(|s| s.bytes).sum(),
        path: opts.storage.display().to_string(),
        encoder: first.encoder.clone(),
        backend: first.backend.clone(),
        wall_s: wall,
        speed: duration_ms as f64 / 1000.0 / wall.max(1e-9),
        audio: summaries.iter().any(|s| s.audio),
        audio_format: summaries
            .iter()
            .find(|s| s.audio)
            .map(|s| s.audio_format.clone())
            .unwrap_or_else(|| audio_format(&opts.config)),
        audio_inputs: room_audio.len(),
        video: !video.is_empty(),
        stopped_early: summaries.iter().any(|s| s.stopped_early),
        output: first.output.clone(),
        outputs: summaries.iter().flat_map(|s| s.outputs.clone()).collect(),
        stats: summaries
            .iter()
            .fold(crate::pipeline::MixerStats::default(), |a, s| {
                crate::pipeline::MixerStats {
                    ticks: a.ticks + s.stats.ticks,
                    audio_frames: a.audio_frames + s.stats.audio_frames,
                    audio_queue_full: a.audio_queue_full + s.stats.audio_queue_full,
                    audio_late_samples: a.audio_late_samples + s.stats.audio_late_samples,
                    audio_tracks: a.audio_tracks + s.stats.audio_tracks,
                    late_ticks: a.late_ticks + s.stats.late_ticks,
                    max_tick_late_us: a.max_tick_late_us.max(s.stats.max_tick_late_us),
                    overloaded: a.overloaded || s.stats.overloaded,
                    frames_received: a.frames_received + s.stats.frames_received,
                    frames_used: a.frames_used + s.stats.frames_used,
                    frames_replaced: a.frames_replaced + s.stats.frames_replaced,
                    frames_late: a.frames_late + s.stats.frames_late,
                    frames_repeated: a.frames_repeated + s.stats.frames_repeated,
                    encoder_queue: 0,
                    encoder_max_us: a.encoder_max_us.max(s.stats.encoder_max_us),
                }
            }),
        decodes: Vec::new(),
        resumed_uploads: Vec::new(),
    })
}

/// `outputs` (one stream's, by its own ids) numbered from `offset` on in their order; as they
/// are with `None` (already numbered by the events log).
fn renumbered(outputs: &[OutputInfo], offset: Option<u32>) -> Vec<OutputInfo> {
    outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut o = o.clone();
            if let Some(base) = offset {
                o.id = base + i as u32;
            }
            o
        })
        .collect()
}
