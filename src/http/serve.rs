//! Serving connections on a public port: the accept loop and each connection's limits.
//!
//! As `axum::serve` with graceful shutdown (whose loop this follows: on the signal the
//! listener closes, idle connections close, requests in flight finish), and besides:
//! - a client must send a request's head (request line and headers) within
//!   `header_timeout_secs` of connecting, or on a kept-alive connection of the first byte
//!   of that request; a kept-alive connection idle for `idle_timeout_secs` is closed,
//!   and so is one whose client takes nothing of an answer for as long. A request being
//!   answered is never cut by these (the request timeout covers it), nor an answer that a
//!   slow client keeps reading;
//! - at most `max_connections` are open at once: further ones wait in the kernel's
//!   queue (of [`LISTEN_BACKLOG`]) until one closes (a log line and a metric say so);
//! - an accept that fails for lack of file descriptors backs off (10 ms doubling to 1 s)
//!   instead of spinning, and says so in a metric;
//! - while either limit holds, [`Connections::exhausted`] says which, for `/readyz`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::Service;

use super::config::ServerConfig;
use crate::metrics as m;

/// The limits on each connection, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn new(cfg: &ServerConfig) -> Self {
        Self {
            header_timeout: Duration::from_secs(cfg.header_timeout_secs),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
            max_connections: cfg.max_connections,
        }
    }
}

/// Why the server takes no more connections right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// `server.max_connections` are open.
    Connections,
    /// The process has no file descriptor left (its open-file limit).
    Files,
}

/// What the accept loop knows about the connections, for the readiness probe.
#[derive(Debug, Default)]
pub struct Connections {
    at_cap: AtomicBool,
    out_of_files: AtomicBool,
}

impl Connections {
    /// Why no more connections are taken right now, if that is so.
    pub fn exhausted(&self) -> Option<Exhausted> {
        if self.out_of_files.load(Ordering::Relaxed) || files_exhausted_now() {
            Some(Exhausted::Files)
        } else if self.at_cap.load(Ordering::Relaxed) {
            Some(Exhausted::Connections)
        } else {
            None
        }
    }
}

/// Whether the process cannot open a file right now for lack of descriptors.
pub fn files_exhausted_now() -> bool {
    match std::fs::File::open("/dev/null") {
        Ok(_) => false,
        Err(e) => is_out_of_files(&e),
    }
}

fn is_out_of_files(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Pending connections the kernel keeps for the accept loop (capped by the system's
/// `net.core.somaxconn`). The usual 128 overflowed under a burst of a few hundred
/// connections, and a client whose connect is dropped tries again only a second later.
const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `addr`, with room for [`LISTEN_BACKLOG`] connections not yet accepted.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std and tokio do: a restart may bind again at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `signal` resolves, then until every connection
/// has finished.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    connections: Arc<Connections>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    // As in axum::serve: connections watch `signal_tx.closed()`, which the signal's
    // dropping of the one receiver resolves; the loop waits for every connection's
    // `close_rx` before returning.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut at_cap_log = Every::default();
    let mut out_of_files_log = Every::default();
    let mut recovered_log = Every::default();
    let mut backoff = Duration::ZERO;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                connections.at_cap.store(true, Ordering::Relaxed);
                metrics::counter!(m::CONNECTIONS_LIMITED).increment(1);
                if let Some(times) = at_cap_log.due() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        times,
                        "Open connections reached server.max_connections; new ones wait until one closes (/readyz answers 503 meanwhile)."
                    );
                }
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = signal_tx.closed() => break,
                };
                connections.at_cap.store(false, Ordering::Relaxed);
                slot
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = signal_tx.closed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The client went away before we took its connection.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                let out_of_files = is_out_of_files(&e);
                let reason = if out_of_files { "open_files" } else { "other" };
                metrics::counter!(m::ACCEPT_ERRORS, "reason" => reason).increment(1);
                connections
                    .out_of_files
                    .store(out_of_files, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                if let Some(times) = out_of_files_log.due() {
                    tracing::error!(
                        error = %e,
                        times,
                        retry_in_ms = backoff.as_millis() as u64,
                        "Cannot accept connections{}; retrying (/readyz answers 503 meanwhile).",
                        if out_of_files { ": the process is out of file descriptors (see the open-file limit logged at startup)" } else { "" }
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = signal_tx.closed() => break,
                }
            }
        };
        if !backoff.is_zero() {
            backoff = Duration::ZERO;
            connections.out_of_files.store(false, Ordering::Relaxed);
            // At the limit, every closed connection makes room for one accept: once a
            // minute is enough to say so.
            if let Some(times) = recovered_log.due() {
                tracing::info!(times, "Accepting connections again.");
            }
        }
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            limits,
            signal_tx.clone(),
            close_rx.clone(),
            slot,
        ));
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Says when a repeated log line is due: at the first time, then at most once a minute,
/// with how many times it happened since.
#[derive(Default)]
struct Every {
    last: Option<Instant>,
    times: u64,
}

