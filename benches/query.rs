//! Queries on a store of 1 million events (500,000 messages, delivered + read; one batch
//! of 100,000 messages). Targets: a message lookup under 1 ms, the summary of the
//! 100,000-message batch under 50 ms, and what each dashboard page reads well under a
//! second.
//!
//! The store is built once through the real accept path (group commit, dedup, tracking)
//! and kept in target/bench-store-1m for later runs; delete it to rebuild.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use innohook::config::StoreConfig;
use innohook::event;
use innohook::event::Bucket;
use innohook::store::{BatchQuery, DeadLetterQuery, DeadLetterSource, Role, Store};

const MESSAGES: usize = 500_000;
const BIG_BATCH: usize = 100_000;

fn payload(m: usize, status: &str) -> Vec<u8> {
    let uid = if m < BIG_BATCH {
        "big".to_owned()
    } else {
        format!("b{}", m / 1000)
    };
    let minute = m % 60;
    let error = if status == "failed" {
        r#","errorData":{"errorCode":"131026","errorMessage":"Message undeliverable"}"#
    } else {
        ""
    };
    format!(
        r#"{{"id":"e{m}-{status}","type":"whatsapp_message_status_updated","eventTime":"2023-05-25T10:{minute:02}:00.000Z","body":{{"id":"{m}","accountName":"acct","wabaId":"waba","status":"{status}","wamid":"wamid.{m}","sendPhone":"65{m:09}","uid":"{uid}"{error}}}}}"#
    )
    .into_bytes()
}

fn build(dir: &Path) {
    eprintln!(
        "building a store of {} events in {} (once)…",
        MESSAGES * 2,
        dir.display()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = innohook::store::open(&config(dir), Role::Server)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..256 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for m in (t..MESSAGES).step_by(256) {
                    // Every 20th message fails after delivery; the others are read.
                    let last = if m % 20 == 0 { "failed" } else { "read" };
                    for status in ["delivered", last] {
                        let accepted = event::parse(&payload(m, status)).unwrap();
                        store
                            .accept(&accepted, payload(m, status).into())
                            .await
                            .unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        store.close().await;
    });
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_owned(),
        ..StoreConfig::default()
    }
}

/// The store of a million events, built once.
fn store(runtime: &tokio::runtime::Runtime) -> Arc<dyn Store> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-store-1m");
    let open = || runtime.block_on(innohook::store::open(&config(&dir), Role::Client));
    let complete = open()
        .ok()
        .and_then(|s| runtime.block_on(s.count_events()).ok())
        == Some((MESSAGES * 2) as i64);
    if !complete {
        let _ = std::fs::remove_dir_all(&dir);
        build(&dir);
    }
    open().unwrap()
}

/// Each query as the API makes it: through the store contract, on the blocking pool.
fn queries(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = store(&runtime);
    let mut rng = fastrand::Rng::with_seed(1);
    c.bench_function("message_lookup_1m_events", |b| {
        b.to_async(&runtime).iter(|| {
            let id = rng.usize(..MESSAGES).to_string();
            let store = store.clone();
            async move { black_box(store.message(&id).await.unwrap().unwrap()) }
        })
    });
    c.bench_function("wamid_lookup_1m_events", |b| {
        b.to_async(&runtime).iter(|| {
            let wamid = format!("wamid.{}", rng.usize(..MESSAGES));
            let store = store.clone();
            async move { black_box(store.messages_by_wamid(&wamid).await.unwrap()) }
        })
    });
    c.bench_function("batch_summary_100k_messages", |b| {
        b.to_async(&runtime).iter(|| {
            let store = store.clone();
            async move {
                let batch = store.batch("big").await.unwrap().unwrap();
                assert_eq!(batch.messages, BIG_BATCH as i64);
                black_box(batch)
            }
        })
    });
}

/// What each dashboard page reads, as its handler reads it.
fn dashboard(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = store(&runtime);
    let mut rng = fastrand::Rng::with_seed(2);
    c.bench_function("dashboard_overview_1m_events", |b| {
        b.to_async(&runtime).iter(|| {
            let store = store.clone();
            async move {
                let since = chrono::Utc::now() - chrono::Duration::hours(23);
                let recent = BatchQuery {
                    limit: 5,
                    ..BatchQuery::default()
                };
                let (counts, sinks, batches) = tokio::join!(
                    store.event_counts(since),
                    store.sink_states(),
                    store.recent_batches(&recent)
                );
                black_box((counts.unwrap(), sinks.unwrap(), batches.unwrap()))
            }
        })
    });
    c.bench_function("dashboard_batches_list_1m_events", |b| {
        b.to_async(&runtime).iter(|| {
            let store = store.clone();
            async move {
                let query = BatchQuery {
                    uid_prefix: Some("b1".into()),
                    limit: 50,
                    ..BatchQuery::default()
                };
                black_box(store.recent_batches(&query).await.unwrap())
            }
        })
    });
    c.bench_function("dashboard_batch_page_100k_messages", |b| {
        b.to_async(&runtime).iter(|| {
            let store = store.clone();
            async move {
                let (batch, timeline, page) = tokio::join!(
                    store.batch("big"),
                    store.batch_timeline("big"),
                    store.batch_messages("big", None, 50)
                );
                black_box((batch.unwrap(), timeline.unwrap(), page.unwrap()))
            }
        })
    });
    // The page of failed messages: ids and statuses a thousand at a time (every 20th
    // failed), then the 50 messages.
    c.bench_function("dashboard_failed_page_100k_messages", |b| {
        b.to_async(&runtime).iter(|| {
            let store = store.clone();
            async move {
                let slice = store
                    .batch_message_statuses("big", None, 1000)
                    .await
                    .unwrap();
                let mut page = Vec::new();
                for (id, _) in slice
                    .iter()
                    .filter(|(_, s)| s.bucket() == Bucket::Failed)
                    .take(50)
                {
                    page.push(store.message(id).await.unwrap().unwrap());
                }
                assert_eq!(page.len(), 50);
                black_box(page)
            }
        })
    });
    c.bench_function("dashboard_dead_letters_page_1m_events", |b| {
        b.to_async(&runtime).iter(|| {
            let store = store.clone();
            async move {
                let query = |source| DeadLetterQuery {
                    source,
                    before: None,
                    limit: 25,
                };
                let (sinks, http) = (query(DeadLetterSource::Sink), query(DeadLetterSource::Http));
                let (a, b, states) = tokio::join!(
                    store.dead_letter_page(&sinks),
                    store.dead_letter_page(&http),
                    store.sink_states()
                );
                black_box((a.unwrap(), b.unwrap(), states.unwrap()))
            }
        })
    });
    c.bench_function("phone_lookup_1m_events", |b| {
        b.to_async(&runtime).iter(|| {
            let phone = format!("65{:09}", rng.usize(..MESSAGES));
            let store = store.clone();
            async move { black_box(store.messages_by_phone(&phone).await.unwrap()) }
        })
    });
}

criterion_group!(benches, queries, dashboard);
criterion_main!(benches);
