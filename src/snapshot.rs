//! PNG output of composed frames (`cloudmixer snapshot`).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::model::frame::I420Image;

/// Writes 8-bit RGB pixels as a PNG.
pub fn write_rgb_png(path: &Path, w: u32, h: u32, rgb: &[u8]) -> std::io::Result<()> {
    let file = File::create(path)?;
    let mut enc = png::Encoder::new(BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(std::io::Error::other)?;
    wr.write_image_data(rgb).map_err(std::io::Error::other)?;
    wr.finish().map_err(std::io::Error::other)
}

/// Writes an output picture as an RGB PNG.
pub fn write_png(path: &Path, img: &I420Image) -> std::io::Result<()> {
    write_rgb_png(path, img.width, img.height, &img.to_rgb())
}
