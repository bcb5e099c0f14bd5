//! Writing one encode to every target of `svrPathName`, crash-safe.
//!
//! - `.mp4` (default) is **fragmented**: `movflags=frag_keyframe+empty_moov+default_base_moof`
//!   plus `frag_duration` = [`FRAGMENT_DURATION`] and `flush_packets=1`, so a fragment reaches
//!   the disk at least every 0.25 s and a `kill -9` or a full disk leaves a playable file that
//!   loses at most the open fragment. `.mkv`, `.flv` and `.ts` are chosen by extension.
//! - `rtmp://` targets are written with the FLV muxer, `rtsp://` with the RTSP muxer (untested
//!   against real servers).
//! - File paths are confined to the [`Storage`] root: `..` and absolute escapes are refused by
//!   [`crate::model::config::confine`], symlink escapes here (the parent directory is canonicalised and
//!   must lie under the canonical root; an existing symlink as the file itself is refused).

use std::path::PathBuf;
use std::time::Duration;

use ffmpeg::{Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::{MuxError, Storage};
use crate::media::video_enc::VideoEncoder;
use crate::model::config::{Container, Target};

/// Longest fragment of a fragmented mp4 (DESIGN asks for ≤ 0.5 s; half that doubles the kill -9 margin).
pub const FRAGMENT_DURATION: Duration = Duration::from_millis(250);

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
        crate::model::time::tick_time(self.fps, self.packets)
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
