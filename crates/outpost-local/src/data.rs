//! The replicated tables' rows: reading a row by key, writing or deleting
//! it as the server has it (with capture silenced by the caller), and the
//! per-batch `RowWriter` of a pull.

use outpost_core::schema::{Schema, Table};
use outpost_core::types::Value;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};

use crate::error::LocalError;
use crate::keys::pk_sql;
use crate::replica::Replica;
use crate::sql;
use crate::value::{from_sqlite, to_sqlite, to_sqlite_ref};

/// The table `name` of the replica's schema.
pub(crate) fn table_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Table, LocalError> {
    schema.table(name).ok_or_else(|| LocalError::UnknownTable {
        table: name.to_string(),
    })
}

/// The key values of a full row (columns in table order).
pub(crate) fn key_of(table: &Table, row: &[Value]) -> Vec<Value> {
    table
        .pk_positions()
        .filter_map(|i| row.get(i).cloned())
        .collect()
}

/// The local row with key `pk`, if present.
pub fn read_row(
    conn: &Connection,
    table: &Table,
    pk: &[Value],
) -> Result<Option<Vec<Value>>, LocalError> {
    let mut stmt = conn
        .prepare_cached(&sql::select_row(table))
        .map_err(LocalError::sqlite("reading a row"))?;
    let mut rows = stmt
        .query(params_from_iter(pk_sql(table, pk)))
        .map_err(LocalError::sqlite("reading a row"))?;
    match rows.next().map_err(LocalError::sqlite("reading a row"))? {
        None => Ok(None),
        Some(r) => table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let raw = r.get_ref(i).map_err(LocalError::sqlite("reading a row"))?;
                from_sqlite(raw, &c.ty, &c.name)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// Writes (or deletes, for `None`) a row as the server has it. Call with
/// capture silenced.
pub(crate) fn write_row(
    conn: &Connection,
    table: &Table,
    pk: &[Value],
    values: Option<&[Value]>,
) -> Result<(), LocalError> {
    match values {
        Some(values) => {
            let vals: Vec<SqlValue> = table
                .columns
                .iter()
                .zip(values)
                .map(|(c, v)| to_sqlite(v, &c.ty))
                .collect();
            conn.prepare_cached(&sql::insert_or_replace(table))
                .and_then(|mut s| s.execute(params_from_iter(vals)))
                .map_err(LocalError::sqlite(format!(
                    "writing a row of {}",
                    table.name
                )))?;
        }
        None => {
            conn.prepare_cached(&sql::delete_row(table))
                .and_then(|mut s| s.execute(params_from_iter(pk_sql(table, pk))))
                .map_err(LocalError::sqlite(format!(
                    "deleting a row of {}",
                    table.name
                )))?;
        }
    }
    Ok(())
}

/// Deletes the rows of `table` without local changes not yet on the server,
/// and their `SYNCED` entries (a re-bootstrap's clearing, a server
/// `TRUNCATE`); `what` names the operation in errors.
pub(crate) fn clear_synced(conn: &Connection, table: &Table, what: &str) -> Result<(), LocalError> {
    conn.execute(&sql::delete_synced_rows(table), [])
        .map_err(LocalError::sqlite(what))?;
    conn.execute(
        "DELETE FROM \"_outpost_rows\" WHERE table_name = ?1 AND status = 'SYNCED'",
        [&table.name],
    )
    .map_err(LocalError::sqlite(what))?;
    Ok(())
}

/// [`write_row`] with its statements built once per table: an existing row
/// is updated in place (its key index untouched), an absent one inserted.
/// Both statements are prepared once per table and batch and bind the
/// values without copying them (per row, the statement cache's lookup and
/// return and a copy of every text value were a fifth of the write).
pub(crate) struct RowWriter<'c> {
    /// `UPDATE … SET <non-key columns> WHERE <key>`; `None` when every
    /// column is in the key.
    update: Option<rusqlite::CachedStatement<'c>>,
    /// [`write_row`]'s `INSERT OR REPLACE` of every column, in table order.
    insert: rusqlite::CachedStatement<'c>,
    /// Positions of the non-key columns, then of the key columns: the
    /// update's parameters.
    order: Vec<usize>,
}

impl<'c> RowWriter<'c> {
    pub(crate) fn new(conn: &'c Connection, table: &Table) -> Result<RowWriter<'c>, LocalError> {
        let what = || LocalError::sqlite(format!("writing a row of {}", table.name));
        let (update, order) = match sql::update_row(table) {
            Some((sql, order)) => (Some(conn.prepare_cached(&sql).map_err(what())?), order),
            None => (None, Vec::new()),
        };
        let insert = conn
            .prepare_cached(&sql::insert_or_replace(table))
            .map_err(what())?;
        Ok(RowWriter {
            update,
            insert,
            order,
        })
    }

    /// Writes (or deletes, for `None`) a row as the server has it. Call with
    /// capture silenced.
    pub(crate) fn write(
        &mut self,
        conn: &Connection,
        table: &Table,
        pk: &[Value],
        values: Option<&[Value]>,
    ) -> Result<(), LocalError> {
        if let (Some(stmt), Some(values)) = (&mut self.update, values)
            && values.len() == table.columns.len()
        {
            let vals = self
                .order
                .iter()
                .map(|&i| to_sqlite_ref(&values[i], &table.columns[i].ty));
            let n = stmt
                .execute(params_from_iter(vals))
                .map_err(LocalError::sqlite(format!(
                    "writing a row of {}",
                    table.name
                )))?;
            if n > 0 {
                return Ok(());
            }
        }
        match values {
            Some(values) if values.len() == table.columns.len() => {
                let vals = table
                    .columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| to_sqlite_ref(v, &c.ty));
                self.insert
                    .execute(params_from_iter(vals))
                    .map_err(LocalError::sqlite(format!(
                        "writing a row of {}",
                        table.name
                    )))?;
                Ok(())
            }
            _ => write_row(conn, table, pk, values),
        }
    }
}

impl Replica {
    /// Every row of a table in key order (for convergence checks and tools).
    pub fn all_rows(&self, table: &str) -> Result<Vec<Vec<Value>>, LocalError> {
        let t = table_of(self.schema(), table)?;
        let mut stmt = self
            .connection()
            .prepare(&sql::select_all(t))
            .map_err(LocalError::sqlite("reading rows"))?;
        let mut rows = stmt.query([]).map_err(LocalError::sqlite("reading rows"))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(LocalError::sqlite("reading rows"))? {
            out.push(
                t.columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        from_sqlite(
                            r.get_ref(i).map_err(LocalError::sqlite("reading rows"))?,
                            &c.ty,
                            &c.name,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(out)
    }
}
