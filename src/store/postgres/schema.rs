//! The PostgreSQL schema and its migrations, numbered in `innohook_schema`. Replicas that
//! start at once migrate one after the other: the migration runs in one transaction
//! under an advisory lock, and each sees what the one before committed.

use tokio_postgres::Transaction;

/// What each migration adds; its number is its place here.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
-- Sequence numbers are taken from this row inside the ingest transaction, as its last
-- statement: its lock orders commits, so events become visible in seq order and a sink's
-- position (seq > cursor) never skips one committed late by another replica.
CREATE TABLE seq_counter (
    id   int PRIMARY KEY CHECK (id = 1),
    next bigint NOT NULL
);
INSERT INTO seq_counter (id, next) VALUES (1, 1);
CREATE TABLE events (
    seq         bigint PRIMARY KEY,
    received_at timestamptz NOT NULL,
    event_id    text NOT NULL,
    event_type  text NOT NULL,
    message_id  text,
    status      text,
    warnings    text NOT NULL,
    body        bytea NOT NULL
);
CREATE INDEX events_status ON events (status, seq);
CREATE INDEX events_received_at ON events (received_at);
CREATE TABLE dedup (
    key        text PRIMARY KEY,
    created_at timestamptz NOT NULL
);
CREATE INDEX dedup_created_at ON dedup (created_at);
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    source      text NOT NULL,
    sink        text,
    event_seq   bigint,
    code        text NOT NULL,
    field       text,
    reason      text NOT NULL,
    body        bytea,
    replayed_at timestamptz
);
CREATE TABLE sink_cursors (
    sink text PRIMARY KEY,
    seq  bigint NOT NULL
);
CREATE TABLE sink_replay (
    sink      text NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (sink, event_seq)
);
-- Who runs each sink: the epoch is the fencing token, bumped whenever another replica
-- takes the sink over.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE jobs (
    name     text PRIMARY KEY,
    last_run timestamptz NOT NULL
);
CREATE TABLE messages (
    message_id          text PRIMARY KEY,
    wamid               text NOT NULL,
    status              text NOT NULL,
    statuses            text NOT NULL,
    error_code          text,
    error_message       text,
    error_status        text,
    conversation        text,
    conversation_status text,
    conflict            boolean NOT NULL,
    uid                 text,
    send_phone          text NOT NULL,
    waba_id             text NOT NULL,
    account_name        text NOT NULL,
    first_event_at      timestamptz NOT NULL,
    last_event_at       timestamptz NOT NULL,
    identity_status     text
);
CREATE INDEX messages_wamid ON messages (wamid);
CREATE INDEX messages_uid ON messages (uid, message_id);
CREATE TABLE batches (
    uid            text PRIMARY KEY,
    messages       bigint NOT NULL,
    delivered      bigint NOT NULL,
    read           bigint NOT NULL,
    failed         bigint NOT NULL,
    other          bigint NOT NULL,
    first_event_at timestamptz NOT NULL,
    last_event_at  timestamptz NOT NULL
);
CREATE TABLE batch_errors (
    uid           text NOT NULL,
    error_code    text NOT NULL,
    error_message text,
    messages      bigint NOT NULL,
    PRIMARY KEY (uid, error_code)
);
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
"#,
    // 2: a sink's dead letters say how many attempts it made and when the first was;
    // events a sink set aside to retry while later ones went on.
    r#"
ALTER TABLE dead_letters ADD COLUMN attempts integer;
ALTER TABLE dead_letters ADD COLUMN first_attempt_at timestamptz;
CREATE TABLE sink_parked (
    sink             text NOT NULL,
    event_seq        bigint NOT NULL,
    message_id       text,
    attempts         integer NOT NULL,
    first_attempt_at timestamptz,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text NOT NULL,
    PRIMARY KEY (sink, event_seq)
);
"#,
    // 3: when a message's and a batch's last event was stored, by the store's clock: the
    // retention goes by it (eventTime is the sender's).
    r#"
