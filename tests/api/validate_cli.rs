//! `innohook validate`: the real binary on real files and stdin.

use std::io::Write;
use std::process::Stdio;

use crate::helpers::{innohook, payload_path};

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
    let mut child = innohook()
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let body = r#"{"id":"e","type":"whatsapp_message_status_updated","eventTime":"2023-05-25T10:31:08.167Z",
        "body":{"id":"1","accountName":"a","wabaId":"w","status":"failed","wamid":"m","sendPhone":"6"}}"#;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
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
