//! innohook: a durable receiver for InnoPaaS WhatsApp Business API webhooks.
//!
//! Module map, in the order a push travels:
//! - [`config`]: the TOML file and `INNOHOOK_*` environment, as plain data; it gathers
//!   the sections each component owns (`http`, `store`, `sink`, `telemetry`).
//! - [`http`]: router, authentication, handlers, the one error type.
//! - [`event`]: wire JSON → typed, validated events, and the tracking rules (no I/O).
//! - [`store`]: the store contract, and its backends (SQLite: group commit, dedup, dead letters).
//! - [`sink`]: the `Sink` trait, one file per sink, and the runner that feeds each one.
//! - [`server`]: builds all of the above from a config and runs it; [`shutdown`] stops it.
//! - [`campaign`]: the send list and the figures of a batch, written once for the API,
//!   the dashboard and the commands.
//! - [`commands`]: the subcommands, so `main.rs` only parses arguments.
//! - [`telemetry`]: logging setup; [`metrics`]: Prometheus metrics; [`retention`]: the
//!   store's pruning and size.

pub mod campaign;
pub mod commands;
pub mod config;
pub mod event;
mod fs;
pub mod http;
pub mod metrics;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod store;
pub mod telemetry;
