//! The scene: what the compositors draw for a layout at one tick, resolved once for both
//! backends so that they draw the same pixels.
//!
//! A [`Layout`] names sources; the scene turns it into a layout of plain pictures and a frame
//! per picture:
//!
//! - **Rotation**: a frame with a [`Rotation`] is turned upright
//!   ([`VideoFrame::upright`]) once per frame (cached by frame id), so fit, fill and
//!   letterboxing use the turned size.
//! - **Text** (type 10): rasterised ([`super::text`]) into a straight-alpha RGBA picture once
//!   per change (a `%timestamp%` changes once a second), drawn 1:1 at `left`/`top`, the box sized
//!   to the text, clipped to the canvas.
//! - **Placeholders**: an item whose source has no fresh frame shows its `param.placeholder`
//!   picture, else the layout's placeholder picture, fitted like a source; with neither (or
//!   the picture not registered) the compositors fill the item with the placeholder colour.
//! - **Background picture**: `backgroundImage` under everything, covering the canvas
//!   (`fill`: scaled to cover, cropped symmetrically).
//!
//! The resolved layout is cached: it is rebuilt (a new generation, so the compositors' caches
//! rebuild too) only when the input layout, a text box's size, or which items show their
//! placeholder changes. A layout that needs none of this and frames that are upright pass
//! through untouched.
//!
//! ```
//! use std::{collections::HashMap, sync::Arc};
//! use cloudmixer::compose::{cpu::CpuCompositor, scene::Scene, Compositor};
//! use cloudmixer::model::frame::{ColorSpace, VideoFrame};
//! use cloudmixer::model::layout::{Layout, Rect};
//! let layout = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))])
//!     .with_placeholder_image(Some("off".into()));
//! let mut frames = HashMap::new();
//! // camera "a" sent nothing yet: its cell shows the registered "camera off" picture
//! let off = VideoFrame::solid_i420(8, 8, [81, 90, 240]).unwrap().with_color(ColorSpace::BT709_LIMITED);
//! frames.insert("off".to_string(), Arc::new(off));
//! let mut scene = Scene::new();
//! let (l, f) = scene.resolve(&layout, &frames, 0);
//! let out = CpuCompositor::new(64, 32).compose(l, f).unwrap().clone();
//! assert_eq!(out.yuv_at(10, 10), [81, 90, 240]);
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use super::text::{self, FontCache, Fonts, TextStyle};
use super::Frames;
use crate::model::frame::{Rotation, SharedFrame, VideoFrame, MAX_SIDE};
use crate::model::layout::{FitMode, Item, ItemKind, Layout, Rect};

/// What the scene drew for one item of the input layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// The item's own source (or nothing: the placeholder colour).
    Own,
    /// The item's `param.placeholder` picture.
    ItemPlaceholder,
    /// The layout's placeholder picture.
    LayoutPlaceholder,
    /// A rendered text box of this size.
    Text(u32, u32),
    /// Nothing (a text item without a usable font).
    Skip,
}

/// A rendered text box of one item.
#[derive(Debug)]
struct TextSlot {
    /// Input layout generation and item position it was rendered for.
    generation: u64,
    /// The wall-clock second it shows (`None`: no `%timestamp%`).
    second: Option<i64>,
    /// The key it is stored under in the resolved frames.
    key: String,
    frame: SharedFrame,
}

/// Resolves layouts and frames into what the compositors draw (see the module docs).
#[derive(Debug, Default)]
pub struct Scene {
    frames: Frames,
    upright: HashMap<u64, SharedFrame>,
    texts: Vec<Option<TextSlot>>,
    choices: Vec<Choice>,
    background: bool,
    /// (input generation, choices, background shown, resolved layout)
    resolved: Option<(u64, Vec<Choice>, bool, Arc<Layout>)>,
    fonts: FontCache,
    /// (unix second, local UTC offset) of the last timestamp.
    offset: Option<(i64, i32)>,
}

/// The key of item `pos`'s text box in the resolved frames (not a valid camid: it starts
/// with NUL).
fn text_key(pos: usize) -> String {
    format!("\u{0}text{pos}")
}

