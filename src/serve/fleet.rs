//! `serve --fleet nats://…`: many `serve` workers behind one NATS JetStream (feature `fleet`).
//!
//! What lives in NATS (all created by the first worker, shared by every one):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `CM_JOBS` (`cm.jobs`) | work-queue stream, one durable pull consumer `cm-workers` | create jobs: the create body (`POST /v1/mixers`'s JSON); each is taken by one worker |
//! | `cm_rooms` | key-value bucket | one record per room: config with the latest layout, inputs, phase, owner, fencing token, last segment number |
//! | `cm_leases` | key-value bucket, entries live `lease_ttl` | who owns a room: renewed every third of the TTL; lapses when its worker dies |
//! | `CM_EVENTS` (`cm.events.{node}`) | stream (1 h, 100 000 events) | every worker's events: one SSE stream of the fleet from any worker |
//! | `cm.room.{mixerID}` | request/reply | update, destroy, get and snapshot of a room, answered by its owner |
//!
//! - **Admission**: a worker fetches a job only while its host takes a room
//!   ([`Host::accepting`]: not draining, under `--max-rooms`, room for one more by the
//!   measured cost) and takes one job at a time, so admission never puts a worker over its
//!   capacity. A job that no worker takes before its deadline (`--queue-timeout`) is answered
//!   `503` (code 907) and removed from the stream and the bucket.
//! - **Ownership**: claiming a room = creating its lease (compare-and-set: one worker wins);
//!   the lease's revision is the room's **fencing token**, carried by its record and every event
//!   of the room (`fence`). The owner renews with compare-and-set on the revision it holds; a
//!   renewal that finds another worker's lease stops the local room at once (fenced out).
//!   A lost connection stops nothing: while NATS is unreachable nobody can take a room over,
//!   and a worker scans for orphans only after it has been connected for longer than a TTL, so
//!   an owner whose leases expired during an outage re-creates them first.
//! - **Failover**: a room whose record says running (or starting, or moving) and whose lease
//!   is gone is taken by the first worker with room for it: same id, config with the latest
//!   layout, same inputs, files continuing the series (`name_0002.mp4` after `name_0001.mp4`:
//!   in fleet mode every file target is numbered), a `gap` event with the last moment the old
//!   owner was seen and the first moment of the new owner, the new owner's events with
//!   `"reason": "failover"` (or `"handover"`).
//! - **Drain** (SIGTERM): the worker fetches no more jobs; with `--handover` each of its rooms
//!   is marked moving, stopped (its file final) and its lease dropped, so another worker goes
//!   on with the next file at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::HeaderMap as NatsHeaders;
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::host::{CreateParsed, CreateRoom, Host, HostError, HostEvent};
use crate::model::config::{MixerConfig, Target};
use crate::model::events::codes;
use crate::model::time::PaceMode;

const JOBS_STREAM: &str = "CM_JOBS";
const JOBS_SUBJECT: &str = "cm.jobs";
const EVENTS_STREAM: &str = "CM_EVENTS";
const ROOMS_BUCKET: &str = "cm_rooms";
const LEASES_BUCKET: &str = "cm_leases";
const CONSUMER: &str = "cm-workers";
const KICK: &str = "cm.fleet.kick";
/// How long the marker of a removed room stays in the rooms bucket.
const MARKER_TTL: Duration = Duration::from_secs(1);
/// How long a routed request waits for the owner's answer (a destroy waits for final files).
const ROUTE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a worker joins the fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The NATS server (`nats://127.0.0.1:4222`); JetStream must be enabled (server ≥ 2.10).
    pub url: String,
    /// This worker's name in owners, events and leases (`[A-Za-z0-9_-]`, ≤ 64).
    pub node_id: String,
    /// How long a lease outlives its last renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// How long a create waits for a worker with room for it before it is refused.
    pub queue_timeout: Duration,
    /// On SIGTERM, move the rooms to other workers instead of stopping them.
    pub handover: bool,
}

impl FleetOptions {
    /// The defaults: leases of 3 s, creates wait up to 60 s, no handover.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> Self {
        FleetOptions {
            url: url.into(),
            node_id: node_id.into(),
            lease_ttl: Duration::from_secs(3),
            queue_timeout: Duration::from_secs(60),
            handover: false,
        }
    }
}

/// Why a worker could not join the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The options are wrong.
    #[error("{0}")]
    Options(String),
    /// The server could not be reached.
    #[error("cannot reach the fleet's NATS server at {url}: {why}")]
    Connect {
        /// The server's URL (without credentials).
        url: String,
        /// Why.
        why: String,
    },
    /// A stream or bucket could not be made or opened.
    #[error(
        "fleet setup ({what}): {why} (JetStream must be enabled: nats-server -js, 2.10 or newer)"
    )]
    Setup {
        /// Which.
        what: &'static str,
        /// Why.
        why: String,
    },
}

/// A room's phase in its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    /// A job waits in the queue.
    Queued,
    /// A worker claimed it and is opening it.
    Starting,
    /// Recording on its owner.
    Running,
    /// Its owner is handing it over (drain with `--handover`).
    Moving,
    /// No worker could start it.
    Failed,
}

/// What a create failed with (the answer the API gives).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failure {
    status: u16,
    code: i32,
    error: String,
}

/// One room of the fleet (bucket `cm_rooms`, key = mixer id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    mixer_id: String,
    /// The create config, its `layoutConfig` replaced by each applied update.
    config: Value,
    #[serde(default)]
    inputs: Vec<(String, String)>,
    state: Phase,
    #[serde(default)]
    owner: Option<String>,
    /// The owner's lease revision when it took the room (the fencing token).
    #[serde(default)]
    fence: u64,
    created_at: i64,
    /// Unix ms after which a queued job is not started.
    #[serde(default)]
    deadline: Option<i64>,
    /// The job's sequence in `CM_JOBS` (removed when the create gives up).
    #[serde(default)]
    job_seq: Option<u64>,
    /// Created through a worker's API (which answers the client); else published straight to
    /// the queue.
    #[serde(default)]
    api: bool,
    /// The highest file number written so far.
    #[serde(default)]
    segment: u32,
    /// Per output id, the series name its files are numbered in (`dir/room.mp4`).
    #[serde(default)]
    series: Vec<(u32, String)>,
    #[serde(default)]
    error: Option<Failure>,
    /// Unix ms when its owner began handing it over (the gap's start).
    #[serde(default)]
    moved_at: Option<i64>,
}

