//! WebRTC ingest by WHIP (RFC 9725): a browser (or any WHIP client) publishes one camera of a
//! running room with an SDP offer; the answer comes back at once, the media over ICE-lite +
//! DTLS-SRTP on a UDP port of its own.
//!
//! - [`Whip::start`] takes the camera with [`Host::publish`] first (an unknown mixer, a busy
//!   camera or a bad camid is refused before any ICE or DTLS work), binds a free UDP port of
//!   the configured range (the range bounds the sessions at once), answers the offer with
//!   [str0m](https://docs.rs/str0m) (ICE-lite, H.264 packetization-mode 1 and VP8 video, Opus
//!   audio) and starts the session's thread.
//! - The session's thread drives str0m's poll loop on its socket and decodes what comes with
//!   FFmpeg (H.264, VP8, Opus) in the same thread, off the async runtime: video into the
//!   camera, audio into the camera's user.
//! - Capture times: each stream's RTP timestamps are mapped onto the sender's wall clock by
//!   its RTCP sender reports (NTP ↔ RTP), so camera and microphone of one browser land on one
//!   clock and stay in sync; before a stream's first report its RTP clock is anchored at the
//!   earliest arrival seen. That wall clock is then mapped onto the mixer clock by the pull
//!   inputs' `Timeline` (anchored once, shared by video and audio, jumps continued).
//! - A keyframe is asked for (PLI) once connected, until the first picture decodes, and
//!   whenever a frame is lost or does not decode; str0m answers losses with NACKs and holds
//!   frames for reordering no longer than the mixer's latency.
//! - The session ends on [`Whip::end`] (the client's `DELETE`), when the room ends, when the
//!   peer goes away (ICE disconnected, or no media for [`WhipSettings::idle_timeout`]) or when
//!   no connection was made within [`WhipSettings::connect_timeout`]; the [`Publication`] is
//!   then dropped: the input turns `idle` and the camera shows its placeholder.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ffmpeg_next as ff;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use super::file::FeedTarget;
use super::pull::{check_size, InputState, Kind, PullInput, PullSettings, Timeline, Window};
use crate::host::{Host, HostError, Publication};
use crate::media::audio_dec::AudioStream;
use crate::media::decode::{convert_frame, init_ffmpeg};
use crate::model::audio::AudioFrame;
use crate::pipeline::MixerError;

/// Where and how WHIP sessions take their media.
#[derive(Debug, Clone, PartialEq)]
pub struct WhipSettings {
    /// The address the sessions' UDP sockets are bound to (its host candidate).
    pub ip: IpAddr,
    /// The first UDP port of the range.
    pub port_min: u16,
    /// The last UDP port of the range (one session per port).
    pub port_max: u16,
    /// An address (with the same port) also offered as a candidate: the public address of a
    /// NAT in front of `ip`.
    pub public_ip: Option<IpAddr>,
    /// No ICE + DTLS connection this long after the answer: the session ends.
    pub connect_timeout: Duration,
    /// Connected, but no media for this long: the peer is gone.
    pub idle_timeout: Duration,
    /// How long str0m may hold a frame for missing packets (retransmissions, reordering): the
    /// mixer's latency, so that a late frame is not waited for past its composition.
    pub jitter: Duration,
    /// The largest picture taken (the pull inputs' limits).
    pub pull: PullSettings,
}

impl WhipSettings {
    /// Settings for `IP:PORT-PORT` (`127.0.0.1:40000-40100`; one port is a range of one).
    pub fn parse_udp(s: &str) -> Result<WhipSettings, String> {
        let bad = || format!("{s:?}: expected IP:PORT-PORT, e.g. 127.0.0.1:40000-40100");
        let (ip, ports) = match s.strip_prefix('[') {
            Some(v6) => {
                let (ip, rest) = v6.split_once(']').ok_or_else(bad)?;
                (ip, rest.strip_prefix(':').ok_or_else(bad)?)
            }
            None => s.rsplit_once(':').ok_or_else(bad)?,
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let (lo, hi): (u16, u16) = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
        if lo == 0 || hi < lo {
            return Err(format!("{s:?}: the port range is empty (or starts at 0)"));
        }
        Ok(WhipSettings {
            ip,
            port_min: lo,
            port_max: hi,
            public_ip: None,
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(5),
            jitter: Duration::from_millis(500),
            pull: PullSettings::default(),
        })
    }

    /// Sessions at once, at most (one port each).
    pub fn max_sessions(&self) -> usize {
        usize::from(self.port_max - self.port_min) + 1
    }
}

/// Why a WHIP offer was refused.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    /// The host refused the publish (unknown mixer, busy camera, bad camid, ended room).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The offer is not SDP str0m can answer (no common codec, not sendonly media …).
    #[error("offer: {0}")]
    BadOffer(String),
    /// Every port of the range has a session.
    #[error("no free UDP port in {0}-{1}: that many WHIP sessions run already")]
    Full(u16, u16),
    /// The session could not be set up.
    #[error("WebRTC: {0}")]
    Internal(String),
}

