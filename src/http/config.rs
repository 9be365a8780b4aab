//! The HTTP surface's settings: `[server]` (the listener and its limits), `[auth]` (the
//! headers a push must carry) and `[api]` (the query API and dashboard). The configuration
//! gathers these sections with the others; nothing here knows of it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The HTTP listener, the webhook endpoint, and the limits a public port needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on (`0.0.0.0:8080`; a name such as `localhost:8080` is
    /// resolved at startup).
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Path of the webhook endpoint, the URL you enter in the InnoPaaS console.
    pub path: String,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// A request (body upload and store commit) that takes longer gets 408.
    pub request_timeout_secs: u64,
    /// Seconds a client has to send a request's head (request line and headers), counted
    /// from connecting, or on a kept-alive connection from the request's first byte;
    /// a client that takes longer is disconnected.
    pub header_timeout_secs: u64,
    /// Seconds a kept-alive connection may stay idle between requests before it is
    /// closed, and a client may take nothing of an answer being sent. Keep it longer than
    /// the idle timeout of a proxy in front.
    pub idle_timeout_secs: u64,
    /// Most connections open at once; further ones wait in the kernel's queue until one
    /// closes (`/readyz` answers 503 meanwhile).
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            path: "/webhook".into(),
            max_body_bytes: 65_536,
            request_timeout_secs: 6,
            header_timeout_secs: 10,
            idle_timeout_secs: 180,
            max_connections: 4096,
        }
    }
}

impl ServerConfig {
    /// Rules of `[server]` that serde cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        let path = self.path.as_str();
        anyhow::ensure!(
            path.starts_with('/'),
            "server.path must start with '/', got {path:?}"
        );
        anyhow::ensure!(
            !super::is_reserved_path(path),
            "server.path {path:?} is taken by innohook itself; choose another (the default is /webhook)"
        );
        anyhow::ensure!(
            !path.contains(['{', '}']) && !path.split('/').any(|s| s.starts_with([':', '*'])),
            "server.path {path:?} must not contain '{{' or '}}', nor a segment starting with ':' or '*' (they would make it a route pattern)"
        );
        anyhow::ensure!(self.max_body_bytes > 0, "server.max_body_bytes must be > 0");
        for (key, secs) in [
            ("request_timeout_secs", self.request_timeout_secs),
            ("header_timeout_secs", self.header_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ] {
            anyhow::ensure!(
                secs > 0,
                "server.{key} must be at least 1: with 0 every push would time out"
            );
        }
        anyhow::ensure!(
            (1..=1_000_000).contains(&self.max_connections),
            "server.max_connections must be from 1 to 1000000"
        );
        Ok(())
    }
}

/// An IP address and port, or a host name and port (resolved, the first address wins).
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    use std::net::ToSocketAddrs;
    let text = String::deserialize(d)?;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let resolved = text
        .to_socket_addrs()
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not an address to listen on ({e}); write an IP address and port, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\""
            ))
        })?
        .next();
    resolved.ok_or_else(|| serde::de::Error::custom(format!("{text:?} resolves to no address")))
}

/// Both optional; when set, a push must carry both headers with exactly these values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Expected value of the `UserName` header.
    pub username: Option<String>,
    /// Expected value of the `Authorization` header (set it by environment, not in the file).
    pub authorization: Option<String>,
}

impl AuthConfig {
    /// Rules of `[auth]` that serde cannot express (beyond a secret set but empty, which
    /// the configuration checks for every secret at once).
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.username.is_none() || self.authorization.is_some(),
            "auth.username is set but auth.authorization is not, and UserName is no secret: anyone could post. Set INNOHOOK_AUTH__AUTHORIZATION to the Authorization header entered in the InnoPaaS console (or unset auth.username to run open)"
        );
        Ok(())
    }
}

/// The query API under `/api` and the dashboard under `/ui`; they show phone numbers, so
/// both are off without a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token for `/api` (`Authorization: Bearer <token>`) and the dashboard's
    /// sign-in; unset: no API and no dashboard.
    pub token: Option<String>,
}

/// `[ui]`: how the dashboard shows times.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// An IANA time zone ("Asia/Shanghai", "Europe/Berlin"): the dashboard, its CSV
    /// downloads and the daily report's days are in it. The API stays UTC.
    pub timezone: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
        }
    }
}

impl UiConfig {
    pub fn zone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.timezone.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "ui.timezone: {:?} is not an IANA time zone; write one such as \"Asia/Shanghai\", \"America/Sao_Paulo\" or \"UTC\"",
                self.timezone
            )
        })
    }
}

/// What [`super::router`] needs to build the app: its own sections, and what the
/// dashboard shows of the rest of the service. The caller (the server) gathers it from the
/// whole configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The webhook path, the request timeout and the body limit.
    pub server: ServerConfig,
    /// The token that turns on the query API and the dashboard.
    pub api: ApiConfig,
    /// The configured sinks, as name and type, for the dashboard.
    pub sinks: Vec<(String, &'static str)>,
    /// Where the store is, for people (the dashboard shows it).
    pub store_description: String,
    /// What the campaign figures need from the configuration.
    pub campaign: crate::campaign::Settings,
}