/// A lease's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    node: String,
    /// Unix ms of this renewal.
    at: i64,
}

/// A room this worker owns.
struct Owned {
    fence: u64,
    lease_rev: u64,
    /// `failover` / `handover` when taken over.
    reason: Option<&'static str>,
    /// Stopping on purpose (handover, fenced out): its end does not end the room's record.
    leaving: bool,
    requests: tokio::task::JoinHandle<()>,
    /// The file numbers written into its record, per output id (written again only when one
    /// changes: the outputs report their files every second).
    files: Vec<(u32, String, u32)>,
}

/// The answer to an API call handled by the fleet.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// `application/json` or `image/jpeg`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    fn json(status: StatusCode, v: &Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: Bytes::from(v.to_string()),
        }
    }

    fn error(status: StatusCode, code: i32, msg: impl std::fmt::Display) -> Answer {
        Answer::json(status, &json!({"code": code, "error": msg.to_string()}))
    }

    fn host(e: &HostError) -> Answer {
        Answer::error(super::host_status(e), e.code(), e)
    }
}

/// An API call the fleet routes to a room's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `POST /v1/mixers/{id}/content`
    Update,
    /// `DELETE /v1/mixers/{id}`
    Destroy,
    /// `GET /v1/mixers/{id}`
    Get,
    /// `GET /v1/mixers/{id}/snapshot.jpg`
    Snapshot,
}

struct Inner {
    host: Host,
    opts: FleetOptions,
    client: async_nats::Client,
    js: jetstream::Context,
    jobs: stream::Stream,
    rooms: kv::Store,
    leases: kv::Store,
    owned: Mutex<HashMap<String, Owned>>,
    /// When the connection last came up (None while down).
    connected_since: Arc<Mutex<Option<Instant>>>,
    /// No more jobs or takeovers (draining).
    stopping: AtomicBool,
    /// The last lease renewal seen of each room (for a gap's start).
    seen: Mutex<HashMap<String, i64>>,
    /// Rooms taken over by this worker.
    takeovers: AtomicU64,
    kick: tokio::sync::Notify,
    ids: AtomicU64,
}

/// A worker's membership of the fleet (cheap to clone).
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The URL without `user:password@`.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn setup(what: &'static str) -> impl Fn(String) -> FleetError {
    move |why| FleetError::Setup { what, why }
}

