//! Synthetic workload sources for `cloudmixer bench`, `gpu_bench`, the benches and examples:
//! three pre-built textured pictures per source, the next one shown whenever the source's own
//! clock advances within the output rate, so a 15 fps camera in a 30 fps recording changes
//! every other tick (and uploads only then).

use std::sync::Arc;

use crate::compose::Frames;
use crate::model::frame::VideoFrame;
use crate::testkit::pattern_frame;
use crate::testkit::workloads::Workload;

/// One source: id, fps, its pictures.
#[derive(Clone)]
struct Source {
    id: String,
    fps: u32,
    pics: [Arc<VideoFrame>; 3],
}

/// The sources of a workload, ready to feed tick by tick. The pictures are built once; clones
/// (or an `Arc` of one) share them between mixers.
#[derive(Clone)]
pub struct SyntheticSources {
    out_fps: u32,
    sources: Vec<Source>,
    /// Never change the pictures (isolates compose + readback from source uploads).
    pub frozen: bool,
    /// The map [`SyntheticSources::at`] keeps up to date.
    frames: Frames,
}

impl SyntheticSources {
    /// Textured frames of the workload's source sizes (I420, BT.709 limited).
    pub fn new(w: &Workload) -> Self {
        let sources = w
            .cells
            .iter()
            .enumerate()
            .map(|(i, (s, _))| Source {
                id: s.camid.to_string(),
                fps: s.fps,
                pics: [0u32, 1, 2]
                    .map(|k| Arc::new(pattern_frame(s.width, s.height, i as u32 * 3 + k))),
            })
            .collect();
        SyntheticSources {
            out_fps: w.fps,
            sources,
            frozen: false,
            frames: Frames::new(),
        }
    }

    /// The picture source `s` shows at output tick `tick`: its own frame index at that time,
    /// modulo the three pictures (always the first when frozen).
    fn pic<'a>(&self, s: &'a Source, tick: u64) -> &'a Arc<VideoFrame> {
        let k = if self.frozen {
            0
        } else {
            tick * s.fps as u64 / self.out_fps.max(1) as u64
        };
        &s.pics[(k % 3) as usize]
    }

    /// Sets each source's current picture for output tick `tick` in `frames`.
    pub fn frames_at(&self, tick: u64, frames: &mut Frames) {
        for s in &self.sources {
            let f = self.pic(s, tick);
            match frames.get_mut(&s.id) {
                Some(cur) if Arc::ptr_eq(cur, f) => {}
                Some(cur) => *cur = f.clone(),
                None => {
                    frames.insert(s.id.clone(), f.clone());
                }
            }
        }
    }

    /// Sets a new picture for every source at every tick (the worst case: nothing to skip).
    pub fn frames_all_new(&self, tick: u64, frames: &mut Frames) {
        for s in &self.sources {
            frames.insert(s.id.clone(), s.pics[(tick % 3) as usize].clone());
        }
    }

    /// The latest frame of every source at output tick `tick` (a map kept inside, updated in
    /// place: [`SyntheticSources::frames_at`] on it).
    pub fn at(&mut self, tick: u64) -> &Frames {
        let mut frames = std::mem::take(&mut self.frames);
        self.frames_at(tick, &mut frames);
        self.frames = frames;
        &self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_change_at_their_own_rate() {
        let w = Workload::by_name("W3").unwrap();
        let mut s = SyntheticSources::new(&w);
        let (out, src) = (w.fps as u64, s.sources.clone());
        assert_eq!(s.at(0).len(), src.len());
        let first: Vec<_> = src.iter().map(|c| s.at(0)[&c.id].clone()).collect();
        for t in 0..2 * out {
            for (c, f0) in src.iter().zip(&first) {
                let k = t * c.fps as u64 / out;
                let same = Arc::ptr_eq(f0, &s.at(t)[&c.id]);
                assert_eq!(same, k % 3 == 0, "{} at tick {t}", c.id);
            }
        }
        s.frozen = true;
        for t in 0..out {
            assert!(Arc::ptr_eq(&first[0], &s.at(t)[&src[0].id]));
        }
    }
}
