//! `whatsapp_mo_message_received`: a customer's message to the business ([`InboundMessage`]):
//! who sent it to whom and when, what it replies to, and its content by type
//! ([`Content`]: text, media, location, contacts, a button or list reply, a reaction, an
//! unsupported message, or content innohook keeps without interpreting). How its body is
//! read and what is refused or flagged in it, its dedup keys, its rows for `validate`.
//!
//! The rules where the InnoPaaS documentation is silent are written down, one section
//! each, in `docs/events.md`.

use serde_json::Value;

use super::parse::{Body, Fields, Item, RejectCode, Rejection, warning};
use super::{DedupKey, Timestamp, Warning, other};

/// A customer's message to the business.
pub const INBOUND_MESSAGE_TYPE: &str = "whatsapp_mo_message_received";

/// The documented fields of the body besides its content (the field named by `type`).
const BODY_FIELDS: &[&str] = &[
    "id",
    "accountName",
    "wabaId",
    "wamid",
    "from",
    "to",
    "sendTime",
    "customerProfile",
    "type",
    "context",
];
const CONTEXT_FIELDS: &[&str] = &["id", "from"];
const PROFILE_FIELDS: &[&str] = &["name"];
const TEXT_FIELDS: &[&str] = &["body"];
const MEDIA_FIELDS: &[&str] = &["id", "link", "mimeType", "sha256", "caption", "filename"];
const LOCATION_FIELDS: &[&str] = &["latitude", "longitude", "name", "address"];
const CONTACT_FIELDS: &[&str] = &[
    "addresses",
    "birthday",
    "emails",
    "name",
    "org",
    "phones",
    "urls",
];
const CONTACT_NAME_FIELDS: &[&str] = &[
    "formattedName",
    "firstName",
    "lastName",
    "middleName",
    "prefix",
    "suffix",
];
const CONTACT_PHONE_FIELDS: &[&str] = &["phone", "type", "wa_id", "waId"];
const BUTTON_FIELDS: &[&str] = &["text", "payload"];
const REPLY_FIELDS: &[&str] = &["id", "title", "description"];
const REACTION_FIELDS: &[&str] = &["messageId", "emoji"];
const ERROR_FIELDS: &[&str] = &["code", "title", "details"];

/// The message types InnoPaaS documents, as named in warnings.
const DOCUMENTED_TYPES: &str = "text, image, audio, video, document, sticker, location, contacts, button, interactive, reaction, order, system, unknown";

/// Meta's marks of a forwarded message: a `context` that carries one of them and no `id`
/// is no reply, and is not refused.
const FORWARDED_MARKS: &[&str] = &["forwarded", "frequentlyForwarded", "frequently_forwarded"];

/// The body of a `whatsapp_mo_message_received` event.
///
/// Built only by [`super::parse`], so holding one means the event passed validation: it
/// has a wamid, a sender and a type, its content could be read for its type, and every
/// timestamp was understood.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    message_id: Option<String>,
    account_name: Option<String>,
    waba_id: Option<String>,
    wamid: String,
    from: String,
    to: Option<String>,
    send_time: Option<Timestamp>,
    customer_name: Option<String>,
    context: Option<Context>,
    content_type: String,
    content: Content,
    /// The body as `other.rs` reads it, for the key events of this type were stored under
    /// before they were typed.
    body: Value,
}

impl InboundMessage {
    /// `body.id`: the InnoPaaS message id, when given.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
    /// `body.accountName`: the API account, when given.
    pub fn account_name(&self) -> Option<&str> {
        self.account_name.as_deref()
    }
    /// `body.wabaId`: the WhatsApp Business Account id, when given.
    pub fn waba_id(&self) -> Option<&str> {
        self.waba_id.as_deref()
    }
    /// `body.wamid`: the WhatsApp message id of this message.
    pub fn wamid(&self) -> &str {
        &self.wamid
    }
    /// `body.from`: the customer's WhatsApp number.
    pub fn from(&self) -> &str {
        &self.from
    }
    /// `body.to`: the business number it was sent to, when given.
    pub fn to(&self) -> Option<&str> {
        self.to.as_deref()
    }
    /// `body.sendTime`: when the customer sent it, when given.
    pub fn send_time(&self) -> Option<&Timestamp> {
        self.send_time.as_ref()
    }
    /// `body.customerProfile.name`: the customer's WhatsApp profile name, when given.
    pub fn customer_name(&self) -> Option<&str> {
        self.customer_name.as_deref()
    }
    /// `body.context`: the message it replies to or quotes, when given.
    pub fn context(&self) -> Option<&Context> {
        self.context.as_ref()
    }
    /// `body.type` as sent (`text`, `image`, …, or one InnoPaaS does not document).
    pub fn content_type(&self) -> &str {
        &self.content_type
    }
    /// The content, typed by `body.type`.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The wamid of the business message this one answers: a reaction's target
    /// (`reaction.messageId`), or else the message replied to or quoted (`context.id`).
    pub fn reply_to(&self) -> Option<&str> {
        match &self.content {
            Content::Reaction(r) => Some(r.message_id()),
            _ => self.context.as_ref().and_then(Context::id),
        }
    }

