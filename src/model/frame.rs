//! Decoded video frames: planes, strides, pixel format, colour space, timestamp.
//!
//! A [`VideoFrame`] owns its planes. Constructors check every plane against the format, the
//! size and the stride, so a short buffer is a [`FrameError`], never a panic later on the frame
//! path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

/// Pixel layouts accepted from sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Planar 4:2:0: Y, U, V planes (U and V at half width and half height, rounded up).
    I420,
    /// Semi-planar 4:2:0: Y plane, then one interleaved UV plane.
    Nv12,
    /// Packed 8-bit R, G, B, A (non-premultiplied).
    Rgba,
}

impl PixelFormat {
    /// Number of planes.
    pub fn plane_count(self) -> usize {
        match self {
            PixelFormat::I420 => 3,
            PixelFormat::Nv12 => 2,
            PixelFormat::Rgba => 1,
        }
    }

    /// (width in bytes, height in rows) of plane `i` for a `w`x`h` frame.
    pub fn plane_size(self, i: usize, w: u32, h: u32) -> (usize, usize) {
        let (w, h) = (w as usize, h as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match (self, i) {
            (PixelFormat::I420, 0) | (PixelFormat::Nv12, 0) => (w, h),
            (PixelFormat::I420, _) => (cw, ch),
            (PixelFormat::Nv12, _) => (cw * 2, ch),
            (PixelFormat::Rgba, _) => (w * 4, h),
        }
    }
}

pub use super::buffer::PlaneData;
pub use super::color::{ColorSpace, Matrix, Range};

/// The clockwise rotation that turns a frame upright for display, as WebRTC frames carry it
/// (`kVideoRotation_90` …) and as a file's display matrix or `rotate` tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum Rotation {
    /// Upright as stored.
    #[default]
    R0,
    /// Turn 90° clockwise to display (a phone held upright, sensor landscape).
    R90,
    /// Turn 180°.
    R180,
    /// Turn 270° clockwise (90° counter-clockwise).
    R270,
}

impl Rotation {
    /// The rotation of `degrees` clockwise (any multiple of 90, negative too); `None` for
    /// other angles.
    ///
    /// ```
    /// use cloudmixer::model::frame::Rotation;
    /// assert_eq!(Rotation::from_degrees(-90), Some(Rotation::R270));
    /// assert_eq!(Rotation::from_degrees(45), None);
    /// ```
    pub fn from_degrees(degrees: i64) -> Option<Rotation> {
        if degrees % 90 != 0 {
            return None;
        }
        Some(match degrees.rem_euclid(360) {
            0 => Rotation::R0,
            90 => Rotation::R90,
            180 => Rotation::R180,
            _ => Rotation::R270,
        })
    }

    /// Clockwise degrees: 0, 90, 180 or 270.
    pub fn degrees(self) -> u32 {
        match self {
            Rotation::R0 => 0,
            Rotation::R90 => 90,
            Rotation::R180 => 180,
            Rotation::R270 => 270,
        }
    }

    /// Whether width and height trade places.
    pub fn swaps_axes(self) -> bool {
        matches!(self, Rotation::R90 | Rotation::R270)
    }
}

/// Rotates one plane of `w`x`h` elements of `E` bytes each (rows `stride` bytes apart) into a
/// tightly packed plane of the rotated size. Works in 32x32 tiles so that both the reads and
/// the writes stay in cache.
fn rotate_plane<const E: usize>(
    src: &[u8],
    stride: usize,
    w: usize,
    h: usize,
    rot: Rotation,
) -> Vec<u8> {
    let (ow, oh) = if rot.swaps_axes() { (h, w) } else { (w, h) };
    let mut out = vec![0u8; ow * oh * E];
    const T: usize = 32;
    for ty in (0..oh).step_by(T) {
        for tx in (0..ow).step_by(T) {
            for y in ty..(ty + T).min(oh) {
                let orow = &mut out[y * ow * E..(y + 1) * ow * E];
                for x in tx..(tx + T).min(ow) {
                    // output (x, y) shows source (sx, sy)
                    let (sx, sy) = match rot {
                        Rotation::R0 => (x, y),
                        Rotation::R90 => (y, h - 1 - x),
                        Rotation::R180 => (w - 1 - x, h - 1 - y),
                        Rotation::R270 => (w - 1 - y, x),
                    };
                    let i = sy * stride + sx * E;
                    orow[x * E..x * E + E].copy_from_slice(&src[i..i + E]);
                }
            }
        }
    }
    out
}

