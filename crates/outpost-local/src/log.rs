//! The `SyncLog` table: one row per model per sync run, opened at the start
//! and closed at the end, in the seed's shape; and the closing of rows a
//! killed run left `RUNNING` ([`Replica::close_interrupted_runs`]).
//!
//! Whether a `RUNNING` row's run is still going is told by a lock file
//! beside the replica (`<replica>-sync.lock`): every run holds a shared
//! `flock` on it from before its rows are written until they are closed
//! ([`Replica::run_lock`]); the operating system drops the lock with the
//! process, however it ends. Whoever gets the exclusive lock therefore
//! knows that no run of any process is going, and every `RUNNING` row is a
//! dead run's.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use rusqlite::params;
use serde::Serialize;

use crate::error::LocalError;
use crate::meta::now;
use crate::replica::Replica;
use crate::sync::ModelStats;

/// A `SyncLog` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Row id.
    pub id: i64,
    /// The model.
    pub model: String,
    /// `BIDIRECTIONAL`, `TO_SERVER` or `FROM_SERVER`.
    pub direction: String,
    /// What started the run.
    pub trigger: String,
    /// `RUNNING`, `SUCCESS`, `FAILED`, or `INTERRUPTED` (its process
    /// stopped before the run ended).
    pub status: String,
    /// Start time.
    pub started_at: String,
    /// End time.
    pub completed_at: Option<String>,
    /// Rows looked at.
    pub records_processed: i64,
    /// Rows that landed.
    pub records_succeeded: i64,
    /// Rows refused.
    pub records_failed: i64,
    /// Rows left in conflict.
    pub conflicts: i64,
    /// The error, if the run failed for this model.
    pub error: Option<String>,
}

/// A run's hold on the replica's lock file (module doc): while it lives,
/// no other process closes the run's `RUNNING` rows.
#[derive(Debug)]
pub struct RunLock {
    _file: Option<File>,
}

/// The message of a row closed as `INTERRUPTED`.
pub const INTERRUPTED_MESSAGE: &str = "interrupted: the process running this sync stopped before it \
     finished (killed or crashed); whatever it pushed or pulled was committed or rolled back whole, \
     and the next sync carries on";

impl Replica {
    fn run_lock_path(&self) -> PathBuf {
        let mut name = OsString::from(self.path().as_os_str());
        name.push("-sync.lock");
        PathBuf::from(name)
    }

