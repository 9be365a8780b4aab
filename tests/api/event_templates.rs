//! The template and review events (`src/event/template.rs`, `review.rs`): the examples of
//! the event notes (§5, §6.1, §7.1, §7.2) typed field by field and printed by `innohook
//! validate`; every rule that refuses or flags, with its code, field and sentence;
//! `is_alarming`; and the dedup key, which is the one these types had before they were
//! typed. Why each rule is as it is: `docs/events.md`.

use innohook::event::{
    Accepted, Decision, DedupKey, Envelope, Event, QualityScore, RejectCode, RejectionReason,
    TemplateCategory, TemplateStatus, parse,
};
use serde_json::{Value, json};

use crate::helpers::{remove, set, validate_stdin};

/// §5: a template status update.
pub const TEMPLATE_STATUS: &str = r#"{
  "id": "b2d4f6a8-1c3e-4a5b-8d7f-9e0a1b2c3d4e",
  "type": "whatsapp_template_status_updated",
  "eventTime": "2025-03-04T09:01:12.087Z",
  "body": {
    "accountName": "IW0000001",
    "wabaId": "100000000000001",
    "templateId": "900000000000077",
    "templateName": "delivery_slot_reminder",
    "templateLanguage": "en_US",
    "category": "UTILITY",
    "templateStatus": "REJECTED",
    "reason": "INVALID_FORMAT"
  }
}"#;

/// §6.1: a template quality update.
pub const TEMPLATE_QUALITY: &str = r#"{
  "id": "c3e5a7b9-2d4f-4b6c-9e8a-0f1b2c3d4e5f",
  "type": "message_template_quality_update",
  "eventTime": "2025-03-05T02:44:51.300Z",
  "body": {
    "wabaId": "100000000000001",
    "templateId": "900000000000078",
    "templateName": "spring_promo_2025",
    "templateLanguage": "en",
    "previousQualityScore": "GREEN",
    "newQualityScore": "YELLOW"
  }
}"#;

/// §7.1: a display-name review.
const NAME_UPDATE: &str = r#"{
  "id": "d4f6b8c0-3e5a-4c7d-8f9b-1a2b3c4d5e6f",
  "type": "whatsapp_phone_number_name_update",
  "eventTime": "2025-03-06T11:20:03.915Z",
  "body": {
    "wabaId": "100000000000001",
    "displayPhoneNumber": "6590001111",
    "decision": "REJECTED",
    "requestedVerifiedName": "Mei's Best Deals",
    "rejectionReason": "NAME_NOT_CONSISTENT"
  }
}"#;

/// §7.2: the illustrative account review (its body is not documented).
const ACCOUNT_REVIEW: &str = r#"{ "id": "e5a7c9d1-4f6b-4d8e-9a0c-2b3c4d5e6f70", "type": "whatsapp_account_review_updated",
  "eventTime": "2025-03-07T00:00:00.000Z",
  "body": { "wabaId": "100000000000001", "decision": "APPROVED" } }"#;

/// A category update: the notes give no example (its fields are not documented); this
/// one has the names Meta's webhook of the same name uses, in camelCase.
const CATEGORY_UPDATE: &str = r#"{"id": "f6b8d0e2-5a7c-4e9f-8b1d-3c4d5e6f7081", "type": "template_category_update",
  "eventTime": "2025-03-08T00:00:00.000Z",
  "body": {"templateId": "900000000000079", "templateName": "spring_promo_2025",
           "previousCategory": "UTILITY", "newCategory": "MARKETING"}}"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn accept(v: Value) -> Accepted {
    parse(&bytes(v.clone())).unwrap_or_else(|r| panic!("rejected: {r:?}\n{v}"))
}

/// The (code, field) of each warning.
fn flagged(a: &Accepted) -> Vec<(&'static str, &str)> {
    a.warnings
        .iter()
        .map(|w| (w.code, w.field.as_str()))
        .collect()
}

#[test]
fn template_status_example_is_typed_field_by_field() {
    let a = parse(TEMPLATE_STATUS.as_bytes()).expect("accepted");
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let env = &a.envelope;
    assert_eq!(env.event_type(), "whatsapp_template_status_updated");
    assert_eq!(
        env.event_time().unwrap().original(),
        "2025-03-04T09:01:12.087Z"
    );
    let Event::TemplateStatus(t) = env.event() else {
        panic!("{:?}", env.event())
    };
    assert_eq!(t.account_name(), Some("IW0000001"));
    assert_eq!(t.waba_id(), Some("100000000000001"));
    assert_eq!(t.template_id(), "900000000000077");
    assert_eq!(t.template_name(), Some("delivery_slot_reminder"));
    assert_eq!(t.language(), Some("en_US"));
    assert_eq!(t.category(), Some(&TemplateCategory::Utility));
    assert_eq!(t.status(), &TemplateStatus::Rejected);
    assert_eq!(t.reason(), Some("INVALID_FORMAT"));
    assert!(t.is_alarming());
}

