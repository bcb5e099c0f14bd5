//! Writing one encode to every target of `svrPathName`, crash-safe.
//!
//! - `.mp4` (default) is **fragmented**: `movflags=frag_keyframe+empty_moov+default_base_moof`
//!   plus `frag_duration` = [`FRAGMENT_DURATION`] and `flush_packets=1`, so a fragment reaches
//!   the disk at least every 0.25 s and a `kill -9` or a full disk leaves a playable file that
//!   loses at most the open fragment. `.mkv`, `.flv` and `.ts` are chosen by extension.
//! - `rtmp://` targets are written with the FLV muxer, `rtsp://` with the RTSP muxer (untested
//!   against real servers).
//! - File paths are confined to the [`Storage`] root: `..` and absolute escapes are refused by
//!   [`crate::config::confine`], symlink escapes here (the parent directory is canonicalised and
//!   must lie under the canonical root; an existing symlink as the file itself is refused).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ffmpeg::{Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use thiserror::Error;

use crate::config::{Container, Target};
use crate::encode::VideoEncoder;
use crate::events::codes;

/// Longest fragment of a fragmented mp4 (DESIGN asks for ≤ 0.5 s; half that doubles the kill -9 margin).
pub const FRAGMENT_DURATION: Duration = Duration::from_millis(250);

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

    fn io(path: &Path, e: &std::io::Error) -> Self {
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

    fn ff(path: &str, e: ffmpeg::Error) -> Self {
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

/// The directory recordings are written under.
///
/// ```
/// use cloudmixer::mux::Storage;
/// let dir = std::env::temp_dir().join(format!("cm-doc-{}", std::process::id()));
/// let st = Storage::new(&dir);
/// let p = st.resolve(std::path::Path::new("2021-09-24/rec.mp4")).unwrap();
/// assert!(p.starts_with(std::fs::canonicalize(&dir).unwrap()));
/// assert!(p.parent().unwrap().is_dir());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Storage under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Storage { root: root.into() }
    }

    /// The root as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of a confined relative target path (see
    /// [`crate::config::confine`]); creates its parent directories and refuses symlink escapes.
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf, MuxError> {
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(MuxError::Escape {
                path: rel.display().to_string(),
                reason: "must be a relative path without '..'".into(),
            });
        }
        std::fs::create_dir_all(&self.root).map_err(|e| MuxError::io(&self.root, &e))?;
        let root = std::fs::canonicalize(&self.root).map_err(|e| MuxError::io(&self.root, &e))?;
        let want = root.join(rel);
        let parent = want.parent().unwrap_or(&root);
        // walk down from the root so a symlinked directory is caught before anything is created
        // outside the root
        let mut cur = root.clone();
        if let Ok(sub) = parent.strip_prefix(&root) {
            for c in sub.components() {
                cur.push(c);
                match std::fs::symlink_metadata(&cur) {
                    Ok(_) => {
                        let canon =
                            std::fs::canonicalize(&cur).map_err(|e| MuxError::io(&cur, &e))?;
                        if !canon.starts_with(&root) {
                            return Err(MuxError::Escape {
                                path: rel.display().to_string(),
                                reason: "a symlink leads outside the storage root".into(),
                            });
                        }
                        if !canon.is_dir() {
                            return Err(MuxError::File {
                                path: cur.display().to_string(),
                                reason: "is not a directory".into(),
                            });
                        }
                        cur = canon;
                    }
                    Err(_) => {
                        std::fs::create_dir(&cur)
                            .or_else(|e| if cur.is_dir() { Ok(()) } else { Err(e) })
                            .map_err(|e| MuxError::io(&cur, &e))?;
                    }
                }
            }
        }
        let file = cur.join(want.file_name().unwrap_or_default());
        if let Ok(m) = std::fs::symlink_metadata(&file) {
            if m.file_type().is_symlink() {
                return Err(MuxError::Escape {
                    path: rel.display().to_string(),
                    reason: "the target is a symlink".into(),
                });
            }
            if m.is_dir() {
                return Err(MuxError::File {
                    path: file.display().to_string(),
                    reason: "is a directory".into(),
                });
            }
        }
        Ok(file)
    }
}