impl Scene {
    /// An empty scene; fonts are loaded on the first text item, into a [`FontCache`] of its
    /// own.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scene that draws text with these fonts.
    pub fn with_fonts(fonts: Arc<Fonts>) -> Self {
        Self::with_font_cache(FontCache::with(fonts))
    }

    /// A scene that takes its fonts from `fonts` (loaded on the first text item of any scene
    /// sharing the cache).
    pub fn with_font_cache(fonts: FontCache) -> Self {
        Scene {
            fonts,
            ..Self::default()
        }
    }

    /// Resolves `layout` and the sources' latest `frames` at wall-clock time `wall_ms` (Unix
    /// milliseconds; `%timestamp%` shows its second in the local time zone) into the layout
    /// and frames to hand to a compositor.
    pub fn resolve<'a>(
        &'a mut self,
        layout: &'a Layout,
        frames: &'a Frames,
        wall_ms: i64,
    ) -> (&'a Layout, &'a Frames) {
        let rotated = frames.values().any(|f| turned(f));
        if !rotated && !layout.needs_scene() {
            self.resolved = None;
            return (layout, frames);
        }
        self.sync_frames(frames);
        if !layout.needs_scene() {
            return (layout, &self.frames);
        }
        self.choose(layout, wall_ms);
        let fresh = matches!(&self.resolved, Some((g, c, b, _))
            if *g == layout.generation && *c == self.choices && *b == self.background);
        if !fresh {
            // text boxes of items that are gone
            let texts = &self.texts;
            self.frames
                .retain(|k, _| !k.starts_with('\0') || texts.iter().flatten().any(|s| s.key == *k));
            let l = self.build(layout);
            self.resolved = Some((
                layout.generation,
                self.choices.clone(),
                self.background,
                Arc::new(l),
            ));
        }
        let l = &self.resolved.as_ref().expect("resolved above").3;
        (l, &self.frames)
    }

    /// Copies `frames` into the scene's map, turning rotated frames upright (cached by id).
    fn sync_frames(&mut self, frames: &Frames) {
        self.frames
            .retain(|k, _| k.starts_with('\0') || frames.contains_key(k));
        for (k, f) in frames {
            let f = if turned(f) {
                self.upright
                    .entry(f.id())
                    .or_insert_with(|| Arc::new(f.upright().unwrap_or_else(|| (**f).clone())))
                    .clone()
            } else {
                f.clone()
            };
            match self.frames.get_mut(k) {
                Some(slot) => *slot = f,
                None => {
                    self.frames.insert(k.clone(), f);
                }
            }
        }
        if self.upright.len() > frames.len() {
            self.upright
                .retain(|id, _| frames.values().any(|f| f.id() == *id));
        }
    }

    /// Decides each item's picture and renders text boxes that changed.
    fn choose(&mut self, layout: &Layout, wall_ms: i64) {
        self.choices.clear();
        self.texts.resize_with(layout.items.len(), || None);
        let second = wall_ms.div_euclid(1000);
        for (pos, it) in layout.items.iter().enumerate() {
            let c = match &it.kind {
                ItemKind::Text { .. } => self.text(layout, pos, it, second),
                kind => {
                    let has = |id: Option<&str>| id.is_some_and(|id| self.frames.contains_key(id));
                    if has(kind.source_id()) {
                        Choice::Own
                    } else if has(it.placeholder.as_deref()) {
                        Choice::ItemPlaceholder
                    } else if has(layout.placeholder_image.as_deref()) {
                        Choice::LayoutPlaceholder
                    } else {
                        Choice::Own
                    }
                }
            };
            self.choices.push(c);
        }
        self.background = layout
            .background_image
            .as_deref()
            .is_some_and(|id| self.frames.contains_key(id));
    }

    /// The text box of item `pos` for wall-clock `second`, rendered if it changed.
    fn text(&mut self, layout: &Layout, pos: usize, it: &Item, second: i64) -> Choice {
        let ItemKind::Text {
            text,
            color,
            background,
            font_size,
            margin,
        } = &it.kind
        else {
            return Choice::Skip;
        };
        let stamp = text::has_timestamp(text).then_some(second);
        if let Some(s) = &self.texts[pos] {
            if s.generation == layout.generation && s.second == stamp {
                return Choice::Text(s.frame.width(), s.frame.height());
            }
        }
        let fonts = match self.fonts.get() {
            Ok(f) => f,
            Err(e) => {
                if self.texts[pos].is_none() {
                    tracing::warn!(item = it.index, error = %e, "text item not drawn: no font");
                }
                return Choice::Skip;
            }
        };
        let content = match stamp {
            Some(s) => {
                let off = match self.offset {
                    Some((at, off)) if at == s => off,
                    _ => {
                        let off = text::local_utc_offset(s);
                        self.offset = Some((s, off));
                        off
                    }
                };
                text::expand_timestamp(text, s, off)
            }
            None => text.as_str().into(),
        };
        let style = TextStyle {
            color: *color,
            background: *background,
            font_size: *font_size,
            margin: *margin,
        };
        let room = |origin: i32, size: u32| (size as i64 - origin as i64).clamp(1, MAX_SIDE as i64);
        let img = text::render(
            &fonts,
            &content,
            &style,
            room(it.rect.x, layout.width) as u32,
            room(it.rect.y, layout.height) as u32,
        );
        let frame = match VideoFrame::rgba(img.width, img.height, img.rgba) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::warn!(item = it.index, error = %e, "text item not drawn");
                return Choice::Skip;
            }
        };
        let key = self.texts[pos]
            .take()
            .map_or_else(|| text_key(pos), |s| s.key);
        self.frames.insert(key.clone(), frame.clone());
        let c = Choice::Text(frame.width(), frame.height());
        self.texts[pos] = Some(TextSlot {
            generation: layout.generation,
            second: stamp,
            key,
            frame,
        });
        c
    }

    /// The resolved layout for the current choices.
    fn build(&self, layout: &Layout) -> Layout {
        let mut items = Vec::with_capacity(layout.items.len() + 1);
        if let (true, Some(id)) = (self.background, &layout.background_image) {
            items.push(Item {
                kind: ItemKind::Picture {
                    resource_id: id.clone(),
                },
                rect: Rect::new(0, 0, layout.width, layout.height),
                fit: FitMode::Fill,
                alpha: 1.0,
                zorder: i32::MIN,
                index: usize::MAX,
                placeholder: None,
            });
        }
        for ((pos, it), c) in layout.items.iter().enumerate().zip(&self.choices) {
            let picture = |id: &str| ItemKind::Picture {
                resource_id: id.to_string(),
            };
            let mut it = it.clone();
            match *c {
                Choice::Own => {}
                Choice::ItemPlaceholder => {
                    it.kind = picture(it.placeholder.as_deref().unwrap_or_default())
                }
                Choice::LayoutPlaceholder => {
                    it.kind = picture(layout.placeholder_image.as_deref().unwrap_or_default())
                }
                Choice::Text(w, h) => {
                    it.kind = picture(&text_key(pos));
                    it.rect = Rect::new(it.rect.x, it.rect.y, w, h);
                    it.fit = FitMode::Stretch;
                }
                Choice::Skip => continue,
            }
            items.push(it);
        }
        let mut l = Layout::new(layout.width, layout.height, layout.background, items);
        l.placeholder = layout.placeholder;
        l
    }
}