#[test]
fn template_quality_example_is_typed_field_by_field() {
    let a = parse(TEMPLATE_QUALITY.as_bytes()).expect("accepted");
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let Event::TemplateQuality(q) = a.envelope.event() else {
        panic!("{:?}", a.envelope.event())
    };
    assert_eq!(q.waba_id(), Some("100000000000001"));
    assert_eq!(q.template_id(), "900000000000078");
    assert_eq!(q.template_name(), Some("spring_promo_2025"));
    assert_eq!(q.language(), Some("en"));
    assert_eq!(q.previous_quality(), Some(&QualityScore::Green));
    assert_eq!(q.new_quality(), &QualityScore::Yellow);
    assert!(!q.is_alarming());
}

#[test]
fn name_update_example_is_typed_field_by_field() {
    let a = parse(NAME_UPDATE.as_bytes()).expect("accepted");
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let Event::PhoneNumberName(n) = a.envelope.event() else {
        panic!("{:?}", a.envelope.event())
    };
    assert_eq!(n.waba_id(), Some("100000000000001"));
    assert_eq!(n.display_phone_number(), "6590001111");
    assert_eq!(n.decision(), &Decision::Rejected);
    assert_eq!(n.requested_verified_name(), Some("Mei's Best Deals"));
    assert_eq!(n.rejection_reason(), Some(&RejectionReason::NotConsistent));
}

#[test]
fn account_review_example_is_typed_and_its_body_kept() {
    let a = parse(ACCOUNT_REVIEW.as_bytes()).expect("accepted");
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let Event::AccountReview(r) = a.envelope.event() else {
        panic!("{:?}", a.envelope.event())
    };
    assert_eq!(r.waba_id(), Some("100000000000001"));
    assert_eq!(r.decision(), Some(&Decision::Approved));
    assert_eq!(r.body(), &json(ACCOUNT_REVIEW)["body"]);
}

#[test]
fn category_update_is_typed_and_its_body_kept() {
    let a = parse(CATEGORY_UPDATE.as_bytes()).expect("accepted");
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let Event::TemplateCategory(c) = a.envelope.event() else {
        panic!("{:?}", a.envelope.event())
    };
    assert_eq!(c.template_id(), Some("900000000000079"));
    assert_eq!(c.body(), &json(CATEGORY_UPDATE)["body"]);
    assert_eq!(c.new_category(), Some("MARKETING"));
    assert_eq!(c.previous_category(), Some("UTILITY"));
    // The guessed fields are read only as strings, `category` when there is no
    // `newCategory`; nothing is refused or flagged.
    let read = |v: Value| match parse(&bytes(v)).unwrap().envelope.event() {
        Event::TemplateCategory(c) => (
            c.new_category().map(str::to_owned),
            c.previous_category().map(str::to_owned),
        ),
        other => panic!("{other:?}"),
    };
    let only_category = set(
        remove(json(CATEGORY_UPDATE), "body.newCategory"),
        "body.category",
        json!("UTILITY"),
    );
    assert_eq!(
        read(only_category),
        (Some("UTILITY".into()), Some("UTILITY".into()))
    );
    let numbers = set(
        set(json(CATEGORY_UPDATE), "body.newCategory", json!(2)),
        "body.previousCategory",
        json!(1),
    );
    assert_eq!(read(numbers), (None, None));
}

