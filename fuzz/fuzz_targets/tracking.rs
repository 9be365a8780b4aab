//! The tracking rule under any set of status events of one message, in any order and
//! with duplicates: the message ends the same whatever the order, and the batch counters
//! it moves add up to exactly that one message in its batch.
#![no_main]

use std::collections::BTreeMap;

use innohook::event::tracking::{BatchDeltas, Message, StatusUpdate, Tracked, track};
use innohook::event::{Bucket, parse};
use libfuzzer_sys::fuzz_target;

const STATUSES: [&str; 8] = [
    "delivered",
    "read",
    "failed",
    "SMECL:FAILED",
    "sent",
    "Delivered",
    "deleted",
    "",
];
const UIDS: [Option<&str>; 4] = [None, Some("b1"), Some("b2"), Some("  ")];
const CATEGORIES: [&str; 4] = ["marketing", "utility", "authentication", "service"];

/// One event from four bytes: status, eventTime (or none), uid, and what else it carries.
fn event(i: usize, b: &[u8]) -> Option<StatusUpdate> {
    let status = STATUSES[b[0] as usize % STATUSES.len()];
    let mut body = serde_json::json!({
        "id": format!("e{i}"), "type": "whatsapp_message_status_updated",
        "body": {"id": "m1", "wamid": format!("w{}", b[3] % 3), "status": status,
                 "sendPhone": "6512345", "wabaId": "2", "accountName": "3"}
    });
    if b[1] != 255 {
        // Minutes apart, across an hour boundary.
        body["eventTime"] =
            format!("2026-01-01T0{}:{:02}:00.000Z", b[1] / 60 % 3, b[1] % 60).into();
    }
    if let Some(uid) = UIDS[b[2] as usize % UIDS.len()] {
        body["body"]["uid"] = uid.into();
    }
    if b[3] & 4 != 0 {
        body["body"]["errorData"] =
            serde_json::json!({"errorCode": format!("c{}", b[3] >> 4), "errorMessage": "m"});
    }
    if b[3] & 8 != 0 {
        body["body"]["conversation"] = serde_json::json!({
            "id": "c1", "initiateType": CATEGORIES[(b[3] >> 4) as usize % CATEGORIES.len()]
        });
    }
    let accepted = parse(body.to_string().as_bytes()).ok()?;
    StatusUpdate::from_accepted(&accepted)
}

fn replay(order: &[&StatusUpdate], deltas: &mut BatchDeltas) -> Option<Message> {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("in range");
    let mut message: Option<Message> = None;
    for u in order {
        match track(message.as_ref(), u, now) {
            Tracked::Changed(m) => {
                assert!(!u.is_known_to(message.as_ref()));
                // A late lower status never undoes a higher one.
                if let Some(old) = &message {
                    assert!(!old.status.outranks(&m.status), "{old:?} -> {m:?}");
                }
                deltas.record(message.as_ref(), &m);
                message = Some(m);
            }
            Tracked::Duplicate => assert!(u.is_known_to(message.as_ref())),
        }
    }
    message
}

fuzz_target!(|data: &[u8]| {
    // Distinct statuses only: two different events with one status are a duplicate by
    // design, the first one kept, so only those orders may differ.
    let mut updates: Vec<StatusUpdate> = Vec::new();
    for (i, chunk) in data.chunks_exact(4).take(8).enumerate() {
        if let Some(u) = event(i, chunk)
            && !updates.iter().any(|k| k.status() == u.status())
        {
            updates.push(u);
        }
    }
    if updates.is_empty() {
        return;
    }
    let forward: Vec<&StatusUpdate> = updates.iter().collect();
    let mut backward = forward.clone();
    backward.reverse();
    // Every event again, as InnoPaaS retries: duplicates change nothing.
    backward.extend(forward.iter().copied());
    let mut rotated = forward.clone();
    rotated.rotate_left(data.first().map_or(0, |b| *b as usize) % forward.len());

    let mut deltas = BatchDeltas::default();
    let m = replay(&forward, &mut deltas).expect("tracked");
    for other in [&backward, &rotated] {
        let again = replay(other, &mut BatchDeltas::default()).expect("tracked");
        assert_eq!(m, again, "the end depends on the order");
    }

    // The counters moved over the whole history hold exactly this one message.
    let mut counted = 0;
    for (uid, d) in deltas.iter() {
        let here = m.uid.as_deref() == Some(uid);
        let bucket = match m.status.bucket() {
            Bucket::Delivered => 1,
            Bucket::Read => 2,
            Bucket::Failed => 3,
            Bucket::Other => 4,
        };
        for (slot, n) in d.counts.iter().enumerate() {
            let want = i64::from(here && (slot == 0 || slot == bucket));
            assert_eq!(*n, want, "batch {uid}, slot {slot}: {d:?} for {m:?}");
        }
        let errors: BTreeMap<&str, i64> = d
            .errors
            .iter()
            .filter(|(_, (n, _))| *n != 0)
            .map(|(code, (n, _))| (code.as_str(), *n))
            .collect();
        let want: BTreeMap<&str, i64> = m
            .error
            .iter()
            .filter(|_| here)
            .map(|e| (e.code.as_str(), 1))
            .collect();
        assert_eq!(errors, want, "batch {uid}: error counts");
        // The timeline holds one event per status the message reached, in its hour.
        let events: i64 = d.hours.values().flatten().sum();
        assert_eq!(events, if here { m.statuses.len() as i64 } else { 0 });
        assert!(d.hours.values().flatten().all(|n| *n >= 0));
        counted += i64::from(here);
    }
    assert_eq!(counted, i64::from(m.uid.is_some()));
});
