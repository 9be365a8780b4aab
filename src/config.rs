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
            request_timeout_secs: 10,
            header_timeout_secs: 10,
            idle_timeout_secs: 180,
            max_connections: 4096,
        }
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

/// The query API under `/api` and the dashboard under `/ui`; they show phone numbers, so
/// both are off without a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token for `/api` (`Authorization: Bearer <token>`) and the dashboard's
    /// sign-in; unset: no API and no dashboard.
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
    /// How long accepted events are kept (`"30d"`, `"12h"`, `"forever"`); an event also
    /// stays until every sink is past it.
    pub retain_events: Retain,
    /// How long a message's status, and a batch's summary, are kept after their last event.
    pub retain_messages: Retain,
    /// How long dead letters are kept (a sink's undelivered event stays as long as its
    /// dead letter, so that it can be replayed).
    pub retain_dead_letters: Retain,
    /// Below this share of free space on the store's filesystem, a warning, a metric, and
    /// a word in /readyz's body (it still answers ready while commits succeed).
    pub min_free_percent: f64,
}

/// A retention: a duration (`"30d"`, `"12h"`, `"5s"`, as humantime reads them), or
/// `"forever"` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retain(pub Option<std::time::Duration>);

impl Retain {
    pub fn days(days: u64) -> Self {
        Self(Some(std::time::Duration::from_secs(days * 86_400)))
    }
}

impl Serialize for Retain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => s.serialize_str(&humantime::format_duration(d).to_string()),
            None => s.serialize_str("forever"),
        }
    }
}

impl<'de> Deserialize<'de> for Retain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "forever" {
            return Ok(Self(None));
        }
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"30d\", \"12h\", \"90s\" or \"forever\""
            ))
        })?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a retention of 0 would keep nothing; write \"forever\" to keep everything",
            ));
        }
        Ok(Self(Some(duration)))
    }
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
            retain_events: Retain::days(30),
            retain_messages: Retain::days(90),
            retain_dead_letters: Retain::days(90),
            min_free_percent: 5.0,
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
        let config = Self::read(path)?;
        config.check()?;
        Ok(config)
    }

    /// For the commands that only use the store (`dead-letters`, `replay`, `status`,
    /// `batch`, `prune`, `healthcheck`): the configuration must read, but what only a
    /// server needs (the webhook's secrets, the sinks' `${ENV}` headers) is not checked.
    pub fn load_for_store(path: Option<&Path>) -> anyhow::Result<Self> {
        let config = Self::read(path)?;
        config.check_store()?;
        Ok(config)
    }

    /// Defaults, then the file, then the environment, as data.
    fn read(path: Option<&Path>) -> anyhow::Result<Self> {
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
        figment.extract().map_err(|e| explain(e, path))
    }

    /// What the store needs.
    fn check_store(&self) -> anyhow::Result<()> {
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
        anyhow::ensure!(
            (0.0..100.0).contains(&self.store.min_free_percent),
            "store.min_free_percent must be from 0 to below 100"
        );
        Ok(())
    }

    /// Rules that serde cannot express: everything a server needs.
    fn check(&self) -> anyhow::Result<()> {
        self.check_store()?;
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
            (1..=1_000_000).contains(&self.server.max_connections),
            "server.max_connections must be from 1 to 1000000"
        );
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

/// A configuration error as a person can act on it: the key, where it was set (the
/// file and line, or the environment variable), and a near key for a typo.
fn explain(e: figment::Error, file: Option<&Path>) -> anyhow::Error {
    let sentences: Vec<String> = e.into_iter().map(|e| explain_one(&e, file)).collect();
    anyhow::anyhow!("invalid configuration: {}", sentences.join("; "))
}

fn explain_one(e: &figment::Error, file: Option<&Path>) -> String {
    use figment::error::Kind;
    // figment names keys with the profile first ("default."): not a thing users write.
    let section = e.path.join(".");
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let place = |key: &str| -> String {
        if from_env {
            let var = format!("INNOHOOK_{}", key.to_ascii_uppercase().replace('.', "__"));
            return format!(" (from the environment: {var})");
        }
        match file.and_then(|f| line_of(f, key.rsplit('.').next().unwrap_or(key)).map(|l| (f, l))) {
            Some((f, line)) => format!(" ({}, line {line})", f.display()),
            None => String::new(),
        }
    };
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            // figment's path already ends with the unknown key.
            let key = if section.ends_with(field.as_str()) || section.is_empty() {
                if section.is_empty() {
                    field.clone()
                } else {
                    section.clone()
                }
            } else {
                format!("{section}.{field}")
            };
            let near = expected
                .iter()
                .map(|k| (strsim::levenshtein(&field.to_ascii_lowercase(), k), k))
                .filter(|(d, _)| *d <= 2)
                .min();
            let hint = match near {
                Some((_, k)) => format!("; did you mean {k}?"),
                None => format!("; the keys here are {}", expected.join(", ")),
            };
            format!("unknown key {key}{}{hint}", place(&key))
        }
        kind => {
            let what = kind.to_string();
            if section.is_empty() {
                what
            } else {
                format!("{section}: {what}{}", place(&section))
            }
        }
    }
}

/// The first line of `file` that sets `key` (`key = …`), counted from 1.
fn line_of(file: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}
