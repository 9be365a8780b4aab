//! `whatsapp_mo_message_received`: every example of the InnoPaaS notes (§4.5) typed field
//! by field, every reject and warn rule of `src/event/inbound.rs` with its exact code,
//! field and sentence, and the two dedup keys, down to a redelivery under another
//! envelope id through the real server.

use innohook::event::{
    Content, DedupKey, Event, InboundMessage, Interactive, MediaKind, RejectCode, Warning, parse,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{answer, remove, set, spawn_app};

/// The wamid of the example message, and of the business message it quotes.
pub const WAMID: &str = "wamid.HBgKNjU4MTIzNDU2NxUCABIYFjNFQjBBQUFBQUFBQUFBQUFBQUEA";
const QUOTED: &str = "wamid.HBgKNjU4MTIzNDU2NxUCABEYEjQ0QjJDMUQwRTlGOEE3QjYA";

/// The full example: a text reply quoting an earlier business message.
pub fn text_example() -> Value {
    json!({
      "id": "3f6c1d2e-8a4b-4c9d-9e0f-1a2b3c4d5e6f",
      "type": "whatsapp_mo_message_received",
      "eventTime": "2025-03-04T08:15:30.412Z",
      "body": {
        "id": "400000000000000101",
        "accountName": "IW0000001",
        "wabaId": "100000000000001",
        "wamid": "wamid.HBgKNjU4MTIzNDU2NxUCABIYFjNFQjBBQUFBQUFBQUFBQUFBQUEA",
        "from": "6581234567",
        "to": "6590001111",
        "sendTime": "2025-03-04T08:15:29.000Z",
        "customerProfile": { "name": "Mei Lin" },
        "type": "text",
        "text": { "body": "Can I change my delivery slot?" },
        "context": {
          "from": "6590001111",
          "id": "wamid.HBgKNjU4MTIzNDU2NxUCABEYEjQ0QjJDMUQwRTlGOEE3QjYA"
        }
      }
    })
}

/// Another example: the full one with its `type`, content and context replaced by
/// `keys` ("only the type and content keys of body differ").
pub fn example(keys: Value) -> Value {
    let mut v = text_example();
    let body = v["body"].as_object_mut().unwrap();
    for k in ["type", "text", "context"] {
        body.shift_remove(k);
    }
    for (k, value) in keys.as_object().unwrap() {
        body.insert(k.clone(), value.clone());
    }
    v
}

/// Every example of the notes, by name, as given there.
pub fn examples() -> Vec<(&'static str, Value)> {
    vec![
        ("text", text_example()),
        (
            "reaction",
            example(json!({ "type": "reaction",
              "reaction": { "messageId": "wamid.HBgKNjU4MTIzNDU2NxUCABEYEjQ0QjJDMUQwRTlGOEE3QjYA", "emoji": "👍" } })),
        ),
        (
            "image",
            example(json!({ "type": "image",
              "image": { "caption": "damaged box", "mimeType": "image/jpeg",
                         "sha256": "q9Zk3m0VtQ1cYl2bXw8uR4sP7nE6dA5fH0jK1LmN2oP=",
                         "link": "https://media.example.invalid/wa/400000000000000102" } })),
        ),
        (
            "sticker",
            example(json!({ "type": "sticker",
              "sticker": { "mimeType": "image/webp", "sha256": "Zm9vYmFyc3RpY2tlcmhhc2gxMjM0NTY3ODkwYWJjZA==",
                           "link": "https://media.example.invalid/wa/400000000000000103" } })),
        ),
        (
            "video",
            example(json!({ "type": "video",
              "video": { "mimeType": "video/mp4", "sha256": "dmlkZW9oYXNoMDAwMDAwMDAwMDAwMDAwMDAwMDAwMA==",
                         "link": "https://media.example.invalid/wa/400000000000000104" } })),
        ),
        (
            "audio",
            example(json!({ "type": "audio",
              "audio": { "mimeType": "audio/ogg; codecs=opus", "sha256": "YXVkaW9oYXNoMTExMTExMTExMTExMTExMTExMTExMQ==",
                         "link": "https://media.example.invalid/wa/400000000000000105" } })),
        ),
        (
            "document",
            example(json!({ "type": "document",
              "document": { "caption": "invoice", "filename": "INV-2025-0042.pdf", "mimeType": "application/pdf",
                            "sha256": "ZG9jaGFzaDIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMg==",
                            "link": "https://media.example.invalid/wa/400000000000000106" } })),
        ),
        (
            "location",
            example(json!({ "type": "location",
              "location": { "latitude": 1.28397, "longitude": 103.85108, "name": "Raffles Place MRT",
                            "address": "5 Raffles Place, Singapore 048618" } })),
        ),
        (
            "contacts",
            example(json!({ "type": "contacts",
              "contact": [ {
                "name": { "formattedName": "Arjun Rao", "firstName": "Arjun", "lastName": "Rao" },
                "phones": [ { "phone": "+65 9123 4567", "type": "WORK", "wa_id": "6591234567" } ],
                "emails": [ { "email": "arjun@example.invalid", "type": "WORK" } ],
                "org": { "company": "Example Pte Ltd", "department": "Ops", "title": "Lead" },
                "addresses": [], "urls": [], "birthday": "1990-05-17" } ] })),
        ),
        (
            "button",
            example(json!({ "type": "button",
              "button": { "text": "Reschedule", "payload": "RESCHEDULE_ORDER_77" },
              "context": { "from": "6590001111", "id": "wamid.HBgKNjU4MTIzNDU2NxUCABEYEjQ0QjJDMUQwRTlGOEE3QjYA" } })),
        ),
        (
            "list reply",
            example(json!({ "type": "interactive",
              "interactive": { "type": "listReply",
                               "listReply": { "id": "slot_0900", "title": "09:00–11:00", "description": "Tomorrow morning" } },
              "context": { "from": "6590001111", "id": "wamid.HBgKNjU4MTIzNDU2NxUCABEYEjU1QzNEMkUxRjBBOUI4QzcA" } })),
        ),
        (
            "button reply",
            example(json!({ "type": "interactive",
              "interactive": { "type": "buttonReply", "buttonReply": { "id": "confirm_yes", "title": "Yes" } },
              "context": { "from": "6590001111", "id": "wamid.HBgKNjU4MTIzNDU2NxUCABEYEjY2RDRFM0YyQTFCMEM5RDgA" } })),
        ),
        (
            "unknown",
            example(json!({ "type": "unknown",
              "errors": [ { "code": 131051, "title": "Unsupported message type", "details": "Message type not supported" } ] })),
        ),
    ]
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// The typed message and the warnings of an accepted inbound event.
fn accepted(v: &Value) -> (InboundMessage, Vec<Warning>) {
    let a = parse(&bytes(v)).unwrap_or_else(|r| panic!("rejected: {r:?}\n{v}"));
    let m = a.envelope.inbound_message();
    let m = m.unwrap_or_else(|| panic!("not an inbound message: {:?}", a.envelope.event()));
    (m.clone(), a.warnings)
}

fn example_named(name: &str) -> Value {
    examples().into_iter().find(|(n, _)| *n == name).unwrap().1
}

#[test]
fn every_example_is_accepted_typed_and_without_warnings() {
    for (name, v) in examples() {
        let (m, warnings) = accepted(&v);
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        // What every example shares.
        assert_eq!(m.wamid(), WAMID, "{name}");
        assert_eq!(m.from(), "6581234567");
        assert_eq!(m.to(), Some("6590001111"));
        assert_eq!(m.message_id(), Some("400000000000000101"));
        assert_eq!(m.account_name(), Some("IW0000001"));
        assert_eq!(m.waba_id(), Some("100000000000001"));
        assert_eq!(m.customer_name(), Some("Mei Lin"));
        let sent = m.send_time().unwrap();
        assert_eq!(sent.original(), "2025-03-04T08:15:29.000Z");
        assert_eq!(sent.at().to_rfc3339(), "2025-03-04T08:15:29+00:00");
        assert_eq!(m.content_type(), v["body"]["type"].as_str().unwrap());
    }
    let status = parse(&crate::helpers::seed_bytes("read")).unwrap();
    assert!(status.envelope.inbound_message().is_none());
}

#[test]
fn the_text_example_is_a_reply_to_the_message_it_quotes() {
    let (m, _) = accepted(&text_example());
    let Content::Text(t) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!(t.body(), "Can I change my delivery slot?");
    let c = m.context().unwrap();
    assert_eq!((c.id(), c.from()), (Some(QUOTED), Some("6590001111")));
    assert_eq!(m.reply_to(), Some(QUOTED));
    assert_eq!(m.summary(), "Can I change my delivery slot?");
}

#[test]
fn the_media_examples_are_typed_with_their_kind_and_fields() {
    for (name, kind, caption, filename, mime, summary) in [
        (
            "image",
            MediaKind::Image,
            Some("damaged box"),
            None,
            "image/jpeg",
            "image: damaged box",
        ),
        (
            "sticker",
            MediaKind::Sticker,
            None,
            None,
            "image/webp",
            "sticker",
        ),
        ("video", MediaKind::Video, None, None, "video/mp4", "video"),
        (
            "audio",
            MediaKind::Audio,
            None,
            None,
            "audio/ogg; codecs=opus",
            "audio",
        ),
        (
            "document",
            MediaKind::Document,
            Some("invoice"),
            Some("INV-2025-0042.pdf"),
            "application/pdf",
            "document: invoice",
        ),
    ] {
        let v = example_named(name);
        let (m, _) = accepted(&v);
        let Content::Media(media) = m.content() else {
            panic!("{name}: {:?}", m.content())
        };
        let sent = &v["body"][name];
        assert_eq!(media.kind(), kind);
        assert_eq!(media.kind().as_str(), name);
        assert_eq!(media.caption(), caption, "{name}");
        assert_eq!(media.filename(), filename, "{name}");
        assert_eq!(media.mime_type(), Some(mime));
        assert_eq!(media.sha256(), sent["sha256"].as_str());
        assert_eq!(media.link(), sent["link"].as_str());
        assert!(media.link().unwrap().starts_with("https://"));
        assert_eq!(media.id(), None);
        assert_eq!(m.summary(), summary);
        assert_eq!(m.reply_to(), None, "{name}: no context");
    }
}

#[test]
fn the_location_example_has_its_coordinates_as_numbers() {
    let (m, _) = accepted(&example_named("location"));
    let Content::Location(l) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!((l.latitude(), l.longitude()), (1.28397, 103.85108));
    assert_eq!(l.name(), Some("Raffles Place MRT"));
    assert_eq!(l.address(), Some("5 Raffles Place, Singapore 048618"));
    assert_eq!(m.summary(), "location: 1.28397,103.85108 Raffles Place MRT");
}

#[test]
fn the_contacts_example_has_its_names_and_phones_typed_and_the_whole_card_kept() {
    let v = example_named("contacts");
    let (m, _) = accepted(&v);
    let Content::Contacts(contacts) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    let name = c.name().unwrap();
    assert_eq!(name.formatted_name(), Some("Arjun Rao"));
    assert_eq!(name.first_name(), Some("Arjun"));
    assert_eq!(name.last_name(), Some("Rao"));
    assert_eq!(name.middle_name(), None);
    let phone = &c.phones()[0];
    assert_eq!(
        (phone.phone(), phone.kind(), phone.wa_id()),
        ("+65 9123 4567", Some("WORK"), Some("6591234567"))
    );
    assert_eq!(c.card(), &v["body"]["contact"][0]);
    assert_eq!(c.card()["org"]["company"], "Example Pte Ltd");
    assert_eq!(m.summary(), "contacts: Arjun Rao");
}

#[test]
fn the_button_and_interactive_examples_are_replies_to_their_context() {
    let (m, _) = accepted(&example_named("button"));
    let Content::Button(b) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!(
        (b.text(), b.payload()),
        (Some("Reschedule"), Some("RESCHEDULE_ORDER_77"))
    );
    assert_eq!(m.reply_to(), Some(QUOTED));
    assert_eq!(m.summary(), "button: Reschedule");

    let (m, _) = accepted(&example_named("list reply"));
    let Content::Interactive(Interactive::ListReply(r)) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!(
        (r.id(), r.title(), r.description()),
        ("slot_0900", Some("09:00–11:00"), Some("Tomorrow morning"))
    );
    assert_eq!(
        m.reply_to(),
        Some("wamid.HBgKNjU4MTIzNDU2NxUCABEYEjU1QzNEMkUxRjBBOUI4QzcA")
    );
    assert_eq!(m.summary(), "list reply: 09:00–11:00");

    let (m, _) = accepted(&example_named("button reply"));
    let Content::Interactive(i @ Interactive::ButtonReply(r)) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!(i.kind(), "buttonReply");
    assert_eq!(
        (r.id(), r.title(), r.description()),
        ("confirm_yes", Some("Yes"), None)
    );
    assert_eq!(
        m.reply_to(),
        Some("wamid.HBgKNjU4MTIzNDU2NxUCABEYEjY2RDRFM0YyQTFCMEM5RDgA")
    );
    assert_eq!(m.summary(), "button reply: Yes");
}

#[test]
fn the_reaction_example_replies_to_the_message_reacted_to() {
    let (m, _) = accepted(&example_named("reaction"));
    let Content::Reaction(r) = m.content() else {
        panic!("{:?}", m.content())
    };
    assert_eq!((r.message_id(), r.emoji()), (QUOTED, Some("👍")));
    assert_eq!(m.reply_to(), Some(QUOTED));
    assert_eq!(m.summary(), "reaction: 👍");
}

#[test]
fn the_unknown_example_keeps_its_errors() {
    let (m, _) = accepted(&example_named("unknown"));
    let Content::Unsupported(errors) = m.content() else {
        panic!("{:?}", m.content())
    };
    let e = &errors[0];
    assert_eq!(
        (e.code(), e.title(), e.details()),
        (
            Some("131051"),
            Some("Unsupported message type"),
            Some("Message type not supported")
        )
    );
    assert_eq!(m.summary(), "unsupported: Unsupported message type");
}

enum Expect {
    /// Rejected with this code, field and sentence.
    Reject(RejectCode, &'static str, &'static str),
    /// Accepted, with this warning (code, field, sentence) among its warnings.
    Warn(&'static str, &'static str, &'static str),
    /// Accepted, and this check holds.
    Accept(fn(&InboundMessage, &[Warning])),
}
use Expect::*;

/// The text example with the value at `path` (under `body`) set or, for `None`, removed.
fn text_with(path: &str, value: Option<Value>) -> Value {
    with(text_example(), path, value)
}

fn with(v: Value, path: &str, value: Option<Value>) -> Value {
    let path = format!("body.{path}");
    match value {
        Some(value) => set(v, &path, value),
        None => remove(v, &path),
    }
}

/// The example `name` with the value at `path` (under `body`) set, or removed.
fn example_with(name: &str, path: &str, value: Option<Value>) -> Value {
    with(example_named(name), path, value)
}

/// A JSON value nesting 100 arrays.
fn deep() -> Value {
    serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap()
}

// One row per rule: a table reads better unwrapped.
#[rustfmt::skip]
fn cases() -> Vec<(&'static str, Value, Expect)> {
    use RejectCode::*;
    let t = text_with;
    let e = example_with;
    let list = |path: &str, value: Option<Value>| e("list reply", path, value);
    vec![
        // What the message is, who sent it, what kind it is: refused without them.
        ("no wamid", t("wamid", None),
            Reject(MissingField, "body.wamid", "body.wamid is missing: the event must carry the WhatsApp message id.")),
        ("empty wamid", t("wamid", Some(json!(""))),
            Reject(EmptyField, "body.wamid", "body.wamid is empty: the event must carry the WhatsApp message id.")),
        ("numeric wamid", t("wamid", Some(json!(7))),
            Reject(InvalidField, "body.wamid", "body.wamid must be a string, but it is a JSON number.")),
        ("no from", t("from", None),
            Reject(MissingField, "body.from", "body.from is missing: the event must carry the customer's WhatsApp number.")),
        ("empty from", t("from", Some(json!(""))),
            Reject(EmptyField, "body.from", "body.from is empty: the event must carry the customer's WhatsApp number.")),
        ("object from", t("from", Some(json!({}))),
            Reject(InvalidField, "body.from", "body.from must be a string or an integer, but it is a JSON object.")),
        ("no type", t("type", None),
            Reject(MissingField, "body.type", "body.type is missing: the event must carry the message type (text, image, location, interactive, …).")),
        ("empty type", t("type", Some(json!(""))),
            Reject(EmptyField, "body.type", "body.type is empty: the event must carry the message type (text, image, location, interactive, …).")),
        // Documented fields of the wrong JSON type.
        ("object to", t("to", Some(json!({"n": 1}))),
            Reject(InvalidField, "body.to", "body.to must be a string or an integer, but it is a JSON object.")),
        ("string customerProfile", t("customerProfile", Some(json!("Mei Lin"))),
            Reject(InvalidField, "body.customerProfile", "body.customerProfile must be a JSON object, but it is a JSON string.")),
        ("bad sendTime", t("sendTime", Some(json!("yesterday"))),
            Reject(InvalidTimestamp, "body.sendTime", "body.sendTime is \"yesterday\", which is not a time: use RFC 3339 (2023-02-22T12:00:00.000Z) or YYYY-MM-DD HH:MM:SS (UTC).")),
        // The message replied to.
        ("context without id", t("context.id", None),
            Reject(MissingField, "body.context.id", "body.context.id is missing: the event must carry the WhatsApp message id of the message replied to (a context without one replies to nothing).")),
        ("context with an empty id", t("context.id", Some(json!(""))),
            Reject(EmptyField, "body.context.id", "body.context.id is empty: the event must carry the WhatsApp message id of the message replied to (a context without one replies to nothing).")),
        ("string context", t("context", Some(json!(QUOTED))),
            Reject(InvalidField, "body.context", "body.context must be a JSON object, but it is a JSON string.")),
        // The content of a documented type: there, an object, and what makes it that content.
        ("text message without text", t("text", None),
            Reject(MissingField, "body.text", "body.text is missing: the event must carry the text of a text message.")),
        ("text as a string", t("text", Some(json!("hi"))),
            Reject(InvalidField, "body.text", "body.text must be a JSON object, but it is a JSON string.")),
        ("text without body", t("text.body", None),
            Reject(MissingField, "body.text.body", "body.text.body is missing: the event must carry the message text.")),
        ("image message without image", e("image", "image", None),
            Reject(MissingField, "body.image", "body.image is missing: the event must carry the media of an image message.")),
        ("image as an array", e("image", "image", Some(json!([]))),
            Reject(InvalidField, "body.image", "body.image must be a JSON object, but it is a JSON array.")),
        ("numeric caption", e("document", "document.caption", Some(json!(7))),
            Reject(InvalidField, "body.document.caption", "body.document.caption must be a string, but it is a JSON number.")),
        ("location without latitude", e("location", "location.latitude", None),
            Reject(MissingField, "body.location.latitude", "body.location.latitude is missing: the event must carry the latitude of the location.")),
        ("latitude as a string", e("location", "location.latitude", Some(json!("1.28397"))),
            Reject(InvalidField, "body.location.latitude", "body.location.latitude must be a number, but it is a JSON string.")),
        ("latitude off the globe", e("location", "location.latitude", Some(json!(91))),
            Reject(InvalidField, "body.location.latitude", "body.location.latitude is 91, which is not a latitude: it must be between -90 and 90.")),
        ("longitude off the globe", e("location", "location.longitude", Some(json!(-180.5))),
            Reject(InvalidField, "body.location.longitude", "body.location.longitude is -180.5, which is not a longitude: it must be between -180 and 180.")),
        ("latitude too large for a number", e("location", "location.latitude", Some(serde_json::from_str("1e+400").unwrap())),
            Reject(InvalidField, "body.location.latitude", "body.location.latitude is 1e+400, which is too large for a number.")),
        ("contacts message without contacts", e("contacts", "contact", None),
            Reject(MissingField, "body.contacts", "body.contacts is missing: the event must carry the contacts (as contacts or contact) of a contacts message.")),
        ("contact as a string", e("contacts", "contact", Some(json!("Arjun"))),
            Reject(InvalidField, "body.contact", "body.contact must be a JSON array of objects (or one object), but it is a JSON string.")),
        ("a contact that is no object", e("contacts", "contact", Some(json!(["Arjun"]))),
            Reject(InvalidField, "body.contact[0]", "body.contact[0] must be a JSON object, but it is a JSON string.")),
        ("a contact's name as a string", e("contacts", "contact", Some(json!([{"name": "Arjun"}]))),
            Reject(InvalidField, "body.contact[0].name", "body.contact[0].name must be a JSON object, but it is a JSON string.")),
        ("a phone that is no object", e("contacts", "contact", Some(json!([{"phones": [{"phone": "1"}, 65]}]))),
            Reject(InvalidField, "body.contact[0].phones[1]", "body.contact[0].phones[1] must be a JSON object, but it is a JSON number.")),
        ("button as a string", e("button", "button", Some(json!("Reschedule"))),
            Reject(InvalidField, "body.button", "body.button must be a JSON object, but it is a JSON string.")),
        ("interactive as an array", list("interactive", Some(json!([]))),
            Reject(InvalidField, "body.interactive", "body.interactive must be a JSON object, but it is a JSON array.")),
        ("interactive without type or reply", list("interactive", Some(json!({}))),
            Reject(MissingField, "body.interactive.type", "body.interactive.type is missing: the event must carry the kind of reply (listReply or buttonReply).")),
        ("list reply without listReply", list("interactive.listReply", None),
            Reject(MissingField, "body.interactive.listReply", "body.interactive.listReply is missing: the event must carry the row chosen.")),
        ("list reply without id", list("interactive.listReply.id", None),
            Reject(MissingField, "body.interactive.listReply.id", "body.interactive.listReply.id is missing: the event must carry the id of the row chosen.")),
        ("button reply with an empty id", e("button reply", "interactive.buttonReply.id", Some(json!(""))),
            Reject(EmptyField, "body.interactive.buttonReply.id", "body.interactive.buttonReply.id is empty: the event must carry the id of the button tapped.")),
        ("reaction message without reaction", e("reaction", "reaction", None),
            Reject(MissingField, "body.reaction", "body.reaction is missing: the event must carry the reaction of a reaction message.")),
        ("reaction without messageId", e("reaction", "reaction.messageId", None),
            Reject(MissingField, "body.reaction.messageId", "body.reaction.messageId is missing: the event must carry the WhatsApp message id of the message reacted to.")),
        ("reaction with an empty messageId", e("reaction", "reaction.messageId", Some(json!(""))),
            Reject(EmptyField, "body.reaction.messageId", "body.reaction.messageId is empty: the event must carry the WhatsApp message id of the message reacted to.")),
        ("errors as a string", e("unknown", "errors", Some(json!("unsupported"))),
            Reject(InvalidField, "body.errors", "body.errors must be a JSON array of objects (or one object), but it is a JSON string.")),
        // The shared nesting limit holds in what is kept whole.
        ("deep undocumented field", t("deep", Some(deep())),
            Reject(InvalidField, "body.deep", "body.deep nests arrays or objects more than 64 levels deep; an InnoPaaS event never does.")),
        ("deep order", t("type", Some(json!("order"))).pipe(|v| with(v, "order", Some(deep()))),
            Reject(InvalidField, "body.order", "body.order nests arrays or objects more than 64 levels deep; an InnoPaaS event never does.")),

        // Documented but not needed to read the message: kept, flagged.
        ("no to", t("to", None),
            Warn("missing_field", "body.to", "body.to is missing or empty: the documentation lists the business number for this event, which is kept without it.")),
        ("no customerProfile", t("customerProfile", None),
            Warn("missing_field", "body.customerProfile", "body.customerProfile is missing or empty: the documentation lists the customer's profile for this event, which is kept without it.")),
        ("no sendTime", t("sendTime", None),
            Warn("missing_field", "body.sendTime", "body.sendTime is missing or empty: the documentation lists when the customer sent it for this event, which is kept without it.")),
        ("no InnoPaaS id", t("id", None),
            Warn("missing_field", "body.id", "body.id is missing or empty: the documentation lists the InnoPaaS message id for this event, which is kept without it.")),
        ("empty accountName", t("accountName", Some(json!(""))),
            Warn("missing_field", "body.accountName", "body.accountName is missing or empty: the documentation lists the API account for this event, which is kept without it.")),
        ("no wabaId", t("wabaId", None),
            Warn("missing_field", "body.wabaId", "body.wabaId is missing or empty: the documentation lists the WhatsApp Business Account id for this event, which is kept without it.")),
        ("context without from", t("context.from", None),
            Warn("missing_field", "body.context.from", "body.context.from is missing or empty: the documentation lists the sender of the message replied to for this event, which is kept without it.")),
        ("button without payload", e("button", "button.payload", None),
            Warn("missing_field", "body.button.payload", "body.button.payload is missing or empty: the documentation lists the button's payload for this event, which is kept without it.")),
        ("list reply without title", list("interactive.listReply.title", None),
            Warn("missing_field", "body.interactive.listReply.title", "body.interactive.listReply.title is missing or empty: the documentation lists the title of the row chosen for this event, which is kept without it.")),
        ("image without link or id", e("image", "image.link", None),
            Warn("missing_field", "body.image.link", "body.image.link is missing or empty, and there is no media id: the file cannot be downloaded; the message is kept without it.")),
        ("unknown without errors", e("unknown", "errors", None),
            Warn("missing_field", "body.errors", "body.errors is missing or empty: the documentation lists the errors of an unknown message for this event, which is kept without it.")),
        ("interactive without type", list("interactive.type", None),
            Warn("missing_field", "body.interactive.type", "body.interactive.type is missing or empty: the reply is read as the listReply it carries.")),
        // Undocumented fields, anywhere typed.
        ("undocumented body field", t("referral", Some(json!({"sourceType": "ad"}))),
            Warn("unknown_field", "body.referral", "body.referral is not a documented field; it is kept and passed on as sent.")),
        ("undocumented text field", t("text.previewUrl", Some(json!(true))),
            Warn("unknown_field", "body.text.previewUrl", "body.text.previewUrl is not a documented field; it is kept and passed on as sent.")),
        ("undocumented media field", e("audio", "audio.voice", Some(json!(true))),
            Warn("unknown_field", "body.audio.voice", "body.audio.voice is not a documented field; it is kept and passed on as sent.")),
        ("undocumented customerProfile field", t("customerProfile.waId", Some(json!("6581234567"))),
            Warn("unknown_field", "body.customerProfile.waId", "body.customerProfile.waId is not a documented field; it is kept and passed on as sent.")),
        ("undocumented contact field", e("contacts", "contact", Some(json!([{"name": {"formattedName": "A"}, "ims": []}]))),
            Warn("unknown_field", "body.contact[0].ims", "body.contact[0].ims is not a documented field; it is kept and passed on as sent.")),
        ("another type's content beside the message's own", t("image", Some(json!({"link": "x"}))),
            Warn("unknown_field", "body.image", "body.image is not a documented field; it is kept and passed on as sent.")),
        ("both contacts and contact", e("contacts", "contacts", Some(json!([{"name": {"formattedName": "B"}}]))),
            Warn("unknown_field", "body.contact", "body.contact is not a documented field; it is kept and passed on as sent.")),
        // Types whose content innohook keeps without interpreting.
        ("undocumented message type", t("type", Some(json!("poll"))).pipe(|v| with(v, "poll", Some(json!({"q": 1})))),
            Warn("unknown_content_type", "body.type", "Message type \"poll\" is not one InnoPaaS documents (text, image, audio, video, document, sticker, location, contacts, button, interactive, reaction, order, system, unknown); its content (body.poll) is kept as sent, not interpreted.")),
        ("order message", t("type", Some(json!("order"))).pipe(|v| with(v, "order", Some(json!({"catalogId": "c1"})))),
            Warn("untyped_content", "body.order", "InnoPaaS lists order messages but does not document their fields; body.order is kept as sent, not interpreted.")),
        ("system message", t("type", Some(json!("system"))).pipe(|v| with(v, "system", Some(json!({"body": "changed number"})))),
            Warn("untyped_content", "body.system", "InnoPaaS lists system messages but does not document their fields; body.system is kept as sent, not interpreted.")),
        ("a Flow reply", list("interactive", Some(json!({"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}}))),
            Warn("unknown_interactive_type", "body.interactive.type", "body.interactive.type is \"nfm_reply\", which InnoPaaS does not document (listReply, buttonReply); body.interactive is kept as sent, not interpreted.")),
        // Meta's spellings and shapes.
        ("snake_case interactive type", list("interactive", Some(json!({"type": "list_reply", "list_reply": {"id": "r", "title": "T"}}))),
            Warn("snake_case_interactive", "body.interactive.type", "body.interactive.type is \"list_reply\", Meta's snake_case spelling; InnoPaaS documents listReply, and it is read as listReply.")),
        ("snake_case interactive reply", list("interactive", Some(json!({"type": "buttonReply", "button_reply": {"id": "r", "title": "T"}}))),
            Warn("snake_case_interactive", "body.interactive.button_reply", "body.interactive.button_reply is named in Meta's snake_case spelling; InnoPaaS documents buttonReply, and it is read as buttonReply.")),
        ("contact as one object", e("contacts", "contact", Some(json!({"name": {"formattedName": "Arjun Rao"}}))),
            Warn("single_object", "body.contact", "body.contact is a single object, not an array; it is read as one contact.")),
        ("errors as one object", e("unknown", "errors", Some(json!({"code": 131051}))),
            Warn("single_object", "body.errors", "body.errors is a single object, not an array; it is read as one error.")),
        ("a contact's phones as one object", e("contacts", "contact", Some(json!([{"phones": {"phone": "+65 1"}}]))),
            Warn("single_object", "body.contact[0].phones", "body.contact[0].phones is a single object, not an array; it is read as one phone.")),
        ("a forwarded message's context", t("context", Some(json!({"forwarded": true}))),
            Warn("context_without_id", "body.context.id", "body.context.id is missing: this context marks a forwarded message, not a reply; it is kept as sent.")),

        // Read leniently, and exactly.
        ("sendTime without millis", t("sendTime", Some(json!("2025-03-04T08:15:29Z"))),
            Accept(|m, _| assert_eq!(m.send_time().unwrap().at().to_rfc3339(), "2025-03-04T08:15:29+00:00"))),
        ("sendTime in the field table's form, read as UTC", t("sendTime", Some(json!("2025-03-04 08:15:29"))),
            Accept(|m, w| {
                let sent = m.send_time().unwrap();
                assert_eq!(sent.original(), "2025-03-04 08:15:29");
                assert_eq!(sent.at().to_rfc3339(), "2025-03-04T08:15:29+00:00");
                assert!(w.is_empty(), "{w:?}");
            })),
        ("integer numbers keep every digit", t("from", Some(serde_json::from_str("6581234567890123456789").unwrap())).pipe(|v| with(v, "to", Some(json!(6590001111_u64)))),
            Accept(|m, _| assert_eq!((m.from(), m.to()), ("6581234567890123456789", Some("6590001111"))))),
        ("a removed reaction has an empty emoji", e("reaction", "reaction.emoji", Some(json!(""))),
            Accept(|m, w| {
                let Content::Reaction(r) = m.content() else { panic!("{:?}", m.content()) };
                assert_eq!(r.emoji(), None);
                assert_eq!(m.summary(), "reaction removed");
                assert_eq!(m.reply_to(), Some(QUOTED));
                assert!(w.is_empty(), "{w:?}");
            })),
        ("or none", e("reaction", "reaction.emoji", None),
            Accept(|m, _| assert_eq!(m.summary(), "reaction removed"))),
        ("contacts under the key of the field table", e("contacts", "contact", None).pipe(|v| with(v, "contacts", Some(json!([{"name": {"formattedName": "Arjun Rao"}}])))),
            Accept(|m, w| {
                assert!(w.is_empty(), "{w:?}");
                assert_eq!(m.summary(), "contacts: Arjun Rao");
            })),
        ("a contact without a name shows its phone", e("contacts", "contact", Some(json!([{"phones": [{"phone": "+65 1", "waId": "651"}]}]))),
            Accept(|m, _| {
                let Content::Contacts(c) = m.content() else { panic!("{:?}", m.content()) };
                assert_eq!(c[0].phones()[0].wa_id(), Some("651"));
                assert_eq!(m.summary(), "contacts: +65 1");
            })),
        ("media with an id and no link", e("image", "image.link", None).pipe(|v| with(v, "image.id", Some(json!(1234567890123456789_u64)))),
            Accept(|m, w| {
                let Content::Media(media) = m.content() else { panic!("{:?}", m.content()) };
                assert_eq!((media.id(), media.link()), (Some("1234567890123456789"), None));
                assert!(w.is_empty(), "{w:?}");
            })),
        ("snake_case replies are typed as the documented ones", list("interactive", Some(json!({"type": "list_reply", "list_reply": {"id": "r1", "title": "Row"}}))),
            Accept(|m, _| {
                let Content::Interactive(Interactive::ListReply(r)) = m.content() else { panic!("{:?}", m.content()) };
                assert_eq!((r.id(), r.title()), ("r1", Some("Row")));
                assert_eq!(m.summary(), "list reply: Row");
            })),
        ("a Flow reply is kept whole", list("interactive", Some(json!({"type": "nfm_reply", "nfm_reply": {"name": "flow"}}))),
            Accept(|m, _| {
                let Content::Interactive(i @ Interactive::Other { value, .. }) = m.content() else { panic!("{:?}", m.content()) };
                assert_eq!(i.kind(), "nfm_reply");
                assert_eq!(value["nfm_reply"]["name"], "flow");
                assert!(i.reply().is_none());
            })),
        ("an order is kept whole", t("type", Some(json!("order"))).pipe(|v| with(v, "order", Some(json!({"items": [{"qty": 10000000000000000000001_u128}]})))),
            Accept(|m, _| {
                assert_eq!(m.content(), &Content::Untyped(Some(json!({"items": [{"qty": 10000000000000000000001_u128}]}))));
                assert_eq!(m.summary(), "[unsupported message: order]");
                assert_eq!(m.reply_to(), Some(QUOTED), "its context still links it");
            })),
        ("an undocumented type without content", t("type", Some(json!("ephemeral"))),
            Accept(|m, w| {
                assert_eq!(m.content(), &Content::Untyped(None));
                assert_eq!(m.content_type(), "ephemeral");
                // `text` is no longer this message's content.
                assert!(w.iter().any(|w| w.code == "unknown_field" && w.field == "body.text"), "{w:?}");
            })),
        ("a forwarded message replies to nothing", t("context", Some(json!({"frequently_forwarded": true}))),
            Accept(|m, _| {
                assert_eq!(m.reply_to(), None);
                assert_eq!(m.context().unwrap().id(), None);
            })),
        ("a long text is summarised on one short line", t("text.body", Some(json!(format!("line one\nline two {}", "x".repeat(200))))),
            Accept(|m, _| {
                let s = m.summary();
                assert!(s.starts_with("line one line two x"), "{s}");
                assert_eq!(s.chars().count(), 120);
                assert!(s.ends_with('…'));
            })),
    ]
}

/// `value.pipe(f)` is `f(value)`: the cases above read left to right.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl Pipe for Value {}

#[test]
fn every_rule_gives_its_exact_code_field_and_sentence() {
    let cases = cases();
    assert!(cases.len() >= 85, "only {} cases", cases.len());
    for (name, v, expect) in cases {
        let got = parse(&bytes(&v));
        match expect {
            Reject(code, field, sentence) => {
                let r = got.expect_err(name);
                assert_eq!(
                    (r.code, r.field.as_deref(), r.message.as_str()),
                    (code, Some(field), sentence),
                    "{name}"
                );
            }
            Warn(code, field, sentence) => {
                let (_, warnings) = accepted(&v);
                assert!(
                    warnings
                        .iter()
                        .any(|w| (w.code, w.field.as_str(), w.message.as_str())
                            == (code, field, sentence)),
                    "{name}: expected warning {code} at {field}: {sentence}\ngot {warnings:#?}"
                );
            }
            Accept(check) => {
                let (m, warnings) = accepted(&v);
                check(&m, &warnings);
            }
        }
    }
}

/// The wamid and the sender are refused even when the rest is a valid message; everything
/// else the documentation calls required is flagged, each once.
#[test]
fn only_what_identifies_the_message_is_required() {
    let mut v = text_example();
    let body = v["body"].as_object_mut().unwrap();
    body.retain(|k, _| ["wamid", "from", "type", "text"].contains(&k.as_str()));
    let (m, warnings) = accepted(&v);
    assert_eq!((m.wamid(), m.from(), m.to()), (WAMID, "6581234567", None));
    let flagged: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        flagged,
        [
            "body.id",
            "body.accountName",
            "body.wabaId",
            "body.to",
            "body.sendTime",
            "body.customerProfile"
        ]
    );
    assert!(warnings.iter().all(|w| w.code == "missing_field"));
}

/// The key of an event of this type stored before it was typed: the envelope id and the
/// SHA-256 of the body as serde_json writes it.
fn untyped_key(envelope_id: &str, body: &Value) -> DedupKey {
    use sha2::{Digest, Sha256};
    DedupKey::Other {
        envelope_id: envelope_id.to_owned(),
        body_sha256: Sha256::digest(body.to_string().as_bytes()).into(),
    }
}

#[test]
fn an_inbound_message_is_keyed_by_envelope_and_body_as_before_and_by_its_wamid() {
    let v = text_example();
    let env = parse(&bytes(&v)).unwrap().envelope;
    let keys = env.dedup_keys();
    assert_eq!(
        keys,
        [
            untyped_key("3f6c1d2e-8a4b-4c9d-9e0f-1a2b3c4d5e6f", &v["body"]),
            DedupKey::Inbound {
                wamid: WAMID.to_owned()
            }
        ]
    );
    // Exactly the key the same bytes get as a type innohook does not interpret (as this
    // type was before), whatever the body's spacing and digits.
    let text = r#"{"id":"e-1","type":"whatsapp_mo_message_received","body":{"wamid":"w1", "from":6581234567890123456789,"type":"text","text":{"body":"hi"},"n":1.50}}"#;
    let typed = parse(text.as_bytes()).unwrap().envelope;
    let untyped = parse(
        text.replace("whatsapp_mo_message_received", "whatsapp_unlisted_event")
            .as_bytes(),
    )
    .unwrap()
    .envelope;
    assert!(matches!(untyped.event(), Event::Other { .. }));
    assert_eq!(typed.dedup_keys()[0], untyped.dedup_key());
}

#[test]
fn the_same_wamid_under_another_envelope_id_has_the_same_inbound_key() {
    let keys = |v: &Value| parse(&bytes(v)).unwrap().envelope.dedup_keys();
    let first = keys(&text_example());
    let again = keys(&text_example());
    assert_eq!(first, again, "same envelope and body: every key the same");
    let redelivered = keys(&set(text_example(), "id", json!("another-envelope")));
    assert_eq!(redelivered[1], first[1], "the same wamid");
    assert_ne!(redelivered[0], first[0], "another envelope id");
    let other_message = keys(&set(text_example(), "body.wamid", json!("wamid.other")));
    assert_ne!(other_message[1], first[1]);
    assert_ne!(other_message[0], first[0], "another body");
}

#[tokio::test]
async fn the_same_message_under_another_envelope_id_is_a_duplicate() {
    let app = spawn_app().await;
    let first = text_example();
    let redelivered = set(
        text_example(),
        "id",
        json!("5a7e0c1d-0000-4000-8000-000000000002"),
    );
    let status = async |v: &Value| answer(app.post(v.to_string()).await).await.1["status"].clone();
    assert_eq!(status(&first).await, "accepted");
    assert_eq!(status(&redelivered).await, "duplicate");
    assert_eq!(status(&first).await, "duplicate");
    let another = set(
        set(
            text_example(),
            "id",
            json!("5a7e0c1d-0000-4000-8000-000000000003"),
        ),
        "body.wamid",
        json!("wamid.another"),
    );
    assert_eq!(status(&another).await, "accepted");
    let events = app.store.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].body, first.to_string().as_bytes());
    assert_eq!(events[0].event_type, "whatsapp_mo_message_received");
}

/// A rejected inbound message is answered 400 with its field, as any other.
#[tokio::test]
async fn a_message_without_a_sender_is_answered_400_naming_the_field() {
    let app = spawn_app().await;
    let (status, body) = answer(app.post(text_with("from", None).to_string()).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        (body["error"].as_str(), body["field"].as_str()),
        (Some("missing_field"), Some("body.from"))
    );
}

/// An example with some fields removed or replaced by arbitrary JSON.
fn mutated_example() -> impl Strategy<Value = Value> {
    let paths = vec![
        "wamid",
        "from",
        "to",
        "type",
        "sendTime",
        "customerProfile",
        "context",
        "context.id",
        "text",
        "text.body",
        "reaction",
        "image",
        "location",
        "contact",
        "interactive",
        "errors",
        "extra",
    ];
    let names: Vec<&'static str> = examples().into_iter().map(|(n, _)| n).collect();
    (
        prop::sample::select(names),
        prop::collection::vec(
            (
                prop::sample::select(paths),
                prop::option::of(crate::event_props::arb_json()),
            ),
            0..4,
        ),
    )
        .prop_map(|(name, edits)| {
            edits
                .into_iter()
                .fold(example_named(name), |v, (path, new)| {
                    let exists = path.split_once('.').is_none_or(|(parent, _)| {
                        v["body"].get(parent).is_some_and(Value::is_object)
                    });
                    if !exists {
                        return v;
                    }
                    let path = format!("body.{path}");
                    match new {
                        Some(new) => set(v, &path, new),
                        None => remove(v, &path),
                    }
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_inbound_messages_never_panic_and_lose_nothing(v in mutated_example()) {
        let text = v.to_string();
        match parse(text.as_bytes()) {
            Ok(accepted) => {
                prop_assert_eq!(accepted.envelope.raw(), text.as_str());
                if let Event::InboundMessage(m) = accepted.envelope.event() {
                    prop_assert_eq!(m.wamid(), v["body"]["wamid"].as_str().unwrap());
                    prop_assert!(!m.from().is_empty());
                    prop_assert!(m.summary().chars().count() <= 120);
                }
            }
            Err(r) => {
                prop_assert!(r.message.ends_with('.'));
                if let Some(field) = &r.field {
                    prop_assert!(r.message.contains(field.as_str()), "{}", r.message);
                }
            }
        }
    }
}
