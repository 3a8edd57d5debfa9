//! Id blocks for the node runtime: values reserved from a table's sequence
//! for rows a node creates offline.

use tokio_postgres::Client;

use super::sql;
use super::support::db;
use crate::error::RemoteError;

/// Reserves `n` values from the sequence behind `table.column` (a `serial`
/// or identity column) for rows the node creates offline. Returns them as
/// runs `next..=last`; `None` when the column has no sequence.
pub async fn reserve_ids(
    client: &Client,
    pg_schema: &str,
    table: &str,
    column: &str,
    n: i64,
) -> Result<Option<Vec<(i64, i64)>>, RemoteError> {
    let qualified = sql::qualified(pg_schema, table);
    let row = client
        .query_one(
            "SELECT pg_get_serial_sequence($1, $2)",
            &[&qualified, &column],
        )
        .await
        .map_err(db(format!("finding the sequence of {table}.{column}")))?;
    let Some(seq): Option<String> = row.get(0) else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT nextval($1::text::regclass) FROM generate_series(1, $2::int8) ORDER BY 1",
            &[&seq, &n],
        )
        .await
        .map_err(db(format!("reserving ids from {seq}")))?;
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for r in rows {
        let v: i64 = r.get(0);
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == v => *last = v,
            _ => runs.push((v, v)),
        }
    }
    Ok(Some(runs))
}
