//! The store alone under load, without HTTP: how many status events a second the group
//! commit takes, and the process's CPU microseconds per event. `bench/run.sh` measures
//! the whole server; this isolates the store's share (`bench/store.sh` runs it).
//!
//! Usage: `storeload DIR [EVENTS] [CONCURRENCY]` (defaults 200000 and 64). DIR must not
//! hold a store yet; put it on /dev/shm to leave the disk out, or on disk to count fsync.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use innohook::config::StoreConfig;
use innohook::event;
use innohook::store::{Outcome, Role};

/// The server's allocator, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Process CPU time (user + system, all threads) in microseconds.
fn cpu_micros() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// A status event shaped like bench/load.lua's.
fn body(n: usize) -> Bytes {
    let id = format!("4711{n:014}");
    let (status, extra) = match n % 3 {
        0 => (
            "delivered",
            r#","conversation":{"id":"00e5a7e14a588d96bd2343d105d03ec5","initiateType":"business_initiated","expireAt":"2023-02-23T12:00:00.000Z"}"#,
        ),
        1 => ("read", ""),
        _ => (
            "failed",
            r#","errorData":{"errorCode":"131014","errorMessage":"Request for url https://URL.jpg failed with error: 404 (Not Found)"}"#,
        ),
    };
    Bytes::from(format!(
        r#"{{"id":"e-{id}","type":"whatsapp_message_status_updated","eventTime":"2023-05-25T10:31:08.167Z","body":{{"id":"{id}","accountName":"15902677617","wabaId":"WHATSAPP_BUSINESS_ACCOUNT_ID","status":"{status}","uid":"2002302023002010121","sendPhone":"65123101212312","wamid":"wamid.HBgNODYxNjY4NTE3NzYxMhUCABEYEjQ0RTYyQTM5QzAyMkU0QkNERgA=-{id}"{extra}}}}}"#
    ))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .expect("usage: storeload DIR [EVENTS] [CONCURRENCY]"),
    );
    let events: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let tasks: usize = args.next().map_or(Ok(64), |a| a.parse())?.max(1);
    // Every event must be new, or the figures would be those of duplicates.
    anyhow::ensure!(
        !dir.exists(),
        "{} already exists; give a new directory",
        dir.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = StoreConfig {
            dir,
            ..StoreConfig::default()
        };
        let store = innohook::store::open(&config, Role::Server).await?;
        let work: Vec<_> = (0..events)
            .map(|n| {
                let body = body(n);
                (event::parse(&body).expect("a valid event"), body)
            })
            .collect();
        let work = Arc::new(work);
        let (cpu, started) = (cpu_micros(), Instant::now());
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (store, work) = (store.clone(), work.clone());
                tokio::spawn(async move {
                    for (accepted, body) in work.iter().skip(t).step_by(tasks) {
                        let outcome = store.accept(accepted, body.clone()).await;
                        assert!(
                            matches!(outcome, Ok(Outcome::Accepted { .. })),
                            "{outcome:?}"
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.await?;
        }
        let (cpu, wall) = (cpu_micros() - cpu, started.elapsed());
        println!(
            "{events} events in {:.2} s: {:.0} events/s, {:.1} CPU us/event",
            wall.as_secs_f64(),
            events as f64 / wall.as_secs_f64(),
            cpu as f64 / events as f64
        );
        store.close().await;
        anyhow::Ok(())
    })
}