    /// The link of its media (image, audio, video, document, sticker), when it has one.
    pub fn media_link(&self) -> Option<&str> {
        match &self.content {
            Content::Media(m) => m.link(),
            _ => None,
        }
    }

    /// The content as a short line of plain text, for display: the text itself, `image:
    /// {caption}`, `location: {lat},{lon} {name}`, a button's or row's title, a reaction's
    /// emoji, …
    pub fn summary(&self) -> String {
        let line = match &self.content {
            Content::Text(t) => t.body().to_owned(),
            Content::Media(m) => {
                let label = m.caption().or(m.filename());
                labelled(m.kind().as_str(), label)
            }
            Content::Location(l) => {
                let at = format!("{},{}", l.latitude(), l.longitude());
                let place = l.name().or(l.address());
                labelled("location", Some(&join(&at, place)))
            }
            Content::Contacts(contacts) => {
                let names: Vec<&str> = contacts.iter().filter_map(Contact::display).collect();
                labelled("contacts", Some(names.join(", ").as_str()))
            }
            Content::Button(b) => labelled("button", b.text().or(b.payload())),
            Content::Interactive(i) => match i {
                Interactive::ListReply(r) => labelled("list reply", r.title().or(Some(r.id()))),
                Interactive::ButtonReply(r) => labelled("button reply", r.title().or(Some(r.id()))),
                Interactive::Other { kind, .. } => format!("[unsupported interactive: {kind}]"),
            },
            Content::Reaction(r) => match r.emoji() {
                Some(emoji) => format!("reaction: {emoji}"),
                None => "reaction removed".to_owned(),
            },
            Content::Unsupported(errors) => {
                labelled("unsupported", errors.iter().find_map(MessageError::title))
            }
            Content::Untyped(_) => format!("[unsupported message: {}]", self.content_type),
        };
        shorten(&line, SUMMARY_CHARS)
    }

    /// Reads the body of an inbound message.
    ///
    /// Refused: a missing or empty `wamid` or `from`, a missing or empty `type`; a field
    /// of the wrong JSON type; a `sendTime` that is not a time; a `context` without `id`
    /// (unless it marks a forwarded message); for a documented type, its content missing
    /// or not an object (a list for contacts and errors), or without what makes it that
    /// content: a text's `body`, a reaction's `messageId`, a location's numeric
    /// `latitude` and `longitude`, a list or button reply's `id`. Kept and flagged: any
    /// other documented field missing (`missing_field`), an undocumented field, an order,
    /// system or undocumented message type (kept as JSON), Meta's snake_case interactive
    /// spellings, a single object where a list is documented.
    pub(super) fn parse(body: &Body<'_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let f = body.fields();
        let wamid = f.required_str("wamid", "the WhatsApp message id")?;
        let from = f.required_id("from", "the customer's WhatsApp number")?;
        let content_type = f.required_str(
            "type",
            "the message type (text, image, location, interactive, …)",
        )?;
        let message_id = expected_id(&f, "id", "the InnoPaaS message id", warnings)?;
        let account_name = expected_id(&f, "accountName", "the API account", warnings)?;
        let waba_id = expected_id(&f, "wabaId", "the WhatsApp Business Account id", warnings)?;
        let to = expected_id(&f, "to", "the business number", warnings)?;
        let send_time = f.optional_time("sendTime")?;
        if send_time.is_none() {
            flag_missing(&f, "sendTime", "when the customer sent it", warnings);
        }
        let customer_name = match f.optional_object("customerProfile")? {
            None => {
                flag_missing(&f, "customerProfile", "the customer's profile", warnings);
                None
            }
            Some((object, path)) => {
                let p = Fields::new(&object, &path);
                let name = p.optional_str("name")?;
                p.flag_unknown(PROFILE_FIELDS, warnings)?;
                name
            }
        };
        let context = match f.optional_object("context")? {
            None => None,
            Some((object, path)) => Some(Context::parse(Fields::new(&object, &path), warnings)?),
        };
        let (content_key, content) = Content::parse(&f, &content_type, warnings)?;
        let mut known = BODY_FIELDS.to_vec();
        known.push(content_key);
        f.flag_unknown(&known, warnings)?;
        Ok(Self {
            message_id,
            account_name,
            waba_id,
            wamid,
            from,
            to,
            send_time,
            customer_name,
            context,
            content_type,
            content,
            body: body.value()?,
        })
    }

