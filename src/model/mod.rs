//! The data model: frames, pictures, colour, layout, config, events and time. Pure Rust, no
//! FFmpeg, no GPU; every other module builds on it.

pub mod audio;
pub mod buffer;
pub mod color;
pub mod config;
pub mod events;
pub mod frame;
pub mod layout;
pub mod picture;
pub mod time;