impl Fleet {
    /// Connects to the fleet's NATS server, makes (or opens) its streams and buckets, and
    /// starts taking jobs for `host`. Call from inside a tokio runtime.
    ///
    /// ```no_run
    /// # async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    /// use cloudmixer::host::{Host, HostSettings};
    /// use cloudmixer::serve::fleet::{Fleet, FleetOptions};
    /// let host = Host::new(HostSettings::new("/srv/records"));
    /// let opts = FleetOptions::new("nats://127.0.0.1:4222", "rec-1");
    /// let fleet = Fleet::join(host.clone(), opts).await?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8780").await?;
    /// let stop = std::future::pending::<()>(); // e.g. a signal
    /// cloudmixer::serve::serve_in_fleet(host, listener, None, Default::default(), fleet, stop)
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn join(host: Host, opts: FleetOptions) -> Result<Fleet, FleetError> {
        let id_ok = (1..=64).contains(&opts.node_id.len())
            && opts
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(FleetError::Options(format!(
                "--node-id {:?}: expected 1-64 characters of A-Z a-z 0-9 _ -",
                opts.node_id
            )));
        }
        if opts.lease_ttl < Duration::from_secs(1) {
            return Err(FleetError::Options("--lease-ttl: at least 1 second".into()));
        }
        let since: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let cb_since = since.clone();
        let node = opts.node_id.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("cloudmixer {node}"))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)))
            .event_callback(move |ev| {
                let s = cb_since.clone();
                async move {
                    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                    match ev {
                        async_nats::Event::Connected => *g = Some(Instant::now()),
                        async_nats::Event::Disconnected => *g = None,
                        _ => {}
                    }
                }
            })
            .connect(opts.url.as_str())
            .await
            .map_err(|e| FleetError::Connect {
                url: redacted(&opts.url),
                why: e.to_string(),
            })?;
        *since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let js = jetstream::new(client.clone());
        let jobs = js
            .get_or_create_stream(stream::Config {
                name: JOBS_STREAM.into(),
                subjects: vec![JOBS_SUBJECT.into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| setup("stream CM_JOBS")(e.to_string()))?;
        jobs.get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| setup("consumer cm-workers")(e.to_string()))?;
        js.get_or_create_stream(stream::Config {
            name: EVENTS_STREAM.into(),
            subjects: vec!["cm.events.>".into()],
            max_messages: 100_000,
            max_age: Duration::from_secs(3600),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| setup("stream CM_EVENTS")(e.to_string()))?;
        let rooms = bucket(&js, ROOMS_BUCKET, Duration::ZERO, Some(MARKER_TTL)).await?;
        let leases = bucket(&js, LEASES_BUCKET, opts.lease_ttl, None).await?;
        let fleet = Fleet {
            inner: Arc::new(Inner {
                host,
                opts,
                client,
                js,
                jobs,
                rooms,
                leases,
                owned: Mutex::new(HashMap::new()),
                connected_since: since,
                stopping: AtomicBool::new(false),
                seen: Mutex::new(HashMap::new()),
                takeovers: AtomicU64::new(0),
                kick: tokio::sync::Notify::new(),
                ids: AtomicU64::new(0),
            }),
        };
        fleet.start_tasks();
        Ok(fleet)
    }

    /// This worker's node id.
    pub fn node(&self) -> &str {
        &self.inner.opts.node_id
    }

    /// Rooms this worker owns now.
    pub fn owned(&self) -> usize {
        self.lock_owned().len()
    }

    /// Rooms this worker took over from another one since it started.
    pub fn takeovers(&self) -> u64 {
        self.inner.takeovers.load(Ordering::Relaxed)
    }

    /// Whether the connection to NATS is up.
    pub fn connected(&self) -> bool {
        self.inner
            .connected_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn lock_owned(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owned>> {
        self.inner.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes an owned room (the lock is not held after).
    fn take_owned(&self, id: &str) -> Option<Owned> {
        self.lock_owned().remove(id)
    }

    fn start_tasks(&self) {
        let f = self.clone();
        tokio::spawn(async move { f.admit_loop().await });
        let f = self.clone();
        tokio::spawn(async move { f.renew_loop().await });
        let f = self.clone();
        tokio::spawn(async move { f.scan_loop().await });
        let f = self.clone();
        tokio::spawn(async move { f.kick_listener().await });
        self.start_event_bridge();
    }

    // ---- admission -------------------------------------------------------------------

    fn can_take(&self) -> bool {
        !self.inner.stopping.load(Ordering::Acquire)
            && self.inner.host.accepting()
            && self.inner.host.capacity().rooms_more >= 1
    }

    async fn admit_loop(self) {
        let consumer: consumer::PullConsumer = loop {
            match self.inner.jobs.get_consumer(CONSUMER).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!("fleet: job consumer: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            if self.inner.stopping.load(Ordering::Acquire) {
                return;
            }
            if !self.can_take() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_millis(500))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!("fleet: fetch: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            while let Some(m) = batch.next().await {
                match m {
                    Ok(msg) => self.take_job(msg).await,
                    Err(e) => tracing::debug!("fleet: fetch: {e}"),
                }
            }
        }
    }

    /// One job: claim its record, take its lease, start the room.
    async fn take_job(&self, msg: jetstream::Message) {
        let api = msg.headers.as_ref().and_then(|h| h.get("Cm-Api")).is_some();
        let parsed = serde_json::from_slice::<Value>(&msg.payload)
            .map_err(|e| format!("body: not valid JSON: {e}"))
            .and_then(|v| super::create_request(v).map_err(|e| e.2));
        let _ = msg.ack().await;
        let req = match parsed {
            Ok(r) => r,
            Err(e) => {
                self.publish_fleet_event(json!({"event": "jobFailed", "code": codes::PARAM_ERR,
                    "error": e}))
                    .await;
                return;
            }
        };
        let id = match &req.mixer_id {
            Some(id) => id.clone(),
            None => self.new_id(),
        };
        let rooms = &self.inner.rooms;
        // claim the record: queued → starting (an API's job), or a new record (a job published
        // straight to the queue)
        let claimed = match rooms.entry(id.as_str()).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => self.claim(&id, e).await,
            Ok(_) if !api => {
                let r = Record {
                    mixer_id: id.clone(),
                    config: req.config.clone(),
                    inputs: req.inputs.clone(),
                    state: Phase::Starting,
                    owner: Some(self.node().to_string()),
                    fence: 0,
                    created_at: now_ms(),
                    deadline: None,
                    job_seq: None,
                    api: false,
                    segment: 0,
                    series: Vec::new(),
                    error: None,
                    moved_at: None,
                };
                match rooms.create(id.as_str(), to_bytes(&r)).await {
                    Ok(rev) => Some((r, rev)),
                    Err(_) => {
                        self.publish_fleet_event(json!({"event": "jobFailed", "mixerID": id,
                            "code": codes::ALREADY_STARTED,
                            "error": format!("mixerID: {id:?} is already a room of the fleet")}))
                            .await;
                        None
                    }
                }
            }
            _ => None, // the API's create was cancelled
        };
        let Some((rec, rev)) = claimed else { return };
        self.start_room(rec, rev, None).await;
    }

    /// Claims a queued record: queued → starting, owner this worker. Tried again when the
    /// record changed meanwhile but still waits (the API writes the job's sequence into it
    /// just after publishing the job).
    async fn claim(&self, id: &str, mut e: kv::Entry) -> Option<(Record, u64)> {
        for _ in 0..10 {
            let mut r = serde_json::from_slice::<Record>(&e.value).ok()?;
            if r.state != Phase::Queued {
                return None; // running elsewhere, or a duplicate
            }
            if r.deadline.is_some_and(|d| now_ms() > d) {
                return None; // the API gave up on it (and removes the record)
            }
            r.state = Phase::Starting;
            r.owner = Some(self.node().to_string());
            match self.inner.rooms.update(id, to_bytes(&r), e.revision).await {
                Ok(rev) => return Some((r, rev)),
                Err(err) => match self.inner.rooms.entry(id).await {
                    Ok(Some(n)) if n.operation == kv::Operation::Put => {
                        tracing::debug!("fleet: room {id}: claim again ({err})");
                        e = n
                    }
                    _ => return None,
                },
            }
        }
        None
    }

    /// Takes the lease of a claimed record (revision `rev`) and starts its room here.
    /// `reason`: a takeover (`failover`/`handover`), with the gap's start.
    async fn start_room(&self, mut rec: Record, rev: u64, reason: Option<(&'static str, i64)>) {
        let id = rec.mixer_id.clone();
        let lease = Lease {
            node: self.node().to_string(),
            at: now_ms(),
        };
        let lease_rev = match self
            .inner
            .leases
            .create(id.as_str(), to_bytes(&lease))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("fleet: room {id}: lease taken by another worker ({e})");
                return;
            }
        };
        rec.fence = lease_rev;
        rec.owner = Some(self.node().to_string());
        let rev = match self
            .inner
            .rooms
            .update(id.as_str(), to_bytes(&rec), rev)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("fleet: room {id}: its record changed before it started ({e})");
                let _ = self.inner.leases.delete(id.as_str()).await;
                return;
            }
        };
        let mut cfg = match MixerConfig::from_value(rec.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                self.fail(rec, rev, 400, codes::PARAM_ERR, e.to_string())
                    .await;
                return;
            }
        };
        // every file target is numbered, a takeover continues the series
        cfg.output.segments.numbered = true;
        if reason.is_some() {
            cfg.output.segments.first = rec.segment + 1;
            for (i, series) in &rec.series {
                if let Some(Target::File { path, .. }) = cfg.output.targets.get_mut(*i as usize) {
                    *path = series.into();
                }
            }
        }
        // the requests for it reach this worker from now on (it answers once the room runs)
        let requests = self.serve_room(&id).await;
        self.lock_owned().insert(
            id.clone(),
            Owned {
                fence: lease_rev,
                lease_rev,
                reason: reason.map(|r| r.0),
                leaving: false,
                requests,
                files: Vec::new(),
            },
        );
        let host = self.inner.host.clone();
        let req = CreateParsed {
            mixer_id: Some(id.clone()),
            config: cfg,
            inputs: rec.inputs.clone(),
            pictures: Vec::new(),
        };
        let created =
            tokio::task::spawn_blocking(move || host.create_parsed(req, PaceMode::Realtime)).await;
        match created {
            Ok(Ok(_)) => {
                let started = now_ms();
                let running = self
                    .modify(&id, lease_rev, |r| {
                        r.state = Phase::Running;
                        r.error = None;
                    })
                    .await;
                if !running {
                    // destroyed meanwhile (by a client) or fenced: the renewals sort it out
                    tracing::warn!("fleet: room {id}: its record is gone or another's");
                }
                if let Some((why, from)) = reason {
                    self.inner.takeovers.fetch_add(1, Ordering::Relaxed);
                    self.publish_fleet_event(json!({"event": "gap", "mixerID": id,
                        "reason": why, "start": from, "end": started,
                        "to": self.node(), "fence": lease_rev,
                        "segment": rec.segment + 1}))
                        .await;
                }
            }
            Ok(Err(e)) => {
                if let Some(o) = self.take_owned(&id) {
                    o.requests.abort();
                }
                let _ = self.inner.leases.delete(id.as_str()).await;
                let status = super::host_status(&e).as_u16();
                self.fail(rec, rev, status, e.code(), e.to_string()).await;
            }
            Err(e) => tracing::error!("fleet: room {id}: {e}"),
        }
    }

    /// A room no worker could start: its record says why (for the API's waiting create), or
    /// is removed with a `jobFailed` event (a job published straight to the queue).
    async fn fail(&self, mut rec: Record, rev: u64, status: u16, code: i32, error: String) {
        let id = rec.mixer_id.clone();
        self.publish_fleet_event(json!({"event": "jobFailed", "mixerID": id, "code": code,
            "error": error}))
            .await;
        if rec.api {
            rec.state = Phase::Failed;
            rec.error = Some(Failure {
                status,
                code,
                error,
            });
            let _ = self
                .inner
                .rooms
                .update(id.as_str(), to_bytes(&rec), rev)
                .await;
        } else {
            let _ = self
                .inner
                .rooms
                .purge_with_ttl(id.as_str(), MARKER_TTL)
                .await;
        }
    }

    fn new_id(&self) -> String {
        let n = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        format!("mixer-{:x}-{}-{n}", now_ms(), self.node())
    }

    // ---- leases ------------------------------------------------------------------------

    async fn renew_loop(self) {
        let every = self.inner.opts.lease_ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            let mine: Vec<(String, u64, bool)> = self
                .lock_owned()
                .iter()
                .map(|(k, o)| (k.clone(), o.lease_rev, o.leaving))
                .collect();
            for (id, rev, leaving) in mine {
                if leaving {
                    continue;
                }
                self.renew(&id, rev).await;
            }
        }
    }

    async fn renew(&self, id: &str, rev: u64) {
        let lease = to_bytes(&Lease {
            node: self.node().to_string(),
            at: now_ms(),
        });
        let leases = &self.inner.leases;
        let new_rev = match leases.update(id, lease.clone(), rev).await {
            Ok(r) => Some(r),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                match leases.entry(id).await {
                    Ok(Some(e)) if e.operation == kv::Operation::Put => {
                        match serde_json::from_slice::<Lease>(&e.value) {
                            Ok(l) if l.node == self.node() => leases
                                .update(id, lease, e.revision)
                                .await
                                .ok()
                                .or(Some(e.revision)),
                            _ => {
                                self.fenced_out(id).await;
                                return;
                            }
                        }
                    }
                    // ended meanwhile
                    Ok(_) if !self.lock_owned().contains_key(id) => None,
                    // lapsed (the server was away longer than the TTL): take it again
                    Ok(_) => match leases.create(id, lease).await {
                        Ok(r) => Some(r),
                        Err(_) => {
                            self.fenced_out(id).await;
                            return;
                        }
                    },
                    Err(_) => None,
                }
            }
            Err(_) => None, // not connected: nobody can take it meanwhile
        };
        if let Some(r) = new_rev {
            if let Some(o) = self.lock_owned().get_mut(id) {
                o.lease_rev = r;
            }
        }
    }

    /// Another worker holds this room's lease: stop writing it at once.
    async fn fenced_out(&self, id: &str) {
        let fence = {
            let mut g = self.lock_owned();
            let Some(o) = g.get_mut(id) else { return };
            o.leaving = true;
            o.fence
        };
        tracing::warn!("fleet: room {id}: another worker holds its lease; stopping it here");
        let host = self.inner.host.clone();
        let id2 = id.to_string();
        let _ = tokio::task::spawn_blocking(move || host.destroy(&id2)).await;
        if let Some(o) = self.take_owned(id) {
            o.requests.abort();
        }
        self.publish_fleet_event(json!({"event": "fenced", "mixerID": id, "fence": fence,
            "node": self.node()}))
            .await;
    }

    // ---- failover ----------------------------------------------------------------------

    async fn kick_listener(self) {
        let Ok(mut sub) = self.inner.client.subscribe(KICK).await else {
            return;
        };
        while sub.next().await.is_some() {
            self.inner.kick.notify_one();
        }
    }

    async fn scan_loop(self) {
        let settle = self.inner.opts.lease_ttl + Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = self.inner.kick.notified() => {}
            }
            if self.inner.stopping.load(Ordering::Acquire) {
                return;
            }
            // after a (re)connect, owners re-take their lapsed leases first
            let up = *self
                .inner
                .connected_since
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if up.is_none_or(|t| t.elapsed() < settle) {
                continue;
            }
            if let Err(e) = self.scan().await {
                tracing::debug!("fleet: scan: {e}");
            }
        }
    }

    /// Looks for rooms whose lease is gone and takes them while this worker has room.
    async fn scan(&self) -> Result<(), String> {
        let keys: Vec<String> = match self.inner.rooms.keys().await {
            Ok(k) => k.filter_map(|k| async { k.ok() }).collect().await,
            Err(e) => return Err(e.to_string()),
        };
        for id in keys {
            let Ok(Some(e)) = self.inner.rooms.entry(id.as_str()).await else {
                continue;
            };
            if e.operation != kv::Operation::Put {
                continue;
            }
            let Ok(rec) = serde_json::from_slice::<Record>(&e.value) else {
                continue;
            };
            if !matches!(rec.state, Phase::Running | Phase::Starting | Phase::Moving) {
                continue;
            }
            match self.inner.leases.entry(id.as_str()).await {
                Ok(Some(l)) if l.operation == kv::Operation::Put => {
                    if let Ok(l) = serde_json::from_slice::<Lease>(&l.value) {
                        self.inner
                            .seen
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id.clone(), l.at);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(_) => continue,
            }
            if self.lock_owned().contains_key(&id) || !self.can_take() {
                continue;
            }
            let why = if rec.state == Phase::Moving {
                "handover"
            } else {
                "failover"
            };
            let seen = self
                .inner
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let from = match rec.moved_at {
                Some(t) if rec.state == Phase::Moving => t,
                _ => seen.unwrap_or(rec.created_at),
            };
            tracing::warn!(
                "fleet: taking over room {id} from {} ({why})",
                rec.owner.as_deref().unwrap_or("?")
            );
            let mut rec = rec;
            rec.state = Phase::Starting;
            self.start_room(rec, e.revision, Some((why, from))).await;
        }
        Ok(())
    }

    // ---- events ------------------------------------------------------------------------

    /// The host's events go to `cm.events.{node}` with `node`, `fence` (and `reason` for a
    /// room taken over); an owned room's end ends its record, and a new file number is
    /// written into it.
    fn start_event_bridge(&self) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Arc<HostEvent>>();
        let host = self.inner.host.clone();
        let (_, sub) = host.subscribe(None);
        let _ = std::thread::Builder::new()
            .name("cm-fleet-ev".into())
            .spawn(move || {
                host.follow(sub, |e| {
                    let _ = tx.send(Arc::new(e.clone()));
                    true
                });
            });
        let f = self.clone();
        tokio::spawn(async move {
            let subject = format!("cm.events.{}", f.node());
            while let Some(e) = rx.recv().await {
                let id = e.mixer_id.to_string();
                let mut v = e.to_json();
                v["event"] = Value::from(e.name());
                v["node"] = Value::from(f.node());
                let (fence, reason, leaving) = match f.lock_owned().get(&id) {
                    Some(o) => (Some(o.fence), o.reason, o.leaving),
                    None => (None, None, false),
                };
                if let Some(fe) = fence {
                    v["fence"] = Value::from(fe);
                }
                if let Some(r) = reason {
                    v["reason"] = Value::from(r);
                }
                if let Err(err) = f
                    .inner
                    .js
                    .publish(subject.clone(), v.to_string().into())
                    .await
                {
                    tracing::debug!("fleet: event: {err}");
                }
                if fence.is_none() {
                    continue;
                }
                match &e.event {
                    crate::model::events::MixerEvent::OutputInfoChanged(info) => {
                        if let Some((series, n)) = numbered_name(&info.svr_file_path_name) {
                            f.note_segment(&id, info.id, series, n).await;
                        }
                    }
                    crate::model::events::MixerEvent::StateChanged { state, .. }
                        if *state == crate::model::events::MixerState::Null && !leaving =>
                    {
                        f.room_ended(&id).await;
                    }
                    _ => {}
                }
            }
        });
    }

    /// Changes a room's record with compare-and-set while its fencing token is `fence`
    /// (read again and retried when another write came first): whether it was written.
    async fn modify(&self, id: &str, fence: u64, mut f: impl FnMut(&mut Record)) -> bool {
        for _ in 0..20 {
            let Ok(Some(e)) = self.inner.rooms.entry(id).await else {
                return false;
            };
            if e.operation != kv::Operation::Put {
                return false;
            }
            let Ok(mut r) = serde_json::from_slice::<Record>(&e.value) else {
                return false;
            };
            if r.fence != fence {
                return false;
            }
            f(&mut r);
            if self
                .inner
                .rooms
                .update(id, to_bytes(&r), e.revision)
                .await
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// A new file number of an owned room goes into its record (fenced).
    async fn note_segment(&self, id: &str, out: u32, series: String, n: u32) {
        let fence = {
            let mut g = self.lock_owned();
            let Some(o) = g.get_mut(id) else { return };
            let known = (out, series.clone(), n);
            if o.files.contains(&known) {
                return;
            }
            o.files.retain(|f| f.0 != out);
            o.files.push(known);
            o.fence
        };
        let written = self
            .modify(id, fence, |r| {
                r.segment = r.segment.max(n);
                r.series.retain(|(i, _)| *i != out);
                r.series.push((out, series.clone()));
            })
            .await;
        if !written {
            // not in the record: the next report of this file writes it again
            if let Some(o) = self.lock_owned().get_mut(id) {
                o.files.retain(|f| f.0 != out);
            }
        }
    }

    /// An owned room ended (destroyed, or stopped by itself): its record goes, then its lease
    /// (in that order: a record without a lease is a room to take over).
    async fn room_ended(&self, id: &str) {
        let Some(o) = self.take_owned(id) else {
            return;
        };
        o.requests.abort();
        for _ in 0..50 {
            match self.inner.rooms.entry(id).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => {
                    match serde_json::from_slice::<Record>(&e.value) {
                        Ok(r) if r.fence == o.fence => {
                            let purged = self
                                .inner
                                .rooms
                                .purge_expect_revision_with_ttl(id, e.revision, MARKER_TTL)
                                .await;
                            if purged.is_ok() {
                                break;
                            }
                            // a write of ours came first (a file number): read it again
                        }
                        _ => break, // another worker's now
                    }
                }
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        if let Ok(Some(e)) = self.inner.leases.entry(id).await {
            let mine =
                serde_json::from_slice::<Lease>(&e.value).is_ok_and(|l| l.node == self.node());
            if e.operation == kv::Operation::Put && mine {
                let _ = self.inner.leases.purge(id).await;
            }
        }
    }

    async fn publish_fleet_event(&self, mut v: Value) {
        v["node"] = Value::from(self.node());
        v["time"] = Value::from(now_ms());
        let subject = format!("cm.events.{}", self.node());
        if let Err(e) = self.inner.js.publish(subject, v.to_string().into()).await {
            tracing::warn!("fleet: event: {e}");
        }
    }

    /// The fleet's events as SSE parts (`id` = the stream's sequence), after `since`.
    pub async fn events(
        &self,
        since: Option<u64>,
    ) -> Result<impl futures_core::Stream<Item = (u64, String, String)>, String> {
        let s = self
            .inner
            .js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let deliver = match since {
            Some(n) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: n + 1,
            },
            None => consumer::DeliverPolicy::New,
        };
        let c = s
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: deliver,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let msgs = c.messages().await.map_err(|e| e.to_string())?;
        Ok(msgs.filter_map(|m| async move {
            let m = m.ok()?;
            let seq = m.info().ok()?.stream_sequence;
            let text = String::from_utf8(m.payload.to_vec()).ok()?;
            let name = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["event"].as_str().map(str::to_string))
                .unwrap_or_else(|| "message".into());
            Some((seq, name, text))
        }))
    }

    // ---- the API -----------------------------------------------------------------------

    /// `POST /v1/mixers` in fleet mode: checks the config here, queues the job and answers
    /// once a worker runs it (`201 {"mixerID", "owner"}`), or says why none did.
    pub async fn create(&self, req: CreateRoom) -> Answer {
        if let Some(id) = &req.mixer_id {
            if let Err(e) = crate::host::check_id(id) {
                return Answer::host(&e);
            }
        }
        if let Err(e) = MixerConfig::from_value(req.config.clone()) {
            return Answer::host(&HostError::from(e));
        }
        if self.inner.stopping.load(Ordering::Acquire) {
            return Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::NO_CAPACITY,
                "this worker is shutting down: send the create to another one",
            );
        }
        let id = req.mixer_id.clone().unwrap_or_else(|| self.new_id());
        let timeout = self.inner.opts.queue_timeout;
        let deadline = now_ms() + timeout.as_millis() as i64;
        let mut rec = Record {
            mixer_id: id.clone(),
            config: req.config.clone(),
            inputs: req.inputs.clone(),
            state: Phase::Queued,
            owner: None,
            fence: 0,
            created_at: now_ms(),
            deadline: Some(deadline),
            job_seq: None,
            api: true,
            segment: 0,
            series: Vec::new(),
            error: None,
            moved_at: None,
        };
        let rooms = &self.inner.rooms;
        let rev = match rooms.create(id.as_str(), to_bytes(&rec)).await {
            Ok(r) => r,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Answer::error(
                    StatusCode::CONFLICT,
                    codes::ALREADY_STARTED,
                    format!("mixerID: {id:?} is already a room of the fleet"),
                )
            }
            Err(e) => return unreachable_fleet(e),
        };
        let mut body = req.config.clone();
        body["mixerID"] = Value::from(id.as_str());
        if !req.inputs.is_empty() {
            body["inputs"] = Value::Object(
                req.inputs
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            );
        }
        let mut h = NatsHeaders::new();
        h.insert("Cm-Api", "1");
        h.insert("Nats-Msg-Id", format!("{id}-{rev}").as_str());
        let seq = match self
            .inner
            .js
            .publish_with_headers(JOBS_SUBJECT, h, body.to_string().into())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(a) => a.sequence,
                Err(e) => {
                    let _ = rooms.purge_with_ttl(id.as_str(), MARKER_TTL).await;
                    return unreachable_fleet(e);
                }
            },
            Err(e) => {
                let _ = rooms.purge_with_ttl(id.as_str(), MARKER_TTL).await;
                return unreachable_fleet(e);
            }
        };
        rec.job_seq = Some(seq);
        let _ = rooms.update(id.as_str(), to_bytes(&rec), rev).await;
        // wait for a worker to run it
        let t0 = Instant::now();
        loop {
            match rooms.entry(id.as_str()).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => {
                    if let Ok(r) = serde_json::from_slice::<Record>(&e.value) {
                        match r.state {
                            Phase::Running | Phase::Moving => {
                                return Answer::json(
                                    StatusCode::CREATED,
                                    &json!({"mixerID": id, "owner": r.owner}),
                                )
                            }
                            Phase::Failed => {
                                let _ = rooms.purge_with_ttl(id.as_str(), MARKER_TTL).await;
                                let f = r.error.unwrap_or(Failure {
                                    status: 500,
                                    code: codes::INTERNAL,
                                    error: "failed".into(),
                                });
                                let st = StatusCode::from_u16(f.status)
                                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                                return Answer::error(st, f.code, f.error);
                            }
                            Phase::Queued if t0.elapsed() > timeout => {
                                // give up: the record (compare-and-set) and the job go
                                let purged = rooms
                                    .purge_expect_revision_with_ttl(
                                        id.as_str(),
                                        e.revision,
                                        MARKER_TTL,
                                    )
                                    .await;
                                if purged.is_ok() {
                                    let _ = self.inner.jobs.delete_message(seq).await;
                                    return Answer::error(
                                        StatusCode::SERVICE_UNAVAILABLE,
                                        codes::NO_CAPACITY,
                                        format!(
                                            "no worker of the fleet had room for mixer {id:?} \
                                             within {} s (the fleet is at capacity)",
                                            timeout.as_secs()
                                        ),
                                    );
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Ok(_) => {
                    return Answer::error(
                        StatusCode::GONE,
                        codes::PARAM_ERR,
                        format!("mixer {id:?} was destroyed before it started"),
                    )
                }
                Err(_) => {}
            }
            if t0.elapsed() > timeout + Duration::from_secs(30) {
                return Answer::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    codes::INTERNAL,
                    format!("mixer {id:?}: no answer from the fleet"),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A room call (update, destroy, get, snapshot) answered here when this worker owns the
    /// room, else by its owner over NATS.
    pub async fn request(&self, op: Op, id: &str, body: Bytes) -> Answer {
        if self.lock_owned().contains_key(id) {
            return self.local(op, id, body).await;
        }
        let rec = match self.inner.rooms.entry(id).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                serde_json::from_slice::<Record>(&e.value).ok()
            }
            Ok(_) => None,
            Err(e) => return unreachable_fleet(e),
        };
        let Some(rec) = rec else {
            // not (or no longer) a room of the fleet: what this host knows of it (an ended one)
            return self.local(op, id, body).await;
        };
        if rec.state == Phase::Queued {
            return match op {
                Op::Get => Answer::json(
                    StatusCode::OK,
                    &json!({"mixerID": id, "state": 1, "queued": true, "owner": null}),
                ),
                Op::Destroy => {
                    let _ = self.inner.rooms.purge_with_ttl(id, MARKER_TTL).await;
                    if let Some(seq) = rec.job_seq {
                        let _ = self.inner.jobs.delete_message(seq).await;
                    }
                    Answer::json(StatusCode::OK, &json!({"mixerID": id, "outputs": []}))
                }
                _ => Answer::error(
                    StatusCode::CONFLICT,
                    codes::PARAM_ERR,
                    format!("mixer {id:?} waits for a worker: it has no picture yet"),
                ),
            };
        }
        let payload = json!({"op": op, "body": String::from_utf8_lossy(&body)}).to_string();
        let asked = tokio::time::timeout(
            ROUTE_TIMEOUT,
            self.inner
                .client
                .request(format!("cm.room.{id}"), payload.into()),
        )
        .await;
        match asked {
            Ok(Ok(m)) => {
                let status = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Cm-Status"))
                    .and_then(|v| v.as_str().parse::<u16>().ok())
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::OK);
                let jpeg = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Content-Type"))
                    .is_some_and(|v| v.as_str() == "image/jpeg");
                Answer {
                    status,
                    content_type: if jpeg {
                        "image/jpeg"
                    } else {
                        "application/json"
                    },
                    body: m.payload,
                }
            }
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::NO_CAPACITY,
                format!(
                    "mixer {id:?} is moving to another worker (its owner {} is gone): try again \
                     in a few seconds",
                    rec.owner.as_deref().unwrap_or("?")
                ),
            ),
            Ok(Err(e)) => unreachable_fleet(e),
            Err(_) => Answer::error(
                StatusCode::GATEWAY_TIMEOUT,
                codes::INTERNAL,
                format!("mixer {id:?}: its owner did not answer"),
            ),
        }
    }

    /// Subscribes to the room's request subject and answers each request on this host.
    async fn serve_room(&self, id: &str) -> tokio::task::JoinHandle<()> {
        let sub = self.inner.client.subscribe(format!("cm.room.{id}")).await;
        let f = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let Ok(mut sub) = sub else { return };
            while let Some(m) = sub.next().await {
                let Some(reply) = m.reply.clone() else {
                    continue;
                };
                let f = f.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let parsed = serde_json::from_slice::<Value>(&m.payload).ok();
                    let op = parsed
                        .as_ref()
                        .and_then(|v| serde_json::from_value::<Op>(v["op"].clone()).ok());
                    let body = parsed
                        .as_ref()
                        .and_then(|v| v["body"].as_str().map(|s| Bytes::from(s.to_string())))
                        .unwrap_or_default();
                    let a = match op {
                        Some(op) => f.local(op, &id, body).await,
                        None => Answer::error(StatusCode::BAD_REQUEST, codes::PARAM_ERR, "op"),
                    };
                    let mut h = NatsHeaders::new();
                    h.insert("Cm-Status", a.status.as_u16().to_string().as_str());
                    h.insert("Content-Type", a.content_type);
                    let _ = f.inner.client.publish_with_headers(reply, h, a.body).await;
                });
            }
        })
    }

    /// A room call on this host.
    async fn local(&self, op: Op, id: &str, body: Bytes) -> Answer {
        let host = self.inner.host.clone();
        let id = id.to_string();
        match op {
            Op::Get => match host.get(&id) {
                Ok(info) => {
                    let mut v = serde_json::to_value(&info).unwrap_or(Value::Null);
                    if self.lock_owned().contains_key(&id) {
                        v["owner"] = Value::from(self.node());
                    }
                    Answer::json(StatusCode::OK, &v)
                }
                Err(e) => Answer::host(&e),
            },
            Op::Update => {
                let v: Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        return Answer::error(
                            StatusCode::BAD_REQUEST,
                            codes::PARAM_ERR,
                            format!("body: not valid JSON: {e}"),
                        )
                    }
                };
                if let Err(e) = host.update(&id, &v) {
                    return Answer::host(&e);
                }
                self.note_layout(&id, &v).await;
                Answer::json(StatusCode::OK, &json!({"mixerID": id}))
            }
            Op::Destroy => {
                let id2 = id.clone();
                match tokio::task::spawn_blocking(move || host.destroy(&id2)).await {
                    Ok(Ok(outputs)) => {
                        self.room_ended(&id).await;
                        Answer::json(StatusCode::OK, &json!({"mixerID": id, "outputs": outputs}))
                    }
                    Ok(Err(e)) => Answer::host(&e),
                    Err(e) => Answer::error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, e),
                }
            }
            Op::Snapshot => {
                match tokio::task::spawn_blocking(move || host.snapshot_jpeg(&id)).await {
                    Ok(Ok(jpg)) => Answer {
                        status: StatusCode::OK,
                        content_type: "image/jpeg",
                        body: Bytes::from(jpg.to_vec()),
                    },
                    Ok(Err(e)) => Answer::host(&e),
                    Err(e) => Answer::error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, e),
                }
            }
        }
    }

    /// An applied update's layout goes into the room's record (fenced), so a worker that
    /// takes the room over starts with it.
    async fn note_layout(&self, id: &str, update: &Value) {
        let Some(fence) = self.lock_owned().get(id).map(|o| o.fence) else {
            return;
        };
        let layout = update["videoFileCfg"]["layoutConfig"].clone();
        self.modify(id, fence, |r| {
            r.config["videoFileCfg"]["layoutConfig"] = layout.clone();
        })
        .await;
    }

    /// `GET /v1/mixers` in fleet mode: every room of the fleet with its owner (this worker's
    /// own rooms in full, the others as their records say).
    pub async fn list(&self) -> Answer {
        let keys: Vec<String> = match self.inner.rooms.keys().await {
            Ok(k) => k.filter_map(|k| async { k.ok() }).collect().await,
            Err(e) => return unreachable_fleet(e),
        };
        let mut out = Vec::new();
        for id in keys {
            let Ok(Some(e)) = self.inner.rooms.entry(id.as_str()).await else {
                continue;
            };
            let Ok(r) = serde_json::from_slice::<Record>(&e.value) else {
                continue;
            };
            let mine =
                r.owner.as_deref() == Some(self.node()) && self.lock_owned().contains_key(&id);
            let v = match self.inner.host.get(&id) {
                Ok(info) if mine => {
                    let mut v = serde_json::to_value(&info).unwrap_or(Value::Null);
                    v["owner"] = Value::from(self.node());
                    v["fence"] = Value::from(r.fence);
                    v
                }
                _ => json!({
                    "mixerID": id,
                    "state": match r.state { Phase::Queued | Phase::Starting => 1,
                        Phase::Running | Phase::Moving => 2, Phase::Failed => 0 },
                    "queued": r.state == Phase::Queued,
                    "owner": r.owner,
                    "fence": r.fence,
                    "createdAt": r.created_at,
                    "segment": r.segment,
                }),
            };
            out.push(v);
        }
        Answer::json(StatusCode::OK, &json!({"mixers": out}))
    }

    // ---- drain -------------------------------------------------------------------------

    /// SIGTERM: no more jobs or takeovers. With [`FleetOptions::handover`], each room of this worker is
    /// marked moving, stopped (its files final) and its lease dropped so that another worker
    /// goes on with it at once; returns the rooms handed over. Without, nothing (the host's
    /// drain stops them, and their ends remove their records).
    pub async fn drain(&self) -> Vec<String> {
        self.inner.stopping.store(true, Ordering::Release);
        if !self.inner.opts.handover {
            return Vec::new();
        }
        let ids: Vec<String> = self.lock_owned().keys().cloned().collect();
        let mut moved = Vec::new();
        for id in ids {
            let fence = {
                let mut g = self.lock_owned();
                let Some(o) = g.get_mut(&id) else { continue };
                o.leaving = true;
                o.fence
            };
            // the record says moving first: a worker that finds the lease gone continues it
            let mut marked = false;
            if let Ok(Some(e)) = self.inner.rooms.entry(id.as_str()).await {
                if let Ok(mut r) = serde_json::from_slice::<Record>(&e.value) {
                    if r.fence == fence {
                        r.state = Phase::Moving;
                        r.moved_at = Some(now_ms());
                        marked = self
                            .inner
                            .rooms
                            .update(id.as_str(), to_bytes(&r), e.revision)
                            .await
                            .is_ok();
                    }
                }
            }
            let host = self.inner.host.clone();
            let id2 = id.clone();
            let _ = tokio::task::spawn_blocking(move || host.destroy(&id2)).await;
            if let Some(o) = self.take_owned(&id) {
                o.requests.abort();
                if marked {
                    let _ = self
                        .inner
                        .leases
                        .purge_expect_revision(id.as_str(), Some(o.lease_rev))
                        .await;
                }
            }
            if marked {
                let _ = self.inner.client.publish(KICK, Bytes::new()).await;
                moved.push(id);
            }
        }
        let _ = self.inner.client.flush().await;
        moved
    }
}

