//! The writer: the one thread that owns the muxers. It takes the packets of every track from
//! the encode stages, writes each to the muxers that carry its track, reports
//! `OutputInfoChanged` at least once a second, and at the end finalises the files and reports
//! the final output info and the return to NULL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::state::{End, Shared, MAX_DURATION_DESC};
use crate::model::events::{codes, MixerEvent, OutputInfo, OutputState};
use crate::output::{Muxer, Packet};

pub(crate) enum WriterMsg {
    Packet(Packet),
    /// A stage has ended (after its last packet).
    End(End),
}

/// One muxer and the names its targets are reported under.
pub(crate) struct Output {
    pub muxer: Muxer,
    pub names: Vec<String>,
}

pub(crate) struct Reporter {
    pub start_time: u64,
}

impl Reporter {
    pub(crate) fn infos(
        &self,
        outputs: &[Output],
        state: OutputState,
        err: i32,
        desc: &str,
    ) -> Vec<MixerEvent> {
        let mut id = 0u32;
        let mut evs = Vec::new();
        for o in outputs {
            let dur = o.muxer.duration().as_millis() as u64;
            for (p, name) in o.muxer.progress().into_iter().zip(&o.names) {
                evs.push(MixerEvent::OutputInfoChanged(OutputInfo {
                    id,
                    state,
                    svr_file_path_name: name.clone(),
                    start_time: self.start_time,
                    duration: dur,
                    file_size: p.bytes,
                    err_code: err,
                    err_desc: desc.to_string(),
                }));
                id += 1;
            }
        }
        evs
    }
}

/// The writer's thread: runs until every one of `stages` has ended (or one failed).
pub(crate) fn writer_loop(
    shared: Arc<Shared>,
    mut outputs: Vec<Output>,
    rx: Receiver<WriterMsg>,
    stages: usize,
    rep: Reporter,
) {
    let mut next_info = Instant::now() + Duration::from_secs(1);
    let mut ended = 0usize;
    let mut end = End::Stop;
    loop {
        match rx.recv_deadline(next_info) {
            Ok(WriterMsg::Packet(p)) => {
                let mut failed = None;
                // a track is usually in one muxer: it takes the packet, no copy
                let track = p.track;
                let n = outputs.iter().filter(|o| o.muxer.carries(track)).count();
                let mut p = Some(p);
                let mut k = 0;
                for o in outputs.iter_mut().filter(|o| o.muxer.carries(track)) {
                    k += 1;
                    let pk = if k == n {
                        p.take()
                    } else {
                        p.as_ref().map(|p| Packet {
                            track,
                            data: p.data.clone(),
                        })
                    };
                    let Some(pk) = pk else { break };
                    if let Err(e) = o.muxer.write(pk) {
                        failed = Some(End::Failed(e.code(), e.to_string()));
                        break;
                    }
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
            if let Some(e) = outputs.iter().find_map(|o| o.muxer.check_files().err()) {
                end = end.worst(End::Failed(e.code(), e.to_string()));
                break;
            }
            for ev in rep.infos(&outputs, OutputState::Running, 0, "") {
                shared.emit(ev);
            }
            next_info = Instant::now() + Duration::from_secs(1);
        }
    }
    if let End::Failed(c, d) = &end {
        shared.set_ended(*c, d);
    }
    // the stages' sends fail from now on, so they stop at once
    drop(rx);
    for o in &mut outputs {
        if let Err(e) = o.muxer.finish() {
            end = end.worst(End::Failed(e.code(), e.to_string()));
        }
        // a file deleted in the last second is as lost as one deleted earlier
        if let Err(e) = o.muxer.check_files() {
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
    for ev in rep.infos(&outputs, out_state, code, &desc) {
        shared.emit(ev);
    }
    shared.end_null(code, desc);
}
