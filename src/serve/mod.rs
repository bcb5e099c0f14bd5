//! `cloudmixer serve`: the vendor's mixer API over HTTP on a [`Host`] (feature `serve`).
//!
//! Routes (JSON bodies, the vendor's field names and error codes):
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/mixers` | create: the vendor's `cloudMixerCfg` plus `mixerID` and `inputs` → `201 {"mixerID"}` |
//! | `POST /v1/mixers/{id}/content` | `UpdateCloudMixerContent`, applied at the next frame |
//! | `DELETE /v1/mixers/{id}` | `DestroyCloudMixer`: answers once the files are final, with each output's info |
//! | `GET /v1/mixers`, `GET /v1/mixers/{id}` | state, outputs, stats |
//! | `GET /v1/mixers/{id}/snapshot.jpg` | the latest composed picture (≤ 1 s old, one encode per second at most) |
//! | `GET /v1/recordings`, `GET`/`DELETE /v1/recordings/{*path}` | the recordings under the storage root and in the buckets the rooms uploaded to: list (`where` local / uploaded / both, state, upload progress), download (ranges; an uploaded-only one streamed from the bucket), delete (`?where=local\|bucket\|all`), `…/thumbnail.jpg` ([`recordings`], [`thumbnail`]) |
//! | `GET /v1/events` | Server-Sent Events, one per vendor event with its `mixerID`; `Last-Event-ID` resumes |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz`, `GET /readyz` | alive; taking rooms |
//! | `GET /`, `GET /console/{app.js,style.css}` | the management console ([`console`]; public, no data) |
//! | `POST`/`DELETE /v1/session` | the console's session cookie (reads only): open, close |
//! | `POST /v1/whip/{mixerID}/{camid}`, `DELETE …/{session}` | WebRTC publishers (WHIP, RFC 9725): an SDP offer → the answer; CORS for `--whip-origin` pages ([`whip`]) |
//!
//! Errors are `{"code": <vendor code>, "error": "<field>: <what is wrong>"}` with status 400
//! (bad request), 401 (no or wrong token), 404 (unknown mixer), 409 (already running), 413
//! (body too large), 502 (a bucket could not be asked), 503 (no capacity, draining) or 500.
//! With a token every route but `/healthz` and the console's page needs `Authorization: Bearer
//! <token>`; `GET` and `HEAD` also take the console's session cookie (`POST /v1/session`),
//! nothing else does.

pub mod console;
#[cfg(feature = "fleet")]
pub mod fleet;
mod metrics;
pub mod recordings;
pub mod thumbnail;
pub mod webhook;
pub mod whip;

pub use whip::WhipOptions;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::host::{CreateRoom, ErrorKind, Host, HostError, HostEvent};
use crate::model::events::codes;

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1 << 20;

/// How the service listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen (`127.0.0.1:8780` by default).
    pub listen: SocketAddr,
    /// The bearer token every route but `/healthz` needs (`None`: no auth, loopback only).
    pub token: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8780)),
            token: None,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No token, and an address other machines can reach.
    #[error(
        "refusing to listen on {0} without a token: give --token-file, or listen on 127.0.0.1"
    )]
    NoTokenOnNetwork(SocketAddr),
    /// The token is empty or not printable.
    #[error("the token must be 16-4096 printable ASCII characters without spaces")]
    BadToken,
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
struct App {
    host: Host,
    token: Option<Arc<[u8]>>,
    /// What was read from recordings the service did not record.
    probes: recordings::ProbeCache,
    /// Recordings' thumbnails.
    thumbs: thumbnail::ThumbCache,
    /// The console's session cookies (reads only).
    sessions: console::Sessions,
    /// WHIP ingest (sessions, allowed origins).
    whip: Arc<WhipOptions>,
    /// The fleet this worker belongs to (`serve --fleet`).
    #[cfg(feature = "fleet")]
    fleet: Option<fleet::Fleet>,
}

/// Checks the options (a token for a non-loopback address, the token's shape).
pub fn check_options(opts: &ServeOptions) -> Result<(), ServeError> {
    match &opts.token {
        None if !opts.listen.ip().is_loopback() => Err(ServeError::NoTokenOnNetwork(opts.listen)),
        Some(t) if !(16..=4096).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(ServeError::BadToken)
        }
        _ => Ok(()),
    }
}

