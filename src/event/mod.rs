//! The InnoPaaS event model: wire JSON in, typed events or precise rejections out, and
//! the rules that follow from them (status precedence, message tracking).
//!
//! No I/O here: the receiver, the stores, the `validate` command and the sinks all use this.

mod parse;
pub mod tracking;
mod types;

pub(crate) use parse::id_text;
pub use parse::{Accepted, RejectCode, Rejection, parse};
pub use types::{
    Bucket, Conversation, DedupKey, Envelope, ErrorData, Event, InitiateType, MESSAGE_STATUS_TYPE,
    Status, StatusEvent, Timestamp, Warning, counted_status, format_time, time_format,
};
