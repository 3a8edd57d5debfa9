//! The `SyncLog` table: one row per model per sync run, opened at the start
//! and closed at the end, in the seed's shape.

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
    /// `RUNNING`, `SUCCESS` or `FAILED`.
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

impl Replica {
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