struct Session {
    mixer: String,
    camid: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The WHIP sessions of a service.
pub struct Whip {
    settings: WhipSettings,
    sessions: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Whip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whip")
            .field("settings", &self.settings)
            .field("sessions", &self.sessions().len())
            .finish()
    }
}

impl Whip {
    /// No sessions yet.
    pub fn new(settings: WhipSettings) -> Arc<Whip> {
        Arc::new(Whip {
            settings,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &WhipSettings {
        &self.settings
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        let mut g = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // sessions that ended by themselves
        g.retain(|_, s| !s.done.load(Ordering::Relaxed));
        g
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.sessions().len()
    }

    /// Takes camera `camid` of room `mixer_id` for a WHIP publisher whose SDP offer is `offer`
    /// (`source` describes it in the room's info, e.g. `whip://192.0.2.7`): the session's id
    /// and the SDP answer. The camera is taken before anything else is done.
    pub fn start(
        &self,
        host: &Host,
        mixer_id: &str,
        camid: &str,
        offer: &str,
        source: &str,
    ) -> Result<(String, String), WhipError> {
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| WhipError::BadOffer(e.to_string()))?;
        let s = &self.settings;
        if s.ip.is_unspecified() && s.public_ip.is_none() {
            return Err(WhipError::Internal(format!(
                "{} is no address a peer can reach: a public IP is needed",
                s.ip
            )));
        }
        // the camera first: a refusal costs no socket, ICE or DTLS
        let publication = host.publish(mixer_id, camid, source)?;
        let socket = (s.port_min..=s.port_max)
            .find_map(|p| UdpSocket::bind((s.ip, p)).ok())
            .ok_or(WhipError::Full(s.port_min, s.port_max))?;
        let local = socket
            .local_addr()
            .map_err(|e| WhipError::Internal(format!("socket: {e}")))?;
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_vp8(true)
            .enable_opus(true, false)
            .set_reordering_timeout_video(Some(s.jitter))
            .set_reordering_timeout_audio(Some(s.jitter))
            .build(Instant::now());
        // (an unspecified address is no candidate: the public one is, the CLI insists on it)
        let mut candidates = Vec::new();
        if !local.ip().is_unspecified() {
            candidates.push(local);
        }
        if let Some(ip) = s.public_ip {
            candidates.push(SocketAddr::new(ip, local.port()));
        }
        for addr in &candidates {
            let c = Candidate::host(*addr, "udp")
                .map_err(|e| WhipError::Internal(format!("candidate {addr}: {e}")))?;
            rtc.add_local_candidate(c);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WhipError::BadOffer(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let id = session_id();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (st, dn, settings) = (stop.clone(), done.clone(), s.clone());
        let thread = std::thread::Builder::new()
            .name(format!("cm-whip-{camid}"))
            .spawn(move || {
                let why = run(rtc, socket, &publication, &st, &settings);
                tracing::info!(input = %publication.spec().key, reason = %why, "WHIP session ended");
                // the input turns idle (why in its error), the camera is free again
                publication.end(&why);
                dn.store(true, Ordering::Relaxed);
            })
            .map_err(|e| WhipError::Internal(format!("session thread: {e}")))?;
        self.sessions().insert(
            id.clone(),
            Session {
                mixer: mixer_id.to_string(),
                camid: camid.to_string(),
                stop,
                done,
                thread: Some(thread),
            },
        );
        Ok((id, answer))
    }

    /// Ends session `id` of camera `camid` of room `mixer_id` (the client's `DELETE`), once its
    /// thread is gone (the camera free again): whether there was such a session.
    pub fn end(&self, mixer_id: &str, camid: &str, id: &str) -> bool {
        let s = {
            let mut g = self.sessions();
            match g.get(id) {
                Some(s) if s.mixer == mixer_id && s.camid == camid => g.remove(id),
                _ => None,
            }
        };
        let Some(mut s) = s else {
            return false;
        };
        s.stop.store(true, Ordering::Relaxed);
        if let Some(t) = s.thread.take() {
            let _ = t.join();
        }
        true
    }

    /// Ends every session (the service stops).
    pub fn end_all(&self) {
        let all: Vec<Session> = self.sessions().drain().map(|(_, s)| s).collect();
        for s in &all {
            s.stop.store(true, Ordering::Relaxed);
        }
        for mut s in all {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// 128 random bits, hex.
fn session_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // (no randomness: still unique within the process)
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = n.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Seconds since the epoch of `t`.
fn epoch_secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The session's loop: str0m on the socket until it ends; why it ended.
fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    publication: &Publication,
    stop: &AtomicBool,
    settings: &WhipSettings,
) -> String {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => return format!("socket: {e}"),
    };
    // what a packet to the public address arrives as
    let destination = match settings.public_ip {
        Some(ip) if local.ip().is_unspecified() => SocketAddr::new(ip, local.port()),
        _ => local,
    };
    let input = publication.input().clone();
    let mut media = Decode::new(publication, settings);
    let started = Instant::now();
    let mut connected = false;
    let mut last_media = Instant::now();
    let mut buf = vec![0u8; 2048];
    loop {
        if stop.load(Ordering::Relaxed) {
            hang_up(&mut rtc, &socket);
            return "the publisher ended the session (DELETE)".into();
        }
        if publication.stopped() {
            hang_up(&mut rtc, &socket);
            return "the room ended".into();
        }
        let deadline = match rtc.poll_output() {
            Ok(Output::Timeout(t)) => t,
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination);
                continue;
            }
            Ok(Output::Event(e)) => {
                match e {
                    Event::Connected => {
                        connected = true;
                        last_media = Instant::now();
                        input.set_state(InputState::Live, "");
                        media.want_keyframe = true;
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return "the publisher disconnected".into();
                    }
                    Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                        media.video_mid = Some(m.mid);
                    }
                    Event::MediaData(d) => {
                        last_media = Instant::now();
                        input.touch();
                        if let Err(why) = media.data(d) {
                            return why;
                        }
                    }
                    _ => {}
                }
                media.ask_keyframe(&mut rtc);
                continue;
            }
            Err(e) => return format!("WebRTC: {e}"),
        };
        if !connected && started.elapsed() > settings.connect_timeout {
            return format!(
                "no ICE + DTLS connection within {} s",
                settings.connect_timeout.as_secs()
            );
        }
        if connected && last_media.elapsed() > settings.idle_timeout {
            return format!("no media for {} s", settings.idle_timeout.as_secs());
        }
        if !rtc.is_alive() {
            return "the connection closed".into();
        }
        media.ask_keyframe(&mut rtc);
        let now = Instant::now();
        let wait = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        if wait.is_zero() {
            if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                return format!("WebRTC: {e}");
            }
            continue;
        }
        let _ = socket.set_read_timeout(Some(wait));
        let res = match socket.recv_from(&mut buf) {
            Ok((n, source)) => match buf[..n].try_into() {
                Ok(contents) => rtc.handle_input(Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination,
                        contents,
                    },
                )),
                // not STUN, DTLS, RTP or RTCP: ignored
                Err(_) => Ok(()),
            },
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                rtc.handle_input(Input::Timeout(Instant::now()))
            }
            Err(e) => return format!("socket: {e}"),
        };
        if let Err(e) = res {
            return format!("WebRTC: {e}");
        }
    }
}

