//! `GET /metrics`: the host's snapshot in the Prometheus/OpenMetrics text format
//! (`prometheus-client`), one registry per scrape (nothing global).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::host::HostStats;

type Labels = Vec<(&'static str, String)>;
type CounterFamily = Family<Labels, Counter<u64>>;
type GaugeFamily = Family<Labels, Gauge<i64>>;
type FloatFamily = Family<Labels, Gauge<f64, AtomicU64>>;

const STATES: [&str; 5] = ["null", "starting", "running", "paused", "stopping"];
const OUTPUT_STATES: [&str; 7] = [
    "null",
    "running",
    "stopped",
    "fail",
    "uploading",
    "uploaded",
    "upload_failed",
];

/// A fleet worker's figures (`serve --fleet`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FleetFigures {
    /// Connected to the fleet's NATS server.
    pub connected: bool,
    /// Rooms this worker owns.
    pub owned: usize,
    /// Rooms taken over from dead or draining workers.
    pub takeovers: u64,
}

/// The text of one scrape.
pub(crate) fn render(s: &HostStats, fleet: Option<FleetFigures>) -> String {
    let mut reg = Registry::default();
    let mixers = GaugeFamily::default();
    for (i, n) in s.rooms_by_state.iter().enumerate() {
        mixers
            .get_or_create(&vec![("state", STATES[i].to_string())])
            .set(*n as i64);
    }
    reg.register("cloudmixer_mixers", "Mixers by state", mixers);

    let counter = |reg: &mut Registry, name: &str, help: &str, f: &dyn Fn(usize) -> u64| {
        let fam = CounterFamily::default();
        for (i, r) in s.rooms.iter().enumerate() {
            fam.get_or_create(&vec![("mixer_id", r.mixer_id.clone())])
                .inc_by(f(i));
        }
        reg.register(name, help, fam);
    };
    let r = &s.rooms;
    counter(
        &mut reg,
        "cloudmixer_ticks",
        "Ticks taken (frames composed)",
        &|i| r[i].stats.ticks,
    );
    counter(
        &mut reg,
        "cloudmixer_late_ticks",
        "Ticks taken more than a frame interval after their deadline",
        &|i| r[i].stats.late_ticks,
    );
    counter(
        &mut reg,
        "cloudmixer_frames_received",
        "Source frames pushed",
        &|i| r[i].stats.frames_received,
    );
    counter(
        &mut reg,
        "cloudmixer_frames_shown",
        "Source frames that became their source's picture",
        &|i| r[i].stats.frames_used,
    );
    counter(
        &mut reg,
        "cloudmixer_frames_replaced",
        "Source frames superseded before they were shown",
        &|i| r[i].stats.frames_replaced,
    );
    counter(
        &mut reg,
        "cloudmixer_frames_late",
        "Source frames pushed after the tick due to show them",
        &|i| r[i].stats.frames_late,
    );
    counter(
        &mut reg,
        "cloudmixer_frames_repeated",
        "Composed frames that repeat the one before",
        &|i| r[i].stats.frames_repeated,
    );
    counter(
        &mut reg,
        "cloudmixer_audio_late_samples",
        "Audio samples dropped for arriving after their block was mixed",
        &|i| r[i].stats.audio_late_samples,
    );
    {
        let fam = CounterFamily::default();
        for room in r {
            fam.get_or_create(&vec![("mixer_id", room.mixer_id.clone())])
                .inc_by(room.bytes_written);
        }
        reg.register_with_unit(
            "cloudmixer_written",
            "Bytes written to a mixer's outputs",
            Unit::Bytes,
            fam,
        );
    }
    let seconds = |reg: &mut Registry, name: &str, help: &str, f: &dyn Fn(usize) -> u64| {
        let fam = FloatFamily::default();
        for (i, room) in r.iter().enumerate() {
            fam.get_or_create(&vec![("mixer_id", room.mixer_id.clone())])
                .set(f(i) as f64 / 1e6);
        }
        reg.register_with_unit(name, help, Unit::Seconds, fam);
    };
    seconds(
        &mut reg,
        "cloudmixer_tick_late_max",
        "The most any tick was taken after its deadline",
        &|i| r[i].stats.max_tick_late_us,
    );
    seconds(
        &mut reg,
        "cloudmixer_encoder_latency_max",
        "The longest a composed frame waited for the encoder and was encoded",
        &|i| r[i].stats.encoder_max_us,
    );
    {
        let fam = GaugeFamily::default();
        for room in r {
            fam.get_or_create(&vec![("mixer_id", room.mixer_id.clone())])
                .set(room.stats.encoder_queue as i64);
        }
        reg.register(
            "cloudmixer_encoder_queue_frames",
            "Composed frames waiting for the video encoder",
            fam,
        );
    }
    {
        let fam = GaugeFamily::default();
        for room in r {
            for (state, n) in [("up", room.live_up), ("down", room.live_down)] {
                fam.get_or_create(&vec![
                    ("mixer_id", room.mixer_id.clone()),
                    ("state", state.to_string()),
                ])
                .set(n as i64);
            }
        }
        reg.register(
            "cloudmixer_live_targets",
            "Live targets (rtmp/srt) by state",
            fam,
        );
    }
    {
        let fam = GaugeFamily::default();
        let mut by_state = [0u32; 7];
        for room in r {
            for (i, n) in room.outputs_by_state.iter().enumerate() {
                by_state[i] += n;
            }
        }
        for (i, n) in by_state.iter().enumerate() {
            fam.get_or_create(&vec![("state", OUTPUT_STATES[i].to_string())])
                .set(*n as i64);
        }
        reg.register(
            "cloudmixer_outputs",
            "Outputs (files, live targets) by the vendor's output state, uploads included",
            fam,
        );
    }
    inputs(&mut reg, s);
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        reg.register(name, help, g);
    };
    gauge(
        &mut reg,
        "cloudmixer_draining",
        "1 while the service is shutting down (no new mixers)",
        s.draining as i64,
    );
    gauge(
        &mut reg,
        "cloudmixer_max_rooms",
        "The room limit (-1: none)",
        s.max_rooms.map_or(-1, |m| m as i64),
    );
    gauge(
        &mut reg,
        "cloudmixer_capacity_rooms",
        "Rooms this process can take on top of the running ones (measured cost per room, 85% of the cores)",
        s.capacity.rooms_more as i64,
    );
    {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(s.capacity.room_cost);
        reg.register(
            "cloudmixer_room_cost_cores",
            "Cores one room costs: measured over a window with the same rooms, else the stated cost",
            g,
        );
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(s.capacity.cores_used);
        reg.register(
            "cloudmixer_cores_used",
            "Cores the process used over the last window",
            g,
        );
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(s.capacity.cores);
        reg.register("cloudmixer_cores", "Cores of the machine", g);
        let c = Counter::<f64, AtomicU64>::default();
        c.inc_by(s.capacity.cpu_seconds);
        reg.register_with_unit(
            "process_cpu",
            "CPU time of the process (user + system)",
            Unit::Seconds,
            c,
        );
    }
    {
        let g = Gauge::<i64>::default();
        g.set(s.rss_bytes as i64);
        reg.register_with_unit(
            "process_resident_memory",
            "Resident memory of the process",
            Unit::Bytes,
            g,
        );
    }
    if let Some(f) = fleet {
        gauge(
            &mut reg,
            "cloudmixer_fleet_connected",
            "1 while the worker is connected to the fleet's NATS server",
            f.connected as i64,
        );
        gauge(
            &mut reg,
            "cloudmixer_fleet_rooms_owned",
            "Rooms this worker holds the lease of",
            f.owned as i64,
        );
        let c = Counter::<u64>::default();
        c.inc_by(f.takeovers);
        reg.register(
            "cloudmixer_fleet_takeovers",
            "Rooms this worker took over from a dead or draining worker",
            c,
        );
    }
    let mut out = String::new();
    // writing into a String cannot fail
    let _ = encode(&mut out, &reg);
    classic_text(&out)
}

