//! The recording pipeline of one mixer: source slots, the paced compose stage, the encode
//! stages and the writer, behind the [`Mixer`] front, on the [`Services`] it is given.
//!
//! The modules import one another in one order, each only from those before it (no circle;
//! `module_order` below checks the sources):
//!
//! 1. `picture` (pictures of layout items from files), `sources` (the source slots and the
//!    frame [`sources::Releaser`]): nothing of the pipeline;
//! 2. `error` ([`MixerError`], why a stage ended): `sources`;
//! 3. `inbox` (the audio stage's push side and messages): `error`, `sources`;
//! 4. `services` ([`Services`]): `sources`;
//! 5. `state` (what the stages of one mixer share): `error`, `inbox`, `services`, `sources`;
//! 6. `uploads` (after the files are final): `services`, `state`;
//! 7. `writer` (the muxers and live targets): `error`, `state`, `uploads`;
//! 8. `audio` (the audio stage): `error`, `inbox`, `state`, `writer`;
//! 9. `video` (the clock, compose and encode stages): `error`, `inbox`, `state`, `writer`;
//! 10. `mixer` ([`Mixer`], [`MixerSettings`]): any of the above;
//! 11. `per_stream` ([`StreamRecorder`], mode 1): `error`, `mixer`, `state`, `uploads`.

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

/// The pipeline's modules in import order, with their sources.
#[cfg(test)]
const MODULE_ORDER: &[(&str, &str)] = &[
    ("picture", include_str!("picture.rs")),
    ("sources", include_str!("sources.rs")),
    ("error", include_str!("error.rs")),
    ("inbox", include_str!("inbox.rs")),
    ("services", include_str!("services.rs")),
    ("state", include_str!("state.rs")),
    ("uploads", include_str!("uploads.rs")),
    ("writer", include_str!("writer.rs")),
    ("audio", include_str!("audio.rs")),
    ("video", include_str!("video.rs")),
    ("mixer", include_str!("mixer.rs")),
    ("per_stream", include_str!("per_stream.rs")),
];

#[cfg(test)]
mod module_order {
    use super::MODULE_ORDER;

    /// The code of a module: its unit tests and comment lines (docs, links) left out.
    fn code(src: &str) -> String {
        let end = ["#[cfg(test)]\nmod ", "#[cfg(all(test"]
            .iter()
            .filter_map(|m| src.find(m))
            .min()
            .unwrap_or(src.len());
        src[..end]
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What `code` names after `super::` or `crate::pipeline::`.
    fn named(code: &str) -> Vec<String> {
        let mut out = Vec::new();
        for prefix in ["super::", "crate::pipeline::"] {
            for (i, _) in code.match_indices(prefix) {
                let rest = &code[i + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        }
        out
    }

    /// Every module of the pipeline is listed (a new one must find its place), and each
    /// imports only modules listed before it: no circle, the order of the module docs.
    #[test]
    fn the_pipeline_modules_import_in_one_order() {
        let listed: Vec<&str> = MODULE_ORDER.iter().map(|(n, _)| *n).collect();
        for m in include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.trim_start_matches("pub ").strip_prefix("mod "))
            .filter_map(|m| m.strip_suffix(';'))
        {
            assert!(listed.contains(&m), "module {m} is not in MODULE_ORDER");
        }
        for (i, (name, src)) in MODULE_ORDER.iter().enumerate() {
            for n in named(&code(src)) {
                let Some(j) = listed.iter().position(|m| *m == n) else {
                    panic!(
                        "{name} names `{n}` through the pipeline's root, not by its module \
                         (import it from the module that defines it)"
                    );
                };
                assert!(j < i, "{name} imports {n}, which comes after it");
            }
        }
        // the check sees imports: this one does
        assert!(named(&code(MODULE_ORDER[5].1)).contains(&"inbox".into()));
    }
}
