//! Pictures (logos, backgrounds, "camera off" cards) read from image files or bytes, with
//! limits: a picture is at most [`MAX_PICTURE_PIXELS`] pixels (the largest canvas, 4096 ×
//! 4096) and its file at most [`MAX_PICTURE_BYTES`]. The size is read from the image's
//! header (PNG IHDR, JPEG SOF, GIF, BMP, WebP) before anything is decoded, so a small file
//! that would decode to gigabytes (a 16000 × 16000 PNG of one colour is under 1 MB) is
//! refused without allocating its pixels.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::media::decode::DecodeError;
use crate::model::frame::VideoFrame;

/// Most pixels of a picture: 4096 × 4096 (16.7 Mpx), the largest canvas.
pub const MAX_PICTURE_PIXELS: u64 = 4096 * 4096;

/// Largest picture file: 32 MiB.
pub const MAX_PICTURE_BYTES: u64 = 32 << 20;

/// Image formats whose size is read from the header.
const FORMATS: &str = "PNG, JPEG, GIF, BMP or WebP";

/// Why a picture was refused. Every variant names the picture's resource id and its source
/// (the file, or `<picture bytes>`).
#[derive(Debug, Error)]
pub enum PictureError {
    /// The file does not exist or cannot be read.
    #[error("picture {id:?} ({}): cannot read the file: {reason}", path.display())]
    Unreadable {
        /// Resource id.
        id: String,
        /// File.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file is larger than [`MAX_PICTURE_BYTES`].
    #[error(
        "picture {id:?} ({}): the file is {bytes} bytes, more than the limit of {limit} bytes ({} MiB)",
        path.display(),
        limit >> 20
    )]
    FileTooLarge {
        /// Resource id.
        id: String,
        /// File.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// [`MAX_PICTURE_BYTES`].
        limit: u64,
    },
    /// The image is larger than [`MAX_PICTURE_PIXELS`].
    #[error(
        "picture {id:?} ({}): {width}x{height} is {} pixels, more than the limit of {limit} pixels (4096x4096)",
        path.display(),
        u64::from(*width) * u64::from(*height)
    )]
    TooLarge {
        /// Resource id.
        id: String,
        /// File.
        path: PathBuf,
        /// Width from the image header.
        width: u32,
        /// Height from the image header.
        height: u32,
        /// [`MAX_PICTURE_PIXELS`].
        limit: u64,
    },
    /// Not an image of a known format, or a header without a size.
    #[error("picture {id:?} ({}): not a {FORMATS} image ({reason})", path.display())]
    NotImage {
        /// Resource id.
        id: String,
        /// File.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The header is fine but the image does not decode.
    #[error("picture {id:?}: {source}")]
    Decode {
        /// Resource id.
        id: String,
        /// The decoder's error (names the file).
        #[source]
        source: DecodeError,
    },
}