    /// An inbound message has two keys, a duplicate when either was seen: the key
    /// `other.rs` gave it before it was typed (its envelope id and the SHA-256 of its
    /// body), so a redelivery of one stored before is still recognised; and its wamid, so
    /// the same message pushed under another envelope id is recognised too.
    pub(super) fn dedup_keys(&self, envelope_id: &str) -> Vec<DedupKey> {
        vec![
            other::dedup_key(envelope_id, &self.body),
            DedupKey::Inbound {
                wamid: self.wamid.clone(),
            },
        ]
    }

    /// Its fields as (label, value) rows: from, to, wamid, sendTime, type, the content's
    /// fields, what it replies to; then the customer's name, the InnoPaaS message id,
    /// accountName and wabaId when given.
    pub(super) fn describe<E>(
        &self,
        row: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        row("from", self.from())?;
        row("to", self.to().unwrap_or("-"))?;
        row("wamid", self.wamid())?;
        let sent = self.send_time().map(|t| t.at().to_rfc3339());
        row("sendTime", sent.as_deref().unwrap_or("-"))?;
        row("type", self.content_type())?;
        self.content.describe(row)?;
        if let Some(wamid) = self.reply_to() {
            row("reply to", wamid)?;
        }
        if let Some(name) = self.customer_name() {
            row("customer", name)?;
        }
        if let Some(id) = self.message_id() {
            row("message id", id)?;
        }
        if let Some(account) = self.account_name() {
            row("accountName", account)?;
        }
        if let Some(waba) = self.waba_id() {
            row("wabaId", waba)?;
        }
        Ok(())
    }
}

/// Longest [`InboundMessage::summary`], in characters.
const SUMMARY_CHARS: usize = 120;

/// `a` or `an`, as the word needs.
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// `label: text`, or the label alone without text.
fn labelled(label: &str, text: Option<&str>) -> String {
    match text {
        Some(text) if !text.is_empty() => format!("{label}: {text}"),
        _ => label.to_owned(),
    }
}

/// `first second`, or `first` alone.
fn join(first: &str, second: Option<&str>) -> String {
    match second {
        Some(s) if !s.is_empty() => format!("{first} {s}"),
        _ => first.to_owned(),
    }
}

/// `text` on one line and at most `max` characters, the last an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// A documented id-like field the message can be read without: absent, `null` or empty is
/// `None` and flagged (`missing_field`); of the wrong JSON type, refused.
fn expected_id(
    f: &Fields<'_, '_>,
    key: &str,
    what: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Option<String>, Rejection> {
    let value = f.optional_id(key)?.filter(|v| !v.is_empty());
    if value.is_none() {
        flag_missing(f, key, what, warnings);
    }
    Ok(value)
}

/// [`expected_id`] for a string field.
fn expected_str(
    f: &Fields<'_, '_>,
    key: &str,
    what: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Option<String>, Rejection> {
    let value = f.optional_str(key)?.filter(|v| !v.is_empty());
    if value.is_none() {
        flag_missing(f, key, what, warnings);
    }
    Ok(value)
}

/// Flags a documented field the message is kept without.
fn flag_missing(f: &Fields<'_, '_>, key: &str, what: &str, warnings: &mut Vec<Warning>) {
    let path = f.path(key);
    warnings.push(warning(
        "missing_field",
        &path,
        format!(
            "{path} is missing or empty: the documentation lists {what} for this event, which is kept without it."
        ),
    ));
}

/// `body.context`: the message replied to or quoted.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    id: Option<String>,
    from: Option<String>,
}

impl Context {
    /// `context.id`: the wamid of the message replied to or quoted. Only a forwarded
    /// message's context (which replies to nothing) has none.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    /// `context.from`: who sent that message (the business number), when given.
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }

    fn parse(c: Fields<'_, '_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        const WHAT: &str = "the WhatsApp message id of the message replied to (a context without one replies to nothing)";
        let id = c.optional_str("id")?;
        if id.as_deref() == Some("") {
            return Err(c.empty("id", WHAT));
        }
        let forwarded = FORWARDED_MARKS.iter().any(|m| c.has(m));
        let from = match (&id, forwarded) {
            (None, false) => {
                return Err(c.missing("id", WHAT));
            }
            (None, true) => {
                let path = c.path("id");
                warnings.push(warning(
                    "context_without_id",
                    &path,
                    format!(
                        "{path} is missing: this context marks a forwarded message, not a reply; it is kept as sent."
                    ),
                ));
                c.optional_id("from")?
            }
            (Some(_), _) => {
                expected_id(&c, "from", "the sender of the message replied to", warnings)?
            }
        };
        c.flag_unknown(CONTEXT_FIELDS, warnings)?;
        Ok(Self { id, from })
    }
}