/// Bad frame data given to a constructor.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// Width or height is zero or above the supported maximum.
    #[error("frame size {width}x{height} is not supported (1..={max} per side)")]
    BadSize {
        /// Width given.
        width: u32,
        /// Height given.
        height: u32,
        /// Largest side accepted.
        max: u32,
    },
    /// Wrong number of planes for the format.
    #[error("{format:?} needs {expected} planes, got {got}")]
    PlaneCount {
        /// Format given.
        format: PixelFormat,
        /// Planes the format has.
        expected: usize,
        /// Planes passed.
        got: usize,
    },
    /// A stride shorter than one row of the plane.
    #[error("plane {plane}: stride {stride} is shorter than a row ({row} bytes)")]
    StrideTooSmall {
        /// Plane index.
        plane: usize,
        /// Stride given.
        stride: usize,
        /// Bytes in one row.
        row: usize,
    },
    /// A buffer shorter than `stride * (rows - 1) + row`.
    #[error("plane {plane}: buffer has {got} bytes, needs at least {needed}")]
    ShortBuffer {
        /// Plane index.
        plane: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

/// Largest frame side accepted (16K).
pub const MAX_SIDE: u32 = 16384;

/// One plane: bytes and the distance between row starts.
#[derive(Debug, Clone)]
pub struct Plane {
    /// Pixel bytes; row `r` starts at `r * stride`. Shared, never copied (see
    /// [`crate::model::buffer`]): a `Vec<u8>` converts with `.into()`.
    pub data: PlaneData,
    /// Bytes from one row start to the next (≥ the row's width in bytes).
    pub stride: usize,
}

impl Plane {
    /// Row `r` of a plane whose rows are `row_bytes` long.
    #[inline]
    pub fn row(&self, r: usize, row_bytes: usize) -> &[u8] {
        &self.data[r * self.stride..r * self.stride + row_bytes]
    }
}

/// A decoded picture from a source.
///
/// ```
/// use cloudmixer::model::frame::{VideoFrame, ColorSpace};
/// // a 4x2 mid-grey I420 frame
/// let f = VideoFrame::i420(4, 2, vec![128; 8], vec![128; 2], vec![128; 2]).unwrap();
/// assert_eq!(f.width(), 4);
/// assert!(VideoFrame::i420(4, 2, vec![0; 7], vec![0; 2], vec![0; 2]).is_err());
/// # let _ = ColorSpace::BT709_LIMITED;
/// ```
#[derive(Debug, Clone)]
pub struct VideoFrame {
    format: PixelFormat,
    width: u32,
    height: u32,
    planes: Vec<Plane>,
    /// Colour space of YUV data. Untagged frames (built without [`VideoFrame::with_color`])
    /// default by size as decoders do: BT.601 limited range below 720 lines (SD webcams,
    /// libyuv/WebRTC frames), BT.709 limited range from 720 lines up
    /// ([`ColorSpace::for_height`]).
    pub color: ColorSpace,
    /// Presentation time relative to the source's start.
    pub pts: Duration,
    /// Sample (pixel) aspect ratio, numerator and denominator; (1, 1) for square pixels.
    pub sar: (u32, u32),
    /// Clockwise rotation to display the frame upright; the mixer draws it turned, and fits
    /// it by its turned size ([`VideoFrame::upright`]).
    pub rotation: Rotation,
    id: u64,
}

static NEXT_FRAME_ID: AtomicU64 = AtomicU64::new(1);
fn next_id() -> u64 {
    NEXT_FRAME_ID.fetch_add(1, Ordering::Relaxed)
}

impl VideoFrame {
    /// Builds a frame from planes, checking sizes and strides.
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        planes: Vec<Plane>,
    ) -> Result<Self, FrameError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(FrameError::BadSize {
                width,
                height,
                max: MAX_SIDE,
            });
        }
        if planes.len() != format.plane_count() {
            return Err(FrameError::PlaneCount {
                format,
                expected: format.plane_count(),
                got: planes.len(),
            });
        }
        for (i, p) in planes.iter().enumerate() {
            let (row, rows) = format.plane_size(i, width, height);
            if p.stride < row {
                return Err(FrameError::StrideTooSmall {
                    plane: i,
                    stride: p.stride,
                    row,
                });
            }
            // checked: a huge stride must be an error, not a wrap to a small "needed"
            let needed = p
                .stride
                .checked_mul(rows - 1)
                .and_then(|n| n.checked_add(row))
                .unwrap_or(usize::MAX);
            if p.data.len() < needed {
                return Err(FrameError::ShortBuffer {
                    plane: i,
                    needed,
                    got: p.data.len(),
                });
            }
        }
        Ok(VideoFrame {
            format,
            width,
            height,
            planes,
            color: ColorSpace::for_height(height),
            pts: Duration::ZERO,
            sar: (1, 1),
            rotation: Rotation::R0,
            id: next_id(),
        })
    }

    /// Tightly packed I420 (strides = plane widths); the vectors are moved in, not copied.
    pub fn i420(
        width: u32,
        height: u32,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<Self, FrameError> {
        Self::i420_shared(width, height, y.into(), u.into(), v.into())
    }

    /// Tightly packed I420 from shared planes (no copy: see [`crate::model::buffer`]), e.g.
    /// a decoder's buffers lent with [`PlaneData::from_raw`] or [`crate::model::buffer::FramePool`]
    /// buffers. Use [`VideoFrame::new`] for padded strides or NV12/RGBA.
    pub fn i420_shared(
        width: u32,
        height: u32,
        y: PlaneData,
        u: PlaneData,
        v: PlaneData,
    ) -> Result<Self, FrameError> {
        let cw = width.div_ceil(2) as usize;
        Self::new(
            PixelFormat::I420,
            width,
            height,
            vec![
                Plane {
                    data: y,
                    stride: width as usize,
                },
                Plane {
                    data: u,
                    stride: cw,
                },
                Plane {
                    data: v,
                    stride: cw,
                },
            ],
        )
    }

    /// Tightly packed NV12.
    pub fn nv12(width: u32, height: u32, y: Vec<u8>, uv: Vec<u8>) -> Result<Self, FrameError> {
        let cw = width.div_ceil(2) as usize * 2;
        Self::new(
            PixelFormat::Nv12,
            width,
            height,
            vec![
                Plane {
                    data: y.into(),
                    stride: width as usize,
                },
                Plane {
                    data: uv.into(),
                    stride: cw,
                },
            ],
        )
    }

    /// Tightly packed RGBA.
    pub fn rgba(width: u32, height: u32, data: Vec<u8>) -> Result<Self, FrameError> {
        Self::new(
            PixelFormat::Rgba,
            width,
            height,
            vec![Plane {
                data: data.into(),
                stride: width as usize * 4,
            }],
        )
    }

    /// A frame of one YUV colour (BT.709 limited range unless `color` says otherwise).
    pub fn solid_i420(width: u32, height: u32, yuv: [u8; 3]) -> Result<Self, FrameError> {
        let cw = width.div_ceil(2) as usize;
        let ch = height.div_ceil(2) as usize;
        Self::i420(
            width,
            height,
            vec![yuv[0]; width as usize * height as usize],
            vec![yuv[1]; cw * ch],
            vec![yuv[2]; cw * ch],
        )
    }

    /// Sets the colour space tag (builder style).
    pub fn with_color(mut self, color: ColorSpace) -> Self {
        self.color = color;
        self.id = next_id();
        self
    }

    /// Sets the rotation that displays the frame upright (builder style).
    pub fn with_rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self.id = next_id();
        self
    }

    /// The frame turned upright: a tightly packed copy rotated by [`VideoFrame::rotation`]
    /// (width and height, and the sample aspect ratio, swapped for 90° and 270°), with
    /// rotation `R0`. `None` when the frame is upright already.
    ///
    /// ```
    /// use cloudmixer::model::frame::{Rotation, VideoFrame};
    /// // 2x1 RGBA: red, green; turned 90° clockwise: red on top
    /// let f = VideoFrame::rgba(2, 1, vec![255, 0, 0, 255, 0, 255, 0, 255]).unwrap()
    ///     .with_rotation(Rotation::R90);
    /// let up = f.upright().unwrap();
    /// assert_eq!((up.width(), up.height()), (1, 2));
    /// assert_eq!(&up.planes()[0].data[..4], &[255, 0, 0, 255]);
    /// ```
    pub fn upright(&self) -> Option<VideoFrame> {
        let rot = self.rotation;
        if rot == Rotation::R0 {
            return None;
        }
        let (w, h) = (self.width, self.height);
        let planes = self
            .planes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (row, rows) = self.format.plane_size(i, w, h);
                let e = match (self.format, i) {
                    (PixelFormat::Rgba, _) => 4,
                    (PixelFormat::Nv12, 1) => 2,
                    _ => 1,
                };
                let (pw, ph) = (row / e, rows);
                let data = match e {
                    4 => rotate_plane::<4>(&p.data, p.stride, pw, ph, rot),
                    2 => rotate_plane::<2>(&p.data, p.stride, pw, ph, rot),
                    _ => rotate_plane::<1>(&p.data, p.stride, pw, ph, rot),
                };
                let stride = if rot.swaps_axes() { ph * e } else { row };
                Plane {
                    data: data.into(),
                    stride,
                }
            })
            .collect();
        let (ow, oh) = if rot.swaps_axes() { (h, w) } else { (w, h) };
        let mut f = VideoFrame::new(self.format, ow, oh, planes).ok()?;
        f.color = self.color;
        f.pts = self.pts;
        f.sar = if rot.swaps_axes() {
            (self.sar.1, self.sar.0)
        } else {
            self.sar
        };
        Some(f)
    }

    /// Sets the presentation time (builder style).
    pub fn with_pts(mut self, pts: Duration) -> Self {
        self.pts = pts;
        self
    }

    /// Process-unique id of this picture's content (clones share it); compositors use it to
    /// skip sources that did not change since the last frame.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// The planes, in format order.
    pub fn planes(&self) -> &[Plane] {
        &self.planes
    }
    /// Tight copy of plane `i` (no row padding), e.g. for GPU upload or tests.
    pub fn packed_plane(&self, i: usize) -> Vec<u8> {
        let (row, rows) = self.format.plane_size(i, self.width, self.height);
        let p = &self.planes[i];
        let mut out = Vec::with_capacity(row * rows);
        for r in 0..rows {
            out.extend_from_slice(p.row(r, row));
        }
        out
    }
}