/// An image's `(width, height)` from its header (PNG, JPEG, GIF, BMP, WebP); `Err` says why
/// none could be read. Reads only the header bytes given.
pub fn header_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    let be16 = |i: usize| {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let le16 = |i: usize| {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let be32 = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let le32 = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let le24 = |i: usize| {
        bytes
            .get(i..i + 3)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
    };
    let short = || "header truncated".to_string();
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        if bytes.get(12..16) != Some(b"IHDR") {
            return Err("PNG without an IHDR chunk first".into());
        }
        return Ok((be32(16).ok_or_else(short)?, be32(20).ok_or_else(short)?));
    }
    if bytes.starts_with(&[0xff, 0xd8]) {
        // markers up to the first start of frame
        let mut i = 2;
        loop {
            // fill bytes before a marker
            while bytes.get(i) == Some(&0xff) && bytes.get(i + 1) == Some(&0xff) {
                i += 1;
            }
            if bytes.get(i) != Some(&0xff) {
                return Err(if i >= bytes.len() {
                    short()
                } else {
                    "JPEG marker expected".into()
                });
            }
            let m = *bytes.get(i + 1).ok_or_else(short)?;
            match m {
                // standalone markers
                0x01 | 0xd0..=0xd7 => {
                    i += 2;
                    continue;
                }
                0xda | 0xd9 => return Err("JPEG without a frame header".into()),
                // SOF0..SOF15 but DHT, JPG and DAC
                0xc0..=0xcf if !matches!(m, 0xc4 | 0xc8 | 0xcc) => {
                    let h = be16(i + 5).ok_or_else(short)?;
                    let w = be16(i + 7).ok_or_else(short)?;
                    return Ok((u32::from(w), u32::from(h)));
                }
                _ => {
                    let len = be16(i + 2).ok_or_else(short)?;
                    if len < 2 {
                        return Err("JPEG segment with a bad length".into());
                    }
                    i += 2 + usize::from(len);
                }
            }
        }
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        let w = le16(6).ok_or_else(short)?;
        let h = le16(8).ok_or_else(short)?;
        return Ok((u32::from(w), u32::from(h)));
    }
    if bytes.starts_with(b"BM") {
        let dib = le32(14).ok_or_else(short)?;
        if dib == 12 {
            let w = le16(18).ok_or_else(short)?;
            let h = le16(20).ok_or_else(short)?;
            return Ok((u32::from(w), u32::from(h)));
        }
        let w = le32(18).ok_or_else(short)? as i32;
        let h = le32(22).ok_or_else(short)? as i32;
        return Ok((w.unsigned_abs(), h.unsigned_abs()));
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return match bytes.get(12..16) {
            Some(b"VP8 ") => {
                let w = le16(26).ok_or_else(short)? & 0x3fff;
                let h = le16(28).ok_or_else(short)? & 0x3fff;
                Ok((u32::from(w), u32::from(h)))
            }
            Some(b"VP8L") => {
                let b = le32(21).ok_or_else(short)?;
                Ok((1 + (b & 0x3fff), 1 + ((b >> 14) & 0x3fff)))
            }
            Some(b"VP8X") => Ok((
                1 + le24(24).ok_or_else(short)?,
                1 + le24(27).ok_or_else(short)?,
            )),
            _ => Err("WebP without a VP8/VP8L/VP8X chunk".into()),
        };
    }
    Err("unknown header".into())
}

/// Header bytes read to find an image's size (a JPEG's EXIF/ICC segments may come first).
const HEADER_READ: u64 = 1 << 20;

