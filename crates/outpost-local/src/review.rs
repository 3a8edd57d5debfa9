//! What a person reviews and acts on: local changes not yet pushed
//! (`PENDING`), rows the server refused (`FAILED`) with its message, retrying
//! one after its cause was fixed, and discarding one to take the server's
//! row back.

use outpost_core::RowStatus;
use outpost_core::settle::BaseVersion;
use outpost_core::types::Value;
use rusqlite::params;
use serde::Serialize;

use crate::data::{read_row, table_of, write_row};
use crate::error::LocalError;
use crate::fold::{fold, fold_for_read};
use crate::keys::pk_values;
use crate::replica::Replica;
use crate::rows::{entry, mark_synced};
use crate::stored::Sql;
use crate::value::row_from_json;

/// A row the server refused: its table, key (JSON array) and the server's
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedEntry {
    /// The table.
    pub table: String,
    /// The row key, a JSON array.
    pub pk: String,
    /// The server's message.
    pub error: Option<String>,
}

impl Replica {
    /// Rows in `FAILED`, by table and key (at most `limit`).
    pub fn failed_rows(&self, limit: i64) -> Result<Vec<FailedEntry>, LocalError> {
        fold_for_read(self.connection())?;
        let mut stmt = self
            .connection()
            .prepare_cached(
                "SELECT table_name, pk, error FROM \"_outpost_rows\" WHERE status = 'FAILED' \
                 ORDER BY table_name, pk LIMIT ?1",
            )
            .map_err(LocalError::sqlite("listing failed rows"))?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(FailedEntry {
                    table: r.get(0)?,
                    pk: r.get(1)?,
                    error: r.get(2)?,
                })
            })
            .map_err(LocalError::sqlite("listing failed rows"))?;
        rows.collect::<Result<_, _>>()
            .map_err(LocalError::sqlite("listing failed rows"))
    }
}

/// What a local change does on the server when pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The row did not exist before the local change (or the server had
    /// deleted it): the push creates it.
    Insert,
    /// The row existed and was changed locally.
    Update,
    /// The row was deleted locally.
    Delete,
}

/// One row with a local change the server does not have yet: `PENDING`
/// (waiting for the next push) or `FAILED` (refused; `error` says why).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEntry {
    /// The table.
    pub table: String,
    /// The row key, a JSON array (`_outpost_rows.pk`).
    pub pk: String,
    /// What the push does.
    pub kind: ChangeKind,
    /// The local row now (`None`: deleted locally).
    pub values: Option<Vec<Value>>,
    /// When the row was last changed locally.
    pub changed_at: Option<String>,
    /// The number of its latest local change.
    pub local_seq: Option<i64>,
    /// The server's message, for a `FAILED` row.
    pub error: Option<String>,
}

/// A page of [`ChangeEntry`]s and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    /// The entries, oldest change first.
    pub entries: Vec<ChangeEntry>,
    /// Entries matching the filter, over all pages.
    pub total: i64,
}

/// What discarding a refused change left in the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Discarded {
    /// The row as the server has it, now back in the replica (`None`: the
    /// server has no such row, so it is gone locally too).
    pub row: Option<Vec<Value>>,
    /// The server version the row is at (`None`: as of the cursor).
    pub server_version: Option<i64>,
}