impl Every {
    fn due(&mut self) -> Option<u64> {
        self.times += 1;
        match self.last {
            Some(last) if last.elapsed() < Duration::from_secs(60) => None,
            _ => {
                self.last = Some(Instant::now());
                Some(std::mem::take(&mut self.times))
            }
        }
    }
}

/// Serves one connection until it is done, times out, or the shutdown has drained it.
async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: Limits,
    signal_tx: watch::Sender<()>,
    close_rx: watch::Receiver<()>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let _open = Open::counted();
    let activity = Arc::new(Activity::opened());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = Tracked {
        router,
        activity: activity.clone(),
        peer,
    };
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, service)
    );
    let mut shutdown = pin!(signal_tx.closed());
    let mut draining = false;
    let mut expiry = pin!(tokio::time::sleep_until(activity.deadline(&limits).into()));
    let mut seen = activity.changes.load(Ordering::Relaxed);
    let timed_out = std::future::poll_fn(|cx| {
        if !draining && shutdown.as_mut().poll(cx).is_ready() {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::trace!(error = %e, "Connection ended with an error.");
            }
            return Poll::Ready(None);
        }
        loop {
            // The timer is moved only when the deadline came nearer; a later one is
            // looked at when the timer fires (under load the deadline moves with every
            // request, and moving a timer costs more than the rest of this together).
            let changes = activity.changes.load(Ordering::Relaxed);
            if changes != seen {
                seen = changes;
                let deadline = tokio::time::Instant::from(activity.deadline(&limits));
                if deadline < expiry.deadline() {
                    expiry.as_mut().reset(deadline);
                }
            }
            if expiry.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match activity.deadline(&limits) {
                Deadline::At(at, phase) if at <= Instant::now() => return Poll::Ready(Some(phase)),
                later => expiry.as_mut().reset(later.into()),
            }
        }
    })
    .await;
    if let Some(phase) = timed_out {
        metrics::counter!(m::CONNECTIONS_TIMED_OUT, "phase" => phase.as_str()).increment(1);
        tracing::debug!(
            phase = phase.as_str(),
            "Closed a connection that took too long."
        );
    }
    drop(slot);
    drop(close_rx);
}

/// A connection counted in `innohook_connections_open` until it is dropped, also by a
/// panic or at the end of the shutdown's grace.
struct Open(metrics::Gauge);

impl Open {
    fn counted() -> Self {
        let open = metrics::gauge!(m::CONNECTIONS_OPEN);
        open.increment(1.0);
        Self(open)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Which wait of a connection ran out.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Sending a request's head.
    Header,
    /// Idle between requests.
    Idle,
    /// Taking nothing of an answer the client asked for.
    Write,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Idle => "idle",
            Phase::Write => "write",
        }
    }
}

/// When a connection is closed unless something happens first.
enum Deadline {
    At(Instant, Phase),
    /// A request is being answered.
    None,
}

