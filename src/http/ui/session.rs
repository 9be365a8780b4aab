//! Dashboard sessions and protection against cross-site requests.
//!
//! Signing in with the `[api] token` sets a session cookie (HttpOnly, SameSite=Strict,
//! `Path=/ui`, expiring after [`TTL`]). Its value is `expiry.nonce.mac`, the MAC an
//! HMAC-SHA256 under a key derived from the token: nothing is kept on the server, so a
//! session holds on every replica that shares the token, and changing the token ends every
//! session. Signing out clears the cookie and refuses its nonce in this process until it
//! expires.
//!
//! Every form that changes something carries a synchronizer token derived from the
//! session (an HMAC of its nonce), compared in constant time; and every request other
//! than GET/HEAD must come from the dashboard's own origin by its `Sec-Fetch-Site` header
//! (or, from browsers without it, its `Origin`), which is the only guard of the sign-in
//! form itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "innohook_session";

/// How long a session lasts.
pub(crate) const TTL: Duration = Duration::from_secs(12 * 3600);

type HmacSha256 = Hmac<Sha256>;

/// The keys of the dashboard's sessions, derived from the `[api] token`.
pub(crate) struct Keys {
    mac_key: [u8; 32],
    token_digest: [u8; 32],
    /// Nonces of sessions signed out in this process, with their expiry (unix seconds).
    signed_out: Mutex<HashMap<String, i64>>,
}

/// A signed-in session, as verified from its cookie.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    nonce: String,
    expires: i64,
    /// The synchronizer token its forms carry.
    pub csrf: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Keys {
    pub fn new(token: &str) -> Self {
        let mut derive =
            HmacSha256::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
        derive.update(b"innohook dashboard sessions v1");
        Self {
            mac_key: derive.finalize().into_bytes().into(),
            token_digest: Sha256::digest(token.as_bytes()).into(),
            signed_out: Mutex::default(),
        }
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.mac_key).expect("a 32-byte key");
        for part in parts {
            // Length-prefixed, so that no two lists of parts run together the same way.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// Whether `given` is the token, compared as SHA-256 digests in constant time (so
    /// neither its content nor its length shows in the timing).
    pub fn token_matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(given.ct_eq(&self.token_digest))
    }

    /// A new session from `now` (unix seconds), and its cookie value.
    pub fn issue(&self, now: i64) -> (String, Session) {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let nonce = hex(&nonce);
        let expires = now + TTL.as_secs() as i64;
        let mac = hex(&self
            .mac(&["session", &expires.to_string(), &nonce])
            .finalize()
            .into_bytes());
        let value = format!("{expires}.{nonce}.{mac}");
        (value, self.session(nonce, expires))
    }

    fn session(&self, nonce: String, expires: i64) -> Session {
        let csrf = hex(&self.mac(&["csrf", &nonce]).finalize().into_bytes());
        Session {
            nonce,
            expires,
            csrf,
        }
    }

    /// The session a cookie value stands for, if its MAC holds and it has not expired or
    /// been signed out.
    pub fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let mut parts = value.splitn(3, '.');
        let (expires, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let mac = decode_hex(mac)?;
        self.mac(&["session", expires, nonce])
            .verify_slice(&mac)
            .ok()?;
        let expires: i64 = expires.parse().ok()?;
        if expires <= now {
            return None;
        }
        if self
            .signed_out
            .lock()
            .expect("signed-out lock")
            .contains_key(nonce)
        {
            return None;
        }
        Some(self.session(nonce.to_owned(), expires))
    }

    /// Refuses the session from now on in this process (its cookie is cleared too).
    pub fn sign_out(&self, session: &Session, now: i64) {
        let mut out = self.signed_out.lock().expect("signed-out lock");
        out.retain(|_, expires| *expires > now);
        out.insert(session.nonce.clone(), session.expires);
    }
}

impl Session {
    /// Whether a form's synchronizer token is this session's (in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The session cookie's value in a request, if it carries one.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request came over TLS by way of a proxy (then the cookie is `Secure`).
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` that starts a session.
pub(crate) fn set_cookie(value: &str, request: &HeaderMap) -> HeaderValue {
    let secure = if behind_tls(request) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        TTL.as_secs()
    ))
    .expect("digits, hex and dots")
}

/// The `Set-Cookie` that ends it.
pub(crate) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("innohook_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether a state-changing request comes from the dashboard's own origin: by
/// `Sec-Fetch-Site` when the browser sends it (as every current one does), else by
/// `Origin` against `Host`. A request with neither is not from a browser page (a script
/// with the cookie would need the session's token for any form but sign-in).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host.as_bytes());
    origin_host.is_some() && origin_host == host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires_is_signed_out_or_the_token_changes() {
        let keys = Keys::new("s3cret");
        let (value, session) = keys.issue(1_000);
        let again = keys.verify(&value, 1_001).expect("valid");
        assert_eq!(again.csrf, session.csrf);
        assert!(again.csrf_matches(&session.csrf));
        assert!(!again.csrf_matches("00"));
        let expiry = 1_000 + TTL.as_secs() as i64;
        assert!(keys.verify(&value, expiry).is_none(), "expired");
        assert!(Keys::new("other").verify(&value, 1_001).is_none());
        // Any change to the value breaks it.
        let (expires, rest) = value.split_once('.').unwrap();
        let later = format!("{}.{rest}", expires.parse::<i64>().unwrap() + 1);
        assert!(keys.verify(&later, 1_001).is_none());
        assert!(keys.verify("garbage", 1_001).is_none());
        assert!(keys.verify(&value[..value.len() - 1], 1_001).is_none());
        keys.sign_out(&session, 1_002);
        assert!(keys.verify(&value, 1_003).is_none(), "signed out");
        // Another session is unaffected, and each has its own synchronizer token.
        let (other, other_session) = keys.issue(1_004);
        assert!(keys.verify(&other, 1_005).is_some());
        assert_ne!(other_session.csrf, session.csrf);
    }

    #[test]
    fn only_the_token_signs_in() {
        let keys = Keys::new("s3cret");
        assert!(keys.token_matches("s3cret"));
        assert!(!keys.token_matches("s3cre"));
        assert!(!keys.token_matches(""));
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://a.example:8080"),
            ("host", "a.example:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "a.example:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "null"),
            ("host", "a.example")
        ])));
        assert!(same_origin(&headers(&[])));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; innohook_session=v.x.y; b=2"),
        );
        assert_eq!(cookie(&h), Some("v.x.y"));
        let set = set_cookie("v", &HeaderMap::new());
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.contains("Max-Age=43200") && !set.contains("Secure"));
    }
}