/// Checks a picture file without decoding it: it exists, is at most [`MAX_PICTURE_BYTES`],
/// is a PNG, JPEG, GIF, BMP or WebP image whose header gives a size of at most
/// [`MAX_PICTURE_PIXELS`]. Returns `(width, height)`.
pub fn check_picture_file(id: &str, path: &Path) -> Result<(u32, u32), PictureError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| PictureError::Unreadable {
        id: id.to_string(),
        path: path.to_path_buf(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        },
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(PictureError::Unreadable {
            id: id.to_string(),
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > MAX_PICTURE_BYTES {
        return Err(PictureError::FileTooLarge {
            id: id.to_string(),
            path: path.to_path_buf(),
            bytes: meta.len(),
            limit: MAX_PICTURE_BYTES,
        });
    }
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(HEADER_READ).read_to_end(&mut head))
        .map_err(unreadable)?;
    check_header(id, path, &head)
}

/// Checks picture bytes held in memory as [`check_picture_file`] checks a file.
pub fn check_picture_bytes(id: &str, bytes: &[u8]) -> Result<(u32, u32), PictureError> {
    let path = Path::new("<picture bytes>");
    if bytes.len() as u64 > MAX_PICTURE_BYTES {
        return Err(PictureError::FileTooLarge {
            id: id.to_string(),
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
            limit: MAX_PICTURE_BYTES,
        });
    }
    check_header(id, path, bytes)
}

fn check_header(id: &str, path: &Path, head: &[u8]) -> Result<(u32, u32), PictureError> {
    let (width, height) = header_size(head).map_err(|reason| PictureError::NotImage {
        id: id.to_string(),
        path: path.to_path_buf(),
        reason,
    })?;
    if width == 0 || height == 0 {
        return Err(PictureError::NotImage {
            id: id.to_string(),
            path: path.to_path_buf(),
            reason: format!("the header gives an empty size, {width}x{height}"),
        });
    }
    if u64::from(width) * u64::from(height) > MAX_PICTURE_PIXELS {
        return Err(PictureError::TooLarge {
            id: id.to_string(),
            path: path.to_path_buf(),
            width,
            height,
            limit: MAX_PICTURE_PIXELS,
        });
    }
    Ok((width, height))
}

/// Checks ([`check_picture_file`]) and decodes a picture file.
pub fn load_picture(id: &str, path: &Path) -> Result<VideoFrame, PictureError> {
    check_picture_file(id, path)?;
    crate::media::decode::frame_at(path, Duration::ZERO).map_err(|source| PictureError::Decode {
        id: id.to_string(),
        source,
    })
}

/// Checks ([`check_picture_bytes`]) and decodes a PNG or JPEG image held in memory.
pub fn load_picture_bytes(id: &str, bytes: &[u8]) -> Result<VideoFrame, PictureError> {
    check_picture_bytes(id, bytes)?;
    crate::media::decode::decode_image(bytes).map_err(|source| PictureError::Decode {
        id: id.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(png::ColorType::Grayscale);
        let mut wr = e.write_header().unwrap();
        wr.write_image_data(&vec![7u8; (w * h) as usize]).unwrap();
        wr.finish().unwrap();
        out
    }

    #[test]
    fn sizes_from_headers() {
        assert_eq!(header_size(&png(33, 17)), Ok((33, 17)));
        let root = env!("CARGO_MANIFEST_DIR");
        let jpg = std::fs::read(format!("{root}/fixtures/clips/still_160x120.jpg")).unwrap();
        assert_eq!(header_size(&jpg), Ok((160, 120)));
        let gif = b"GIF89a\x40\x01\xf0\x00rest";
        assert_eq!(header_size(gif), Ok((320, 240)));
        let mut bmp = b"BM".to_vec();
        bmp.resize(14, 0);
        bmp.extend(40u32.to_le_bytes());
        bmp.extend(640i32.to_le_bytes());
        bmp.extend((-480i32).to_le_bytes());
        assert_eq!(header_size(&bmp), Ok((640, 480)));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\0\0\0\0".to_vec();
        webp.extend([0x7f, 0x07, 0x00, 0x37, 0x04, 0x00]);
        assert_eq!(header_size(&webp), Ok((1920, 1080)));
        assert!(header_size(b"not an image").is_err());
        assert!(header_size(&png(4, 4)[..18]).is_err());
        assert!(header_size(&jpg[..40]).is_err());
    }

    #[test]
    fn limits_name_the_picture_and_nothing_is_decoded() {
        let ok = png(64, 32);
        assert_eq!(check_picture_bytes("logo", &ok).unwrap(), (64, 32));
        assert_eq!(load_picture_bytes("logo", &ok).unwrap().width(), 64);
        // a header claiming 16000 x 16000 (the data is never read)
        let mut big = ok.clone();
        big[16..20].copy_from_slice(&16000u32.to_be_bytes());
        big[20..24].copy_from_slice(&16000u32.to_be_bytes());
        let e = load_picture_bytes("huge", &big).unwrap_err();
        assert!(
            matches!(e, PictureError::TooLarge { width: 16000, .. }),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "picture \"huge\" (<picture bytes>): 16000x16000 is 256000000 pixels, more than \
             the limit of 16777216 pixels (4096x4096)"
        );
        let e = check_picture_bytes("x", b"hello").unwrap_err();
        assert!(matches!(e, PictureError::NotImage { .. }), "{e}");
        let e = check_picture_file("card", Path::new("/no/such.png")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "picture \"card\" (/no/such.png): cannot read the file: no such file"
        );
    }
}
