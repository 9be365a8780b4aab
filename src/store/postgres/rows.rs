//! Rows of the PostgreSQL store, read back into the contract's types.

use std::collections::BTreeMap;

use axum::body::Bytes;
use tokio_postgres::Row;

use crate::event::Status;
use crate::event::tracking::{Message, MessageError};
use crate::store::{DeadLetter, EventSummary, StoredEvent};

pub(super) const MESSAGE_COLUMNS: &str = "message_id, wamid, status, statuses, error_code, \
     error_message, error_status, conversation, conversation_status, conflict, uid, send_phone, \
     waba_id, account_name, first_event_at, last_event_at, identity_status, touched_at, events";

/// A message row (in [`MESSAGE_COLUMNS`] order). Dedup of status events rests on its
/// statuses: an unreadable map is an error, never silently empty.
pub(super) fn message_from_row(r: &Row) -> Result<Message, String> {
    let statuses: BTreeMap<String, String> = serde_json::from_str(r.get::<_, &str>(3))
        .map_err(|e| format!("message {}: unreadable statuses: {e}", r.get::<_, &str>(0)))?;
    let statuses = statuses
        .into_iter()
        .map(|(s, at)| {
            chrono::DateTime::parse_from_rfc3339(&at)
                .map(|t| (s, t.to_utc()))
                .map_err(|e| format!("message {}: bad time {at:?}: {e}", r.get::<_, &str>(0)))
        })
        .collect::<Result<_, _>>()?;
    let status = |i: usize| r.get::<_, Option<&str>>(i).map(Status::parse);
    let error_code: Option<String> = r.get(4);
    Ok(Message {
        id: r.get(0),
        wamid: r.get(1),
        status: Status::parse(r.get(2)),
        statuses,
        error: error_code.map(|code| MessageError {
            code,
            message: r.get(5),
            status: status(6).unwrap_or(Status::Failed),
        }),
        conversation: r
            .get::<_, Option<&str>>(7)
            .and_then(|c| serde_json::from_str(c).ok()),
        conversation_status: status(8),
        conflict: r.get(9),
        uid: r.get(10),
        send_phone: r.get(11),
        waba_id: r.get(12),
        account_name: r.get(13),
        first_event_at: r.get(14),
        last_event_at: r.get(15),
        identity_status: status(16),
        touched_at: r
            .get::<_, Option<chrono::DateTime<chrono::Utc>>>(17)
            .unwrap_or_else(|| r.get(15)),
        // Without one (stored before a store kept them) or unreadable: none known.
        events: r
            .get::<_, Option<&str>>(18)
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default(),
    })
}

pub(super) const EVENT_COLUMNS: &str =
    "seq, received_at, event_id, event_type, message_id, status, warnings, body";

pub(super) fn event_from_row(r: &Row) -> StoredEvent {
    StoredEvent {
        seq: r.get(0),
        received_at: r.get(1),
        event_id: r.get(2),
        event_type: r.get(3),
        message_id: r.get(4),
        status: r.get::<_, Option<&str>>(5).map(Status::parse),
        warnings: r.get(6),
        body: Bytes::from(r.get::<_, Vec<u8>>(7)),
    }
}

/// Of `dead_letters d LEFT JOIN events e`.
pub(super) const DEAD_LETTER_COLUMNS: &str = "d.id, d.created_at, d.source, d.sink, d.event_seq, \
     d.code, d.field, d.reason, COALESCE(d.body, e.body), d.replayed_at, d.attempts, \
     d.first_attempt_at, e.event_id, e.event_type, e.message_id, e.status";

pub(super) fn dead_letter_from_row(r: &Row) -> DeadLetter {
    let body: Option<Vec<u8>> = r.get(8);
    let attempts: Option<i32> = r.get(10);
    let event_id: Option<String> = r.get(12);
    DeadLetter {
        id: r.get(0),
        created_at: r.get(1),
        source: r.get(2),
        sink: r.get(3),
        event_seq: r.get(4),
        event: event_id.map(|id| EventSummary {
            id,
            event_type: r.get(13),
            message_id: r.get(14),
            status: r.get(15),
        }),
        code: r.get(5),
        field: r.get(6),
        reason: r.get(7),
        attempts: attempts.map(|a| a as u32),
        first_attempt_at: r.get(11),
        body_is_not_utf8: body
            .as_ref()
            .is_some_and(|b| std::str::from_utf8(b).is_err()),
        body: body.map(|b| String::from_utf8_lossy(&b).into_owned()),
        replayed_at: r.get(9),
    }
}
