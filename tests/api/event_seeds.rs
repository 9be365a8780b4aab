//! The three examples from the InnoPaaS doc, verbatim, checked field by field.

use innohook::event::{Event, InitiateType, Status, parse};

use crate::helpers::seed_bytes;

#[test]
fn delivered_example_is_accepted_with_every_field_typed() {
    let a = parse(&seed_bytes("delivered")).expect("accepted");
    let env = &a.envelope;
    assert_eq!(env.id(), "e5cb1bc6-ad90-419d-8f83-aa394c0b7cc7");
    assert_eq!(env.event_type(), "whatsapp_message_status_updated");
    let t = env.event_time().unwrap();
    assert_eq!(t.original(), "2023-02-22T12:00:00.000Z");
    assert_eq!(t.at().to_rfc3339(), "2023-02-22T12:00:00+00:00");
    let s = env.message_status().unwrap();
    assert_eq!(s.message_id(), "356139161272397824");
    assert_eq!(s.account_name(), "IW123456");
    assert_eq!(s.waba_id(), "11231231212331");
    assert_eq!(s.wamid(), "wamid.BgNODYxN...");
    assert_eq!(s.status(), &Status::Delivered);
    assert_eq!(s.uid(), Some("2002302023002010121"));
    assert_eq!(s.send_phone(), "65123101212312");
    assert!(s.error().is_none());
    let c = s.conversation().unwrap();
    assert_eq!(c.id(), Some("00e5a7e14a588d96bd2343d105d03ec5"));
    assert_eq!(c.initiate_type(), Some(&InitiateType::BusinessInitiated));
    assert_eq!(
        c.expire_at().unwrap().original(),
        "2023-02-23T12:00:00.000Z"
    );
    assert_eq!(
        c.expire_at().unwrap().at().to_rfc3339(),
        "2023-02-23T12:00:00+00:00"
    );
    // `currency` is not in the field table: kept, and flagged.
    let kept: serde_json::Value = serde_json::from_str(env.raw()).unwrap();
    assert_eq!(kept["body"]["currency"], "USD");
    let flagged: Vec<_> = a
        .warnings
        .iter()
        .map(|w| (w.code, w.field.as_str()))
        .collect();
    assert_eq!(flagged, [("unknown_field", "body.currency")]);
}

#[test]
fn read_example_is_accepted_with_every_field_typed() {
    let a = parse(&seed_bytes("read")).expect("accepted");
    let env = &a.envelope;
    assert_eq!(env.id(), "cd0a316c-a781-4589-9f5f-5502ccf1f60f");
    assert_eq!(
        env.event_time().unwrap().original(),
        "2023-05-26T02:18:44.115Z"
    );
    assert_eq!(
        env.event_time().unwrap().at().timestamp_millis(),
        1_685_067_524_115
    );
    let s = env.message_status().unwrap();
    assert_eq!(s.message_id(), "356139161272397824");
    assert_eq!(s.account_name(), "15902677617");
    assert_eq!(s.waba_id(), "WHATSAPP_BUSINESS_ACCOUNT_ID");
    assert_eq!(s.status(), &Status::Read);
    assert_eq!(s.uid(), Some("2002302023002010121"));
    assert_eq!(s.send_phone(), "65123101212312");
    assert_eq!(
        s.wamid(),
        "wamid.HBgNODYxNjY4NTE3NzYxMhUCABEYEjQ0RTYyQTM5QzAyMkU0QkNERgA="
    );
    assert!(s.conversation().is_none());
    assert!(s.error().is_none());
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
}

#[test]
fn failed_example_is_accepted_with_every_field_typed() {
    let a = parse(&seed_bytes("failed")).expect("accepted");
    let env = &a.envelope;
    assert_eq!(env.id(), "e5cb1bc6-ad90-419d-8f83-aa394c0b7cc7");
    assert_eq!(
        env.event_time().unwrap().original(),
        "2023-05-25T10:31:08.167Z"
    );
    let s = env.message_status().unwrap();
    assert_eq!(s.message_id(), "356139161272397824");
    assert_eq!(s.account_name(), "15902677617");
    assert_eq!(s.waba_id(), "WHATSAPP_BUSINESS_ACCOUNT_ID");
    assert_eq!(s.status(), &Status::Failed);
    assert_eq!(s.uid(), Some("2002302023002010121"));
    assert_eq!(s.send_phone(), "65123101212312");
    let e = s.error().unwrap();
    assert_eq!(e.code(), "131014");
    assert_eq!(
        e.message(),
        Some("Request for url https://URL.jpg failed with error: 404 (Not Found)")
    );
    assert!(s.conversation().is_none());
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
}

#[test]
fn the_doc_reuses_one_envelope_id_so_dedup_keys_come_from_message_and_status() {
    let delivered = parse(&seed_bytes("delivered")).unwrap().envelope;
    let failed = parse(&seed_bytes("failed")).unwrap().envelope;
    assert_eq!(delivered.id(), failed.id());
    assert_ne!(delivered.dedup_key(), failed.dedup_key());
    assert!(matches!(delivered.event(), Event::MessageStatus(_)));
}