struct Out {
    ctx: ffmpeg::format::context::Output,
    /// Where the bytes go (file path or URL).
    dest: String,
    file: Option<PathBuf>,
    tb: Rational,
    failed: bool,
}

/// Progress of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProgress {
    /// File path or URL.
    pub dest: String,
    /// Bytes written (file size) so far.
    pub bytes: u64,
}

/// All targets of one recording, fed from one encoder.
pub struct Muxer {
    outs: Vec<Out>,
    enc_tb: Rational,
    fps: u32,
    packets: u64,
    finished: bool,
}

impl std::fmt::Debug for Muxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muxer")
            .field(
                "targets",
                &self.outs.iter().map(|o| &o.dest).collect::<Vec<_>>(),
            )
            .field("packets", &self.packets)
            .finish()
    }
}

fn format_name(t: &Target) -> Result<&'static str, MuxError> {
    Ok(match t {
        Target::File { container, .. } => match container {
            Container::Mp4 => "mp4",
            Container::Mkv => "matroska",
            Container::Flv => "flv",
            Container::Ts => "mpegts",
        },
        Target::Url { url } => {
            let l = url.to_ascii_lowercase();
            if l.starts_with("rtmp://") || l.starts_with("rtmps://") {
                "flv"
            } else if l.starts_with("rtsp://") {
                "rtsp"
            } else {
                return Err(MuxError::Unsupported(url.clone()));
            }
        }
    })
}

/// Whether any target's container wants out-of-band parameter sets, and whether any wants them
/// in-band (MPEG-TS).
pub fn header_needs(targets: &[Target]) -> (bool, bool) {
    let global = targets.iter().any(|t| {
        !matches!(
            t,
            Target::File {
                container: Container::Ts,
                ..
            }
        )
    });
    let inband = targets.iter().any(|t| {
        matches!(
            t,
            Target::File {
                container: Container::Ts,
                ..
            }
        )
    });
    (global, inband)
}

/// Checks that every target can be created under `storage` (directories created, symlinks
/// checked) without opening the encoder; returns the resolved destinations.
pub fn resolve_targets(storage: &Storage, targets: &[Target]) -> Result<Vec<String>, MuxError> {
    targets
        .iter()
        .map(|t| {
            format_name(t)?;
            Ok(match t {
                Target::File { path, .. } => storage.resolve(path)?.display().to_string(),
                Target::Url { url } => url.clone(),
            })
        })
        .collect()
}

impl Muxer {
    /// Opens every target and writes the headers.
    pub fn open(
        storage: &Storage,
        targets: &[Target],
        enc: &VideoEncoder,
    ) -> Result<Self, MuxError> {
        let mut outs = Vec::new();
        for t in targets {
            let fmt = format_name(t)?;
            let (dest, file) = match t {
                Target::File { path, .. } => {
                    let p = storage.resolve(path)?;
                    (p.display().to_string(), Some(p))
                }
                Target::Url { url } => (url.clone(), None),
            };
            let mut ctx =
                ffmpeg::format::output_as(&dest, fmt).map_err(|e| MuxError::ff(&dest, e))?;
            {
                let mut st = ctx
                    .add_stream_with(enc.context())
                    .map_err(|e| MuxError::ff(&dest, e))?;
                st.set_time_base(enc.time_base());
                st.set_rate(Rational::new(enc.fps() as i32, 1));
                st.set_avg_frame_rate(Rational::new(enc.fps() as i32, 1));
            }
            let mut opts = Dictionary::new();
            opts.set("flush_packets", "1");
            if fmt == "mp4" {
                opts.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
                opts.set("frag_duration", &FRAGMENT_DURATION.as_micros().to_string());
            }
            ctx.write_header_with(opts)
                .map_err(|e| MuxError::ff(&dest, e))?;
            let tb = ctx
                .stream(0)
                .map(|s| s.time_base())
                .unwrap_or(enc.time_base());
            outs.push(Out {
                ctx,
                dest,
                file,
                tb,
                failed: false,
            });
        }
        Ok(Muxer {
            outs,
            enc_tb: enc.time_base(),
            fps: enc.fps(),
            packets: 0,
            finished: false,
        })
    }

