//! Composed pictures, neutral to the compositors and the codecs: the two output layouts
//! ([`OutputFormat`]: I420 or NV12), a picture of either held in memory ([`OutputFrame`],
//! [`Nv12Image`]) and the planes of any buffer a picture is written into ([`OutPlanes`]: an
//! encoder's own frame, a GPU readback, a picture in memory). Every compositor writes through
//! these and the encoder hands them out, so neither has to know the other.

use thiserror::Error;

use super::frame::I420Image;

/// The planes a picture is written into do not fit it (sizes, strides, plane count).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct PlaneError(pub String);

/// The pixel layout a compositor writes (the GPU compositor's readback, an encoder's input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Planar Y, U, V (two R8 chroma targets).
    #[default]
    I420,
    /// Y plus interleaved UV (one Rg8 chroma target), what hardware encoders take.
    Nv12,
}

/// An output picture in NV12, BT.709 limited range, tightly packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nv12Image {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Y plane, `width * height` bytes.
    pub y: Vec<u8>,
    /// Interleaved U, V: `width/2 * 2` bytes per row, `height/2` rows.
    pub uv: Vec<u8>,
}

impl Nv12Image {
    /// Splits UV into planar I420.
    pub fn to_i420(&self) -> I420Image {
        let mut img = I420Image {
            width: self.width,
            height: self.height,
            y: self.y.clone(),
            u: Vec::with_capacity(self.uv.len() / 2),
            v: Vec::with_capacity(self.uv.len() / 2),
        };
        for p in self.uv.chunks_exact(2) {
            img.u.push(p[0]);
            img.v.push(p[1]);
        }
        img
    }
}

/// One composed picture held in memory (e.g. as read back from the GPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFrame {
    /// [`OutputFormat::I420`].
    I420(I420Image),
    /// [`OutputFormat::Nv12`].
    Nv12(Nv12Image),
}

impl OutputFrame {
    /// An empty frame of the given format (buffers grow on first use).
    pub fn empty(format: OutputFormat) -> Self {
        match format {
            OutputFormat::I420 => OutputFrame::I420(I420Image {
                width: 0,
                height: 0,
                y: Vec::new(),
                u: Vec::new(),
                v: Vec::new(),
            }),
            OutputFormat::Nv12 => OutputFrame::Nv12(Nv12Image {
                width: 0,
                height: 0,
                y: Vec::new(),
                uv: Vec::new(),
            }),
        }
    }

    /// The picture as I420 (a copy for NV12).
    pub fn to_i420(&self) -> I420Image {
        match self {
            OutputFrame::I420(i) => i.clone(),
            OutputFrame::Nv12(n) => n.to_i420(),
        }
    }

    /// A `width`x`height` frame of the given format (buffers zeroed).
    pub fn sized(format: OutputFormat, width: u32, height: u32) -> Self {
        let mut f = OutputFrame::empty(format);
        f.resize(width, height);
        f
    }

    /// Sets the size, growing or shrinking the buffers (their capacity is kept).
    pub fn resize(&mut self, width: u32, height: u32) {
        let (y, c) = (
            width as usize * height as usize,
            (width / 2 * (height / 2)) as usize,
        );
        match self {
            OutputFrame::I420(i) => {
                (i.width, i.height) = (width, height);
                i.y.resize(y, 0);
                i.u.resize(c, 0);
                i.v.resize(c, 0);
            }
            OutputFrame::Nv12(n) => {
                (n.width, n.height) = (width, height);
                n.y.resize(y, 0);
                n.uv.resize(2 * c, 0);
            }
        }
    }

    /// Its planes with their strides (I420: Y, U, V; NV12: Y, UV).
    pub fn planes(&self) -> Vec<(&[u8], usize)> {
        match self {
            OutputFrame::I420(i) => {
                let w = i.width as usize;
                vec![(&i.y[..], w), (&i.u[..], w / 2), (&i.v[..], w / 2)]
            }
            OutputFrame::Nv12(n) => {
                vec![(&n.y[..], n.width as usize), (&n.uv[..], n.width as usize)]
            }
        }
    }

    /// Its planes to write into.
    pub fn planes_mut(&mut self) -> OutPlanes<'_> {
        match self {
            OutputFrame::I420(i) => OutPlanes::i420(i),
            OutputFrame::Nv12(n) => OutPlanes::nv12(n),
        }
    }

    /// Width and height.
    pub fn size(&self) -> (u32, u32) {
        match self {
            OutputFrame::I420(i) => (i.width, i.height),
            OutputFrame::Nv12(n) => (n.width, n.height),
        }
    }
}

