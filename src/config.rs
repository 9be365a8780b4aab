//! Configuration: built-in defaults, then one TOML file, then `INNOHOOK_*` environment
//! variables (section and key joined by `__`, e.g. `INNOHOOK_AUTH__AUTHORIZATION`).
//!
//! This is only data; the runtime built from it lives elsewhere. Unknown keys are an
//! error that names the key, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::sink::{LogSinkConfig, SinkCommon, SinkConfig, SinkKind};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener and the webhook endpoint.
    pub server: ServerConfig,
    /// The headers the InnoPaaS console sends with every push.
    pub auth: AuthConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
    /// The query API.
    pub api: ApiConfig,
    /// Where accepted events go, as `[[sinks]]` entries with a `type`. Default: one `log`
    /// sink; `sinks = []` turns them all off.
    pub sinks: Vec<SinkConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            auth: AuthConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            api: ApiConfig::default(),
            sinks: vec![SinkConfig {
                common: SinkCommon::default(),
                kind: SinkKind::Log(LogSinkConfig::default()),
            }],
        }
    }
}

/// The HTTP listener, the webhook endpoint, and the limits a public port needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
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
    /// closed. Keep it longer than the idle timeout of a proxy in front.
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
            request_timeout_secs: 10,
            header_timeout_secs: 10,
            idle_timeout_secs: 180,
            max_connections: 4096,
        }
    }
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

/// The query API under `/api`; it shows phone numbers, so it is off without a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token for `/api` (`Authorization: Bearer <token>`); unset: no API.
    pub token: Option<String>,
}

/// Where events are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (embedded, one server) or `postgres` (several replicas on one database).
    pub backend: StoreBackend,
    /// Directory of the SQLite store (created if missing); unused with `postgres`.
    pub dir: PathBuf,
    /// PostgreSQL connection URL, e.g. `postgres://innohook:…@db:5432/innohook?sslmode=require`
    /// (set it by environment: `INNOHOOK_STORE__URL`).
    pub url: Option<String>,
    /// PostgreSQL connections per replica.
    pub pool_size: usize,
    /// Seconds a replica holds a sink (or a periodic job) without renewing it; another
    /// replica takes it over this long after the holder died. Renewed every third of it.
    pub lease_secs: u64,
    /// How long a duplicate of an event other than a message status is still
    /// recognised, in days (status events: as long as their message is tracked).
    pub dedup_retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            dir: PathBuf::from("./data"),
            url: None,
            pool_size: 16,
            lease_secs: 10,
            dedup_retention_days: 7,
        }
    }
}

/// Which database holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Embedded, in `[store] dir`: nothing to install, one server per store.
    Sqlite,
    /// PostgreSQL at `[store] url`: several replicas share it.
    Postgres,
}

impl StoreConfig {
    /// Where the store is, for people (never the password).
    pub fn describe(&self) -> String {
        match self.backend {
            StoreBackend::Sqlite => format!("SQLite in {}", self.dir.display()),
            StoreBackend::Postgres => {
                let url = self.url.as_deref().unwrap_or_default();
                format!("PostgreSQL at {}", crate::store::redact_url(url))
            }
        }
    }
}

/// Logging, to stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// Level filter (`info`, `warn`, `innohook=debug`, …); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    Pretty,
    /// One JSON object a line, for log collectors.
    Json,
}

/// Environment variables read as plain strings, and the keys they set.
const SECRET_VARS: [(&str, &str); 4] = [
    ("INNOHOOK_AUTH__USERNAME", "auth.username"),
    ("INNOHOOK_AUTH__AUTHORIZATION", "auth.authorization"),
    ("INNOHOOK_API__TOKEN", "api.token"),
    ("INNOHOOK_STORE__URL", "store.url"),
];

impl Config {
    /// Defaults, then the file (if given; it must exist), then the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.is_file() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // INNOHOOK_CONFIG names the file (see --help); it is not a key, nor are the
        // INNOHOOK_TEST_* variables that point the test suite at its services.
        let env = Env::prefixed("INNOHOOK_")
            .ignore(&["config"])
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
            .split("__");
        figment = figment.merge(env);
        // The environment provider reads values as TOML, so a secret such as `007` would
        // arrive as the number 7. Secrets are taken verbatim instead.
        for (var, key) in SECRET_VARS {
            if let Ok(value) = std::env::var(var) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        let config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.check()?;
        Ok(config)
    }

    /// Rules that serde cannot express.
    fn check(&self) -> anyhow::Result<()> {
        let path = self.server.path.as_str();
        anyhow::ensure!(
            path.starts_with('/'),
            "server.path must start with '/', got {path:?}"
        );
        anyhow::ensure!(
            !crate::http::is_reserved_path(path),
            "server.path {path:?} is taken by innohook itself; choose another (the default is /webhook)"
        );
        anyhow::ensure!(
            !path.contains(['{', '}']) && !path.split('/').any(|s| s.starts_with([':', '*'])),
            "server.path {path:?} must not contain '{{' or '}}', nor a segment starting with ':' or '*' (they would make it a route pattern)"
        );
        anyhow::ensure!(
            self.server.max_body_bytes > 0,
            "server.max_body_bytes must be > 0"
        );
        for (key, secs) in [
            ("request_timeout_secs", self.server.request_timeout_secs),
            ("header_timeout_secs", self.server.header_timeout_secs),
            ("idle_timeout_secs", self.server.idle_timeout_secs),
        ] {
            anyhow::ensure!(
                secs > 0,
                "server.{key} must be at least 1: with 0 every push would time out"
            );
        }
        anyhow::ensure!(
            self.server.max_connections > 0,
            "server.max_connections must be at least 1"
        );
        match self.store.backend {
            StoreBackend::Sqlite => {}
            StoreBackend::Postgres => {
                anyhow::ensure!(
                    self.store.url.as_deref().is_some_and(|u| !u.is_empty()),
                    "store.backend is postgres but store.url is not set; set INNOHOOK_STORE__URL=postgres://user:password@host:5432/database"
                );
                anyhow::ensure!(
                    self.store.pool_size > 0,
                    "store.pool_size must be at least 1"
                );
                anyhow::ensure!(
                    self.store.lease_secs >= 3,
                    "store.lease_secs must be at least 3 (it is renewed every third of it)"
                );
            }
        }
        for (key, value) in [
            ("auth.username", &self.auth.username),
            ("auth.authorization", &self.auth.authorization),
            ("api.token", &self.api.token),
        ] {
            anyhow::ensure!(
                value.as_deref() != Some(""),
                "{key} is set but empty; give it the value set in the InnoPaaS console, or unset it"
            );
        }
        anyhow::ensure!(
            self.auth.username.is_none() || self.auth.authorization.is_some(),
            "auth.username is set but auth.authorization is not, and UserName is no secret: anyone could post. Set INNOHOOK_AUTH__AUTHORIZATION to the Authorization header entered in the InnoPaaS console (or unset auth.username to run open)"
        );
        for (i, sink) in self.sinks.iter().enumerate() {
            let name = sink.name();
            anyhow::ensure!(!name.is_empty(), "sinks[{i}]: name must not be empty");
            anyhow::ensure!(
                self.sinks.iter().filter(|o| o.name() == name).count() == 1,
                "sinks[{i}]: more than one sink is named {name:?}; give each a distinct `name`"
            );
            sink.check()
                .map_err(|e| anyhow::anyhow!("sinks[{i}] ({name}): {e:#}"))?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            anyhow::anyhow!("log.level {:?} is not a valid filter: {e}", self.log.level)
        })?;
        Ok(())
    }
}
