//! FFmpeg at the edges: decoding input files, encoding video (and audio).

pub mod audio_dec;
pub mod audio_enc;
pub mod decode;
pub mod jpeg;
pub mod video_enc;

/// Temporary files for the media tests.
#[cfg(test)]
pub(crate) mod testfile {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file in the temp dir, removed on drop.
    pub struct TempFile(pub PathBuf);

    impl TempFile {
        pub fn new(tag: &str, ext: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            TempFile(std::env::temp_dir().join(format!(
                "cloudmixer-media-{}-{tag}-{n}.{ext}",
                std::process::id()
            )))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