/// What a compositor's per-source state (tap tables, textures) depends on: everything but the
/// pixels. Compositors rebuild that state only when this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameKey {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Pixel format.
    pub format: PixelFormat,
    /// Sample aspect ratio.
    pub sar: (u32, u32),
    /// Colour space.
    pub color: ColorSpace,
}

impl VideoFrame {
    /// The frame's [`FrameKey`].
    pub fn key(&self) -> FrameKey {
        FrameKey {
            width: self.width,
            height: self.height,
            format: self.format,
            sar: self.sar,
            color: self.color,
        }
    }
}

/// A shared, immutable frame as held by source slots and compositors.
pub type SharedFrame = Arc<VideoFrame>;

/// An output picture in I420, BT.709 limited range, tightly packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Image {
    /// Width (even).
    pub width: u32,
    /// Height (even).
    pub height: u32,
    /// Y plane, `width * height` bytes.
    pub y: Vec<u8>,
    /// U plane, `width/2 * height/2` bytes.
    pub u: Vec<u8>,
    /// V plane, same size as U.
    pub v: Vec<u8>,
}

impl I420Image {
    /// A black (Y=16, U=V=128) image.
    pub fn new(width: u32, height: u32) -> Self {
        let n = width as usize * height as usize;
        let c = (width as usize / 2) * (height as usize / 2);
        I420Image {
            width,
            height,
            y: vec![16; n],
            u: vec![128; c],
            v: vec![128; c],
        }
    }