/// The content of an inbound message, by `body.type`.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// `text`.
    Text(Text),
    /// `image`, `audio`, `video`, `document` or `sticker`.
    Media(Media),
    /// `location`.
    Location(Location),
    /// `contacts` (under the key `contacts` or `contact`), in the order sent.
    Contacts(Vec<Contact>),
    /// `button`: a template's quick-reply button was tapped.
    Button(Button),
    /// `interactive`: a list row or reply button was chosen.
    Interactive(Interactive),
    /// `reaction`: an emoji on an earlier message, or its removal.
    Reaction(Reaction),
    /// `unknown`: a message WhatsApp does not pass on through the API; its `errors`.
    Unsupported(Vec<MessageError>),
    /// `order`, `system`, or a type InnoPaaS does not document: the field named by the type
    /// kept as sent, not interpreted (`None` when the body has no such field).
    Untyped(Option<Value>),
}

impl Content {
    /// The content of a message of type `content_type`, and the body field it was read
    /// from.
    fn parse<'t>(
        f: &Fields<'_, '_>,
        content_type: &'t str,
        warnings: &mut Vec<Warning>,
    ) -> Result<(&'t str, Self), Rejection> {
        let key = content_type;
        let what = |noun: &str| {
            format!(
                "the {noun} of {} {content_type} message",
                article(content_type)
            )
        };
        let object = |key: &str, noun: &str| -> Result<_, Rejection> {
            f.optional_object(key)?
                .ok_or_else(|| f.missing(key, &what(noun)))
        };
        let content = match (content_type, MediaKind::parse(content_type)) {
            (_, Some(kind)) => {
                let (object, path) = object(key, "media")?;
                Self::Media(Media::parse(kind, Fields::new(&object, &path), warnings)?)
            }
            ("text", _) => {
                let (object, path) = object(key, "text")?;
                Self::Text(Text::parse(Fields::new(&object, &path), warnings)?)
            }
            ("location", _) => {
                let (object, path) = object(key, "location")?;
                Self::Location(Location::parse(Fields::new(&object, &path), warnings)?)
            }
            ("contacts", _) => {
                // The field table names it `contacts`; the only example uses `contact`.
                let key = if f.has("contacts") || !f.has("contact") {
                    "contacts"
                } else {
                    "contact"
                };
                let Some((items, single)) = f.optional_objects(key)? else {
                    return Err(f.missing(key, &what("contacts (as contacts or contact)")));
                };
                if single {
                    flag_single(f, key, "contact", warnings);
                }
                let contacts = items
                    .iter()
                    .map(|item| Contact::parse(item, warnings))
                    .collect::<Result<_, _>>()?;
                return Ok((key, Self::Contacts(contacts)));
            }
            ("button", _) => {
                let (object, path) = object(key, "button")?;
                Self::Button(Button::parse(Fields::new(&object, &path), warnings)?)
            }
            ("interactive", _) => {
                let (object, path) = object(key, "reply")?;
                let i = Fields::new(&object, &path);
                Self::Interactive(Interactive::parse(f, i, warnings)?)
            }
            ("reaction", _) => {
                let (object, path) = object(key, "reaction")?;
                Self::Reaction(Reaction::parse(Fields::new(&object, &path), warnings)?)
            }
            ("unknown", _) => {
                let key = "errors";
                let errors = match f.optional_objects(key)? {
                    None => {
                        flag_missing(f, key, "the errors of an unknown message", warnings);
                        Vec::new()
                    }
                    Some((items, single)) => {
                        if single {
                            flag_single(f, key, "error", warnings);
                        }
                        items
                            .iter()
                            .map(|item| MessageError::parse(item, warnings))
                            .collect::<Result<_, _>>()?
                    }
                };
                return Ok((key, Self::Unsupported(errors)));
            }
            ("order" | "system", _) => {
                let path = f.path(key);
                warnings.push(warning(
                    "untyped_content",
                    &path,
                    format!(
                        "InnoPaaS lists {content_type} messages but does not document their fields; {path} is kept as sent, not interpreted."
                    ),
                ));
                Self::Untyped(f.json(key)?)
            }
            _ => {
                let path = f.path("type");
                let content = f.path(key);
                warnings.push(warning(
                    "unknown_content_type",
                    &path,
                    format!(
                        "Message type \"{content_type}\" is not one InnoPaaS documents ({DOCUMENTED_TYPES}); its content ({content}) is kept as sent, not interpreted."
                    ),
                ));
                Self::Untyped(f.json(key)?)
            }
        };
        Ok((key, content))
    }

    /// Its fields as (label, value) rows.
    fn describe<E>(&self, row: &mut impl FnMut(&str, &str) -> Result<(), E>) -> Result<(), E> {
        let mut some = |label: &str, value: Option<&str>| match value {
            Some(v) => row(label, v),
            None => Ok(()),
        };
        match self {
            Self::Text(t) => some("text", Some(t.body())),
            Self::Media(m) => {
                some("caption", m.caption())?;
                some("filename", m.filename())?;
                some("mimeType", m.mime_type())?;
                some("link", m.link())?;
                some("media id", m.id())?;
                some("sha256", m.sha256())
            }
            Self::Location(l) => {
                some("latitude", Some(&l.latitude().to_string()))?;
                some("longitude", Some(&l.longitude().to_string()))?;
                some("name", l.name())?;
                some("address", l.address())
            }
            Self::Contacts(contacts) => {
                for c in contacts {
                    let phones: Vec<&str> = c.phones().iter().map(ContactPhone::phone).collect();
                    let name = c.name().and_then(ContactName::display).unwrap_or("-");
                    some("contact", Some(&join(name, Some(&phones.join(", ")))))?;
                }
                Ok(())
            }
            Self::Button(b) => {
                some("text", b.text())?;
                some("payload", b.payload())
            }
            Self::Interactive(i) => {
                some("reply", Some(i.kind()))?;
                match i.reply() {
                    Some(r) => {
                        some("reply id", Some(r.id()))?;
                        some("title", r.title())?;
                        some("description", r.description())
                    }
                    None => some("content", Some("kept as sent (not interpreted)")),
                }
            }
            Self::Reaction(r) => some("emoji", Some(r.emoji().unwrap_or("(removed)"))),
            Self::Unsupported(errors) => {
                for e in errors {
                    let title = join(e.code().unwrap_or("-"), e.title());
                    some("error", Some(&join(&title, e.details())))?;
                }
                Ok(())
            }
            Self::Untyped(_) => some("content", Some("kept as sent (not interpreted)")),
        }
    }
}

