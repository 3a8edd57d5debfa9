//! `_outpost_rows`, the per-row sync state (`outpost_core::sqlite`): one
//! entry type, [`RowEntry`], and every write the sync makes to an entry
//! (synced, re-based, in conflict, failed).
//!
//! Statuses in the SQL below are literals, not bound parameters: the partial
//! indexes `_outpost_rows_dirty` and `_outpost_rows_pending` (`WHERE status
//! <> 'SYNCED'`) serve only statements whose condition SQLite can prove
//! implies it, which a bound parameter never does (and `status = 'PENDING'`
//! alone does not either: the push's statements say `status <> 'SYNCED'`
//! too, `crate::plans`). The test at the bottom pins each literal to
//! [`RowStatus::as_str`].

use std::collections::{BTreeMap, HashMap};

use outpost_core::schema::Table;
use outpost_core::settle::{BaseVersion, EntryState};
use outpost_core::types::Value;
use outpost_core::{LocalSeq, RowStatus, Version};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::error::LocalError;
use crate::fold::{fold, fold_for_read};
use crate::replica::Replica;
use crate::stored::Sql;
use crate::value::row_to_json;

/// One entry of `_outpost_rows` (see `outpost_core::sqlite`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowEntry {
    /// The table.
    pub table: String,
    /// The key, a JSON array.
    pub pk: String,
    /// Its status.
    pub status: RowStatus,
    /// Server version the row is based on.
    pub server_version: BaseVersion,
    /// The row before its first local change, in row-JSON form.
    pub base_row: Option<String>,
    /// Number of the latest local change.
    pub local_seq: Option<LocalSeq>,
    /// The local row is deleted.
    pub deleted: bool,
    /// The server's message for a `FAILED` row.
    pub error: Option<String>,
    /// When the row last changed locally.
    pub changed_at: Option<String>,
    /// For a `CONFLICT`: the server version the conflict shows (`Unknown`
    /// for a truncation).
    pub conflict_version: Option<BaseVersion>,
    /// For a row an update of its key created: the old key (meaningful
    /// while the entry is not `SYNCED`; `outpost_core::sqlite`).
    pub moved_from: Option<String>,
}

impl RowEntry {
    /// What the pull decision needs of the entry.
    pub fn state(&self) -> EntryState {
        EntryState {
            status: self.status,
            base: self.server_version,
            conflict_version: match self.conflict_version {
                Some(BaseVersion::Known(v)) => Some(v),
                _ => None,
            },
        }
    }
}

