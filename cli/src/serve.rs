//! `cloudmixer serve`: the mixer API over HTTP (see `cloudmixer::serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cloudmixer::compose::Backend;
use cloudmixer::host::feed::whip::{Whip, WhipSettings};
use cloudmixer::host::{Host, HostSettings};
use cloudmixer::serve::{check_options, ServeOptions, WhipOptions};

/// `serve --help`: signals and exit statuses (also in README.md).
pub const SERVE_EXIT_HELP: &str = "\
Signals: the first SIGTERM or SIGINT stops taking mixers (/readyz answers 503) and new
publishers (RTMP, SRT, WHIP), lets running mixers and their publishers go on for up to
--drain-timeout seconds (default 0), then stops each one with what was captured until then,
hangs up on its publishers, finalises every file and exits 0. A second SIGTERM or SIGINT exits at once
with status 128+signal (143, 130); the fragmented mp4 files written so far still play.

Exit status: 0 after a drain, 2 bad usage (options, token file, address), 1 the server failed.";

/// Options of `cloudmixer serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Without --token-file only a loopback address is taken.
    #[arg(long, default_value = "127.0.0.1:8780")]
    listen: SocketAddr,
    /// Storage root: every mixer's files are written under it.
    #[arg(long)]
    storage: PathBuf,
    /// Where `file:` inputs are read from (default: the storage root); nothing outside it.
    #[arg(long, value_name = "DIR")]
    media_root: Option<PathBuf>,
    /// A file holding the bearer token every route but /healthz needs (16+ printable
    /// characters; a trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Mixers recording at once, at most: a create beyond it is refused (503, code 907).
    #[arg(long, value_name = "N")]
    max_rooms: Option<usize>,
    /// On SIGTERM, how long running mixers may go on before they are stopped.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    drain_timeout: f64,
    /// Compositor backend of every mixer.
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Real-time latency in ms: media captured at t is composed at t + this.
    #[arg(long, value_name = "MS")]
    latency: Option<u64>,
    /// Cores one mixer is assumed to cost until the service has measured its mixers (the
    /// capacity estimate, /metrics cloudmixer_capacity_rooms).
    #[arg(long, value_name = "CORES", default_value_t = cloudmixer::host::capacity::DEFAULT_ROOM_COST)]
    room_cost: f64,
    /// Cores the mixers may use (default: every core), e.g. the container's CPU quota: the
    /// capacity estimate counts against it.
    #[arg(long, value_name = "CORES")]
    cores: Option<f64>,
    /// The largest stream a URL input (rtmp, rtsp, srt, http(s)) may bring: WIDTHxHEIGHT; a
    /// larger one is dropped with that error in the input's state (and tried again later).
    #[arg(long, value_name = "WxH", default_value = "4096x4096")]
    max_input_size: String,
    /// The highest bitrate a URL input may bring, in kbit/s (measured over 2 s; default: no
    /// limit).
    #[arg(long, value_name = "KBPS")]
    max_input_bitrate: Option<u64>,
    /// Take RTMP publishers on this address (TCP, e.g. 127.0.0.1:1935; off unless given): a
    /// publish to rtmp://HOST:PORT/live/{mixerID}/{camid} feeds camera camid of that running
    /// mixer with its video and the camid's user (Usr1 for Usr1.-1) with its audio. Refused:
    /// an unknown mixer, a camera the mixer's inputs or another publisher feed, and without
    /// --publish-key-file any publisher that reaches the address is taken.
    #[arg(long, value_name = "ADDR")]
    rtmp_listen: Option<SocketAddr>,
    /// A file holding the key RTMP and SRT publishers must give (16 to 256 printable
    /// characters, none of ?&,=#/ or spaces; a trailing newline is ignored): RTMP
    /// rtmp://HOST/live/{mixerID}/{camid}?key=KEY, SRT streamid
    /// #!::r={mixerID}/{camid},m=publish,s=KEY (or live/{mixerID}/{camid}?key=KEY). A publish
    /// without it, or with another, is refused. WHIP publishers give the API token.
    #[arg(long, value_name = "FILE")]
    publish_key_file: Option<PathBuf>,
    /// Take SRT publishers (MPEG-TS) on this address (UDP, e.g. 127.0.0.1:9000; off unless
    /// given), addressed by the caller's streamid: live/{mixerID}/{camid}, {mixerID}/{camid}
    /// or #!::r={mixerID}/{camid},m=publish; refused at the handshake as RTMP publishes are.
    #[arg(long, value_name = "ADDR")]
    srt_listen: Option<SocketAddr>,
    /// Append every event (the vendor's JSON with mixerID and seq) to this JSON-lines file.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// The key that signs upload journals, so that uploads left pending by a stopped or killed
    /// service resume after a restart (32 bytes; created when missing; outside --storage).
    /// Default: $CLOUDMIXER_JOURNAL_KEY, else $XDG_STATE_HOME/cloudmixer/journal.key, else
    /// ~/.local/state/cloudmixer/journal.key.
    #[arg(long, value_name = "FILE")]
    journal_key: Option<PathBuf>,
    /// POST every event (the SSE `data:` JSON, headers X-Cloudmixer-Event and -Seq) to this
    /// http(s) URL, in order; retried with backoff while the receiver is down or answers 5xx;
    /// the mixers never wait for it.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// A JSON file holding a `storageConfig` (the vendor's fields: vendor, region, bucket,
    /// accessKey, secretKey; endpoint) of a bucket earlier runs uploaded to: /v1/recordings
    /// lists, serves and deletes its recordings from the start, before a mixer names it.
    /// Repeatable. The keys never appear in an answer or a log.
    #[arg(long, value_name = "FILE")]
    bucket_config: Vec<PathBuf>,
    /// Take WebRTC publishers by WHIP (POST /v1/whip/{mixerID}/{camid} with an SDP offer):
    /// ICE-lite on this UDP address and port range, one port per session (the range bounds
    /// the sessions at once), e.g. 127.0.0.1:40000-40100. Off unless given.
    #[arg(long, value_name = "IP:PORT-PORT")]
    webrtc_udp: Option<String>,
    /// Also offer this address (same port) as a candidate: the public address of a NAT in
    /// front of --webrtc-udp's.
    #[arg(long, value_name = "IP", requires = "webrtc_udp")]
    webrtc_public_ip: Option<std::net::IpAddr>,
    /// An origin (scheme://host[:port]) whose pages may publish by WHIP from a browser (CORS).
    /// Repeatable; other origins get no CORS headers.
    #[arg(long, value_name = "ORIGIN")]
    whip_origin: Vec<String>,
    /// Join a fleet of workers on this NATS server (JetStream on, nats-server 2.10 or newer):
    /// creates become jobs of one queue taken by workers with room for them, a room's calls
    /// reach its owner from any worker, a dead worker's rooms go on elsewhere.
    #[arg(long, value_name = "nats://HOST:PORT")]
    fleet: Option<String>,
    /// This worker's name in the fleet (default: the host name and the process id).
    #[arg(long, value_name = "ID", requires = "fleet")]
    node_id: Option<String>,
    /// How long a room's lease outlives its owner's last renewal: a dead worker's rooms
    /// go on elsewhere after about this long.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3.0,
        requires = "fleet"
    )]
    lease_ttl: f64,
    /// How long a create waits for a worker with room for it before it is refused (503).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60.0,
        requires = "fleet"
    )]
    queue_timeout: f64,
    /// On SIGTERM, move this worker's rooms to other workers of the fleet (each goes on in its
    /// next file) instead of stopping them.
    #[arg(long, requires = "fleet")]
    handover: bool,
}

