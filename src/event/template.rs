//! The template events: a template's review status (`whatsapp_template_status_updated`,
//! also as the misspelled `whatsapp_template_status_update`), its quality score
//! (`message_template_quality_update`) and its category (`template_category_update`).
//! Their fields ([`TemplateStatusUpdate`], [`TemplateQualityUpdate`],
//! [`TemplateCategoryUpdate`]), how each body is read, what is refused or flagged in it,
//! their dedup key and their rows for `innohook validate`. Why each rule is as it is:
//! `docs/events.md`.
//!
//! Their dedup key is the one `other.rs` gave them before they were typed (envelope id and
//! body digest), so a redelivery of an event stored before is still recognised.

use serde_json::Value;

use super::parse::{Body, Rejection, warning};
use super::{DedupKey, Timestamp, Warning};

/// A template's review status changed.
pub const TEMPLATE_STATUS_TYPE: &str = "whatsapp_template_status_updated";
/// The same event as one copy of the documentation spells it (no final `d`): accepted,
/// and flagged.
pub const TEMPLATE_STATUS_MISSPELLED_TYPE: &str = "whatsapp_template_status_update";
/// A template's quality score changed (the type is inferred from the documentation's
/// heading; no example shows it).
pub const TEMPLATE_QUALITY_TYPE: &str = "message_template_quality_update";
/// A template's category changed (its fields are not documented).
pub const TEMPLATE_CATEGORY_TYPE: &str = "template_category_update";

/// The documented fields of each body; any other is kept and flagged (`unknown_field`).
const STATUS_FIELDS: &[&str] = &[
    "accountName",
    "wabaId",
    "templateId",
    "templateName",
    "templateLanguage",
    "category",
    "templateStatus",
    "reason",
];
const QUALITY_FIELDS: &[&str] = &[
    "wabaId",
    "templateId",
    "templateName",
    "templateLanguage",
    "previousQualityScore",
    "newQualityScore",
];

/// What `reason` says when there is none.
const NO_REASON: &str = "NONE";

/// The body of a `whatsapp_template_status_updated` event.
///
/// Built only by [`super::parse`]: the template id and status are always there; every
/// other field is as sent, `None` when it was not.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateStatusUpdate {
    account_name: Option<String>,
    waba_id: Option<String>,
    template_id: String,
    template_name: Option<String>,
    language: Option<String>,
    category: Option<TemplateCategory>,
    status: TemplateStatus,
    reason: Option<String>,
    pub(super) body: Value,
}

impl TemplateStatusUpdate {
    /// `body.accountName`: the API account.
    pub fn account_name(&self) -> Option<&str> {
        self.account_name.as_deref()
    }
    /// `body.wabaId`: the WhatsApp Business Account id.
    pub fn waba_id(&self) -> Option<&str> {
        self.waba_id.as_deref()
    }
    /// `body.templateId`: Meta's template id, every digit as sent.
    pub fn template_id(&self) -> &str {
        &self.template_id
    }
    /// `body.templateName`.
    pub fn template_name(&self) -> Option<&str> {
        self.template_name.as_deref()
    }
    /// `body.templateLanguage`, e.g. `en_US`.
    pub fn language(&self) -> Option<&str> {
        self.language.as_deref()
    }
    /// `body.category`.
    pub fn category(&self) -> Option<&TemplateCategory> {
        self.category.as_ref()
    }
    /// `body.templateStatus`.
    pub fn status(&self) -> &TemplateStatus {
        &self.status
    }
    /// `body.reason`; `None` when it is `NONE`, empty or absent.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    /// Whether someone should look: the template was rejected, paused or disabled.
    pub fn is_alarming(&self) -> bool {
        self.status.is_alarming()
    }

    /// Its key as a fact: template, language and status, at `eventTime`.
    pub(super) fn fact_key(&self, event_time: Option<&Timestamp>) -> Option<DedupKey> {
        DedupKey::fact(
            "template_status",
            event_time,
            &[
                Some(&self.template_id),
                self.language.as_deref(),
                Some(self.status.as_str()),
            ],
        )
    }

