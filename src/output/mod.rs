//! Output: where encoded packets go — the storage root, and the muxers that write every target.
//!
//! - [`storage`]: the directory recordings are written under; paths confined to it.
//! - [`muxer`]: one encode written to every target of `svrPathName`, crash-safe.
//! - [`segment`]: files split into numbered segments.
//! - [`live`]: live targets (`rtmp://`, `rtsp://`), each on its own thread, reconnecting.

pub mod live;
pub mod muxer;
pub mod segment;
pub mod storage;
pub mod upload;

use std::path::Path;

use ffmpeg_next as ffmpeg;
use thiserror::Error;

use crate::model::events::codes;

pub use muxer::{
    header_needs, resolve_targets, Muxer, Packet, TargetProgress, TrackId, TrackKind, TrackSpec,
    FRAGMENT_DURATION,
};
pub use storage::Storage;

/// A failure to open or write a target.
#[derive(Debug, Error)]
pub enum MuxError {
    /// A path that escapes the storage root.
    #[error("{path}: {reason}")]
    Escape {
        /// The path as resolved so far.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A target that cannot be created or written (permissions, read-only, not a directory…).
    #[error("cannot write {path}: {reason}")]
    File {
        /// The file or URL.
        path: String,
        /// The OS or FFmpeg error.
        reason: String,
    },
    /// The disk is full or the file hit a size limit (ENOSPC, EFBIG).
    #[error("no space left writing {path}: {reason}")]
    NoDisk {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A target kind this build cannot write.
    #[error("{0}: not supported yet")]
    Unsupported(String),
}

impl MuxError {
    /// The vendor error code: 902 for a full disk, 905 for other file errors, 5 for paths.
    pub fn code(&self) -> i32 {
        match self {
            MuxError::Escape { .. } | MuxError::Unsupported(_) => codes::PARAM_ERR,
            MuxError::File { .. } => codes::FILE_ERR,
            MuxError::NoDisk { .. } => codes::RECORD_NO_DISK,
        }
    }

    pub(crate) fn io(path: &Path, e: &std::io::Error) -> Self {
        let path = path.display().to_string();
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EFBIG) | Some(libc::EDQUOT) => MuxError::NoDisk {
                path,
                reason: e.to_string(),
            },
            _ => MuxError::File {
                path,
                reason: e.to_string(),
            },
        }
    }

    pub(crate) fn ff(path: &str, e: ffmpeg::Error) -> Self {
        let path = path.to_string();
        match e {
            ffmpeg::Error::Other { errno }
                if errno == libc::ENOSPC || errno == libc::EFBIG || errno == libc::EDQUOT =>
            {
                MuxError::NoDisk {
                    path,
                    reason: e.to_string(),
                }
            }
            _ => MuxError::File {
                path,
                reason: e.to_string(),
            },
        }
    }
}
