//! Publish listeners: publishers push a camera into a running room over RTMP or SRT, on one
//! port each for all rooms (`cloudmixer serve --rtmp-listen`, `--srt-listen`).
//!
//! - **Addressing**: RTMP `rtmp://HOST:PORT/live/{mixerID}/{camid}` (FFmpeg sends app
//!   `live/{mixerID}` and stream key `{camid}`; a client that is given the server
//!   `rtmp://HOST:PORT/live` and the key `{mixerID}/{camid}` sends app `live`: both are the same
//!   path, [`parse_rtmp`]). SRT: the caller's `streamid` is `live/{mixerID}/{camid}`,
//!   `{mixerID}/{camid}` or the access-control form `#!::r={mixerID}/{camid},m=publish`
//!   ([`parse_streamid`]). The video feeds that camid, the audio its user (`Usr1` for
//!   `Usr1.-1`), as [`Host::publish`] decides.
//! - **Refusals**: the camera is taken with [`Host::publish`] before any media is read: an
//!   unknown mixer, an ended room, a bad camid, a camera that the room's inputs or another
//!   publisher feed are refused: RTMP answers the publish with an error status and hangs up
//!   (FFmpeg exits non-zero), SRT rejects the caller at its handshake.
//! - **Protocols by crates, media by FFmpeg**: the RTMP handshake and session (chunk stream,
//!   AMF0 commands, acknowledgements) are `rml_rtmp`'s; its audio and video messages are FLV tag
//!   bodies, so [`flv`] re-wraps them as an FLV byte stream. SRT is `srt-tokio` (pure Rust): its
//!   listener hands over each caller's `streamid` at the handshake, so one port serves every
//!   room and a refused caller is rejected there (FFmpeg's own SRT listener takes a single
//!   caller and does not tell its streamid). Its payload is MPEG-TS. Either byte stream goes
//!   into an OS pipe whose read end FFmpeg opens as `pipe:FD` (nothing but the `pipe` protocol
//!   allowed) and demuxes; the pull feed's connection code ([`super::pull`]) decodes it, maps
//!   the timestamps onto the mixer clock (jumps and wraps continued), paces it, applies the
//!   size and bitrate limits of [`PullSettings`] and keeps the input's state and counters (the
//!   room's `inputStates`, `/metrics`, `inputStateChanged`).
//! - **Back-pressure and ends**: a decoder that falls behind fills the pipe, which stops the
//!   reading of the publisher's socket (TCP pushes back on an RTMP publisher; SRT, live, drops
//!   late packets). A publisher that sends nothing for [`PullSettings::stall_after`] is
//!   `stalled`. A publisher that leaves, sends nothing for [`PullSettings::io_timeout`], or
//!   whose stream is dropped (over a limit, undecodable) is hung up on and its camera let go:
//!   the input turns `idle` (with the error, if any) and the mixer shows the placeholder after
//!   its `source_timeout`; a later publish takes the camera again. A room that ends hangs up
//!   on its publishers. Both pipe ends are closed when the connection ends.
//! - **Limits**: at most [`MAX_CONNECTIONS`] connections per listener. Dropping a [`Listener`]
//!   stops taking new publishers; the ones publishing go on until they leave or their room
//!   ends (a drain stops the rooms).

pub mod flv;
pub mod rtmp;
pub mod srt;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ffmpeg_next as ff;

use super::pull::{InputState, PullSettings};
use crate::host::{Host, Publication};

/// Connections (or publishers) one listener takes at once, at most.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a blocking read of a publisher's socket waits before the stop flags are looked at.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// Splits a publish path `[/]live/{mixerID}/{camid}` (`live/` optional unless `live` is
/// true; a `?query` is ignored) into (mixerID, camid).
///
/// ```
/// use cloudmixer::host::feed::publish::parse_path;
/// assert_eq!(parse_path("/live/room1/Usr1.-1", true).unwrap(), ("room1".into(), "Usr1.-1".into()));
/// assert_eq!(parse_path("room1/Usr1.-1", false).unwrap(), ("room1".into(), "Usr1.-1".into()));
/// assert!(parse_path("room1/Usr1.-1", true).is_err());
/// ```
pub fn parse_path(path: &str, live: bool) -> Result<(String, String), String> {
    // (a query may hold a token: the errors, which are logged, name the path without it)
    let path = path.split('?').next().unwrap_or_default();
    let p = path.strip_prefix('/').unwrap_or(path);
    let rest = match p.strip_prefix("live/") {
        Some(r) => r,
        None if live => {
            return Err(format!(
                "{path:?}: expected live/{{mixerID}}/{{camid}} (the application is live)"
            ))
        }
        None => p,
    };
    match rest.split_once('/') {
        Some((m, c)) if !m.is_empty() && !c.is_empty() && !c.contains('/') => {
            Ok((m.to_string(), c.to_string()))
        }
        _ => Err(format!(
            "{path:?}: expected live/{{mixerID}}/{{camid}}, e.g. live/room1/Usr1.-1"
        )),
    }
}