/// `SELECT` of the columns [`entry_from_row`] reads, in its order, from
/// `_outpost_rows`, followed by `$rest` (a constant statement, so the
/// statement cache's key is not rebuilt per call).
macro_rules! select_entries {
    ($rest:literal) => {
        concat!(
            "SELECT table_name, pk, status, server_version, base_row, local_seq, deleted, error, \
             changed_at, conflict_version, moved_from FROM \"_outpost_rows\" ",
            $rest
        )
    };
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowEntry> {
    Ok(RowEntry {
        table: r.get(0)?,
        pk: r.get(1)?,
        status: r.get::<_, Sql<RowStatus>>(2)?.0,
        server_version: r.get::<_, Sql<BaseVersion>>(3)?.0,
        base_row: r.get(4)?,
        local_seq: r.get::<_, Option<Sql<LocalSeq>>>(5)?.map(|s| s.0),
        deleted: r.get(6)?,
        error: r.get(7)?,
        changed_at: r.get(8)?,
        conflict_version: r
            .get::<_, Option<i64>>(9)?
            .map(|v| BaseVersion::from_stored(Some(v))),
        moved_from: r.get(10)?,
    })
}

/// The entry of one row, if it has one (the caller has folded).
pub(crate) fn entry(
    conn: &Connection,
    table: &str,
    pk: &str,
) -> Result<Option<RowEntry>, LocalError> {
    conn.prepare_cached(select_entries!("WHERE table_name = ?1 AND pk = ?2"))
        .and_then(|mut s| s.query_row(params![table, pk], entry_from_row).optional())
        .map_err(LocalError::sqlite("reading a row's sync state"))
}

/// The entries of `keys` of `table`, in one statement, by key.
pub(crate) fn entries_of(
    conn: &Connection,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, RowEntry>, LocalError> {
    let what = "reading the sync state of pulled rows";
    let list = serde_json::to_string(keys)?;
    let mut stmt = conn
        .prepare_cached(select_entries!(
            "WHERE table_name = ?1 AND pk IN (SELECT value FROM json_each(?2))"
        ))
        .map_err(LocalError::sqlite(what))?;
    let rows = stmt
        .query_map(params![table, list], entry_from_row)
        .map_err(LocalError::sqlite(what))?;
    rows.map(|e| e.map(|e| (e.pk.clone(), e)))
        .collect::<Result<_, _>>()
        .map_err(LocalError::sqlite(what))
}

/// The row is as the server has it at `version`: `SYNCED`, nothing kept.
pub(crate) fn mark_synced(
    conn: &Connection,
    table: &str,
    pk: &str,
    version: BaseVersion,
    deleted: bool,
) -> Result<(), LocalError> {
    conn.prepare_cached(
        "INSERT INTO \"_outpost_rows\" (table_name, pk, status, server_version, deleted) VALUES (?1, ?2, 'SYNCED', ?3, ?4) \
         ON CONFLICT (table_name, pk) DO UPDATE SET status = 'SYNCED', server_version = excluded.server_version, \
         base_row = NULL, deleted = excluded.deleted, error = NULL, conflict_row = NULL, conflict_version = NULL",
    )
    .and_then(|mut s| s.execute(params![table, pk, Sql(version), deleted]))
    .map_err(LocalError::sqlite("marking a row synced"))?;
    Ok(())
}

/// [`mark_synced`] of many rows of one table in one statement per kind
/// (the per-row upsert was a third of a pull's SQLite time). The rows travel
/// as JSON objects `{pk: version}`, one for present rows and one for deleted
/// ones, so `json_each` hands out each key and version as plain values: a
/// list of `[pk, version, deleted]` arrays had every element rendered back
/// to text and parsed again by each `value ->> n`, half of the statement's
/// time (B3).
pub(crate) fn mark_synced_all(
    conn: &Connection,
    table: &str,
    rows: &[(String, Version, bool)],
) -> Result<(), LocalError> {
    for deleted in [false, true] {
        let list: BTreeMap<&str, i64> = rows
            .iter()
            .filter(|(_, _, d)| *d == deleted)
            .map(|(pk, v, _)| (pk.as_str(), v.get()))
            .collect();
        if list.is_empty() {
            continue;
        }
        let list = serde_json::to_string(&list)?;
        // `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT.
        conn.prepare_cached(
            "INSERT INTO \"_outpost_rows\" (table_name, pk, status, server_version, deleted) \
             SELECT ?1, key, 'SYNCED', value, ?3 FROM json_each(?2) WHERE true \
             ON CONFLICT (table_name, pk) DO UPDATE SET status = 'SYNCED', server_version = excluded.server_version, \
             base_row = NULL, deleted = excluded.deleted, error = NULL, conflict_row = NULL, conflict_version = NULL",
        )
        .and_then(|mut s| s.execute(params![table, list, deleted]))
        .map_err(LocalError::sqlite("marking pulled rows synced"))?;
    }
    Ok(())
}

/// Re-bases a dirty entry on a server version: its base becomes the server
/// row `server` at `version`, so the next push expects that version; it is
/// `PENDING` again.
pub(crate) fn rebase(
    conn: &Connection,
    table: &Table,
    pk: &str,
    server: Option<&[Value]>,
    version: BaseVersion,
) -> Result<(), LocalError> {
    let base = server.map(|v| row_to_json(table, v));
    conn.prepare_cached(
        "UPDATE \"_outpost_rows\" SET status = 'PENDING', server_version = ?3, base_row = ?4, error = NULL, \
         conflict_row = NULL, conflict_version = NULL WHERE table_name = ?1 AND pk = ?2",
    )
    .and_then(|mut s| s.execute(params![table.name, pk, Sql(version), base]))
    .map_err(LocalError::sqlite("re-basing a local change"))?;
    Ok(())
}

/// [`rebase`] of a `FAILED` row that stays `FAILED` with its reason: this
/// node's own push came back, and the refusal still stands.
pub(crate) fn rebase_keeping_failed(
    conn: &Connection,
    table: &Table,
    pk: &str,
    server: Option<&[Value]>,
    version: BaseVersion,
) -> Result<(), LocalError> {
    let reason: Option<String> = conn
        .query_row(
            "SELECT error FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2",
            params![table.name, pk],
            |r| r.get(0),
        )
        .map_err(LocalError::sqlite("reading a failed row"))?;
    rebase(conn, table, pk, server, version)?;
    conn.execute(
        "UPDATE \"_outpost_rows\" SET status = 'FAILED', error = ?3 WHERE table_name = ?1 AND pk = ?2",
        params![table.name, pk, reason],
    )
    .map_err(LocalError::sqlite("keeping a failed row"))?;
    Ok(())
}

/// Records a conflict showing the server's row `server` at `version`; the
/// local row and its base stay.
pub(crate) fn mark_conflict(
    conn: &Connection,
    table: &Table,
    pk: &str,
    server: Option<&[Value]>,
    version: BaseVersion,
) -> Result<(), LocalError> {
    let row = server.map(|v| row_to_json(table, v));
    conn.prepare_cached(
        "UPDATE \"_outpost_rows\" SET status = 'CONFLICT', conflict_row = ?3, conflict_version = ?4 \
         WHERE table_name = ?1 AND pk = ?2",
    )
    .and_then(|mut s| s.execute(params![table.name, pk, row, Sql(version)]))
    .map_err(LocalError::sqlite("recording a conflict"))?;
    Ok(())
}

/// Marks a pushed row `FAILED` with the server's message.
pub(crate) fn mark_failed(
    conn: &Connection,
    table: &str,
    pk: &str,
    message: &str,
) -> Result<(), LocalError> {
    conn.execute(
        "UPDATE \"_outpost_rows\" SET status = 'FAILED', error = ?3 WHERE table_name = ?1 AND pk = ?2",
        params![table, pk, message],
    )
    .map_err(LocalError::sqlite("recording a refused row"))?;
    Ok(())
}

/// Whether `table` has entries with local changes not yet on the server.
pub(crate) fn has_dirty(conn: &Connection, table: &str) -> Result<bool, LocalError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM \"_outpost_rows\" WHERE table_name = ?1 AND status <> 'SYNCED')",
        [table],
        |r| r.get(0),
    )
    .map_err(LocalError::sqlite(format!(
        "counting local changes of {table}"
    )))
}

