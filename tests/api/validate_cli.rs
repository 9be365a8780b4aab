//! `innohook validate`: the real binary on real files and stdin.

use crate::helpers::{innohook, payload_path, validate_stdin};

#[test]
fn validate_accepts_each_seed_payload_and_prints_its_summary() {
    for (name, line) in [
        ("delivered", "status        delivered"),
        ("read", "status        read"),
        ("failed", "error         131014 Request for url"),
    ] {
        let out = innohook()
            .arg("validate")
            .arg(payload_path(name))
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}");
        assert!(
            stdout.starts_with("accepted: whatsapp_message_status_updated"),
            "{stdout}"
        );
        assert!(stdout.contains(line), "{name}: {stdout}");
    }
}

#[test]
fn validate_rejects_from_stdin_with_code_field_and_sentence() {
    let body = r#"{"id":"e","type":"whatsapp_message_status_updated","eventTime":"2023-05-25T10:31:08.167Z",
        "body":{"id":"1","accountName":"a","wabaId":"w","status":"failed","wamid":"m","sendPhone":"6"}}"#;
    let (code, stdout) = validate_stdin(body);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.starts_with("rejected: missing_error_data at body.errorData\n"),
        "{stdout}"
    );
}

#[test]
fn validate_on_a_missing_file_says_so_and_exits_2() {
    let out = innohook()
        .args(["validate", "/nonexistent/x.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/x.json"));
}

#[test]
fn validate_prints_each_inbound_example_typed() {
    let quoted = "wamid.HBgKNjU4MTIzNDU2NxUCABEYEjQ0QjJDMUQwRTlGOEE3QjYA";
    let common = [
        "accepted: whatsapp_mo_message_received event 3f6c1d2e-8a4b-4c9d-9e0f-1a2b3c4d5e6f\n",
        "  from          6581234567\n",
        "  to            6590001111\n",
        &format!("  wamid         {}\n", crate::event_inbound::WAMID),
        "  sendTime      2025-03-04T08:15:29+00:00\n",
        "  customer      Mei Lin\n",
    ];
    let reply_to = format!("  reply to      {quoted}\n");
    for (name, v) in crate::event_inbound::examples() {
        let rows: Vec<String> = match name {
            "text" => vec![
                "  type          text\n".into(),
                "  text          Can I change my delivery slot?\n".into(),
                reply_to.clone(),
            ],
            "reaction" => vec!["  emoji         👍\n".into(), reply_to.clone()],
            "image" => vec![
                "  caption       damaged box\n".into(),
                "  mimeType      image/jpeg\n".into(),
                "  link          https://media.example.invalid/wa/400000000000000102\n".into(),
            ],
            "document" => vec!["  filename      INV-2025-0042.pdf\n".into()],
            "location" => vec![
                "  latitude      1.28397\n".into(),
                "  longitude     103.85108\n".into(),
                "  name          Raffles Place MRT\n".into(),
                "  address       5 Raffles Place, Singapore 048618\n".into(),
            ],
            "contacts" => vec!["  contact       Arjun Rao +65 9123 4567\n".into()],
            "button" => vec![
                "  text          Reschedule\n".into(),
                "  payload       RESCHEDULE_ORDER_77\n".into(),
                reply_to.clone(),
            ],
            "list reply" => vec![
                "  type          interactive\n".into(),
                "  reply         listReply\n".into(),
                "  reply id      slot_0900\n".into(),
                "  title         09:00–11:00\n".into(),
                "  description   Tomorrow morning\n".into(),
            ],
            "button reply" => vec![
                "  reply         buttonReply\n".into(),
                "  reply id      confirm_yes\n".into(),
            ],
            "unknown" => vec![
                "  error         131051 Unsupported message type Message type not supported\n"
                    .into(),
            ],
            media => vec![format!("  type          {media}\n")],
        };
        let (code, stdout) = validate_stdin(&v.to_string());
        assert_eq!(code, Some(0), "{name}: {stdout}");
        assert!(stdout.starts_with(common[0]), "{name}: {stdout}");
        for row in common
            .iter()
            .copied()
            .chain(rows.iter().map(String::as_str))
        {
            assert!(stdout.contains(row), "{name}: no {row:?} in\n{stdout}");
        }
        assert!(!stdout.contains("warning"), "{name}: {stdout}");
    }
}

#[test]
fn validate_rejects_an_inbound_message_without_its_wamid() {
    let mut v = crate::event_inbound::text_example();
    v["body"].as_object_mut().unwrap().shift_remove("wamid");
    let (code, stdout) = validate_stdin(&v.to_string());
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "rejected: missing_field at body.wamid\n  body.wamid is missing: the event must carry the WhatsApp message id.\n"
    );
}