/// The `key` parameter of a path's `?query` (`live/room1/Usr1.-1?key=K` → `K`).
pub fn key_of_path(path: &str) -> Option<&str> {
    let (_, q) = path.split_once('?')?;
    q.split('&').find_map(|kv| kv.strip_prefix("key="))
}

/// The publish key of an SRT `streamid`: `s=` of an access-control one, else `?key=`.
pub fn key_of_streamid(sid: &str) -> Option<&str> {
    match sid.strip_prefix("#!::") {
        Some(acl) => acl.split(',').find_map(|kv| kv.strip_prefix("s=")),
        None => key_of_path(sid),
    }
}

/// Why a publish was refused: the publish key, or the host ([`Host::publish`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// Missing or wrong (never the key itself).
    #[error("{0}")]
    Key(String),
    /// Unknown mixer, busy camera, bad camid, ended room, draining.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
}

/// Takes camera `camid` of room `mixer` for a publisher that gave `key`: the host's publish
/// key, when it asks for one, is checked first (an unauthenticated caller learns nothing of the
/// rooms), then [`Host::publish`].
pub(crate) fn take(
    host: &Host,
    mixer: &str,
    camid: &str,
    key: Option<&str>,
    source: &str,
) -> Result<Publication, Refused> {
    if let Some(k) = &host.settings().publish_key {
        k.check(key).map_err(Refused::Key)?;
    }
    Ok(host.publish(mixer, camid, source)?)
}

/// The (mixerID, camid) of an RTMP publish: the application and the stream key joined
/// (`live/room1` + `Usr1.-1`, or `live` + `room1/Usr1.-1`).
pub fn parse_rtmp(app: &str, key: &str) -> Result<(String, String), String> {
    parse_path(&format!("{}/{key}", app.trim_end_matches('/')), true)
}

/// The (mixerID, camid) of an SRT caller's `streamid`: `live/{mixerID}/{camid}`,
/// `{mixerID}/{camid}`, or `#!::r={mixerID}/{camid},m=publish` (SRT's access-control syntax;
/// a mode other than `publish` is refused; the errors do not quote the other keys, which may
/// hold a session token).
pub fn parse_streamid(sid: &str) -> Result<(String, String), String> {
    let Some(acl) = sid.strip_prefix("#!::") else {
        return parse_path(sid, false);
    };
    let mut resource = None;
    for kv in acl.split(',') {
        match kv.split_once('=') {
            Some(("r", v)) => resource = Some(v),
            Some(("m", m)) if m != "publish" => {
                return Err(format!(
                    "streamid: mode {m:?} is not taken (only m=publish)"
                ))
            }
            _ => {}
        }
    }
    match resource {
        Some(r) => parse_path(r, false),
        None => Err("streamid: no r={mixerID}/{camid} resource".to_string()),
    }
}

/// The publish listeners of one host; dropping it stops them ([`Listener`]).
#[derive(Default)]
pub struct Listeners {
    list: Vec<Listener>,
}

impl Listeners {
    /// Starts the RTMP and SRT listeners asked for (`None`: not that one), on `host`'s rooms.
    pub fn start(
        host: &Host,
        rtmp: Option<std::net::SocketAddr>,
        srt: Option<std::net::SocketAddr>,
    ) -> std::io::Result<Listeners> {
        let mut list = Vec::new();
        if let Some(a) = rtmp {
            list.push(rtmp::listen(host.clone(), a)?);
        }
        if let Some(a) = srt {
            list.push(srt::listen(host.clone(), a)?);
        }
        Ok(Listeners { list })
    }

    /// The listeners' addresses (the port given, or the one chosen for port 0).
    pub fn addrs(&self) -> Vec<(&'static str, std::net::SocketAddr)> {
        self.list.iter().map(|l| (l.proto, l.addr)).collect()
    }