/// Closes the connection and sends what that says to the peer (DTLS close_notify), so that a
/// browser learns at once that the session ended.
fn hang_up(rtc: &mut Rtc, socket: &UdpSocket) {
    rtc.disconnect();
    for _ in 0..32 {
        match rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(_)) => {}
            _ => return,
        }
    }
}

/// Maps a stream's RTP times onto the sender's wall clock (seconds since the epoch).
#[derive(Default)]
struct SenderClock {
    /// Before the first sender report: wall − RTP seconds, the smallest seen (the packet that
    /// came fastest).
    early: Option<f64>,
    /// The latest report's NTP and RTP times (s).
    last_sr: Option<(f64, f64)>,
    /// Reports that moved the mapping by more than [`SR_MOVE`] (counted as re-anchors): the
    /// sender's capture clock and its RTP clock went apart, e.g. a microphone that fell behind.
    moves: u64,
}

/// A sender report that moves a stream's RTP → wall mapping further than this is counted.
const SR_MOVE: f64 = 0.020;

impl SenderClock {
    fn wall(&mut self, d: &MediaData) -> f64 {
        let sr = d
            .last_sender_info
            .as_ref()
            .map(|si| (epoch_secs(si.ntp_time), si.rtp_time.as_seconds()));
        let since = Instant::now().saturating_duration_since(d.network_time);
        let arrival = epoch_secs(SystemTime::now()) - since.as_secs_f64();
        self.at(d.time.as_seconds(), sr, arrival)
    }

