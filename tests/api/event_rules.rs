//! Every reject and warn rule of the event model, one row each, with exact code and field.

use innohook::event::{Event, RejectCode, Status, parse};
use serde_json::{Value, json};

use crate::helpers::{remove, seed, set};

enum Expect {
    /// Rejected with this code and field path.
    Reject(RejectCode, Option<&'static str>),
    /// Accepted, and flagged with this warning code on this field.
    Warn(&'static str, &'static str),
    /// Accepted, and this check holds.
    Accept(fn(&innohook::event::Envelope)),
}
use Expect::*;

fn bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use RejectCode::*;
    let d = || seed("delivered");
    let r = || seed("read");
    let f = || seed("failed");
    let mut cases = vec![
        ("not json", b"{\"id\": ".to_vec(), Reject(InvalidJson, None)),
        ("empty request", b"".to_vec(), Reject(InvalidJson, None)),
        ("invalid utf-8", b"{\"id\":\"\xff\xfe\"}".to_vec(), Reject(InvalidJson, None)),
        ("invalid utf-8 in an array", b"[\"\xff\"]".to_vec(), Reject(InvalidJson, None)),
        ("trailing garbage", b"{} x".to_vec(), Reject(InvalidJson, None)),
        ("array", b"[1,2]".to_vec(), Reject(NotAnObject, None)),
        ("string", b"\"hello\"".to_vec(), Reject(NotAnObject, None)),
        ("null", b"null".to_vec(), Reject(NotAnObject, None)),
        ("no id", bytes(remove(r(), "id")), Reject(MissingField, Some("id"))),
        ("null id", bytes(set(r(), "id", Value::Null)), Reject(MissingField, Some("id"))),
        ("empty id", bytes(set(r(), "id", json!(""))), Reject(EmptyField, Some("id"))),
        ("object id", bytes(set(r(), "id", json!({}))), Reject(InvalidField, Some("id"))),
        ("float id", bytes(set(r(), "id", json!(1.5))), Reject(InvalidField, Some("id"))),
        ("bool id", bytes(set(r(), "id", json!(true))), Reject(InvalidField, Some("id"))),
        ("no type", bytes(remove(r(), "type")), Reject(MissingField, Some("type"))),
        ("empty type", bytes(set(r(), "type", json!(""))), Reject(EmptyField, Some("type"))),
        ("numeric type", bytes(set(r(), "type", json!(7))), Reject(InvalidField, Some("type"))),
        ("no body", bytes(remove(r(), "body")), Reject(MissingField, Some("body"))),
        ("empty body", bytes(set(r(), "body", json!({}))), Reject(EmptyField, Some("body"))),
        ("string body", bytes(set(r(), "body", json!("{}"))), Reject(InvalidField, Some("body"))),
        ("array body", bytes(set(r(), "body", json!([]))), Reject(InvalidField, Some("body"))),
        ("bad eventTime", bytes(set(r(), "eventTime", json!("yesterday"))), Reject(InvalidTimestamp, Some("eventTime"))),
        ("impossible date", bytes(set(r(), "eventTime", json!("2023-02-30 12:00:00"))), Reject(InvalidTimestamp, Some("eventTime"))),
        ("numeric eventTime", bytes(set(r(), "eventTime", json!(1677067200))), Reject(InvalidField, Some("eventTime"))),
        ("bad expireAt", bytes(set(d(), "body.conversation.expireAt", json!("soon"))), Reject(InvalidTimestamp, Some("body.conversation.expireAt"))),
        ("string conversation", bytes(set(d(), "body.conversation", json!("abc"))), Reject(InvalidField, Some("body.conversation"))),
        ("array errorData", bytes(set(f(), "body.errorData", json!(["131014"]))), Reject(InvalidField, Some("body.errorData"))),
        ("numeric status", bytes(set(r(), "body.status", json!(2))), Reject(InvalidField, Some("body.status"))),
        ("numeric wamid", bytes(set(r(), "body.wamid", json!(12))), Reject(InvalidField, Some("body.wamid"))),
        ("array uid", bytes(set(r(), "body.uid", json!(["1"]))), Reject(InvalidField, Some("body.uid"))),
        ("blank body.id", bytes(set(r(), "body.id", json!(" "))), Reject(EmptyField, Some("body.id"))),
        ("tab body.id", bytes(set(r(), "body.id", json!("\t"))), Reject(EmptyField, Some("body.id"))),
        ("blank status", bytes(set(r(), "body.status", json!("  "))), Reject(EmptyField, Some("body.status"))),
        ("blank uid", bytes(set(r(), "body.uid", json!(" \t"))), Warn("blank_field", "body.uid")),
        ("blank uid is no batch", bytes(set(r(), "body.uid", json!(" "))), Accept(|e| assert_eq!(e.message_status().unwrap().uid(), None))),
        ("bool errorCode", bytes(set(f(), "body.errorData.errorCode", json!(false))), Reject(InvalidField, Some("body.errorData.errorCode"))),
        ("numeric errorMessage", bytes(set(f(), "body.errorData.errorMessage", json!(404))), Reject(InvalidField, Some("body.errorData.errorMessage"))),
        ("numeric initiateType", bytes(set(d(), "body.conversation.initiateType", json!(1))), Reject(InvalidField, Some("body.conversation.initiateType"))),
        ("failed without errorData", bytes(remove(f(), "body.errorData")), Reject(MissingErrorData, Some("body.errorData"))),
        ("failed with null errorData", bytes(set(f(), "body.errorData", Value::Null)), Reject(MissingErrorData, Some("body.errorData"))),
        ("failed with empty errorCode", bytes(set(f(), "body.errorData.errorCode", json!(""))), Reject(MissingErrorData, Some("body.errorData.errorCode"))),
        ("failed with empty errorData", bytes(set(f(), "body.errorData", json!({}))), Reject(MissingErrorData, Some("body.errorData.errorCode"))),
        ("unknown status", bytes(set(r(), "body.status", json!("sent"))), Warn("unknown_status", "body.status")),
        ("unknown initiateType", bytes(set(d(), "body.conversation.initiateType", json!("paid"))), Warn("unknown_initiate_type", "body.conversation.initiateType")),
        ("conversation without expireAt", bytes(remove(d(), "body.conversation.expireAt")), Warn("incomplete_conversation", "body.conversation.expireAt")),
        ("delivered without conversation", bytes(remove(d(), "body.conversation")), Warn("missing_conversation", "body.conversation")),
        ("errorData on delivered", bytes(set(d(), "body.errorData", json!({"errorCode": "1", "errorMessage": "x"}))), Warn("unexpected_error_data", "body.errorData")),
        ("errorData on read", bytes(set(r(), "body.errorData", json!({"errorCode": "1"}))), Warn("unexpected_error_data", "body.errorData")),
        ("conversation on read", bytes(set(r(), "body.conversation", json!({"id": "c", "initiateType": "business_initiated", "expireAt": "2023-02-22 12:00:00"}))), Warn("unexpected_conversation", "body.conversation")),
        ("conversation on failed", bytes(set(f(), "body.conversation", json!({"id": "c"}))), Warn("unexpected_conversation", "body.conversation")),
        ("new envelope field", bytes(set(r(), "traceId", json!("t-1"))), Warn("unknown_field", "traceId")),
        ("new body field", bytes(d()), Warn("unknown_field", "body.currency")),
        ("new errorData field", bytes(set(f(), "body.errorData.errorDetail", json!("x"))), Warn("unknown_field", "body.errorData.errorDetail")),
        ("no eventTime", bytes(remove(r(), "eventTime")), Warn("missing_event_time", "eventTime")),
        ("failed without errorMessage", bytes(remove(f(), "body.errorData.errorMessage")), Warn("missing_error_message", "body.errorData.errorMessage")),
        ("integer message id keeps every digit", br#"{"id":"e1","type":"whatsapp_message_status_updated","body":{"id":356139161272397824,"accountName":"a","wabaId":1,"status":"read","wamid":"w","sendPhone":65123101212312}}"#.to_vec(),
            Accept(|e| {
                let s = e.message_status().unwrap();
                assert_eq!(s.message_id(), "356139161272397824");
                assert_eq!(s.waba_id(), "1");
                assert_eq!(s.send_phone(), "65123101212312");
                assert_eq!(e.raw(), r#"{"id":"e1","type":"whatsapp_message_status_updated","body":{"id":356139161272397824,"accountName":"a","wabaId":1,"status":"read","wamid":"w","sendPhone":65123101212312}}"#);
            })),
        ("integer beyond u64 keeps every digit", bytes(set(r(), "body.id", serde_json::from_str("123456789012345678901234567890").unwrap())),
            Accept(|e| assert_eq!(e.message_status().unwrap().message_id(), "123456789012345678901234567890"))),
        ("integer errorCode", bytes(set(f(), "body.errorData.errorCode", json!(131014))),
            Accept(|e| assert_eq!(e.message_status().unwrap().error().unwrap().code(), "131014"))),
        ("integer envelope id", bytes(set(r(), "id", json!(42))), Accept(|e| assert_eq!(e.id(), "42"))),
        ("field-table time format, read as UTC", bytes(set(r(), "eventTime", json!("2023-02-22 12:00:00"))),
            Accept(|e| {
                let t = e.event_time().unwrap();
                assert_eq!(t.original(), "2023-02-22 12:00:00");
                assert_eq!(t.at().to_rfc3339(), "2023-02-22T12:00:00+00:00");
            })),
        ("offset time converted to UTC", bytes(set(d(), "body.conversation.expireAt", json!("2023-02-23T20:00:00+08:00"))),
            Accept(|e| {
                let c = e.message_status().unwrap().conversation().unwrap();
                assert_eq!(c.expire_at().unwrap().at().to_rfc3339(), "2023-02-23T12:00:00+00:00");
            })),
        ("SMECL:FAILED", bytes(remove(set(f(), "body.status", json!("SMECL:FAILED")), "body.errorData")),
            Accept(|e| assert_eq!(e.message_status().unwrap().status(), &Status::SmeclFailed))),
        ("null uid is no uid", bytes(set(r(), "body.uid", Value::Null)), Accept(|e| assert_eq!(e.message_status().unwrap().uid(), None))),
        ("other event types are kept, not interpreted", br#"{"id":"x1","type":"whatsapp_unlisted_event","eventTime":"2023-02-22T12:00:00Z","body":{"templateId":7,"status":"APPROVED"}}"#.to_vec(),
            Accept(|e| match e.event() {
                Event::Other { event_type, body } => {
                    assert_eq!(event_type, "whatsapp_unlisted_event");
                    assert_eq!(body["templateId"], 7);
                }
                other => panic!("{other:?}"),
            })),
    ];
    for path in [
        "body.id",
        "body.accountName",
        "body.wabaId",
        "body.status",
        "body.wamid",
        "body.sendPhone",
    ] {
        cases.push((
            "missing required body field",
            bytes(remove(r(), path)),
            Reject(MissingField, Some(path)),
        ));
        cases.push((
            "empty required body field",
            bytes(set(r(), path, json!(""))),
            Reject(EmptyField, Some(path)),
        ));
    }
    // An escaped lone surrogate is valid JSON text but no string: refused with a sentence,
    // never a panic (serde_json reads it as raw JSON, then cannot decode it).
    for (seed, path) in [
        (r(), "id"),
        (r(), "type"),
        (r(), "eventTime"),
        (r(), "body.id"),
        (r(), "body.status"),
        (r(), "body.wamid"),
        (r(), "body.uid"),
        (d(), "body.conversation.initiateType"),
        (f(), "body.errorData.errorCode"),
        (f(), "body.errorData.errorMessage"),
    ] {
        cases.push((
            "lone surrogate escape",
            with_raw_string(seed, path, r#""ab\ud800c""#),
            Reject(InvalidField, Some(path)),
        ));
    }
    // The same in a field name: refused, naming the object that holds it.
    for (seed, path) in [
        (r(), "body"),
        (d(), "body.conversation"),
        (f(), "body.errorData"),
        (
            set(r(), "type", json!("whatsapp_template_status_updated")),
            "body",
        ),
    ] {
        cases.push((
            "lone surrogate escape in a field name",
            with_raw_key(seed, path, r#""ab\udc00c""#),
            Reject(InvalidField, Some(path)),
        ));
    }
    cases.push((
        "lone surrogate escape in a top-level field name",
        with_raw_key(r(), "", r#""\ud800""#),
        Reject(InvalidJson, None),
    ));
    cases.push((
        "escapes are decoded",
        with_raw_string(r(), "body.wamid", r#""a\"b\\c\ud83d\ude00\u00e9/""#),
        Accept(|e| assert_eq!(e.message_status().unwrap().wamid(), "a\"b\\c\u{1F600}é/")),
    ));
    cases
}

/// The seed with the value at `path` replaced by `raw`, a JSON string written by hand
/// (serde_json cannot write a lone surrogate).
fn with_raw_string(seed: Value, path: &str, raw: &str) -> Vec<u8> {
    let text = serde_json::to_string(&set(seed, path, json!("RAW-STRING-HERE"))).unwrap();
    text.replace(r#""RAW-STRING-HERE""#, raw).into_bytes()
}

/// The seed with a member named `raw` (a JSON string written by hand) added first to the
/// object at `path` ("" for the envelope itself; no other object in the seeds has the
/// same key as the one at `path`).
fn with_raw_key(seed: Value, path: &str, raw: &str) -> Vec<u8> {
    let text = serde_json::to_string(&seed).unwrap();
    let open = match path.rsplit('.').next().unwrap() {
        "" => "{".to_owned(),
        key => format!("\"{key}\":{{"),
    };
    assert!(text.contains(&open), "{open} in {text}");
    text.replacen(&open, &format!("{open}{raw}:1,"), 1)
        .into_bytes()
}

#[test]
fn every_rule_gives_its_exact_code_and_field() {
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    for (name, input, expect) in cases {
        let got = parse(&input);
        match expect {
            Reject(code, field) => {
                let r = got.expect_err(name);
                assert_eq!((r.code, r.field.as_deref()), (code, field), "{name}");
                assert!(
                    r.message.len() > 20 && r.message.ends_with('.'),
                    "{name}: {}",
                    r.message
                );
                if let Some(f) = field {
                    assert!(
                        r.message.contains(f),
                        "{name}: the sentence names the field: {}",
                        r.message
                    );
                }
            }
            Warn(code, field) => {
                let a = got.unwrap_or_else(|r| panic!("{name}: rejected: {r:?}"));
                assert!(
                    a.warnings
                        .iter()
                        .any(|w| w.code == code && w.field == field),
                    "{name}: expected warning {code} at {field}, got {:?}",
                    a.warnings
                );
            }
            Accept(check) => {
                let a = got.unwrap_or_else(|r| panic!("{name}: rejected: {r:?}"));
                check(&a.envelope);
            }
        }
    }
}

#[test]
fn rejection_serialises_as_the_http_error_body_fields() {
    let r = parse(b"[]").unwrap_err();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["code"], "not_an_object");
    assert_eq!(v["field"], Value::Null);
}

/// Thousands of undocumented fields (5,000 fit in the default 64 KiB body) do not bring
/// thousands of warnings to store and to write in every sink line: the first 20 are kept,
/// and a last one says how many more were left out. Exactly 20 are kept as they are.
#[test]
fn warnings_are_capped_and_say_how_many_were_left_out() {
    let with_unknown_fields = |n: usize| {
        let mut v = seed("read");
        for i in 0..n {
            v["body"][format!("x{i}")] = json!(0);
        }
        let input = bytes(v);
        assert!(input.len() <= 65_536, "{} bytes", input.len());
        parse(&input).unwrap().warnings
    };
    assert!(with_unknown_fields(0).is_empty());
    for (fields, left_out) in [(20, None), (21, Some(1)), (5000, Some(4980))] {
        let warnings = with_unknown_fields(fields);
        let kept = &warnings[..20];
        assert!(kept.iter().all(|w| w.code == "unknown_field"), "{fields}");
        match left_out {
            None => assert_eq!(warnings.len(), 20),
            Some(n) => {
                assert_eq!(warnings.len(), 21);
                assert_eq!(warnings[20].code, "too_many_warnings");
                let says = format!("{n} more warnings");
                assert!(warnings[20].message.starts_with(&says), "{warnings:?}");
            }
        }
    }
}

/// A person fixing the sender reads the sentence (in the 400 and the dead letter): where
/// an object or a string was expected, it names the JSON type that came instead.
#[test]
fn a_rejection_names_the_json_type_that_came_instead_of_the_one_expected() {
    for (input, kind) in [
        ("[1,2]", "array"),
        (" \n\"x\"", "string"),
        ("true", "boolean"),
        ("null", "null"),
        ("\t12", "number"),
    ] {
        let r = parse(input.as_bytes()).unwrap_err();
        assert_eq!(r.code, RejectCode::NotAnObject);
        assert!(
            r.message.contains(&format!("is a JSON {kind},")),
            "{input:?}: {}",
            r.message
        );
    }
    // And inside the event, whatever was expected.
    for (path, value, expected, kind) in [
        ("type", json!(7), "a string", "number"),
        ("body.status", json!(["read"]), "a string", "array"),
        (
            "body.errorData.errorMessage",
            json!({}),
            "a string",
            "object",
        ),
        ("id", json!(true), "a string or an integer", "boolean"),
        ("body.errorData", json!("131014"), "a JSON object", "string"),
    ] {
        let r = parse(&bytes(set(seed("failed"), path, value))).unwrap_err();
        assert_eq!(
            (r.field.as_deref(), r.message.as_str()),
            (
                Some(path),
                format!("{path} must be {expected}, but it is a JSON {kind}.").as_str()
            )
        );
    }
    // A string that is not text (an escaped lone surrogate) is named as such.
    for path in ["id", "type", "body.uid"] {
        let r = parse(&with_raw_string(seed("read"), path, r#""ab\ud800c""#)).unwrap_err();
        assert!(
            r.message.starts_with(&format!(
                "{path} holds an escaped half of a UTF-16 surrogate"
            )),
            "{path}: {}",
            r.message
        );
    }
    for (body, kind) in [
        (json!([]), "array"),
        (json!("{}"), "string"),
        (json!(3), "number"),
    ] {
        let r = parse(&bytes(set(seed("read"), "body", body))).unwrap_err();
        assert_eq!(
            (r.field.as_deref(), r.message.as_str()),
            (
                Some("body"),
                format!("body must be a JSON object, but it is a JSON {kind}.").as_str()
            )
        );
    }
}
