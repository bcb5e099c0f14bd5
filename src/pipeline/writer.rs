//! The writer: the one thread that owns the muxers. It takes the packets of every track from
//! the encode stages, writes each to the muxers that carry its track, reports
//! `OutputInfoChanged` at least once a second, and at the end finalises the files and reports
//! the final output info and the return to NULL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::error::{End, MAX_DURATION_DESC};
use super::state::Shared;
use crate::model::events::{codes, MixerEvent, OutputInfo, OutputState};
use crate::output::live::{LiveSink, LiveStatus};
use crate::output::segment::Segmented;
use crate::output::{Packet, TrackId};

use super::uploads::{Finished, UploadPlan};

pub(crate) enum WriterMsg {
    Packet(Packet),
    /// A stage has ended (after its last packet).
    End(End),
}

/// One muxer (or series of segments) and the names and output ids its targets are reported
/// under.
pub(crate) struct Output {
    pub muxer: Segmented,
    pub names: Vec<String>,
    pub ids: Vec<u32>,
    /// Its files are uploaded after the end (`storageConfig`; not HLS playlists).
    pub upload: bool,
}

impl Output {
    /// After a segment closed: its final infos (its ids, names), then new ids and names for
    /// the open segment.
    fn roll(
        &mut self,
        next_id: &mut u32,
        rep: &Reporter,
        shared: &Shared,
        finished: &mut Vec<Finished>,
    ) {
        for c in self.muxer.take_closed() {
            for ((f, name), id) in c.files.iter().zip(&self.names).zip(&self.ids) {
                let info = OutputInfo {
                    id: *id,
                    state: OutputState::Stopped,
                    svr_file_path_name: name.clone(),
                    start_time: rep.start_time,
                    duration: c.duration.as_millis() as u64,
                    file_size: f.bytes,
                    err_code: codes::OK,
                    err_desc: String::new(),
                    progress: None,
                };
                if self.upload {
                    finished.push(Finished {
                        path: f.dest.clone().into(),
                        info: info.clone(),
                    });
                }
                shared.emit(MixerEvent::OutputInfoChanged(info));
            }
            let files = self.muxer.muxer().file_names();
            for ((name, id), file) in self.names.iter_mut().zip(&mut self.ids).zip(files) {
                if let Some(file) = file {
                    match name.rfind('/') {
                        Some(i) => name.replace_range(i + 1.., &file),
                        None => *name = file,
                    }
                }
                *id = *next_id;
                *next_id += 1;
            }
        }
    }
}

/// A live target: its sink, reported name and output id, and the tracks it carries.
pub(crate) struct Live {
    sink: Option<LiveSink>,
    name: String,
    id: u32,
    tracks: Vec<TrackId>,
    /// The status as last seen (the final one once finished).
    last: LiveStatus,
}

impl Live {
    pub(crate) fn new(sink: LiveSink, name: String, id: u32, tracks: Vec<TrackId>) -> Self {
        Live {
            sink: Some(sink),
            name,
            id,
            tracks,
            last: LiveStatus::default(),
        }
    }

    fn status(&mut self) -> &LiveStatus {
        if let Some(s) = &self.sink {
            self.last = s.status();
        }
        &self.last
    }
}

/// How long the end of a recording waits for a live target to send what is queued.
const LIVE_FINISH: Duration = Duration::from_secs(2);

pub(crate) struct Reporter {
    pub start_time: u64,
}

impl Reporter {
    /// One output info per target, by id. Live targets report their own state: 1 while
    /// connected, 3 with the error while down (and at the end if they were down), 2 at a clean
    /// end; `state`/`err`/`desc` are the files'.
    pub(crate) fn infos(
        &self,
        outputs: &[Output],
        lives: &mut [Live],
        state: OutputState,
        err: i32,
        desc: &str,
    ) -> Vec<(u32, MixerEvent)> {
        let mut evs = Vec::new();
        let mut dur = 0;
        for o in outputs {
            let m = o.muxer.muxer();
            let d = m.duration().as_millis() as u64;
            dur = dur.max(d);
            for ((p, name), id) in m.progress().into_iter().zip(&o.names).zip(&o.ids) {
                evs.push((
                    *id,
                    MixerEvent::OutputInfoChanged(OutputInfo {
                        id: *id,
                        state,
                        svr_file_path_name: name.clone(),
                        start_time: self.start_time,
                        duration: d,
                        file_size: p.bytes,
                        err_code: err,
                        err_desc: desc.to_string(),
                        progress: None,
                    }),
                ));
            }
        }
        for l in lives.iter_mut() {
            let (id, name) = (l.id, l.name.clone());
            let st = l.status().clone();
            let (state, err, desc) = match (&st.error, st.connected, state) {
                (Some(e), false, s) => (
                    OutputState::Fail,
                    codes::FILE_ERR,
                    match s {
                        OutputState::Running => format!("live target down: {e}; reconnecting"),
                        _ => format!("live target down at the end: {e}"),
                    },
                ),
                (_, _, OutputState::Running) => (OutputState::Running, codes::OK, String::new()),
                (_, _, s) => (s, err, desc.to_string()),
            };
            let desc = if st.dropped > 0 && err == codes::OK {
                format!("{} packets dropped", st.dropped)
            } else {
                desc
            };
            evs.push((
                id,
                MixerEvent::OutputInfoChanged(OutputInfo {
                    id,
                    state,
                    svr_file_path_name: name,
                    start_time: self.start_time,
                    duration: dur,
                    file_size: st.bytes,
                    err_code: err,
                    err_desc: desc,
                    progress: None,
                }),
            ));
        }
        evs.sort_by_key(|e| e.0);
        evs
    }
}