/// The service's routes on `host` (WHIP as `whip` says).
pub fn router(host: Host, token: Option<&str>, whip: WhipOptions) -> Router {
    routes(app_of(host, token, whip))
}

fn app_of(host: Host, token: Option<&str>, whip: WhipOptions) -> App {
    App {
        host,
        token: token.map(|t| Arc::from(t.as_bytes())),
        probes: Default::default(),
        thumbs: Default::default(),
        sessions: Default::default(),
        whip: Arc::new(whip),
        #[cfg(feature = "fleet")]
        fleet: None,
    }
}

fn routes(app: App) -> Router {
    // the preflight (OPTIONS) passes the token check, the CORS layer answers it
    let whip = Router::new()
        .route("/v1/whip/{mixer}/{camid}", post(whip::offer))
        .route("/v1/whip/{mixer}/{camid}/{session}", delete(whip::end))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), auth))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            whip::cors,
        ));
    let api = Router::new()
        .route("/v1/mixers", post(create).get(list))
        .route("/v1/mixers/{id}", get(get_one).delete(destroy))
        .route("/v1/mixers/{id}/content", post(update))
        .route("/v1/mixers/{id}/snapshot.jpg", get(snapshot))
        .route("/v1/recordings", get(recordings::list))
        .route(
            "/v1/recordings/{*path}",
            get(recordings::download).delete(recordings::delete),
        )
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics_text))
        .route("/readyz", get(readyz))
        .route(
            "/v1/session",
            post(console::open_session).delete(console::close_session),
        )
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(console::routes())
        .merge(api)
        .merge(whip)
        .fallback(|| async { error(StatusCode::NOT_FOUND, codes::PARAM_ERR, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_long_bodies))
        .with_state(app)
}

/// A body whose `Content-Length` is over [`MAX_BODY`] is refused before any of it is read
/// (413, connection closed): the client gets the answer instead of a broken pipe half-way
/// through sending it. Bodies without a length are cut off at the limit by `DefaultBodyLimit`.
async fn refuse_long_bodies(req: Request, next: Next) -> Response {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match len {
        Some(n) if n > MAX_BODY as u64 => {
            let mut r = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::PARAM_ERR,
                format!("body: {n} bytes, more than the {MAX_BODY} taken"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, "close".parse().expect("static"));
            r
        }
        _ => next.run(req).await,
    }
}

/// Serves `host` on `listener` until `shutdown` completes, then finishes the requests in
/// flight (open event streams end) and ends the WHIP sessions.
pub async fn serve(
    host: Host,
    listener: tokio::net::TcpListener,
    token: Option<&str>,
    whip: WhipOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_app(app_of(host, token, whip), listener, shutdown).await
}

/// As [`serve`], for a worker of a fleet: creates become jobs of the fleet's queue, a room's
/// calls reach its owner, the list and the events are the fleet's ([`fleet`]).
#[cfg(feature = "fleet")]
pub async fn serve_in_fleet(
    host: Host,
    listener: tokio::net::TcpListener,
    token: Option<&str>,
    whip: WhipOptions,
    fleet: fleet::Fleet,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut app = app_of(host, token, whip);
    app.fleet = Some(fleet);
    serve_app(app, listener, shutdown).await
}

async fn serve_app(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let sessions = app.whip.sessions.clone();
    let app = routes(app).into_make_service_with_connect_info::<SocketAddr>();
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(s) = sessions {
        let _ = tokio::task::spawn_blocking(move || s.end_all()).await;
    }
    res?;
    Ok(())
}

/// An error answer: status, vendor code, message (`{"code", "error"}`).
struct ApiError(StatusCode, i32, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"code": self.1, "error": self.2}))).into_response()
    }
}

fn error(status: StatusCode, code: i32, msg: impl std::fmt::Display) -> Response {
    ApiError(status, code, msg.to_string()).into_response()
}

fn bad_request(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, codes::PARAM_ERR, msg)
}

