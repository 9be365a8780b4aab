//! The send list: what the customer's sending system sent, as InnoPaaS's send API
//! answered it. Each send names the message id that every later status report of that
//! message carries as `body.id`, so a send and its reports meet by it, in whichever
//! order they come.
//!
//! A list comes as a JSON array of objects or as CSV with a header row, both with the
//! fields `id`, `phone`, `uid`, `sentAt` and optionally `template`. It is read whole
//! before anything is stored: one bad row refuses the list, naming every bad row and
//! field (up to [`MAX_PROBLEMS`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// Most problems one refusal names (the count says how many there were).
pub const MAX_PROBLEMS: usize = 20;

/// Longest id, phone, uid or template name taken, in characters (JSON Schema's
/// `maxLength`; longer is a mistake, not data).
const MAX_FIELD: usize = 256;

/// One message as the sender sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    /// InnoPaaS's message id (`body.id` of its status reports).
    pub id: String,
    /// The number it was sent to.
    pub phone: String,
    /// The batch, if it had one.
    pub uid: Option<String>,
    #[serde(with = "crate::event::time_format")]
    pub sent_at: DateTime<Utc>,
    pub template: Option<String>,
}

/// A bad row: which (counted from 1, not counting a CSV's header), which field, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub row: usize,
    pub field: String,
    pub message: String,
}

/// Why a list was refused: nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// What is wrong with the list as a whole, or with its rows.
    pub message: String,
    /// The first [`MAX_PROBLEMS`] bad rows.
    pub problems: Vec<Problem>,
    /// How many rows were bad.
    pub bad_rows: usize,
}

impl Refusal {
    fn whole(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            problems: Vec::new(),
            bad_rows: 0,
        }
    }

    /// The first problem's field, for an error's `field`.
    pub fn field(&self) -> Option<&str> {
        self.problems.first().map(|p| p.field.as_str())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for p in &self.problems {
            write!(f, "\n  row {}, {}: {}", p.row, p.field, p.message)?;
        }
        if self.bad_rows > self.problems.len() {
            write!(f, "\n  … and {} more", self.bad_rows - self.problems.len())?;
        }
        Ok(())
    }
}

/// How a list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    /// From a content type (`application/json`, `text/csv`), or from the first byte
    /// that is not white space (`[` is JSON).
    pub fn detect(content_type: Option<&str>, body: &[u8]) -> Self {
        let essence = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("text/csv") => Format::Csv,
            Some("application/json") => Format::Json,
            _ => match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => Format::Json,
                _ => Format::Csv,
            },
        }
    }
}

/// The fields of a row, as named in JSON and in a CSV header.
const FIELDS: [&str; 5] = ["id", "phone", "uid", "sentAt", "template"];

/// Reads a whole list; every row must be good. An id twice in one list is a problem,
/// unless the rows are the same (then it is one send).
pub fn parse(body: &[u8], format: Format) -> Result<Vec<Sent>, Refusal> {
    let rows = match format {
        Format::Json => json_rows(body)?,
        Format::Csv => csv_rows(body)?,
    };
    if rows.is_empty() {
        return Err(Refusal::whole("The list has no rows."));
    }
    let mut sends = Vec::with_capacity(rows.len());
    let mut problems = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (i, fields) in rows.into_iter().enumerate() {
        let row = i + 1;
        match send(&fields) {
            Ok(s) => match seen.get(&s.id) {
                Some(&at) if sends.get(at) != Some(&s) => problems.push(Problem {
                    row,
                    field: "id".into(),
                    message: format!(
                        "{:?} is also in row {} with other values; an id is one message",
                        s.id,
                        at + 1
                    ),
                }),
                Some(_) => sends.push(s),
                None => {
                    seen.insert(s.id.clone(), sends.len());
                    sends.push(s);
                }
            },
            Err((field, message)) => problems.push(Problem {
                row,
                field: field.into(),
                message,
            }),
        }
    }
    if problems.is_empty() {
        // A repeated identical row is one send.
        let mut once = std::collections::HashSet::new();
        sends.retain(|s| once.insert(s.id.clone()));
        return Ok(sends);
    }
    let bad_rows = problems.len();
    problems.truncate(MAX_PROBLEMS);
    Err(Refusal {
        message: format!("{bad_rows} row(s) of the list are not sends; nothing of it was stored"),
        problems,
        bad_rows,
    })
}

/// A row's fields by name (absent: not given).
type Fields = Vec<(String, Option<String>)>;

fn json_rows(body: &[u8]) -> Result<Vec<Fields>, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::whole(format!("The list is not JSON: {e}.")))?;
    let Value::Array(items) = value else {
        return Err(Refusal::whole(
            "The list must be a JSON array of objects with id, phone, uid, sentAt and optionally template.",
        ));
    };
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let mut fields: Fields = Vec::new();
        match item {
            Value::Object(map) => {
                for (k, v) in map {
                    let text = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        // A phone or an id written as a number is still one.
                        Value::Number(n) => Some(n.to_string()),
                        other => Some(format!("\u{0}{other}")),
                    };
                    fields.push((k, text));
                }
            }
            other => fields.push(("\u{0}".into(), Some(other.to_string()))),
        }
        rows.push(fields);
    }
    Ok(rows)
}

