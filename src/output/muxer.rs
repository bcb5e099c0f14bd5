//! Writing encoded tracks (video, audio) to every target of a `svrPathName`, crash-safe.
//!
//! A [`Muxer`] is opened with the [`TrackSpec`]s it carries (their stream parameters come from
//! the encoders) and takes [`Packet`]s of any track: one stream per track in every target,
//! interleaved by FFmpeg.
//!
//! - `.mp4` (default) is **fragmented**: `movflags=frag_keyframe+empty_moov+default_base_moof
//!   +delay_moov` plus `frag_duration` = [`FRAGMENT_DURATION`] and `flush_packets=1`, so a
//!   fragment reaches the disk about every 0.1 s and a `kill -9` or a full disk leaves a
//!   playable file that loses at most the open fragment. `.mkv`, `.flv` and `.ts` are chosen by
//!   extension; `.m4a` (fragmented the same way), `.aac`, `.mp3` and `.wav` hold audio only.
//! - An existing file is never overwritten unless asked ([`Storage::reserve`]), and a file
//!   deleted or replaced under the writer is noticed ([`Muxer::check_files`]).
//! - `rtmp://` targets are written with the FLV muxer (tested against nginx-rtmp), `rtsp://`
//!   with the RTSP muxer (untested); each live target has its own muxer on its own thread
//!   ([`super::live`]). `.m3u8` is FFmpeg's HLS muxer (fMP4 segments).
//! - File paths are confined to the [`Storage`] root ([`super::storage`]): every file is created
//!   by us through a directory descriptor with `O_NOFOLLOW` (no symlink below the root is
//!   followed) and FFmpeg writes through that descriptor (`/proc/self/fd/N`). The HLS muxer's
//!   own files (init segment, segments, their `.tmp` names, the playlist's `.tmp`) are opened
//!   by our `io_open` callback in the playlist's directory, never through a name that exists
//!   (temporaries replace what is there, the rest must be new), and the playlist's name is
//!   chosen so that none of its side files exists yet.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ffmpeg::packet::{Mut as _, Ref as _};
use ffmpeg::{Dictionary, Rational};
use ffmpeg_next as ffmpeg;

use super::storage::{identity, Dir, Reserved};
use super::{MuxError, Storage};
use crate::model::config::{Container, Target};

/// Longest fragment of a fragmented mp4: with the real-time latency (0.2 s) a `kill -9` loses
/// ≤ 0.5 s of what was captured (`cli/tests/crash.rs`); costs ≈ 1.4 % in file size against 0.25 s.
pub const FRAGMENT_DURATION: Duration = Duration::from_millis(100);

/// How far one track of an mp4 may run ahead of another before its packets are written
/// without waiting (`max_interleave_delta`).
pub const MAX_INTERLEAVE: Duration = Duration::from_millis(10);

/// Which track a packet belongs to (the index of its [`TrackSpec`] among the writer's tracks).
pub type TrackId = usize;

/// An encoded packet of one track, timestamps in that track's time base.
pub struct Packet {
    /// The track.
    pub track: TrackId,
    /// The encoded data, pts/dts/duration in the track's time base.
    pub data: ffmpeg::Packet,
}

impl Packet {
    /// Another packet of the same track with the same payload, without copying it (see
    /// [`share_data`]): for every live target and every further muxer of a track.
    pub fn share(&self) -> Packet {
        Packet {
            track: self.track,
            data: share_data(&self.data),
        }
    }
}

