//! The management console: `GET /` serves one page (HTML, script and style embedded in the
//! binary, no external resources), and the session cookie the page's `<img>`, `<video>` and
//! `EventSource` requests authenticate with (they cannot send `Authorization`).
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `GET /console/app.js`, `GET /console/style.css` | the page and its assets (public: they carry no data) |
//! | `POST /v1/session` | with the bearer token: `204` and `Set-Cookie: cm_session=…; HttpOnly; SameSite=Strict` |
//! | `DELETE /v1/session` | with the bearer token: forgets the cookie's session (logs out) |
//!
//! **The cookie is for reading only.** The auth middleware takes the session cookie on `GET`
//! and `HEAD` requests alone; anything that changes state (create, update, stop, delete) needs
//! the bearer token, which the page keeps in `sessionStorage` and sends itself. A request forged
//! by another site can therefore never act, even where a browser would send the cookie along.
//! Sessions live in memory for [`SESSION_TTL`] (a restart logs everyone out), at most
//! [`MAX_SESSIONS`] at a time (the oldest goes first), and are compared in constant time.
//!
//! The assets are served with a strict `Content-Security-Policy` (scripts and styles from the
//! page's origin only, no inline script, no frames, connections to the origin only),
//! `X-Content-Type-Options: nosniff`, and `Cache-Control: no-cache` with an `ETag` (a reload
//! revalidates and gets `304`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{error, same, App};
use crate::model::events::codes;

/// How long a session cookie is good for.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at most (a new one beyond this pushes out the oldest).
pub const MAX_SESSIONS: usize = 1024;
/// The cookie's name.
pub const COOKIE: &str = "cm_session";

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The page's policy: everything from its own origin, nothing inline, no frames, no forms.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// A session: its random id and when it expires.
type Session = ([u8; 32], Instant);

/// The sessions the console opened, oldest first.
#[derive(Clone, Default)]
pub(super) struct Sessions(Arc<Mutex<Vec<Session>>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session valid for `ttl`: its id as 64 hex digits.
    pub(super) fn open(&self, ttl: Duration) -> Result<String, getrandom::Error> {
        let mut id = [0u8; 32];
        getrandom::getrandom(&mut id)?;
        let now = Instant::now();
        let mut s = self.lock();
        s.retain(|(_, exp)| *exp > now);
        while s.len() >= MAX_SESSIONS {
            s.remove(0);
        }
        s.push((id, now + ttl));
        Ok(hex(&id))
    }

    /// `given` (64 hex digits) is a session that has not expired. Every held id is compared,
    /// each in constant time.
    pub(super) fn valid(&self, given: &str) -> bool {
        let Some(id) = unhex(given) else { return false };
        let now = Instant::now();
        let mut hit = false;
        for (s, exp) in self.lock().iter() {
            hit |= same(s, &id) && *exp > now;
        }
        hit
    }

    /// Forgets `given`.
    pub(super) fn close(&self, given: &str) {
        if let Some(id) = unhex(given) {
            self.lock().retain(|(s, _)| !same(s, &id));
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The value of the session cookie in the request's `Cookie` headers, if any.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

/// The cookie may authenticate this method: reads only.
pub(super) fn cookie_allowed(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD
}

/// The page and its assets.
pub(super) fn routes() -> Router<App> {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { asset(&h, INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/app.js",
            get(|h: HeaderMap| async move { asset(&h, APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/style.css",
            get(|h: HeaderMap| async move { asset(&h, STYLE, "text/css; charset=utf-8") }),
        )
        // browsers ask for it on their own; no icon, and no 404 in the page's log
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

/// FNV-1a, 64 bits: the assets' ETag (they change only with the binary).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn asset(req: &HeaderMap, body: &'static str, ctype: &'static str) -> Response {
    let etag = format!("\"{:016x}\"", fnv(body));
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, ctype)], body).into_response()
    };
    let h = r.headers_mut();
    for (k, v) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// `POST /v1/session` (behind the token): a session cookie for the page's reads.
pub(super) async fn open_session(State(app): State<App>) -> Response {
    if app.token.is_none() {
        // no token, no session needed: every read is open already
        return StatusCode::NO_CONTENT.into_response();
    }
    match app.sessions.open(SESSION_TTL) {
        Ok(id) => {
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                SESSION_TTL.as_secs()
            );
            let mut r = StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            format!("internal: no random bytes for a session: {e}"),
        ),
    }
}

/// `DELETE /v1/session` (behind the token): forgets the cookie's session and clears it.
pub(super) async fn close_session(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        app.sessions.close(id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cm_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_check_expire_close() {
        let s = Sessions::default();
        let a = s.open(SESSION_TTL).unwrap();
        assert_eq!(a.len(), 64);
        assert!(s.valid(&a));
        let b = s.open(SESSION_TTL).unwrap();
        assert_ne!(a, b);
        // a changed digit, a prefix, junk, upper case of another id
        let mut wrong = a.clone().into_bytes();
        wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
        assert!(!s.valid(std::str::from_utf8(&wrong).unwrap()));
        assert!(!s.valid(&a[..63]));
        assert!(!s.valid(""));
        assert!(!s.valid(&"z".repeat(64)));
        s.close(&a);
        assert!(!s.valid(&a));
        assert!(s.valid(&b));
        // expired
        let c = s.open(Duration::ZERO).unwrap();
        assert!(!s.valid(&c));
        // the oldest goes once the store is full
        for _ in 0..MAX_SESSIONS {
            s.open(SESSION_TTL).unwrap();
        }
        assert!(!s.valid(&b));
        assert!(s.lock().len() <= MAX_SESSIONS);
    }

    #[test]
    fn cookie_parsing_and_methods() {
        let mut h = HeaderMap::new();
        assert_eq!(session_cookie(&h), None);
        h.append(header::COOKIE, "a=1; cm_session=abc ; b=2".parse().unwrap());
        assert_eq!(session_cookie(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "x=1".parse().unwrap());
        h.append(header::COOKIE, "cm_session=def".parse().unwrap());
        assert_eq!(session_cookie(&h), Some("def"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "xcm_session=1; cm_sessionx=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), None);
        assert!(cookie_allowed(&Method::GET) && cookie_allowed(&Method::HEAD));
        for m in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            assert!(!cookie_allowed(&m));
        }
    }

    #[test]
    fn assets_headers_and_revalidation() {
        let r = asset(&HeaderMap::new(), INDEX, "text/html; charset=utf-8");
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        let etag = h[header::ETAG].clone();
        let mut req = HeaderMap::new();
        req.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            asset(&req, INDEX, "text/html").status(),
            StatusCode::NOT_MODIFIED
        );
        // no inline script or style in the page: the policy would block it
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!INDEX.contains("onclick") && !INDEX.contains("<style"));
    }
}