/// Whether a frame must be turned before it is drawn.
fn turned(f: &VideoFrame) -> bool {
    f.rotation != Rotation::R0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::cpu::CpuCompositor;
    use crate::compose::Compositor;

    fn solid(w: u32, h: u32, yuv: [u8; 3]) -> SharedFrame {
        Arc::new(
            VideoFrame::solid_i420(w, h, yuv)
                .unwrap()
                .with_color(crate::model::color::ColorSpace::BT709_LIMITED),
        )
    }

    fn text_item(text: &str, x: i32, y: i32) -> Item {
        Item {
            kind: ItemKind::Text {
                text: text.into(),
                color: [255, 255, 255, 255],
                background: [0, 0, 0, 0x7d],
                font_size: 18,
                margin: 5,
            },
            rect: Rect::new(x, y, 10, 10),
            fit: FitMode::Fit,
            alpha: 1.0,
            zorder: 0,
            index: 1,
            placeholder: None,
        }
    }

    #[test]
    fn plain_layouts_pass_through() {
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
        let mut f = Frames::new();
        f.insert("a".into(), solid(8, 8, [81, 90, 240]));
        let mut s = Scene::new();
        let (rl, rf) = s.resolve(&l, &f, 0);
        assert!(std::ptr::eq(rl, &l) && std::ptr::eq(rf, &f));
    }

    #[test]
    fn rotated_frames_are_turned_once() {
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 64, 32))]);
        let mut f = Frames::new();
        let fr = VideoFrame::solid_i420(16, 8, [81, 90, 240])
            .unwrap()
            .with_rotation(Rotation::R90);
        f.insert("a".into(), Arc::new(fr));
        let mut s = Scene::new();
        let id = {
            let (_, rf) = s.resolve(&l, &f, 0);
            assert_eq!((rf["a"].width(), rf["a"].height()), (8, 16));
            rf["a"].id()
        };
        let (_, rf) = s.resolve(&l, &f, 40);
        assert_eq!(rf["a"].id(), id, "the turned copy is reused");
    }

    #[test]
    fn placeholders_follow_the_source() {
        let mut l = Layout::cameras(
            64,
            32,
            &[
                ("a", Rect::new(0, 0, 32, 32)),
                ("b", Rect::new(32, 0, 32, 32)),
            ],
        )
        .with_placeholder_image(Some("off".into()));
        l.items[1].placeholder = Some("b-off".into());
        let mut f = Frames::new();
        f.insert("off".into(), solid(4, 4, [100, 100, 100]));
        f.insert("b-off".into(), solid(4, 4, [150, 100, 100]));
        let mut s = Scene::new();
        let mut c = CpuCompositor::new(64, 32);
        let (rl, rf) = s.resolve(&l, &f, 0);
        let out = c.compose(rl, rf).unwrap();
        assert_eq!(out.yuv_at(10, 10), [100, 100, 100]);
        assert_eq!(out.yuv_at(40, 10), [150, 100, 100]);
        let g1 = rl.generation();
        // "a" starts sending: its own frame, a new resolved layout
        f.insert("a".into(), solid(4, 4, [200, 90, 60]));
        let (rl, rf) = s.resolve(&l, &f, 40);
        assert_ne!(rl.generation(), g1);
        let out = c.compose(rl, rf).unwrap();
        assert_eq!(out.yuv_at(10, 10), [200, 90, 60]);
        assert_eq!(out.yuv_at(40, 10), [150, 100, 100]);
        // unchanged: the same resolved layout
        let g2 = rl.generation();
        let (rl, _) = s.resolve(&l, &f, 80);
        assert_eq!(rl.generation(), g2);
    }

    #[test]
    fn background_picture_is_under_everything() {
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))])
            .with_background_image(Some("bg".into()));
        let mut f = Frames::new();
        f.insert("bg".into(), solid(8, 8, [60, 110, 140]));
        f.insert("a".into(), solid(8, 8, [200, 90, 60]));
        let mut s = Scene::new();
        let (rl, rf) = s.resolve(&l, &f, 0);
        let out = CpuCompositor::new(64, 32).compose(rl, rf).unwrap().clone();
        assert_eq!(out.yuv_at(10, 10), [200, 90, 60]);
        assert_eq!(out.yuv_at(50, 10), [60, 110, 140]);
    }

    #[test]
    fn timestamps_render_once_a_second() {
        let l =
            Layout::cameras(320, 64, &[]).with_items(|v| v.push(text_item("%timestamp%", 4, 4)));
        let f = Frames::new();
        let mut s = Scene::new();
        let id_at = |s: &mut Scene, ms: i64| {
            let (rl, rf) = s.resolve(&l, &f, ms);
            let ItemKind::Picture { resource_id } = &rl.items[0].kind else {
                panic!("text becomes a picture")
            };
            assert_eq!(rl.items[0].fit, FitMode::Stretch);
            rf[resource_id].id()
        };
        let a = id_at(&mut s, 1_700_000_000_900);
        let b = id_at(&mut s, 1_700_000_001_100);
        let c = id_at(&mut s, 1_700_000_001_900);
        assert_ne!(a, b, "a new second, a new box");
        assert_eq!(b, c, "the same second, the cached box");
    }
}
