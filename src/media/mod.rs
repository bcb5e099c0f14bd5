//! FFmpeg at the edges: decoding input files, encoding video (and audio).

pub mod decode;
pub mod video_enc;