/// The default node id: host name and process id, in the characters a node id takes.
fn default_node_id() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "worker".into());
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// A `--bucket-config` file: its `storageConfig`, checked (endpoint, bucket name).
fn read_bucket_config(
    p: &std::path::Path,
) -> Result<cloudmixer::model::config::StorageSettings, String> {
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("--bucket-config {}: {e}", p.display()))?;
    // serde's message may quote a value (a key in the wrong field): only a missing field is
    // named, else where the error is
    let st: cloudmixer::model::config::StorageSettings =
        serde_json::from_str(&text).map_err(|e| {
            let msg = e.to_string();
            let what = match msg.split_once(" at line") {
                Some((m, _)) if m.starts_with("missing field") => m.to_string(),
                _ => format!("line {}, column {}", e.line(), e.column()),
            };
            format!(
                "--bucket-config {}: not a storageConfig: {what}",
                p.display()
            )
        })?;
    st.resolved_endpoint()
        .map_err(|e| format!("--bucket-config {}: {e}", p.display()))?;
    Ok(st)
}

/// After a drain, how long the last events may take to reach the webhook.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn read_token(p: &std::path::Path) -> Result<String, String> {
    let t = std::fs::read_to_string(p).map_err(|e| format!("--token-file {}: {e}", p.display()))?;
    Ok(t.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs the service until a signal drains it.
pub fn run(a: ServeArgs) -> ExitCode {
    let token = match a.token_file.as_deref().map(read_token).transpose() {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let opts = ServeOptions {
        listen: a.listen,
        token,
    };
    if let Err(e) = check_options(&opts) {
        return usage(e);
    }
    if !(a.room_cost > 0.0 && a.room_cost <= 1024.0) {
        return usage("--room-cost: expected cores per mixer, > 0");
    }
    if !(0.0..=86_400.0).contains(&a.drain_timeout) {
        return usage("--drain-timeout: expected 0 to 86400 seconds");
    }
    if let Err(e) = std::fs::create_dir_all(&a.storage) {
        return usage(format!("--storage {}: {e}", a.storage.display()));
    }
    if let Some(m) = &a.media_root {
        if !m.is_dir() {
            return usage(format!("--media-root {}: not a folder", m.display()));
        }
    }
    let mut settings = HostSettings::new(&a.storage);
    settings.media_root = a.media_root.clone();
    settings.max_rooms = a.max_rooms;
    settings.room_cost = a.room_cost;
    if let Some(c) = a.cores {
        if !(c > 0.0 && c <= 4096.0) {
            return usage("--cores: expected a number of cores, > 0");
        }
        settings.cores = Some(c);
    }
    match a
        .max_input_size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| w > 0 && h > 0)
    {
        Some((w, h)) => (settings.pull.max_width, settings.pull.max_height) = (w, h),
        None => return usage("--max-input-size: expected WIDTHxHEIGHT, e.g. 1920x1080"),
    }
    settings.pull.max_bitrate = a.max_input_bitrate.map(|k| k.saturating_mul(1000));
    if let Some(p) = &a.publish_key_file {
        let key = std::fs::read_to_string(p)
            .map_err(|e| format!("--publish-key-file {}: {e}", p.display()))
            .and_then(|k| {
                cloudmixer::host::feed::pull::PublishKey::new(k.trim_end_matches(['\n', '\r']))
                    .map_err(|e| format!("--publish-key-file {}: {e}", p.display()))
            });
        match key {
            Ok(k) => settings.publish_key = Some(k),
            Err(e) => return usage(e),
        }
    }
    settings.mixer.backend = a.backend;
    if let Some(ms) = a.latency {
        settings.mixer.latency = Duration::from_millis(ms);
    }
    match cloudmixer::record::load_journal_key(a.journal_key.as_deref(), &a.storage) {
        Ok(k) => settings.mixer.journal_key = k,
        Err(e) => return usage(e),
    }
    let mut buckets = Vec::new();
    for p in &a.bucket_config {
        match read_bucket_config(p) {
            Ok(st) => buckets.push(st),
            Err(e) => return usage(e),
        }
    }
    let whip = match a.webrtc_udp.as_deref().map(WhipSettings::parse_udp) {
        None => None,
        Some(Err(e)) => return usage(format!("--webrtc-udp {e}")),
        Some(Ok(mut w)) => {
            if w.ip.is_unspecified() && a.webrtc_public_ip.is_none() {
                return usage(
                    "--webrtc-udp: an unspecified address (0.0.0.0, ::) needs --webrtc-public-ip \
                     (the address browsers reach)",
                );
            }
            w.public_ip = a.webrtc_public_ip;
            w.jitter = settings.mixer.latency;
            w.pull = settings.pull.clone();
            Some(w)
        }
    };
    for o in &a.whip_origin {
        let ok = ["http://", "https://"].iter().any(|p| {
            o.strip_prefix(p)
                .is_some_and(|r| !r.is_empty() && !r.contains(['/', ' ']))
        });
        if !ok && o != "*" {
            return usage(format!(
                "--whip-origin {o:?}: expected an origin, scheme://host[:port] (no path)"
            ));
        }
    }
    let whip = WhipOptions {
        sessions: whip.map(Whip::new),
        origins: a.whip_origin.clone(),
    };
    if let Some(w) = &whip.sessions {
        let s = w.settings();
        eprintln!(
            "WHIP: ICE-lite on udp {}:{}-{}",
            s.ip, s.port_min, s.port_max
        );
    }
    let host = Host::new(settings);
    // the first given is the newest (listed first)
    for st in buckets.iter().rev() {
        host.add_upload_target(st);
    }
    if let Some(p) = &a.events {
        let logged = cloudmixer::host::journal::open_events(p)
            .and_then(|f| cloudmixer::host::journal::log_events(&host, f));
        if let Err(e) = logged {
            return usage(format!("--events {}: {e}", p.display()));
        }
    }
    let webhook = match a
        .webhook
        .as_deref()
        .map(|u| cloudmixer::serve::webhook::start(&host, u))
    {
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => return usage(e),
        None => None,
    };
    let mut publish =
        match cloudmixer::host::feed::publish::Listeners::start(&host, a.rtmp_listen, a.srt_listen)
        {
            Ok(l) => l,
            Err(e) => return usage(format!("--rtmp-listen / --srt-listen: {e}")),
        };
    let grace = Duration::from_secs_f64(a.drain_timeout);
    let fleet_opts = match &a.fleet {
        None => None,
        Some(url) => {
            if !(1.0..=600.0).contains(&a.lease_ttl) {
                return usage("--lease-ttl: expected 1 to 600 seconds");
            }
            if !(0.0..=86_400.0).contains(&a.queue_timeout) {
                return usage("--queue-timeout: expected 0 to 86400 seconds");
            }
            let mut o = cloudmixer::serve::fleet::FleetOptions::new(
                url.clone(),
                a.node_id.clone().unwrap_or_else(default_node_id),
            );
            o.lease_ttl = Duration::from_secs_f64(a.lease_ttl);
            o.queue_timeout = Duration::from_secs_f64(a.queue_timeout);
            o.handover = a.handover;
            Some(o)
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cm-http")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the HTTP runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(opts.listen).await {
            Ok(l) => l,
            Err(e) => return usage(format!("cannot listen on {}: {e}", opts.listen)),
        };
        let fleet = match fleet_opts {
            None => None,
            Some(o) => match cloudmixer::serve::fleet::Fleet::join(host.clone(), o).await {
                Ok(f) => Some(f),
                Err(e) => return usage(e),
            },
        };
        let addr = listener.local_addr().unwrap_or(opts.listen);
        if let Some(f) = &fleet {
            eprintln!("fleet: worker {} joined", f.node());
        }
        println!("listening on http://{addr}");
        for (proto, a) in publish.addrs() {
            println!("publishers on {proto}://{a}");
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let drainer = host.clone();
        let drain_fleet = fleet.clone();
        let handover = a.handover;
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                eprintln!("error: cannot install signal handlers");
                std::process::exit(1);
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("draining: no new mixers; stopping the running ones");
            if let Some(f) = &drain_fleet {
                let moved = f.drain().await;
                if handover {
                    eprintln!("fleet: {} mixers handed over to other workers", moved.len());
                }
            }
            let drain = tokio::task::spawn_blocking(move || {
                // no new publishers; the ones publishing end with their mixers, and are hung
                // up on before the process ends
                publish.stop_accepting();
                let r = drainer.drain(grace);
                if !publish.shutdown(Duration::from_secs(5)) {
                    eprintln!("publishers: not every connection closed after 5 s");
                }
                r
            });
            tokio::select! {
                res = drain => {
                    for (id, r) in res.unwrap_or_default() {
                        match r {
                            Ok(outputs) => eprintln!("mixer {id}: {} outputs final", outputs.len()),
                            Err(e) => eprintln!("mixer {id}: {e}"),
                        }
                    }
                    // the receiver gets each mixer's last state before the process ends
                    if let Some(w) = &webhook {
                        let w = w.clone();
                        let done = tokio::task::spawn_blocking(move || w.flush(WEBHOOK_FLUSH));
                        if !done.await.unwrap_or(false) {
                            eprintln!("webhook: not every event delivered after {WEBHOOK_FLUSH:?}");
                        }
                    }
                    let _ = done_tx.send(());
                }
                _ = term.recv() => {
                    eprintln!("second signal: exiting now");
                    std::process::exit(143);
                }
                _ = int.recv() => {
                    eprintln!("second signal: exiting now");
                    std::process::exit(130);
                }
            }
        });
        let shutdown = async {
            let _ = done_rx.await;
        };
        let token = opts.token.as_deref();
        let served = match fleet {
            Some(f) => {
                cloudmixer::serve::serve_in_fleet(host, listener, token, whip, f, shutdown).await
            }
            None => cloudmixer::serve::serve(host, listener, token, whip, shutdown).await,
        };
        match served {
            Ok(()) => {
                eprintln!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    })
}