    fn open_run_lock(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.run_lock_path())
    }

    /// Takes the shared run lock (module doc) for a run about to write its
    /// `SyncLog` rows; waits only while another process is closing
    /// interrupted rows. A lock file that cannot be used is logged and the
    /// run goes on without it (its rows then look interrupted to a process
    /// opening the file meanwhile, which is wrong only in what it shows).
    pub fn run_lock(&self) -> RunLock {
        match self
            .open_run_lock()
            .and_then(|f| f.lock_shared().map(|()| f))
        {
            Ok(f) => RunLock { _file: Some(f) },
            Err(e) => {
                tracing::warn!(path = %self.run_lock_path().display(), error = %e, "cannot take the sync run lock");
                RunLock { _file: None }
            }
        }
    }

    /// Closes the `SyncLog` rows left `RUNNING` by runs whose process
    /// stopped (killed, crashed, lost power) as `INTERRUPTED`, with an end
    /// time and [`INTERRUPTED_MESSAGE`]; only when no run of any process
    /// holds the run lock. Returns the rows closed.
    pub fn close_interrupted_runs(&self) -> Result<usize, LocalError> {
        // A read first: the common case (nothing open) takes no lock at all.
        let open: bool = self
            .connection()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM \"SyncLog\" WHERE status = 'RUNNING')")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(LocalError::sqlite("reading the sync log"))?;
        if !open {
            return Ok(0);
        }
        let file = match self.open_run_lock() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %self.run_lock_path().display(), error = %e, "cannot open the sync run lock");
                return Ok(0);
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            // A run is going (in this process or another): its rows are live.
            Err(std::fs::TryLockError::WouldBlock) => return Ok(0),
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(path = %self.run_lock_path().display(), error = %e, "cannot take the sync run lock");
                return Ok(0);
            }
        }
        let closed = self
            .connection()
            .execute(
                "UPDATE \"SyncLog\" SET status = 'INTERRUPTED', \"completedAt\" = ?1, error = ?2 \
                 WHERE status = 'RUNNING'",
                params![now(), INTERRUPTED_MESSAGE],
            )
            .map_err(LocalError::sqlite(
                "closing the sync log rows of interrupted runs",
            ))?;
        if closed > 0 {
            tracing::warn!(
                rows = closed,
                "closed sync log rows of runs interrupted by the end of their process as INTERRUPTED"
            );
        }
        drop(file);
        Ok(closed)
    }

    /// Records the start of a run for a model; returns the log row's id.
    pub fn log_start(
        &self,
        model: &str,
        direction: &str,
        trigger: &str,
    ) -> Result<i64, LocalError> {
        self.connection()
            .execute(
                "INSERT INTO \"SyncLog\" (model, direction, trigger, status, \"startedAt\") VALUES (?1, ?2, ?3, 'RUNNING', ?4)",
                params![model, direction, trigger, now()],
            )
            .map_err(LocalError::sqlite("writing the sync log"))?;
        Ok(self.connection().last_insert_rowid())
    }

    /// Removes a run's log row (a run that turned out to be nothing worth
    /// showing).
    pub fn log_discard(&self, id: i64) -> Result<(), LocalError> {
        self.connection()
            .execute("DELETE FROM \"SyncLog\" WHERE id = ?1", params![id])
            .map_err(LocalError::sqlite("writing the sync log"))?;
        Ok(())
    }

    /// Records the end of a run for a model.
    pub fn log_finish(
        &self,
        id: i64,
        stats: ModelStats,
        error: Option<&str>,
    ) -> Result<(), LocalError> {
        self.connection()
            .execute(
                "UPDATE \"SyncLog\" SET status = ?2, \"completedAt\" = ?3, \"recordsProcessed\" = ?4, \
                 \"recordsSucceeded\" = ?5, \"recordsFailed\" = ?6, conflicts = ?7, error = ?8 WHERE id = ?1",
                params![
                    id,
                    if error.is_some() { "FAILED" } else { "SUCCESS" },
                    now(),
                    stats.records_processed as i64,
                    stats.records_succeeded as i64,
                    stats.records_failed as i64,
                    stats.conflicts as i64,
                    error
                ],
            )
            .map_err(LocalError::sqlite("writing the sync log"))?;
        Ok(())
    }

    /// The newest `limit` log rows (of one model, when given), newest first.
    pub fn sync_log(
        &self,
        model: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<LogEntry>, LocalError> {
        let mut stmt = self
            .connection()
            .prepare_cached(
                "SELECT id, model, direction, trigger, status, \"startedAt\", \"completedAt\", \"recordsProcessed\", \
                 \"recordsSucceeded\", \"recordsFailed\", conflicts, error FROM \"SyncLog\" \
                 WHERE ?1 IS NULL OR model = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
            )
            .map_err(LocalError::sqlite("reading the sync log"))?;
        let rows = stmt
            .query_map(params![model, limit, offset], |r| {
                Ok(LogEntry {
                    id: r.get(0)?,
                    model: r.get(1)?,
                    direction: r.get(2)?,
                    trigger: r.get(3)?,
                    status: r.get(4)?,
                    started_at: r.get(5)?,
                    completed_at: r.get(6)?,
                    records_processed: r.get(7)?,
                    records_succeeded: r.get(8)?,
                    records_failed: r.get(9)?,
                    conflicts: r.get(10)?,
                    error: r.get(11)?,
                })
            })
            .map_err(LocalError::sqlite("reading the sync log"))?;
        rows.collect::<Result<_, _>>()
            .map_err(LocalError::sqlite("reading the sync log"))
    }

    /// The newest `SyncLog` row that ended in `SUCCESS`: the last time the
    /// replica and the server were known to agree, which a failed attempt
    /// after it does not change.
    pub fn last_successful_sync(&self) -> Result<Option<LogEntry>, LocalError> {
        self.newest_log_entry(None, Some("SUCCESS"), None)
    }

    /// The newest `SyncLog` row of `model` started by `trigger` (`manual`:
    /// the user's own run, which automatic runs after it must not hide).
    pub fn last_sync_by(&self, model: &str, trigger: &str) -> Result<Option<LogEntry>, LocalError> {
        self.newest_log_entry(Some(model), None, Some(trigger))
    }

    fn newest_log_entry(
        &self,
        model: Option<&str>,
        status: Option<&str>,
        trigger: Option<&str>,
    ) -> Result<Option<LogEntry>, LocalError> {
        let id: Option<i64> = self
            .connection()
            .prepare_cached(
                "SELECT max(id) FROM \"SyncLog\" WHERE (?1 IS NULL OR model = ?1) \
                 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR trigger = ?3)",
            )
            .and_then(|mut s| s.query_row(params![model, status, trigger], |r| r.get(0)))
            .map_err(LocalError::sqlite("reading the sync log"))?;
        let Some(id) = id else {
            return Ok(None);
        };
        let newer: i64 = self
            .connection()
            .prepare_cached(
                "SELECT count(*) FROM \"SyncLog\" WHERE (?1 IS NULL OR model = ?1) AND id > ?2",
            )
            .and_then(|mut s| s.query_row(params![model, id], |r| r.get(0)))
            .map_err(LocalError::sqlite("reading the sync log"))?;
        // The row at that position of the newest-first log is row `id`.
        Ok(self.sync_log(model, 1, newer)?.into_iter().next())
    }

    /// Count of `SyncLog` rows, of one model when given.
    pub fn sync_log_count(&self, model: Option<&str>) -> Result<i64, LocalError> {
        self.connection()
            .prepare_cached("SELECT count(*) FROM \"SyncLog\" WHERE ?1 IS NULL OR model = ?1")
            .and_then(|mut s| s.query_row(params![model], |r| r.get(0)))
            .map_err(LocalError::sqlite("counting the sync log"))
    }
}
