//! The replica's side of `outpost verify` and `outpost resync`: a table's
//! rows together with its rows that have local changes (reported apart, not
//! as differences), and the start of a one-table re-bootstrap.

use std::collections::BTreeMap;

use outpost_core::sync::Cursor;
use outpost_core::types::Value;
use outpost_core::{ReplicaState, RowStatus};

use crate::data::table_of;
use crate::error::LocalError;
use crate::fold::fold;
use crate::keys::pk_values;
use crate::meta::{cursor_row, meta_set, set_cursor};
use crate::replica::Replica;
use crate::sql;
use crate::value::from_sqlite;

/// A row with a local change not yet settled with the server.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalChange {
    /// Its key values, in key order.
    pub key: Vec<Value>,
    /// Its `_outpost_rows.pk`.
    pub pk: String,
    /// `PENDING`, `FAILED` or `CONFLICT`.
    pub status: RowStatus,
    /// The local change deletes the row.
    pub deleted: bool,
}

impl Replica {
    /// Reads every row of `table` in one transaction (the capture log
    /// folded first), handing each to `keep`, and returns the rows `keep`
    /// wanted together with the table's rows with local changes. Rows are
    /// never all held at once unless `keep` wants them. A stored value that
    /// does not fit its column (written by another program) does not stop
    /// the scan: it is handed over as the text `<unreadable: …>`, so a
    /// comparison shows it as a difference.
    pub fn scan_rows(
        &mut self,
        table: &str,
        mut keep: impl FnMut(&[Value]) -> bool,
    ) -> Result<(Vec<Vec<Value>>, Vec<LocalChange>), LocalError> {
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        let tx = self
            .connection()
            .unchecked_transaction()
            .map_err(LocalError::sqlite("reading a table to verify"))?;
        fold(&tx)?;
        let mut kept = Vec::new();
        {
            let mut stmt = tx
                .prepare(&sql::select_all(t))
                .map_err(LocalError::sqlite("reading rows"))?;
            let mut rows = stmt.query([]).map_err(LocalError::sqlite("reading rows"))?;
            while let Some(r) = rows.next().map_err(LocalError::sqlite("reading rows"))? {
                let mut row = Vec::with_capacity(t.columns.len());
                for (i, c) in t.columns.iter().enumerate() {
                    let raw = r.get_ref(i).map_err(LocalError::sqlite("reading rows"))?;
                    row.push(
                        from_sqlite(raw, &c.ty, &c.name)
                            .unwrap_or_else(|e| Value::Text(format!("<unreadable: {e}>"))),
                    );
                }
                if keep(&row) {
                    kept.push(row);
                }
            }
        }
        let mut changes = Vec::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT pk, status, deleted FROM \"_outpost_rows\" \
                     WHERE table_name = ?1 AND status <> 'SYNCED' ORDER BY local_seq",
                )
                .map_err(LocalError::sqlite("reading local changes"))?;
            let mut q = stmt
                .query([table])
                .map_err(LocalError::sqlite("reading local changes"))?;
            while let Some(r) = q
                .next()
                .map_err(LocalError::sqlite("reading local changes"))?
            {
                let pk: String = r
                    .get(0)
                    .map_err(LocalError::sqlite("reading local changes"))?;
                let status: crate::stored::Sql<RowStatus> = r
                    .get(1)
                    .map_err(LocalError::sqlite("reading local changes"))?;
                let deleted: bool = r
                    .get(2)
                    .map_err(LocalError::sqlite("reading local changes"))?;
                changes.push(LocalChange {
                    key: pk_values(t, &pk)?,
                    pk,
                    status: status.0,
                    deleted,
                });
            }
        }
        tx.commit()
            .map_err(LocalError::sqlite("reading a table to verify"))?;
        Ok((kept, changes))
    }

    /// Starts a re-bootstrap of `table` alone: the replica goes to
    /// `BOOTSTRAPPING` with every other table recorded as copied at the
    /// current cursor, so the next sync copies only `table` (keeping its
    /// rows with local changes, as every bootstrap does) and the cursor
    /// stays where it is. A crash half-way resumes like any interrupted
    /// bootstrap. Does nothing and returns the state when the replica is
    /// not `READY` (a bootstrap is due anyway).
    pub fn resync_begin(&mut self, table: &str) -> Result<Option<ReplicaState>, LocalError> {
        self.recopy_begin(&[table.to_string()])
    }

    /// [`Replica::resync_begin`] for several tables at once: the tables a
    /// `setup` created or rebuilt after the replica was bootstrapped
    /// ([`Replica::rebootstrap_tables`]) are copied alone, never the whole
    /// replica.
    pub fn recopy_begin(&mut self, tables: &[String]) -> Result<Option<ReplicaState>, LocalError> {
        let schema = self.schema().clone();
        for table in tables {
            table_of(&schema, table)?;
        }
        self.apply_silenced(|tx| {
            let (cursor, state) = cursor_row(tx)?;
            if state != ReplicaState::Ready {
                return Ok(Some(state));
            }
            let done: BTreeMap<String, Cursor> = schema
                .tables
                .iter()
                .filter(|t| !tables.contains(&t.name))
                .map(|t| (t.name.clone(), cursor))
                .collect();
            set_cursor(tx, cursor, ReplicaState::Bootstrapping)?;
            meta_set(tx, "bootstrap_done", Some(&serde_json::to_string(&done)?))?;
            meta_set(tx, "bootstrap_partial", None)?;
            Ok(None)
        })
    }
}
