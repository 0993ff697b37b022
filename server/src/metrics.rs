//! Counters for `GET /metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use caucus_protocol::wire::ErrorCode;

/// Upper bounds, in seconds, of the commit latency histogram buckets.
const COMMIT_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];

/// The relay's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) connections: AtomicU64,
    pub(crate) sessions: AtomicU64,
    pub(crate) envelopes_in: AtomicU64,
    pub(crate) envelopes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) refused_sockets: AtomicU64,
    commits: AtomicU64,
    commit_groups: AtomicU64,
    commit_micros: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    rejections: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    /// One group commit of `commits` batches that took `elapsed`.
    pub(crate) fn observe_commit(&self, elapsed: Duration, commits: usize) {
        Self::add(&self.commit_groups, 1);
        Self::add(&self.commits, commits as u64);
        Self::add(&self.commit_micros, elapsed.as_micros() as u64);
        let secs = elapsed.as_secs_f64();
        for (bound, count) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            if secs <= *bound {
                Self::add(count, 1);
            }
        }
    }

    /// A request refused with `code`.
    pub(crate) fn reject(&self, code: ErrorCode) {
        let name = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if let Ok(mut map) = self.rejections.lock() {
            *map.entry(name).or_default() += 1;
        }
    }

    /// The Prometheus exposition.
    pub(crate) fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let simple: [(&str, &str, &str, &AtomicU64); 9] = [
            (
                "caucus_connections",
                "Open websocket connections.",
                "gauge",
                &self.connections,
            ),
            (
                "caucus_sessions",
                "Sessions held in memory.",
                "gauge",
                &self.sessions,
            ),
            (
                "caucus_envelopes_in_total",
                "Envelopes accepted.",
                "counter",
                &self.envelopes_in,
            ),
            (
                "caucus_envelopes_out_total",
                "Envelopes delivered.",
                "counter",
                &self.envelopes_out,
            ),
            (
                "caucus_bytes_in_total",
                "Frame bytes received.",
                "counter",
                &self.bytes_in,
            ),
            (
                "caucus_bytes_out_total",
                "Frame bytes sent.",
                "counter",
                &self.bytes_out,
            ),
            (
                "caucus_slow_consumers_total",
                "Connections cut off for falling behind.",
                "counter",
                &self.slow_consumers,
            ),
            (
                "caucus_sockets_refused_total",
                "Sockets closed as accepted: their address was at its connection or handshake limit.",
                "counter",
                &self.refused_sockets,
            ),
            (
                "caucus_commits_total",
                "Batches committed; several share one flush (see caucus_commit_seconds_count).",
                "counter",
                &self.commits,
            ),
        ];
        for (name, help, kind, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                get(value)
            );
        }
        let _ = writeln!(
            out,
            "# HELP caucus_commit_seconds Store group-commit latency (apply and flush).\n# TYPE caucus_commit_seconds histogram"
        );
        for (bound, count) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(
                out,
                "caucus_commit_seconds_bucket{{le=\"{bound}\"}} {}",
                get(count)
            );
        }
        let groups = get(&self.commit_groups);
        let _ = writeln!(out, "caucus_commit_seconds_bucket{{le=\"+Inf\"}} {groups}");
        let _ = writeln!(
            out,
            "caucus_commit_seconds_sum {}\ncaucus_commit_seconds_count {groups}",
            get(&self.commit_micros) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP caucus_rejections_total Requests refused, by error code.\n# TYPE caucus_rejections_total counter"
        );
        if let Ok(map) = self.rejections.lock() {
            for (code, n) in map.iter() {
                let _ = writeln!(out, "caucus_rejections_total{{code=\"{code}\"}} {n}");
            }
        }
        out
    }
}