    /// The wall time of RTP time `rtp` (s): by the latest sender report `sr` (its NTP and RTP
    /// times, s) when there is one, else by the earliest arrival so far (this one at
    /// `arrival`).
    fn at(&mut self, rtp: f64, sr: Option<(f64, f64)>, arrival: f64) -> f64 {
        if let Some((ntp, sr_rtp)) = sr {
            if let Some((n0, r0)) = self.last_sr.replace((ntp, sr_rtp)) {
                if (ntp - (n0 + (sr_rtp - r0))).abs() > SR_MOVE {
                    self.moves += 1;
                }
            }
            return ntp + (rtp - sr_rtp);
        }
        let off = self.early.map_or(arrival - rtp, |o| o.min(arrival - rtp));
        self.early = Some(off);
        rtp + off
    }
}

struct VideoDec {
    codec: Codec,
    dec: ff::decoder::Video,
    frame: ff::frame::Video,
    scaler: Option<(
        ff::software::scaling::Context,
        (ff::format::Pixel, u32, u32),
    )>,
}

/// The session's decoders, clocks and counters.
struct Decode {
    target: Arc<dyn FeedTarget>,
    input: Arc<PullInput>,
    camid: Option<String>,
    user: Option<String>,
    pull: PullSettings,
    timeline: Timeline,
    clocks: [SenderClock; 2],
    video: Option<VideoDec>,
    audio: Option<AudioStream>,
    video_mid: Option<Mid>,
    want_keyframe: bool,
    /// No picture decoded yet (a keyframe is asked for every second until one is).
    no_picture: bool,
    last_ask: Option<Instant>,
    size: (u32, u32),
    /// The stats window (bitrate, fps, decode time, the bitrate limit).
    window: Window,
}

const LABEL: &str = "whip";

impl Decode {
    fn new(p: &Publication, settings: &WhipSettings) -> Decode {
        init_ffmpeg();
        Decode {
            target: p.target(),
            input: p.input().clone(),
            camid: p.spec().video.clone(),
            user: p.spec().audio.clone(),
            pull: settings.pull.clone(),
            timeline: Timeline::default(),
            clocks: [SenderClock::default(), SenderClock::default()],
            video: None,
            audio: None,
            video_mid: None,
            want_keyframe: false,
            no_picture: true,
            last_ask: None,
            size: (0, 0),
            window: Window::new(),
        }
    }

    /// Asks the sender for a keyframe (PLI) when one is wanted, at most every 250 ms (every
    /// second while none came yet).
    fn ask_keyframe(&mut self, rtc: &mut Rtc) {
        let Some(mid) = self.video_mid else {
            return;
        };
        let every = Duration::from_millis(if self.want_keyframe { 250 } else { 1000 });
        if !(self.want_keyframe || self.no_picture)
            || self.last_ask.is_some_and(|t| t.elapsed() < every)
        {
            return;
        }
        if let Some(mut w) = rtc.writer(mid) {
            if w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok() {
                self.last_ask = Some(Instant::now());
                self.want_keyframe = false;
            }
        }
    }

