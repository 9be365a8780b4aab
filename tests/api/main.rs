//! innohook's one integration-test binary (one link step, shared helpers).

mod helpers;

mod connections;
mod event_props;
mod event_rules;
mod event_seeds;
mod faults;
mod http_receiver;
mod ops;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod postgres;
mod process;
#[cfg(feature = "postgres")]
mod replicas;
mod sinks;
mod store_contract;
mod tracking;
mod validate_cli;
