//! `whatsapp_message_status_updated`: a message's status (delivered, read, failed,
//! `SMECL:FAILED`), the event innohook exists for. Its fields ([`StatusEvent`],
//! [`Conversation`], [`ErrorData`]), how its body is read and what is refused or flagged
//! in it, its dedup key, and what it brings to message tracking.
//!
//! The statuses themselves and their precedence ([`Status`]) are in `types.rs`: tracking,
//! the stores, the metrics and the dashboard all count by them.

use super::parse::{Body, Fields, RejectCode, Rejection, warning};
use super::tracking::StatusUpdate;
use super::{Accepted, DedupKey, Status, Timestamp, Warning};

/// The event type this product exists for.
pub const MESSAGE_STATUS_TYPE: &str = "whatsapp_message_status_updated";

/// The documented fields of each object; any other is kept and flagged (`unknown_field`).
const STATUS_FIELDS: &[&str] = &[
    "id",
    "accountName",
    "wabaId",
    "status",
    "wamid",
    "sendPhone",
    "uid",
    "conversation",
    "errorData",
];
const CONVERSATION_FIELDS: &[&str] = &["id", "initiateType", "expireAt"];
const ERROR_FIELDS: &[&str] = &["errorCode", "errorMessage"];

/// The body of a `whatsapp_message_status_updated` event.
///
/// Built only by [`super::parse`], so holding one means the event passed validation: a
/// `failed` status always carries an error code, every required field is non-empty, every
/// timestamp was understood.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    message_id: String,
    account_name: String,
    waba_id: String,
    status: Status,
    wamid: String,
    send_phone: String,
    uid: Option<String>,
    conversation: Option<Conversation>,
    error: Option<ErrorData>,
}

impl StatusEvent {
    /// `body.id`: the InnoPaaS message id (digits kept as sent).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }
    /// `body.accountName`: the API account.
    pub fn account_name(&self) -> &str {
        &self.account_name
    }
    /// `body.wabaId`: the WhatsApp Business Account id.
    pub fn waba_id(&self) -> &str {
        &self.waba_id
    }
    /// `body.status`.
    pub fn status(&self) -> &Status {
        &self.status
    }
    /// `body.wamid`: the WhatsApp message id.
    pub fn wamid(&self) -> &str {
        &self.wamid
    }
    /// `body.sendPhone`: the recipient's WhatsApp number.
    pub fn send_phone(&self) -> &str {
        &self.send_phone
    }
    /// `body.uid`: the customer's batch number, when given.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }
    /// `body.conversation`, when given.
    pub fn conversation(&self) -> Option<&Conversation> {
        self.conversation.as_ref()
    }
    /// `body.errorData`; always present for [`Status::Failed`].
    pub fn error(&self) -> Option<&ErrorData> {
        self.error.as_ref()
    }

