//! The validated, immutable layout and its geometry: where each source lands in the output.
//!
//! This is the parity contract of DESIGN §4: both compositors take the destination rectangle,
//! the source crop and the sampling map from [`place`]; the GPU receives them as uniforms and
//! never recomputes them.

use std::sync::atomic::{AtomicU64, Ordering};

/// An integer rectangle in output (luma) pixels. `x`/`y` may be negative (overhang).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width (> 0).
    pub w: u32,
    /// Height (> 0).
    pub h: u32,
}

impl Rect {
    /// Builds a rectangle.
    pub const fn new(x: i32, y: i32, w: u32, h: u32) -> Self {
        Rect { x, y, w, h }
    }
    /// One past the right edge.
    pub fn right(&self) -> i64 {
        self.x as i64 + self.w as i64
    }
    /// One past the bottom edge.
    pub fn bottom(&self) -> i64 {
        self.y as i64 + self.h as i64
    }
    /// The part of the rectangle inside a `cw`x`ch` canvas, or `None` if it is wholly outside.
    pub fn clip(&self, cw: u32, ch: u32) -> Option<Rect> {
        let x0 = (self.x as i64).max(0);
        let y0 = (self.y as i64).max(0);
        let x1 = self.right().min(cw as i64);
        let y1 = self.bottom().min(ch as i64);
        (x1 > x0 && y1 > y0)
            .then(|| Rect::new(x0 as i32, y0 as i32, (x1 - x0) as u32, (y1 - y0) as u32))
    }
    /// Whether pixel (x, y) lies inside.
    pub fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.x as i64 && x < self.right() && y >= self.y as i64 && y < self.bottom()
    }
}

/// How a source is fitted into its item rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FitMode {
    /// Scale to fit inside, keep aspect ratio, centre, bars in the background colour.
    #[default]
    Fit,
    /// Scale to cover, keep aspect ratio, crop the source symmetrically.
    Fill,
    /// Scale to the rectangle, ignoring aspect ratio.
    Stretch,
}

/// A source area in source pixels (fractional for `Fill` crops).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SrcRect {
    /// Left, in source pixels.
    pub x: f64,
    /// Top, in source pixels.
    pub y: f64,
    /// Width, in source pixels.
    pub w: f64,
    /// Height, in source pixels.
    pub h: f64,
}

/// Where and how one source is drawn: the result of [`place`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Placement {
    /// The image rectangle in output pixels (not clipped to the canvas).
    pub dst: Rect,
    /// The part of the source shown in `dst`.
    pub src: SrcRect,
}

impl Placement {
    /// The sampling map along x: a pixel centre at output coordinate `X` (e.g. `x + 0.5`)
    /// samples the source at `X * scale + offset` source pixels (texel centres sit at `i + 0.5`).
    /// Returns `(scale, offset)`.
    pub fn map_x(&self) -> (f64, f64) {
        let s = self.src.w / self.dst.w as f64;
        (s, self.src.x - self.dst.x as f64 * s)
    }
    /// The sampling map along y, as [`Placement::map_x`].
    pub fn map_y(&self) -> (f64, f64) {
        let s = self.src.h / self.dst.h as f64;
        (s, self.src.y - self.dst.y as f64 * s)
    }
}