/// The HTTP status of a host error.
fn host_status(e: &HostError) -> StatusCode {
    match e.kind() {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn host_error(e: &HostError) -> Response {
    error(host_status(e), e.code(), e)
}

#[cfg(feature = "fleet")]
impl IntoResponse for fleet::Answer {
    fn into_response(self) -> Response {
        (
            self.status,
            [
                (header::CONTENT_TYPE, self.content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.body,
        )
            .into_response()
    }
}

/// Byte strings equal, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    std::hint::black_box(diff) == 0
}

async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::OPTIONS && whip::is_whip(req.uri().path()) {
        // a WHIP preflight: the browser sends no credentials with it (answered by whip::cors)
        return next.run(req).await;
    }
    if let Some(token) = &app.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::as_bytes);
        let bearer = given.is_some_and(|g| same(g, token));
        // the console's session cookie: reads only (a forged cross-site POST/DELETE never acts)
        let cookie = console::session_cookie(req.headers());
        let session = !bearer
            && console::cookie_allowed(req.method())
            && cookie.is_some_and(|c| app.sessions.valid(c));
        if !bearer && !session {
            let msg =
                if given.is_none() && cookie.is_some() && !console::cookie_allowed(req.method()) {
                    "the session cookie is for reads only: send Authorization: Bearer …"
                } else {
                    "missing or wrong token (Authorization: Bearer …)"
                };
            let mut r = error(StatusCode::UNAUTHORIZED, codes::PARAM_ERR, msg);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            return r;
        }
    } else if let Err(msg) = local_only(
        req.headers(),
        // a WHIP publish from a page of an origin the operator allowed (--whip-origin)
        whip::is_whip(req.uri().path()) && app.whip.allowed(req.headers()).is_some(),
    ) {
        return error(StatusCode::FORBIDDEN, codes::PARAM_ERR, msg);
    }
    next.run(req).await
}

/// Without a token the service listens on loopback only; what reaches it must also come from
/// this machine's own pages: a `Host` that is an IP address or `localhost` (a DNS name bound to
/// 127.0.0.1 by another site — DNS rebinding — is refused) and, when a browser names the
/// page's `Origin`, the same host and port (a page of another origin cannot POST a create),
/// unless `origin_allowed` (a WHIP route called from a `--whip-origin` page).
fn local_only(h: &HeaderMap, origin_allowed: bool) -> Result<(), String> {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let local = name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok();
    if !local {
        return Err(format!(
            "Host: {host:?} is not this machine's address (without a token only requests to an \
             IP address or localhost are taken)"
        ));
    }
    if origin_allowed {
        return Ok(());
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let o = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if !o.eq_ignore_ascii_case(host) {
            return Err(format!(
                "Origin: {origin:?} is another site's page (without a token only this service's \
                 own console may call it from a browser)"
            ));
        }
    }
    Ok(())
}

/// The JSON body, or a 400 naming what is wrong with it.
fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("body: not valid JSON: {e}")))
}

/// Runs a blocking host call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            format!("internal: {e}"),
        )
    })
}

/// The create body: the vendor's config plus `mixerID` and `inputs` (taken out of it).
fn create_request(mut v: Value) -> Result<CreateRoom, ApiError> {
    let bad = bad_request;
    let Some(obj) = v.as_object_mut() else {
        return Err(bad("body: expected a JSON object (the mixer config)".into()));
    };
    let mixer_id = match obj.remove("mixerID") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(bad(format!("mixerID: expected a string, got {other}"))),
    };
    let inputs = match obj.remove("inputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(bad(format!(
                    "inputs.{k}: expected a URL string, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad(format!(
                "inputs: expected an object of camid → URL, got {other}"
            )))
        }
    };
    Ok(CreateRoom {
        mixer_id,
        config: v,
        inputs,
    })
}

async fn create(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let req = match body_json(&body).and_then(create_request) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    #[cfg(feature = "fleet")]
    if let Some(f) = &app.fleet {
        return f.create(req).await.into_response();
    }
    let host = app.host.clone();
    match blocking(move || host.create(req)).await {
        Ok(Ok(id)) => (StatusCode::CREATED, Json(json!({"mixerID": id}))).into_response(),
        Ok(Err(e)) => host_error(&e),
        Err(r) => r.into_response(),
    }
}

async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    #[cfg(feature = "fleet")]
    if let Some(f) = &app.fleet {
        return f
            .request(fleet::Op::Update, &id, body)
            .await
            .into_response();
    }
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match app.host.update(&id, &v) {
        Ok(()) => Json(json!({"mixerID": id})).into_response(),
        Err(e) => host_error(&e),
    }
}

