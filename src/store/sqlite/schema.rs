//! The store's schema and its migrations (tracked by SQLite's `user_version`).
//! The README's "Store schema" section explains each table.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order, never reused
    received_at TEXT NOT NULL,                     -- RFC 3339, UTC
    event_id    TEXT NOT NULL,                     -- envelope id (not unique)
    event_type  TEXT NOT NULL,
    message_id  TEXT,                              -- body.id, status events only
    status      TEXT,                              -- body.status, status events only
    warnings    TEXT NOT NULL,                     -- JSON array of {code, field, message}
    body        BLOB NOT NULL                      -- the request body, byte for byte
);
CREATE TABLE dedup (
    key        TEXT PRIMARY KEY,                   -- see Envelope::dedup_key
    seq        INTEGER NOT NULL,                   -- the event first accepted under it
    created_at INTEGER NOT NULL                    -- unix seconds, for retention
) WITHOUT ROWID;
CREATE INDEX dedup_created_at ON dedup (created_at);
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    source      TEXT NOT NULL,                     -- 'http' (rejected) or 'sink' (undeliverable)
    sink        TEXT,
    event_seq   INTEGER,
    code        TEXT NOT NULL,
    field       TEXT,
    reason      TEXT NOT NULL,
    body        BLOB,                              -- the rejected request body ('http')
    replayed_at TEXT
);
CREATE TABLE sink_cursors (
    sink TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL                          -- last event seq the sink is done with
);
CREATE TABLE sink_replay (
    sink      TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    PRIMARY KEY (sink, event_seq)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    r#"
CREATE TABLE messages (
    message_id          TEXT PRIMARY KEY,              -- body.id
    wamid               TEXT NOT NULL,
    status              TEXT NOT NULL,                 -- current: highest status reached
    statuses            TEXT NOT NULL,                 -- JSON {status: eventTime}
    error_code          TEXT,
    error_message       TEXT,
    error_status        TEXT,                          -- the failure status it came with
    conversation        TEXT,                          -- JSON {id, initiateType, expireAt}
    conversation_status TEXT,
    conflict            INTEGER NOT NULL,              -- failure and delivered/read both seen
    uid                 TEXT,
    send_phone          TEXT NOT NULL,
    waba_id             TEXT NOT NULL,
    account_name        TEXT NOT NULL,
    first_event_at      TEXT NOT NULL,
    last_event_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX messages_wamid ON messages (wamid);
CREATE INDEX messages_uid ON messages (uid, message_id);
CREATE TABLE batches (
    uid            TEXT PRIMARY KEY,
    messages       INTEGER NOT NULL DEFAULT 0,
    delivered      INTEGER NOT NULL DEFAULT 0,
    read           INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    other          INTEGER NOT NULL DEFAULT 0,
    first_event_at TEXT NOT NULL,
    last_event_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE batch_errors (
    uid           TEXT NOT NULL,
    error_code    TEXT NOT NULL,
    error_message TEXT,
    messages      INTEGER NOT NULL,
    PRIMARY KEY (uid, error_code)
) WITHOUT ROWID;
CREATE INDEX events_status ON events (status, seq);
CREATE INDEX events_received_at ON events (received_at);
"#,
    // v3: a leaner write path. `seq` loses AUTOINCREMENT (events are never deleted, so
    // max+1 is never reused, and AUTOINCREMENT cost a sqlite_sequence write per event);
    // the received_at index goes, since the writer now stamps received_at per commit,
    // so it rises with seq and `since` is a binary search on seq. Status events are
    // deduplicated by their message's set of statuses (see tracking), not the dedup table.
    r#"
CREATE TABLE events_v3 (
    seq         INTEGER PRIMARY KEY,               -- commit order, never reused
    received_at TEXT NOT NULL,                     -- RFC 3339 UTC, stamped at commit
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    message_id  TEXT,
    status      TEXT,
    warnings    TEXT NOT NULL,
    body        BLOB NOT NULL
);
-- Before v3, received_at was stamped per request, before the commit, so neighbours could
-- be a few milliseconds out of seq order; each takes the latest time up to its seq.
INSERT INTO events_v3 (seq, received_at, event_id, event_type, message_id, status, warnings, body)
    SELECT seq, MAX(received_at) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING),
           event_id, event_type, message_id, status, warnings, body
    FROM events;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE INDEX events_status ON events (status, seq);
"#,
    // v4: messages becomes a rowid table. As WITHOUT ROWID its ~400-byte rows sat in the
    // primary-key b-tree, and inserting them (page splits included) was an eighth of the
    // CPU under load; a rowid table appends them, and a small unique index finds them.
    r#"
CREATE TABLE messages_v4 (
    message_id          TEXT NOT NULL UNIQUE,          -- body.id
    wamid               TEXT NOT NULL,
    status              TEXT NOT NULL,                 -- current: highest status reached
    statuses            TEXT NOT NULL,                 -- JSON {status: eventTime}
    error_code          TEXT,
    error_message       TEXT,
    error_status        TEXT,                          -- the failure status it came with
    conversation        TEXT,                          -- JSON {id, initiateType, expireAt}
    conversation_status TEXT,
    conflict            INTEGER NOT NULL,              -- failure and delivered/read both seen
    uid                 TEXT,
    send_phone          TEXT NOT NULL,
    waba_id             TEXT NOT NULL,
    account_name        TEXT NOT NULL,
    first_event_at      TEXT NOT NULL,
    last_event_at       TEXT NOT NULL
);
INSERT INTO messages_v4 (message_id, wamid, status, statuses, error_code, error_message,
        error_status, conversation, conversation_status, conflict, uid, send_phone, waba_id,
        account_name, first_event_at, last_event_at)
    SELECT message_id, wamid, status, statuses, error_code, error_message,
        error_status, conversation, conversation_status, conflict, uid, send_phone, waba_id,
        account_name, first_event_at, last_event_at
    FROM messages ORDER BY message_id;
DROP TABLE messages;
ALTER TABLE messages_v4 RENAME TO messages;
CREATE INDEX messages_wamid ON messages (wamid);
CREATE INDEX messages_uid ON messages (uid, message_id);
"#,
    // v5: which status's event a message's identity fields (wamid, uid, ...) came from,
    // so that they do not depend on which event arrived first (see tracking). Left NULL
    // for messages stored before; their current status stands in.
    r#"
ALTER TABLE messages ADD COLUMN identity_status TEXT;
"#,
    // v6: a sink's dead letters say how many attempts it made and when the first was;
    // events a sink set aside to retry while later ones went on (sinks that keep each
    // message's order rather than the global one).
    r#"
ALTER TABLE dead_letters ADD COLUMN attempts INTEGER; ALTER TABLE dead_letters ADD COLUMN first_attempt_at TEXT;
CREATE TABLE sink_parked (
    sink             TEXT NOT NULL,
    event_seq        INTEGER NOT NULL,
    message_id       TEXT,
    attempts         INTEGER NOT NULL,
    first_attempt_at TEXT,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT NOT NULL,
    PRIMARY KEY (sink, event_seq)
) WITHOUT ROWID;
"#,
    // v7: when a message's and a batch's last event was stored, by the store's clock: the
    // retention goes by it (eventTime is the sender's). Rows from before take their last
    // eventTime.
    r#"
ALTER TABLE messages ADD COLUMN touched_at TEXT; UPDATE messages SET touched_at = last_event_at;
ALTER TABLE batches ADD COLUMN touched_at TEXT; UPDATE batches SET touched_at = last_event_at;
"#,
    // v8: what the dashboard reads, as counters and indexes, so that a page reads a page.
    // Counted from this version on: nothing is backfilled.
    r#"
CREATE TABLE event_counts (
    hour    INTEGER NOT NULL,                      -- hours since the epoch (UTC), received
    outcome TEXT NOT NULL,                         -- accepted, duplicate, rejected
    status  TEXT NOT NULL,                         -- delivered, read, failed, SMECL:FAILED, other; '' for other types
    events  INTEGER NOT NULL,
    PRIMARY KEY (hour, outcome, status)
) WITHOUT ROWID;
CREATE TABLE batch_hours (
    uid       TEXT NOT NULL,
    hour      INTEGER NOT NULL,                    -- hours since the epoch (UTC), of eventTime
    delivered INTEGER NOT NULL,                    -- status events of the batch's messages
    read      INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    other     INTEGER NOT NULL,
    PRIMARY KEY (uid, hour)
) WITHOUT ROWID;
CREATE TABLE sink_status (
    sink          TEXT PRIMARY KEY,
    failing_since TEXT,                            -- set while deliveries fail
    last_error    TEXT,
    last_error_at TEXT
);
ALTER TABLE messages ADD COLUMN events TEXT;       -- JSON {status: {envelopeId, receivedAt (ms), warnings}}
CREATE INDEX messages_send_phone ON messages (send_phone);
CREATE INDEX batches_last_event_at ON batches (last_event_at);
CREATE INDEX dead_letters_source ON dead_letters (source, id);
CREATE INDEX dead_letters_pending ON dead_letters (sink, id) WHERE source = 'sink' AND replayed_at IS NULL;
"#,
    // v9: customers' inbound messages, one row per stored event, found by id, by wamid, by
    // the message they answer and by the customer's number.
    r#"
CREATE TABLE inbound (
    seq          INTEGER PRIMARY KEY,              -- the event's seq
    message_id   TEXT,                             -- body.id
    wamid        TEXT NOT NULL,
    from_phone   TEXT NOT NULL,
    to_phone     TEXT,
    sent_at      TEXT NOT NULL,                    -- body.sendTime, else eventTime, else received
    content_type TEXT NOT NULL,
    summary      TEXT NOT NULL,
    reply_to     TEXT,                             -- the wamid it answers or reacts to
    received_at  TEXT NOT NULL
);
"#,
    crate::store::sql::INBOUND_INDEXES,
    // v11 (v10 is the inbound indexes): what templates' status, quality and category
    // events said, one row each; an inbound message's media link.
    r#"
ALTER TABLE inbound ADD COLUMN media_link TEXT;
CREATE TABLE template_events (
    seq           INTEGER PRIMARY KEY,             -- the event's seq
    template_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,                   -- status, quality or category
    value         TEXT,                            -- the status, new score or new category
    previous      TEXT,                            -- the previous score or category
    template_name TEXT,
    language      TEXT,
    category      TEXT,
    reason        TEXT,
    event_time    TEXT NOT NULL,                   -- eventTime, else received
    received_at   TEXT NOT NULL
);
"#,
    crate::store::sql::TEMPLATE_INDEXES,
    // The send list (written once: store/campaign.rs).
    crate::store::campaign::SENDS_TABLE,
    crate::store::sql::BATCH_CATEGORIES_TABLE,
    crate::store::sql::ACTIVITY_TABLE,
];

/// Brings a database up to the newest schema.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Brings a database up to schema version `target`.
pub(super) fn migrate_to(conn: &mut Connection, target: usize) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in (1i64..).zip(&MIGRATIONS[..target]).skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(conn: &Connection, name: &str) -> Option<String> {
        conn.query_row(
            "SELECT sql FROM sqlite_master WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .ok()
    }

    #[test]
    fn upgrades_keep_every_event_and_message_and_drop_the_costly_parts() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 2).unwrap();
        for (seq, status, at) in [
            (1, "delivered", "2026-01-01T00:00:00.002Z"),
            (2, "read", "2026-01-01T00:00:00.001Z"),
            (5, "failed", "2026-01-01T00:00:00.003Z"),
        ] {
            conn.execute(
                "INSERT INTO events (seq, received_at, event_id, event_type, message_id, status, warnings, body)
                 VALUES (?1, ?3, 'e', 't', 'm', ?2, '[]', x'7b7d')",
                rusqlite::params![seq, status, at],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO messages (message_id, wamid, status, statuses, conflict, uid, send_phone,
                 waba_id, account_name, first_event_at, last_event_at)
             VALUES ('m', 'w', 'read', '{}', 0, 'b', 'p', 'waba', 'acc', 'f', 'l')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let message: (String, String, String, String) = conn
            .query_row(
                "SELECT wamid, status, uid, last_event_at FROM messages WHERE message_id = 'm'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(message, ("w".into(), "read".into(), "b".into(), "l".into()));
        assert!(!sql_of(&conn, "messages").unwrap().contains("WITHOUT ROWID"));
        assert!(
            sql_of(&conn, "messages")
                .unwrap()
                .contains("identity_status")
        );
        assert!(sql_of(&conn, "messages_wamid").is_some());
        assert!(sql_of(&conn, "messages_uid").is_some());
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let rows: Vec<(i64, String, Vec<u8>)> = conn
            .prepare("SELECT seq, status, body FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, "delivered".into(), b"{}".to_vec()),
                (2, "read".into(), b"{}".to_vec()),
                (5, "failed".into(), b"{}".to_vec()),
            ]
        );
        // received_at now rises with seq: the binary search for `since` relies on it.
        let received: Vec<String> = conn
            .prepare("SELECT received_at FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            received,
            [
                "2026-01-01T00:00:00.002Z",
                "2026-01-01T00:00:00.002Z",
                "2026-01-01T00:00:00.003Z"
            ]
        );
        assert!(!sql_of(&conn, "events").unwrap().contains("AUTOINCREMENT"));
        assert!(sql_of(&conn, "events_status").is_some());
        assert!(sql_of(&conn, "events_received_at").is_none());
        // The next event continues after the highest seq.
        conn.execute(
            "INSERT INTO events (received_at, event_id, event_type, warnings, body)
             VALUES ('2026-01-02T00:00:00.000Z', 'e', 't', '[]', x'')",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 6);
    }
}
