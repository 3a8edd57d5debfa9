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

    /// Count of `SyncLog` rows, of one model when given.
    pub fn sync_log_count(&self, model: Option<&str>) -> Result<i64, LocalError> {
        self.connection()
            .prepare_cached("SELECT count(*) FROM \"SyncLog\" WHERE ?1 IS NULL OR model = ?1")
            .and_then(|mut s| s.query_row(params![model], |r| r.get(0)))
            .map_err(LocalError::sqlite("counting the sync log"))
    }
}
