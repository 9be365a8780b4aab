//! Wire bytes → [`Envelope`]: parse, don't validate.
//!
//! [`parse`] either returns a typed envelope with the warnings for what was merely
//! unexpected, or a [`Rejection`] for what cannot be interpreted. Rejections carry a
//! stable code, the field path and a sentence for the person who reads the HTTP 400.
//!
//! What every event shares is read here: the JSON (UTF-8, nesting depth, lone surrogates),
//! the envelope (`id`, `type`, `eventTime`, `body` present and an object) and the tools a
//! module reads its body with ([`Body`], [`Fields`]). The body itself goes to the module of
//! its event type, through `Event::parse` (`mod.rs`).

use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::Event;
use super::types::{Envelope, Timestamp, Warning};

/// Why a payload cannot be interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The bytes are not JSON (or not UTF-8).
    InvalidJson,
    /// The JSON is valid but is not an object.
    NotAnObject,
    /// A required field is absent or `null`.
    MissingField,
    /// A required field is present but empty.
    EmptyField,
    /// A field has the wrong JSON type.
    InvalidField,
    /// A timestamp field is present but is not a timestamp.
    InvalidTimestamp,
    /// A `failed` status without `errorData` or without its `errorCode`.
    MissingErrorData,
}

impl RejectCode {
    /// Every code, for the documentation's tests.
    pub const ALL: [RejectCode; 7] = [
        Self::InvalidJson,
        Self::NotAnObject,
        Self::MissingField,
        Self::EmptyField,
        Self::InvalidField,
        Self::InvalidTimestamp,
        Self::MissingErrorData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingField => "missing_field",
            Self::EmptyField => "empty_field",
            Self::InvalidField => "invalid_field",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::MissingErrorData => "missing_error_data",
        }
    }
}

/// A payload that cannot be interpreted: code, field path, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}", code = .code.as_str())]
pub struct Rejection {
    pub code: RejectCode,
    /// Dotted path of the offending field (`body.errorData`), when one is to blame.
    pub field: Option<String>,
    pub message: String,
}

impl Rejection {
    pub(super) fn new(code: RejectCode, field: Option<String>, message: String) -> Self {
        Self {
            code,
            field,
            message,
        }
    }
}

/// An event that passed validation, with what was unexpected in it.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub envelope: Envelope,
    pub warnings: Vec<Warning>,
}

const ENVELOPE_FIELDS: &[&str] = &["id", "type", "eventTime", "body"];

/// Parses and validates one request body.
///
/// The JSON is read once into borrowed pieces (no `Value` tree is built); the envelope
/// keeps its exact text, so nothing that came with it can be lost.
pub fn parse(bytes: &[u8]) -> Result<Accepted, Rejection> {
    // JSON text is UTF-8. Checked once here, so serde_json reads it as text and does not
    // check each string again.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            RejectCode::InvalidJson,
            None,
            format!(
                "The request body is not valid JSON: it is not UTF-8 ({e}); send the event as a JSON object."
            ),
        )
    })?;
    let top: RawObject<'_> = match serde_json::from_str(text) {
        Ok(top) => top,
        // Valid JSON of another type: serde_json says so from the first byte, so make sure
        // the rest is JSON too (`IgnoredAny` skips without recursing).
        Err(e) if e.is_data() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
            let other = kind_of(first);
            return Err(Rejection::new(
                RejectCode::NotAnObject,
                None,
                format!(
                    "The request body is a JSON {other}, but an InnoPaaS event is a JSON object with id, type, eventTime and body."
                ),
            ));
        }
        Err(e) => {
            return Err(Rejection::new(
                RejectCode::InvalidJson,
                None,
                format!(
                    "The request body is not valid JSON ({e}); send the event as a JSON object."
                ),
            ));
        }
    };
    parse_object(&top, text)
}

fn parse_object(top: &RawObject<'_>, text: &str) -> Result<Accepted, Rejection> {
    let mut warnings = Vec::new();
    let root = Fields::new(top, "");
    let id = root.required_id("id", "the envelope id")?;
    let event_type = root.required_str("type", "the event type")?;
    let event_time = root.optional_time("eventTime")?;
    if event_time.is_none() {
        warnings.push(warning(
            "missing_event_time",
            "eventTime",
            "The event has no eventTime; the time it was received is used instead.".into(),
        ));
    }
    let body = match root.get("body") {
        None => return Err(root.missing("body", "the event body")),
        Some(b) if kind(b) != "object" => return Err(root.wrong_type("body", "a JSON object", b)),
        Some(b) => b,
    };
    let body = Body {
        raw: body,
        object: RawObject::parse(body, "body")?,
    };
    if body.object.0.is_empty() {
        return Err(root.empty("body", "the event body"));
    }
    root.flag_unknown(ENVELOPE_FIELDS, &mut warnings)?;

    let event = Event::parse(&event_type, &body, &mut warnings)?;
    cap_warnings(&mut warnings);
    Ok(Accepted {
        envelope: Envelope {
            id,
            event_type,
            event_time,
            event,
            raw: text.into(),
        },
        warnings,
    })
}