    fn data(&mut self, d: MediaData) -> Result<(), String> {
        let size = d.data.len() as u64;
        self.input.update(|s| s.bytes += size);
        self.window.bytes += size;
        let codec = d.params.spec().codec;
        let res = match codec {
            Codec::H264 | Codec::Vp8 => self.video_data(codec, &d),
            Codec::Opus => self.audio_data(&d),
            _ => Ok(()),
        };
        // `--max-input-bitrate`, as the pull feeds apply it
        if let Some(e) = self.window.over(self.pull.max_bitrate) {
            return Err(e);
        }
        let (timeline, clocks) = (&mut self.timeline, &mut self.clocks);
        self.window.roll(&self.input, || {
            std::mem::take(&mut timeline.reanchors)
                + clocks
                    .iter_mut()
                    .map(|c| std::mem::take(&mut c.moves))
                    .sum::<u64>()
        });
        res
    }

    fn now(&self) -> f64 {
        self.target.clock_now().as_secs_f64()
    }

    fn lost(&mut self) {
        self.input.update(|s| s.lost_frames += 1);
    }

    fn video_data(&mut self, codec: Codec, d: &MediaData) -> Result<(), String> {
        let Some(camid) = self.camid.clone() else {
            return Ok(());
        };
        if !d.contiguous {
            // a frame was lost: what follows may not decode until the next keyframe
            self.want_keyframe = true;
        }
        if self.video.as_ref().is_none_or(|v| v.codec != codec) {
            let id = match codec {
                Codec::H264 => ff::codec::Id::H264,
                _ => ff::codec::Id::VP8,
            };
            let c = ff::codec::decoder::find(id).ok_or(format!("no FFmpeg decoder for {id:?}"))?;
            let dec = ff::codec::Context::new_with_codec(c)
                .decoder()
                .video()
                .map_err(|e| format!("video decoder {id:?}: {e}"))?;
            self.video = Some(VideoDec {
                codec,
                dec,
                frame: ff::frame::Video::empty(),
                scaler: None,
            });
        }
        let wall = self.clocks[0].wall(d);
        let now = self.now();
        let capture = self.timeline.capture(Kind::Video, wall, now, 1.0 / 30.0);
        let Some(v) = self.video.as_mut() else {
            return Ok(());
        };
        let t0 = Instant::now();
        // decoded in the host's decode slots, as the pull and publish feeds do
        let slots = self.pull.decode_slots.clone();
        let _slot = slots.acquire();
        let pkt = ff::Packet::copy(&d.data);
        if v.dec.send_packet(&pkt).is_err() {
            self.want_keyframe = true;
            self.lost();
            return Ok(());
        }
        loop {
            let Some(v) = self.video.as_mut() else {
                return Ok(());
            };
            match v.dec.receive_frame(&mut v.frame) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(_) => {
                    self.want_keyframe = true;
                    self.lost();
                    break;
                }
            }
            let (w, h) = (v.frame.width(), v.frame.height());
            check_size(w, h, &self.pull)?;
            let frame = match convert_frame(&v.frame, &mut v.scaler, Path::new(LABEL)) {
                Ok(f) => f.with_pts(capture),
                Err(e) => {
                    tracing::warn!(error = %e, "WHIP video frame dropped");
                    self.lost();
                    continue;
                }
            };
            if (w, h) != self.size {
                self.size = (w, h);
                self.input.update(|s| (s.width, s.height) = (w, h));
            }
            self.no_picture = false;
            self.window.frames += 1;
            self.window.decode += t0.elapsed();
            match self.target.push_video_at(&camid, frame, capture) {
                Ok(()) => self.input.update(|s| s.video_frames += 1),
                Err(MixerError::Backlog(_)) => self.lost(),
                Err(e) => return Err(format!("the room took no more video: {e}")),
            }
        }
        Ok(())
    }

    fn audio_data(&mut self, d: &MediaData) -> Result<(), String> {
        let Some(user) = self.user.clone() else {
            return Ok(());
        };
        if self.audio.is_none() {
            self.audio = Some(open_opus()?);
        }
        let wall = self.clocks[1].wall(d);
        let now = self.now();
        let capture = self.timeline.capture(Kind::Audio, wall, now, 0.02);
        let Some(a) = self.audio.as_mut() else {
            return Ok(());
        };
        let pkt = ff::Packet::copy(&d.data);
        if a.dec.send_packet(&pkt).is_err() {
            self.lost();
            return Ok(());
        }
        // the chunks of this packet follow each other from its capture time
        let mut at = capture;
        loop {
            let Some(a) = self.audio.as_mut() else {
                return Ok(());
            };
            match a.dec.receive_frame(&mut a.frame) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(_) => {
                    self.lost();
                    break;
                }
            }
            let chunk = match a.convert_frame() {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(_) => {
                    self.lost();
                    continue;
                }
            };
            let frames = chunk.samples.len() / usize::from(chunk.channels.max(1));
            let step = Duration::from_secs_f64(frames as f64 / f64::from(chunk.sample_rate.max(1)));
            let f =
                match AudioFrame::f32_interleaved(chunk.samples, chunk.sample_rate, chunk.channels)
                {
                    Ok(f) => f.with_capture(at),
                    Err(_) => {
                        self.lost();
                        continue;
                    }
                };
            at += step;
            match self.target.push_audio(&user, f) {
                Ok(()) => self.input.update(|s| s.audio_chunks += 1),
                Err(MixerError::Backlog(_)) => self.lost(),
                Err(e) => return Err(format!("the room took no more audio: {e}")),
            }
        }
        Ok(())
    }
}

