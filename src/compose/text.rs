//! Rendering of vendor "text" layout items (type 10) into straight-alpha RGBA
//! images, plus `%timestamp%` expansion.
//!
//! The box sizes itself to the text: `margin + text + margin` in both
//! directions, clipped to the space the caller has left on the canvas. The
//! result is a plain RGBA picture the compositor blends over video.
//!
//! ```no_run
//! use cloudmixer::compose::text::{Fonts, TextStyle, render};
//!
//! let fonts = Fonts::system().expect("fonts");
//! let style = TextStyle {
//!     color: [255, 255, 255, 255],
//!     background: [0, 0, 0, 0x7d],
//!     font_size: 18,
//!     margin: 4,
//! };
//! let img = render(&fonts, "会议录制 2026", &style, 1920, 1080);
//! assert_eq!(img.rgba.len(), (img.width * img.height * 4) as usize);
//! ```

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ab_glyph::{point, Font, FontVec, GlyphId, PxScale, ScaleFont};

/// Environment variable overriding font discovery: paths separated by `:`.
pub const FONTS_ENV: &str = "CLOUDMIXER_FONTS";

/// The placeholder replaced by [`expand_timestamp`].
pub const TIMESTAMP_TOKEN: &str = "%timestamp%";

/// Largest font size (in pixels) actually used; larger requests are clamped so a
/// single glyph can never make the rasteriser allocate an absurd buffer.
pub const MAX_FONT_SIZE: u32 = 2048;

/// Latin candidates, first existing wins.
const LATIN_CANDIDATES: &[&str] = &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"];

/// CJK candidates, first existing wins.
const CJK_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts-droid-fallback/truetype/DroidSansFallback.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];

/// Errors while loading fonts.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// None of the candidate font files exists.
    #[error("no font found (tried: {})", tried.join(", "))]
    NoFont {
        /// Every path that was looked for.
        tried: Vec<String>,
    },
    /// A font file could not be read or parsed.
    #[error("cannot load font {path}: {reason}")]
    Font {
        /// The file that failed.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

/// One loaded font and where it came from.
struct LoadedFont {
    font: FontVec,
    path: PathBuf,
}

/// A chain of fonts: for each char the first font that has a glyph is used; if
/// none has it, the first font's `.notdef` (glyph 0) is drawn. Never panics.
///
/// Always holds at least one font.
pub struct Fonts {
    fonts: Vec<LoadedFont>,
}

impl std::fmt::Debug for Fonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Fonts").field(&self.describe()).finish()
    }
}

/// Reads and parses one font file (face 0 of a collection).
fn load_font(path: &Path) -> Result<LoadedFont, TextError> {
    let err = |reason: String| TextError::Font {
        path: path.display().to_string(),
        reason,
    };
    let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let font = FontVec::try_from_vec_and_index(data, 0).map_err(|e| err(e.to_string()))?;
    Ok(LoadedFont {
        font,
        path: path.to_path_buf(),
    })
}