    /// Reads the body of a status event.
    ///
    /// Refused: a missing or empty `id`, `accountName`, `wabaId`, `status`, `wamid` or
    /// `sendPhone`; a field of the wrong JSON type; a `conversation.expireAt` that is not a
    /// time; a `failed` status without `errorData.errorCode`. Kept and flagged: an
    /// undocumented status, field or `initiateType`; a `delivered` without conversation, a
    /// `read` or failure with one; errorData on a `delivered` or `read`; a conversation
    /// without `initiateType` or `expireAt`; a failure's errorCode without errorMessage.
    pub(super) fn parse(body: &Body<'_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let body = body.fields();
        let message_id = body.required_id("id", "the InnoPaaS message id")?;
        let account_name = body.required_id("accountName", "the API account")?;
        let waba_id = body.required_id("wabaId", "the WhatsApp Business Account id")?;
        let status = Status::parse(&body.required_str(
            "status",
            "the message status (delivered, read, failed or SMECL:FAILED)",
        )?);
        let wamid = body
            .required_str("wamid", "the WhatsApp message id")?
            .to_owned();
        let send_phone = body.required_id("sendPhone", "the recipient's WhatsApp number")?;
        let uid = match body.optional_id("uid")? {
            Some(u) if u.trim().is_empty() => {
                if !u.is_empty() {
                    warnings.push(warning(
                        "blank_field",
                        "body.uid",
                        "body.uid is only whitespace: the message is kept without a batch, and the event as sent.".to_owned(),
                    ));
                }
                None
            }
            uid => uid,
        };

        let conversation = match body.optional_object("conversation")? {
            None => None,
            Some((object, path)) => {
                Some(Conversation::parse(Fields::new(&object, &path), warnings)?)
            }
        };
        let error = ErrorData::parse(&body, &status, warnings)?;
        body.flag_unknown(STATUS_FIELDS, warnings)?;

        match &status {
            Status::Unknown(s) => warnings.push(warning(
                "unknown_status",
                "body.status",
                format!(
                    "Status \"{s}\" is not one InnoPaaS documents (delivered, read, failed, SMECL:FAILED); the event is kept as sent."
                ),
            )),
            Status::Delivered if conversation.is_none() => warnings.push(warning(
                "missing_conversation",
                "body.conversation",
                "A delivered status usually carries conversation; this one has none.".into(),
            )),
            Status::Read | Status::Failed | Status::SmeclFailed if conversation.is_some() => {
                warnings.push(warning(
                    "unexpected_conversation",
                    "body.conversation",
                    format!(
                        "A {} status does not usually carry conversation; it is kept as sent.",
                        status.as_str()
                    ),
                ))
            }
            _ => {}
        }

        Ok(Self {
            message_id,
            account_name,
            waba_id,
            status,
            wamid,
            send_phone,
            uid,
            conversation,
            error,
        })
    }

    /// A status event is recognised by (`body.id`, `body.status`): a message is delivered
    /// once and read once, whatever envelope id a redelivery carries (InnoPaaS reuses one
    /// envelope id across the statuses of a message).
    pub(super) fn dedup_key(&self) -> DedupKey {
        DedupKey::Status {
            message_id: self.message_id.clone(),
            status: self.status.clone(),
        }
    }

    /// Its fields as (label, value) rows: the message id, status, wamid, sendPhone,
    /// accountName, wabaId, then the uid, conversation and error when given.
    pub(super) fn describe<E>(
        &self,
        row: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        row("message id", self.message_id())?;
        row("status", self.status().as_str())?;
        row("wamid", self.wamid())?;
        row("sendPhone", self.send_phone())?;
        row("accountName", self.account_name())?;
        row("wabaId", self.waba_id())?;
        if let Some(uid) = self.uid() {
            row("uid", uid)?;
        }
        if let Some(c) = self.conversation() {
            let kind = c.initiate_type().map(|t| t.as_str()).unwrap_or("-");
            let expires = c
                .expire_at()
                .map(|t| t.at().to_rfc3339())
                .unwrap_or_default();
            row("conversation", &format!("{kind}, expires {expires}"))?;
        }
        if let Some(e) = self.error() {
            row(
                "error",
                &format!("{} {}", e.code(), e.message().unwrap_or("")),
            )?;
        }
        Ok(())
    }

    /// What an accepted status event brings to its message's tracked state
    /// ([`tracking::track`](super::tracking::track)): the message id, status, wamid, uid,
    /// sendPhone, wabaId, accountName, the error (code and message) and the conversation
    /// (id, initiateType, expireAt), with the envelope's id, eventTime and warnings. `None`
    /// for any other event type. [`StatusUpdate::from_accepted`] builds it.
    pub fn tracking_update(accepted: &Accepted) -> Option<StatusUpdate> {
        StatusUpdate::from_accepted(accepted)
    }
}

/// `conversation.initiateType`. Unknown values are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiateType {
    BusinessInitiated,
    ReferralConversion,
    CustomerInitiated,
    Unknown(String),
}

impl InitiateType {
    pub fn parse(s: &str) -> Self {
        match s {
            "business_initiated" => Self::BusinessInitiated,
            "referral_conversion" => Self::ReferralConversion,
            "customer_initiated" => Self::CustomerInitiated,
            other => Self::Unknown(other.to_owned()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Self::BusinessInitiated => "business_initiated",
            Self::ReferralConversion => "referral_conversion",
            Self::CustomerInitiated => "customer_initiated",
            Self::Unknown(s) => s,
        }
    }
}

/// `body.conversation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    id: Option<String>,
    initiate_type: Option<InitiateType>,
    expire_at: Option<Timestamp>,
}