/// Flags a single object where the documentation has a list: it is read as a list of one.
fn flag_single(f: &Fields<'_, '_>, key: &str, noun: &str, warnings: &mut Vec<Warning>) {
    let path = f.path(key);
    warnings.push(warning(
        "single_object",
        &path,
        format!("{path} is a single object, not an array; it is read as one {noun}."),
    ));
}

/// `body.text`.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    body: String,
}

impl Text {
    /// `text.body`: what the customer wrote.
    pub fn body(&self) -> &str {
        &self.body
    }

    fn parse(t: Fields<'_, '_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let body = t
            .optional_str("body")?
            .ok_or_else(|| t.missing("body", "the message text"))?;
        t.flag_unknown(TEXT_FIELDS, warnings)?;
        Ok(Self { body })
    }
}

/// Which kind of media a [`Media`] is: its `body.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Audio,
    Video,
    Document,
    Sticker,
}

impl MediaKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "image" => Self::Image,
            "audio" => Self::Audio,
            "video" => Self::Video,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            _ => return None,
        })
    }
    /// The wire spelling, which is also the body field that holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }
}

/// `body.image`, `body.audio`, `body.video`, `body.document` or `body.sticker`.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    kind: MediaKind,
    id: Option<String>,
    link: Option<String>,
    mime_type: Option<String>,
    sha256: Option<String>,
    caption: Option<String>,
    filename: Option<String>,
}

