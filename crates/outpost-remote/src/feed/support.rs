//! What the parts of the feed share: driver errors wrapped with what was
//! being done, parameter lists, the statement cache, and the decoding of a
//! server row with its version.

use std::collections::HashMap;

use outpost_core::schema::{Schema, Table};
use outpost_core::sync::ServerRow;
use outpost_core::types::Value;
use outpost_core::{LocalSeq, Version};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement, Transaction};

use crate::codec::{Bind, PgValue};
use crate::error::RemoteError;

/// Wraps a driver error with what was being done.
pub(super) fn db(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> RemoteError {
    let action = action.into();
    move |source| RemoteError::Db { action, source }
}

pub(super) fn value_err(action: &str, column: &str, source: tokio_postgres::Error) -> RemoteError {
    RemoteError::Value {
        action: action.to_string(),
        column: column.to_string(),
        pg_type: String::new(),
        source,
    }
}

pub(super) fn table_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Table, RemoteError> {
    schema
        .table(name)
        .ok_or_else(|| RemoteError::TrackingCorrupt {
            message: format!("table {name:?} is not in the synced schema"),
        })
}

pub(super) fn params<'a>(binds: &'a [Bind<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

pub(super) fn get_value(row: &Row, idx: usize, column: &str) -> Result<Value, RemoteError> {
    row.try_get::<_, PgValue>(idx)
        .map(|v| v.0)
        .map_err(|e| value_err("reading a server row", column, e))
}

/// A [`ServerRow`] from columns `version, origin, origin_local_seq,
/// updated_at, present, pk…, columns…` starting at `at`.
pub(super) fn server_row(r: &Row, table: &Table, at: usize) -> Result<ServerRow, RemoteError> {
    let npk = table.primary_key.len();
    let changed_at = match get_value(r, at + 3, "updated_at")? {
        Value::Text(t) => Some(t),
        _ => None,
    };
    let present: bool = r.get(at + 4);
    let pk = (0..npk)
        .map(|i| get_value(r, at + 5 + i, &table.primary_key[i]))
        .collect::<Result<Vec<_>, _>>()?;
    let values = if present {
        Some(
            table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| get_value(r, at + 5 + npk + i, &c.name))
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else {
        None
    };
    Ok(ServerRow {
        table: table.name.clone(),
        pk,
        values,
        version: Version(r.get::<_, Option<i64>>(at).unwrap_or(0)),
        origin: r.get(at + 1),
        origin_local_seq: r.get::<_, Option<i64>>(at + 2).map(LocalSeq),
        changed_at,
        out_of_scope: false,
        tag: None,
    })
}

/// Statements prepared on a connection (a pull's, kept with it) or during
/// one push, by text.
pub(super) type Statements = HashMap<String, Statement>;

/// The prepared statement for `sql`, kept for the next group when its text
/// does not depend on the group.
pub(super) async fn statement(
    tx: &Transaction<'_>,
    cache: &mut Statements,
    cacheable: bool,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = tx.prepare(sql).await?;
    if cacheable {
        cache.insert(sql.to_string(), s.clone());
    }
    Ok(s)
}
