//! A runner against a real (SQLite) store, with a sink that answers from a script: what
//! the runner makes of a sink that breaks its contract.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::sink::{BoxFuture, LogSinkConfig, SinkCommon, SinkError, SinkKind, Start};
use crate::store::{Role, SinkState, StoreConfig, StoredEvent};

enum Answer {
    /// No result at all, whatever it got.
    Nothing,
    /// A retryable failure for each event.
    Fail,
}

/// Answers each delivery with the next scripted answer, then with success.
struct Scripted {
    keeps_order: bool,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Sink for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn deliver<'a>(
        &'a self,
        events: &'a [StoredEvent],
        _lease: i64,
    ) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        let answer = match self.script.lock().unwrap().pop_front() {
            Some(Answer::Nothing) => Vec::new(),
            Some(Answer::Fail) => events
                .iter()
                .map(|_| Err(SinkError::retryable("down")))
                .collect(),
            None => events.iter().map(|_| Ok(())).collect(),
        };
        Box::pin(async move { answer })
    }

    fn keeps_message_order(&self) -> bool {
        self.keeps_order
    }
}

/// Stores one event of message `m1`, runs a [`Scripted`] sink until every scripted answer
/// is used and the event is done with, and returns what the store then says of the sink.
async fn run_scripted(keeps_order: bool, script: Vec<Answer>) -> (SinkState, usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        dir: dir.path().to_path_buf(),
        ..StoreConfig::default()
    };
    let store = crate::store::open(&config, Role::Server).await.unwrap();
    let body = r#"{"id": "e1", "type": "whatsapp_message_status_updated",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "body": {"id": "m1", "wamid": "w1", "status": "read", "sendPhone": "1",
                 "wabaId": "2", "accountName": "3", "uid": "b1"}}"#;
    let accepted = crate::event::parse(body.as_bytes()).expect("a valid event");
    store.accept(&accepted, body.into()).await.unwrap();

    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let sink = Scripted {
        keeps_order,
        script: script.clone(),
    };
    let common = SinkCommon {
        name: Some("scripted".into()),
        backoff_initial_ms: 1,
        backoff_max_ms: 2,
        start: Start::Beginning,
        ..SinkCommon::default()
    };
    let kind = SinkKind::Log(LogSinkConfig::default());
    let runner = Runner::new(
        Box::new(sink),
        SinkConfig { common, kind },
        store.clone(),
        0,
    );
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(runner.run(stop));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let state = loop {
        let states = store.sink_states().await.unwrap();
        let state = states.into_iter().find(|s| s.sink == "scripted");
        if let Some(s) = state
            && s.cursor == Some(1)
            && s.parked == 0
            && script.lock().unwrap().is_empty()
        {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop_tx.send(true).unwrap();
    task.await.expect("the runner ends without a panic");
    let dead = store.dead_letters().await.unwrap().len();
    store.close().await;
    (state, dead)
}

/// A sink answering a different number of results than it got events does not end its
/// runner: the attempt counts as failed, the sink as failing, and the event is retried.
#[tokio::test]
async fn a_miscounted_answer_is_a_failed_attempt_and_retried() {
    let (state, dead) = run_scripted(false, vec![Answer::Nothing]).await;
    assert_eq!(dead, 0);
    let error = state.last_error.unwrap_or_default();
    assert!(error.contains("answered 0 results for 1 events"), "{error}");
    assert_eq!(state.failing_since, None, "delivering again");
}

/// The same when the event is set aside and tried again on its own.
#[tokio::test]
async fn a_miscounted_answer_for_a_set_aside_event_reschedules_it() {
    let (state, dead) = run_scripted(true, vec![Answer::Fail, Answer::Nothing]).await;
    assert_eq!(dead, 0);
    let error = state.last_error.unwrap_or_default();
    assert!(error.contains("answered 0 results for 1 events"), "{error}");
    assert_eq!(state.failing_since, None, "delivering again");
}