#[test]
fn validate_prints_each_typed_form() {
    for (input, first, rows) in [
        (
            TEMPLATE_STATUS,
            "accepted: whatsapp_template_status_updated event b2d4f6a8-1c3e-4a5b-8d7f-9e0a1b2c3d4e",
            &[
                "  template id   900000000000077",
                "  template name delivery_slot_reminder",
                "  language      en_US",
                "  category      UTILITY",
                "  status        REJECTED",
                "  reason        INVALID_FORMAT",
                "  alarming      yes",
                "  wabaId        100000000000001",
                "  accountName   IW0000001",
            ][..],
        ),
        (
            TEMPLATE_QUALITY,
            "accepted: message_template_quality_update event c3e5a7b9-2d4f-4b6c-9e8a-0f1b2c3d4e5f",
            &[
                "  template id   900000000000078",
                "  template name spring_promo_2025",
                "  language      en",
                "  quality       GREEN -> YELLOW",
                "  alarming      no",
                "  wabaId        100000000000001",
            ][..],
        ),
        (
            CATEGORY_UPDATE,
            "accepted: template_category_update event f6b8d0e2-5a7c-4e9f-8b1d-3c4d5e6f7081",
            &[
                "  template id   900000000000079",
                "  category      UTILITY -> MARKETING",
                "  body          not documented by InnoPaaS: kept as sent",
            ][..],
        ),
        (
            NAME_UPDATE,
            "accepted: whatsapp_phone_number_name_update event d4f6b8c0-3e5a-4c7d-8f9b-1a2b3c4d5e6f",
            &[
                "  phone number  6590001111",
                "  decision      REJECTED",
                "  requested     Mei's Best Deals",
                "  rejection     NAME_NOT_CONSISTENT",
                "  wabaId        100000000000001",
            ][..],
        ),
        (
            ACCOUNT_REVIEW,
            "accepted: whatsapp_account_review_updated event e5a7c9d1-4f6b-4d8e-9a0c-2b3c4d5e6f70",
            &[
                "  wabaId        100000000000001",
                "  decision      APPROVED",
                "  body          not documented by InnoPaaS: kept as sent",
            ][..],
        ),
    ] {
        let (code, stdout) = validate_stdin(input);
        assert_eq!(code, Some(0), "{stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], first, "{stdout}");
        assert!(
            lines[1].starts_with("  eventTime     2025-03-0"),
            "{stdout}"
        );
        assert_eq!(&lines[2..], rows, "{stdout}");
    }
}

#[test]
fn validate_names_the_field_of_a_refused_template_event() {
    let (code, stdout) =
        validate_stdin(&remove(json(TEMPLATE_STATUS), "body.templateId").to_string());
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "rejected: missing_field at body.templateId\n  body.templateId is missing: the event must carry the Meta template id.\n"
    );
}

/// Every field each typed event cannot be read without, with the sentence its absence
/// is refused with (an empty string is refused the same way, as empty).
#[test]
fn a_template_or_name_event_without_what_makes_it_meaningful_is_refused_with_a_sentence() {
    for (example, field, what) in [
        (TEMPLATE_STATUS, "templateId", "the Meta template id"),
        (
            TEMPLATE_STATUS,
            "templateStatus",
            "the template's review status (PENDING, APPROVED, REJECTED, PAUSED or DISABLED)",
        ),
        (TEMPLATE_QUALITY, "templateId", "the Meta template id"),
        (
            TEMPLATE_QUALITY,
            "newQualityScore",
            "the template's new quality score (GREEN, YELLOW, RED or UNKNOWN)",
        ),
        (
            NAME_UPDATE,
            "displayPhoneNumber",
            "the sender number the name is for",
        ),
        (
            NAME_UPDATE,
            "decision",
            "the review decision (APPROVED, PENDING, DEFERRED or REJECTED)",
        ),
    ] {
        let path = format!("body.{field}");
        for (input, code, sentence) in [
            (
                remove(json(example), &path),
                RejectCode::MissingField,
                format!("{path} is missing: the event must carry {what}."),
            ),
            (
                set(json(example), &path, Value::Null),
                RejectCode::MissingField,
                format!("{path} is missing: the event must carry {what}."),
            ),
            (
                set(json(example), &path, json!("")),
                RejectCode::EmptyField,
                format!("{path} is empty: the event must carry {what}."),
            ),
        ] {
            let r = parse(&bytes(input)).unwrap_err();
            assert_eq!(
                (r.code, r.field.as_deref(), r.message.as_str()),
                (code, Some(path.as_str()), sentence.as_str())
            );
        }
    }
}