/// Most warnings kept with an event: they are stored with it and written in every sink
/// line, and a body of thousands of undocumented fields would otherwise bring as many.
pub const MAX_WARNINGS: usize = 20;

/// Keeps the first [`MAX_WARNINGS`] and, after them, one saying how many were left out.
fn cap_warnings(warnings: &mut Vec<Warning>) {
    if warnings.len() > MAX_WARNINGS {
        let left_out = warnings.len() - MAX_WARNINGS;
        warnings.truncate(MAX_WARNINGS);
        warnings.push(warning(
            "too_many_warnings",
            "",
            format!("{left_out} more warnings were left out (at most {MAX_WARNINGS} are kept)."),
        ));
    }
}

/// A warning about the field at `field` (a dotted path).
pub(super) fn warning(code: &'static str, field: &str, message: String) -> Warning {
    Warning {
        code,
        field: field.to_owned(),
        message,
    }
}

/// Deepest nesting accepted; far below serde_json's own limit, far above any real event.
const MAX_DEPTH: usize = 64;

/// How deeply arrays and objects nest in JSON text (brackets inside strings do not count).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Refuses a value nesting arrays or objects deeper than [`MAX_DEPTH`]. Only undocumented
/// fields and the bodies of other event types can; checking them alone keeps the common
/// path to a single pass over the request.
fn check_depth(value: &RawValue, path: &str) -> Result<(), Rejection> {
    let nested = matches!(kind(value), "object" | "array");
    if nested && nesting_depth(value.get().as_bytes()) > MAX_DEPTH {
        return Err(Rejection::new(
            RejectCode::InvalidField,
            Some(path.to_owned()),
            format!(
                "{path} nests arrays or objects more than {MAX_DEPTH} levels deep; an InnoPaaS event never does."
            ),
        ));
    }
    Ok(())
}

/// The JSON type of a raw value, from its first byte.
fn kind(v: &RawValue) -> &'static str {
    kind_of(v.get().as_bytes().first().copied())
}

fn kind_of(first: Option<u8>) -> &'static str {
    match first {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

/// The text of a raw JSON string, or `None` if it holds an escaped half of a UTF-16
/// surrogate pair without the other half (`"\ud800"`): serde_json lets that through when
/// it reads the object around it, but cannot decode it. A string without escapes is the
/// text between its quotes as it came (serde_json refused control characters when it read
/// the object, and [`parse`] checked UTF-8); only one with escapes is decoded again.
fn string_text(v: &RawValue) -> Option<String> {
    let raw = v.get();
    match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(inner.to_owned()),
        _ => serde_json::from_str(raw).ok(),
    }
}

/// The text of an id-like field: a string, or an integer written with every digit.
pub(crate) fn id_text(v: &RawValue) -> Option<String> {
    match kind(v) {
        "string" => string_text(v),
        "number" => {
            let s = v.get();
            let digits = s.strip_prefix('-').unwrap_or(s);
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| s.to_owned())
        }
        _ => None,
    }
}

/// What a rejected string or field name holds, and what to send instead.
const LONE_SURROGATE: &str = "an escaped half of a UTF-16 surrogate pair (\\ud800 to \\udfff) without the other half, so it is not text; send the character itself or both halves.";

/// A JSON object as its members in order, each value still raw (borrowed, unparsed).
pub(super) struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawObject<'a> {
    /// The members of `raw`, a JSON object (see [`kind`]) found at `path`. It was read
    /// with the object around it, which did not decode its names: one holding an escaped
    /// half of a UTF-16 surrogate pair without the other half (`"\ud800"`) fails here.
    fn parse(raw: &'a RawValue, path: &str) -> Result<Self, Rejection> {
        serde_json::from_str(raw.get()).map_err(|_| {
            Rejection::new(
                RejectCode::InvalidField,
                Some(path.to_owned()),
                format!("{path} has a field name holding {LONE_SURROGATE}"),
            )
        })
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    members.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(Members)
    }
}

/// The envelope's body as an event module gets it: a JSON object with at least one field,
/// every field name text, the values still raw. Read once by [`parse`]; a module takes its
/// fields ([`Body::fields`]) or keeps it whole ([`Body::value`]).
pub(super) struct Body<'a> {
    raw: &'a RawValue,
    object: RawObject<'a>,
}

impl<'a> Body<'a> {
    /// Its fields, named `body.…` in warnings and rejections.
    pub(super) fn fields(&self) -> Fields<'_, 'a> {
        Fields::new(&self.object, "body")
    }