/// Queues `p` for every live target that carries its track, each its own [`Packet::share`]:
/// the payload is referenced, not copied (its own timestamps, which the target's muxer
/// rescales); never blocks.
fn send_live(lives: &[Live], p: &Packet) {
    for l in lives.iter().filter(|l| l.tracks.contains(&p.track)) {
        if let Some(s) = &l.sink {
            s.send(p.share());
        }
    }
}

/// The writer's thread: runs until every one of `stages` has ended (or one failed).
pub(crate) fn writer_loop(
    shared: Arc<Shared>,
    mut outputs: Vec<Output>,
    mut lives: Vec<Live>,
    rx: Receiver<WriterMsg>,
    stages: usize,
    rep: Reporter,
    upload: Option<UploadPlan>,
) {
    // closed segments and final files, uploaded after the end when `upload` is set
    let mut finished = Vec::new();
    let mut next_info = Instant::now() + Duration::from_secs(1);
    // segments after the first get ids after every configured target's
    let mut next_id = outputs
        .iter()
        .flat_map(|o| o.ids.iter())
        .chain(lives.iter().map(|l| &l.id))
        .max()
        .map_or(0, |m| m + 1);
    let mut ended = 0usize;
    let mut end = End::Stop;
    let mut late_before = 0u64;
    loop {
        match rx.recv_deadline(next_info) {
            Ok(WriterMsg::Packet(mut p)) => {
                crate::output::muxer::make_shareable(&mut p.data);
                send_live(&lives, &p);
                let mut failed = None;
                // a track is usually in one muxer: it takes the packet; others share its payload
                let track = p.track;
                let n = outputs
                    .iter()
                    .filter(|o| o.muxer.muxer().carries(track))
                    .count();
                let mut p = Some(p);
                let mut k = 0;
                for o in outputs
                    .iter_mut()
                    .filter(|o| o.muxer.muxer().carries(track))
                {
                    k += 1;
                    let pk = if k == n {
                        p.take()
                    } else {
                        p.as_ref().map(Packet::share)
                    };
                    let Some(pk) = pk else { break };
                    if let Err(e) = o.muxer.write(pk) {
                        failed = Some(End::Failed(e.code(), e.to_string()));
                        break;
                    }
                    o.roll(&mut next_id, &rep, &shared, &mut finished);
                }
                if let Some(f) = failed {
                    end = f;
                    break;
                }
            }
            Ok(WriterMsg::End(e)) => {
                ended += 1;
                end = end.worst(e);
                if ended >= stages || matches!(end, End::Failed(..)) {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                end = end.worst(End::Failed(
                    codes::INTERNAL,
                    "a pipeline stage ended without a word".into(),
                ));
                break;
            }
        }
        if Instant::now() >= next_info {
            // a deleted or replaced output file ends the recording (905), once a second
            if let Some(e) = outputs
                .iter()
                .find_map(|o| o.muxer.muxer().check_files().err())
            {
                end = end.worst(End::Failed(e.code(), e.to_string()));
                break;
            }
            for (_, ev) in rep.infos(&outputs, &mut lives, OutputState::Running, 0, "") {
                shared.emit(ev);
            }
            // the counters, and whether the last second kept time
            let mut st = shared.stats();
            st.overloaded = st.late_ticks > late_before;
            if st.overloaded {
                tracing::warn!(
                    late = st.late_ticks - late_before,
                    "ticks late in the last second: the mixer cannot keep real time"
                );
            }
            late_before = st.late_ticks;
            shared
                .counters
                .overloaded
                .store(st.overloaded, std::sync::atomic::Ordering::Relaxed);
            shared.emit(MixerEvent::Stats(st));
            next_info = Instant::now() + Duration::from_secs(1);
        }
    }
    if let End::Failed(c, d) = &end {
        shared.set_ended(*c, d);
    }
    // the stages' sends fail from now on, so they stop at once
    drop(rx);
    // live targets send what is queued (bounded in time) and close, in parallel
    let finishing: Vec<_> = lives
        .iter_mut()
        .filter_map(|l| {
            l.sink
                .take()
                .map(|s| std::thread::spawn(move || s.finish(LIVE_FINISH)))
        })
        .collect();
    for (l, h) in lives.iter_mut().zip(finishing) {
        if let Ok(st) = h.join() {
            l.last = st;
        }
    }
    for o in &mut outputs {
        if let Err(e) = o.muxer.finish() {
            end = end.worst(End::Failed(e.code(), e.to_string()));
        }
        o.roll(&mut next_id, &rep, &shared, &mut finished);
        // a file deleted in the last second is as lost as one deleted earlier
        if let Err(e) = o.muxer.muxer().check_files() {
            end = end.worst(End::Failed(e.code(), e.to_string()));
        }
    }
    let (code, desc, out_state) = match &end {
        End::Stop => (codes::OK, String::new(), OutputState::Stopped),
        End::MaxDuration => (
            codes::RECORD_MAX,
            MAX_DURATION_DESC.to_string(),
            OutputState::Stopped,
        ),
        End::Failed(c, d) => (*c, d.clone(), OutputState::Fail),
    };
    if code != codes::OK {
        shared.set_ended(code, &desc);
    }
    shared.begin_stopping();
    let infos = rep.infos(&outputs, &mut lives, out_state, code, &desc);
    // the open files' final infos, in the same order as the muxers' targets
    for o in outputs.iter().filter(|o| o.upload) {
        for (p, id) in o.muxer.muxer().progress().into_iter().zip(&o.ids) {
            if let Some((_, MixerEvent::OutputInfoChanged(i))) = infos.iter().find(|e| e.0 == *id) {
                finished.push(Finished {
                    path: p.dest.into(),
                    info: i.clone(),
                });
            }
        }
    }
    for (_, ev) in infos {
        shared.emit(ev);
    }
    match upload {
        Some(plan) if !finished.is_empty() => {
            finished.sort_by_key(|f| f.info.id);
            super::uploads::spawn(shared, plan, finished, code, desc)
        }
        _ => shared.end_null(code, desc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::live::Msg;
    use ffmpeg::packet::Ref as _;
    use ffmpeg_next as ffmpeg;

    fn payload(p: &ffmpeg::Packet) -> *const u8 {
        p.data().map_or(std::ptr::null(), <[u8]>::as_ptr)
    }

    /// The live targets' packets reference the writer's payload (no copy) and carry their own
    /// timestamps.
    #[test]
    fn live_targets_share_the_payload() {
        ffmpeg::init().unwrap();
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let mut data = ffmpeg::Packet::copy(&bytes);
        data.set_pts(Some(90));
        data.set_dts(Some(90));
        let mut p = Packet { track: 0, data };
        crate::output::muxer::make_shareable(&mut p.data);
        let (a, ra) = LiveSink::detached("rtmp://a/live/x");
        let (b, rb) = LiveSink::detached("rtmp://b/live/x");
        let (c, rc) = LiveSink::detached("rtmp://c/live/x");
        let lives = vec![
            Live::new(a, "a".into(), 0, vec![0, 1]),
            Live::new(b, "b".into(), 1, vec![0]),
            Live::new(c, "c".into(), 2, vec![1]), // not this track
        ];
        send_live(&lives, &p);
        let take = |rx: &crossbeam_channel::Receiver<Msg>| match rx.try_recv() {
            Ok(Msg::Packet(p)) => p,
            _ => panic!("no packet queued"),
        };
        let (mut pa, pb) = (take(&ra), take(&rb));
        assert!(
            rc.try_recv().is_err(),
            "a target without the track gets nothing"
        );
        // one buffer, three references (writer + two live targets), the same bytes
        // SAFETY: the packets are valid and reference-counted.
        let refs = unsafe { ffmpeg::ffi::av_buffer_get_ref_count((*p.data.as_ptr()).buf) };
        assert_eq!(refs, 3);
        assert_eq!(payload(&pa.data), payload(&p.data));
        assert_eq!(payload(&pb.data), payload(&p.data));
        assert_eq!(pa.data.data(), Some(&bytes[..]));
        // a target rescales its own copy: nobody else's timestamps move
        pa.data
            .rescale_ts(ffmpeg::Rational::new(1, 90), ffmpeg::Rational::new(1, 1000));
        pa.data.set_stream(3);
        assert_eq!(pa.data.pts(), Some(1000));
        assert_eq!(
            (p.data.pts(), p.data.dts(), p.data.stream()),
            (Some(90), Some(90), 0)
        );
        assert_eq!((pb.data.pts(), pb.data.stream()), (Some(90), 0));
        // the writer's packet goes on to a muxer and is freed: the targets' payload lives on
        drop(p);
        assert_eq!(pb.data.data(), Some(&bytes[..]));
        assert_eq!(payload(&pa.data), payload(&pb.data));
    }

    /// `ffmpeg::Packet::clone` copies the payload (why the writer does not use it).
    #[test]
    fn ffmpeg_clone_copies_share_does_not() {
        ffmpeg::init().unwrap();
        let p = ffmpeg::Packet::copy(&[7u8; 4096]);
        assert_ne!(payload(&p.clone()), payload(&p));
        assert_eq!(payload(&crate::output::muxer::share_data(&p)), payload(&p));
    }
}
