//! The store's settings, `[store]` of the configuration file: which backend, where, and
//! how long things are kept. The configuration gathers this section with the others;
//! nothing here knows of it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Retain;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"30d\", or \"forever\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Retain, E> {
                Retain::read(text).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Retain, E> {
                Err(E::custom(Retain::bare(&n.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Retain, E> {
                Err(E::custom(Retain::bare(&n.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Retain, E> {
                Err(E::custom(Retain::bare(&n.to_string())))
            }
        }
        d.deserialize_any(Text)
    }
}

impl Retain {
    /// Reads a retention as written: a duration or "forever". A duration under an hour is
    /// taken only in seconds ("90s"): "1m" is a minute to humantime, and a month to many
    /// people, and a retention of a minute would empty the store.
    pub fn read(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "forever" {
            return Ok(Self(None));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            return Err(Self::bare(text));
        }
        let duration = humantime::parse_duration(text).map_err(|e| {
            format!("{text:?} is not a duration ({e}); write e.g. \"30d\", \"12h\" or \"forever\"")
        })?;
        if duration.is_zero() {
            return Err(
                "a retention of 0 would keep nothing; write \"forever\" to keep everything".into(),
            );
        }
        let in_seconds = text
            .split(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .filter(|unit| !unit.is_empty())
            .all(|unit| matches!(unit, "s" | "sec" | "secs" | "second" | "seconds"));
        if duration < std::time::Duration::from_secs(3600) && !in_seconds {
            return Err(format!(
                "{text:?} is {}, which would keep almost nothing (for a month write \"30d\"); a retention under an hour is taken only in seconds, as \"{}s\"",
                humantime::format_duration(duration),
                duration.as_secs()
            ));
        }
        Ok(Self(Some(duration)))
    }

    /// What a number without a unit gets.
    fn bare(n: &str) -> String {
        format!("{n} has no unit; write \"{n}d\" for {n} days, \"{n}h\" for hours, or \"forever\"")
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
                format!("PostgreSQL at {}", super::redact_url(url))
            }
        }
    }

    /// Rules of `[store]` that serde cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.backend {
            StoreBackend::Sqlite => {}
            StoreBackend::Postgres => {
                anyhow::ensure!(
                    self.url.as_deref().is_some_and(|u| !u.is_empty()),
                    "store.backend is postgres but store.url is not set; set INNOHOOK_STORE__URL=postgres://user:password@host:5432/database"
                );
                anyhow::ensure!(self.pool_size > 0, "store.pool_size must be at least 1");
                anyhow::ensure!(
                    self.lease_secs >= 3,
                    "store.lease_secs must be at least 3 (it is renewed every third of it)"
                );
            }
        }
        anyhow::ensure!(
            (0.0..100.0).contains(&self.min_free_percent),
            "store.min_free_percent must be from 0 to below 100"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Retain;

    #[test]
    fn a_retention_nobody_can_misread() {
        let days = |n: u64| Retain::days(n);
        assert_eq!(Retain::read("30d"), Ok(days(30)));
        assert_eq!(
            Retain::read(" 12h "),
            Ok(Retain(Some(std::time::Duration::from_secs(43_200))))
        );
        assert_eq!(Retain::read("forever"), Ok(Retain(None)));
        assert_eq!(
            Retain::read("90s"),
            Ok(Retain(Some(std::time::Duration::from_secs(90))))
        );
        assert_eq!(
            Retain::read("1M").map(|r| r.0.unwrap().as_secs() / 86_400),
            Ok(30)
        );
        let minute = Retain::read("1m").unwrap_err();
        assert!(
            minute.contains("\"1m\" is 1m") && minute.contains("30d"),
            "{minute}"
        );
        assert!(Retain::read("45min").unwrap_err().contains("\"2700s\""));
        assert!(Retain::read("30").unwrap_err().contains("no unit"));
        assert!(Retain::read("0s").unwrap_err().contains("forever"));
        // In a file: a bare number is a sentence, not a type error.
        let read: Result<super::StoreConfig, _> = figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string("retain_events = 30"),
        )
        .extract();
        let said = read.unwrap_err().to_string();
        assert!(
            said.contains("30 has no unit") && said.contains("\"30d\""),
            "{said}"
        );
    }
}