async fn destroy(State(app): State<App>, Path(id): Path<String>) -> Response {
    #[cfg(feature = "fleet")]
    if let Some(f) = &app.fleet {
        return f
            .request(fleet::Op::Destroy, &id, Default::default())
            .await
            .into_response();
    }
    let host = app.host.clone();
    let id2 = id.clone();
    match blocking(move || host.destroy(&id2)).await {
        Ok(Ok(outputs)) => Json(json!({"mixerID": id, "outputs": outputs})).into_response(),
        Ok(Err(e)) => host_error(&e),
        Err(r) => r.into_response(),
    }
}

async fn snapshot(State(app): State<App>, Path(id): Path<String>) -> Response {
    #[cfg(feature = "fleet")]
    if let Some(f) = &app.fleet {
        return f
            .request(fleet::Op::Snapshot, &id, Default::default())
            .await
            .into_response();
    }
    let host = app.host.clone();
    match blocking(move || host.snapshot_jpeg(&id)).await {
        Ok(Ok(jpg)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpg.to_vec(),
        )
            .into_response(),
        Ok(Err(e)) => host_error(&e),
        Err(r) => r.into_response(),
    }
}

async fn list(State(app): State<App>) -> Response {
    #[cfg(feature = "fleet")]
    if let Some(f) = &app.fleet {
        return f.list().await.into_response();
    }
    Json(json!({"mixers": app.host.list()})).into_response()
}

async fn get_one(State(app): State<App>, Path(id): Path<String>) -> Response {
    #[cfg(feature = "fleet")]
    if let Some(f) = &app.fleet {
        return f
            .request(fleet::Op::Get, &id, Default::default())
            .await
            .into_response();
    }
    match app.host.get(&id) {
        Ok(info) => Json(info).into_response(),
        Err(e) => host_error(&e),
    }
}

async fn readyz(State(app): State<App>) -> Response {
    if app.host.accepting() {
        (StatusCode::OK, "ready\n").into_response()
    } else if app.host.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "at capacity\n").into_response()
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    let host = app.host.clone();
    #[cfg(feature = "fleet")]
    let fleet = app.fleet.as_ref().map(|f| metrics::FleetFigures {
        connected: f.connected(),
        owned: f.owned(),
        takeovers: f.takeovers(),
    });
    #[cfg(not(feature = "fleet"))]
    let fleet = None;
    match blocking(move || metrics::render(&host.stats(), fleet)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(r) => r.into_response(),
    }
}

/// The host's events as a stream (bridged from the host's channel by a thread that ends once
/// the client is gone).
struct EventFeed(tokio::sync::mpsc::Receiver<Arc<HostEvent>>);

impl futures_core::Stream for EventFeed {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| {
            e.map(|e| {
                Ok(Event::default()
                    .id(e.seq.to_string())
                    .event(e.name())
                    .data(e.to_json().to_string()))
            })
        })
    }
}

async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    #[cfg(feature = "fleet")]
    if let Some(f) = &app.fleet {
        return match f.events(since).await {
            Ok(s) => {
                use futures_util::StreamExt;
                let s = s.map(|(seq, name, data)| {
                    Ok::<_, Infallible>(Event::default().id(seq.to_string()).event(name).data(data))
                });
                Sse::new(s)
                    .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
                    .into_response()
            }
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::INTERNAL,
                format!("the fleet's events: {e}"),
            ),
        };
    }
    let (missed, rx) = app.host.subscribe(since);
    let (tx, out) = tokio::sync::mpsc::channel::<Arc<HostEvent>>(256);
    let bridge = std::thread::Builder::new()
        .name("cm-sse".into())
        .spawn(move || {
            for e in missed {
                if tx.blocking_send(e).is_err() {
                    return;
                }
            }
            // Wakes at least once a second so a client that left frees this thread even
            // while no room sends an event.
            loop {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(e) => {
                        if tx.blocking_send(e).is_err() {
                            return;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) if !tx.is_closed() => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = bridge {
        return error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, e);
    }
    Sse::new(EventFeed(out))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare_and_options() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
        let open = ServeOptions {
            listen: "0.0.0.0:8780".parse().unwrap(),
            token: None,
        };
        assert!(matches!(
            check_options(&open),
            Err(ServeError::NoTokenOnNetwork(_))
        ));
        assert!(check_options(&ServeOptions::default()).is_ok());
        let short = ServeOptions {
            token: Some("x".into()),
            ..ServeOptions::default()
        };
        assert!(matches!(check_options(&short), Err(ServeError::BadToken)));
    }
}
