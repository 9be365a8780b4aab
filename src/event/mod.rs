//! The InnoPaaS event model: wire JSON in, typed events or precise rejections out.
//!
//! No HTTP here: the receiver, the `validate` command and the sinks all use this.

mod parse;
mod types;

pub(crate) use parse::id_text;
pub use parse::{Accepted, RejectCode, Rejection, parse};
pub use types::{
    Conversation, Envelope, ErrorData, Event, InitiateType, MESSAGE_STATUS_TYPE, Status,
    StatusEvent, Timestamp, Warning,
};
