//! The RTMP publish listener: a thread accepting TCP, a thread per connection that does the
//! handshake and the server session (`rml_rtmp`), takes the camera named by the publish
//! ([`super::parse_rtmp`], [`Host::publish`]) and hands the audio and video messages, as FLV,
//! to the decoder (`pump`, a pipe into FFmpeg).

use std::io::{ErrorKind, Read as _, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

use super::{flv, Listener, Read, Slot, POLL};
use crate::host::{Host, Publication};

/// How long a connection may take from accept to its publish request.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Listens for RTMP publishers on `addr` (see the [module docs](super)).
pub fn listen(host: Host, addr: SocketAddr) -> std::io::Result<Listener> {
    let sock = TcpListener::bind(addr)?;
    let addr = sock.local_addr()?;
    // accept polls, so that the listener sees its quit flag
    sock.set_nonblocking(true)?;
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    let thread = std::thread::Builder::new()
        .name("cm-rtmp-listen".into())
        .spawn(move || accept_loop(host, sock, q))?;
    tracing::info!(%addr, "RTMP publish listener");
    Ok(Listener {
        proto: "rtmp",
        addr,
        quit,
        thread: Some(thread),
    })
}

fn accept_loop(host: Host, sock: TcpListener, quit: Arc<AtomicBool>) {
    let count = Arc::new(AtomicUsize::new(0));
    while !quit.load(Ordering::Relaxed) {
        let (stream, peer) = match sock.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "RTMP accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(slot) = Slot::take(&count) else {
            tracing::warn!(%peer, "RTMP publisher refused: too many connections");
            continue;
        };
        let (h, q) = (host.clone(), quit.clone());
        let spawned = std::thread::Builder::new()
            .name("cm-rtmp-conn".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(why) = connection(&h, stream, peer, &q) {
                    tracing::warn!(%peer, reason = %why, "RTMP publisher refused");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(%peer, error = %e, "RTMP connection not served");
        }
    }
}

/// Writes the session's responses to the peer; the events are returned.
fn flush(
    sock: &mut TcpStream,
    results: Vec<ServerSessionResult>,
) -> Result<Vec<ServerSessionEvent>, String> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ServerSessionResult::OutboundResponse(p) => sock
                .write_all(&p.bytes)
                .map_err(|e| format!("writing: {e}"))?,
            ServerSessionResult::RaisedEvent(e) => events.push(e),
            ServerSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    Ok(events)
}

/// Reads what the peer sent within [`POLL`]: `Ok(None)` when nothing came.
fn read_some(sock: &mut TcpStream, buf: &mut [u8]) -> Result<Option<usize>, String> {
    match sock.read(buf) {
        Ok(0) => Err("the publisher left".into()),
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(format!("reading: {e}")),
    }
}

