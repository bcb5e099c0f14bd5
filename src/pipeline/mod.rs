//! The recording pipeline of one mixer: source slots, the paced compose stage, the encode
//! stages and the writer, behind the [`Mixer`] front.

mod error;
mod mixer;
pub mod sources;

pub use error::MixerError;
pub use mixer::*;
