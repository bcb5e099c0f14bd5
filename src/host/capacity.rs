//! How many more rooms this process can take, from what its rooms cost now.
//!
//! The process's CPU time (`getrusage`) is sampled at most once a second; over a window in
//! which the set of running rooms did not change, the cores used divided by the rooms running
//! is the measured cost of a room (smoothed). Until a cost is measured, a stated cost per room
//! stands in ([`DEFAULT_ROOM_COST`], `HostSettings::room_cost`). The estimate is
//! `floor((cores × headroom − cores used) / cost)`, never below 0, and never above what
//! `max_rooms` leaves.
//!
//! A create is refused for capacity only on a measured cost (a window of at least
//! [`STABLE_WINDOW`] with the same rooms running), never on the stated guess: a room is never
//! accepted and then starved, and never refused on a number nobody measured.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Cores per room assumed until one is measured (a W1-like room at 15 fps, 1280x720, x264
/// veryfast, on the 2-core box: see BENCHMARKS.md).
pub const DEFAULT_ROOM_COST: f64 = 0.5;

/// Share of the cores rooms may use (the rest: HTTP, uploads, the OS).
pub const HEADROOM: f64 = 0.85;

/// How long the set of running rooms must stay the same for its cost to count as measured.
pub const STABLE_WINDOW: Duration = Duration::from_secs(2);

/// The estimate at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityEstimate {
    /// Cores of the machine (available parallelism).
    pub cores: f64,
    /// Cores the process used over the last window.
    pub cores_used: f64,
    /// Cores one room costs: measured, or the stated cost.
    pub room_cost: f64,
    /// Whether `room_cost` was measured (else it is the stated one).
    pub measured: bool,
    /// Rooms this process can take on top of the running ones.
    pub rooms_more: u32,
    /// Process CPU time so far, seconds.
    pub cpu_seconds: f64,
}

#[derive(Debug)]
struct Sampler {
    /// (when, CPU seconds, rooms running then, generation of the room set then)
    last: Option<(Instant, f64, usize, u64)>,
    cores_used: f64,
    cost: Option<f64>,
    /// When the room set last changed, and its generation.
    changed: Instant,
    generation: u64,
}

/// The capacity model of a host.
#[derive(Debug)]
pub struct Capacity {
    cores: f64,
    stated_cost: f64,
    sampler: Mutex<Sampler>,
}

/// CPU time (user + system) of the process so far, seconds.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

impl Capacity {
    /// A model for `cores` (default: the machine's), with `stated_cost` cores per room until
    /// measured.
    pub fn new(stated_cost: f64, cores: Option<f64>) -> Self {
        let cores = cores
            .filter(|c| c.is_finite() && *c > 0.0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);
        Capacity {
            cores,
            stated_cost: if stated_cost.is_finite() && stated_cost > 0.0 {
                stated_cost
            } else {
                DEFAULT_ROOM_COST
            },
            sampler: Mutex::new(Sampler {
                last: None,
                cores_used: 0.0,
                cost: None,
                changed: Instant::now(),
                generation: 0,
            }),
        }
    }

    /// The set of running rooms changed (a room started or ended): the window restarts.
    pub fn rooms_changed(&self) {
        let mut s = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        s.changed = Instant::now();
        s.generation += 1;
    }

    /// The estimate with `running` rooms running and `room_limit` rooms left under the
    /// limit (if any). Samples the CPU time when the last sample is a second old or more.
    pub fn estimate(&self, running: usize, room_limit: Option<usize>) -> CapacityEstimate {
        let now = Instant::now();
        let cpu = process_cpu_seconds();
        let mut s = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        match s.last {
            Some((t, c, n, gen)) if now.duration_since(t) >= Duration::from_secs(1) => {
                let dt = now.duration_since(t).as_secs_f64();
                let used = ((cpu - c) / dt).max(0.0);
                s.cores_used = used;
                // the same rooms ran the whole window, and long enough: a measured cost
                if n > 0
                    && n == running
                    && gen == s.generation
                    && now.duration_since(s.changed) >= STABLE_WINDOW
                {
                    let per = used / n as f64;
                    s.cost = Some(s.cost.map_or(per, |old| 0.7 * old + 0.3 * per));
                }
                s.last = Some((now, cpu, running, s.generation));
            }
            None => s.last = Some((now, cpu, running, s.generation)),
            _ => {}
        }
        let measured = s.cost.is_some();
        let room_cost = s.cost.unwrap_or(self.stated_cost).max(1e-3);
        let free = self.cores * HEADROOM - s.cores_used;
        let mut more = (free / room_cost).floor().max(0.0) as u32;
        if let Some(left) = room_limit {
            more = more.min(left as u32);
        }
        CapacityEstimate {
            cores: self.cores,
            cores_used: s.cores_used,
            room_cost,
            measured,
            rooms_more: more,
            cpu_seconds: cpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_cost_stands_until_a_stable_window_measures_one() {
        let c = Capacity::new(0.5, None);
        let e = c.estimate(0, None);
        assert!(!e.measured);
        assert_eq!(e.room_cost, 0.5);
        // nothing used yet: cores × 0.85 / 0.5 rooms
        assert_eq!(e.rooms_more, (e.cores * HEADROOM / 0.5).floor() as u32);
        // a limit caps it
        assert_eq!(
            c.estimate(0, Some(1)).rooms_more.min(1),
            c.estimate(0, Some(1)).rooms_more
        );
        // a room set that keeps changing is never measured
        c.rooms_changed();
        assert!(!c.estimate(1, None).measured);
        assert!(process_cpu_seconds() > 0.0);
    }
}