impl Media {
    pub fn kind(&self) -> MediaKind {
        self.kind
    }
    /// `id`: the media id, when given (Meta's; InnoPaaS documents only `link`).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    /// `link`: where to download the file.
    pub fn link(&self) -> Option<&str> {
        self.link.as_deref()
    }
    /// `mimeType`, e.g. `image/jpeg`.
    pub fn mime_type(&self) -> Option<&str> {
        self.mime_type.as_deref()
    }
    /// `sha256`: the file's digest as sent (base64).
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }
    /// `caption`, when the customer wrote one.
    pub fn caption(&self) -> Option<&str> {
        self.caption.as_deref()
    }
    /// `filename`: a document's file name.
    pub fn filename(&self) -> Option<&str> {
        self.filename.as_deref()
    }

    fn parse(
        kind: MediaKind,
        m: Fields<'_, '_>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, Rejection> {
        let non_empty = |key| -> Result<Option<String>, Rejection> {
            Ok(m.optional_str(key)?.filter(|s| !s.is_empty()))
        };
        let media = Self {
            kind,
            id: m.optional_id("id")?.filter(|s| !s.is_empty()),
            link: non_empty("link")?,
            mime_type: non_empty("mimeType")?,
            sha256: non_empty("sha256")?,
            caption: non_empty("caption")?,
            filename: non_empty("filename")?,
        };
        if media.link.is_none() && media.id.is_none() {
            let path = m.path("link");
            warnings.push(warning(
                "missing_field",
                &path,
                format!(
                    "{path} is missing or empty, and there is no media id: the file cannot be downloaded; the message is kept without it."
                ),
            ));
        }
        m.flag_unknown(MEDIA_FIELDS, warnings)?;
        Ok(media)
    }
}

/// `body.location`.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    latitude: f64,
    longitude: f64,
    name: Option<String>,
    address: Option<String>,
}

impl Location {
    /// `latitude`, in degrees (−90 to 90).
    pub fn latitude(&self) -> f64 {
        self.latitude
    }
    /// `longitude`, in degrees (−180 to 180).
    pub fn longitude(&self) -> f64 {
        self.longitude
    }
    /// `name`: the place's name, when given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// `address`, when given.
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    fn parse(l: Fields<'_, '_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let degrees = |key: &str, noun: &str, limit: f64| -> Result<f64, Rejection> {
            let n = l
                .optional_number(key)?
                .ok_or_else(|| l.missing(key, &format!("the {noun} of the location")))?;
            if n.abs() > limit {
                return Err(l.reject(RejectCode::InvalidField, key, |path| {
                    format!(
                        "{path} is {n}, which is not a {noun}: it must be between -{limit} and {limit}."
                    )
                }));
            }
            Ok(n)
        };
        let latitude = degrees("latitude", "latitude", 90.0)?;
        let longitude = degrees("longitude", "longitude", 180.0)?;
        let name = l.optional_str("name")?.filter(|s| !s.is_empty());
        let address = l.optional_str("address")?.filter(|s| !s.is_empty());
        l.flag_unknown(LOCATION_FIELDS, warnings)?;
        Ok(Self {
            latitude,
            longitude,
            name,
            address,
        })
    }
}

/// One contact card of a contacts message: its name and phones typed, the whole card
/// (addresses, birthday, emails, org, urls, …) kept as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    name: Option<ContactName>,
    phones: Vec<ContactPhone>,
    card: Value,
}

impl Contact {
    /// `name`, when given.
    pub fn name(&self) -> Option<&ContactName> {
        self.name.as_ref()
    }
    /// `phones`, in the order sent.
    pub fn phones(&self) -> &[ContactPhone] {
        &self.phones
    }
    /// The whole card as sent (fields in order, numbers with every digit).
    pub fn card(&self) -> &Value {
        &self.card
    }

    /// The name to show: the formatted name, else the first phone.
    fn display(&self) -> Option<&str> {
        self.name
            .as_ref()
            .and_then(ContactName::display)
            .or_else(|| self.phones.first().map(ContactPhone::phone))
    }

    fn parse(item: &Item<'_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let c = Fields::new(&item.object, &item.path);
        let name = match c.optional_object("name")? {
            None => None,
            Some((object, path)) => {
                Some(ContactName::parse(Fields::new(&object, &path), warnings)?)
            }
        };
        let phones = match c.optional_objects("phones")? {
            None => Vec::new(),
            Some((items, single)) => {
                if single {
                    flag_single(&c, "phones", "phone", warnings);
                }
                items
                    .iter()
                    .map(|p| ContactPhone::parse(p, warnings))
                    .collect::<Result<_, _>>()?
            }
        };
        c.flag_unknown(CONTACT_FIELDS, warnings)?;
        Ok(Self {
            name,
            phones,
            card: item.value()?,
        })
    }
}

/// A contact's `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactName {
    formatted_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    middle_name: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
}

