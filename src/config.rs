//! Configuration: built-in defaults, then one TOML file, then `INNOHOOK_*` environment
//! variables (section and key joined by `__`, e.g. `INNOHOOK_AUTH__AUTHORIZATION`).
//!
//! This is only data; the runtime built from it lives elsewhere. Unknown keys are an
//! error that names the key, so a typo never silently falls back to a default.
//!
//! Each component owns its section (its keys, defaults and own rules): `[server]`,
//! `[auth]`, `[api]` and `[ui]` in [`crate::http`], `[store]` in [`crate::store`], `[log]` in
//! [`crate::telemetry`], `[[sinks]]` in [`crate::sink`], `[tracking]` and
//! `[pricing]` in [`crate::campaign`]. This module only gathers them,
//! layers the file and the environment, explains errors, and checks what spans sections.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::http::{ApiConfig, AuthConfig, ServerConfig, UiConfig};
use crate::sink::{LogSinkConfig, SinkCommon, SinkConfig, SinkKind};
pub use crate::store::{Retain, StoreBackend, StoreConfig};
pub use crate::telemetry::{LogConfig, LogFormat};

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
    /// The dashboard's time zone.
    pub ui: UiConfig,
    /// How the send list is judged (`unconfirmed_after`).
    pub tracking: crate::campaign::TrackingConfig,
    /// An optional rate table for batches' estimated cost.
    pub pricing: crate::campaign::PricingConfig,
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
            ui: UiConfig::default(),
            tracking: Default::default(),
            pricing: Default::default(),
            sinks: vec![SinkConfig {
                common: SinkCommon::default(),
                kind: SinkKind::Log(LogSinkConfig::default()),
            }],
        }
    }
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
        config.store.check()?;
        config.tracking.check()?;
        config.pricing.check()?;
        config.ui.zone()?;
        Ok(config)
    }

    /// Defaults, then the file, then the environment, as data, without the rules of
    /// [`Config::problems`] (`check-config` lists those).
    pub fn read_only(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::read(path)
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

    /// Rules that serde cannot express: everything a server needs. Every problem at once,
    /// one line each.
    fn check(&self) -> anyhow::Result<()> {
        let problems = self.problems();
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }

    /// What is wrong with the configuration, one sentence a problem (empty: nothing).
    /// `serve` refuses to start on any of them, `check-config` lists them all.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut note = |r: anyhow::Result<()>| {
            if let Err(e) = r {
                problems.push(format!("{e:#}"));
            }
        };
        note(self.store.check());
        note(self.server.check());
        // One rule for every secret, whichever section it is in.
        for (key, value) in [
            ("auth.username", &self.auth.username),
            ("auth.authorization", &self.auth.authorization),
            ("api.token", &self.api.token),
        ] {
            note(if value.as_deref() == Some("") {
                Err(anyhow::anyhow!(
                    "{key} is set but empty; give it the value set in the InnoPaaS console, or unset it"
                ))
            } else {
                Ok(())
            });
        }
        note(self.auth.check());
        note(self.tracking.check());
        note(self.pricing.check());
        note(self.ui.zone().map(|_| ()));
        for (i, sink) in self.sinks.iter().enumerate() {
            let name = sink.name();
            let check = || -> anyhow::Result<()> {
                anyhow::ensure!(!name.is_empty(), "sinks[{i}]: name must not be empty");
                anyhow::ensure!(
                    self.sinks.iter().filter(|o| o.name() == name).count() == 1,
                    "sinks[{i}]: more than one sink is named {name:?}; give each a distinct `name`"
                );
                sink.check()
                    .map_err(|e| anyhow::anyhow!("sinks[{i}] ({name}): {e:#}"))
            };
            note(check());
        }
        note(self.log.check());
        problems
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
