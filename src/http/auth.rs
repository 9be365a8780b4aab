//! Authentication of pushes by the `UserName` and `Authorization` headers that the
//! InnoPaaS console adds to every request. Compared in constant time; values never logged.

use axum::http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::AuthConfig;

/// The expected header values; a header that is not configured is not checked.
#[derive(Clone)]
pub struct Auth {
    expected: Vec<(&'static str, Vec<u8>)>,
}

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Self {
        let expected = [
            ("username", &cfg.username),
            ("authorization", &cfg.authorization),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| (name, v.as_bytes().to_vec())))
        .collect();
        Self { expected }
    }

    /// True when no header is configured: anyone can post.
    pub fn is_open(&self) -> bool {
        self.expected.is_empty()
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        // Check every header even after a mismatch, so timing does not tell which failed.
        let mut ok = true;
        for (name, expected) in &self.expected {
            let got = only(headers, name);
            let given = got.map(|v| v.as_bytes()).unwrap_or_default();
            ok &= bool::from(given.ct_eq(expected)) & got.is_some();
        }
        if ok {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// The one value of header `name`; none when it is missing or given more than once (an
/// ambiguous request: a proxy and innohook could each read another of the values).
pub(super) fn only<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() { None } else { first }
}
