//! JPEG pictures of composed frames (FFmpeg's `mjpeg` encoder), e.g. a console's snapshot.

use ffmpeg_next as ffmpeg;

use crate::model::frame::I420Image;

/// A picture that could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("jpeg: {0}")]
pub struct JpegError(String);

/// Encodes a limited-range BT.601/709 I420 picture as a baseline JPEG (full range, as JPEG
/// viewers expect) at `quality` 2 (best) … 31 (smallest), FFmpeg's `q:v` scale.
///
/// ```
/// use cloudmixer::media::jpeg::encode_jpeg;
/// use cloudmixer::model::frame::I420Image;
/// let jpg = encode_jpeg(&I420Image::new(64, 32), 5).unwrap();
/// assert_eq!(&jpg[..2], &[0xff, 0xd8]); // SOI
/// ```
pub fn encode_jpeg(img: &I420Image, quality: u8) -> Result<Vec<u8>, JpegError> {
    crate::media::decode::init_ffmpeg();
    let err = |e: ffmpeg::Error| JpegError(e.to_string());
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG)
        .ok_or_else(|| JpegError("FFmpeg has no mjpeg encoder".into()))?;
    let mut ctx = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(err)?;
    let (w, h) = (img.width, img.height);
    ctx.set_width(w);
    ctx.set_height(h);
    ctx.set_format(ffmpeg::format::Pixel::YUVJ420P);
    ctx.set_time_base((1, 25));
    ctx.set_flags(ffmpeg::codec::Flags::QSCALE);
    let q = quality.clamp(2, 31) as i32;
    ctx.set_global_quality(q * ffmpeg::ffi::FF_QP2LAMBDA);
    ctx.set_qmin(q);
    ctx.set_qmax(q);
    let mut enc = ctx.open_as(codec).map_err(err)?;
    let mut f = ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUVJ420P, w, h);
    // limited (16–235 / 16–240) to full range
    let full_y = |v: u8| ((v.saturating_sub(16) as u32 * 255 + 109) / 219).min(255) as u8;
    let full_c = |v: u8| {
        (((v as i32 - 128) * 255 + 112 * v.cmp(&128) as i32) / 224 + 128).clamp(0, 255) as u8
    };
    type Plane<'a> = (&'a [u8], u32, u32, &'a dyn Fn(u8) -> u8);
    let planes: [Plane; 3] = [
        (&img.y, w, h, &full_y),
        (&img.u, w / 2, h / 2, &full_c),
        (&img.v, w / 2, h / 2, &full_c),
    ];
    for (i, (src, pw, ph, map)) in planes.into_iter().enumerate() {
        let stride = f.stride(i);
        let dst = f.data_mut(i);
        for row in 0..ph as usize {
            let s = &src[row * pw as usize..(row + 1) * pw as usize];
            let d = &mut dst[row * stride..row * stride + pw as usize];
            for (d, s) in d.iter_mut().zip(s) {
                *d = map(*s);
            }
        }
    }
    f.set_pts(Some(0));
    // SAFETY: `f` owns a valid AVFrame; `quality` is a plain int field the encoder reads
    // with the QSCALE flag.
    unsafe { (*f.as_mut_ptr()).quality = q * ffmpeg::ffi::FF_QP2LAMBDA };
    enc.send_frame(&f).map_err(err)?;
    enc.send_eof().map_err(err)?;
    let mut out = Vec::new();
    let mut pkt = ffmpeg::Packet::empty();
    while enc.receive_packet(&mut pkt).is_ok() {
        out.extend_from_slice(pkt.data().unwrap_or_default());
    }
    if out.is_empty() {
        return Err(JpegError("the encoder gave no picture".into()));
    }
    Ok(out)
}

/// A decoded frame made small: turned upright, scaled (bilinear) so that it is `width` pixels
/// wide (its height by the frame's display aspect, even), as an I420 picture for
/// [`encode_jpeg`] (a recording's thumbnail). A frame narrower than `width` keeps its size.
///
/// ```
/// use cloudmixer::media::jpeg::shrink;
/// use cloudmixer::model::frame::VideoFrame;
/// let f = VideoFrame::solid_i420(1280, 720, [81, 90, 240]).unwrap();
/// let small = shrink(&f, 320).unwrap();
/// assert_eq!((small.width, small.height), (320, 180));
/// assert_eq!(small.yuv_at(100, 100), [81, 90, 240]);
/// ```
pub fn shrink(frame: &crate::model::frame::VideoFrame, width: u32) -> Result<I420Image, JpegError> {
    use crate::model::frame::PixelFormat;
    use ffmpeg::format::Pixel;
    crate::media::decode::init_ffmpeg();
    let up;
    let frame = match frame.upright() {
        Some(f) => {
            up = f;
            &up
        }
        None => frame,
    };
    let err = |e: ffmpeg::Error| JpegError(e.to_string());
    let (w, h) = (frame.width(), frame.height());
    if w < 2 || h < 2 {
        return Err(JpegError(format!("a {w}x{h} picture is too small")));
    }
    // display size: the sample aspect ratio widens or narrows the stored width
    let (sn, sd) = frame.sar;
    let disp_w = (w as u64 * sn.max(1) as u64 / sd.max(1) as u64).max(2);
    let ow = (width.min(disp_w as u32).max(2)) & !1;
    let oh = ((h as u64 * ow as u64 / disp_w).max(2) as u32) & !1;
    let fmt = frame.format();
    let pix = match fmt {
        PixelFormat::I420 => Pixel::YUV420P,
        PixelFormat::Nv12 => Pixel::NV12,
        PixelFormat::Rgba => Pixel::RGBA,
    };
    let mut src = ffmpeg::frame::Video::new(pix, w, h);
    for (i, p) in frame.planes().iter().enumerate() {
        let (row, rows) = fmt.plane_size(i, w, h);
        let stride = src.stride(i);
        let dst = src.data_mut(i);
        for r in 0..rows {
            dst[r * stride..r * stride + row].copy_from_slice(p.row(r, row));
        }
    }
    let mut sc = ffmpeg::software::scaling::Context::get(
        pix,
        w,
        h,
        Pixel::YUV420P,
        ow,
        oh,
        ffmpeg::software::scaling::Flags::BILINEAR,
    )
    .map_err(err)?;
    let mut dst = ffmpeg::frame::Video::empty();
    sc.run(&src, &mut dst).map_err(err)?;
    let mut img = I420Image::new(ow, oh);
    let planes: [(&mut Vec<u8>, usize, usize); 3] = [
        (&mut img.y, ow as usize, oh as usize),
        (&mut img.u, ow as usize / 2, oh as usize / 2),
        (&mut img.v, ow as usize / 2, oh as usize / 2),
    ];
    for (i, (out, pw, ph)) in planes.into_iter().enumerate() {
        let stride = dst.stride(i);
        let data = dst.data(i);
        for r in 0..ph {
            out[r * pw..(r + 1) * pw].copy_from_slice(&data[r * stride..r * stride + pw]);
        }
    }
    Ok(img)
}
