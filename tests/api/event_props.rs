//! Property tests: no input makes the parser panic, and accepted events lose nothing.

use innohook::event::{Event, parse};
use proptest::prelude::*;
use serde_json::Value;

use crate::helpers::{remove, seed, set};

/// Any JSON, with long integers and the documented keys over-represented.
pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "-?[1-9][0-9]{0,40}".prop_map(|s| serde_json::from_str(&s).unwrap()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "(20[0-9]{2}-[01][0-9]-[0-3][0-9][ T][0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{3})?Z?)"
            .prop_map(Value::String),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "id",
            "type",
            "eventTime",
            "body",
            "status",
            "wamid",
            "errorData",
            "errorCode",
            "conversation",
            "expireAt",
            "initiateType",
            "uid",
            "sendPhone",
            "wabaId",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{1,6}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A seed example with some documented fields removed or replaced by arbitrary JSON.
fn mutated_seed() -> impl Strategy<Value = Value> {
    let paths = vec![
        "id",
        "type",
        "eventTime",
        "body.id",
        "body.status",
        "body.wamid",
        "body.uid",
        "body.sendPhone",
        "body.accountName",
        "body.wabaId",
        "body.conversation",
        "body.errorData",
        "body.extra",
    ];
    (
        prop::sample::select(vec!["delivered", "read", "failed"]),
        prop::collection::vec(
            (prop::sample::select(paths), prop::option::of(arb_json())),
            0..4,
        ),
    )
        .prop_map(|(name, edits)| {
            edits
                .into_iter()
                .fold(seed(name), |v, (path, new)| match new {
                    Some(new) => set(v, path, new),
                    None => remove(v, path),
                })
        })
}

fn check_round_trip(input: &Value) -> Result<(), TestCaseError> {
    let text = serde_json::to_string(input).unwrap();
    if let Ok(accepted) = parse(text.as_bytes()) {
        let env = &accepted.envelope;
        // Same fields, same order, same digits.
        prop_assert_eq!(env.raw(), text.as_str());
        if let Event::MessageStatus(s) = env.event() {
            let body = &input["body"];
            let text_of = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            prop_assert_eq!(s.message_id(), text_of(&body["id"]));
            prop_assert_eq!(s.wamid(), text_of(&body["wamid"]));
            prop_assert_eq!(s.status().as_str(), text_of(&body["status"]));
            if s.status().as_str() == "failed" {
                prop_assert!(s.error().is_some_and(|e| !e.code().is_empty()));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_round_trips(v in arb_json()) {
        check_round_trip(&v)?;
    }

    #[test]
    fn mutated_seeds_never_panic_and_round_trip(v in mutated_seed()) {
        check_round_trip(&v)?;
    }

    #[test]
    fn every_rejection_has_a_code_and_a_sentence(v in mutated_seed()) {
        if let Err(r) = parse(v.to_string().as_bytes()) {
            prop_assert!(!r.code.as_str().is_empty());
            prop_assert!(r.message.ends_with('.'));
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        parse(deep.as_bytes()).unwrap_err().code.as_str(),
        "not_an_object"
    );
    let broken = "[".repeat(100_000);
    assert_eq!(
        parse(broken.as_bytes()).unwrap_err().code.as_str(),
        "invalid_json"
    );
    let inside = format!(r#"{{"id":"x","type":"t","body":{{"a":{deep}}}}}"#);
    let r = parse(inside.as_bytes()).unwrap_err();
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("invalid_field", Some("body"))
    );
}

#[test]
fn deep_nesting_inside_an_event_is_refused_too() {
    let deep: serde_json::Value =
        serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap();
    let with = |path: &str| set(seed("delivered"), path, deep.clone());
    let other =
        serde_json::json!({"id": "x", "type": "whatsapp_unlisted_event", "body": {"deep": deep}});
    for (event, field) in [
        (other, "body"),
        (with("extra"), "extra"),
        (with("body.deep"), "body.deep"),
        (with("body.conversation.deep"), "body.conversation.deep"),
    ] {
        let r = parse(event.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            (r.code.as_str(), r.field.as_deref()),
            ("invalid_field", Some(field))
        );
    }
    // 64 levels are the most accepted: the body's own braces and 63 arrays inside them.
    let nested = |levels: usize| {
        let inner: serde_json::Value =
            serde_json::from_str(&format!("{}{}", "[".repeat(levels), "]".repeat(levels))).unwrap();
        serde_json::json!({"id": "x", "type": "t", "body": {"a": inner}}).to_string()
    };
    assert!(parse(nested(63).as_bytes()).is_ok());
    let r = parse(nested(64).as_bytes()).unwrap_err();
    assert_eq!(r.field.as_deref(), Some("body"), "{}", r.message);
    assert!(r.message.contains("more than 64 levels"), "{}", r.message);
    // Brackets inside strings are text, not nesting.
    let text = serde_json::json!({"id": "x", "type": "t", "body": {"s": "[".repeat(500)}});
    assert!(parse(text.to_string().as_bytes()).is_ok());
    // An escaped quote does not end the string: the brackets after it are still text.
    let quoted = format!("say \"{}\" twice\\", "[".repeat(100));
    let text = serde_json::json!({"id": "x", "type": "t", "body": {"s": quoted}});
    assert!(parse(text.to_string().as_bytes()).is_ok(), "{text}");
    // Depth is how deep, not how many: a hundred objects side by side nest two levels.
    let wide = serde_json::json!({"id": "x", "type": "t", "body": {"list": vec![serde_json::json!({}); 100]}});
    assert!(parse(wide.to_string().as_bytes()).is_ok());
}
