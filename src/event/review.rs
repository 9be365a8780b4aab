//! The review events: a sender display name's review (`whatsapp_phone_number_name_update`)
//! and a WhatsApp Business Account's review (`whatsapp_account_review_updated`, whose body
//! is not documented). Their fields ([`PhoneNumberNameUpdate`], [`AccountReview`]), how
//! each body is read, what is refused or flagged in it, their dedup key and their rows for
//! `innohook validate`. Why each rule is as it is: `docs/events.md`.
//!
//! Their dedup key is the one `other.rs` gave them before they were typed (envelope id and
//! body digest), so a redelivery of an event stored before is still recognised.

use serde_json::Value;

use super::parse::{Body, Rejection, warning};
use super::{DedupKey, Timestamp, Warning};

/// A sender display name's review changed state.
pub const PHONE_NUMBER_NAME_TYPE: &str = "whatsapp_phone_number_name_update";
/// A WhatsApp Business Account's review changed state (listed as "updating" and not
/// documented beyond its name).
pub const ACCOUNT_REVIEW_TYPE: &str = "whatsapp_account_review_updated";

/// The documented fields of the name update's body; any other is kept and flagged
/// (`unknown_field`).
const NAME_FIELDS: &[&str] = &[
    "wabaId",
    "displayPhoneNumber",
    "decision",
    "requestedVerifiedName",
    "rejectionReason",
];

/// The body of a `whatsapp_phone_number_name_update` event.
///
/// Built only by [`super::parse`]: the number and the decision are always there.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumberNameUpdate {
    waba_id: Option<String>,
    display_phone_number: String,
    decision: Decision,
    requested_name: Option<String>,
    rejection_reason: Option<RejectionReason>,
    pub(super) body: Value,
}

impl PhoneNumberNameUpdate {
    /// `body.wabaId`: the WhatsApp Business Account id.
    pub fn waba_id(&self) -> Option<&str> {
        self.waba_id.as_deref()
    }
    /// `body.displayPhoneNumber`: the sender number whose name was reviewed (digits as
    /// sent).
    pub fn display_phone_number(&self) -> &str {
        &self.display_phone_number
    }
    /// `body.decision`.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
    /// `body.requestedVerifiedName`: the name submitted.
    pub fn requested_verified_name(&self) -> Option<&str> {
        self.requested_name.as_deref()
    }
    /// `body.rejectionReason`; `None` when `null`, empty or absent.
    pub fn rejection_reason(&self) -> Option<&RejectionReason> {
        self.rejection_reason.as_ref()
    }

    /// Its key as a fact: number, decision and name, at `eventTime`.
    pub(super) fn fact_key(&self, event_time: Option<&Timestamp>) -> Option<DedupKey> {
        DedupKey::fact(
            "phone_number_name",
            event_time,
            &[
                Some(&self.display_phone_number),
                Some(self.decision.as_str()),
                self.requested_name.as_deref(),
            ],
        )
    }

    /// Reads the body of a name update.
    ///
    /// Refused: a missing or empty `displayPhoneNumber` or `decision`; a field of the
    /// wrong JSON type (`rejectionReason` may be `null`). Kept and flagged: `wabaId` or
    /// `requestedVerifiedName` missing or empty; an undocumented decision, rejection
    /// reason or field.
    pub(super) fn parse(body: &Body<'_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let b = body.fields();
        let display_phone_number =
            b.required_id("displayPhoneNumber", "the sender number the name is for")?;
        let decision = Decision::parse(&b.required_str(
            "decision",
            "the review decision (APPROVED, PENDING, DEFERRED or REJECTED)",
        )?);
        let waba_id = b.expected_id("wabaId", "the WhatsApp Business Account id", warnings)?;
        let requested_name = b.expected_str(
            "requestedVerifiedName",
            "the name submitted for review",
            warnings,
        )?;
        let rejection_reason = b
            .optional_str("rejectionReason")?
            .filter(|r| !r.is_empty())
            .map(|r| RejectionReason::parse(&r));
        b.flag_unknown(NAME_FIELDS, warnings)?;
        let value = body.value()?;

        if let Decision::Unknown(d) = &decision {
            warnings.push(warning(
                "unknown_decision",
                "body.decision",
                format!(
                    "decision \"{d}\" is not one InnoPaaS documents (APPROVED, PENDING, DEFERRED, REJECTED); the event is kept as sent."
                ),
            ));
        }
        if let Some(RejectionReason::Unknown(r)) = &rejection_reason {
            warnings.push(warning(
                "unknown_rejection_reason",
                "body.rejectionReason",
                format!(
                    "rejectionReason \"{r}\" is not one InnoPaaS documents (NAME_EMPLOYEE_ISSUE, NAME_INDIVIDUAL_ISSUE, NAME_ENDCLIENT_NOTRELATED, NAME_FORMAT_UNACCEPTABLE, NAME_NOT_CONSISTENT, UNKNOWN); the event is kept as sent."
                ),
            ));
        }
        Ok(Self {
            waba_id,
            display_phone_number,
            decision,
            requested_name,
            rejection_reason,
            body: value,
        })
    }