/// A new packet referencing `p`'s payload: FFmpeg's `av_packet_ref`, which takes one more
/// reference to the payload's reference-counted buffer (no byte of it is copied) and gives the
/// new packet its own pts, dts, duration, flags, stream index and side data (tens of bytes).
/// Each holder can rescale or shift its timestamps without touching the others'; muxers never
/// write into a shared payload (FFmpeg copies a buffer before changing it when it is not the
/// only reference).
///
/// `ffmpeg::Packet::clone` is not this: after `av_packet_ref` it makes the copy writable, which
/// copies the payload because it is shared. A packet whose payload is not reference-counted
/// (`buf` null; encoders always return counted ones) gets a counted copy here; call
/// [`make_shareable`] once first so that every later share references one buffer.
pub fn share_data(p: &ffmpeg::Packet) -> ffmpeg::Packet {
    let mut out = ffmpeg::Packet::empty();
    // SAFETY: both point to valid packets; `out` is blank (av_packet_ref's precondition) and
    // owns the reference it receives (freed by its Drop: av_packet_unref).
    let r = unsafe { ffmpeg::ffi::av_packet_ref(out.as_mut_ptr(), p.as_ptr()) };
    if r < 0 {
        // out of memory: a plain copy (av_packet_ref left `out` blank)
        return p.clone();
    }
    out
}

/// Makes `p`'s payload reference-counted (a no-op for encoder output, which already is), so
/// that [`share_data`] never copies it.
pub fn make_shareable(p: &mut ffmpeg::Packet) {
    // SAFETY: a valid packet; on failure it is left as it was.
    unsafe {
        ffmpeg::ffi::av_packet_make_refcounted(p.as_mut_ptr());
    }
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// Constant-frame-rate video at `fps`.
    Video {
        /// Frames per second.
        fps: u32,
    },
    /// Audio at `rate` samples per second.
    Audio {
        /// Sample rate.
        rate: u32,
    },
}

/// One track of a muxer: its id, kind, and the encoder context its stream is created from.
pub struct TrackSpec<'a> {
    /// The id packets of this track carry.
    pub id: TrackId,
    /// Video or audio.
    pub kind: TrackKind,
    /// The encoder (stream parameters, extradata).
    pub codec: &'a ffmpeg::codec::Context,
    /// The encoder's time base (packet timestamps).
    pub time_base: Rational,
}

struct Stream {
    track: TrackId,
    /// Stream index in every target.
    index: usize,
    kind: TrackKind,
    enc_tb: Rational,
    /// Per target: the stream's time base in that target.
    out_tb: Vec<Rational>,
    /// Packets written.
    packets: u64,
    /// End of the latest packet (pts + duration) in the encoder's time base.
    end: i64,
}

struct Out {
    ctx: ffmpeg::format::context::Output,
    /// Where the bytes go (file path or URL).
    dest: String,
    /// The file we created for it (kept open: FFmpeg writes the same inode).
    file: Option<Reserved>,
    /// The HLS muxer's file opener (its address is the context's `opaque`).
    _hls: Option<Box<ConfinedIo>>,
    /// (device, inode) of the file as opened: a file deleted or replaced under the writer is
    /// noticed by [`Muxer::check_files`].
    identity: Option<(u64, u64)>,
    failed: bool,
    /// Apply the common offset (containers without edit lists); mp4 gets edit lists instead.
    shift: bool,
}

/// Progress of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProgress {
    /// File path or URL.
    pub dest: String,
    /// Bytes written (file size) so far.
    pub bytes: u64,
}

/// Audio packets held back while waiting for the first video packet (~20 s of AAC).
const HOLD_MAX: usize = 1000;

/// All targets of one `svrPathName`, each with one stream per track.
///
/// One time offset for all tracks: a video encoder with B-frames starts its dts below zero
/// (x264 `veryfast`: two frames). mp4 stores that with edit lists (the moov follows the first
/// fragment, `delay_moov`), so both tracks start at 0. flv, mkv and ts cannot, and FFmpeg's own
/// fix-up shifts only the packets written after the first one; so a muxer with video holds the
/// other tracks' packets until the first video packet, then moves every track of those targets
/// by the same `-dts` (video and audio then both start at that offset, 133 ms at 15 fps).
pub struct Muxer {
    outs: Vec<Out>,
    streams: Vec<Stream>,
    finished: bool,
    /// The common offset in seconds, once known (at once without a video track).
    offset: Option<Rational>,
    held: Vec<Packet>,
}