    /// Reads the body of a template status event sent as `event_type` (either spelling).
    ///
    /// Refused: a missing or empty `templateId` or `templateStatus`; a field of the wrong
    /// JSON type. Kept and flagged: the misspelled type; any other documented field
    /// missing or empty; an undocumented status, category or field.
    pub(super) fn parse(
        event_type: &str,
        body: &Body<'_>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, Rejection> {
        if event_type == TEMPLATE_STATUS_MISSPELLED_TYPE {
            warnings.push(warning(
                "misspelled_type",
                "type",
                format!(
                    "type \"{event_type}\" is read as \"{TEMPLATE_STATUS_TYPE}\", its documented spelling; the event is kept as sent."
                ),
            ));
        }
        let b = body.fields();
        let template_id = b.required_id("templateId", "the Meta template id")?;
        let status = TemplateStatus::parse(&b.required_str(
            "templateStatus",
            "the template's review status (PENDING, APPROVED, REJECTED, PAUSED or DISABLED)",
        )?);
        let account_name = b.expected_id("accountName", "the API account", warnings)?;
        let waba_id = b.expected_id("wabaId", "the WhatsApp Business Account id", warnings)?;
        let template_name = b.expected_str("templateName", "the template name", warnings)?;
        let language = b.expected_str(
            "templateLanguage",
            "the template language (e.g. en_US)",
            warnings,
        )?;
        let category = b
            .expected_str(
                "category",
                "the template category (MARKETING, AUTHENTICATION or UTILITY)",
                warnings,
            )?
            .map(|c| TemplateCategory::parse(&c));
        let reason = b.expected_str("reason", "a reason (NONE when there is none)", warnings)?;
        let reason = reason.filter(|r| r != NO_REASON);
        b.flag_unknown(STATUS_FIELDS, warnings)?;
        let value = body.value()?;

        if let TemplateStatus::Unknown(s) = &status {
            warnings.push(warning(
                "unknown_template_status",
                "body.templateStatus",
                format!(
                    "templateStatus \"{s}\" is not one InnoPaaS documents (PENDING, APPROVED, REJECTED, PAUSED, DISABLED); the event is kept as sent."
                ),
            ));
        }
        if let Some(TemplateCategory::Unknown(c)) = &category {
            warnings.push(warning(
                "unknown_category",
                "body.category",
                format!(
                    "category \"{c}\" is not one InnoPaaS documents (MARKETING, AUTHENTICATION, UTILITY); the event is kept as sent."
                ),
            ));
        }
        Ok(Self {
            account_name,
            waba_id,
            template_id,
            template_name,
            language,
            category,
            status,
            reason,
            body: value,
        })
    }

    /// Its fields as (label, value) rows: the template id, name, language, category,
    /// status, reason, whether it is alarming, then wabaId and accountName when given.
    pub(super) fn describe<E>(
        &self,
        row: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        row("template id", self.template_id())?;
        row("template name", self.template_name().unwrap_or("-"))?;
        row("language", self.language().unwrap_or("-"))?;
        row(
            "category",
            self.category().map_or("-", TemplateCategory::as_str),
        )?;
        row("status", self.status().as_str())?;
        row("reason", self.reason().unwrap_or("none"))?;
        row("alarming", yes_no(self.is_alarming()))?;
        if let Some(waba_id) = self.waba_id() {
            row("wabaId", waba_id)?;
        }
        if let Some(account) = self.account_name() {
            row("accountName", account)?;
        }
        Ok(())
    }
}

/// The body of a `message_template_quality_update` event.
///
/// Built only by [`super::parse`]: the template id and the new score are always there.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateQualityUpdate {
    waba_id: Option<String>,
    template_id: String,
    template_name: Option<String>,
    language: Option<String>,
    previous: Option<QualityScore>,
    new: QualityScore,
    pub(super) body: Value,
}

impl TemplateQualityUpdate {
    /// `body.wabaId`: the WhatsApp Business Account id.
    pub fn waba_id(&self) -> Option<&str> {
        self.waba_id.as_deref()
    }
    /// `body.templateId`: Meta's template id, every digit as sent.
    pub fn template_id(&self) -> &str {
        &self.template_id
    }
    /// `body.templateName`.
    pub fn template_name(&self) -> Option<&str> {
        self.template_name.as_deref()
    }
    /// `body.templateLanguage`.
    pub fn language(&self) -> Option<&str> {
        self.language.as_deref()
    }
    /// `body.previousQualityScore`.
    pub fn previous_quality(&self) -> Option<&QualityScore> {
        self.previous.as_ref()
    }
    /// `body.newQualityScore`.
    pub fn new_quality(&self) -> &QualityScore {
        &self.new
    }
    /// Whether someone should look: the template's quality is now low (RED).
    pub fn is_alarming(&self) -> bool {
        self.new.is_alarming()
    }

    /// Its key as a fact: template and new score, at `eventTime`.
    pub(super) fn fact_key(&self, event_time: Option<&Timestamp>) -> Option<DedupKey> {
        DedupKey::fact(
            "template_quality",
            event_time,
            &[Some(&self.template_id), Some(self.new.as_str())],
        )
    }