/// A documented field of the wrong JSON type is refused, as in a status event, whether
/// the event needs it or not.
#[test]
fn a_documented_field_of_the_wrong_json_type_is_refused_naming_it() {
    for (example, field, value, expected, kind) in [
        (
            TEMPLATE_STATUS,
            "templateId",
            json!(1.5),
            "a string or an integer",
            "number",
        ),
        (
            TEMPLATE_STATUS,
            "templateId",
            json!({}),
            "a string or an integer",
            "object",
        ),
        (
            TEMPLATE_STATUS,
            "templateStatus",
            json!(2),
            "a string",
            "number",
        ),
        (
            TEMPLATE_STATUS,
            "accountName",
            json!(true),
            "a string or an integer",
            "boolean",
        ),
        (
            TEMPLATE_STATUS,
            "wabaId",
            json!(["1"]),
            "a string or an integer",
            "array",
        ),
        (
            TEMPLATE_STATUS,
            "templateName",
            json!(7),
            "a string",
            "number",
        ),
        (
            TEMPLATE_STATUS,
            "templateLanguage",
            json!({}),
            "a string",
            "object",
        ),
        (TEMPLATE_STATUS, "category", json!(2), "a string", "number"),
        (
            TEMPLATE_STATUS,
            "reason",
            json!(false),
            "a string",
            "boolean",
        ),
        (
            TEMPLATE_QUALITY,
            "templateId",
            json!(true),
            "a string or an integer",
            "boolean",
        ),
        (
            TEMPLATE_QUALITY,
            "newQualityScore",
            json!(3),
            "a string",
            "number",
        ),
        (
            TEMPLATE_QUALITY,
            "previousQualityScore",
            json!(["GREEN"]),
            "a string",
            "array",
        ),
        (
            TEMPLATE_QUALITY,
            "wabaId",
            json!(1.5),
            "a string or an integer",
            "number",
        ),
        (
            TEMPLATE_QUALITY,
            "templateName",
            json!(1),
            "a string",
            "number",
        ),
        (
            TEMPLATE_QUALITY,
            "templateLanguage",
            json!(true),
            "a string",
            "boolean",
        ),
        (
            NAME_UPDATE,
            "displayPhoneNumber",
            json!([]),
            "a string or an integer",
            "array",
        ),
        (NAME_UPDATE, "decision", json!(1), "a string", "number"),
        (
            NAME_UPDATE,
            "wabaId",
            json!({}),
            "a string or an integer",
            "object",
        ),
        (
            NAME_UPDATE,
            "requestedVerifiedName",
            json!(5),
            "a string",
            "number",
        ),
        (
            NAME_UPDATE,
            "rejectionReason",
            json!(3),
            "a string",
            "number",
        ),
    ] {
        let path = format!("body.{field}");
        let r = parse(&bytes(set(json(example), &path, value))).unwrap_err();
        assert_eq!(
            (r.code, r.field.as_deref(), r.message.as_str()),
            (
                RejectCode::InvalidField,
                Some(path.as_str()),
                format!("{path} must be {expected}, but it is a JSON {kind}.").as_str()
            )
        );
    }
}

/// The two undocumented bodies are refused only as any body is (the envelope's rules, and
/// nesting); a field they happen to carry in an unexpected shape is not read, not refused.
#[test]
fn an_undocumented_body_is_refused_only_as_any_body_is() {
    for example in [CATEGORY_UPDATE, ACCOUNT_REVIEW] {
        for (field, value) in [
            ("templateId", json!(1.5)),
            ("wabaId", json!({"x": 1})),
            ("decision", json!(["APPROVED"])),
            ("newCategory", json!(null)),
        ] {
            let a = accept(set(json(example), &format!("body.{field}"), value));
            assert!(a.warnings.is_empty(), "{field}: {:?}", a.warnings);
            match a.envelope.event() {
                Event::TemplateCategory(c) if field == "templateId" => {
                    assert_eq!(c.template_id(), None)
                }
                Event::AccountReview(r) if field == "wabaId" => assert_eq!(r.waba_id(), None),
                Event::AccountReview(r) if field == "decision" => assert_eq!(r.decision(), None),
                Event::TemplateCategory(_) | Event::AccountReview(_) => {}
                other => panic!("{other:?}"),
            }
        }
        let r = parse(&bytes(set(json(example), "body", json!({})))).unwrap_err();
        assert_eq!(
            (r.code, r.field.as_deref()),
            (RejectCode::EmptyField, Some("body"))
        );
        let deep: Value =
            serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap();
        let r = parse(&bytes(set(json(example), "body.deep", deep))).unwrap_err();
        assert_eq!(
            (r.code, r.field.as_deref()),
            (RejectCode::InvalidField, Some("body"))
        );
        assert!(r.message.contains("more than 64 levels"), "{}", r.message);
    }
    // Their other fields are read when they are text: an integer templateId keeps every
    // digit, an undocumented decision is kept as sent (and not flagged).
    let a = accept(set(
        json(CATEGORY_UPDATE),
        "body.templateId",
        serde_json::from_str("900000000000000000079").unwrap(),
    ));
    let Event::TemplateCategory(c) = a.envelope.event() else {
        panic!()
    };
    assert_eq!(c.template_id(), Some("900000000000000000079"));
    let a = accept(set(
        json(ACCOUNT_REVIEW),
        "body.decision",
        json!("ESCALATED"),
    ));
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let Event::AccountReview(r) = a.envelope.event() else {
        panic!()
    };
    assert_eq!(r.decision(), Some(&Decision::Unknown("ESCALATED".into())));
    // Without any field it reads, an account review is still accepted.
    let a = accept(set(json(ACCOUNT_REVIEW), "body", json!({"status": "OK"})));
    let Event::AccountReview(r) = a.envelope.event() else {
        panic!()
    };
    assert_eq!((r.waba_id(), r.decision()), (None, None));
}