impl Conversation {
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    pub fn initiate_type(&self) -> Option<&InitiateType> {
        self.initiate_type.as_ref()
    }
    pub fn expire_at(&self) -> Option<&Timestamp> {
        self.expire_at.as_ref()
    }

    fn parse(c: Fields<'_, '_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let id = c.optional_id("id")?;
        let initiate_type = c
            .optional_str("initiateType")?
            .map(|t| InitiateType::parse(&t));
        let expire_at = c.optional_time("expireAt")?;
        c.flag_unknown(CONVERSATION_FIELDS, warnings)?;
        match &initiate_type {
            Some(InitiateType::Unknown(s)) => warnings.push(warning(
                "unknown_initiate_type",
                "body.conversation.initiateType",
                format!(
                    "initiateType \"{s}\" is not one InnoPaaS documents (business_initiated, referral_conversion, customer_initiated); it is kept as sent."
                ),
            )),
            None => warnings.push(warning(
                "incomplete_conversation",
                "body.conversation.initiateType",
                "conversation has no initiateType.".into(),
            )),
            Some(_) => {}
        }
        if expire_at.is_none() {
            warnings.push(warning(
                "incomplete_conversation",
                "body.conversation.expireAt",
                "conversation has no expireAt.".into(),
            ));
        }
        Ok(Self {
            id,
            initiate_type,
            expire_at,
        })
    }
}

/// `body.errorData`: Meta's error code (never empty) and description.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorData {
    code: String,
    message: Option<String>,
}

impl ErrorData {
    pub fn code(&self) -> &str {
        &self.code
    }
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// `errorData` of a body whose status is `status`: required (with its errorCode) for
    /// `failed`; without an errorCode it is no error.
    fn parse(
        body: &Fields<'_, '_>,
        status: &Status,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<Self>, Rejection> {
        let failed = *status == Status::Failed;
        let Some((object, path)) = body.optional_object("errorData")? else {
            if failed {
                return Err(Rejection::new(
                    RejectCode::MissingErrorData,
                    Some("body.errorData".into()),
                    "body.errorData is missing: a failed status must carry errorData with the Meta errorCode and errorMessage.".into(),
                ));
            }
            return Ok(None);
        };
        let e = Fields::new(&object, &path);
        let code = e.optional_id("errorCode")?.filter(|c| !c.is_empty());
        let message = e.optional_str("errorMessage")?;
        e.flag_unknown(ERROR_FIELDS, warnings)?;
        if matches!(status, Status::Delivered | Status::Read) {
            warnings.push(warning(
                "unexpected_error_data",
                "body.errorData",
                format!(
                    "A {} status does not usually carry errorData; it is kept as sent.",
                    status.as_str()
                ),
            ));
        }
        let Some(code) = code else {
            if failed {
                return Err(Rejection::new(
                    RejectCode::MissingErrorData,
                    Some("body.errorData.errorCode".into()),
                    "body.errorData.errorCode is missing or empty: a failed status must carry the Meta error code.".into(),
                ));
            }
            return Ok(None);
        };
        if message.is_none() && failed {
            warnings.push(warning(
                "missing_error_message",
                "body.errorData.errorMessage",
                "errorData has an errorCode but no errorMessage.".into(),
            ));
        }
        Ok(Some(Self { code, message }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(event_type: &str) -> Accepted {
        let body = serde_json::json!({
            "id": "e1", "type": event_type, "eventTime": "2026-01-01T00:00:00.000Z",
            "body": {"id": "m1", "wamid": "w1", "status": "read", "sendPhone": "1",
                     "wabaId": "2", "accountName": "3"}
        });
        crate::event::parse(body.to_string().as_bytes()).expect("valid")
    }

    #[test]
    fn a_status_event_brings_a_tracking_update_and_no_other_event_does() {
        let update = StatusEvent::tracking_update(&accepted(MESSAGE_STATUS_TYPE)).unwrap();
        assert_eq!(
            (update.message_id(), update.status()),
            ("m1", &Status::Read)
        );
        assert!(StatusEvent::tracking_update(&accepted("whatsapp_unlisted_event")).is_none());
    }
}