impl Fonts {
    /// Loads fonts from files (each `.ttf`/`.otf`/`.ttc`; for a `.ttc` face
    /// index 0 is used), in chain order. The error names the path that failed;
    /// an empty list gives [`TextError::NoFont`].
    pub fn from_paths(paths: &[PathBuf]) -> Result<Fonts, TextError> {
        if paths.is_empty() {
            return Err(TextError::NoFont { tried: Vec::new() });
        }
        let fonts = paths
            .iter()
            .map(|p| load_font(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Fonts { fonts })
    }

    /// Discovers fonts. If the environment variable `CLOUDMIXER_FONTS` holds
    /// at least one path (separated by `:`), only those are loaded. Otherwise
    /// the first loadable file of each group is used, Latin first (so ASCII
    /// uses DejaVu) and then CJK:
    ///
    /// * Latin: `/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf`
    /// * CJK: `/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf`,
    ///   `/usr/share/fonts-droid-fallback/truetype/DroidSansFallback.ttf`,
    ///   `/usr/share/fonts/truetype/wqy/wqy-microhei.ttc`,
    ///   `/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc`
    ///
    /// Fails with [`TextError::NoFont`] listing the paths tried when none
    /// exists, or with [`TextError::Font`] when files exist but none loads.
    pub fn system() -> Result<Fonts, TextError> {
        if let Some(list) = std::env::var_os(FONTS_ENV) {
            let list = list.to_string_lossy().into_owned();
            let paths: Vec<PathBuf> = list
                .split(':')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
            if !paths.is_empty() {
                return Fonts::from_paths(&paths);
            }
        }
        let mut fonts = Vec::new();
        let mut first_err = None;
        for group in [LATIN_CANDIDATES, CJK_CANDIDATES] {
            for candidate in group {
                let path = Path::new(candidate);
                if !path.is_file() {
                    continue;
                }
                match load_font(path) {
                    Ok(f) => {
                        fonts.push(f);
                        break;
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if !fonts.is_empty() {
            return Ok(Fonts { fonts });
        }
        Err(first_err.unwrap_or_else(|| TextError::NoFont {
            tried: LATIN_CANDIDATES
                .iter()
                .chain(CJK_CANDIDATES)
                .map(|s| (*s).to_owned())
                .collect(),
        }))
    }

    /// The file names of the chain, e.g. `"DejaVuSans.ttf + DroidSansFallbackFull.ttf"`.
    pub fn describe(&self) -> String {
        self.fonts
            .iter()
            .map(|f| {
                f.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| f.path.display().to_string())
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Whether some font of the chain has a glyph for `c`.
    pub fn covers(&self, c: char) -> bool {
        self.fonts.iter().any(|f| f.font.glyph_id(c).0 != 0)
    }

    /// The font index and glyph used for `c` (first font's glyph 0 if none has it).
    fn pick(&self, c: char) -> (usize, GlyphId) {
        self.fonts
            .iter()
            .enumerate()
            .find_map(|(i, f)| {
                let id = f.font.glyph_id(c);
                (id.0 != 0).then_some((i, id))
            })
            .unwrap_or((0, GlyphId(0)))
    }

    /// Lays `text` out, calling `place(line, font_index, glyph, pen_x)` for each
    /// glyph, where `pen_x` is relative to the start of the line (margin not
    /// included). Returns (widest line advance, number of lines).
    fn layout(
        &self,
        text: &str,
        scale: PxScale,
        mut place: impl FnMut(u64, usize, GlyphId, f32),
    ) -> (f32, u64) {
        let mut line = 0u64;
        let mut pen = 0f32;
        let mut widest = 0f32;
        let mut prev: Option<(usize, GlyphId)> = None;
        for c in text.chars() {
            let (ch, reps) = match c {
                '\n' => {
                    widest = widest.max(pen);
                    line += 1;
                    pen = 0.0;
                    prev = None;
                    continue;
                }
                '\t' => (' ', 4),
                c if c.is_control() => continue,
                c => (c, 1),
            };
            let (fi, id) = self.pick(ch);
            let font = self.fonts[fi].font.as_scaled(scale);
            for _ in 0..reps {
                if let Some((_, pid)) = prev.filter(|&(pf, _)| pf == fi) {
                    pen += font.kern(pid, id);
                }
                place(line, fi, id, pen);
                pen += font.h_advance(id);
                prev = Some((fi, id));
            }
        }
        widest = widest.max(pen);
        (widest.max(0.0), line + 1)
    }
}

/// Style of a text box (vendor fields: color, background, font-size, text-margin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextStyle {
    /// Text colour, straight RGBA.
    pub color: [u8; 4],
    /// Box background, straight RGBA.
    pub background: [u8; 4],
    /// Font height in pixels (clamped to 1..=[`MAX_FONT_SIZE`]).
    pub font_size: u32,
    /// Empty space around the text on every side, in pixels.
    pub margin: u32,
}

/// A rendered text box: straight (non-premultiplied) RGBA, row-major,
/// stride `4 * width`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextImage {
    /// Width in pixels (at least 1).
    pub width: u32,
    /// Height in pixels (at least 1).
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

/// Composites text colour with coverage `c` over straight-RGBA background `bg`.
fn over(color: [u8; 4], bg: [u8; 4], c: f32) -> [u8; 4] {
    let a_t = f32::from(color[3]) / 255.0 * c;
    let a_b = f32::from(bg[3]) / 255.0;
    let w_b = a_b * (1.0 - a_t);
    let a_out = a_t + w_b;
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    let mut out = [0u8; 4];
    if a_out > 0.0 {
        for k in 0..3 {
            out[k] = to_u8((f32::from(color[k]) * a_t + f32::from(bg[k]) * w_b) / a_out);
        }
    }
    out[3] = to_u8(a_out * 255.0);
    out
}

/// Renders `text` in `style`, clipped to at most `max_w` x `max_h` pixels (the
/// caller passes the canvas space right of/below the anchor; 0 is treated as 1).
/// Always returns an image of at least 1x1.
///
/// The full box is `margin + widest line + margin` wide and
/// `margin + lines * line_height + margin` high; `\n` starts a new line, `\r`
/// and other control characters are skipped, a tab is four spaces.
pub fn render(fonts: &Fonts, text: &str, style: &TextStyle, max_w: u32, max_h: u32) -> TextImage {
    let size = style.font_size.clamp(1, MAX_FONT_SIZE) as f32;
    let scale = PxScale::from(size);
    let first = fonts.fonts[0].font.as_scaled(scale);
    let ascent = first.ascent();
    let line_h = (ascent - first.descent() + first.line_gap())
        .ceil()
        .max(1.0);

    let (widest, lines) = fonts.layout(text, scale, |_, _, _, _| {});
    let margin = u64::from(style.margin);
    let full_w = (2 * margin).saturating_add(widest.ceil() as u64);
    let full_h = (2 * margin).saturating_add(lines.saturating_mul(line_h as u64));
    let width = full_w.clamp(1, u64::from(max_w.max(1))) as u32;
    let height = full_h.clamp(1, u64::from(max_h.max(1))) as u32;
    let (w, h) = (width as usize, height as usize);

    let mut rgba = style.background.repeat(w * h);
    if style.color[3] == 0 && style.background[3] != 0 {
        // Invisible text over a visible background changes nothing.
        return TextImage {
            width,
            height,
            rgba,
        };
    }

    let mut cov = vec![0f32; w * h];
    let margin_f = style.margin as f32;
    let (wf, hf) = (width as f32, height as f32);
    fonts.layout(text, scale, |line, fi, id, pen| {
        let top = margin_f + line as f32 * line_h;
        let x = margin_f + pen;
        // Cheap rejects: ink stays within about one em of its pen position.
        if top - line_h > hf || x - size > wf {
            return;
        }
        let font = &fonts.fonts[fi].font;
        let glyph = id.with_scale_and_position(scale, point(x, top + ascent));
        let Some(outlined) = font.outline_glyph(glyph) else {
            return;
        };
        let b = outlined.px_bounds();
        if b.min.x >= wf || b.min.y >= hf || b.max.x <= 0.0 || b.max.y <= 0.0 {
            return;
        }
        let (ox, oy) = (b.min.x as i64, b.min.y as i64);
        outlined.draw(|gx, gy, c| {
            let px = ox + i64::from(gx);
            let py = oy + i64::from(gy);
            if px >= 0 && py >= 0 && (px as usize) < w && (py as usize) < h {
                let cell = &mut cov[py as usize * w + px as usize];
                *cell = (*cell + c).min(1.0);
            }
        });
    });

    // Coverage is quantised to 1/255 steps; each level's colour is computed
    // once, on first use (most pixels are untouched or fully covered).
    let mut table: [Option<[u8; 4]>; 256] = [None; 256];
    for (px, &c) in rgba.chunks_exact_mut(4).zip(&cov) {
        let level = (c * 255.0 + 0.5) as usize; // c in 0..=1, so 0..=255
        if level == 0 {
            continue;
        }
        let out = table[level & 255]
            .get_or_insert_with(|| over(style.color, style.background, level as f32 / 255.0));
        px.copy_from_slice(out);
    }
    TextImage {
        width,
        height,
        rgba,
    }
}

/// Whether `text` contains `%timestamp%`.
pub fn has_timestamp(text: &str) -> bool {
    text.contains(TIMESTAMP_TOKEN)
}

/// Replaces every `%timestamp%` with [`format_timestamp`]`(unix_secs, utc_offset_s)`;
/// returns [`Cow::Borrowed`] when there is none.
///
/// ```
/// use cloudmixer::compose::text::expand_timestamp;
///
/// let s = expand_timestamp("rec %timestamp%", 1_700_000_000, 28800);
/// assert_eq!(s, "rec 2023-11-15 06:13:20");
/// ```
pub fn expand_timestamp(text: &str, unix_secs: i64, utc_offset_s: i32) -> Cow<'_, str> {
    if has_timestamp(text) {
        Cow::Owned(text.replace(TIMESTAMP_TOKEN, &format_timestamp(unix_secs, utc_offset_s)))
    } else {
        Cow::Borrowed(text)
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year,
    // then split into 400-year cycles of 146097 days.
    let z = days + 719_468;
    let cycle = z.div_euclid(146_097);
    let day_of_cycle = z.rem_euclid(146_097); // 0..=146096
    let year_of_cycle =
        (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365; // 0..=399
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100); // 0..=365
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD HH:MM:SS` of `unix_secs + utc_offset_s` (proleptic Gregorian).
///
/// ```
/// use cloudmixer::compose::text::format_timestamp;
///
/// assert_eq!(format_timestamp(951_782_400, 0), "2000-02-29 00:00:00");
/// ```
pub fn format_timestamp(unix_secs: i64, utc_offset_s: i32) -> String {
    let t = i128::from(unix_secs) + i128::from(utc_offset_s);
    let days = t.div_euclid(86_400) as i64; // |t| < 2^64, so this fits
    let secs = t.rem_euclid(86_400) as u32;
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(unix)]
unsafe extern "C" {
    /// POSIX `tzset(3)`: re-reads `TZ` (not exported by the `libc` crate).
    fn tzset();
}

/// The local UTC offset in seconds at `unix_secs`, via `localtime_r`
/// (`tm_gmtoff`), honouring `TZ` as libc does; 0 if it fails.
pub fn local_utc_offset(unix_secs: i64) -> i32 {
    #[cfg(unix)]
    {
        let Some(t) = libc::time_t::try_from(unix_secs).ok() else {
            return 0;
        };
        // SAFETY: `tm` is plain old data, so all-zero is a valid value;
        // `localtime_r` only writes into the `tm` we own and reads `t`.
        // `tzset` makes glibc pick up TZ changes, which `localtime_r` alone
        // need not do.
        unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            tzset();
            if libc::localtime_r(&t, &mut tm).is_null() {
                return 0;
            }
            i32::try_from(tm.tm_gmtoff).unwrap_or(0)
        }
    }
    #[cfg(not(unix))]
    {
        let _ = unix_secs;
        0
    }
}

/// Fonts loaded with [`Fonts::system`] on first use and shared by every clone of the cache
/// (a load error is kept as a `String` and returned on every call). No process-wide state:
/// whoever owns the cache (a [`crate::pipeline::Services`]) decides who shares the fonts.
#[derive(Clone, Default)]
pub struct FontCache {
    fonts: Arc<OnceLock<Result<Arc<Fonts>, String>>>,
}

impl std::fmt::Debug for FontCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FontCache")
            .field("loaded", &self.fonts.get().is_some())
            .finish()
    }
}

impl FontCache {
    /// A cache that loads nothing until [`FontCache::get`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding `fonts` already.
    pub fn with(fonts: Arc<Fonts>) -> Self {
        let c = Self::default();
        let _ = c.fonts.set(Ok(fonts));
        c
    }

    /// The fonts, loaded on the first call.
    pub fn get(&self) -> Result<Arc<Fonts>, String> {
        self.fonts
            .get_or_init(|| Fonts::system().map(Arc::new).map_err(|e| e.to_string()))
            .clone()
    }

    /// Whether the fonts were loaded (or failed to load) already.
    pub fn loaded(&self) -> bool {
        self.fonts.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEJAVU: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    const DROID: &str = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf";

    fn fonts() -> Fonts {
        Fonts::system().expect("system fonts are installed on the test box")
    }

    /// The exact two-font chain, independent of CLOUDMIXER_FONTS.
    fn chain() -> Fonts {
        Fonts::from_paths(&[PathBuf::from(DEJAVU), PathBuf::from(DROID)]).expect("fonts")
    }

    fn px(img: &TextImage, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * img.width + x) * 4) as usize;
        [
            img.rgba[i],
            img.rgba[i + 1],
            img.rgba[i + 2],
            img.rgba[i + 3],
        ]
    }

    fn pixels(img: &TextImage) -> impl Iterator<Item = [u8; 4]> + '_ {
        img.rgba.chunks_exact(4).map(|p| [p[0], p[1], p[2], p[3]])
    }

    const WHITE_ON_BLACK: TextStyle = TextStyle {
        color: [255, 255, 255, 255],
        background: [0, 0, 0, 255],
        font_size: 18,
        margin: 5,
    };

    #[test]
    fn system_fonts_describe_and_cover() {
        let f = fonts();
        assert!(!f.describe().is_empty());
        assert!(f.covers('A'));
        assert!(f.covers('会'));
        assert!(!f.covers('\u{10FFFD}'));
        let c = chain();
        assert_eq!(c.describe(), "DejaVuSans.ttf + DroidSansFallbackFull.ttf");
        assert_eq!(c.pick('A').0, 0, "ASCII comes from DejaVu");
        assert_eq!(c.pick('会').0, 1, "CJK falls through to Droid");
        assert_eq!(c.pick('\u{10FFFD}'), (0, GlyphId(0)));
        assert!(format!("{c:?}").contains("DejaVuSans.ttf"));
    }

    #[test]
    fn a_font_cache_loads_once_for_all_its_clones() {
        let cache = FontCache::new();
        assert!(!cache.loaded(), "nothing loaded before the first use");
        let a = cache.get().expect("fonts");
        let b = cache.clone().get().expect("fonts");
        assert!(Arc::ptr_eq(&a, &b));
        // another cache loads its own
        let c = FontCache::new().get().expect("fonts");
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn hello_sizes_margins_and_solid_pixels() {
        let f = fonts();
        let mut heights = Vec::new();
        for size in [12, 18, 48] {
            let style = TextStyle {
                font_size: size,
                ..WHITE_ON_BLACK
            };
            let img = render(&f, "Hello", &style, 4000, 4000);
            assert_eq!(img.rgba.len(), (img.width * img.height * 4) as usize);
            assert!(img.width > 2 * style.margin && img.height > 2 * style.margin);
            let bg = style.background;
            let m = style.margin;
            for y in 0..img.height {
                for x in 0..img.width {
                    let in_margin = x < m || y < m || x >= img.width - m || y >= img.height - m;
                    if in_margin {
                        assert_eq!(px(&img, x, y), bg, "margin pixel {x},{y} at {size}px");
                    }
                }
            }
            let inked = pixels(&img).filter(|p| *p != bg).count();
            assert!(inked > 0, "no ink at {size}px");
            if size == 48 {
                let solid = pixels(&img).filter(|p| *p == style.color).count();
                assert!(solid > 50, "only {solid} fully covered pixels at 48px");
            }
            heights.push(img.height);
        }
        assert!(
            heights[0] < heights[1] && heights[1] < heights[2],
            "{heights:?}"
        );
    }

    #[test]
    fn width_grows_with_text() {
        let f = fonts();
        let a = render(&f, "Hi", &WHITE_ON_BLACK, 4000, 4000);
        let b = render(&f, "Hi there", &WHITE_ON_BLACK, 4000, 4000);
        assert!(b.width > a.width);
        assert_eq!(a.height, b.height);
        let two = render(&f, "Hi\nthere", &WHITE_ON_BLACK, 4000, 4000);
        let one_line = a.height - 2 * WHITE_ON_BLACK.margin;
        assert_eq!(two.height, 2 * WHITE_ON_BLACK.margin + 2 * one_line);
        // '\r' and other control characters take no space; a tab is 4 spaces.
        let cr = render(&f, "Hi\r\u{7}", &WHITE_ON_BLACK, 4000, 4000);
        assert_eq!(cr, a);
        let tab = render(&f, "a\tb", &WHITE_ON_BLACK, 4000, 4000);
        let spaces = render(&f, "a    b", &WHITE_ON_BLACK, 4000, 4000);
        assert_eq!(tab, spaces);
    }

    #[test]
    fn chinese_line_renders_cjk_glyphs() {
        let f = fonts();
        assert!(f.covers('会'));
        let style = TextStyle {
            font_size: 48,
            ..WHITE_ON_BLACK
        };
        let img = render(&f, "会议录制 2026", &style, 4000, 4000);
        let latin = render(&f, " 2026", &style, 4000, 4000);
        // The four CJK glyphs occupy the columns before the " 2026" part.
        let cjk_end = img.width - (latin.width - 2 * style.margin) - style.margin;
        assert!(
            cjk_end > style.margin + 4 * 30,
            "CJK glyphs are wide: {cjk_end}"
        );
        let mut covered = 0;
        for y in 0..img.height {
            for x in style.margin..cjk_end {
                if px(&img, x, y) != style.background {
                    covered += 1;
                }
            }
        }
        assert!(covered > 500, "only {covered} CJK pixels covered");
    }

    #[test]
    fn missing_glyph_does_not_panic() {
        let f = fonts();
        for text in ["\u{10FFFD}", "a\u{10FFFD}b", "\u{10FFFD}\n\u{10FFFD}"] {
            let img = render(&f, text, &WHITE_ON_BLACK, 1000, 1000);
            assert!(img.width >= 1 && img.height >= 1);
            assert!(
                img.width < 200 && img.height < 200,
                "{}x{}",
                img.width,
                img.height
            );
            assert_eq!(img.rgba.len(), (img.width * img.height * 4) as usize);
        }
    }

    #[test]
    fn empty_and_whitespace() {
        let f = fonts();
        let style = TextStyle {
            background: [10, 20, 30, 40],
            ..WHITE_ON_BLACK
        };
        let empty = render(&f, "", &style, 1000, 1000);
        let one = render(&f, "x", &style, 1000, 1000);
        assert_eq!(empty.width, 2 * style.margin);
        assert_eq!(empty.height, one.height);
        assert!(pixels(&empty).all(|p| p == style.background));
        let blank = render(&f, "  \t ", &style, 1000, 1000);
        assert_eq!(blank.height, one.height);
        assert!(blank.width > empty.width, "spaces advance the pen");
        assert!(pixels(&blank).all(|p| p == style.background));
        let zero = TextStyle { margin: 0, ..style };
        let tiny = render(&f, "", &zero, 1000, 1000);
        assert_eq!(tiny.width, 1);
        assert!(tiny.height >= 1);
    }

    #[test]
    fn translucent_colour_over_transparent_background() {
        let f = fonts();
        let style = TextStyle {
            color: [255, 0, 0, 128],
            background: [0, 0, 0, 0],
            font_size: 48,
            margin: 3,
        };
        let img = render(&f, "Hello", &style, 4000, 4000);
        let mut full = 0;
        for p in pixels(&img) {
            if p[3] > 0 {
                assert_eq!(&p[..3], &[255, 0, 0], "{p:?}");
                assert!(p[3] <= 128, "{p:?}");
            } else {
                // Untouched background, or a sliver of coverage whose alpha rounds to 0.
                assert!(p == [0, 0, 0, 0] || p == [255, 0, 0, 0], "{p:?}");
            }
            full += usize::from(p == [255, 0, 0, 128]);
        }
        assert!(full > 50, "only {full} fully covered pixels");
    }

    #[test]
    fn translucent_background_margins_are_exact() {
        let f = fonts();
        let style = TextStyle {
            color: [255, 255, 0, 255],
            background: [0, 0, 0, 0x7d],
            font_size: 24,
            margin: 4,
        };
        let img = render(&f, "Ag", &style, 4000, 4000);
        for x in 0..img.width {
            assert_eq!(px(&img, x, 0), [0, 0, 0, 0x7d]);
            assert_eq!(px(&img, x, img.height - 1), [0, 0, 0, 0x7d]);
        }
        assert!(pixels(&img).any(|p| p == [255, 255, 0, 255]));
        // Partial coverage blends: alpha between background and text.
        assert!(pixels(&img).any(|p| p[3] > 0x7d && p[3] < 255));
    }

    #[test]
    fn over_formula() {
        assert_eq!(over([255, 0, 0, 128], [0, 0, 0, 0], 1.0), [255, 0, 0, 128]);
        assert_eq!(
            over([255, 0, 0, 255], [0, 0, 255, 255], 0.5),
            [128, 0, 128, 255]
        );
        assert_eq!(over([9, 9, 9, 0], [0, 0, 0, 0], 1.0), [0, 0, 0, 0]);
        assert_eq!(
            over([200, 100, 0, 255], [1, 2, 3, 4], 1.0),
            [200, 100, 0, 255]
        );
        // 25% white over 50% black: a = 0.25 + 0.502 * 0.75 = 0.6265 -> 160,
        // rgb = 255 * 0.25 / 0.6265 = 101.8 -> 102.
        assert_eq!(
            over([255, 255, 255, 255], [0, 0, 0, 128], 0.25),
            [102, 102, 102, 160]
        );
        // Tiny coverage: alpha rounds to 0 but the straight colour is kept.
        assert_eq!(over([255, 0, 0, 128], [0, 0, 0, 0], 0.001), [255, 0, 0, 0]);
    }

    #[test]
    fn clipping() {
        let f = fonts();
        let img = render(&f, "Hello, clipped world", &WHITE_ON_BLACK, 10, 5);
        assert_eq!((img.width, img.height), (10, 5));
        assert_eq!(img.rgba.len(), 10 * 5 * 4);
        let one = render(&f, "Hello", &WHITE_ON_BLACK, 0, 0);
        assert_eq!((one.width, one.height), (1, 1));
        // Clipping keeps the unclipped pixels identical.
        let full = render(&f, "Hello", &WHITE_ON_BLACK, 4000, 4000);
        let part = render(&f, "Hello", &WHITE_ON_BLACK, 20, 15);
        for y in 0..15 {
            for x in 0..20 {
                assert_eq!(px(&full, x, y), px(&part, x, y));
            }
        }
    }

    #[test]
    fn absurd_styles_are_bounded() {
        let f = fonts();
        let big = TextStyle {
            font_size: u32::MAX,
            margin: u32::MAX,
            ..WHITE_ON_BLACK
        };
        let img = render(&f, "Hello\n\n\n", &big, 64, 48);
        assert_eq!((img.width, img.height), (64, 48));
        assert!(pixels(&img).all(|p| p == big.background));
        let small = TextStyle {
            font_size: 0,
            margin: 0,
            ..WHITE_ON_BLACK
        };
        let img = render(&f, "Hello", &small, 64, 48);
        assert!(img.width >= 1 && img.height >= 1);
        let huge_glyph = TextStyle {
            font_size: 100_000,
            margin: 0,
            ..WHITE_ON_BLACK
        };
        let img = render(&f, "W", &huge_glyph, 32, 32);
        assert_eq!((img.width, img.height), (32, 32));
        let long = "x".repeat(100_000);
        let img = render(&f, &long, &WHITE_ON_BLACK, 100, 20);
        assert_eq!((img.width, img.height), (100, 20));
    }

    #[test]
    fn timestamp_formatting() {
        assert_eq!(format_timestamp(0, 0), "1970-01-01 00:00:00");
        assert_eq!(format_timestamp(951_782_400, 0), "2000-02-29 00:00:00");
        assert_eq!(
            format_timestamp(1_700_000_000, 28800),
            "2023-11-15 06:13:20"
        );
        assert_eq!(format_timestamp(1_700_000_000, 0), "2023-11-14 22:13:20");
        // Negative offsets cross midnight and year boundaries backwards.
        assert_eq!(format_timestamp(0, -1), "1969-12-31 23:59:59");
        assert_eq!(
            format_timestamp(1_704_067_200, -18000),
            "2023-12-31 19:00:00"
        );
        // Leap years: 2024 yes, 1900/2100 no, 2000 yes.
        assert_eq!(format_timestamp(1_709_164_800, 0), "2024-02-29 00:00:00");
        assert_eq!(format_timestamp(1_709_251_200, 0), "2024-03-01 00:00:00");
        assert_eq!(format_timestamp(4_107_542_400, 0), "2100-03-01 00:00:00");
        assert_eq!(format_timestamp(4_107_456_000, 0), "2100-02-28 00:00:00");
        assert_eq!(format_timestamp(-2_203_891_200, 0), "1900-03-01 00:00:00");
        assert_eq!(format_timestamp(253_402_300_799, 0), "9999-12-31 23:59:59");
        // Extremes must not panic.
        let _ = format_timestamp(i64::MAX, i32::MAX);
        let _ = format_timestamp(i64::MIN, i32::MIN);
    }

    #[test]
    fn civil_from_days_walks_every_day() {
        // Independent day-by-day walk from 1970 to 2400 compared against the formula.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..(430 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn timestamp_expansion() {
        assert!(has_timestamp("a %timestamp% b"));
        assert!(!has_timestamp("a %timestamp b"));
        let out = expand_timestamp("%timestamp% | %timestamp%!", 0, 3600);
        assert_eq!(out, "1970-01-01 01:00:00 | 1970-01-01 01:00:00!");
        assert!(matches!(out, Cow::Owned(_)));
        let plain = expand_timestamp("no stamp here %time%", 0, 0);
        assert!(matches!(plain, Cow::Borrowed("no stamp here %time%")));
    }

    #[test]
    fn local_offset_honours_tz() {
        const CHILD: &str = "CLOUDMIXER_TEXT_TZ_CHILD";
        if let Some(want) = std::env::var_os(CHILD) {
            let want: i32 = want.to_string_lossy().parse().expect("offset");
            assert_eq!(local_utc_offset(1_700_000_000), want);
            return;
        }
        let off = local_utc_offset(1_700_000_000);
        assert!((-18 * 3600..=18 * 3600).contains(&off), "{off}");
        // POSIX TZ strings need no tzdata; run this test again in a child.
        let exe = std::env::current_exe().expect("test binary");
        for (tz, want) in [("XST-8", 28800), ("XST+5", -18000), ("UTC0", 0)] {
            let out = std::process::Command::new(&exe)
                .args(["--exact", "compose::text::tests::local_offset_honours_tz"])
                .env("TZ", tz)
                .env(CHILD, want.to_string())
                .output()
                .expect("spawn test binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "TZ={tz} should give {want}: {stdout}");
            assert!(stdout.contains("1 passed"), "child ran no test: {stdout}");
        }
    }

    #[test]
    fn from_paths_errors_name_the_path() {
        let missing = PathBuf::from("/nonexistent/dir/NoSuchFont.ttf");
        let err = Fonts::from_paths(&[PathBuf::from(DEJAVU), missing]).expect_err("missing");
        assert!(matches!(&err, TextError::Font { path, .. } if path.contains("NoSuchFont.ttf")));
        assert!(err.to_string().contains("/nonexistent/dir/NoSuchFont.ttf"));

        let dir = std::env::temp_dir().join(format!("cm-text-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let bogus = dir.join("not-a-font.ttf");
        std::fs::write(&bogus, b"this is not a font file at all").expect("write");
        let err = Fonts::from_paths(std::slice::from_ref(&bogus)).expect_err("bogus");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(err.to_string().contains("not-a-font.ttf"), "{err}");
        assert!(matches!(err, TextError::Font { .. }));

        assert!(matches!(
            Fonts::from_paths(&[]),
            Err(TextError::NoFont { .. })
        ));
        let no = TextError::NoFont {
            tried: vec!["/a.ttf".into(), "/b.ttc".into()],
        };
        assert_eq!(no.to_string(), "no font found (tried: /a.ttf, /b.ttc)");
    }
}