fn template_status(a: &Accepted) -> &innohook::event::TemplateStatusUpdate {
    match a.envelope.event() {
        Event::TemplateStatus(t) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_misspelled_type_is_read_as_a_template_status_and_flagged() {
    let a = accept(set(
        json(TEMPLATE_STATUS),
        "type",
        json!("whatsapp_template_status_update"),
    ));
    assert_eq!(flagged(&a), [("misspelled_type", "type")]);
    assert_eq!(
        a.warnings[0].message,
        "type \"whatsapp_template_status_update\" is read as \"whatsapp_template_status_updated\", its documented spelling; the event is kept as sent."
    );
    // The envelope keeps the type as sent.
    assert_eq!(a.envelope.event_type(), "whatsapp_template_status_update");
    assert_eq!(template_status(&a).template_id(), "900000000000077");
    // Its rules are the template status's.
    let r = parse(&bytes(remove(
        set(
            json(TEMPLATE_STATUS),
            "type",
            json!("whatsapp_template_status_update"),
        ),
        "body.templateStatus",
    )))
    .unwrap_err();
    assert_eq!(r.field.as_deref(), Some("body.templateStatus"));
}

/// Meta's statuses that InnoPaaS does not document are kept as sent and flagged, never
/// refused.
#[test]
fn an_undocumented_template_status_is_kept_and_flagged() {
    for status in [
        "FLAGGED",
        "REINSTATED",
        "PENDING_DELETION",
        "DELETED",
        "LIMIT_EXCEEDED",
        "IN_APPEAL",
        "approved",
    ] {
        let a = accept(set(
            json(TEMPLATE_STATUS),
            "body.templateStatus",
            json!(status),
        ));
        assert_eq!(
            flagged(&a),
            [("unknown_template_status", "body.templateStatus")]
        );
        assert_eq!(
            a.warnings[0].message,
            format!(
                "templateStatus \"{status}\" is not one InnoPaaS documents (PENDING, APPROVED, REJECTED, PAUSED, DISABLED); the event is kept as sent."
            )
        );
        let t = template_status(&a);
        assert_eq!(t.status(), &TemplateStatus::Unknown(status.into()));
        assert_eq!(t.status().as_str(), status);
    }
    for (status, typed) in [
        ("PENDING", TemplateStatus::Pending),
        ("APPROVED", TemplateStatus::Approved),
        ("REJECTED", TemplateStatus::Rejected),
        ("PAUSED", TemplateStatus::Paused),
        ("DISABLED", TemplateStatus::Disabled),
    ] {
        let a = accept(set(
            json(TEMPLATE_STATUS),
            "body.templateStatus",
            json!(status),
        ));
        assert!(a.warnings.is_empty(), "{status}: {:?}", a.warnings);
        assert_eq!(template_status(&a).status(), &typed);
    }
}

#[test]
fn an_undocumented_category_is_kept_and_flagged() {
    let a = accept(set(
        json(TEMPLATE_STATUS),
        "body.category",
        json!("SERVICE"),
    ));
    assert_eq!(flagged(&a), [("unknown_category", "body.category")]);
    assert_eq!(
        template_status(&a).category(),
        Some(&TemplateCategory::Unknown("SERVICE".into()))
    );
    for (category, typed) in [
        ("MARKETING", TemplateCategory::Marketing),
        ("AUTHENTICATION", TemplateCategory::Authentication),
        ("UTILITY", TemplateCategory::Utility),
    ] {
        let a = accept(set(json(TEMPLATE_STATUS), "body.category", json!(category)));
        assert!(a.warnings.is_empty(), "{category}: {:?}", a.warnings);
        assert_eq!(template_status(&a).category(), Some(&typed));
    }
}

#[test]
fn a_reason_of_none_is_no_reason() {
    for reason in [json!("NONE"), json!(""), Value::Null] {
        let a = accept(set(json(TEMPLATE_STATUS), "body.reason", reason.clone()));
        assert_eq!(template_status(&a).reason(), None, "{reason}");
    }
    let a = accept(set(json(TEMPLATE_STATUS), "body.reason", json!("NONE")));
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let a = accept(set(json(TEMPLATE_STATUS), "body.reason", json!("None")));
    assert_eq!(template_status(&a).reason(), Some("None"));
}

/// A documented field the event can be read without: absent, null or empty, it is
/// accepted without it, and flagged.
#[test]
fn a_documented_field_that_is_not_needed_may_be_missing_and_is_flagged() {
    for (example, field) in [
        (TEMPLATE_STATUS, "accountName"),
        (TEMPLATE_STATUS, "wabaId"),
        (TEMPLATE_STATUS, "templateName"),
        (TEMPLATE_STATUS, "templateLanguage"),
        (TEMPLATE_STATUS, "category"),
        (TEMPLATE_STATUS, "reason"),
        (TEMPLATE_QUALITY, "wabaId"),
        (TEMPLATE_QUALITY, "templateName"),
        (TEMPLATE_QUALITY, "templateLanguage"),
        (TEMPLATE_QUALITY, "previousQualityScore"),
        (NAME_UPDATE, "wabaId"),
        (NAME_UPDATE, "requestedVerifiedName"),
    ] {
        let path = format!("body.{field}");
        for input in [
            remove(json(example), &path),
            set(json(example), &path, Value::Null),
            set(json(example), &path, json!("")),
        ] {
            let a = accept(input);
            assert_eq!(flagged(&a), [("missing_field", path.as_str())]);
            let message = &a.warnings[0].message;
            assert!(
                message.starts_with(&format!(
                    "{path} is missing or empty: the documentation lists "
                )) && message.ends_with(", which is kept without it."),
                "{message}"
            );
            let kept = match a.envelope.event() {
                Event::TemplateStatus(t) => match field {
                    "accountName" => t.account_name(),
                    "wabaId" => t.waba_id(),
                    "templateName" => t.template_name(),
                    "templateLanguage" => t.language(),
                    "category" => t.category().map(TemplateCategory::as_str),
                    _ => t.reason(),
                },
                Event::TemplateQuality(q) => match field {
                    "wabaId" => q.waba_id(),
                    "templateName" => q.template_name(),
                    "templateLanguage" => q.language(),
                    _ => q.previous_quality().map(QualityScore::as_str),
                },
                Event::PhoneNumberName(n) => match field {
                    "wabaId" => n.waba_id(),
                    _ => n.requested_verified_name(),
                },
                other => panic!("{other:?}"),
            };
            assert_eq!(kept, None, "{path}");
        }
    }
    // A name update's rejectionReason may be null or absent (it is null when the name is
    // accepted): not flagged.
    for input in [
        set(json(NAME_UPDATE), "body.rejectionReason", Value::Null),
        remove(json(NAME_UPDATE), "body.rejectionReason"),
    ] {
        let a = accept(set(input, "body.decision", json!("APPROVED")));
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        let Event::PhoneNumberName(n) = a.envelope.event() else {
            panic!()
        };
        assert_eq!(n.rejection_reason(), None);
    }
}

#[test]
fn an_undocumented_field_is_kept_and_flagged() {
    for (example, field) in [
        (TEMPLATE_STATUS, "body.templateCategory"),
        (TEMPLATE_QUALITY, "body.accountName"),
        (NAME_UPDATE, "body.accountName"),
    ] {
        let a = accept(set(json(example), field, json!("x")));
        assert_eq!(flagged(&a), [("unknown_field", field)]);
        let kept: Value = serde_json::from_str(a.envelope.raw()).unwrap();
        assert_eq!(kept["body"][&field["body.".len()..]], "x");
    }
    // The undocumented bodies flag nothing: none of their fields is documented.
    for example in [CATEGORY_UPDATE, ACCOUNT_REVIEW] {
        let a = accept(set(json(example), "body.anything", json!({"a": [1, 2]})));
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    }
}

#[test]
fn an_undocumented_quality_score_is_kept_and_flagged() {
    for field in ["previousQualityScore", "newQualityScore"] {
        let path = format!("body.{field}");
        let a = accept(set(json(TEMPLATE_QUALITY), &path, json!("ORANGE")));
        assert_eq!(flagged(&a), [("unknown_quality_score", path.as_str())]);
        assert_eq!(
            a.warnings[0].message,
            format!(
                "{field} \"ORANGE\" is not one InnoPaaS documents (GREEN, YELLOW, RED, UNKNOWN); the event is kept as sent."
            )
        );
        let Event::TemplateQuality(q) = a.envelope.event() else {
            panic!()
        };
        let kept = match field {
            "newQualityScore" => q.new_quality(),
            _ => q.previous_quality().unwrap(),
        };
        assert_eq!(kept, &QualityScore::Unknown("ORANGE".into()));
    }
    // UNKNOWN is documented: not yet rated.
    let a = accept(set(
        json(TEMPLATE_QUALITY),
        "body.previousQualityScore",
        json!("UNKNOWN"),
    ));
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let Event::TemplateQuality(q) = a.envelope.event() else {
        panic!()
    };
    assert_eq!(q.previous_quality(), Some(&QualityScore::Unrated));
    assert_eq!(QualityScore::Unrated.as_str(), "UNKNOWN");
}

#[test]
fn an_undocumented_decision_or_rejection_reason_is_kept_and_flagged() {
    let a = accept(set(json(NAME_UPDATE), "body.decision", json!("ESCALATED")));
    assert_eq!(flagged(&a), [("unknown_decision", "body.decision")]);
    assert_eq!(
        a.warnings[0].message,
        "decision \"ESCALATED\" is not one InnoPaaS documents (APPROVED, PENDING, DEFERRED, REJECTED); the event is kept as sent."
    );
    let Event::PhoneNumberName(n) = a.envelope.event() else {
        panic!()
    };
    assert_eq!(n.decision(), &Decision::Unknown("ESCALATED".into()));

    let a = accept(set(
        json(NAME_UPDATE),
        "body.rejectionReason",
        json!("NAME_TOO_LONG"),
    ));
    assert_eq!(
        flagged(&a),
        [("unknown_rejection_reason", "body.rejectionReason")]
    );
    let Event::PhoneNumberName(n) = a.envelope.event() else {
        panic!()
    };
    assert_eq!(
        n.rejection_reason(),
        Some(&RejectionReason::Unknown("NAME_TOO_LONG".into()))
    );

    for (decision, typed) in [
        ("APPROVED", Decision::Approved),
        ("PENDING", Decision::Pending),
        ("DEFERRED", Decision::Deferred),
        ("REJECTED", Decision::Rejected),
    ] {
        let a = accept(set(json(NAME_UPDATE), "body.decision", json!(decision)));
        assert!(a.warnings.is_empty(), "{decision}: {:?}", a.warnings);
        let Event::PhoneNumberName(n) = a.envelope.event() else {
            panic!()
        };
        assert_eq!(n.decision(), &typed);
    }
    for reason in [
        "NAME_EMPLOYEE_ISSUE",
        "NAME_INDIVIDUAL_ISSUE",
        "NAME_ENDCLIENT_NOTRELATED",
        "NAME_FORMAT_UNACCEPTABLE",
        "NAME_NOT_CONSISTENT",
        "UNKNOWN",
    ] {
        let a = accept(set(
            json(NAME_UPDATE),
            "body.rejectionReason",
            json!(reason),
        ));
        assert!(a.warnings.is_empty(), "{reason}: {:?}", a.warnings);
        let Event::PhoneNumberName(n) = a.envelope.event() else {
            panic!()
        };
        let kept = n.rejection_reason().unwrap();
        assert!(!matches!(kept, RejectionReason::Unknown(_)), "{reason}");
        assert_eq!(kept.as_str(), reason);
    }
}

#[test]
fn a_template_is_alarming_when_rejected_paused_disabled_or_its_quality_turns_red() {
    for (status, alarming) in [
        ("PENDING", false),
        ("APPROVED", false),
        ("REJECTED", true),
        ("PAUSED", true),
        ("DISABLED", true),
        ("FLAGGED", false),
    ] {
        let a = accept(set(
            json(TEMPLATE_STATUS),
            "body.templateStatus",
            json!(status),
        ));
        assert_eq!(template_status(&a).is_alarming(), alarming, "{status}");
    }
    for (previous, new, alarming) in [
        ("GREEN", "RED", true),
        ("YELLOW", "RED", true),
        ("RED", "RED", true),
        ("RED", "YELLOW", false),
        ("RED", "GREEN", false),
        ("GREEN", "YELLOW", false),
        ("GREEN", "UNKNOWN", false),
        ("GREEN", "red", false),
    ] {
        let v = set(
            json(TEMPLATE_QUALITY),
            "body.previousQualityScore",
            json!(previous),
        );
        let a = accept(set(v, "body.newQualityScore", json!(new)));
        let Event::TemplateQuality(q) = a.envelope.event() else {
            panic!()
        };
        assert_eq!(q.is_alarming(), alarming, "{previous} -> {new}");
    }
}

/// Template ids are Meta's, digits sent as a string: an integer is read with every digit.
#[test]
fn a_template_id_keeps_every_digit() {
    let digits: Value = serde_json::from_str("900000000000000000077").unwrap();
    let a = accept(set(
        json(TEMPLATE_STATUS),
        "body.templateId",
        digits.clone(),
    ));
    assert_eq!(template_status(&a).template_id(), "900000000000000000077");
    let a = accept(set(json(TEMPLATE_QUALITY), "body.templateId", digits));
    let Event::TemplateQuality(q) = a.envelope.event() else {
        panic!()
    };
    assert_eq!(q.template_id(), "900000000000000000077");
}

/// Before these types were typed they were `Other`, keyed by envelope id and body digest:
/// typed, each keeps exactly that key first, so a redelivery of an event stored before is
/// recognised. The events that say what happened to what also have a key of that and of
/// `eventTime`: the same news under another envelope id is a duplicate.
#[test]
fn each_keeps_the_dedup_key_it_had_as_an_untyped_event_and_adds_its_fact() {
    let misspelled = set(
        json(TEMPLATE_STATUS),
        "type",
        json!("whatsapp_template_status_update"),
    )
    .to_string();
    for (text, facts) in [
        (TEMPLATE_STATUS, 1),
        (TEMPLATE_QUALITY, 1),
        (CATEGORY_UPDATE, 0),
        (NAME_UPDATE, 1),
        (ACCOUNT_REVIEW, 0),
        (misspelled.as_str(), 1),
    ] {
        let typed = parse(text.as_bytes()).unwrap().envelope;
        assert!(
            !matches!(typed.event(), Event::Other { .. }),
            "{:?}",
            typed.event()
        );
        let untyped = untyped(text);
        assert!(matches!(untyped.event(), Event::Other { .. }));
        let keys = typed.dedup_keys();
        assert_eq!(keys[0], untyped.dedup_key(), "{text}");
        assert_eq!(keys.len(), 1 + facts, "{text}: {keys:?}");
        assert!(matches!(typed.dedup_key(), DedupKey::Other { .. }));
        // Without an eventTime, nothing says two pushes are the same news.
        let timeless = parse(&bytes(remove(json(text), "eventTime"))).unwrap();
        assert_eq!(timeless.envelope.dedup_keys().len(), 1, "{text}");
    }
    // Another envelope id or another body is another event.
    let key = |v: Value| parse(&bytes(v)).unwrap().envelope.dedup_key();
    let base = key(json(TEMPLATE_STATUS));
    assert_ne!(
        base,
        key(set(json(TEMPLATE_STATUS), "id", json!("other-id")))
    );
    assert_ne!(
        base,
        key(set(
            json(TEMPLATE_STATUS),
            "body.templateStatus",
            json!("APPROVED")
        ))
    );
    // The fact: the same under another envelope id, or with the same instant written
    // otherwise; another status, template or time is another fact.
    let fact = |v: Value| {
        parse(&bytes(v))
            .unwrap()
            .envelope
            .dedup_keys()
            .pop()
            .unwrap()
    };
    let base = fact(json(TEMPLATE_STATUS));
    assert!(matches!(base, DedupKey::Fact { .. }));
    assert_eq!(
        base,
        fact(set(json(TEMPLATE_STATUS), "id", json!("other-id")))
    );
    assert_eq!(
        base,
        fact(set(
            json(TEMPLATE_STATUS),
            "eventTime",
            json!("2025-03-04 09:01:12.087")
        ))
    );
    for (path, value) in [
        ("body.templateStatus", json!("APPROVED")),
        ("body.templateId", json!("900000000000099")),
        ("eventTime", json!("2025-03-04T09:01:13.087Z")),
    ] {
        assert_ne!(
            base,
            fact(set(json(TEMPLATE_STATUS), path, value)),
            "{path}"
        );
    }
    let base = fact(json(NAME_UPDATE));
    assert_eq!(base, fact(set(json(NAME_UPDATE), "id", json!("other-id"))));
    assert_ne!(
        base,
        fact(set(json(NAME_UPDATE), "body.decision", json!("APPROVED")))
    );
}

/// The same text under a type innohook does not read, as these types were read before
/// they were typed (only the type changes; the body is the text that was sent).
fn untyped(text: &str) -> Envelope {
    let sent = json(text)["type"].as_str().unwrap().to_owned();
    let text = text.replacen(&format!("\"{sent}\""), "\"whatsapp_unlisted_event\"", 1);
    parse(text.as_bytes()).unwrap().envelope
}