/// `dir/room_0003.mp4` (or `/dir/room_0003.mp4`) → (`dir/room.mp4`, 3).
fn numbered_name(name: &str) -> Option<(String, u32)> {
    let name = name.strip_prefix('/').unwrap_or(name);
    if name.contains("://") {
        return None;
    }
    let (dir, file) = match name.rfind('/') {
        Some(i) => (&name[..=i], &name[i + 1..]),
        None => ("", name),
    };
    let (stem, ext) = match file.rfind('.') {
        Some(i) => (&file[..i], &file[i..]),
        None => (file, ""),
    };
    let (base, num) = stem.rsplit_once('_')?;
    if num.len() != 4 || !num.bytes().all(|b| b.is_ascii_digit()) || base.is_empty() {
        return None;
    }
    Some((format!("{dir}{base}{ext}"), num.parse().ok()?))
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn unreachable_fleet(e: impl std::fmt::Display) -> Answer {
    Answer::error(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::INTERNAL,
        format!("the fleet's NATS server did not answer: {e}"),
    )
}

async fn bucket(
    js: &jetstream::Context,
    name: &'static str,
    ttl: Duration,
    markers: Option<Duration>,
) -> Result<kv::Store, FleetError> {
    if let Ok(s) = js.get_key_value(name).await {
        return Ok(s);
    }
    match js
        .create_key_value(kv::Config {
            bucket: name.into(),
            history: 1,
            max_age: ttl,
            storage: stream::StorageType::File,
            // markers of removed keys expire (nats-server ≥ 2.11)
            limit_markers: markers,
            ..Default::default()
        })
        .await
    {
        Ok(s) => Ok(s),
        // another worker made it meanwhile
        Err(e) => js
            .get_key_value(name)
            .await
            .map_err(|_| setup(name_of(name))(e.to_string())),
    }
}

fn name_of(n: &'static str) -> &'static str {
    match n {
        ROOMS_BUCKET => "bucket cm_rooms",
        _ => "bucket cm_leases",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names() {
        assert_eq!(
            numbered_name("/rec/room_0003.mp4"),
            Some(("rec/room.mp4".into(), 3))
        );
        assert_eq!(
            numbered_name("room_1_0012.mp4"),
            Some(("room_1.mp4".into(), 12))
        );
        assert_eq!(numbered_name("/rec/room.mp4"), None);
        assert_eq!(numbered_name("/rec/room_12.mp4"), None);
        assert_eq!(numbered_name("rtmp://x/live/a_0001"), None);
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redacted("nats://u:p@127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