impl Replica {
    /// Folds the capture log into `_outpost_rows` now (every method that
    /// reads `_outpost_rows` does it first); returns the entries written.
    /// For code that reads `_outpost_rows` itself.
    pub fn fold_changes(&self) -> Result<usize, LocalError> {
        fold(self.connection())
    }

    /// Entries of `_outpost_rows` that are not `SYNCED`, oldest change first.
    pub fn dirty_rows(&self) -> Result<Vec<RowEntry>, LocalError> {
        let conn = self.connection();
        fold_for_read(conn)?;
        let mut stmt = conn
            .prepare_cached(select_entries!(
                "WHERE status <> 'SYNCED' ORDER BY local_seq"
            ))
            .map_err(LocalError::sqlite("reading _outpost_rows"))?;
        let rows = stmt
            .query_map([], entry_from_row)
            .map_err(LocalError::sqlite("reading _outpost_rows"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(LocalError::sqlite("reading _outpost_rows"))
    }

    /// The entry of one row, if it has one.
    pub fn row_entry(&self, table: &str, pk: &str) -> Result<Option<RowEntry>, LocalError> {
        fold_for_read(self.connection())?;
        entry(self.connection(), table, pk)
    }

    /// Counts of entries by status.
    pub fn status_counts(&self) -> Result<BTreeMap<(String, String), i64>, LocalError> {
        fold_for_read(self.connection())?;
        let mut stmt = self
            .connection()
            .prepare_cached(
                "SELECT table_name, status, count(*) FROM \"_outpost_rows\" WHERE status <> 'SYNCED' GROUP BY 1, 2",
            )
            .map_err(LocalError::sqlite("counting local changes"))?;
        let rows = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .map_err(LocalError::sqlite("counting local changes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(LocalError::sqlite("counting local changes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL literals of this module and of the crate's other statements
    /// are `RowStatus`'s stored spellings.
    #[test]
    fn status_literals_are_the_stored_spellings() {
        let spelled: Vec<&str> = RowStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(spelled, ["SYNCED", "PENDING", "CONFLICT", "FAILED"]);
    }

    #[test]
    fn an_entry_reads_back_typed() {
        let conn = Connection::open_in_memory().expect("open");
        for stmt in outpost_core::sqlite::metadata_ddl() {
            conn.execute_batch(&stmt).expect("ddl");
        }
        conn.execute_batch(
            "INSERT INTO _outpost_rows (table_name, pk, status, server_version, local_seq, conflict_version) \
             VALUES ('T', '[1]', 'CONFLICT', -1, 4, 9), ('T', '[2]', 'PENDING', NULL, 5, NULL), \
             ('T', '[3]', 'SYNCED', 7, NULL, -1)",
        )
        .expect("rows");
        let e = entries_of(&conn, "T", &["[1]", "[2]", "[3]"]).expect("entries");
        assert_eq!(e["[1]"].status, RowStatus::Conflict);
        assert_eq!(e["[1]"].server_version, BaseVersion::Unknown);
        assert_eq!(e["[1]"].local_seq, Some(LocalSeq(4)));
        assert_eq!(e["[1]"].state().conflict_version, Some(Version(9)));
        assert_eq!(e["[2]"].server_version, BaseVersion::AsOfCursor);
        assert_eq!(e["[3]"].server_version, BaseVersion::Known(Version(7)));
        assert_eq!(e["[3]"].conflict_version, Some(BaseVersion::Unknown));
        assert_eq!(e["[3]"].state().conflict_version, None);
    }
}