    /// The whole body as a JSON value (fields in order, numbers with every digit); refused
    /// if it nests deeper than [`MAX_DEPTH`].
    pub(super) fn value(&self) -> Result<Value, Rejection> {
        json_value(self.raw, "body")
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

/// One JSON object being read, with the path that names its fields in messages.
pub(super) struct Fields<'o, 'a> {
    object: &'o RawObject<'a>,
    prefix: String,
}

impl<'o, 'a> Fields<'o, 'a> {
    pub(super) fn new(object: &'o RawObject<'a>, prefix: &str) -> Self {
        Self {
            object,
            prefix: prefix.to_owned(),
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// The field's raw value; `null` counts as absent. A repeated key: the last one wins.
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.object
            .0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .filter(|v| kind(v) != "null")
    }

    /// A rejection of the field `key`, its sentence written around the field's path.
    pub(super) fn reject(
        &self,
        code: RejectCode,
        key: &str,
        sentence: impl FnOnce(&str) -> String,
    ) -> Rejection {
        let path = self.path(key);
        let message = sentence(&path);
        Rejection::new(code, Some(path), message)
    }

    pub(super) fn missing(&self, key: &str, what: &str) -> Rejection {
        self.reject(RejectCode::MissingField, key, |path| {
            format!("{path} is missing: the event must carry {what}.")
        })
    }

    pub(super) fn empty(&self, key: &str, what: &str) -> Rejection {
        self.reject(RejectCode::EmptyField, key, |path| {
            format!("{path} is empty: the event must carry {what}.")
        })
    }

    /// Only whitespace: as good as empty, and a message or batch nobody could find.
    fn blank(&self, key: &str, what: &str) -> Rejection {
        self.reject(RejectCode::EmptyField, key, |path| {
            format!("{path} is only whitespace: the event must carry {what}.")
        })
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &RawValue) -> Rejection {
        self.reject(RejectCode::InvalidField, key, |path| {
            format!("{path} must be {expected}, but it is a JSON {}.", kind(got))
        })
    }

    fn undecodable(&self, key: &str) -> Rejection {
        self.reject(RejectCode::InvalidField, key, |path| {
            format!("{path} holds {LONE_SURROGATE}")
        })
    }

    pub(super) fn required_str(&self, key: &str, what: &str) -> Result<String, Rejection> {
        match self.optional_str(key)? {
            None => Err(self.missing(key, what)),
            Some(s) if s.is_empty() => Err(self.empty(key, what)),
            Some(s) if s.trim().is_empty() => Err(self.blank(key, what)),
            Some(s) => Ok(s),
        }
    }

    pub(super) fn optional_str(&self, key: &str) -> Result<Option<String>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if kind(v) == "string" => match string_text(v) {
                Some(text) => Ok(Some(text)),
                None => Err(self.undecodable(key)),
            },
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    pub(super) fn required_id(&self, key: &str, what: &str) -> Result<String, Rejection> {
        match self.optional_id(key)? {
            None => Err(self.missing(key, what)),
            Some(s) if s.is_empty() => Err(self.empty(key, what)),
            Some(s) if s.trim().is_empty() => Err(self.blank(key, what)),
            Some(s) => Ok(s),
        }
    }

    pub(super) fn optional_id(&self, key: &str) -> Result<Option<String>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match id_text(v) {
                Some(text) => Ok(Some(text)),
                None if kind(v) == "string" => Err(self.undecodable(key)),
                None => Err(self.wrong_type(key, "a string or an integer", v)),
            },
        }
    }

    /// A documented string field the event can be read without: absent, `null` or empty is
    /// `None` and flagged (`missing_field`); of the wrong JSON type, refused.
    pub(super) fn expected_str(
        &self,
        key: &str,
        what: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<String>, Rejection> {
        Ok(self.flag_missing(key, what, self.optional_str(key)?, warnings))
    }

    /// [`Fields::expected_str`] for an id-like field (a string, or an integer kept with
    /// every digit).
    pub(super) fn expected_id(
        &self,
        key: &str,
        what: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<String>, Rejection> {
        Ok(self.flag_missing(key, what, self.optional_id(key)?, warnings))
    }

    fn flag_missing(
        &self,
        key: &str,
        what: &str,
        value: Option<String>,
        warnings: &mut Vec<Warning>,
    ) -> Option<String> {
        let value = value.filter(|v| !v.is_empty());
        if value.is_none() {
            let path = self.path(key);
            warnings.push(warning(
                "missing_field",
                &path,
                format!(
                    "{path} is missing or empty: the documentation lists {what} for this event, which is kept without it."
                ),
            ));
        }
        value
    }

    pub(super) fn optional_object(
        &self,
        key: &str,
    ) -> Result<Option<(RawObject<'a>, String)>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if kind(v) == "object" => {
                let path = self.path(key);
                Ok(Some((RawObject::parse(v, &path)?, path)))
            }
            Some(other) => Err(self.wrong_type(key, "a JSON object", other)),
        }
    }

    pub(super) fn optional_time(&self, key: &str) -> Result<Option<Timestamp>, Rejection> {
        let Some(s) = self.optional_str(key)? else {
            return Ok(None);
        };
        Timestamp::parse(&s).map(Some).ok_or_else(|| {
            self.reject(RejectCode::InvalidTimestamp, key, |path| {
                format!(
                    "{path} is \"{s}\", which is not a time: use RFC 3339 (2023-02-22T12:00:00.000Z) or YYYY-MM-DD HH:MM:SS (UTC)."
                )
            })
        })
    }

    /// Flags undocumented fields; refuses one nesting deeper than [`MAX_DEPTH`].
    pub(super) fn flag_unknown(
        &self,
        known: &[&str],
        warnings: &mut Vec<Warning>,
    ) -> Result<(), Rejection> {
        let unknown = self
            .object
            .0
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_ref()));
        for (key, value) in unknown {
            let path = self.path(key);
            check_depth(value, &path)?;
            warnings.push(Warning {
                code: "unknown_field",
                message: format!(
                    "{path} is not a documented field; it is kept and passed on as sent."
                ),
                field: path,
            });
        }
        Ok(())
    }
}

