//! innohook's one integration-test binary (one link step, shared helpers).

mod helpers;

mod browser;
mod campaign;
mod connections;
mod dashboard;
mod event_inbound;
mod event_props;
mod event_rules;
mod event_seeds;
mod event_templates;
mod faults;
mod first_hour;
mod http_receiver;
#[cfg(feature = "nats")]
mod nats;
mod openapi;
mod ops;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod postgres;
mod process;
mod proxy;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(feature = "redis")]
mod redis_sink;
#[cfg(feature = "postgres")]
mod replicas;
mod retention;
mod sinks;
mod store_contract;
mod templates_and_replies;
mod tracking;
mod validate_cli;