/// FFmpeg's Opus decoder for WebRTC's Opus (48 kHz, two channels as SDP always says).
fn open_opus() -> Result<AudioStream, String> {
    let mut params = ff::codec::Parameters::new();
    // SAFETY: a freshly allocated AVCodecParameters that only this function holds.
    unsafe {
        let p = params.as_mut_ptr();
        (*p).codec_type = ff::ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
        (*p).codec_id = ff::ffi::AVCodecID::AV_CODEC_ID_OPUS;
        (*p).sample_rate = 48_000;
        ff::ffi::av_channel_layout_default(&mut (*p).ch_layout, 2);
    }
    AudioStream::open(params, ff::Rational::new(1, 48_000), 0, Path::new(LABEL))
        .map_err(|e| format!("Opus decoder: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_reports_map_rtp_onto_the_wall_clock() {
        let mut c = SenderClock::default();
        // before a report: the earliest arrival anchors the RTP clock
        assert_eq!(c.at(10.0, None, 1000.05), 1000.05);
        assert!((c.at(10.02, None, 1000.09) - 1000.07).abs() < 1e-9);
        // a packet that came faster moves the anchor earlier
        assert!((c.at(10.04, None, 1000.08) - 1000.08).abs() < 1e-9);
        assert!((c.at(10.06, None, 1000.2) - 1000.10).abs() < 1e-9);
        // with a report: its NTP time at its RTP time, whatever the arrival
        let sr = Some((2000.0, 10.0));
        assert!((c.at(10.5, sr, 5.0) - 2000.5).abs() < 1e-9);
        assert!((c.at(9.9, sr, 5.0) - 1999.9).abs() < 1e-9);
        // a later report on the same line moves nothing; one 80 ms off is counted
        assert!((c.at(15.5, Some((2005.0, 15.0)), 0.0) - 2005.5).abs() < 1e-9);
        assert_eq!(c.moves, 0);
        assert!((c.at(20.5, Some((2010.08, 20.0)), 0.0) - 2010.58).abs() < 1e-9);
        assert_eq!(c.moves, 1);
    }

    #[test]
    fn udp_ranges_parse() {
        let s = WhipSettings::parse_udp("127.0.0.1:40000-40100").unwrap();
        assert_eq!(
            (s.ip, s.port_min, s.port_max, s.max_sessions()),
            ("127.0.0.1".parse().unwrap(), 40000, 40100, 101)
        );
        let s = WhipSettings::parse_udp("[::1]:5000").unwrap();
        assert_eq!((s.port_min, s.port_max), (5000, 5000));
        for bad in [
            "127.0.0.1",
            "x:1-2",
            "127.0.0.1:5-4",
            "127.0.0.1:0-3",
            ":1-2",
        ] {
            assert!(WhipSettings::parse_udp(bad).is_err(), "{bad}");
        }
    }
}