    /// Writes one encoded packet (timestamps in the encoder's time base) to every target.
    /// The packet is consumed (left blank).
    pub fn write(&mut self, pkt: &mut Packet) -> Result<(), MuxError> {
        pkt.set_stream(0);
        if pkt.duration() == 0 {
            pkt.set_duration(1);
        }
        let n = self.outs.len();
        for i in 0..n {
            let o = &mut self.outs[i];
            let mut p = if i + 1 == n {
                std::mem::replace(pkt, Packet::empty())
            } else {
                pkt.clone()
            };
            p.rescale_ts(self.enc_tb, o.tb);
            if let Err(e) = p.write_interleaved(&mut o.ctx) {
                o.failed = true;
                return Err(MuxError::ff(&o.dest, e));
            }
        }
        self.packets += 1;
        Ok(())
    }

    /// Packets (= frames) written.
    pub fn frames(&self) -> u64 {
        self.packets
    }

    /// Recorded duration (frames / fps).
    pub fn duration(&self) -> Duration {
        crate::pacer::tick_time(self.fps, self.packets)
    }

    /// Bytes written per target (file size for files).
    pub fn progress(&self) -> Vec<TargetProgress> {
        self.outs
            .iter()
            .map(|o| TargetProgress {
                dest: o.dest.clone(),
                bytes: match &o.file {
                    Some(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
                    // SAFETY: pb is the open AVIOContext of a live output context.
                    None => unsafe {
                        let pb = (*o.ctx.as_ptr()).pb;
                        if pb.is_null() {
                            0
                        } else {
                            ((*pb).pos + (*pb).buf_ptr.offset_from((*pb).buffer) as i64).max(0)
                                as u64
                        }
                    },
                },
            })
            .collect()
    }

    /// Writes the trailers (idempotent). Targets that failed before are skipped; the first
    /// error is returned after trying all.
    pub fn finish(&mut self) -> Result<(), MuxError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let mut first = None;
        for o in &mut self.outs {
            if o.failed {
                continue;
            }
            if let Err(e) = o.ctx.write_trailer() {
                first.get_or_insert(MuxError::ff(&o.dest, e));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cm-mux-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn symlink_escapes_are_refused() {
        let root = tmp("sym");
        let outside = tmp("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f.mp4"), root.join("f.mp4")).unwrap();
        let st = Storage::new(&root);
        let e = st.resolve(Path::new("link/a/b.mp4")).unwrap_err();
        assert!(matches!(e, MuxError::Escape { .. }), "{e}");
        assert_eq!(e.code(), codes::PARAM_ERR);
        assert!(
            !outside.join("a").exists(),
            "nothing created outside the root"
        );
        assert!(matches!(
            st.resolve(Path::new("f.mp4")),
            Err(MuxError::Escape { .. })
        ));
        assert!(matches!(
            st.resolve(Path::new("../x.mp4")),
            Err(MuxError::Escape { .. })
        ));
        // a symlink that stays inside is fine
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        let p = st.resolve(Path::new("alias/x.mp4")).unwrap();
        assert!(p.starts_with(std::fs::canonicalize(&root).unwrap().join("real")));
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn not_a_directory_is_a_file_error() {
        let root = tmp("notdir");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("plain"), b"x").unwrap();
        let e = Storage::new(&root)
            .resolve(Path::new("plain/x.mp4"))
            .unwrap_err();
        assert_eq!(e.code(), codes::FILE_ERR, "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
