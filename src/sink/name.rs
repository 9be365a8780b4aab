//! Names made from an event by a template: a NATS subject, a RabbitMQ routing key, a
//! Redis stream key. `{type}`, `{status}`, `{message_id}` and `{uid}` are replaced by
//! the event's (a missing one by `none`; `.`, `*`, `>`, whitespace and NUL, which a
//! subject or a routing-key word cannot hold, by `_`; at most 64 bytes each).

use serde::Deserialize;

use crate::store::StoredEvent;

/// What a template takes from an event.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub event_type: Option<&'a str>,
    pub status: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub uid: Option<String>,
}

impl<'a> Fields<'a> {
    /// The event's (its uid read from its body, for an event of a message).
    pub fn of(event: &'a StoredEvent) -> Self {
        Self {
            event_type: Some(&event.event_type),
            status: event.status.as_ref().map(|s| s.as_str()),
            message_id: event.message_id.as_deref(),
            uid: event.message_id.as_ref().and_then(|_| uid_of(&event.body)),
        }
    }
}

/// A token from a value: `none` when missing or empty, `_` for what a token cannot hold,
/// at most 64 bytes.
pub(super) fn token(value: Option<&str>) -> String {
    let value = value.filter(|v| !v.is_empty()).unwrap_or("none");
    let mut t: String = value
        .chars()
        .map(|c| {
            if c.is_whitespace() || matches!(c, '.' | '*' | '>' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.len() > 64 {
        let mut end = 64;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
    }
    t
}

/// The template with the event's fields in it.
pub(super) fn fill(template: &str, f: &Fields<'_>) -> String {
    template
        .replace("{type}", &token(f.event_type))
        .replace("{status}", &token(f.status))
        .replace("{message_id}", &token(f.message_id))
        .replace("{uid}", &token(f.uid.as_deref()))
}

/// body.uid.
fn uid_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        body: Option<Body<'a>>,
    }
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        uid: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()?
        .body?
        .uid
        .and_then(crate::event::id_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_made_safe_and_short() {
        let f = Fields {
            event_type: Some("whatsapp_message_status_updated"),
            status: Some("SMECL:FAILED"),
            message_id: Some("a.b *>c"),
            uid: None,
        };
        assert_eq!(
            fill("ev.{type}.{status}.{message_id}.{uid}", &f),
            "ev.whatsapp_message_status_updated.SMECL:FAILED.a_b___c.none"
        );
        assert_eq!(token(Some(&"é".repeat(40))).len(), 64);
    }
}
