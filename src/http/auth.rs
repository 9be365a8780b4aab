//! Authentication of pushes by the `UserName` and `Authorization` headers that the
//! InnoPaaS console adds to every request. Compared in constant time; values never logged.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::AuthConfig;

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
            let got = headers.get(*name).map(|v| v.as_bytes());
            let matched = bool::from(got.unwrap_or_default().ct_eq(expected));
            ok &= matched;
            if !matched {
                wrong.push(match got {
                    None => format!("no {} header", display_name(name)),
                    Some(_) => format!("{} does not match", display_name(name)),
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