const INPUT_STATES: [&str; 6] = [
    "connecting",
    "live",
    "stalled",
    "reconnecting",
    "stopped",
    "idle",
];

/// The URL inputs (pulled live) of every room: state (1 for the current one), bitrate, fps,
/// decode time, reconnects, frames and lost frames.
fn inputs(reg: &mut Registry, s: &HostStats) {
    let all: Vec<(&str, &crate::host::feed::pull::InputStats)> = s
        .rooms
        .iter()
        .flat_map(|r| r.inputs.iter().map(move |i| (r.mixer_id.as_str(), i)))
        .collect();
    let labels = |m: &str, i: &crate::host::feed::pull::InputStats| -> Labels {
        vec![("mixer_id", m.to_string()), ("input", i.input.clone())]
    };
    let state = GaugeFamily::default();
    for (m, i) in &all {
        for st in INPUT_STATES {
            let mut l = labels(m, i);
            l.push(("state", st.to_string()));
            state.get_or_create(&l).set((i.state.as_str() == st) as i64);
        }
    }
    reg.register(
        "cloudmixer_input_state",
        "A URL input's state (1 for its current one)",
        state,
    );
    let float = |reg: &mut Registry,
                 name: &str,
                 help: &str,
                 f: &dyn Fn(&crate::host::feed::pull::InputStats) -> f64| {
        let fam = FloatFamily::default();
        for (m, i) in &all {
            fam.get_or_create(&labels(m, i)).set(f(i));
        }
        reg.register(name, help, fam);
    };
    float(
        reg,
        "cloudmixer_input_received_bytes_per_second",
        "A URL input's data rate over the last 2 s (its bitrate / 8)",
        &|i| i.bitrate as f64 / 8.0,
    );
    float(
        reg,
        "cloudmixer_input_fps",
        "A URL input's video frames per second over the last 2 s",
        &|i| i.fps,
    );
    float(
        reg,
        "cloudmixer_input_decode_seconds",
        "A URL input's mean decode time per video frame over the last 2 s",
        &|i| i.decode_ms / 1000.0,
    );
    let count = |reg: &mut Registry,
                 name: &str,
                 help: &str,
                 f: &dyn Fn(&crate::host::feed::pull::InputStats) -> u64| {
        let fam = CounterFamily::default();
        for (m, i) in &all {
            fam.get_or_create(&labels(m, i)).inc_by(f(i));
        }
        reg.register(name, help, fam);
    };
    count(
        reg,
        "cloudmixer_input_reconnects",
        "Connections of a URL input lost or refused",
        &|i| i.reconnects,
    );
    count(
        reg,
        "cloudmixer_input_frames",
        "Video frames a URL input decoded and pushed",
        &|i| i.video_frames,
    );
    count(
        reg,
        "cloudmixer_input_lost_frames",
        "Frames or audio chunks of a URL input not decoded or not taken by the mixer",
        &|i| i.lost_frames,
    );
    count(
        reg,
        "cloudmixer_input_reanchors",
        "Timestamp jumps, wraps or restarts of a URL input continued, and re-anchorings",
        &|i| i.reanchors,
    );
}

