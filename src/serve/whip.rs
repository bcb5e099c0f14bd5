//! WHIP (RFC 9725) routes: a WebRTC publisher takes one camera of a running room.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/whip/{mixerID}/{camid}` | `Content-Type: application/sdp` offer → `201`, the SDP answer, `Location: /v1/whip/{mixerID}/{camid}/{session}` |
//! | `DELETE /v1/whip/{mixerID}/{camid}/{session}` | ends the session (the camera shows its placeholder, the input is `idle`) |
//! | `OPTIONS` on both | CORS preflight for the pages of the `--whip-origin` origins (no auth) |
//!
//! The POST and DELETE need the API's bearer token. The camera is taken
//! ([`Host::publish`](crate::host::Host::publish)) before any ICE or DTLS work: an unknown
//! mixer is 404, a bad camid 400, a camera that the room's inputs feed or that another
//! publisher holds 409 (code 906). Without `--webrtc-udp` the routes answer 503. CORS headers
//! are only ever sent to an allowed origin.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{blocking, error, host_error, App};
use crate::host::feed::whip::{Whip, WhipError};
use crate::model::events::codes;

/// The service's WHIP ingest: its sessions (`None`: off) and the origins whose pages may call it.
#[derive(Debug, Clone, Default)]
pub struct WhipOptions {
    /// The sessions (`serve --webrtc-udp`); `None`: WHIP is off (503).
    pub sessions: Option<Arc<Whip>>,
    /// Origins (`https://app.example.com`) whose pages may publish from a browser
    /// (`serve --whip-origin`); others get no CORS headers.
    pub origins: Vec<String>,
}

impl WhipOptions {
    /// The request's `Origin` when it is one of the allowed.
    pub(super) fn allowed(&self, h: &HeaderMap) -> Option<HeaderValue> {
        let o = h.get(header::ORIGIN)?;
        let s = o.to_str().ok()?;
        self.origins
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(s.trim_end_matches('/')))
            .then(|| o.clone())
    }
}

/// Whether `path` is a WHIP route (its preflight needs no token).
pub(super) fn is_whip(path: &str) -> bool {
    path.starts_with("/v1/whip/")
}

/// Adds the CORS headers for an allowed `Origin` to every WHIP answer (errors included, so a
/// page can read them); answers the preflight.
pub(super) async fn cors(State(app): State<App>, req: Request, next: Next) -> Response {
    let allowed = app.whip.allowed(req.headers());
    let mut r = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert("accept-post", HeaderValue::from_static("application/sdp"));
        if allowed.is_some() {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, DELETE, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        r
    } else {
        next.run(req).await
    };
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Location"),
        );
    }
    r
}

fn off() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::PARAM_ERR,
        "WHIP is off: start the service with --webrtc-udp IP:PORT-PORT",
    )
}

/// `POST /v1/whip/{mixerID}/{camid}`: the offer → the answer.
pub(super) async fn offer(
    State(app): State<App>,
    Path((mixer, camid)): Path<(String, String)>,
    exts: axum::http::Extensions,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(whip) = app.whip.sessions.clone() else {
        return off();
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::PARAM_ERR,
            format!("Content-Type: {ctype:?}: expected application/sdp (an SDP offer)"),
        );
    }
    let Ok(sdp) = String::from_utf8(body.to_vec()) else {
        return error(
            StatusCode::BAD_REQUEST,
            codes::PARAM_ERR,
            "body: the SDP offer is not UTF-8",
        );
    };
    let source = match exts.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(a)) => format!("whip://{}", a.ip()),
        None => "whip://".to_string(),
    };
    let host = app.host.clone();
    let (m, c) = (mixer.clone(), camid.clone());
    let res = blocking(move || whip.start(&host, &m, &c, &sdp, &source)).await;
    match res {
        Ok(Ok((id, answer))) => {
            let loc = format!(
                "/v1/whip/{}/{}/{id}",
                escape_segment(&mixer),
                escape_segment(&camid)
            );
            let mut r = (StatusCode::CREATED, answer).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/sdp"),
            );
            if let Ok(v) = HeaderValue::from_str(&loc) {
                h.insert(header::LOCATION, v);
            }
            r
        }
        Ok(Err(WhipError::Host(e))) => host_error(&e),
        Ok(Err(e @ WhipError::BadOffer(_))) => error(StatusCode::BAD_REQUEST, codes::PARAM_ERR, e),
        Ok(Err(e @ WhipError::Full(..))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, codes::NO_CAPACITY, e)
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, e),
        Err(r) => r,
    }
}

/// `DELETE /v1/whip/{mixerID}/{camid}/{session}`: ends the session.
pub(super) async fn end(
    State(app): State<App>,
    Path((mixer, camid, id)): Path<(String, String, String)>,
) -> Response {
    let Some(whip) = app.whip.sessions.clone() else {
        return off();
    };
    match blocking(move || whip.end(&mixer, &camid, &id)).await {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            codes::PARAM_ERR,
            "no such WHIP session (it ended, or another camera's)",
        ),
        Err(r) => r,
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn escape_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped() {
        assert_eq!(escape_segment("Usr1.-1"), "Usr1.-1");
        assert_eq!(escape_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let o = WhipOptions {
            sessions: None,
            origins: vec!["http://127.0.0.1:9000".into()],
        };
        let mut h = HeaderMap::new();
        assert!(o.allowed(&h).is_none());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9000"),
        );
        assert!(o.allowed(&h).is_some());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(o.allowed(&h).is_none());
    }
}