/// Computes where a `sw`x`sh` source with sample aspect ratio `sar` lands in `rect`.
///
/// - `Fit`: `scale = min(w/dw_src, h/sh)`, image `round(sw'·scale)` x `round(sh·scale)` (at least
///   1 px), centred with integer division; `sw'` is the display width `sw·sar`.
/// - `Fill`: `scale = max(..)`, the image covers `rect`, the source is cropped symmetrically.
/// - `Stretch`: the whole source onto the whole rect.
///
/// ```
/// use cloudmixer::model::layout::{place, FitMode, Rect};
/// // a 640x480 camera in the seed's 640x360 cell: 480x360, pillarboxed 80 px each side
/// let p = place(Rect::new(0, 180, 640, 360), FitMode::Fit, 640, 480, (1, 1));
/// assert_eq!(p.dst, Rect::new(80, 180, 480, 360));
/// ```
pub fn place(rect: Rect, fit: FitMode, sw: u32, sh: u32, sar: (u32, u32)) -> Placement {
    let sw = sw.max(1);
    let sh = sh.max(1);
    let sar_f = if sar.0 == 0 || sar.1 == 0 {
        1.0
    } else {
        sar.0 as f64 / sar.1 as f64
    };
    let disp_w = sw as f64 * sar_f; // display width in square pixels
    let whole = SrcRect {
        x: 0.0,
        y: 0.0,
        w: sw as f64,
        h: sh as f64,
    };
    let (w, h) = (rect.w as f64, rect.h as f64);
    match fit {
        FitMode::Stretch => Placement {
            dst: rect,
            src: whole,
        },
        FitMode::Fit => {
            let scale = (w / disp_w).min(h / sh as f64);
            let dw = ((disp_w * scale).round() as u32).clamp(1, rect.w);
            let dh = ((sh as f64 * scale).round() as u32).clamp(1, rect.h);
            // in i64: rects built in code may sit at the ends of i32 with huge sizes
            let centre = |p: i32, outer: u32, inner: u32| {
                (p as i64 + ((outer - inner) / 2) as i64).clamp(i32::MIN as i64, i32::MAX as i64)
                    as i32
            };
            let (x, y) = (centre(rect.x, rect.w, dw), centre(rect.y, rect.h, dh));
            Placement {
                dst: Rect::new(x, y, dw, dh),
                src: whole,
            }
        }
        FitMode::Fill => {
            let scale = (w / disp_w).max(h / sh as f64);
            // the source area (display units) that covers the rect, converted to source pixels
            let cw = (w / scale / sar_f).min(sw as f64);
            let ch = (h / scale).min(sh as f64);
            Placement {
                dst: rect,
                src: SrcRect {
                    x: (sw as f64 - cw) / 2.0,
                    y: (sh as f64 - ch) / 2.0,
                    w: cw,
                    h: ch,
                },
            }
        }
    }
}

/// Source key of a type 2 (local screen) item without `param.camid`.
pub const LOCAL_SCREEN_KEY: &str = "_cr_localscreen_";
/// Source key of a type 3 (media share) item without `param.camid`.
pub const MEDIA_SHARE_KEY: &str = "_cr_media_";
/// Source key of a type 5 (screen share) item without `param.camid`.
pub const SCREEN_SHARE_KEY: &str = "_cr_screen_";
/// Source key of a type 6 (whiteboard) item without `param.camid`.
pub const WHITEBOARD_KEY: &str = "_cr_whiteboard_";

/// What an item shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ItemKind {
    /// type 0: a camera, keyed by camid ("user.cam").
    Camera {
        /// Source id.
        camid: String,
    },
    /// type 1: a picture registered with the mixer.
    Picture {
        /// Registered resource id.
        resource_id: String,
    },
    /// type 2: a local screen (the vendor's local mixer captures it; here a source pushed
    /// under `param.camid`, default [`LOCAL_SCREEN_KEY`]).
    LocalScreen {
        /// Source id.
        camid: String,
    },
    /// type 3: a media share stream (`param.camid`, default [`MEDIA_SHARE_KEY`]).
    MediaShare {
        /// Source id.
        camid: String,
    },
    /// type 5: a screen share stream (`param.camid`, default [`SCREEN_SHARE_KEY`]).
    ScreenShare {
        /// Source id.
        camid: String,
    },
    /// type 6: a whiteboard rendered by the server (`param.camid`, default
    /// [`WHITEBOARD_KEY`]).
    Whiteboard {
        /// Source id.
        camid: String,
    },
    /// type 10: a text box.
    Text {
        /// Text; `%timestamp%` expands to wall-clock time.
        text: String,
        /// Text colour, RGBA.
        color: [u8; 4],
        /// Box colour, RGBA.
        background: [u8; 4],
        /// Font size in pixels.
        font_size: u32,
        /// Margin in pixels.
        margin: u32,
    },
}

impl ItemKind {
    /// The source id whose frames this item shows, if it shows a video source.
    pub fn source_id(&self) -> Option<&str> {
        match self {
            ItemKind::Camera { camid }
            | ItemKind::LocalScreen { camid }
            | ItemKind::MediaShare { camid }
            | ItemKind::ScreenShare { camid }
            | ItemKind::Whiteboard { camid } => Some(camid),
            ItemKind::Picture { resource_id } => Some(resource_id),
            ItemKind::Text { .. } => None,
        }
    }
}

