//! The request layer: every request gets an id (`x-request-id`, kept if the client sent
//! a plain one, sent back on the answer), runs in a `request` span carrying that id, and its
//! latency goes to `innohook_request_duration_seconds` by status. An HTTP/1.1 request
//! without `Host` is answered 400 here, before any route.
//!
//! tower-http's request-id, propagate and trace layers did this together for about 2,200
//! more instructions a request (three nested futures, a classified and wrapped response
//! body, the id carried through the extensions). The log lines are theirs, under this
//! module's target. tower-http still marks the `Authorization` header sensitive and times
//! requests out (see [`super::router`]); those two cost next to nothing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tracing::Instrument;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// See the module documentation.
#[derive(Clone, Copy)]
pub struct RequestLayer;

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService { inner }
    }
}

#[derive(Clone)]
pub struct RequestService<S> {
    inner: S,
}

impl<S> Service<Request> for RequestService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let headers = req.headers_mut();
        let id = match headers.get(&X_REQUEST_ID).filter(|id| is_plain_id(id)) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                headers.insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let span = tracing::info_span!(
            "request",
            request_id = %id.to_str().unwrap_or("-"),
            method = %req.method(),
            path = %req.uri().path(),
        );
        // RFC 9112 section 3.2: a server answers 400 to an HTTP/1.1 request without Host.
        let host_missing =
            req.version() == Version::HTTP_11 && !req.headers().contains_key(header::HOST);
        let answer = span.in_scope(|| {
            tracing::debug!("started processing request");
            (!host_missing).then(|| self.inner.call(req))
        });
        Box::pin(
            async move {
                let mut res = match answer {
                    Some(answer) => answer.await?,
                    None => super::ApiError::MissingHost.into_response(),
                };
                res.headers_mut().insert(X_REQUEST_ID.clone(), id);
                finished(res.status(), started.elapsed());
                Ok(res)
            }
            .instrument(span),
        )
    }
}

/// A client's request id is kept only if it reads plainly in a log line: up to 128
/// printable ASCII characters. Otherwise the request gets an id of its own.
fn is_plain_id(id: &HeaderValue) -> bool {
    let id = id.as_bytes();
    (1..=128).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
}

/// Logs the end of a request (as tower-http's trace layer did) and records its latency.
fn finished(status: StatusCode, latency: Duration) {
    let latency_ms = latency.as_millis();
    tracing::debug!(
        latency = %format_args!("{latency_ms} ms"),
        status = status.as_u16(),
        "finished processing request"
    );
    if status.is_server_error() {
        tracing::error!(
            classification = %format_args!("Status code: {status}"),
            latency = %format_args!("{latency_ms} ms"),
            "response failed"
        );
    }
    crate::metrics::record_request_duration(status.as_u16(), latency.as_secs_f64());
}

/// A request id shaped like a UUID v4, from a fast non-cryptographic generator: an id
/// only has to tell requests apart in the logs, and `MakeRequestUuid` made a getrandom
/// system call per request.
fn new_request_id() -> HeaderValue {
    let n =
        fastrand::u128(..) & !(0xf000 << 64) & !(0xc000 << 48) | (0x4000 << 64) | (0x8000 << 48);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [b'-'; 36];
    let digits = (0..36).filter(|i| !matches!(i, 8 | 13 | 18 | 23));
    for (k, i) in digits.enumerate() {
        id[i] = HEX[(n >> (124 - 4 * k) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits and dashes are a valid header value")
}