/// One connection: handshake, session, publish, then the stream until it ends. `Err`: why it
/// was refused (before it published).
fn connection(
    host: &Host,
    mut sock: TcpStream,
    peer: SocketAddr,
    quit: &AtomicBool,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    sock.set_nonblocking(false).map_err(io)?;
    sock.set_read_timeout(Some(POLL)).map_err(io)?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let _ = sock.set_nodelay(true);
    let t0 = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let setup = |quit: &AtomicBool| {
        if quit.load(Ordering::Relaxed) {
            Err("the service stops".to_string())
        } else if t0.elapsed() > SETUP_TIMEOUT {
            Err(format!(
                "no publish request within {} s",
                SETUP_TIMEOUT.as_secs()
            ))
        } else {
            Ok(())
        }
    };
    // the handshake
    let mut hs = Handshake::new(PeerType::Server);
    let rest = loop {
        setup(quit)?;
        let Some(n) = read_some(&mut sock, &mut buf)? else {
            continue;
        };
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| format!("handshake: {e}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).map_err(io)?
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).map_err(io)?;
                break remaining_bytes;
            }
        }
    };
    let (mut session, first) =
        ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("session: {e}"))?;
    flush(&mut sock, first)?;
    // connect, createStream …, publish
    let mut pending = rest;
    let (publication, key) = 'setup: loop {
        let results = session
            .handle_input(&pending)
            .map_err(|e| format!("session: {e}"))?;
        for ev in flush(&mut sock, results)? {
            match ev {
                ServerSessionEvent::ConnectionRequested {
                    request_id,
                    app_name,
                } => {
                    if app_name != "live" && !app_name.starts_with("live/") {
                        let r = session
                            .reject_request(request_id, "NetConnection.Connect.Rejected", "")
                            .map_err(|e| format!("session: {e}"))?;
                        let _ = flush(&mut sock, r);
                        let app = app_name.split('?').next().unwrap_or_default();
                        return Err(format!(
                            "application {app:?}: expected live/{{mixerID}}/{{camid}}"
                        ));
                    }
                    let r = session
                        .accept_request(request_id)
                        .map_err(|e| format!("session: {e}"))?;
                    flush(&mut sock, r)?;
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    app_name,
                    stream_key,
                    ..
                } => {
                    let path = format!("{app_name}/{stream_key}");
                    let taken = super::parse_rtmp(&app_name, &stream_key).and_then(|(m, c)| {
                        let source = format!("rtmp://{peer}");
                        super::take(host, &m, &c, super::key_of_path(&path), &source)
                            .map_err(|e| format!("{m}/{c}: {e}"))
                    });
                    match taken {
                        Ok(p) => {
                            let r = session
                                .accept_request(request_id)
                                .map_err(|e| format!("session: {e}"))?;
                            flush(&mut sock, r)?;
                            break 'setup (p, stream_key);
                        }
                        Err(why) => {
                            if let Ok(r) = session.reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                &why,
                            ) {
                                let _ = flush(&mut sock, r);
                            }
                            return Err(why);
                        }
                    }
                }
                ServerSessionEvent::PlayStreamRequested { .. } => {
                    return Err("a player: this listener takes publishers only".into())
                }
                _ => {}
            }
        }
        pending.clear();
        while pending.is_empty() {
            setup(quit)?;
            if let Some(n) = read_some(&mut sock, &mut buf)? {
                pending.extend_from_slice(&buf[..n]);
            }
        }
    };
    let settings = host.settings().pull.clone();
    tracing::info!(%peer, input = %publication.spec().key, "RTMP publisher live");
    let why = stream(publication, &settings, sock, session, key);
    tracing::info!(%peer, reason = %why, "RTMP publisher ended");
    Ok(())
}

/// The published stream: its messages, as FLV, into the decoder until it ends.
fn stream(
    publication: Publication,
    settings: &super::PullSettings,
    mut sock: TcpStream,
    mut session: ServerSession,
    key: String,
) -> String {
    let mut rbuf = vec![0u8; 64 * 1024];
    let read = |out: &mut Vec<u8>| {
        let n = match read_some(&mut sock, &mut rbuf) {
            Ok(Some(n)) => n,
            Ok(None) => return Read::Nothing,
            Err(why) => return Read::End(why),
        };
        let results = match session.handle_input(&rbuf[..n]) {
            Ok(r) => r,
            Err(e) => return Read::End(format!("session: {e}")),
        };
        let events = match flush(&mut sock, results) {
            Ok(e) => e,
            Err(why) => return Read::End(why),
        };
        for ev in events {
            let (kind, data, ts) = match ev {
                ServerSessionEvent::VideoDataReceived {
                    stream_key,
                    data,
                    timestamp,
                    ..
                } if stream_key == key => (flv::VIDEO, data, timestamp),
                ServerSessionEvent::AudioDataReceived {
                    stream_key,
                    data,
                    timestamp,
                    ..
                } if stream_key == key => (flv::AUDIO, data, timestamp),
                ServerSessionEvent::PublishStreamFinished { .. } => {
                    return Read::End("the publisher left".into())
                }
                ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                    // one stream per connection
                    if let Ok(r) = session.reject_request(
                        request_id,
                        "NetStream.Publish.BadName",
                        "one stream per connection",
                    ) {
                        let _ = flush(&mut sock, r);
                    }
                    continue;
                }
                _ => continue,
            };
            if !flv::write_tag(out, kind, ts.value, &data) {
                return Read::End("a message of 16 MiB or more".into());
            }
        }
        Read::Data
    };
    let why = super::pump(publication, settings, &flv::header(), read);
    let _ = sock.shutdown(std::net::Shutdown::Both);
    why
}