    /// (Y, U, V) at luma pixel (x, y); chroma from the 2x2 block that holds it.
    pub fn yuv_at(&self, x: u32, y: u32) -> [u8; 3] {
        let cw = self.width as usize / 2;
        let ci = (y as usize / 2) * cw + x as usize / 2;
        [
            self.y[y as usize * self.width as usize + x as usize],
            self.u[ci],
            self.v[ci],
        ]
    }

    /// Converts to RGB8 (BT.709 limited range → full-range RGB) for PNG output.
    pub fn to_rgb(&self) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = vec![0u8; w * h * 3];
        for yy in 0..h {
            for xx in 0..w {
                let p = self.yuv_at(xx as u32, yy as u32);
                let rgb = super::color::yuv709_limited_to_rgb(p);
                out[(yy * w + xx) * 3..(yy * w + xx) * 3 + 3].copy_from_slice(&rgb);
            }
        }
        out
    }

    /// Interleaves U and V into an NV12 UV plane.
    pub fn uv_interleaved(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.u.len() * 2);
        for (u, v) in self.u.iter().zip(&self.v) {
            out.push(*u);
            out.push(*v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_stride_is_an_error_not_a_wrap() {
        // stride·(rows−1) overflows usize: must not wrap to a small size that passes
        let e = VideoFrame::new(
            PixelFormat::Rgba,
            2,
            3,
            vec![Plane {
                data: vec![0; 64].into(),
                stride: 1usize << 63,
            }],
        )
        .unwrap_err();
        assert!(matches!(e, FrameError::ShortBuffer { .. }), "{e}");
    }

    #[test]
    fn short_buffers_are_errors() {
        assert_eq!(
            VideoFrame::i420(4, 4, vec![0; 15], vec![0; 4], vec![0; 4]).unwrap_err(),
            FrameError::ShortBuffer {
                plane: 0,
                needed: 16,
                got: 15
            }
        );
        assert!(matches!(
            VideoFrame::i420(5, 5, vec![0; 25], vec![0; 8], vec![0; 9]),
            Err(FrameError::ShortBuffer { plane: 1, .. })
        ));
        assert!(matches!(
            VideoFrame::nv12(4, 4, vec![0; 16], vec![0; 7]),
            Err(FrameError::ShortBuffer { plane: 1, .. })
        ));
        assert!(VideoFrame::rgba(2, 2, vec![0; 15]).is_err());
        assert!(matches!(
            VideoFrame::rgba(0, 2, vec![]),
            Err(FrameError::BadSize { .. })
        ));
    }

    #[test]
    fn strides_are_checked_and_padding_is_allowed() {
        let p = |len, stride| Plane {
            data: vec![0; len].into(),
            stride,
        };
        assert!(matches!(
            VideoFrame::new(PixelFormat::Rgba, 4, 2, vec![p(32, 15)]),
            Err(FrameError::StrideTooSmall { .. })
        ));
        // padded rows, last row need not be padded
        let f = VideoFrame::new(PixelFormat::Rgba, 4, 2, vec![p(64 + 16, 64)]).unwrap();
        assert_eq!(f.packed_plane(0).len(), 32);
        assert!(matches!(
            VideoFrame::new(PixelFormat::I420, 4, 2, vec![p(8, 4)]),
            Err(FrameError::PlaneCount { .. })
        ));
    }

    #[test]
    fn odd_sizes_round_chroma_up() {
        assert_eq!(PixelFormat::I420.plane_size(1, 5, 3), (3, 2));
        assert_eq!(PixelFormat::Nv12.plane_size(1, 5, 3), (6, 2));
        let f = VideoFrame::solid_i420(1, 1, [16, 128, 128]).unwrap();
        assert_eq!(f.planes()[1].data.len(), 1);
    }

    /// A 5x3 frame whose every sample is distinct, in `fmt`, with padded strides.
    fn numbered(fmt: PixelFormat) -> VideoFrame {
        let (w, h) = (5u32, 3u32);
        let planes = (0..fmt.plane_count())
            .map(|i| {
                let (row, rows) = fmt.plane_size(i, w, h);
                let stride = row + 3;
                let data: Vec<u8> = (0..stride * rows)
                    .map(|k| ((k % stride) + 16 * (k / stride) + 50 * i) as u8)
                    .collect();
                Plane {
                    data: data.into(),
                    stride,
                }
            })
            .collect();
        VideoFrame::new(fmt, w, h, planes).unwrap()
    }

    fn sample(f: &VideoFrame, plane: usize, e: usize, x: usize, y: usize) -> Vec<u8> {
        let p = &f.planes()[plane];
        p.data[y * p.stride + x * e..y * p.stride + x * e + e].to_vec()
    }

    #[test]
    fn rotation_turns_every_plane_clockwise() {
        for fmt in [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Rgba] {
            let f = numbered(fmt).with_rotation(Rotation::R90);
            let up = f.upright().unwrap();
            assert_eq!((up.width(), up.height()), (3, 5), "{fmt:?}");
            assert_eq!(up.rotation, Rotation::R0);
            // luma (or RGBA): the source's bottom-left pixel lands top-left, top-left top-right
            let e0 = if fmt == PixelFormat::Rgba { 4 } else { 1 };
            assert_eq!(sample(&up, 0, e0, 0, 0), sample(&f, 0, e0, 0, 2), "{fmt:?}");
            assert_eq!(sample(&up, 0, e0, 2, 0), sample(&f, 0, e0, 0, 0), "{fmt:?}");
            assert_eq!(sample(&up, 0, e0, 2, 4), sample(&f, 0, e0, 4, 0), "{fmt:?}");
            if fmt != PixelFormat::Rgba {
                // chroma 3x2 → 2x3: source chroma (0,1) lands at (0,0); UV pairs stay pairs
                let e = if fmt == PixelFormat::Nv12 { 2 } else { 1 };
                assert_eq!(sample(&up, 1, e, 0, 0), sample(&f, 1, e, 0, 1), "{fmt:?}");
                assert_eq!(up.planes()[1].stride, 2 * e);
            }
            // four quarter turns (and 90 then 270) give the frame back
            let mut g = numbered(fmt);
            for _ in 0..4 {
                g = g.with_rotation(Rotation::R90).upright().unwrap();
            }
            let h = numbered(fmt)
                .with_rotation(Rotation::R180)
                .upright()
                .unwrap()
                .with_rotation(Rotation::R180)
                .upright()
                .unwrap();
            for i in 0..fmt.plane_count() {
                assert_eq!(g.packed_plane(i), numbered(fmt).packed_plane(i), "{fmt:?}");
                assert_eq!(h.packed_plane(i), numbered(fmt).packed_plane(i), "{fmt:?}");
            }
        }
    }

    #[test]
    fn rotation_swaps_the_aspect_ratio_and_keeps_upright_frames() {
        let mut f = numbered(PixelFormat::I420).with_rotation(Rotation::R270);
        f.sar = (4, 3);
        let up = f.upright().unwrap();
        assert_eq!(up.sar, (3, 4));
        assert_eq!(sample(&up, 0, 1, 0, 0), sample(&f, 0, 1, 4, 0));
        assert!(numbered(PixelFormat::I420).upright().is_none());
        assert_eq!(Rotation::from_degrees(450), Some(Rotation::R90));
        assert_eq!(Rotation::from_degrees(-180), Some(Rotation::R180));
    }
}
