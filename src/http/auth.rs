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
            let got = headers.get(*name).map(|v| v.as_bytes()).unwrap_or_default();
            ok &= bool::from(got.ct_eq(expected));
        }
        if ok {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
