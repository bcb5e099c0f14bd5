//! Composed pictures in memory: the two output layouts ([`OutputFormat`]: I420 or NV12) and a
//! picture of either ([`OutputFrame`]). Shared by every backend (the GPU compositor reads back
//! into them; the mixer writes the encoder's own frames through [`super::OutPlanes`]).

use crate::model::frame::I420Image;

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
    pub fn planes_mut(&mut self) -> crate::compose::OutPlanes<'_> {
        match self {
            OutputFrame::I420(i) => crate::compose::OutPlanes::i420(i),
            OutputFrame::Nv12(n) => crate::compose::OutPlanes::nv12(n),
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
