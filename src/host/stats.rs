//! One snapshot of the process: per room its state, counters and per-source stats, bytes
//! written, its URL inputs' states and counters, and the process's resident memory.

use std::sync::Arc;

use super::{Host, Room};
use crate::model::events::OutputState;
use crate::pipeline::sources::SourceStats;
use crate::pipeline::MixerStats;

/// One room in a [`HostStats`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomStats {
    /// The mixer id.
    #[serde(rename = "mixerID")]
    pub mixer_id: String,
    /// The vendor's mixer state.
    pub state: u8,
    /// The mixer's counters.
    pub stats: MixerStats,
    /// Per-source input counters.
    pub sources: Vec<SourceStats>,
    /// Bytes written to its outputs so far.
    pub bytes_written: u64,
    /// Its live targets (rtmp/srt) that are up.
    pub live_up: u32,
    /// Its live targets that are down (failed or retrying).
    pub live_down: u32,
    /// Its outputs by state (index = the vendor's output state 0–6).
    pub outputs_by_state: [u32; 7],
    /// Its URL inputs (pulled live): state, error and counters.
    pub inputs: Vec<super::feed::pull::InputStats>,
}

/// The process now ([`Host::stats`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStats {
    /// Every room known, by id.
    pub rooms: Vec<RoomStats>,
    /// Rooms by mixer state (index = the vendor's state 0–4).
    pub rooms_by_state: [u32; 5],
    /// The room limit, if any.
    pub max_rooms: Option<usize>,
    /// Whether the host is draining (no new rooms).
    pub draining: bool,
    /// Resident memory of the process, bytes (0 where unknown).
    pub rss_bytes: u64,
    /// How many more rooms it can take, and what a room costs.
    pub capacity: super::capacity::CapacityEstimate,
    /// The host's shared services ([`Host::services`]): uploads and the GPU renderer.
    pub services: ServiceStats,
}

/// The figures of a host's [`crate::pipeline::Services`] (one set for all its rooms).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStats {
    /// Rooms uploading their files now (at most [`crate::pipeline::MAX_UPLOADING_MIXERS`]).
    pub uploading_rooms: u32,
    /// Rooms whose files wait for an upload slot.
    pub rooms_waiting_to_upload: u32,
    /// Whether the GPU renderer was opened (a room composed on the GPU).
    pub gpu_open: bool,
    /// Compositors (rooms) on the GPU renderer now.
    pub gpu_compositors: u32,
    /// GPU submissions (batches) so far.
    pub gpu_batches: u64,
    /// Frames composed on the GPU renderer so far.
    pub gpu_frames: u64,
}

impl ServiceStats {
    /// The figures of `services` now (opens nothing).
    pub fn of(services: &crate::pipeline::Services) -> ServiceStats {
        let (held, waiting) = services.upload_slots().counts();
        #[allow(unused_mut)]
        let mut st = ServiceStats {
            uploading_rooms: held as u32,
            rooms_waiting_to_upload: waiting as u32,
            ..ServiceStats::default()
        };
        #[cfg(feature = "gpu")]
        if let Some(r) = services.renderer() {
            let g = r.stats();
            st.gpu_open = true;
            st.gpu_compositors = r.compositors() as u32;
            st.gpu_batches = g.batches;
            st.gpu_frames = g.frames;
        }
        st
    }
}

pub(super) fn snapshot(host: &Host, rooms: &[Arc<Room>]) -> HostStats {
    let mut by_state = [0u32; 5];
    let mut out: Vec<RoomStats> = rooms
        .iter()
        .map(|r| {
            let info = r.info();
            let state = info.state;
            by_state[(state as usize).min(4)] += 1;
            let outputs = info.outputs;
            let mut outputs_by_state = [0u32; 7];
            let (mut live_up, mut live_down) = (0, 0);
            for o in &outputs {
                outputs_by_state[(o.state as usize).min(6)] += 1;
                if o.svr_file_path_name.contains("://") {
                    match o.state {
                        OutputState::Running => live_up += 1,
                        OutputState::Fail => live_down += 1,
                        _ => {}
                    }
                }
            }
            RoomStats {
                mixer_id: r.id.to_string(),
                state,
                stats: info.stats,
                sources: info.sources,
                bytes_written: outputs.iter().map(|o| o.file_size).sum(),
                live_up,
                live_down,
                outputs_by_state,
                inputs: info.input_states,
            }
        })
        .collect();
    out.sort_by(|a, b| a.mixer_id.cmp(&b.mixer_id));
    HostStats {
        rooms: out,
        rooms_by_state: by_state,
        max_rooms: host.settings().max_rooms,
        draining: host.draining(),
        rss_bytes: rss_bytes(),
        capacity: host.capacity(),
        services: ServiceStats::of(host.services()),
    }
}

/// The process's resident set size from `/proc/self/statm` (0 where it cannot be read).
pub fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}
