//! Bootstrap writes: starting or resuming a copy of the server, clearing a
//! table (keeping rows with local changes), writing copied rows with the
//! table's completion in the same transaction, and finishing: the cursor
//! and state `READY` (docs/protocol.md, "## Bootstrap").

use std::collections::BTreeMap;

use outpost_core::settle::BaseVersion;
use outpost_core::sync::Cursor;
use outpost_core::types::Value;
use outpost_core::{ReplicaState, RowStatus};
use rusqlite::params_from_iter;

use crate::data::{clear_synced, key_of, table_of};
use crate::error::LocalError;
use crate::keys::local_pk;
use crate::meta::{meta_json, meta_set, set_cursor};
use crate::replica::Replica;
use crate::rows::{entry, has_dirty};
use crate::sql;
use crate::stored::Sql;
use crate::value::to_sqlite;

/// How far an interrupted copy of a table came: recorded with each chunk
/// of its rows (same transaction), so a resumed bootstrap asks the server
/// only for the rows after `after` (docs/protocol.md, "Bootstrap").
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialCopy {
    /// The feed position of the snapshot the copy started from: the table
    /// is recorded as copied from it once done (changes after it are
    /// pulled, those before the resumed part's snapshot harmlessly again).
    pub cursor: Cursor,
    /// The last key written, in the copy's key order.
    pub after: Vec<Value>,
    /// Rows written so far (progress).
    pub rows: u64,
    /// The sync-rule digest the copy started under (through a gateway).
    pub scope: Option<String>,
}

impl Replica {
    /// Starts (or resumes) a bootstrap. Returns the tables already copied by
    /// an interrupted earlier attempt, with the feed position of the
    /// snapshot each was copied from; they are not copied again.
    pub fn bootstrap_begin(&mut self) -> Result<BTreeMap<String, Cursor>, LocalError> {
        let (cursor, state) = self.cursor()?;
        let conn = self.connection();
        if state == ReplicaState::Bootstrapping {
            return meta_json(conn, "bootstrap_done");
        }
        let tx = conn
            .unchecked_transaction()
            .map_err(LocalError::sqlite("starting a bootstrap"))?;
        set_cursor(&tx, cursor, ReplicaState::Bootstrapping)?;
        meta_set(&tx, "bootstrap_done", Some("{}"))?;
        meta_set(&tx, "bootstrap_partial", None)?;
        tx.commit()
            .map_err(LocalError::sqlite("starting a bootstrap"))?;
        Ok(BTreeMap::new())
    }

    /// Empties a table before its rows are copied in, keeping rows with
    /// local changes not yet on the server (a re-bootstrap loses no local
    /// write).
    pub fn bootstrap_clear(&mut self, table: &str) -> Result<(), LocalError> {
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        self.apply_silenced(|tx| {
            clear_synced(tx, t, &format!("emptying {table}"))?;
            set_partial(tx, table, None)
        })
    }

    /// The tables an interrupted bootstrap left part-copied, with how far
    /// each came ([`PartialCopy`]).
    pub fn bootstrap_partial(&self) -> Result<BTreeMap<String, PartialCopy>, LocalError> {
        meta_json(self.connection(), "bootstrap_partial")
    }

    /// [`Replica::bootstrap_insert`] of a chunk that does not end the
    /// table, recording how far the copy came in the same transaction.
    pub fn bootstrap_insert_partial(
        &mut self,
        table: &str,
        rows: &[Vec<Value>],
        progress: &PartialCopy,
    ) -> Result<(), LocalError> {
        self.bootstrap_write(table, rows, None, Some(progress))
    }

    /// Writes copied rows in one transaction. Rows whose key has local
    /// changes are skipped (the local change wins until it is pushed). With
    /// `done`, the table is recorded as copied from that snapshot in the same
    /// transaction.
    pub fn bootstrap_insert(
        &mut self,
        table: &str,
        rows: &[Vec<Value>],
        done: Option<Cursor>,
    ) -> Result<(), LocalError> {
        self.bootstrap_write(table, rows, done, None)
    }

    fn bootstrap_write(
        &mut self,
        table: &str,
        rows: &[Vec<Value>],
        done: Option<Cursor>,
        progress: Option<&PartialCopy>,
    ) -> Result<(), LocalError> {
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        let dirty_exists = has_dirty(self.connection(), table)?;
        self.apply_silenced(|tx| {
            // The common case (nothing local) takes the plain insert.
            let sql = sql::insert_or_ignore(t);
            let mut stmt = tx
                .prepare_cached(&sql)
                .map_err(LocalError::sqlite(format!("copying into {table}")))?;
            // Through a gateway with sync rules, one value past the columns:
            // the row's tag (`crate::tags`). Recorded for a row kept for its
            // local change too: it is the server's.
            let mut tagged = Vec::new();
            for row in rows {
                if let Some(Value::Text(tag)) = row.get(t.columns.len()) {
                    let key = crate::keys::pull_key(tx, t, &key_of(t, row))?;
                    tagged.push((key, tag.as_str()));
                }
                if dirty_exists {
                    let key = local_pk(tx, t, &key_of(t, row))?;
                    if entry(tx, table, &key)?.is_some_and(|e| e.status != RowStatus::Synced) {
                        continue;
                    }
                }
                let vals = t.columns.iter().zip(row).map(|(c, v)| to_sqlite(v, &c.ty));
                stmt.execute(params_from_iter(vals))
                    .map_err(LocalError::sqlite(format!("copying into {table}")))?;
            }
            crate::tags::record_copied(tx, table, &tagged)?;
            if let Some(cursor) = done {
                let mut map: BTreeMap<String, Cursor> = meta_json(tx, "bootstrap_done")?;
                map.insert(table.to_string(), cursor);
                let json = serde_json::to_string(&map)?;
                meta_set(tx, "bootstrap_done", Some(&json))?;
                set_partial(tx, table, None)?;
            } else if let Some(p) = progress {
                set_partial(tx, table, Some(p))?;
            }
            Ok(())
        })
    }