impl ContactName {
    pub fn formatted_name(&self) -> Option<&str> {
        self.formatted_name.as_deref()
    }
    pub fn first_name(&self) -> Option<&str> {
        self.first_name.as_deref()
    }
    pub fn last_name(&self) -> Option<&str> {
        self.last_name.as_deref()
    }
    pub fn middle_name(&self) -> Option<&str> {
        self.middle_name.as_deref()
    }
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }
    pub fn suffix(&self) -> Option<&str> {
        self.suffix.as_deref()
    }

    /// The formatted name, else the first or last name.
    fn display(&self) -> Option<&str> {
        self.formatted_name()
            .or(self.first_name())
            .or(self.last_name())
    }

    fn parse(n: Fields<'_, '_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let text = |key| -> Result<Option<String>, Rejection> {
            Ok(n.optional_str(key)?.filter(|s| !s.is_empty()))
        };
        let name = Self {
            formatted_name: text("formattedName")?,
            first_name: text("firstName")?,
            last_name: text("lastName")?,
            middle_name: text("middleName")?,
            prefix: text("prefix")?,
            suffix: text("suffix")?,
        };
        n.flag_unknown(CONTACT_NAME_FIELDS, warnings)?;
        Ok(name)
    }
}

/// One of a contact's `phones`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactPhone {
    phone: String,
    kind: Option<String>,
    wa_id: Option<String>,
}

impl ContactPhone {
    /// `phone`, as written on the card (`+65 9123 4567`); empty when not given.
    pub fn phone(&self) -> &str {
        &self.phone
    }
    /// `type`: `HOME`, `WORK`, …
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }
    /// `wa_id` (or `waId`): the number's WhatsApp id, digits only, when it has one.
    pub fn wa_id(&self) -> Option<&str> {
        self.wa_id.as_deref()
    }

    fn parse(item: &Item<'_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let p = Fields::new(&item.object, &item.path);
        let phone = Self {
            phone: p.optional_id("phone")?.unwrap_or_default(),
            kind: p.optional_str("type")?,
            wa_id: match p.optional_id("wa_id")? {
                Some(id) => Some(id),
                None => p.optional_id("waId")?,
            },
        };
        p.flag_unknown(CONTACT_PHONE_FIELDS, warnings)?;
        Ok(phone)
    }
}

/// `body.button`: the quick-reply button of a template the customer tapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Button {
    text: Option<String>,
    payload: Option<String>,
}

impl Button {
    /// `text`: the button's label.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }
    /// `payload`: what the business set for that button.
    pub fn payload(&self) -> Option<&str> {
        self.payload.as_deref()
    }

    fn parse(b: Fields<'_, '_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let text = expected_str(&b, "text", "the button's label", warnings)?;
        let payload = expected_str(&b, "payload", "the button's payload", warnings)?;
        b.flag_unknown(BUTTON_FIELDS, warnings)?;
        Ok(Self { text, payload })
    }
}

/// `body.interactive`: the customer's choice in an interactive message.
#[derive(Debug, Clone, PartialEq)]
pub enum Interactive {
    /// `listReply`: a row of a list message.
    ListReply(Reply),
    /// `buttonReply`: a reply button.
    ButtonReply(Reply),
    /// Another `interactive.type` (a Flow's `nfm_reply`, …): `interactive` kept as sent.
    Other { kind: String, value: Value },
}

impl Interactive {
    /// `interactive.type`: `listReply`, `buttonReply` (whichever way it was spelled), or
    /// another as sent.
    pub fn kind(&self) -> &str {
        match self {
            Self::ListReply(_) => "listReply",
            Self::ButtonReply(_) => "buttonReply",
            Self::Other { kind, .. } => kind,
        }
    }
    /// The row or button chosen; `None` for another kind.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Self::ListReply(r) | Self::ButtonReply(r) => Some(r),
            Self::Other { .. } => None,
        }
    }

    /// Reads `interactive` (`i`) of the body `body`.
    fn parse(
        body: &Fields<'_, '_>,
        i: Fields<'_, '_>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, Rejection> {
        // (type as documented, as Meta spells it, the reply's noun)
        const KINDS: [(&str, &str, &str); 2] = [
            ("listReply", "list_reply", "the row chosen"),
            ("buttonReply", "button_reply", "the button tapped"),
        ];
        let given = i.optional_str("type")?.filter(|k| !k.is_empty());
        let kind = match &given {
            Some(kind) => kind.clone(),
            None => {
                // No type: the reply object present says which.
                let present = KINDS
                    .iter()
                    .flat_map(|(camel, snake, _)| [camel, snake])
                    .find(|key| i.has(key));
                let Some(key) = present else {
                    return Err(i.missing("type", "the kind of reply (listReply or buttonReply)"));
                };
                let path = i.path("type");
                warnings.push(warning(
                    "missing_field",
                    &path,
                    format!(
                        "{path} is missing or empty: the reply is read as the {key} it carries."
                    ),
                ));
                (*key).to_owned()
            }
        };
        let Some(&(camel, snake, noun)) = KINDS.iter().find(|(c, s, _)| kind == *c || kind == *s)
        else {
            let path = i.path("type");
            warnings.push(warning(
                "unknown_interactive_type",
                &path,
                format!(
                    "{path} is \"{kind}\", which InnoPaaS does not document (listReply, buttonReply); {} is kept as sent, not interpreted.",
                    body.path("interactive")
                ),
            ));
            let value = body.json("interactive")?.unwrap_or(Value::Null);
            return Ok(Self::Other { kind, value });
        };
        if given.as_deref() == Some(snake) {
            let path = i.path("type");
            flag_snake_case(format!("{path} is \"{snake}\","), &path, camel, warnings);
        }
        let key = if i.has(camel) || !i.has(snake) {
            camel
        } else {
            let path = i.path(snake);
            flag_snake_case(format!("{path} is named in"), &path, camel, warnings);
            snake
        };
        let (object, path) = i
            .optional_object(key)?
            .ok_or_else(|| i.missing(key, noun))?;
        let reply = Reply::parse(Fields::new(&object, &path), noun, warnings)?;
        i.flag_unknown(&["type", key], warnings)?;
        Ok(if camel == "listReply" {
            Self::ListReply(reply)
        } else {
            Self::ButtonReply(reply)
        })
    }
}