impl std::fmt::Debug for Muxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muxer")
            .field(
                "targets",
                &self.outs.iter().map(|o| &o.dest).collect::<Vec<_>>(),
            )
            .field("frames", &self.frames())
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
            Container::M4a => "ipod",
            Container::Aac => "adts",
            Container::Mp3 => "mp3",
            Container::Wav => "wav",
            Container::Hls => "hls",
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

/// Whether any target's container wants out-of-band parameter sets (extradata), and whether
/// any wants them in-band (MPEG-TS video).
pub fn header_needs(targets: &[Target]) -> (bool, bool) {
    let is =
        |t: &Target, c: Container| matches!(t, Target::File { container, .. } if *container == c);
    let global = targets
        .iter()
        .any(|t| !is(t, Container::Ts) && !is(t, Container::Mp3) && !is(t, Container::Wav));
    let inband = targets.iter().any(|t| is(t, Container::Ts));
    (global, inband)
}

/// Checks that every target can be created under `storage` (directories created, symlinks
/// checked) without opening an encoder; returns the resolved destinations.
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
    /// Opens every target with one stream per track and writes the headers.
    ///
    /// An existing file is not overwritten unless `overwrite`: the recording goes to the first
    /// free `name_N.ext` instead ([`Storage::reserve`]; see [`Muxer::dest_names`]).
    pub fn open(
        storage: &Storage,
        targets: &[Target],
        tracks: &[TrackSpec<'_>],
        overwrite: bool,
    ) -> Result<Self, MuxError> {
        let mut outs = Vec::new();
        let mut streams: Vec<Stream> = tracks
            .iter()
            .enumerate()
            .map(|(i, t)| Stream {
                track: t.id,
                index: i,
                kind: t.kind,
                enc_tb: t.time_base,
                out_tb: Vec::new(),
                packets: 0,
                end: 0,
            })
            .collect();
        for t in targets {
            let fmt = format_name(t)?;
            let hls = fmt == "hls";
            let (dest, file) = match t {
                Target::File { path, .. } => {
                    let r = if hls {
                        storage.reserve_with(path, overwrite, hls_side_names)?
                    } else {
                        storage.reserve(path, overwrite)?
                    };
                    (r.path().display().to_string(), Some(r))
                }
                Target::Url { url } => (url.clone(), None),
            };
            let mut ctx = match (t, &file) {
                // a live server that stops reading must not block the writer for ever
                // RTSP opens its own connections (no AVIO): FFmpeg's output_as would fail
                // with "Protocol not found"
                (Target::Url { .. }, _) if fmt == "rtsp" => open_nofile(&dest, fmt),
                (Target::Url { .. }, _) => {
                    let mut io = Dictionary::new();
                    io.set(
                        "rw_timeout",
                        &super::live::IO_TIMEOUT.as_micros().to_string(),
                    );
                    ffmpeg::format::output_as_with(&dest, fmt, io)
                }
                // FFmpeg opens by path: the playlist through its directory's descriptor, any
                // other file through the descriptor of the file we created
                // the HLS muxer opens every file itself (AVFMT_NOFILE), through our io_open
                (Target::File { .. }, Some(r)) if hls => {
                    open_nofile(&r.dir.proc_path(&r.name), fmt)
                }
                (Target::File { .. }, Some(r)) => {
                    ffmpeg::format::output_as(&format!("/proc/self/fd/{}", r.file.as_raw_fd()), fmt)
                }
                (Target::File { .. }, None) => unreachable!("a file target is reserved"),
            }
            .map_err(|e| MuxError::ff(&dest, e))?;
            // every further file the muxer opens goes through our callback
            let hls_io = file.as_ref().map(|r| {
                Box::new(ConfinedIo {
                    dir: r.dir.clone(),
                    overwrite,
                    allow: hls,
                })
            });
            if let Some(io) = &hls_io {
                // SAFETY: the context is alive; `opaque` points to the boxed ConfinedIo, which the
                // Out owning this context keeps alive (dropped after the context, see Out).
                unsafe {
                    let c = ctx.as_mut_ptr();
                    (*c).opaque = (&**io as *const ConfinedIo).cast_mut().cast();
                    (*c).io_open = Some(confined_io_open);
                }
            }
            for spec in tracks {
                let mut st = ctx
                    .add_stream_with(spec.codec)
                    .map_err(|e| MuxError::ff(&dest, e))?;
                st.set_time_base(spec.time_base);
                if let TrackKind::Video { fps } = spec.kind {
                    st.set_rate(Rational::new(fps as i32, 1));
                    st.set_avg_frame_rate(Rational::new(fps as i32, 1));
                }
            }
            let mut opts = Dictionary::new();
            opts.set("flush_packets", "1");
            if fmt == "rtsp" {
                // interleaved in the RTSP connection: no UDP ports to open or lose packets on
                opts.set("rtsp_transport", "tcp");
                opts.set("timeout", &super::live::IO_TIMEOUT.as_micros().to_string());
            }
            if let (true, Some(r)) = (hls, &file) {
                hls_options(&mut opts, r);
            }
            let mp4 = fmt == "mp4" || fmt == "ipod";
            if mp4 {
                // delay_moov: the moov (with edit lists for B-frame delay) follows the first
                // fragment, so tracks start at 0 without the first sample being stretched
                opts.set(
                    "movflags",
                    "frag_keyframe+empty_moov+default_base_moof+delay_moov",
                );
                opts.set("frag_duration", &FRAGMENT_DURATION.as_micros().to_string());
                // a track may run ahead of the other by this much before its packets are
                // written anyway: the audio of a live recording does not wait in memory for
                // the video the encoder's lookahead holds (FFmpeg's default: 10 s)
                opts.set(
                    "max_interleave_delta",
                    &MAX_INTERLEAVE.as_micros().to_string(),
                );
            }
            ctx.write_header_with(opts)
                .map_err(|e| MuxError::ff(&dest, e))?;
            for s in &mut streams {
                let tb = ctx
                    .stream(s.index)
                    .map(|st| st.time_base())
                    .unwrap_or(s.enc_tb);
                s.out_tb.push(tb);
            }
            // the HLS muxer rewrites its playlist (a new file) at every segment
            let identity = file
                .as_ref()
                .filter(|_| !hls)
                .and_then(|r| identity(&r.file));
            outs.push(Out {
                ctx,
                dest,
                file,
                _hls: hls_io,
                identity,
                failed: false,
                shift: !mp4,
            });
        }
        let has_video = streams
            .iter()
            .any(|s| matches!(s.kind, TrackKind::Video { .. }));
        Ok(Muxer {
            outs,
            streams,
            finished: false,
            offset: (!has_video).then(|| Rational::new(0, 1)),
            held: Vec::new(),
        })
    }

    /// For each target: `Some(file name)` when the file was given another name than asked
    /// (the name existed), else `None`.
    pub fn dest_names(&self) -> Vec<Option<String>> {
        self.outs
            .iter()
            .map(|o| {
                o.file
                    .as_ref()
                    .filter(|r| r.renamed)
                    .map(|r| r.name.to_string_lossy().into_owned())
            })
            .collect()
    }

    /// For each target: the file name it writes (`None` for URLs).
    pub fn file_names(&self) -> Vec<Option<String>> {
        self.outs
            .iter()
            .map(|o| {
                o.file
                    .as_ref()
                    .map(|r| r.name.to_string_lossy().into_owned())
            })
            .collect()
    }

    /// For each target: the file's path relative to the storage root (`None` for URLs).
    pub fn file_rels(&self) -> Vec<Option<std::path::PathBuf>> {
        self.outs
            .iter()
            .map(|o| o.file.as_ref().map(Reserved::rel))
            .collect()
    }

    /// Checks that every file target is still the file this muxer opened: a deleted file or
    /// directory, or a file replaced under the same name, is a [`MuxError::File`] (905).
    pub fn check_files(&self) -> Result<(), MuxError> {
        for o in &self.outs {
            let (Some(r), Some(id)) = (&o.file, o.identity) else {
                continue;
            };
            let now = r
                .dir
                .stat(&r.name)
                .ok()
                .flatten()
                .map(|st| (st.st_dev, st.st_ino));
            // a deleted directory keeps its descriptor: its link count drops to 0
            let dir_gone = identity_nlink(&r.dir) == Some(0);
            let reason = match now {
                None => "the file or its directory was deleted while recording",
                Some(_) if dir_gone => "the file or its directory was deleted while recording",
                Some(now) if now != id => "the file was replaced while recording",
                Some(_) => continue,
            };
            return Err(MuxError::File {
                path: o.dest.clone(),
                reason: reason.into(),
            });
        }
        Ok(())
    }

    /// Whether this muxer carries `track`.
    pub fn carries(&self, track: TrackId) -> bool {
        self.streams.iter().any(|s| s.track == track)
    }

    /// Writes one packet (timestamps in its track's encoder time base) to every target (the
    /// last target takes it, the others a reference to its payload). Packets of tracks this muxer does not carry
    /// are ignored.
    pub fn write(&mut self, pkt: Packet) -> Result<(), MuxError> {
        let Some(si) = self.streams.iter().position(|s| s.track == pkt.track) else {
            return Ok(());
        };
        if self.offset.is_none() {
            let s = &self.streams[si];
            if let TrackKind::Video { .. } = s.kind {
                // seconds = -dts · tb
                let dts = pkt.data.dts().or(pkt.data.pts()).unwrap_or(0).min(0);
                self.offset = Some(Rational::new(
                    (-dts as i32).saturating_mul(s.enc_tb.numerator()),
                    s.enc_tb.denominator(),
                ));
                self.write_now(si, pkt)?;
                return self.write_held();
            }
            if self.held.len() < HOLD_MAX {
                self.held.push(pkt);
                return Ok(());
            }
            // no video for a long time: give up waiting
            self.offset = Some(Rational::new(0, 1));
            self.write_held()?;
        }
        self.write_now(si, pkt)
    }

    /// Writes the packets held while waiting for the first video packet.
    fn write_held(&mut self) -> Result<(), MuxError> {
        for h in std::mem::take(&mut self.held) {
            if let Some(hi) = self.streams.iter().position(|s| s.track == h.track) {
                self.write_now(hi, h)?;
            }
        }
        Ok(())
    }

    /// Writes to every target: the last one takes the packet itself, the others a reference to
    /// its payload ([`share_data`]: own timestamps, no payload copy).
    fn write_now(&mut self, si: usize, pkt: Packet) -> Result<(), MuxError> {
        let off = self.offset.unwrap_or(Rational::new(0, 1));
        let s = &mut self.streams[si];
        // the common offset in this track's time base
        let shift = if off.numerator() == 0 {
            0
        } else {
            let (n, d) = (off.numerator() as i64, off.denominator() as i64);
            let (tn, td) = (s.enc_tb.numerator() as i64, s.enc_tb.denominator() as i64);
            (n * td + d * tn / 2) / (d * tn).max(1)
        };
        let end = pkt.data.pts().unwrap_or(0) + pkt.data.duration().max(0);
        let mut data = Some(pkt.data);
        let last = self.outs.len().saturating_sub(1);
        if last > 0 {
            if let Some(d) = data.as_mut() {
                make_shareable(d);
            }
        }
        for (i, (o, out_tb)) in self.outs.iter_mut().zip(&s.out_tb).enumerate() {
            let mut p = match (i == last, data.as_ref()) {
                (true, _) => data.take().unwrap_or_else(ffmpeg::Packet::empty),
                (false, Some(d)) => share_data(d),
                (false, None) => ffmpeg::Packet::empty(),
            };
            if shift != 0 && o.shift {
                p.set_pts(p.pts().map(|t| t + shift));
                p.set_dts(p.dts().map(|t| t + shift));
            }
            p.set_stream(s.index);
            if p.duration() == 0 && matches!(s.kind, TrackKind::Video { .. }) {
                p.set_duration(1);
            }
            p.rescale_ts(s.enc_tb, *out_tb);
            if let Err(e) = p.write_interleaved(&mut o.ctx) {
                o.failed = true;
                return Err(MuxError::ff(&o.dest, e));
            }
        }
        s.packets += 1;
        s.end = s.end.max(end);
        Ok(())
    }

    /// Video frames written (0 without a video track).
    pub fn frames(&self) -> u64 {
        self.streams
            .iter()
            .find(|s| matches!(s.kind, TrackKind::Video { .. }))
            .map_or(0, |s| s.packets)
    }

    /// Recorded duration: video frames / fps, or for audio only the end of the last packet.
    pub fn duration(&self) -> Duration {
        if let Some(s) = self
            .streams
            .iter()
            .find(|s| matches!(s.kind, TrackKind::Video { .. }))
        {
            if let TrackKind::Video { fps } = s.kind {
                return crate::model::time::tick_time(fps, s.packets);
            }
        }
        self.streams
            .iter()
            .filter(|s| matches!(s.kind, TrackKind::Audio { .. }))
            .map(|s| {
                Duration::from_secs_f64(
                    s.end.max(0) as f64 * s.enc_tb.numerator() as f64
                        / s.enc_tb.denominator().max(1) as f64,
                )
            })
            .max()
            .unwrap_or_default()
    }

    /// Bytes written per target (file size for files).
    pub fn progress(&self) -> Vec<TargetProgress> {
        self.outs
            .iter()
            .map(|o| TargetProgress {
                dest: o.dest.clone(),
                bytes: match &o.file {
                    Some(r) => r
                        .dir
                        .stat(&r.name)
                        .ok()
                        .flatten()
                        .map_or(0, |st| st.st_size.max(0) as u64),
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
        if self.offset.is_none() && !self.held.is_empty() {
            // the video never produced a packet: write what was held
            self.offset = Some(Rational::new(0, 1));
            if let Err(e) = self.write_held() {
                self.finished = true;
                return Err(e);
            }
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

/// An output context for a format that does its own I/O (`AVFMT_NOFILE`, e.g. RTSP).
fn open_nofile(dest: &str, fmt: &str) -> Result<ffmpeg::format::context::Output, ffmpeg::Error> {
    let (Ok(name), Ok(url)) = (std::ffi::CString::new(fmt), std::ffi::CString::new(dest)) else {
        return Err(ffmpeg::Error::InvalidData);
    };
    let mut ps = std::ptr::null_mut();
    // SAFETY: both strings are NUL-terminated and live across the call; on success `ps` is a
    // fresh context that `Output` owns and frees (its null `pb` is left alone by avio_close).
    unsafe {
        let r = ffmpeg::ffi::avformat_alloc_output_context2(
            &mut ps,
            std::ptr::null(),
            name.as_ptr(),
            url.as_ptr(),
        );
        if r < 0 || ps.is_null() {
            return Err(ffmpeg::Error::from(r.min(-1)));
        }
        Ok(ffmpeg::format::context::Output::wrap(ps))
    }
}

/// Segment duration of `.m3u8` targets.
pub const HLS_SEGMENT: Duration = Duration::from_secs(2);

/// HLS: fMP4 segments `<stem>_00000.m4s` and the init segment `<stem>_init.mp4` next to the
/// playlist, a 2 s target duration, an EVENT playlist (every segment stays listed, so a player
/// can follow it live and play it all after the end, when `#EXT-X-ENDLIST` is written).
/// Segments and playlist updates are written as `.tmp` and renamed (through the directory's
/// descriptor).
fn hls_options(opts: &mut Dictionary, playlist: &Reserved) {
    opts.set("hls_segment_type", "fmp4");
    opts.set("hls_time", &HLS_SEGMENT.as_secs().to_string());
    opts.set("hls_playlist_type", "event");
    opts.set("hls_flags", "independent_segments+temp_file");
    let stem = Path::new(&playlist.name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stream".into());
    opts.set(
        "hls_segment_filename",
        &playlist
            .dir
            .proc_path(OsStr::new(&format!("{stem}_%05d.m4s"))),
    );
    opts.set("hls_fmp4_init_filename", &format!("{stem}_init.mp4"));
}

/// The files an HLS playlist with this stem writes next to it (which must not exist when its
/// name is chosen): the init segment, the segments (`stem_0…`) and the playlist's temporary.
pub fn hls_side_names(stem: &str) -> Vec<String> {
    vec![
        format!("{stem}_init.mp4"),
        format!("{stem}_0*"),
        format!("{stem}.m3u8.tmp"),
    ]
}

/// What FFmpeg may open while muxing a file target: for HLS, new files in the playlist's
/// directory (temporaries replace what is there; other names must not exist unless
/// `overwrite`); for other targets nothing (their one file is opened before).
struct ConfinedIo {
    dir: Arc<Dir>,
    overwrite: bool,
    allow: bool,
}

impl ConfinedIo {
    /// Opens `url` (which must be `/proc/self/fd/D/name` of our directory) for writing and
    /// returns the descriptor path FFmpeg should open instead.
    fn open(&self, url: &[u8], write: bool) -> Result<(std::fs::File, String), i32> {
        if !self.allow || !write {
            return Err(libc::EPERM);
        }
        let prefix = format!("/proc/self/fd/{}/", self.dir.raw_fd());
        let name = url
            .strip_prefix(prefix.as_bytes())
            .map(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes)
            .ok_or(libc::EPERM)?;
        let tmp = name.as_encoded_bytes().ends_with(b".tmp");
        let f = if tmp || self.overwrite {
            self.dir.create_replacing(name)
        } else {
            self.dir.create_new(name)
        };
        let f = f.map_err(|e| {
            tracing::warn!(
                "refusing to write {}: {e}",
                self.dir.path().join(name).display()
            );
            e.raw_os_error().unwrap_or(libc::EPERM)
        })?;
        let path = format!("/proc/self/fd/{}", f.as_raw_fd());
        Ok((f, path))
    }
}

/// `AVFormatContext.io_open` of file targets: see [`ConfinedIo`].
unsafe extern "C" fn confined_io_open(
    s: *mut ffmpeg::ffi::AVFormatContext,
    pb: *mut *mut ffmpeg::ffi::AVIOContext,
    url: *const libc::c_char,
    flags: libc::c_int,
    options: *mut *mut ffmpeg::ffi::AVDictionary,
) -> libc::c_int {
    // SAFETY: FFmpeg calls this with its live context, whose opaque we set to an ConfinedIo that
    // outlives the context.
    let io = unsafe { (*s).opaque as *const ConfinedIo };
    if io.is_null() || url.is_null() {
        return -libc::EPERM;
    }
    // SAFETY: FFmpeg passes a NUL-terminated url (checked non-null above).
    let url = unsafe { std::ffi::CStr::from_ptr(url) }.to_bytes();
    let write = flags & ffmpeg::ffi::AVIO_FLAG_WRITE as libc::c_int != 0;
    // SAFETY: io is non-null and points to the ConfinedIo kept alive by the muxer (see above).
    match unsafe { &*io }.open(url, write) {
        Ok((file, path)) => {
            let Ok(c) = std::ffi::CString::new(path) else {
                return -libc::EINVAL;
            };
            // the file protocol reopens the inode we created (the magic link is not a name)
            // SAFETY: pb and options come from FFmpeg for this call; c lives across it.
            let r = unsafe {
                ffmpeg::ffi::avio_open2(pb, c.as_ptr(), flags, &(*s).interrupt_callback, options)
            };
            drop(file);
            r
        }
        Err(errno) => -errno,
    }
}

/// The link count of a directory (0 once it was removed).
fn identity_nlink(d: &Dir) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: a valid descriptor; st written on success.
    let r = unsafe { libc::fstat(d.raw_fd(), st.as_mut_ptr()) };
    #[allow(clippy::unnecessary_cast)] // nlink_t is u32 on some targets
    // SAFETY: initialised by the successful fstat.
    (r == 0).then(|| unsafe { st.assume_init() }.st_nlink as u64)
}
