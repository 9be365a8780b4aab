//! The InnoPaaS event model: wire JSON in, typed events or precise rejections out, and
//! the rules that follow from them (status precedence, message tracking).
//!
//! One module per event type, each owning its fields, how its body is read (what is
//! refused, what is flagged), its dedup key and what it brings to tracking; [`Event`]
//! holds one variant per type and `Event::parse` picks the module by the envelope's
//! `type`. What every event shares (the JSON, the envelope) is read in `parse.rs`.
//!
//! No I/O here: the receiver, the stores, the `validate` command and the sinks all use this.

mod inbound;
mod other;
mod parse;
mod review;
mod status;
mod template;
pub mod tracking;
mod types;

use serde_json::Value;

pub use inbound::{
    Button, Contact, ContactName, ContactPhone, Content, Context, INBOUND_MESSAGE_TYPE,
    InboundMessage, Interactive, Location, Media, MediaKind, MessageError, Reaction, Reply, Text,
};
pub(crate) use parse::id_text;
pub use parse::{Accepted, RejectCode, Rejection, parse};
pub use review::{
    ACCOUNT_REVIEW_TYPE, AccountReview, Decision, PHONE_NUMBER_NAME_TYPE, PhoneNumberNameUpdate,
    RejectionReason,
};
pub use status::{Conversation, ErrorData, InitiateType, MESSAGE_STATUS_TYPE, StatusEvent};

/// Every event type innohook types (the misspelling InnoPaaS's docs show once is read as
/// [`TEMPLATE_STATUS_TYPE`] and not listed).
pub const TYPES: [&str; 7] = [
    MESSAGE_STATUS_TYPE,
    INBOUND_MESSAGE_TYPE,
    TEMPLATE_STATUS_TYPE,
    TEMPLATE_QUALITY_TYPE,
    TEMPLATE_CATEGORY_TYPE,
    PHONE_NUMBER_NAME_TYPE,
    ACCOUNT_REVIEW_TYPE,
];
pub use template::{
    QualityScore, TEMPLATE_CATEGORY_TYPE, TEMPLATE_QUALITY_TYPE, TEMPLATE_STATUS_MISSPELLED_TYPE,
    TEMPLATE_STATUS_TYPE, TemplateCategory, TemplateCategoryUpdate, TemplateNews,
    TemplateQualityUpdate, TemplateStatus, TemplateStatusUpdate,
};
pub use types::{
    Bucket, DedupKey, Envelope, Status, Timestamp, Warning, counted_status, format_time,
    time_format,
};

/// What the envelope carries: one variant per event type.
// Nearly every event is a status event, so boxing the large variant would only add an
// allocation to the common case. Any other variant larger than it is boxed, so that it
// does not make every event (and the status path) larger.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `whatsapp_message_status_updated`, fully typed (`status.rs`).
    MessageStatus(StatusEvent),
    /// `whatsapp_mo_message_received`, a customer's message, typed by its content
    /// (`inbound.rs`). Boxed: it is larger than a status event.
    InboundMessage(Box<InboundMessage>),
    /// Any other InnoPaaS event type (template status updates, …): stored and passed on,
    /// not interpreted (`other.rs`).
    Other { event_type: String, body: Value },
    /// `whatsapp_template_status_updated` (or its misspelling `…_update`) (`template.rs`).
    TemplateStatus(TemplateStatusUpdate),
    /// `message_template_quality_update` (`template.rs`).
    TemplateQuality(TemplateQualityUpdate),
    /// `template_category_update`: body not documented, kept whole (`template.rs`).
    TemplateCategory(TemplateCategoryUpdate),
    /// `whatsapp_phone_number_name_update` (`review.rs`).
    PhoneNumberName(PhoneNumberNameUpdate),
    /// `whatsapp_account_review_updated`: body not documented, kept whole (`review.rs`).
    AccountReview(AccountReview),
}

impl Event {
    /// Reads the body of an event of type `event_type` with the module of that type.
    fn parse(
        event_type: &str,
        body: &parse::Body<'_>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, Rejection> {
        Ok(match event_type {
            TEMPLATE_STATUS_TYPE | TEMPLATE_STATUS_MISSPELLED_TYPE => {
                Self::TemplateStatus(TemplateStatusUpdate::parse(event_type, body, warnings)?)
            }
            TEMPLATE_QUALITY_TYPE => {
                Self::TemplateQuality(TemplateQualityUpdate::parse(body, warnings)?)
            }
            TEMPLATE_CATEGORY_TYPE => Self::TemplateCategory(TemplateCategoryUpdate::parse(body)?),
            PHONE_NUMBER_NAME_TYPE => {
                Self::PhoneNumberName(PhoneNumberNameUpdate::parse(body, warnings)?)
            }
            ACCOUNT_REVIEW_TYPE => Self::AccountReview(AccountReview::parse(body)?),
            MESSAGE_STATUS_TYPE => Self::MessageStatus(StatusEvent::parse(body, warnings)?),
            INBOUND_MESSAGE_TYPE => {
                Self::InboundMessage(Box::new(InboundMessage::parse(body, warnings)?))
            }
            _ => other::parse(event_type, body)?,
        })
    }

    /// The keys under which a redelivery is recognised (see [`Envelope::dedup_keys`]).
    ///
    /// Template and review events keep the key `other.rs` gave them before they were
    /// typed (their bodies are kept whole for it), so a redelivery across the upgrade is
    /// recognised; those that say what happened to what also have a key of that and of
    /// `eventTime` (`docs/events.md`).
    fn dedup_keys(&self, envelope_id: &str, event_time: Option<&Timestamp>) -> Vec<DedupKey> {
        let (body, fact) = match self {
            Self::MessageStatus(s) => return vec![s.dedup_key()],
            Self::InboundMessage(m) => return m.dedup_keys(envelope_id),
            Self::Other { body, .. } => (body, None),
            Self::TemplateStatus(t) => (&t.body, t.fact_key(event_time)),
            Self::TemplateQuality(q) => (&q.body, q.fact_key(event_time)),
            Self::TemplateCategory(c) => (&c.body, None),
            Self::PhoneNumberName(n) => (&n.body, n.fact_key(event_time)),
            Self::AccountReview(r) => (&r.body, None),
        };
        let mut keys = vec![other::dedup_key(envelope_id, body)];
        keys.extend(fact);
        keys
    }

    /// What it says happened to a template, for a template's status or quality event.
    pub fn template_news(&self) -> Option<TemplateNews<'_>> {
        match self {
            Self::TemplateStatus(t) => Some(t.news()),
            Self::TemplateQuality(q) => Some(q.news()),
            _ => None,
        }
    }

    /// Its typed form, as (label, value) rows given to `row` (`innohook validate` prints
    /// them).
    pub fn describe<E>(&self, row: &mut impl FnMut(&str, &str) -> Result<(), E>) -> Result<(), E> {
        match self {
            Self::MessageStatus(s) => s.describe(row),
            Self::InboundMessage(m) => m.describe(row),
            Self::Other { .. } => other::describe(row),
            Self::TemplateStatus(t) => t.describe(row),
            Self::TemplateQuality(q) => q.describe(row),
            Self::TemplateCategory(c) => c.describe(row),
            Self::PhoneNumberName(n) => n.describe(row),
            Self::AccountReview(r) => r.describe(row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every envelope holds an `Event`: a variant larger than a status event would make
    /// each status event larger to build, move and keep.
    #[test]
    fn an_event_is_no_larger_than_a_status_event() {
        assert_eq!(
            std::mem::size_of::<Event>(),
            std::mem::size_of::<StatusEvent>()
        );
    }
}
