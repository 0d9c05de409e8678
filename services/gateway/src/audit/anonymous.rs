//! Refusals before authentication (no token, a bad token, the per-peer limit) are not recorded
//! one by one: a peer sending garbage would otherwise write a row per call. They are counted
//! per (peer address, RPC, code) and written as one record per key and window
//! (`audit.anonymous_window_ms`, a minute by default) whose `calls` says how many; at most
//! `audit.max_anonymous_peers` keys per window, the rest share one key with the peer `other`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::record::Record;

/// The address of peers past the key cap.
pub const OTHER_PEERS: &str = "other";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    peer: String,
    rpc: &'static str,
    code: String,
}

#[derive(Debug)]
struct Tally {
    first_ms: i64,
    calls: u64,
    latency_ms: f64,
}

/// The current window's counts.
pub struct Anonymous {
    max_keys: usize,
    counts: Mutex<HashMap<Key, Tally>>,
}

impl Anonymous {
    pub fn new(max_keys: usize) -> Self {
        Self {
            max_keys,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one refusal of `peer` (an IP address, without the port).
    pub fn count(&self, peer: &str, rpc: &'static str, code: &str, at_ms: i64, latency_ms: f64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Key {
            peer: peer.to_string(),
            rpc,
            code: code.to_string(),
        };
        if !counts.contains_key(&key) && counts.len() >= self.max_keys {
            key.peer = OTHER_PEERS.to_string();
        }
        let tally = counts.entry(key).or_insert(Tally {
            first_ms: at_ms,
            calls: 0,
            latency_ms: 0.0,
        });
        tally.calls += 1;
        tally.latency_ms += latency_ms;
        tally.first_ms = tally.first_ms.min(at_ms);
    }

    /// The window's records (one per key, at its first refusal, with the mean latency), and a
    /// fresh window.
    pub fn take(&self) -> Vec<Record> {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()));
        let mut records: Vec<Record> = counts
            .into_iter()
            .map(|(key, tally)| Record {
                at_ms: tally.first_ms,
                subject: String::new(),
                tenant: String::new(),
                role: String::new(),
                client_addr: key.peer,
                rpc: key.rpc,
                code: key.code,
                latency_ms: tally.latency_ms / tally.calls.max(1) as f64,
                result_count: 0,
                document_ids: Vec::new(),
                trace_id: String::new(),
                query: String::new(),
                calls: tally.calls,
            })
            .collect();
        records.sort_by_key(|r| r.at_ms);
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_peer_rpc_and_code_per_window() {
        let a = Anonymous::new(100);
        for i in 0..500 {
            a.count("10.0.0.1", "Search", "Unauthenticated", 1_000 + i, 1.0);
        }
        a.count("10.0.0.2", "Search", "Unauthenticated", 900, 3.0);
        a.count("10.0.0.1", "Search", "ResourceExhausted", 2_000, 1.0);
        let records = a.take();
        assert_eq!(records.len(), 3);
        let first = &records[0];
        assert_eq!((first.client_addr.as_str(), first.calls), ("10.0.0.2", 1));
        let many = records.iter().find(|r| r.calls == 500).unwrap();
        assert_eq!(many.at_ms, 1_000);
        assert_eq!(many.code, "Unauthenticated");
        assert!(a.take().is_empty(), "a new window starts empty");
    }

    #[test]
    fn keys_are_bounded() {
        let a = Anonymous::new(2);
        for i in 0..1000 {
            a.count(
                &format!("10.0.{}.{}", i / 256, i % 256),
                "Search",
                "Unauthenticated",
                i,
                0.0,
            );
        }
        let records = a.take();
        assert_eq!(records.len(), 3);
        let other = records
            .iter()
            .find(|r| r.client_addr == OTHER_PEERS)
            .unwrap();
        assert_eq!(other.calls, 998);
    }
}