/// One validated layout item.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Item {
    /// What it shows.
    pub kind: ItemKind,
    /// Its rectangle in output pixels (may overhang the canvas).
    pub rect: Rect,
    /// Fitting mode.
    pub fit: FitMode,
    /// Opacity 0..=1 (1 = opaque).
    pub alpha: f32,
    /// Stacking order (higher on top); ties keep array order.
    pub zorder: i32,
    /// Index in the config's `layoutConfig` array.
    pub index: usize,
    /// A registered picture shown while the source has no frame (`param.placeholder`);
    /// `None`: the layout's placeholder.
    pub placeholder: Option<String>,
}

impl Item {
    /// Placement of a source of the given size in this item.
    pub fn place(&self, sw: u32, sh: u32, sar: (u32, u32)) -> Placement {
        place(self.rect, self.fit, sw, sh, sar)
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A validated, immutable layout: canvas size, background and items in draw order.
///
/// Immutable from outside the crate: built by [`Layout::new`] / [`Layout::cameras`] (or the
/// config parser) and read through accessors, so every distinct layout value has its own
/// [`Layout::generation`], which the compositors' caches key on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Layout {
    /// Canvas width (even).
    pub(crate) width: u32,
    /// Canvas height (even).
    pub(crate) height: u32,
    /// Background as BT.709 limited-range (Y, U, V).
    pub(crate) background: [u8; 3],
    /// Drawn for a source without video (default: the background).
    pub(crate) placeholder: [u8; 3],
    /// A registered picture drawn (fitted like the source) for a source without video, in
    /// place of the placeholder colour.
    pub(crate) placeholder_image: Option<String>,
    /// A registered picture drawn under everything, covering the canvas (`backgroundImage`).
    pub(crate) background_image: Option<String>,
    /// Items sorted into draw order (bottom first).
    pub(crate) items: Vec<Item>,
    /// Unique id of this layout value, for caches keyed on "layout unchanged".
    #[serde(skip)]
    pub(crate) generation: u64,
}

impl Layout {
    /// Builds a layout; sorts items by `zorder` (stable, so array order breaks ties).
    pub fn new(width: u32, height: u32, background: [u8; 3], mut items: Vec<Item>) -> Self {
        items.sort_by_key(|i| i.zorder);
        Layout {
            width,
            height,
            background,
            placeholder: background,
            placeholder_image: None,
            background_image: None,
            items,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Canvas width (even).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Canvas height (even).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Background as BT.709 limited-range (Y, U, V).
    pub fn background(&self) -> [u8; 3] {
        self.background
    }

    /// Drawn for a source without video (default: the background).
    pub fn placeholder(&self) -> [u8; 3] {
        self.placeholder
    }

    /// Items in draw order (bottom first).
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The picture drawn for a source without video, if any (else the placeholder colour).
    pub fn placeholder_image(&self) -> Option<&str> {
        self.placeholder_image.as_deref()
    }

    /// The picture drawn under everything, if any.
    pub fn background_image(&self) -> Option<&str> {
        self.background_image.as_deref()
    }

    /// Every source id this layout may draw: the items' sources, their placeholders, the
    /// placeholder picture and the background picture (may repeat).
    pub fn source_ids(&self) -> impl Iterator<Item = &str> {
        self.items
            .iter()
            .flat_map(|it| [it.kind.source_id(), it.placeholder.as_deref()])
            .chain([
                self.placeholder_image.as_deref(),
                self.background_image.as_deref(),
            ])
            .flatten()
    }

    /// Whether `id` is one of [`Layout::source_ids`].
    pub fn uses_source(&self, id: &str) -> bool {
        self.source_ids().any(|s| s == id)
    }

    /// Whether drawing this layout needs more than the items' own frames: text, placeholder
    /// pictures or a background picture (see [`crate::compose::scene`]).
    pub fn needs_scene(&self) -> bool {
        self.placeholder_image.is_some()
            || self.background_image.is_some()
            || self
                .items
                .iter()
                .any(|it| it.placeholder.is_some() || matches!(it.kind, ItemKind::Text { .. }))
    }

    /// Unique id of this layout value (a clone keeps it: same content).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The same layout with another placeholder colour (a new generation).
    pub fn with_placeholder(mut self, yuv: [u8; 3]) -> Self {
        self.placeholder = yuv;
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self
    }

    /// The same layout with another background colour (a new generation).
    pub fn with_background(mut self, yuv: [u8; 3]) -> Self {
        self.background = yuv;
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self
    }

    /// The same layout with a placeholder picture (a registered picture id) drawn for sources
    /// without video (a new generation).
    pub fn with_placeholder_image(mut self, id: Option<String>) -> Self {
        self.placeholder_image = id;
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self
    }

    /// The same layout with a picture (a registered picture id) under everything (a new
    /// generation).
    pub fn with_background_image(mut self, id: Option<String>) -> Self {
        self.background_image = id;
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self
    }

    /// The same layout with its items changed by `f` (re-sorted by `zorder`; a new generation).
    pub fn with_items(mut self, f: impl FnOnce(&mut Vec<Item>)) -> Self {
        f(&mut self.items);
        self.items.sort_by_key(|i| i.zorder);
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        self
    }

    /// A layout of camera items at the given rects, fit mode `Fit`, black background
    /// (handy for tests and benches).
    pub fn cameras(width: u32, height: u32, cells: &[(&str, Rect)]) -> Self {
        let items = cells
            .iter()
            .enumerate()
            .map(|(i, (camid, rect))| Item {
                kind: ItemKind::Camera {
                    camid: camid.to_string(),
                },
                rect: *rect,
                fit: FitMode::Fit,
                alpha: 1.0,
                zorder: 0,
                index: i,
                placeholder: None,
            })
            .collect();
        Layout::new(width, height, [16, 128, 128], items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(rect: Rect, sw: u32, sh: u32) -> Rect {
        place(rect, FitMode::Fit, sw, sh, (1, 1)).dst
    }

    #[test]
    fn seed_side_by_side() {
        let cell0 = Rect::new(0, 180, 640, 360);
        let cell1 = Rect::new(640, 180, 640, 360);
        assert_eq!(fit(cell0, 640, 480), Rect::new(80, 180, 480, 360));
        assert_eq!(fit(cell1, 1280, 720), cell1);
    }

    #[test]
    fn pip_portrait_odd_rect() {
        // 720x1280 portrait in 400x225: scale 225/1280, width 126.56 -> 127, x = 880 + 273/2
        let p = fit(Rect::new(880, 495, 400, 225), 720, 1280);
        assert_eq!(p, Rect::new(880 + 136, 495, 127, 225));
    }

    #[test]
    fn w3_cells() {
        let cell = Rect::new(640, 360, 640, 360);
        assert_eq!(fit(cell, 640, 480), Rect::new(720, 360, 480, 360));
        assert_eq!(fit(cell, 1920, 1080), cell);
        // 720x1280: 202.5 rounds away from zero to 203, (640-203)/2 = 218
        assert_eq!(fit(cell, 720, 1280), Rect::new(640 + 218, 360, 203, 360));
    }

    #[test]
    fn one_by_one_and_extremes() {
        // 1x1 source fills a square rect, letterboxes a wide one
        assert_eq!(
            fit(Rect::new(0, 0, 100, 100), 1, 1),
            Rect::new(0, 0, 100, 100)
        );
        assert_eq!(
            fit(Rect::new(0, 0, 100, 50), 1, 1),
            Rect::new(25, 0, 50, 50)
        );
        // extreme downscale never yields an empty image
        assert_eq!(
            fit(Rect::new(0, 0, 10, 10), 16384, 1),
            Rect::new(0, 4, 10, 1)
        );
        // extreme upscale
        assert_eq!(
            fit(Rect::new(0, 0, 3840, 2160), 2, 2),
            Rect::new(840, 0, 2160, 2160)
        );
        // 1x1 rect
        assert_eq!(
            fit(Rect::new(7, 9, 1, 1), 1920, 1080),
            Rect::new(7, 9, 1, 1)
        );
    }

    #[test]
    fn odd_sizes_centre_with_integer_division() {
        // 495x225 rect with a 16:9 source: 400x225 at x + 95/2 = 47
        assert_eq!(
            fit(Rect::new(1, 1, 495, 225), 1280, 720),
            Rect::new(48, 1, 400, 225)
        );
        // portrait rect
        assert_eq!(
            fit(Rect::new(0, 0, 101, 301), 640, 360),
            Rect::new(0, 122, 101, 57)
        );
    }

    #[test]
    fn sample_aspect_ratio_widens_the_image() {
        // 720x576 PAL anamorphic 16:9 (sar 64:45) in 1024x576 -> full width
        let p = place(Rect::new(0, 0, 1024, 576), FitMode::Fit, 720, 576, (64, 45));
        assert_eq!(p.dst, Rect::new(0, 0, 1024, 576));
        // same source with square pixels is pillarboxed
        let p = place(Rect::new(0, 0, 1024, 576), FitMode::Fit, 720, 576, (1, 1));
        assert_eq!(p.dst, Rect::new(152, 0, 720, 576));
        // a zero sar is treated as square
        let p = place(Rect::new(0, 0, 1024, 576), FitMode::Fit, 720, 576, (0, 0));
        assert_eq!(p.dst.w, 720);
    }

    #[test]
    fn fill_crops_symmetrically() {
        let r = Rect::new(0, 0, 640, 360);
        let p = place(r, FitMode::Fill, 640, 480, (1, 1));
        assert_eq!(p.dst, r);
        assert_eq!(
            p.src,
            SrcRect {
                x: 0.0,
                y: 60.0,
                w: 640.0,
                h: 360.0
            }
        );
        let p = place(r, FitMode::Fill, 720, 1280, (1, 1));
        assert_eq!(p.src.w, 720.0);
        assert!((p.src.h - 405.0).abs() < 1e-9);
        assert!((p.src.y - 437.5).abs() < 1e-9);
    }

    #[test]
    fn stretch_uses_everything() {
        let r = Rect::new(3, 5, 7, 11);
        let p = place(r, FitMode::Stretch, 640, 480, (1, 1));
        assert_eq!(p.dst, r);
        assert_eq!(
            p.src,
            SrcRect {
                x: 0.0,
                y: 0.0,
                w: 640.0,
                h: 480.0
            }
        );
    }

    #[test]
    fn sampling_map_hits_texel_centres() {
        // 2x downscale: output pixel 0 centre (0.5) samples source 1.0 = between texels 0 and 1
        let p = place(
            Rect::new(10, 0, 320, 240),
            FitMode::Stretch,
            640,
            480,
            (1, 1),
        );
        let (s, o) = p.map_x();
        assert_eq!(s, 2.0);
        assert_eq!((10.5) * s + o, 1.0);
        // identity: output centre maps to source texel centre
        let p = place(Rect::new(5, 7, 64, 48), FitMode::Stretch, 64, 48, (1, 1));
        let (s, o) = p.map_y();
        assert_eq!((7.5) * s + o, 0.5);
    }

    #[test]
    fn extreme_rects_do_not_overflow() {
        for rect in [
            Rect::new(i32::MAX, i32::MAX, u32::MAX, u32::MAX),
            Rect::new(i32::MIN, i32::MIN, u32::MAX, 1),
            Rect::new(i32::MAX - 1, 0, 3, u32::MAX),
        ] {
            for fit in [FitMode::Fit, FitMode::Fill, FitMode::Stretch] {
                for (sw, sh) in [(1, 1), (16384, 1), (1, 16384), (640, 480)] {
                    let p = place(rect, fit, sw, sh, (1, 1));
                    assert!(p.dst.w >= 1 && p.dst.h >= 1, "{rect:?} {fit:?}");
                    let _ = p.dst.clip(8192, 8192);
                }
            }
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(
            Rect::new(-10, -10, 30, 30).clip(100, 100),
            Some(Rect::new(0, 0, 20, 20))
        );
        assert_eq!(
            Rect::new(90, 95, 30, 30).clip(100, 100),
            Some(Rect::new(90, 95, 10, 5))
        );
        assert_eq!(Rect::new(100, 0, 30, 30).clip(100, 100), None);
        assert_eq!(Rect::new(-30, 0, 30, 30).clip(100, 100), None);
    }

    #[test]
    fn zorder_sorts_stably() {
        let mk = |i: usize, z: i32| Item {
            kind: ItemKind::Camera {
                camid: format!("c{i}"),
            },
            rect: Rect::new(0, 0, 2, 2),
            fit: FitMode::Fit,
            alpha: 1.0,
            zorder: z,
            index: i,
            placeholder: None,
        };
        let l = Layout::new(
            4,
            4,
            [16, 128, 128],
            vec![mk(0, 1), mk(1, 0), mk(2, 1), mk(3, 0)],
        );
        let order: Vec<usize> = l.items.iter().map(|i| i.index).collect();
        assert_eq!(order, vec![1, 3, 0, 2]);
    }
}