fn csv_rows(body: &[u8]) -> Result<Vec<Fields>, Refusal> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Refusal::whole(format!("The list's header row cannot be read: {e}.")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect();
    for needed in ["id", "phone", "sentAt"] {
        if !header.iter().any(|h| h == needed) {
            return Err(Refusal::whole(format!(
                "The CSV header has no {needed} column; it needs id, phone, uid, sentAt and optionally template (it has {}).",
                header.join(", ")
            )));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let row = e.position().map_or(0, |p| p.record() as usize);
            Refusal {
                message: "The CSV cannot be read; nothing of it was stored".into(),
                problems: vec![Problem {
                    row,
                    field: "*".into(),
                    message: e.to_string(),
                }],
                bad_rows: 1,
            }
        })?;
        rows.push(
            header
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.clone(), (!v.is_empty()).then(|| v.to_owned())))
                .collect(),
        );
    }
    Ok(rows)
}

/// One row as a send, or its first problem: the field and why.
fn send(fields: &Fields) -> Result<Sent, (&'static str, String)> {
    if fields.iter().any(|(k, _)| k == "\u{0}") {
        return Err(("*", "a row must be an object".into()));
    }
    if let Some((k, _)) = fields.iter().find(|(k, _)| !FIELDS.contains(&k.as_str())) {
        return Err((
            "*",
            format!(
                "unknown field {k:?}; a row has id, phone, uid, sentAt and optionally template"
            ),
        ));
    }
    let get = |name: &'static str| -> Result<Option<String>, (&'static str, String)> {
        match fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
        {
            None => Ok(None),
            Some(v) if v.starts_with('\u{0}') => {
                Err((name, format!("must be a string, not {}", &v[1..])))
            }
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) if v.chars().count() > MAX_FIELD => {
                Err((name, format!("is longer than {MAX_FIELD} characters")))
            }
            Some(v) if v.chars().any(char::is_control) => {
                Err((name, "holds a control character".into()))
            }
            Some(v) => Ok(Some(v.trim().to_owned())),
        }
    };
    let required = |name: &'static str| -> Result<String, (&'static str, String)> {
        get(name)?.ok_or((name, "is missing or empty".into()))
    };
    let id = required("id")?;
    let phone = required("phone")?;
    let uid = get("uid")?;
    let sent_at = required("sentAt")?;
    let sent_at = DateTime::parse_from_rfc3339(&sent_at)
        .map_err(|_| {
            (
                "sentAt",
                format!("{sent_at:?} is not an RFC 3339 time such as 2026-01-31T09:30:00Z"),
            )
        })?
        .to_utc();
    Ok(Sent {
        id,
        phone,
        uid,
        sent_at,
        template: get("template")?,
    })
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    /// Rows in the list.
    pub rows: usize,
    /// Sends stored now.
    pub new: usize,
    /// Sends already known (by id): left as they were.
    pub known: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_read_the_same_sends() {
        let json = br#"[{"id":"m1","phone":"8613800000001","uid":"b1","sentAt":"2026-03-01T08:00:00+08:00","template":"promo"},
                        {"id":"m2","phone":8613800000002,"uid":null,"sentAt":"2026-03-01T00:00:01Z"}]"#;
        let csv = "\u{feff}id,phone,uid,sentAt,template\nm1,8613800000001,b1,2026-03-01T08:00:00+08:00,promo\nm2, 8613800000002,,2026-03-01T00:00:01Z,\n";
        let a = parse(json, Format::detect(None, json)).unwrap();
        let b = parse(
            csv.as_bytes(),
            Format::detect(Some("text/csv"), csv.as_bytes()),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].sent_at.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(a[1].uid, None);
        assert_eq!(a[0].template.as_deref(), Some("promo"));
    }

    #[test]
    fn every_bad_row_is_named_and_nothing_is_taken() {
        let csv = "id,phone,uid,sentAt\nm1,1,b,2026-03-01T00:00:00Z\n,1,b,2026-03-01T00:00:00Z\nm3,1,b,yesterday\nm1,2,b,2026-03-01T00:00:00Z\n";
        let r = parse(csv.as_bytes(), Format::Csv).unwrap_err();
        assert_eq!(r.bad_rows, 3);
        let named: Vec<(usize, &str)> = r
            .problems
            .iter()
            .map(|p| (p.row, p.field.as_str()))
            .collect();
        assert_eq!(named, [(2, "id"), (3, "sentAt"), (4, "id")]);
        assert!(r.to_string().contains("row 3, sentAt"), "{r}");
    }

    #[test]
    fn whole_list_problems_say_what_is_expected() {
        let no_column = parse(b"id,phone\nm1,1\n", Format::Csv).unwrap_err();
        assert!(
            no_column.message.contains("no sentAt column"),
            "{no_column}"
        );
        let not_array = parse(br#"{"id":"m1"}"#, Format::Json).unwrap_err();
        assert!(not_array.message.contains("JSON array"));
        let unknown = parse(
            br#"[{"id":"m1","phone":"1","sentAt":"2026-03-01T00:00:00Z","sent_at":"x"}]"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(unknown.problems[0].message.contains("sent_at"));
        assert!(parse(b"[]", Format::Json).is_err());
    }

    #[test]
    fn a_repeated_identical_row_is_one_send() {
        let csv = "id,phone,uid,sentAt\nm1,1,b,2026-03-01T00:00:00Z\nm1,1,b,2026-03-01T00:00:00Z\n";
        assert_eq!(parse(csv.as_bytes(), Format::Csv).unwrap().len(), 1);
    }
}
