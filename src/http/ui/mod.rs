//! The dashboard under `/ui`: server-rendered pages for the people who run campaigns
//! (overview, batches, message lookup, conversations, templates, dead letters with replay), built on the store
//! contract only, so it works on every backend.
//!
//! It shows phone numbers, so like the API it exists only when `[api] token` is set; a
//! person signs in with that token (see [`session`]). Templates are compiled in (askama,
//! `templates/ui/`), the stylesheet and the one small script are embedded, and every
//! answer carries a Content-Security-Policy that allows no inline script or style.

mod batches;
mod chart;
mod conversations;
mod daily;
mod dead_letters;
mod messages;
mod overview;
mod session;
mod templates;
mod throttle;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use self::session::{Keys, Session};
use super::ApiError;
use super::api::read_failed;
use crate::store::Store;

/// What every dashboard handler shares.
pub(crate) struct UiState {
    store: Arc<dyn Store>,
    keys: Keys,
    /// The configured sinks: name and type.
    sinks: Vec<(String, &'static str)>,
    /// Where the store is, for people.
    store_description: String,
    /// What the campaign figures need from the configuration.
    campaign: Arc<crate::campaign::Settings>,
    /// Wrong sign-in tokens by client address.
    throttle: throttle::Throttle,
}

type Ui = Arc<UiState>;

/// The `/ui` routes; `token` is the `[api] token`, `sinks` the configured sinks (name and
/// type), `store_description` where the store is.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(
    token: &str,
    store: Arc<dyn Store>,
    sinks: Vec<(String, &'static str)>,
    store_description: String,
    campaign: Arc<crate::campaign::Settings>,
) -> Router<S> {
    let ui = Arc::new(UiState {
        store,
        keys: Keys::new(token),
        sinks,
        store_description,
        campaign,
        throttle: throttle::Throttle::default(),
    });
    let signed_in = Router::new()
        .route("/ui/", get(overview::page))
        .route("/ui/batches", get(batches::list))
        .route("/ui/batches/{uid}", get(batches::page))
        .route("/ui/batches/{uid}/messages.csv", get(batches::csv))
        .route("/ui/batches/{uid}/replies.csv", get(batches::replies_csv))
        .route(
            "/ui/batches/{uid}/unconfirmed.csv",
            get(batches::unconfirmed_csv),
        )
        .route("/ui/messages", get(messages::page))
        .route("/ui/conversations", get(conversations::page))
        .route("/ui/templates", get(templates::list))
        .route("/ui/templates/{id}", get(templates::page))
        .route("/ui/dead-letters", get(dead_letters::page))
        .route(
            "/ui/dead-letters/{id}/replay",
            post(dead_letters::replay_one),
        )
        .route("/ui/sinks/{sink}/replay", post(dead_letters::replay_sink))
        .route("/ui/reports/daily", get(daily::page))
        .route("/ui/reports/daily.csv", get(daily::csv))
        .route("/ui/logout", post(sign_out))
        .route_layer(middleware::from_fn_with_state(ui.clone(), require_session))
        .route_layer(middleware::from_fn_with_state(ui.clone(), in_zone));
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/login", get(sign_in_page).post(sign_in))
        .route("/ui/static/ui.css", get(stylesheet))
        .route("/ui/static/ui.js", get(script))
        .merge(signed_in)
        .layer(middleware::from_fn(same_origin_only))
        .layer(middleware::map_response(security_headers))
        .with_state(ui)
}

/// Only what the dashboard itself serves: no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Refuses a state-changing request that a page of another site made the browser send.
async fn same_origin_only(req: Request, next: Next) -> Response {
    if !req.method().is_safe() && !session::same_origin(req.headers()) {
        return ApiError::CrossSite.into_response();
    }
    next.run(req).await
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Lets a request with a valid session through (with its [`Session`]); sends others to
/// the sign-in page, which brings a page's reader back to it.
async fn require_session(State(ui): State<Ui>, mut req: Request, next: Next) -> Response {
    match session::cookie(req.headers()).and_then(|v| ui.keys.verify(v, now())) {
        Some(session) => {
            req.extensions_mut().insert(session);
            next.run(req).await
        }
        None if req.method().is_safe() => {
            let here = req
                .uri()
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_owned();
            Redirect::to(&format!("/ui/login?next={}", encode(&here))).into_response()
        }
        None => Redirect::to("/ui/login").into_response(),
    }
}

/// Checks a form's synchronizer token against the session's.
fn check_csrf(session: &Session, given: &str) -> Result<(), ApiError> {
    if session.csrf_matches(given) {
        Ok(())
    } else {
        Err(ApiError::BadCsrfToken)
    }
}

/// What every signed-in page shows around its content.
pub(crate) struct Chrome {
    /// The synchronizer token of the page's forms (sign-out, replays).
    pub csrf: String,
    /// Which navigation entry is this page's.
    pub active: &'static str,
    /// Seconds after which the page reloads itself (if its reader lets it).
    pub refresh: u32,
    /// The time zone every time on the page is in.
    pub zone: &'static str,
}

impl Chrome {
    fn new(session: &Session, active: &'static str) -> Self {
        Self {
            csrf: session.csrf.clone(),
            active,
            refresh: 0,
            zone: zone().name(),
        }
    }
}

tokio::task_local! {
    /// The `[ui] timezone` of the request being answered.
    static ZONE: chrono_tz::Tz;
}

/// The time zone of the page being rendered (UTC outside a dashboard request).
pub(crate) fn zone() -> chrono_tz::Tz {
    ZONE.try_with(|z| *z).unwrap_or(chrono_tz::UTC)
}

/// Answers a dashboard request with its times in `[ui] timezone`.
async fn in_zone(State(ui): State<Ui>, req: Request, next: Next) -> Response {
    ZONE.scope(ui.campaign.zone, next.run(req)).await
}

/// A rendered page with its status.
fn render(status: StatusCode, page: &impl Template) -> Result<Response, ApiError> {
    let html = page.render().map_err(|e| {
        tracing::error!(error = %e, "Could not render a dashboard page.");
        ApiError::Internal
    })?;
    Ok((status, Html(html)).into_response())
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct SignIn<'a> {
    next: &'a str,
    failed: bool,
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_page(axum::extract::Query(q): axum::extract::Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    render(
        StatusCode::OK,
        &SignIn {
            next,
            failed: false,
        },
    )
    .into_response()
}

#[derive(serde::Deserialize)]
struct SignInForm {
    token: String,
    next: Option<String>,
}

/// `POST /ui/login`: the token in a form field (never in a URL) starts a session.
async fn sign_in(
    State(ui): State<Ui>,
    peer: Option<axum::Extension<crate::http::serve::Peer>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let client = throttle::client_address(peer.map(|p| p.0.0), &headers);
    let at = std::time::Instant::now();
    if let Some(wait) = ui.throttle.wait(client, at) {
        metrics::counter!(crate::metrics::SIGN_IN_THROTTLED).increment(1);
        return too_many_attempts(wait);
    }
    if !ui.keys.token_matches(&form.token) {
        metrics::counter!(crate::metrics::SIGN_IN_FAILURES).increment(1);
        let wait = ui.throttle.failed(client, at);
        tracing::warn!(%client, throttled_secs = wait.map(|w| w.as_secs()), "Dashboard sign-in with a wrong token.");
        return render(StatusCode::UNAUTHORIZED, &SignIn { next, failed: true }).into_response();
    }
    ui.throttle.succeeded(client);
    let (value, _) = ui.keys.issue(now());
    (
        [(header::SET_COOKIE, session::set_cookie(&value, &headers))],
        Redirect::to(next),
    )
        .into_response()
}

/// 429 for an address that sent too many wrong tokens, saying when to try again.
fn too_many_attempts(wait: std::time::Duration) -> Response {
    // Rounded up: trying again after the seconds said is never too early.
    let secs = (wait.as_secs_f64().ceil() as u64).max(1);
    let mut res = (
        StatusCode::TOO_MANY_REQUESTS,
        Html(format!(
            "<!doctype html><title>Too many attempts · innohook</title><p>Too many wrong tokens from your address. Try again in {secs} s.</p>"
        )),
    )
        .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// Where to go after signing in: a dashboard page, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/ui/",
    }
}

/// A form whose only field is the synchronizer token.
#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    /// Missing, it is refused like a wrong one.
    #[serde(default)]
    pub csrf: String,
}

async fn sign_out(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    check_csrf(&session, &form.csrf)?;
    ui.keys.sign_out(&session, now());
    Ok((
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/ui/login"),
    )
        .into_response())
}

async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", include_str!("assets/ui.css"))
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/ui.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `part` of `whole` as a percentage with one decimal (`–` of nothing).
pub(crate) fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// A time as the dashboard shows it (in `[ui] timezone`, to the second).
pub(crate) fn when(at: &DateTime<Utc>) -> String {
    at.with_timezone(&zone())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Percent-encodes everything but unreserved characters, for a path segment or a query
/// value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The link to a batch's page.
pub(crate) fn batch_href(uid: &str) -> String {
    format!("/ui/batches/{}", encode(uid))
}

/// The link that looks a message up.
pub(crate) fn message_href(q: &str) -> String {
    format!("/ui/messages?q={}", encode(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_links_are_written_for_people_and_urls() {
        let got: Vec<String> = [0, 7, 999, 1000, 12345, 1234567, -4321]
            .into_iter()
            .map(thousands)
            .collect();
        assert_eq!(
            got,
            ["0", "7", "999", "1,000", "12,345", "1,234,567", "-4,321"]
        );
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(0, 0), "–");
        assert_eq!(encode("a b/é?&#"), "a%20b%2F%C3%A9%3F%26%23");
        assert_eq!(batch_href("x/y"), "/ui/batches/x%2Fy");
    }

    #[test]
    fn after_sign_in_only_dashboard_pages() {
        assert_eq!(safe_next(Some("/ui/batches/x?y=1")), "/ui/batches/x?y=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui/\\evil",
            "/api/events",
            "/ui//evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }
}
