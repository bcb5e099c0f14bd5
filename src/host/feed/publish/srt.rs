//! The SRT publish listener (`srt-tokio`, on a small tokio runtime of its own): each caller's
//! `streamid` ([`super::parse_streamid`]) is checked at the handshake, the camera taken with
//! [`Host::publish`] (or the caller rejected: unknown mixer, busy camera, bad streamid), then
//! a thread per publisher hands its MPEG-TS payload to the decoder (`pump`, a pipe into
//! FFmpeg).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};

use super::{Listener, Read, Slot, POLL};
use crate::host::{ErrorKind, Host, Publication};

/// Listens for SRT callers on `addr` (UDP; see the [module docs](super)).
pub fn listen(host: Host, addr: SocketAddr) -> std::io::Result<Listener> {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cm-srt")
            .enable_all()
            .build()?,
    );
    // bound here, so that port 0 gives the port chosen
    let udp = std::net::UdpSocket::bind(addr)?;
    let local = udp.local_addr()?;
    udp.set_nonblocking(true)?;
    let (listener, incoming) = rt.block_on(async {
        let sock = tokio::net::UdpSocket::from_std(udp)?;
        SrtListener::builder().socket(sock).bind(local).await
    })?;
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    let thread = std::thread::Builder::new()
        .name("cm-srt-listen".into())
        .spawn(move || accept_loop(host, rt, listener, incoming, q))?;
    tracing::info!(addr = %local, "SRT publish listener");
    Ok(Listener {
        proto: "srt",
        addr: local,
        quit,
        thread: Some(thread),
    })
}

fn accept_loop(
    host: Host,
    rt: Arc<tokio::runtime::Runtime>,
    mut listener: SrtListener,
    mut incoming: srt_tokio::SrtIncoming,
    quit: Arc<AtomicBool>,
) {
    let count = Arc::new(AtomicUsize::new(0));
    // the listener's socket carries its publishers' packets: after quit it stays open, taking
    // no one, until they ended
    while !quit.load(Ordering::Relaxed) || count.load(Ordering::Acquire) > 0 {
        let next =
            rt.block_on(async { tokio::time::timeout(POLL, incoming.incoming().next()).await });
        let req = match next {
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(r)) => r,
        };
        let peer = req.remote();
        if quit.load(Ordering::Relaxed) {
            tracing::warn!(%peer, "SRT publisher refused: the service stops");
            let _ = rt.block_on(req.reject(RejectReason::Server(ServerRejectReason::Down)));
            continue;
        }
        let Some(slot) = Slot::take(&count) else {
            tracing::warn!(%peer, "SRT publisher refused: too many publishers");
            let _ = rt.block_on(req.reject(RejectReason::Server(ServerRejectReason::Overload)));
            continue;
        };
        let (publication, socket) = match rt.block_on(take(&host, req)) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(%peer, reason = %why, "SRT publisher refused");
                continue;
            }
        };
        let settings = host.settings().pull.clone();
        let rt2 = rt.clone();
        let spawned = std::thread::Builder::new()
            .name("cm-srt-conn".into())
            .spawn(move || {
                let _slot = slot;
                tracing::info!(%peer, input = %publication.spec().key, "SRT publisher live");
                let why = stream(&rt2, publication, &settings, socket);
                tracing::info!(%peer, reason = %why, "SRT publisher ended");
            });
        if let Err(e) = spawned {
            tracing::warn!(%peer, error = %e, "SRT publisher not served");
        }
    }
    rt.block_on(listener.close());
}

/// Takes the camera the caller's streamid names and accepts it, or rejects it (why).
async fn take(host: &Host, req: ConnectionRequest) -> Result<(Publication, SrtSocket), String> {
    let peer = req.remote();
    let sid = req.stream_id().map(|s| s.to_string()).unwrap_or_default();
    let taken = super::parse_streamid(&sid)
        .map_err(|e| (ServerRejectReason::BadRequest, e))
        .and_then(|(m, c)| {
            let source = format!("srt://{peer}");
            super::take(host, &m, &c, super::key_of_streamid(&sid), &source).map_err(|e| {
                let reason = match &e {
                    super::Refused::Key(_) => ServerRejectReason::Unauthorized,
                    super::Refused::Host(h) => match h.kind() {
                        ErrorKind::NotFound => ServerRejectReason::Notfound,
                        ErrorKind::Conflict => ServerRejectReason::Conflict,
                        ErrorKind::BadRequest => ServerRejectReason::BadRequest,
                        _ => ServerRejectReason::Unacceptable,
                    },
                };
                (reason, format!("{m}/{c}: {e}"))
            })
        });
    match taken {
        Ok(p) => match req.accept(None).await {
            Ok(s) => Ok((p, s)),
            Err(e) => Err(format!("accepting: {e}")),
        },
        Err((reason, why)) => {
            let _ = req.reject(RejectReason::Server(reason)).await;
            Err(why)
        }
    }
}

/// The published stream: its MPEG-TS payload into the decoder until it ends.
fn stream(
    rt: &tokio::runtime::Runtime,
    publication: Publication,
    settings: &super::PullSettings,
    mut socket: SrtSocket,
) -> String {
    let read = |out: &mut Vec<u8>| match rt
        .block_on(async { tokio::time::timeout(POLL, socket.next()).await })
    {
        Err(_) => Read::Nothing,
        Ok(None) => Read::End("the publisher left".into()),
        Ok(Some(Err(e))) => Read::End(format!("reading: {e}")),
        Ok(Some(Ok((_, data)))) => {
            out.extend_from_slice(&data);
            Read::Data
        }
    };
    let why = super::pump(publication, settings, &[], read);
    let _ = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(1), socket.close_and_finish()).await
    });

    why
}
