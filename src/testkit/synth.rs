//! Synthetic workload sources for benches and `gpu_bench`: each source alternates between two
//! pre-built textured frames, switching at its own frame rate within the output rate, so a
//! 15 fps camera in a 30 fps recording changes every other tick (and uploads only then).

use std::sync::Arc;

use crate::compose::Frames;
use crate::model::frame::VideoFrame;
use crate::testkit::pattern_frame;
use crate::testkit::workloads::Workload;

/// One source: id, fps, two pictures, the last source frame index shown, the current picture.
#[derive(Clone)]
struct Source {
    id: String,
    fps: u32,
    pair: [Arc<VideoFrame>; 2],
    last_k: Option<u64>,
    cur: usize,
}

/// The sources of a workload, ready to feed tick by tick (clones share the pictures).
#[derive(Clone)]
pub struct SyntheticSources {
    out_fps: u32,
    sources: Vec<Source>,
    frames: Frames,
}

impl SyntheticSources {
    /// Textured frames of the workload's source sizes (I420, BT.709 limited).
    pub fn new(w: &Workload) -> Self {
        let sources = w
            .cells
            .iter()
            .enumerate()
            .map(|(i, (s, _))| {
                let mk = |k: u32| Arc::new(pattern_frame(s.width, s.height, i as u32 * 2 + k));
                Source {
                    id: s.camid.to_string(),
                    fps: s.fps,
                    pair: [mk(0), mk(1)],
                    last_k: None,
                    cur: 0,
                }
            })
            .collect();
        SyntheticSources {
            out_fps: w.fps,
            sources,
            frames: Frames::new(),
        }
    }

    /// The latest frame of every source at output tick `n`.
    pub fn at(&mut self, n: u64) -> &Frames {
        for Source {
            id,
            fps,
            pair,
            last_k,
            cur,
        } in &mut self.sources
        {
            // source frame index shown at output tick n; a new index is a new picture
            let k = n * *fps as u64 / self.out_fps.max(1) as u64;
            if *last_k != Some(k) {
                *last_k = Some(k);
                *cur ^= 1;
            }
            let f = &pair[*cur];
            match self.frames.get_mut(id) {
                Some(cur) if Arc::ptr_eq(cur, f) => {}
                Some(cur) => *cur = f.clone(),
                None => {
                    self.frames.insert(id.clone(), f.clone());
                }
            }
        }
        &self.frames
    }
}
