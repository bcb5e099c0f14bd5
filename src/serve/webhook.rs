//! `cloudmixer serve --webhook URL`: every event of the host POSTed to one URL, in order.
//!
//! One thread (`cm-webhook`) reads the host's event stream and POSTs each event as the body
//! the SSE stream carries in `data:` (the vendor's JSON with `mixerID`), with the headers
//! `X-Cloudmixer-Event` (`stateChanged`, `outputInfoChanged`, `stats`, `error`) and
//! `X-Cloudmixer-Seq` (the SSE id). A connection error, a timeout (10 s), a 5xx, 408 or 429 is
//! retried with backoff (0.5 s doubling to 30 s) until it is delivered, so a receiver that
//! restarts loses nothing; any other answer that is not 2xx (redirects are not followed) drops
//! that event (counted as failed). A receiver that stays away longer than the host's backlog
//! (4 096 events) loses the oldest ones (counted as lost). The rooms never wait for it: the
//! host hands events to a bounded queue and cuts off a reader that falls behind, which then
//! resumes from the backlog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::host::{Host, HostEvent};

/// One POST may take this long before it is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry's wait; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why `--webhook` was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an `http://` or `https://` URL.
    #[error("--webhook {url:?}: {msg}")]
    Url {
        /// The URL given (without credentials).
        url: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The client or its thread could not be started.
    #[error("--webhook: cannot start the client: {0}")]
    Start(String),
}

/// What the webhook has done so far.
#[derive(Debug, Default)]
struct Counts {
    /// Highest event sequence number handled (delivered, failed or lost).
    handled: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
}

/// Counters of a running webhook (see [`Webhook::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookStats {
    /// Events the receiver answered with 2xx.
    pub delivered: u64,
    /// Tries that were retried (connection error, timeout, 5xx, 408, 429).
    pub retries: u64,
    /// Events dropped because the receiver refused them (another status).
    pub failed: u64,
    /// Events that left the host's backlog before the receiver took them.
    pub lost: u64,
}

/// The running webhook; the thread ends with the process.
#[derive(Debug, Clone)]
pub struct Webhook {
    counts: Arc<Counts>,
    host: Host,
}

/// The URL as shown in messages: scheme, host, port and path, never user:password or query.
fn shown(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

/// Checks `url` and starts POSTing every later event of `host` to it.
///
/// ```no_run
/// use cloudmixer::host::{Host, HostSettings};
/// let host = Host::new(HostSettings::new("/srv/records"));
/// let hook = cloudmixer::serve::webhook::start(&host, "http://127.0.0.1:9000/events")?;
/// # let _ = hook;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start(host: &Host, url: &str) -> Result<Webhook, WebhookError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| WebhookError::Url {
        url: url.split('@').next_back().unwrap_or("").to_string(),
        msg: e.to_string(),
    })?;
    let bad = |msg: &str| WebhookError::Url {
        url: shown(&parsed),
        msg: msg.into(),
    };
    match parsed.scheme() {
        "http" | "https" => {}
        _ => return Err(bad("expected an http:// or https:// URL")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    // rustls needs a process-wide crypto provider for https (already there when uploads ran)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| WebhookError::Start(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| WebhookError::Start(e.to_string()))?;
    let counts = Arc::new(Counts::default());
    let hook = Webhook {
        counts: counts.clone(),
        host: host.clone(),
    };
    let host = host.clone();
    // subscribed here, so that no event after `start` returns is missed
    let (_, rx) = host.subscribe(None);
    std::thread::Builder::new()
        .name("cm-webhook".into())
        .spawn(move || {
            let mut last = 0u64;
            host.follow(rx, |e| {
                // a gap: events that left the backlog while this one was behind
                if last != 0 && e.seq > last + 1 {
                    counts.lost.fetch_add(e.seq - last - 1, Ordering::Relaxed);
                }
                rt.block_on(deliver(&client, &parsed, e, &counts));
                last = e.seq;
                counts.handled.store(last, Ordering::Release);
                true
            });
        })
        .map_err(|e| WebhookError::Start(e.to_string()))?;
    Ok(hook)
}

/// POSTs one event until it is delivered or refused.
async fn deliver(client: &reqwest::Client, url: &reqwest::Url, e: &HostEvent, counts: &Counts) {
    let body = e.to_json().to_string();
    let mut wait = FIRST_BACKOFF;
    loop {
        let sent = client
            .post(url.clone())
            .header("Content-Type", "application/json")
            .header("X-Cloudmixer-Event", e.name())
            .header("X-Cloudmixer-Seq", e.seq.to_string())
            .body(body.clone())
            .send()
            .await;
        // delivered or refused: done; anything else is tried again after the wait
        match sent {
            Ok(r) if r.status().is_success() => {
                counts.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) => {
                let s = r.status().as_u16();
                if !(s >= 500 || s == 408 || s == 429) {
                    tracing::warn!("webhook {}: event {} refused with {s}", shown(url), e.seq);
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            Err(err) => {
                // (without the URL: its query or user:password may hold a secret)
                tracing::debug!("webhook {}: {}", shown(url), err.without_url());
            }
        }
        counts.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

impl Webhook {
    /// What it has done so far.
    pub fn stats(&self) -> WebhookStats {
        let c = &self.counts;
        WebhookStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
        }
    }

    /// Waits until every event published so far is handled, at most `timeout` (the service
    /// calls it after a drain, so the receiver gets each mixer's last state). True when done.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.host.last_event_seq();
        let end = Instant::now() + timeout;
        while self.counts.handled.load(Ordering::Acquire) < target {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}