/// The Prometheus text format (0.0.4) of OpenMetrics text: a counter's `HELP`/`TYPE` name the
/// samples' `_total` name, and the OpenMetrics-only `# UNIT` and `# EOF` lines go (the unit is
/// in the name already). What Prometheus scrapes and `promtool check metrics` reads.
pub(crate) fn classic_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in openmetrics.lines() {
        if let Some(name) = l
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"))
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for l in openmetrics.lines() {
        if l.starts_with("# UNIT ") || l == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| l.strip_prefix(p).map(|r| (p, r)));
        match meta.and_then(|(p, r)| r.split_once(' ').map(|(n, rest)| (p, n, rest))) {
            Some((p, name, rest)) if counters.contains(name) => {
                out.push_str(&format!("{p}{name}_total {rest}\n"));
            }
            _ => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_in_the_classic_format() {
        let om = "# HELP a_ticks Ticks.\n# TYPE a_ticks counter\na_ticks_total{m=\"x\"} 3\n\
                  # HELP b_bytes Size.\n# TYPE b_bytes gauge\n# UNIT b_bytes bytes\nb_bytes 7\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP a_ticks_total Ticks.\n# TYPE a_ticks_total counter\na_ticks_total{m=\"x\"} 3\n\
             # HELP b_bytes Size.\n# TYPE b_bytes gauge\nb_bytes 7\n"
        );
    }
}
