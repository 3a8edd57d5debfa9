//! Reads of whole tables on the server, for tests, the benchmark and
//! convergence checks (not used by a sync).

use outpost_core::schema::Schema;
use outpost_core::types::Value;
use tokio_postgres::Client;

use super::sql;
use super::support::{db, get_value, table_of};
use crate::error::RemoteError;

/// The number of rows of a synced table on the server.
pub async fn row_count(client: &Client, schema: &Schema, table: &str) -> Result<i64, RemoteError> {
    let t = table_of(schema, table)?;
    let row = client
        .query_one(&sql::count_all(&schema.pg_schema, t), &[])
        .await
        .map_err(db(format!("counting rows of {table}")))?;
    Ok(row.get(0))
}

/// Every row of a table, ordered by key (for convergence checks).
pub async fn all_rows(
    client: &Client,
    schema: &Schema,
    table: &str,
) -> Result<Vec<Vec<Value>>, RemoteError> {
    let t = table_of(schema, table)?;
    let rows = client
        .query(&sql::select_all(&schema.pg_schema, t), &[])
        .await
        .map_err(db(format!("reading rows of {table}")))?;
    rows.iter()
        .map(|r| {
            (0..t.columns.len())
                .map(|i| get_value(r, i, &t.columns[i].name))
                .collect()
        })
        .collect()
}
