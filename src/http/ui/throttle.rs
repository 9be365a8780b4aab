//! Sign-in throttling: wrong tokens from one client address slow that address down. The
//! token's strength is the real guard; this makes guessing it expensive and visible.
//!
//! After [`FREE_FAILURES`] wrong tokens within [`WINDOW`], each further one makes the
//! address wait, twice as long each time from 2 s up to [`LONGEST_WAIT`]; meanwhile every
//! sign-in from it (a right token too) is answered 429. A right token clears its record.
//! Behind a proxy on this machine (a loopback peer) the address is the last one the proxy
//! added to `X-Forwarded-For`; from anywhere else that header is not believed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// Wrong tokens an address may send within [`WINDOW`] before it waits.
pub const FREE_FAILURES: u32 = 5;
/// How long wrong tokens are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest an address is made to wait.
pub const LONGEST_WAIT: Duration = Duration::from_secs(300);
/// Addresses remembered at most (then the oldest records go): a flood of addresses cannot
/// grow it without bound.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Throttle {
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Throttle {
    /// How long `addr` must still wait before it may try, if at all.
    pub fn wait(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let records = self.records.lock().expect("not poisoned");
        let until = records.get(&addr)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// A wrong token from `addr`: returns how long it must now wait, if it must.
    pub fn failed(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let mut records = self.records.lock().expect("not poisoned");
        if records.len() >= MAX_ADDRESSES && !records.contains_key(&addr) {
            records.retain(|_, r| now.duration_since(r.last) < WINDOW);
            if records.len() >= MAX_ADDRESSES {
                let oldest = records.iter().min_by_key(|(_, r)| r.last).map(|(a, _)| *a);
                oldest.map(|a| records.remove(&a));
            }
        }
        let record = records.entry(addr).or_insert(Record {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(record.last) >= WINDOW {
            record.failures = 0;
        }
        record.failures += 1;
        record.last = now;
        let over = record.failures.checked_sub(FREE_FAILURES)?.checked_sub(1);
        let wait = match over {
            None => return None,
            Some(n) => {
                Duration::from_secs(2u64.saturating_pow(n.saturating_add(1))).min(LONGEST_WAIT)
            }
        };
        record.blocked_until = Some(now + wait);
        Some(wait)
    }

    /// A right token from `addr`: its record goes.
    pub fn succeeded(&self, addr: IpAddr) {
        self.records.lock().expect("not poisoned").remove(&addr);
    }
}

/// The client's address: the peer's, or behind a proxy on this machine the last address
/// the proxy added to `X-Forwarded-For`.
pub fn client_address(peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    if !peer.is_loopback() {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_wrong_tokens_are_free_then_each_doubles_the_wait() {
        let t = Throttle::default();
        let addr: IpAddr = "203.0.113.7".parse().unwrap();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failed(addr, now), None);
        }
        assert_eq!(t.failed(addr, now), Some(Duration::from_secs(2)));
        assert_eq!(t.wait(addr, now), Some(Duration::from_secs(2)));
        assert_eq!(t.failed(addr, now), Some(Duration::from_secs(4)));
        for _ in 0..20 {
            t.failed(addr, now);
        }
        assert_eq!(t.wait(addr, now), Some(LONGEST_WAIT));
        // Another address is not held up; a right token clears the record.
        assert_eq!(t.wait("203.0.113.8".parse().unwrap(), now), None);
        t.succeeded(addr);
        assert_eq!(t.wait(addr, now), None);
        // Failures older than the window are forgotten.
        for _ in 0..FREE_FAILURES {
            t.failed(addr, now);
        }
        assert_eq!(t.failed(addr, now + WINDOW), None);
    }

    #[test]
    fn a_forwarded_address_is_believed_only_from_a_local_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.9".parse().unwrap(),
        );
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.4:50000".parse().unwrap();
        assert_eq!(
            client_address(Some(local), &headers),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(Some(remote), &headers), remote.ip());
        assert_eq!(client_address(Some(local), &HeaderMap::new()), local.ip());
    }
}