    /// Its fields as (label, value) rows: the number, decision, requested name, the
    /// rejection reason when given, then wabaId when given.
    pub(super) fn describe<E>(
        &self,
        row: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        row("phone number", self.display_phone_number())?;
        row("decision", self.decision().as_str())?;
        row("requested", self.requested_verified_name().unwrap_or("-"))?;
        if let Some(reason) = self.rejection_reason() {
            row("rejection", reason.as_str())?;
        }
        if let Some(waba_id) = self.waba_id() {
            row("wabaId", waba_id)?;
        }
        Ok(())
    }
}

/// The body of a `whatsapp_account_review_updated` event: not documented, so kept whole.
/// `wabaId` and `decision` (the names the name update uses) are read when they are there
/// as text.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountReview {
    waba_id: Option<String>,
    decision: Option<Decision>,
    pub(super) body: Value,
}

impl AccountReview {
    /// `body.wabaId`, when the body has one (a string, or an integer with every digit).
    pub fn waba_id(&self) -> Option<&str> {
        self.waba_id.as_deref()
    }
    /// `body.decision`, when the body has one as a string.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }
    /// The body as sent.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Keeps the body whole (refused only as `other.rs` refuses one: nested too deep);
    /// nothing in it is refused or flagged, since none of it is documented.
    pub(super) fn parse(body: &Body<'_>) -> Result<Self, Rejection> {
        let value = body.value()?;
        let b = body.fields();
        let waba_id = b.optional_id("wabaId").ok().flatten();
        let decision = b.optional_str("decision").ok().flatten();
        Ok(Self {
            waba_id: waba_id.filter(|w| !w.is_empty()),
            decision: decision
                .filter(|d| !d.is_empty())
                .map(|d| Decision::parse(&d)),
            body: value,
        })
    }

    /// wabaId and decision when given, and that the body is not documented.
    pub(super) fn describe<E>(
        &self,
        row: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(waba_id) = self.waba_id() {
            row("wabaId", waba_id)?;
        }
        if let Some(decision) = self.decision() {
            row("decision", decision.as_str())?;
        }
        row("body", "not documented by InnoPaaS: kept as sent")
    }
}

/// A review's decision. Undocumented values are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The name is now shown on the profile.
    Approved,
    /// Still under review.
    Pending,
    /// The decision was postponed.
    Deferred,
    /// Rejected: edit the name in WhatsApp Manager and submit it again.
    Rejected,
    /// A value the documentation does not list, kept as sent.
    Unknown(String),
}

impl Decision {
    pub fn parse(s: &str) -> Self {
        match s {
            "APPROVED" => Self::Approved,
            "PENDING" => Self::Pending,
            "DEFERRED" => Self::Deferred,
            "REJECTED" => Self::Rejected,
            other => Self::Unknown(other.to_owned()),
        }
    }
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Approved => "APPROVED",
            Self::Pending => "PENDING",
            Self::Deferred => "DEFERRED",
            Self::Rejected => "REJECTED",
            Self::Unknown(s) => s,
        }
    }
}

/// Why a display name was rejected. Undocumented values are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RejectionReason {
    /// `NAME_EMPLOYEE_ISSUE`: the name of an employee.
    EmployeeName,
    /// `NAME_INDIVIDUAL_ISSUE`: the name of a person.
    IndividualName,
    /// `NAME_ENDCLIENT_NOTRELATED`: a business name not related to the sender.
    UnrelatedBusiness,
    /// `NAME_FORMAT_UNACCEPTABLE`.
    UnacceptableFormat,
    /// `NAME_NOT_CONSISTENT`: not consistent with the brand.
    NotConsistent,
    /// `UNKNOWN`: no reason given; contact support (a documented value).
    Unexplained,
    /// A value the documentation does not list, kept as sent.
    Unknown(String),
}

impl RejectionReason {
    pub fn parse(s: &str) -> Self {
        match s {
            "NAME_EMPLOYEE_ISSUE" => Self::EmployeeName,
            "NAME_INDIVIDUAL_ISSUE" => Self::IndividualName,
            "NAME_ENDCLIENT_NOTRELATED" => Self::UnrelatedBusiness,
            "NAME_FORMAT_UNACCEPTABLE" => Self::UnacceptableFormat,
            "NAME_NOT_CONSISTENT" => Self::NotConsistent,
            "UNKNOWN" => Self::Unexplained,
            other => Self::Unknown(other.to_owned()),
        }
    }
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::EmployeeName => "NAME_EMPLOYEE_ISSUE",
            Self::IndividualName => "NAME_INDIVIDUAL_ISSUE",
            Self::UnrelatedBusiness => "NAME_ENDCLIENT_NOTRELATED",
            Self::UnacceptableFormat => "NAME_FORMAT_UNACCEPTABLE",
            Self::NotConsistent => "NAME_NOT_CONSISTENT",
            Self::Unexplained => "UNKNOWN",
            Self::Unknown(s) => s,
        }
    }
}
