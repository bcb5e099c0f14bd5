//! The recording pipeline of one mixer: source slots, the paced compose stage, the encode
//! stages and the writer, behind the [`Mixer`] front.

mod audio;
mod error;
mod inbox;
mod mixer;
pub mod per_stream;
pub mod picture;
pub mod services;
pub mod sources;
mod state;
mod uploads;
mod video;
mod writer;

pub use crate::model::events::MixerStats;
pub use error::MixerError;
pub use inbox::{user_of, AUDIO_QUEUE};
pub use mixer::*;
pub use per_stream::{measured_fps, start_stamp, StreamRecorder};
pub use services::{Services, MAX_UPLOADING_MIXERS};
pub use state::OWN_EVENTS_KEPT;
#[cfg(feature = "upload")]
pub(crate) use uploads::apply_upload_event;
pub use video::FRAME_POOL;