    /// Stops taking new publishers (at once; the ones publishing go on).
    pub fn stop_accepting(&self) {
        for l in &self.list {
            l.stop_accepting();
        }
    }

    /// Stops taking new publishers and waits (`limit` at most) for the listeners to end,
    /// which they do once their publishers ended: true when they did.
    pub fn shutdown(&mut self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        self.list
            .iter_mut()
            .all(|l| l.shutdown(until.saturating_duration_since(Instant::now())))
    }
}

/// One listener's accept thread. Dropping it stops taking new publishers and waits (5 s at
/// most) for the ones publishing to end (an SRT listener's socket carries its publishers'
/// connections: it closes after the last one).
pub struct Listener {
    proto: &'static str,
    addr: std::net::SocketAddr,
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// `rtmp` or `srt`.
    pub fn proto(&self) -> &'static str {
        self.proto
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops taking new publishers (at once; the ones publishing go on).
    pub fn stop_accepting(&self) {
        self.quit.store(true, Ordering::Relaxed);
    }

    /// Stops taking new publishers and waits (`limit` at most) for the accept thread, which
    /// ends once its publishers did: true when it ended.
    pub fn shutdown(&mut self, limit: Duration) -> bool {
        self.stop_accepting();
        let until = Instant::now() + limit;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        true
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5));
    }
}