impl Replica {
    /// Local changes not yet pushed (`PENDING`), of one table when given,
    /// oldest change first, `limit` from `offset`.
    pub fn pending_changes(
        &self,
        table: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, LocalError> {
        self.changes(RowStatus::Pending, table, limit, offset)
    }

    /// Rows the server refused (`FAILED`), with its message, of one table
    /// when given, oldest change first, `limit` from `offset`.
    pub fn failed_changes(
        &self,
        table: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, LocalError> {
        self.changes(RowStatus::Failed, table, limit, offset)
    }

    fn changes(
        &self,
        status: RowStatus,
        table: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, LocalError> {
        fold_for_read(self.connection())?;
        let what = || format!("listing {} rows", status.as_str().to_ascii_lowercase());
        let conn = self.connection();
        let total: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM \"_outpost_rows\" WHERE status = ?1 AND (?2 IS NULL OR table_name = ?2)",
            )
            .and_then(|mut s| s.query_row(params![Sql(status), table], |r| r.get(0)))
            .map_err(LocalError::sqlite(what()))?;
        let mut entries: Vec<ChangeEntry> = conn
            .prepare_cached(
                "SELECT table_name, pk, deleted, base_row IS NULL, local_seq, changed_at, error FROM \"_outpost_rows\" \
                 WHERE status = ?1 AND (?2 IS NULL OR table_name = ?2) \
                 ORDER BY local_seq, table_name, pk LIMIT ?3 OFFSET ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![Sql(status), table, limit, offset], |r| {
                    let (deleted, no_base): (bool, bool) = (r.get(2)?, r.get(3)?);
                    Ok(ChangeEntry {
                        table: r.get(0)?,
                        pk: r.get(1)?,
                        kind: if deleted {
                            ChangeKind::Delete
                        } else if no_base {
                            ChangeKind::Insert
                        } else {
                            ChangeKind::Update
                        },
                        values: None,
                        local_seq: r.get(4)?,
                        changed_at: r.get(5)?,
                        error: r.get(6)?,
                    })
                })?
                .collect()
            })
            .map_err(LocalError::sqlite(what()))?;
        for e in &mut entries {
            if let Some(t) = self.schema().table(&e.table)
                && e.kind != ChangeKind::Delete
            {
                e.values = read_row(conn, t, &pk_values(t, &e.pk)?)?;
            }
        }
        Ok(ChangePage { entries, total })
    }

    /// Drops the local change of a `FAILED` row and puts back the server's
    /// version of the row: `base_row` at `server_version`, which is the
    /// newest server state the replica has seen for it (a pull that moves
    /// the server side re-bases the entry, so the two stay together). When
    /// the server has no such row (a refused insert, or a row the server
    /// deleted) the row goes locally too. Works offline; server changes not
    /// yet pulled arrive with the next pull, as for any synced row.
    ///
    /// Returns `None` (and changes nothing) when the row is not `FAILED`.
    pub fn discard_failed(
        &mut self,
        table: &str,
        pk: &str,
    ) -> Result<Option<Discarded>, LocalError> {
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        self.apply_silenced(|tx| {
            let Some(state) = entry(tx, table, pk)?.filter(|s| s.status == RowStatus::Failed)
            else {
                return Ok(None);
            };
            let key = pk_values(t, pk)?;
            let row = state
                .base_row
                .as_deref()
                .map(|j| row_from_json(t, j))
                .transpose()?;
            write_row(tx, t, &key, row.as_deref())?;
            match state.server_version {
                // No version: the row is the server's as of the cursor, which
                // is what "no entry" means.
                BaseVersion::AsOfCursor => {
                    tx.execute(
                        "DELETE FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2",
                        params![table, pk],
                    )
                    .map_err(LocalError::sqlite("discarding a failed row"))?;
                }
                version @ (BaseVersion::Known(_) | BaseVersion::Unknown) => {
                    mark_synced(tx, table, pk, version, row.is_none())?
                }
            }
            // The values a schema change left without a column go with it.
            tx.execute(
                "UPDATE \"_outpost_rows\" SET lost_values = NULL WHERE table_name = ?1 AND pk = ?2",
                params![table, pk],
            )
            .map_err(LocalError::sqlite("discarding a local change"))?;
            Ok(Some(Discarded {
                row,
                server_version: state.server_version.to_stored(),
            }))
        })
    }
}

impl Replica {
    /// Puts a `FAILED` row back in the queue (after its cause was fixed).
    pub fn retry_failed(&mut self, table: &str, pk: &str) -> Result<bool, LocalError> {
        fold(self.connection())?;
        let n = self
            .connection()
            .execute(
                "UPDATE \"_outpost_rows\" SET status = 'PENDING', error = NULL, lost_values = NULL WHERE table_name = ?1 AND pk = ?2 AND status = 'FAILED'",
                params![table, pk],
            )
            .map_err(LocalError::sqlite("retrying a failed row"))?;
        Ok(n > 0)
    }
}