impl From<Deadline> for tokio::time::Instant {
    /// A request being answered has no deadline here: a day away, looked at again when
    /// the request ends.
    fn from(d: Deadline) -> Self {
        match d {
            Deadline::At(at, _) => at.into(),
            Deadline::None => (Instant::now() + Duration::from_secs(86_400)).into(),
        }
    }
}

/// What a connection's watchdog needs to know, kept by its reads and its requests.
struct Activity {
    /// Requests being answered.
    in_flight: AtomicU32,
    /// When the connection began to wait for a request (it opened, or its last request
    /// was answered), in [`millis`].
    waiting_since: AtomicU64,
    /// When the first byte of the next request's head arrived (0: none yet).
    head_since: AtomicU64,
    /// Since when the socket has taken none of an answer (0: it took the last write).
    write_stuck_since: AtomicU64,
    /// Moves whenever the deadline may have moved.
    changes: AtomicU32,
}

impl Activity {
    /// A fresh connection: its head is counted from the connect.
    fn opened() -> Self {
        let now = millis();
        Self {
            in_flight: AtomicU32::new(0),
            waiting_since: AtomicU64::new(now),
            head_since: AtomicU64::new(now),
            write_stuck_since: AtomicU64::new(0),
            changes: AtomicU32::new(0),
        }
    }

    fn deadline(&self, limits: &Limits) -> Deadline {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Deadline::None;
        }
        // An answer still being sent (hyper writes it after the handler returned): the
        // client has as long as an idle connection to take some of it.
        match self.write_stuck_since.load(Ordering::Relaxed) {
            0 => {}
            stuck => return Deadline::At(instant(stuck) + limits.idle_timeout, Phase::Write),
        }
        match self.head_since.load(Ordering::Relaxed) {
            0 => Deadline::At(
                instant(self.waiting_since.load(Ordering::Relaxed)) + limits.idle_timeout,
                Phase::Idle,
            ),
            head => Deadline::At(instant(head) + limits.header_timeout, Phase::Header),
        }
    }

    /// Bytes arrived: between requests, the first byte of a head.
    fn bytes_arrived(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0
            && self.in_flight.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(millis(), Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A write to the socket took bytes (`true`) or had to wait (`false`).
    fn wrote(&self, took: bool) {
        let stuck = self.write_stuck_since.load(Ordering::Relaxed);
        if took && stuck != 0 {
            self.write_stuck_since.store(0, Ordering::Relaxed);
            // A head that came in while the answer was stuck has its time from now.
            if self.head_since.load(Ordering::Relaxed) != 0 {
                self.head_since.store(millis(), Ordering::Relaxed);
            }
            self.changes.fetch_add(1, Ordering::Relaxed);
        } else if !took && stuck == 0 {
            self.write_stuck_since.store(millis(), Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn request_began(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.waiting_since.store(millis(), Ordering::Relaxed);
            self.head_since.store(0, Ordering::Relaxed);
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Milliseconds since the first call, plus one (0 means "not yet" in [`Activity`]).
fn millis() -> u64 {
    start().elapsed().as_millis() as u64 + 1
}

fn instant(millis: u64) -> Instant {
    start() + Duration::from_millis(millis - 1)
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.activity.wrote(written.is_ready());
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.activity.wrote(written.is_ready());
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router as hyper calls it, telling the connection's [`Activity`] when a request
/// begins and ends.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
    peer: std::net::SocketAddr,
}

/// The address a request's connection came from, in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let answering = Answering::begin(self.activity.clone());
        // The router is always ready (axum documents it), so no `poll_ready`.
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(Peer(self.peer));
        let answer = self.router.clone().call(req);
        Box::pin(async move {
            let response = answer.await;
            drop(answering);
            response
        })
    }
}

/// A request being answered; its end counts also if the connection drops it.
struct Answering(Arc<Activity>);

impl Answering {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.request_began();
        Self(activity)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}