ALTER TABLE messages ADD COLUMN touched_at timestamptz;
UPDATE messages SET touched_at = last_event_at;
ALTER TABLE batches ADD COLUMN touched_at timestamptz;
UPDATE batches SET touched_at = last_event_at;
"#,
    // 4: what the dashboard reads, as counters and indexes, so that a page reads a page.
    // Counted from this version on: nothing is backfilled.
    r#"
-- Pushes per hour received (hours since the epoch, UTC), by outcome and counted status.
CREATE TABLE event_counts (
    hour    bigint NOT NULL,
    outcome text NOT NULL,
    status  text NOT NULL,
    events  bigint NOT NULL,
    PRIMARY KEY (hour, outcome, status)
);
-- A batch's status events per hour of eventTime.
CREATE TABLE batch_hours (
    uid       text NOT NULL,
    hour      bigint NOT NULL,
    delivered bigint NOT NULL,
    read      bigint NOT NULL,
    failed    bigint NOT NULL,
    other     bigint NOT NULL,
    PRIMARY KEY (uid, hour)
);
CREATE TABLE sink_status (
    sink          text PRIMARY KEY,
    failing_since timestamptz,
    last_error    text,
    last_error_at timestamptz
);
ALTER TABLE messages ADD COLUMN events text;
CREATE INDEX messages_send_phone ON messages (send_phone);
CREATE INDEX batches_last_event_at ON batches (last_event_at, uid);
CREATE INDEX dead_letters_source ON dead_letters (source, id);
CREATE INDEX dead_letters_pending ON dead_letters (sink, id) WHERE source = 'sink' AND replayed_at IS NULL;
"#,
    // 5: customers' inbound messages, one row per stored event, found by id, by wamid, by
    // the message they answer and by the customer's number.
    r#"
CREATE TABLE inbound (
    seq          bigint PRIMARY KEY,
    message_id   text,
    wamid        text NOT NULL,
    from_phone   text NOT NULL,
    to_phone     text,
    sent_at      timestamptz NOT NULL,
    content_type text NOT NULL,
    summary      text NOT NULL,
    reply_to     text,
    received_at  timestamptz NOT NULL
);
"#,
    crate::store::sql::INBOUND_INDEXES,
    // 7 (6 is the inbound indexes): what templates' status, quality and category events
    // said, one row each; an inbound message's media link.
    r#"
ALTER TABLE inbound ADD COLUMN media_link text;
CREATE TABLE template_events (
    seq           bigint PRIMARY KEY,
    template_id   text NOT NULL,
    kind          text NOT NULL,
    value         text,
    previous      text,
    template_name text,
    language      text,
    category      text,
    reason        text,
    event_time    timestamptz NOT NULL,
    received_at   timestamptz NOT NULL
);
"#,
    crate::store::sql::TEMPLATE_INDEXES,
    // The send list (written once: store/campaign.rs).
    crate::store::campaign::SENDS_TABLE,
    crate::store::sql::BATCH_CATEGORIES_TABLE,
    crate::store::sql::ACTIVITY_TABLE,
];

/// The advisory lock key of migrations (any constant; this one spells "innohook").
const MIGRATION_LOCK: i64 = 0x696e_6e6f_686f_6f6b;

/// The schema version of the database (0: innohook has not created it).
pub(super) async fn version(tx: &Transaction<'_>) -> Result<usize, tokio_postgres::Error> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('innohook_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: i32 = tx
        .query_one("SELECT version FROM innohook_schema", &[])
        .await?
        .get(0);
    Ok(v as usize)
}

/// Brings the database up to the newest schema; refuses one newer than this binary.
pub(super) async fn migrate(tx: &Transaction<'_>) -> anyhow::Result<()> {
    tx.execute("SET LOCAL lock_timeout = '60s'", &[]).await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let version = version(tx).await?;
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "the database has innohook schema version {version}, newer than this innohook knows ({}); run the newer innohook, or upgrade this one",
        MIGRATIONS.len()
    );
    if version == 0 {
        tx.batch_execute("CREATE TABLE innohook_schema (version int NOT NULL); INSERT INTO innohook_schema VALUES (0);")
            .await?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "UPDATE innohook_schema SET version = $1",
            &[&(i as i32 + 1)],
        )
        .await?;
    }
    Ok(())
}
