//! FFmpeg at the edges: decoding input files, encoding video (and audio).

pub mod audio_dec;
pub mod audio_enc;
pub mod decode;
pub mod video_enc;
