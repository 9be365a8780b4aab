//! Authentication of pushes by the `UserName` and `Authorization` headers that the
//! InnoPaaS console adds to every request. Compared in constant time; values never logged.

use axum::http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use super::config::AuthConfig;
use super::error::ApiError;

/// The expected header values; a header that is not configured is not checked.
#[derive(Clone)]
pub struct Auth {
    expected: Vec<(&'static str, Vec<u8>)>,
    /// When a refusal was last logged (unix seconds), and how many since went unlogged.
    last_logged: std::sync::Arc<(std::sync::atomic::AtomicI64, std::sync::atomic::AtomicU64)>,
}

/// At most one log line about refused pushes in this many seconds.
const LOG_EVERY_SECS: i64 = 10;

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Self {
        let expected = [
            ("username", &cfg.username),
            ("authorization", &cfg.authorization),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| (name, v.as_bytes().to_vec())))
        .collect();
        Self {
            expected,
            last_logged: Default::default(),
        }
    }

    /// True when no header is configured: anyone can post.
    pub fn is_open(&self) -> bool {
        self.expected.is_empty()
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        // Check every header even after a mismatch, so timing does not tell which failed.
        let mut ok = true;
        let mut wrong = Vec::new();
        for (name, expected) in &self.expected {
            let got = only(headers, name);
            let given = got.map(|v| v.as_bytes()).unwrap_or_default();
            let matched = bool::from(given.ct_eq(expected)) & got.is_some();
            ok &= matched;
            if !matched {
                let given = headers.get_all(*name).iter().count();
                wrong.push(match given {
                    0 => format!("no {} header", display_name(name)),
                    1 => format!("{} does not match", display_name(name)),
                    _ => format!("{} given {given} times", display_name(name)),
                });
            }
        }
        if ok {
            Ok(())
        } else {
            self.log_refusal(&wrong);
            Err(ApiError::Unauthorized)
        }
    }

    /// Says which header was missing or wrong (never a value), at most every
    /// [`LOG_EVERY_SECS`]: what a person setting up the InnoPaaS console needs to see.
    fn log_refusal(&self, wrong: &[String]) {
        use std::sync::atomic::Ordering;
        let (last, unlogged) = &*self.last_logged;
        let now = chrono::Utc::now().timestamp();
        let previous = last.load(Ordering::Relaxed);
        if now - previous < LOG_EVERY_SECS
            || last
                .compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tracing::warn!(
            problem = wrong.join("; "),
            refused_since_last_line = unlogged.swap(0, Ordering::Relaxed),
            "Refused a push with 401: its UserName / Authorization headers do not match [auth]; check the values entered in the InnoPaaS console."
        );
    }
}

/// A header's name as the InnoPaaS console spells it.
fn display_name(name: &str) -> &'static str {
    match name {
        "username" => "UserName",
        _ => "Authorization",
    }
}

/// The one value of header `name`; none when it is missing or given more than once (an
/// ambiguous request: a proxy and innohook could each read another of the values).
pub(super) fn only<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() { None } else { first }
}