/// Flags Meta's snake_case spelling at `path` where InnoPaaS documents camelCase: `what`
/// says what was spelled so (`… is "list_reply",`, `… is named in`).
fn flag_snake_case(what: String, path: &str, camel: &str, warnings: &mut Vec<Warning>) {
    warnings.push(warning(
        "snake_case_interactive",
        path,
        format!(
            "{what} Meta's snake_case spelling; InnoPaaS documents {camel}, and it is read as {camel}."
        ),
    ));
}

/// A `listReply` or `buttonReply`: the row or button the customer chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    id: String,
    title: Option<String>,
    description: Option<String>,
}

impl Reply {
    /// `id`: the id the business gave the row or button when sending.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// `title`: its text as the customer saw it.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }
    /// `description`: a list row's description, when it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    fn parse(
        r: Fields<'_, '_>,
        noun: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, Rejection> {
        let id = r.required_id("id", &format!("the id of {noun}"))?;
        let title = expected_str(&r, "title", &format!("the title of {noun}"), warnings)?;
        let description = r.optional_str("description")?.filter(|d| !d.is_empty());
        r.flag_unknown(REPLY_FIELDS, warnings)?;
        Ok(Self {
            id,
            title,
            description,
        })
    }
}

/// `body.reaction`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    message_id: String,
    emoji: Option<String>,
}

impl Reaction {
    /// `messageId`: the wamid of the message reacted to.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }
    /// `emoji`; `None` when the customer removed their reaction (an empty or absent emoji).
    pub fn emoji(&self) -> Option<&str> {
        self.emoji.as_deref()
    }

    fn parse(r: Fields<'_, '_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let message_id = r.required_str(
            "messageId",
            "the WhatsApp message id of the message reacted to",
        )?;
        let emoji = r.optional_str("emoji")?.filter(|e| !e.is_empty());
        r.flag_unknown(REACTION_FIELDS, warnings)?;
        Ok(Self { message_id, emoji })
    }
}

/// One of `body.errors` of an `unknown` message: why WhatsApp did not pass it on.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageError {
    code: Option<String>,
    title: Option<String>,
    details: Option<String>,
}

impl MessageError {
    /// `code`: Meta's error code (e.g. `131051`), digits kept as sent.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
    /// `title`, e.g. `Unsupported message type`.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }
    /// `details`.
    pub fn details(&self) -> Option<&str> {
        self.details.as_deref()
    }

    fn parse(item: &Item<'_>, warnings: &mut Vec<Warning>) -> Result<Self, Rejection> {
        let e = Fields::new(&item.object, &item.path);
        let error = Self {
            code: e.optional_id("code")?,
            title: e.optional_str("title")?,
            details: e.optional_str("details")?,
        };
        e.flag_unknown(ERROR_FIELDS, warnings)?;
        Ok(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_one_short_line() {
        assert_eq!(shorten("a\n b\tc", 10), "a b c");
        let long = "é".repeat(200);
        let short = shorten(&long, SUMMARY_CHARS);
        assert_eq!(short.chars().count(), SUMMARY_CHARS);
        assert!(short.ends_with('…'));
        assert_eq!(shorten(&"x".repeat(120), SUMMARY_CHARS), "x".repeat(120));
    }
}