/// A slot of a listener's connection count, given back when dropped.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot of `count`, or `None` when [`MAX_CONNECTIONS`] are taken.
    pub(crate) fn take(count: &Arc<AtomicUsize>) -> Option<Slot> {
        let n = count.fetch_add(1, Ordering::AcqRel);
        if n >= MAX_CONNECTIONS {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a publisher's read gave.
pub(crate) enum Read {
    /// Bytes of the container appended to the buffer (none: only control messages came).
    Data,
    /// Nothing within [`POLL`].
    Nothing,
    /// The publisher left or broke the protocol (why).
    End(String),
}

/// A pipe (read end, write end), both close-on-exec, the write end's buffer raised to 1 MiB
/// where the system lets it (bursts of a key frame do not stall the publisher's socket).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is two ints, as pipe2 wants; on success both are new descriptors we own
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just opened and are owned by nothing else
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: a plain fcntl on our descriptor; a failure leaves the default size
    unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    Ok((rd, wr))
}

/// Runs one publisher's stream until it ends: `header` and what `read` appends go into a
/// pipe that a decoder thread opens with FFmpeg (`pipe:FD`) and feeds into the publication's
/// target ([`super::pull::feed_once`]). Ends when the publisher leaves (`read` says
/// [`Read::End`]), sends nothing for `io_timeout`, the decoder ends (the stream was dropped)
/// or the room ends; then closes the pipe, waits for the decoder and lets the camera go (the
/// input `idle` with why, unless the room ended). Returns why it ended (for the log).
pub(crate) fn pump(
    publication: Publication,
    settings: &PullSettings,
    header: &[u8],
    mut read: impl FnMut(&mut Vec<u8>) -> Read,
) -> String {
    let input = publication.input().clone();
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            let why = format!("cannot make a pipe: {e}");
            publication.end(&why);
            return why;
        }
    };
    let target = publication.target();
    let stop = publication.stop_flag();
    let spec = publication.spec().clone();
    let s = settings.clone();
    let decoder_input = input.clone();
    let decoder = std::thread::Builder::new()
        .name(format!("cm-pub-{}", spec.key))
        .spawn(move || {
            let url = format!("pipe:{}", rd.as_raw_fd());
            let mut opts = ff::Dictionary::new();
            opts.set("protocol_whitelist", "pipe");
            opts.set("analyzeduration", &s.probe.as_micros().to_string());
            let r = super::pull::feed_once(&*target, stop, &spec, &s, decoder_input, &url, opts);
            // FFmpeg's pipe protocol does not close the descriptor: the read end is ours,
            // closed here once the input is
            drop(rd);
            r
        });
    let decoder = match decoder {
        Ok(d) => d,
        Err(e) => {
            let why = format!("cannot start a decoder: {e}");
            publication.end(&why);
            return why;
        }
    };
    let mut w = File::from(wr);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut last = Instant::now();
    let mut why = match w.write_all(header) {
        Ok(()) => None,
        Err(e) => Some(format!("the decoder is gone: {e}")),
    };
    while why.is_none() {
        if publication.stopped() {
            why = Some("the mixer ended".into());
        } else if decoder.is_finished() {
            why = Some("the decoder ended".into());
        } else {
            buf.clear();
            match read(&mut buf) {
                // (media, not control messages alone, keeps a publisher's hold)
                Read::Data if !buf.is_empty() => {
                    last = Instant::now();
                    input.touch();
                    if let Err(e) = w.write_all(&buf) {
                        why = Some(format!("the decoder is gone: {e}"));
                    }
                }
                Read::Data | Read::Nothing => {
                    let idle = last.elapsed();
                    // (the decoder, blocked on the pipe, cannot tell; its next packet says
                    // `live` again)
                    if idle > settings.stall_after && input.lock().state == InputState::Live {
                        input.set_state(
                            InputState::Stalled,
                            &format!("no data for {:.1} s", idle.as_secs_f64()),
                        );
                    }
                    if idle > settings.io_timeout {
                        why = Some(format!(
                            "no data for {:.0} s",
                            settings.io_timeout.as_secs_f64()
                        ));
                    }
                }
                Read::End(w) => why = Some(w),
            }
        }
    }
    // end of stream for the decoder: it decodes what the pipe holds and ends
    drop(w);
    let mut why = why.unwrap_or_default();
    match decoder.join() {
        Ok(Err(e)) if e != "the stream ended" => why = e,
        Err(_) => why = "the decoder failed".into(),
        _ => {}
    }
    publication.end(&why);
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_keys_are_read_from_the_query_or_the_access_control_streamid() {
        assert_eq!(key_of_path("live/r/Usr1.-1?a=1&key=K1"), Some("K1"));
        assert_eq!(key_of_path("live/r/Usr1.-1"), None);
        assert_eq!(
            key_of_streamid("#!::r=r/Usr1.-1,m=publish,s=K2"),
            Some("K2")
        );
        assert_eq!(key_of_streamid("#!::r=r/Usr1.-1,m=publish"), None);
        assert_eq!(key_of_streamid("live/r/Usr1.-1?key=K3"), Some("K3"));
        // the path is parsed without its query either way
        assert_eq!(
            parse_rtmp("live/r", "Usr1.-1?key=K1").unwrap(),
            ("r".to_string(), "Usr1.-1".to_string())
        );
    }

    #[test]
    fn paths_keys_and_streamids_name_a_mixer_and_camera() {
        let ok = |r: Result<(String, String), String>| r.unwrap();
        let want = ("room1".to_string(), "Usr1.-1".to_string());
        assert_eq!(ok(parse_rtmp("live/room1", "Usr1.-1")), want);
        assert_eq!(ok(parse_rtmp("live", "room1/Usr1.-1")), want);
        assert_eq!(ok(parse_rtmp("live/", "room1/Usr1.-1?token=x")), want);
        assert!(parse_rtmp("app", "room1/Usr1.-1").is_err());
        let e = parse_rtmp("live", "room1?token=secret").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(parse_rtmp("live", "Usr1.-1").is_err());
        assert!(parse_rtmp("live/room1", "a/Usr1.-1").is_err());
        assert!(parse_rtmp("live/", "/Usr1.-1").is_err());
        assert_eq!(ok(parse_streamid("live/room1/Usr1.-1")), want);
        assert_eq!(ok(parse_streamid("room1/Usr1.-1")), want);
        assert_eq!(ok(parse_streamid("#!::r=room1/Usr1.-1,m=publish")), want);
        assert_eq!(ok(parse_streamid("#!::u=bob,r=live/room1/Usr1.-1")), want);
        assert!(parse_streamid("#!::r=room1/Usr1.-1,m=request").is_err());
        let e = parse_streamid("#!::u=bob,s=secret,m=publish").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(parse_streamid("").is_err());
        assert!(parse_streamid("room1").is_err());
        assert!(parse_streamid("room1/").is_err());
    }

    #[test]
    fn slots_are_capped_and_given_back() {
        let c = Arc::new(AtomicUsize::new(0));
        let held: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|_| Slot::take(&c).unwrap())
            .collect();
        assert!(Slot::take(&c).is_none());
        drop(held);
        assert_eq!(c.load(Ordering::Relaxed), 0);
        assert!(Slot::take(&c).is_some());
    }
}