/// Where a composed picture goes: the planes of an encoder frame (or any buffer), each with its
/// stride in bytes. I420: Y, U, V; NV12: Y, interleaved UV (the third plane empty).
pub struct OutPlanes<'a> {
    /// Picture width (chroma planes are `width / 2` wide, rounded down, as in [`I420Image`]).
    pub width: u32,
    /// Picture height (chroma planes have `height / 2` rows, rounded down).
    pub height: u32,
    /// I420 or NV12.
    pub format: OutputFormat,
    /// The planes and their strides.
    pub planes: [(&'a mut [u8], usize); 3],
}

impl<'a> OutPlanes<'a> {
    /// The planes of an [`I420Image`] (resized to nothing: the image must have its size).
    pub fn i420(img: &'a mut I420Image) -> Self {
        let (w, h) = (img.width, img.height);
        OutPlanes {
            width: w,
            height: h,
            format: OutputFormat::I420,
            planes: [
                (&mut img.y[..], w as usize),
                (&mut img.u[..], w as usize / 2),
                (&mut img.v[..], w as usize / 2),
            ],
        }
    }

    /// The planes of an [`Nv12Image`] (its buffers must have its size).
    pub fn nv12(img: &'a mut Nv12Image) -> Self {
        let w = img.width as usize;
        OutPlanes {
            width: img.width,
            height: img.height,
            format: OutputFormat::Nv12,
            planes: [(&mut img.y[..], w), (&mut img.uv[..], w), (&mut [], 0)],
        }
    }

    /// Bytes per row and rows of plane `i`.
    pub fn plane_size(&self, i: usize) -> (usize, usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        match (self.format, i) {
            (_, 0) => (w, h),
            (OutputFormat::Nv12, 1) => (w / 2 * 2, h / 2),
            (OutputFormat::Nv12, _) => (0, 0),
            (OutputFormat::I420, _) => (w / 2, h / 2),
        }
    }

    /// Checks that every plane holds its rows at its stride.
    pub fn check(&self) -> Result<(), PlaneError> {
        if self.width == 0 || self.height == 0 {
            return Err(PlaneError(format!(
                "{}x{} picture (non-zero sizes expected)",
                self.width, self.height
            )));
        }
        for (i, (data, stride)) in self.planes.iter().enumerate() {
            let (row, rows) = self.plane_size(i);
            if rows == 0 {
                continue;
            }
            if *stride < row || data.len() < (rows - 1) * stride + row {
                return Err(PlaneError(format!(
                    "plane {i}: {} bytes at stride {stride} cannot hold {rows} rows of {row}",
                    data.len()
                )));
            }
        }
        Ok(())
    }

    /// Copies each of `src`'s planes, given as (bytes, stride), into the plane of the same
    /// index, row by row: the one plane copy of every compositor output (GPU readback rows
    /// padded to 256 bytes, pictures kept in memory, encoder frames with their own strides).
    pub fn copy_planes(&mut self, src: &[(&[u8], usize)]) -> Result<(), PlaneError> {
        self.check()?;
        for (i, &(data, stride)) in src.iter().enumerate() {
            let (row, rows) = self.plane_size(i);
            if rows == 0 {
                return Err(PlaneError(format!(
                    "{} source planes for a {:?} picture",
                    src.len(),
                    self.format
                )));
            }
            if stride < row || data.len() < (rows - 1) * stride + row {
                return Err(PlaneError(format!(
                    "source plane {i}: {} bytes at stride {stride} cannot hold {rows} rows of {row}",
                    data.len()
                )));
            }
            let (dst, dstride) = &mut self.planes[i];
            for r in 0..rows {
                dst[r * *dstride..r * *dstride + row]
                    .copy_from_slice(&data[r * stride..r * stride + row]);
            }
        }
        Ok(())
    }

    /// Copies (I420) or interleaves (NV12) a picture of the same size into the planes.
    pub fn write_i420(&mut self, img: &I420Image) -> Result<(), PlaneError> {
        if (img.width, img.height) != (self.width, self.height) {
            return Err(PlaneError(format!(
                "{}x{} picture into {}x{} planes",
                img.width, img.height, self.width, self.height
            )));
        }
        let (w, cw) = (self.width as usize, self.width as usize / 2);
        match self.format {
            OutputFormat::I420 => self.copy_planes(&[(&img.y, w), (&img.u, cw), (&img.v, cw)]),
            OutputFormat::Nv12 => {
                self.copy_planes(&[(&img.y, w)])?;
                let (dst, stride) = &mut self.planes[1];
                for r in 0..self.height as usize / 2 {
                    let row = &mut dst[r * *stride..r * *stride + 2 * cw];
                    let (u, v) = (&img.u[r * cw..(r + 1) * cw], &img.v[r * cw..(r + 1) * cw]);
                    for (x, p) in row.chunks_exact_mut(2).enumerate() {
                        p[0] = u[x];
                        p[1] = v[x];
                    }
                }
                Ok(())
            }
        }
    }
}