    /// Reads the body of a template quality event.
    ///
    /// Refused: a missing or empty `templateId` or `newQualityScore`; a field of the wrong
    /// JSON type. Kept and flagged: any other documented field missing or empty; an
    /// undocumented quality score or field.
    pub(super) fn parse(body: &Body<'_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let b = body.fields();
        let template_id = b.required_id("templateId", "the Meta template id")?;
        let new = QualityScore::parse(&b.required_str(
            "newQualityScore",
            "the template's new quality score (GREEN, YELLOW, RED or UNKNOWN)",
        )?);
        let previous = b
            .expected_str(
                "previousQualityScore",
                "the template's previous quality score",
                warnings,
            )?
            .map(|q| QualityScore::parse(&q));
        let waba_id = b.expected_id("wabaId", "the WhatsApp Business Account id", warnings)?;
        let template_name = b.expected_str("templateName", "the template name", warnings)?;
        let language = b.expected_str("templateLanguage", "the template language", warnings)?;
        b.flag_unknown(QUALITY_FIELDS, warnings)?;
        let value = body.value()?;

        for (field, score) in [
            ("previousQualityScore", previous.as_ref()),
            ("newQualityScore", Some(&new)),
        ] {
            if let Some(QualityScore::Unknown(s)) = score {
                warnings.push(warning(
                    "unknown_quality_score",
                    &format!("body.{field}"),
                    format!(
                        "{field} \"{s}\" is not one InnoPaaS documents (GREEN, YELLOW, RED, UNKNOWN); the event is kept as sent."
                    ),
                ));
            }
        }
        Ok(Self {
            waba_id,
            template_id,
            template_name,
            language,
            previous,
            new,
            body: value,
        })
    }

    /// Its fields as (label, value) rows: the template id, name, language, the quality
    /// from previous to new, whether it is alarming, then wabaId when given.
    pub(super) fn describe<E>(
        &self,
        row: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        row("template id", self.template_id())?;
        row("template name", self.template_name().unwrap_or("-"))?;
        row("language", self.language().unwrap_or("-"))?;
        let previous = self.previous_quality().map_or("-", QualityScore::as_str);
        row(
            "quality",
            &format!("{previous} -> {}", self.new_quality().as_str()),
        )?;
        row("alarming", yes_no(self.is_alarming()))?;
        if let Some(waba_id) = self.waba_id() {
            row("wabaId", waba_id)?;
        }
        Ok(())
    }
}

/// The body of a `template_category_update` event: not documented, so kept whole. Only
/// `templateId` is read, when it is there as a string or an integer.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateCategoryUpdate {
    template_id: Option<String>,
    new_category: Option<String>,
    previous_category: Option<String>,
    pub(super) body: Value,
}

impl TemplateCategoryUpdate {
    /// `body.templateId`, when the body has one (a string, or an integer with every digit).
    pub fn template_id(&self) -> Option<&str> {
        self.template_id.as_deref()
    }
    /// The category it says the template has now, when the body has one as a string:
    /// `newCategory` (Meta's `new_category`, camel-cased as InnoPaaS writes the other
    /// events' fields), else `category`. A guess, since the body is not documented.
    pub fn new_category(&self) -> Option<&str> {
        self.new_category.as_deref()
    }
    /// The category it says the template had, from `previousCategory` when a string.
    pub fn previous_category(&self) -> Option<&str> {
        self.previous_category.as_deref()
    }
    /// The body as sent.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Keeps the body whole (refused only as `other.rs` refuses one: nested too deep);
    /// nothing in it is refused or flagged, since none of it is documented.
    pub(super) fn parse(body: &Body<'_>) -> Result<Self, Rejection> {
        let value = body.value()?;
        let template_id = body
            .fields()
            .optional_id("templateId")
            .ok()
            .flatten()
            .filter(|id| !id.is_empty());
        let text = |field: &str| {
            value
                .get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let new_category = text("newCategory").or_else(|| text("category"));
        let previous_category = text("previousCategory");
        Ok(Self {
            template_id,
            new_category,
            previous_category,
            body: value,
        })
    }

    /// The template id when given, and that the body is not documented.
    pub(super) fn describe<E>(
        &self,
        row: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(id) = self.template_id() {
            row("template id", id)?;
        }
        if let Some(category) = self.new_category() {
            let previous = self.previous_category().unwrap_or("-");
            row("category", &format!("{previous} -> {category}"))?;
        }
        row("body", "not documented by InnoPaaS: kept as sent")
    }
}

/// What a template event says happened to its template, in a form the log, the metrics
/// and the store share.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateNews<'a> {
    pub template_id: &'a str,
    pub name: Option<&'a str>,
    pub language: Option<&'a str>,
    /// `status` or `quality`.
    pub kind: &'static str,
    /// The status or the new quality score, as sent.
    pub value: &'a str,
    /// The value as a metric label: a documented one, else `other` (so that a label's
    /// values stay few).
    pub label: &'static str,
    /// Why, when the event says.
    pub reason: Option<&'a str>,
    /// Someone running campaigns must be told.
    pub alarming: bool,
}

