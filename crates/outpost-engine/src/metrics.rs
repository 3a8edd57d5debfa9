//! What an [`crate::Engine`] reports about its sync runs: counters kept
//! while it runs ([`SyncMetrics`], read as a [`MetricsSnapshot`]) and the
//! progress of the run under way ([`SyncProgress`]).
//!
//! The counters live in the engine, not in the HTTP layer, so every run
//! counts whoever started it: the API, the monitor (reconnect, interval,
//! notification) or the held-back retry loop. They start at zero when the
//! node opens (Prometheus counters may reset; `rate()` copes).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (seconds) of the sync duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 11] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The counters themselves; all updates are single atomic adds.
#[derive(Debug, Default)]
pub(crate) struct SyncMetrics {
    runs_succeeded: AtomicU64,
    runs_failed: AtomicU64,
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_sum_micros: AtomicU64,
    pub(crate) rows_pushed: AtomicU64,
    pub(crate) rows_pulled: AtomicU64,
    pub(crate) rows_bootstrapped: AtomicU64,
    conflicts: AtomicU64,
    failed: AtomicU64,
    progress: Mutex<Option<SyncProgress>>,
}

impl SyncMetrics {
    /// Records a finished run: its outcome, duration and the conflicts and
    /// refused rows it produced.
    pub(crate) fn finish_run(&self, success: bool, took: Duration, conflicts: u64, failed: u64) {
        let counter = if success {
            &self.runs_succeeded
        } else {
            &self.runs_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.duration_buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.conflicts.fetch_add(conflicts, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets (or clears) the progress of the running run.
    pub(crate) fn set_progress(&self, update: impl FnOnce(&mut Option<SyncProgress>)) {
        if let Ok(mut p) = self.progress.lock() {
            update(&mut p);
        }
    }

    pub(crate) fn progress(&self) -> Option<SyncProgress> {
        self.progress.lock().ok().and_then(|p| p.clone())
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(DURATION_BUCKETS.len());
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += load(&self.duration_buckets[i]);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + load(&self.duration_buckets[DURATION_BUCKETS.len()]);
        MetricsSnapshot {
            runs_succeeded: load(&self.runs_succeeded),
            runs_failed: load(&self.runs_failed),
            duration_buckets: buckets,
            duration_count: count,
            duration_sum_secs: load(&self.duration_sum_micros) as f64 / 1e6,
            rows_pushed: load(&self.rows_pushed),
            rows_pulled: load(&self.rows_pulled),
            rows_bootstrapped: load(&self.rows_bootstrapped),
            conflicts: load(&self.conflicts),
            failed: load(&self.failed),
        }
    }
}

/// The engine's counters at one moment (totals since the node opened).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    /// Runs that ended without an error.
    pub runs_succeeded: u64,
    /// Runs that ended with an error (server unreachable, a fault…).
    pub runs_failed: u64,
    /// `(upper bound in seconds, runs at most that long)`, cumulative, in
    /// the order of [`DURATION_BUCKETS`].
    pub duration_buckets: Vec<(f64, u64)>,
    /// Runs measured (all of them).
    pub duration_count: u64,
    /// Their total duration.
    pub duration_sum_secs: f64,
    /// Rows the server took from pushes (applied, or found already applied).
    pub rows_pushed: u64,
    /// Server changes applied by pulls.
    pub rows_pulled: u64,
    /// Rows copied by bootstraps.
    pub rows_bootstrapped: u64,
    /// Rows runs left in conflict.
    pub conflicts: u64,
    /// Rows the server refused during pushes.
    pub failed: u64,
}

/// The run under way: what it does and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    /// `BIDIRECTIONAL`, `TO_SERVER` or `FROM_SERVER`.
    pub direction: String,
    /// What started it (`manual`, `interval`…).
    pub trigger: String,
    /// `connecting`, `bootstrap`, `push` or `pull`.
    pub phase: String,
    /// Rows handled in this phase so far (pushed, pulled or copied).
    pub rows: u64,
    /// The table being copied, during a bootstrap.
    pub table: Option<String>,
    /// When the run started.
    pub started_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_cumulative_buckets() {
        let m = SyncMetrics::default();
        m.finish_run(true, Duration::from_millis(30), 2, 0);
        m.finish_run(false, Duration::from_millis(700), 0, 1);
        m.finish_run(true, Duration::from_secs(1000), 0, 0);
        let s = m.snapshot();
        assert_eq!((s.runs_succeeded, s.runs_failed), (2, 1));
        assert_eq!(s.duration_buckets[0], (0.05, 1));
        assert_eq!(s.duration_buckets[3], (0.5, 1));
        assert_eq!(s.duration_buckets[4], (1.0, 2));
        assert_eq!(s.duration_buckets[10], (300.0, 2));
        assert_eq!(s.duration_count, 3);
        assert!((s.duration_sum_secs - 1000.73).abs() < 1e-6);
        assert_eq!((s.conflicts, s.failed), (2, 1));
    }
}
