//! The reference workloads W1–W3 (shared/peers/WORKLOADS.md) as layouts plus source
//! descriptions, shared by tests, benches and `cloudmixer bench`.

use crate::model::layout::{Item, Layout, Rect};

/// One source of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSpec {
    /// Source id used in the layout.
    pub camid: &'static str,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frame rate.
    pub fps: u32,
    /// File name of the matching peer clip (`make_fixtures.sh`).
    pub clip: &'static str,
}

/// A workload: canvas, rate, length and the sources in their rects.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// "W1", "W2" or "W3".
    pub name: &'static str,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Output fps.
    pub fps: u32,
    /// Output frames (10 s).
    pub frames: u32,
    /// Sources with their rects, in draw order.
    pub cells: Vec<(SourceSpec, Rect)>,
    /// Items that show no pushed source (text), drawn after the cells (a config file's).
    pub extra: Vec<Item>,
}

const fn s(
    camid: &'static str,
    width: u32,
    height: u32,
    fps: u32,
    clip: &'static str,
) -> SourceSpec {
    SourceSpec {
        camid,
        width,
        height,
        fps,
        clip,
    }
}

/// The nine peer cameras.
pub const CAMS: [SourceSpec; 9] = [
    s("cam1", 640, 480, 15, "cam1_640x480_15.mp4"),
    s("cam2", 640, 480, 15, "cam2_640x480_15.mp4"),
    s("cam3", 640, 480, 15, "cam3_640x480_15.mp4"),
    s("cam4", 1280, 720, 30, "cam4_1280x720_30.mp4"),
    s("cam5", 1280, 720, 30, "cam5_1280x720_30.mp4"),
    s("cam6", 1280, 720, 30, "cam6_1280x720_30.mp4"),
    s("cam7", 720, 1280, 30, "cam7_720x1280_30.mp4"),
    s("cam8", 1920, 1080, 30, "cam8_1920x1080_30.mp4"),
    s("cam9", 1280, 720, 30, "cam9_1280x720_30.mp4"),
];

impl Workload {
    /// W1 "seed side-by-side": 1280x720 @15, cam1 and cam4.
    pub fn w1() -> Self {
        Workload {
            name: "W1",
            width: 1280,
            height: 720,
            fps: 15,
            frames: 150,
            extra: vec![],
            cells: vec![
                (CAMS[0], Rect::new(0, 180, 640, 360)),
                (CAMS[3], Rect::new(640, 180, 640, 360)),
            ],
        }
    }
    /// W2 "picture-in-picture": 1280x720 @15, cam8 full, cam7 (portrait) in the corner.
    pub fn w2() -> Self {
        Workload {
            name: "W2",
            width: 1280,
            height: 720,
            fps: 15,
            frames: 150,
            extra: vec![],
            cells: vec![
                (CAMS[7], Rect::new(0, 0, 1280, 720)),
                (CAMS[6], Rect::new(880, 495, 400, 225)),
            ],
        }
    }
    /// W3 "3x3 grid": 1920x1080 @30, cam1..cam9 in 640x360 cells.
    pub fn w3() -> Self {
        Workload {
            name: "W3",
            width: 1920,
            height: 1080,
            fps: 30,
            frames: 300,
            extra: vec![],
            cells: CAMS
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        *c,
                        Rect::new((i % 3) as i32 * 640, (i / 3) as i32 * 360, 640, 360),
                    )
                })
                .collect(),
        }
    }
    /// All three.
    pub fn all() -> Vec<Self> {
        vec![Self::w1(), Self::w2(), Self::w3()]
    }
    /// By name ("W1", "w2", …).
    pub fn by_name(name: &str) -> Option<Self> {
        Self::all()
            .into_iter()
            .find(|w| w.name.eq_ignore_ascii_case(name))
    }
    /// The workload's layout (fit, black background).
    pub fn layout(&self) -> Layout {
        let cells: Vec<(&str, Rect)> = self.cells.iter().map(|(s, r)| (s.camid, *r)).collect();
        let l = Layout::cameras(self.width, self.height, &cells);
        if self.extra.is_empty() {
            return l;
        }
        l.with_items(|v| v.extend(self.extra.iter().cloned()))
    }
    /// The workload as a cloud-mixer config JSON.
    pub fn config_json(&self, svr_path_name: &str) -> serde_json::Value {
        let items: Vec<_> = self
            .cells
            .iter()
            .map(|(s, r)| {
                serde_json::json!({"type":0,"left":r.x,"top":r.y,"width":r.w,"height":r.h,
                    "keepAspectRatio":1,"param":{"camid":s.camid}})
            })
            .collect();
        serde_json::json!({"mode":0,"videoFileCfg":{"svrPathName":svr_path_name,
            "vWidth":self.width,"vHeight":self.height,"vFps":self.fps,"layoutConfig":items}})
    }
}
