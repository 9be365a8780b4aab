//! Any event type innohook does not type (a type InnoPaaS adds later, …): [`Event::Other`],
//! its type and its body kept whole, stored and passed on, not interpreted.
//!
//! Its body must be a JSON object with at least one field (checked with the envelope) that
//! nests no deeper than the shared limit; nothing in it is refused or flagged.

use serde_json::Value;

use super::parse::{Body, Rejection};
use super::{DedupKey, Event};

/// Keeps the body whole.
pub(super) fn parse(event_type: &str, body: &Body<'_>) -> Result<Event, Rejection> {
    let body = body.value()?;
    Ok(Event::Other {
        event_type: event_type.to_owned(),
        body,
    })
}

/// Nothing in a body innohook does not read says which event it is, so a redelivery is
/// recognised by its envelope id together with the SHA-256 of its body (as serde_json
/// writes it: compact, fields in the order sent). The types typed after they were stored
/// as `Other` (`template.rs`, `review.rs`) keep this key, so a redelivery across the
/// upgrade is still recognised.
pub(super) fn dedup_key(envelope_id: &str, body: &Value) -> DedupKey {
    use sha2::{Digest, Sha256};
    DedupKey::Other {
        envelope_id: envelope_id.to_owned(),
        body_sha256: Sha256::digest(body.to_string().as_bytes()).into(),
    }
}

/// Its typed form: there is none.
pub(super) fn describe<E>(row: &mut impl FnMut(&str, &str) -> Result<(), E>) -> Result<(), E> {
    row("body", "kept as sent (not interpreted)")
}