/// One object of a list read with [`Fields::optional_objects`]: its members, the path that
/// names its fields (`body.contact[0]`), and its JSON text.
pub(super) struct Item<'a> {
    pub(super) object: RawObject<'a>,
    pub(super) path: String,
    raw: &'a RawValue,
}

impl Item<'_> {
    /// The object as a JSON value (fields in order, numbers with every digit); refused if
    /// it nests deeper than [`MAX_DEPTH`].
    pub(super) fn value(&self) -> Result<Value, Rejection> {
        json_value(self.raw, &self.path)
    }
}

/// A raw value as a JSON value, refused if it nests deeper than [`MAX_DEPTH`].
fn json_value(raw: &RawValue, path: &str) -> Result<Value, Rejection> {
    check_depth(raw, path)?;
    serde_json::from_str(raw.get()).map_err(|e| {
        Rejection::new(
            RejectCode::InvalidJson,
            Some(path.to_owned()),
            format!("{path} cannot be read as JSON ({e})."),
        )
    })
}

/// Readers for the shapes only some event types have: numbers, lists of objects, values
/// kept whole.
impl<'o, 'a> Fields<'o, 'a> {
    /// Whether the field is present (`null` counts as absent).
    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A JSON number as `f64`; refused if it is another JSON type or too large for one.
    pub(super) fn optional_number(&self, key: &str) -> Result<Option<f64>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if kind(v) == "number" => match v.get().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(n)),
                _ => Err(self.reject(RejectCode::InvalidField, key, |path| {
                    format!("{path} is {}, which is too large for a number.", v.get())
                })),
            },
            Some(other) => Err(self.wrong_type(key, "a number", other)),
        }
    }

    /// A list of objects: a JSON array of objects, or a single object (as some senders
    /// write a list of one). The items, and whether it was a single object; refused if
    /// it is another JSON type or an item is not an object.
    pub(super) fn optional_objects(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<Item<'a>>, bool)>, Rejection> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let path = self.path(key);
        match kind(v) {
            "object" => {
                let object = RawObject::parse(v, &path)?;
                Ok(Some((
                    vec![Item {
                        object,
                        path,
                        raw: v,
                    }],
                    true,
                )))
            }
            "array" => {
                let raws: Vec<&'a RawValue> = serde_json::from_str(v.get()).map_err(|e| {
                    Rejection::new(
                        RejectCode::InvalidJson,
                        Some(path.clone()),
                        format!("{path} cannot be read as JSON ({e})."),
                    )
                })?;
                let mut items = Vec::with_capacity(raws.len());
                for (i, raw) in raws.into_iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    if kind(raw) != "object" {
                        return Err(Rejection::new(
                            RejectCode::InvalidField,
                            Some(path.clone()),
                            format!(
                                "{path} must be a JSON object, but it is a JSON {}.",
                                kind(raw)
                            ),
                        ));
                    }
                    let object = RawObject::parse(raw, &path)?;
                    items.push(Item { object, path, raw });
                }
                Ok(Some((items, false)))
            }
            _ => Err(self.wrong_type(key, "a JSON array of objects (or one object)", v)),
        }
    }

    /// The field as a JSON value, whatever its type, kept whole (not interpreted); refused
    /// if it nests deeper than [`MAX_DEPTH`].
    pub(super) fn json(&self, key: &str) -> Result<Option<Value>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => json_value(v, &self.path(key)).map(Some),
        }
    }
}
