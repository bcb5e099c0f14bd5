//! The mixer's error type: every failure at the mixer API, mapped to the vendor's codes.

use thiserror::Error;

use crate::compose::ComposeError;
use crate::media::video_enc::EncodeError;
use crate::model::config::ConfigError;
use crate::model::events::codes;
use crate::model::frame::FrameError;
use crate::output::MuxError;
use crate::pipeline::sources::TooManySources;

/// Any mixer failure, with its vendor error code ([`MixerError::code`]).
#[derive(Debug, Error)]
pub enum MixerError {
    /// A bad config or layout update (code 5).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The compositor failed (code 1; code 5 for a backend this build lacks,
    /// [`ComposeError::NotBuilt`]).
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The encoder failed (code 5 for a bad setting, else 1).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A target could not be opened or written (902 full disk, 905 file error, 5 bad path).
    #[error(transparent)]
    Mux(#[from] MuxError),
    /// An I/O error (905, or 902 for a full disk).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A bad frame (code 5).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Too many distinct sources (code 5).
    #[error(transparent)]
    TooManySources(#[from] TooManySources),
    /// A bad audio frame (code 5).
    #[error(transparent)]
    Audio(#[from] crate::model::audio::AudioFrameError),
    /// A bad user ID (code 5).
    #[error("{0}")]
    BadUser(String),
    /// Picture bytes that are not a decodable PNG or JPEG (code 5).
    #[error("{0}")]
    Picture(String),
    /// The audio encoder failed to open or encode (code 5 for a bad setting, else 1).
    #[error(transparent)]
    AudioEncode(#[from] crate::media::audio_enc::AudioEncodeError),
    /// A queue is full: the mixer is behind and the input was dropped (code 1).
    #[error("{0}")]
    Backlog(&'static str),
    /// Offline control on a real-time mixer or the reverse (code 5).
    #[error("{0}")]
    WrongMode(&'static str),
    /// The recording has stopped (by `destroy`, maximum duration or a failure).
    #[error("the mixer is not running: {desc} (code {code})")]
    Stopped {
        /// Why: 0 after `destroy`, else the code that stopped it.
        code: i32,
        /// Description.
        desc: String,
    },
}

impl MixerError {
    /// The vendor error code ([`codes`]).
    pub fn code(&self) -> i32 {
        match self {
            MixerError::Config(_)
            | MixerError::Frame(_)
            | MixerError::TooManySources(_)
            | MixerError::WrongMode(_)
            | MixerError::Audio(_)
            | MixerError::BadUser(_)
            | MixerError::Picture(_) => codes::PARAM_ERR,
            MixerError::AudioEncode(
                crate::media::audio_enc::AudioEncodeError::NotFound(_)
                | crate::media::audio_enc::AudioEncodeError::Setting(_),
            ) => codes::PARAM_ERR,
            MixerError::AudioEncode(_) | MixerError::Backlog(_) => codes::INTERNAL,
            // a setting this build cannot honour, like an encoder that is not there
            MixerError::Compose(ComposeError::NotBuilt { .. }) => codes::PARAM_ERR,
            MixerError::Compose(_) => codes::INTERNAL,
            MixerError::Encode(EncodeError::NotFound(_) | EncodeError::Setting(_)) => {
                codes::PARAM_ERR
            }
            MixerError::Encode(_) => codes::INTERNAL,
            MixerError::Mux(m) => m.code(),
            MixerError::Io(e) => match e.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EFBIG) => codes::RECORD_NO_DISK,
                _ => codes::FILE_ERR,
            },
            MixerError::Stopped { code, .. } => *code,
        }
    }
}

pub(crate) const MAX_DURATION_DESC: &str = "maximum recording duration reached";

/// Why a stage ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum End {
    Stop,
    MaxDuration,
    Failed(i32, String),
}

impl End {
    /// The graver of two ends (a failure beats the maximum duration beats a stop).
    pub(crate) fn worst(self, other: End) -> End {
        match (&self, &other) {
            (End::Failed(..), _) => self,
            (_, End::Failed(..)) => other,
            (End::MaxDuration, _) => self,
            _ => other,
        }
    }
}