    /// Finishes a bootstrap: the cursor becomes the oldest snapshot any
    /// table was copied from (later changes are pulled again, harmlessly)
    /// and the replica is ready.
    pub fn bootstrap_finish(&mut self) -> Result<Cursor, LocalError> {
        self.apply_silenced(|tx| {
            let map: BTreeMap<String, Cursor> = meta_json(tx, "bootstrap_done")?;
            let cursor = map.values().min().copied().unwrap_or_default();
            set_cursor(tx, cursor, ReplicaState::Ready)?;
            meta_set(tx, "bootstrap_done", None)?;
            meta_set(tx, "bootstrap_partial", None)?;
            meta_set(tx, "rebootstrap_tables", None)?;
            // Rows with local changes kept through a re-bootstrap have no
            // trustworthy base version any more: make the next push compare.
            tx.execute(
                "UPDATE \"_outpost_rows\" SET server_version = ?1 WHERE status <> 'SYNCED' AND server_version IS NULL",
                [Sql(BaseVersion::Unknown)],
            )
            .map_err(LocalError::sqlite("marking kept local changes"))?;
            Ok(cursor)
        })
    }

    /// Tables the replica needs to copy again (their definition changed).
    /// A table listed and then dropped by `setup` is not one of them.
    pub fn rebootstrap_tables(&self) -> Result<Vec<String>, LocalError> {
        let listed: Vec<String> = meta_json(self.connection(), "rebootstrap_tables")?;
        let schema = self.schema();
        Ok(listed
            .into_iter()
            .filter(|t| schema.table(t).is_some())
            .collect())
    }

    /// The sync-rule digest each table was last copied under, through a
    /// gateway with sync rules (a table copied whole is not listed); see
    /// [`outpost_core::sync::PullBatch::scopes`]. Unreadable (another
    /// program wrote the entry) reads as empty: the filtered tables are
    /// then copied again, which repairs it.
    pub fn scopes(&self) -> Result<BTreeMap<String, String>, LocalError> {
        meta_json(self.connection(), "scopes")
    }

    /// Records that `table` was just copied under the rule digest `scope`
    /// (`None`: whole). Recorded after the copy's rows are in: a crash in
    /// between leaves the older digest, and the table is copied again.
    pub fn record_scope(&mut self, table: &str, scope: Option<&str>) -> Result<(), LocalError> {
        let conn = self.connection();
        let mut map: BTreeMap<String, String> = meta_json(conn, "scopes")?;
        let changed = match scope {
            Some(s) => map.insert(table.to_string(), s.to_string()).as_deref() != Some(s),
            None => map.remove(table).is_some(),
        };
        if !changed {
            return Ok(());
        }
        let json = serde_json::to_string(&map)?;
        meta_set(conn, "scopes", Some(&json))
    }

    /// Lists `tables` to be copied again: the server's definition of each
    /// no longer matches the snapshot, so the pull skips their changes
    /// until `setup` migrates the replica and a copy brings them
    /// (docs/protocol.md, "Schema changes").
    pub fn defer_tables(&mut self, tables: &[String]) -> Result<(), LocalError> {
        let tx = self
            .connection()
            .unchecked_transaction()
            .map_err(LocalError::sqlite("listing tables to copy again"))?;
        list_for_copy(&tx, tables)?;
        tx.commit()
            .map_err(LocalError::sqlite("listing tables to copy again"))
    }
}

/// Adds `tables` to the list of tables waiting for a copy
/// (`rebootstrap_tables`), in the caller's transaction. From now on the
/// replica's cursor moves past their changes without applying them, so a
/// local edit based on "the row as of the cursor" (a row that came with a
/// copy and has no version of its own) no longer knows its base: it is
/// marked unknown, and its push compares it with the server's row instead
/// of taking the cursor's word (a row deleted meanwhile would otherwise be
/// inserted again).
pub(crate) fn list_for_copy(
    tx: &rusqlite::Transaction<'_>,
    tables: &[String],
) -> Result<(), LocalError> {
    let mut list: Vec<String> = meta_json(tx, "rebootstrap_tables")?;
    list.extend(tables.iter().cloned());
    list.sort();
    list.dedup();
    meta_set(
        tx,
        "rebootstrap_tables",
        Some(&serde_json::to_string(&list)?),
    )?;
    let mut unpin = tx
        .prepare_cached(
            "UPDATE \"_outpost_rows\" SET server_version = ?2 \
             WHERE table_name = ?1 AND status <> 'SYNCED' AND server_version IS NULL",
        )
        .map_err(LocalError::sqlite("marking edits of a table to copy again"))?;
    for table in tables {
        unpin
            .execute(rusqlite::params![table, Sql(BaseVersion::Unknown)])
            .map_err(LocalError::sqlite("marking edits of a table to copy again"))?;
    }
    Ok(())
}

/// Records (or, `None`, forgets) how far `table`'s copy came.
fn set_partial(
    conn: &rusqlite::Connection,
    table: &str,
    progress: Option<&PartialCopy>,
) -> Result<(), LocalError> {
    let mut map: BTreeMap<String, PartialCopy> = meta_json(conn, "bootstrap_partial")?;
    let changed = match progress {
        Some(p) => map.insert(table.to_string(), p.clone()).as_ref() != Some(p),
        None => map.remove(table).is_some(),
    };
    if !changed {
        return Ok(());
    }
    let json = serde_json::to_string(&map)?;
    meta_set(conn, "bootstrap_partial", Some(&json))
}