impl TemplateStatusUpdate {
    /// What it says happened.
    pub fn news(&self) -> TemplateNews<'_> {
        TemplateNews {
            template_id: &self.template_id,
            name: self.template_name(),
            language: self.language(),
            kind: "status",
            value: self.status.as_str(),
            label: match &self.status {
                TemplateStatus::Unknown(_) => "other",
                TemplateStatus::Pending => "PENDING",
                TemplateStatus::Approved => "APPROVED",
                TemplateStatus::Rejected => "REJECTED",
                TemplateStatus::Paused => "PAUSED",
                TemplateStatus::Disabled => "DISABLED",
            },
            reason: self.reason(),
            alarming: self.is_alarming(),
        }
    }
}

impl TemplateQualityUpdate {
    /// What it says happened.
    pub fn news(&self) -> TemplateNews<'_> {
        TemplateNews {
            template_id: &self.template_id,
            name: self.template_name(),
            language: self.language(),
            kind: "quality",
            value: self.new.as_str(),
            label: match &self.new {
                QualityScore::Unknown(_) => "other",
                QualityScore::Green => "GREEN",
                QualityScore::Yellow => "YELLOW",
                QualityScore::Red => "RED",
                QualityScore::Unrated => "UNKNOWN",
            },
            reason: None,
            alarming: self.is_alarming(),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `body.templateStatus`. Undocumented values (Meta's `FLAGGED`, `REINSTATED`,
/// `PENDING_DELETION`, `DELETED`, `LIMIT_EXCEEDED`, `IN_APPEAL`, …) are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplateStatus {
    Pending,
    Approved,
    Rejected,
    Paused,
    Disabled,
    /// A value the documentation does not list, kept as sent.
    Unknown(String),
}

impl TemplateStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "PENDING" => Self::Pending,
            "APPROVED" => Self::Approved,
            "REJECTED" => Self::Rejected,
            "PAUSED" => Self::Paused,
            "DISABLED" => Self::Disabled,
            other => Self::Unknown(other.to_owned()),
        }
    }
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Paused => "PAUSED",
            Self::Disabled => "DISABLED",
            Self::Unknown(s) => s,
        }
    }
    /// Whether the people running campaigns must be told: the template was rejected,
    /// paused or disabled (an undocumented status is flagged instead).
    pub fn is_alarming(&self) -> bool {
        matches!(self, Self::Rejected | Self::Paused | Self::Disabled)
    }
}

/// `body.category`. Undocumented values are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplateCategory {
    Marketing,
    Authentication,
    Utility,
    /// A value the documentation does not list, kept as sent.
    Unknown(String),
}

impl TemplateCategory {
    pub fn parse(s: &str) -> Self {
        match s {
            "MARKETING" => Self::Marketing,
            "AUTHENTICATION" => Self::Authentication,
            "UTILITY" => Self::Utility,
            other => Self::Unknown(other.to_owned()),
        }
    }
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Marketing => "MARKETING",
            Self::Authentication => "AUTHENTICATION",
            Self::Utility => "UTILITY",
            Self::Unknown(s) => s,
        }
    }
}

/// A template's quality score. Undocumented values are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QualityScore {
    /// `GREEN`: high.
    Green,
    /// `YELLOW`: medium.
    Yellow,
    /// `RED`: low.
    Red,
    /// `UNKNOWN`: not rated yet (a documented value).
    Unrated,
    /// A value the documentation does not list, kept as sent.
    Unknown(String),
}

impl QualityScore {
    pub fn parse(s: &str) -> Self {
        match s {
            "GREEN" => Self::Green,
            "YELLOW" => Self::Yellow,
            "RED" => Self::Red,
            "UNKNOWN" => Self::Unrated,
            other => Self::Unknown(other.to_owned()),
        }
    }
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Green => "GREEN",
            Self::Yellow => "YELLOW",
            Self::Red => "RED",
            Self::Unrated => "UNKNOWN",
            Self::Unknown(s) => s,
        }
    }
    /// Whether the people running campaigns must be told: the quality is low (RED).
    pub fn is_alarming(&self) -> bool {
        *self == Self::Red
    }
}
