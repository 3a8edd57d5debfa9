//! The pull: the next batch of the change feed under the cursor rule and
//! the current rows it names, in one snapshot, with statements kept
//! prepared per connection ([`PullStatements`]). Keys of integer, text and
//! uuid columns travel as typed arrays ([`typed_keys`]); other keys are
//! cast from the feed's `jsonb` on the server.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::TryStreamExt as _;
use outpost_core::schema::{Column, Schema, Table};
use outpost_core::sync::{Cursor, PullBatch, ServerRow};
use outpost_core::types::{ScalarType, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel, Statement, Transaction};
use uuid::Uuid;

use super::scope::{self, Scope};
use super::sql;
use super::support::{Statements, db, params, server_row, statement, table_of};
use crate::codec::Bind;
use crate::error::RemoteError;
use crate::session;

/// Reads the next batch of the change feed after `cursor` (at most `limit`
/// changes), under the cursor rule: only changes of transactions below
/// `pg_snapshot_xmin(pg_current_snapshot())`, in `(txid, seq)` order, and the
/// current rows they name, all in one `REPEATABLE READ` snapshot. With
/// `tables`, only their changes are returned (the cursor still covers every
/// change read).
pub async fn pull(
    client: &mut Client,
    schema: &Schema,
    cursor: Cursor,
    limit: i64,
    tables: Option<&[String]>,
    cache: &mut PullStatements,
) -> Result<PullBatch, RemoteError> {
    pull_scoped(client, schema, cursor, limit, tables, cache, None).await
}

/// [`pull`] for a node with a [`Scope`] (the gateway's sync rules): a
/// changed row of a scoped table that does not satisfy its condition in the
/// batch's snapshot is sent as a deletion (its key and version, no values),
/// so a row that moved out of the node's scope leaves its replica, and a
/// row that moved in arrives whole.
pub async fn pull_scoped(
    client: &mut Client,
    schema: &Schema,
    cursor: Cursor,
    limit: i64,
    tables: Option<&[String]>,
    cache: &mut PullStatements,
    scope: Option<&Scope>,
) -> Result<PullBatch, RemoteError> {
    match pull_once(client, schema, cursor, limit, tables, cache, scope).await {
        // A kept statement outlived a column type change on the server:
        // prepare everything again and read the batch again.
        Err(e) if e.is_stale_statement() => {
            tracing::debug!(error = %e, "a pull statement went stale; preparing again");
            cache.0.clear();
            pull_once(client, schema, cursor, limit, tables, cache, scope).await
        }
        other => other,
    }
}

async fn pull_once(
    client: &mut Client,
    schema: &Schema,
    cursor: Cursor,
    limit: i64,
    tables: Option<&[String]>,
    cache: &mut PullStatements,
    scope: Option<&Scope>,
) -> Result<PullBatch, RemoteError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db("starting a pull"))?;
    // Every statement of a pull is an index walk whose cost follows the
    // batch, never the table or the backlog; the planner, working from
    // statistics that lag behind a changelog and row_versions growing by
    // thousands of rows a second, chose otherwise (`EXPLAIN ANALYZE` of a
    // 100,000-update pull, 5,000 changes a batch):
    // * the changes: unqualified, `ORDER BY txid` named the int8 output
    //   column, which no index has, and it sorted every change past the
    //   cursor (bitmap scan + top-N heapsort of 100,000 rows, 60–100 ms a
    //   batch) instead of walking `(txid, seq)` and stopping at the limit
    //   (3 ms);
    // * the rows by key: knowing the key array's length it hashed the whole
    //   table and every `row_versions` entry of the table (seq scans,
    //   147 ms a batch at 100,000 rows, growing with the table) instead of
    //   5,000 index lookups on each (40–70 ms).
    // Sorts and hash/merge joins are therefore off for this read-only
    // transaction (a cost penalty, not a ban: a statement with no other plan
    // still gets one).
    //
    // The statements are prepared once per connection ([`PullStatements`],
    // kept with it) and run with a generic plan: a custom plan folded each batch's 5,000-key
    // arrays into constants and planned them again every batch.
    //
    // A kept generic plan is made from the statistics of its first run and
    // stays until an `ANALYZE` invalidates it, so the settings also rule out
    // what is only cheap on a small table: sequential and bitmap scans and
    // materialized inner sides. Planned while the tables were nearly empty
    // (a fresh install, or B3's replica connecting before the updates), the
    // held-back check scanned the whole change log every batch (16 ms at
    // 100,000 changes), and the rows-by-key fetch joined every entry of
    // `row_versions` against every key. `jit` is off because the penalty
    // those settings add to a plan's cost would otherwise set off JIT
    // compilation for the few statements that keep a penalized node.
    //
    // The statements, prepared once per connection, go out together with
    // the settings in one round trip (tokio-postgres pipelines requests
    // polled together, and sends them in the order of `join!`). The
    // held-back check runs with the batch's start cursor: a change past it
    // at or after the snapshot's xmin is necessarily past every change of
    // the batch (those are all before xmin), so it answers the same as
    // asking after the batch's end, without waiting for the batch.
    let feed = statement(&tx, &mut cache.0, true, sql::PULL_FEED)
        .await
        .map_err(db("reading the change feed"))?;
    let held = statement(&tx, &mut cache.0, true, sql::PULL_HELD_BACK)
        .await
        .map_err(db("checking for held-back changes"))?;
    let started = std::time::Instant::now();
    let txid = cursor.txid.to_string();
    let feed_params: [&(dyn ToSql + Sync); 3] = [&txid, &cursor.seq, &limit];
    let held_params: [&(dyn ToSql + Sync); 2] = [&txid, &cursor.seq];
    let (settings, changes, held_back) = tokio::join!(
        tx.batch_execute(session::PULL_SETTINGS),
        tx.query(&feed, &feed_params),
        tx.query_one(&held, &held_params),
    );
    settings.map_err(db("preparing a pull"))?;
    let changes = changes.map_err(db("reading the change feed"))?;
    let held_row = held_back.map_err(db("checking for held-back changes"))?;
    let held_back: bool = held_row
        .try_get(0)
        .map_err(db("checking for held-back changes"))?;
    // The retention mark, read in the batch's own snapshot: a prune that
    // committed between the run's check of the mark and this snapshot
    // removed changes this batch would otherwise skip without a word (a
    // node whose id a copied or restored file shares can have its changes
    // pruned early). Then nothing of the batch is applied.
    let mark: Option<String> = held_row
        .try_get(1)
        .map_err(db("reading the retention mark"))?;
    if mark
        .as_deref()
        .and_then(super::retention::parse_mark)
        .is_some_and(|m| cursor < m)
    {
        drop(tx);
        return Ok(PullBatch {
            cursor,
            held_back,
            pruned: true,
            ..PullBatch::default()
        });
    }
    let feed_time = started.elapsed();
    let mut batch = PullBatch {
        cursor,
        changes: changes.len(),
        more: changes.len() as i64 == limit,
        ..PullBatch::default()
    };
    // Latest change per row, after the last truncate of its table.
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Keys already listed, per table: a linear `contains` on the list was
    // quadratic in the batch size (B3).
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for ch in &changes {
        let (txid, seq): (i64, i64) = (ch.get(0), ch.get(1));
        batch.cursor = Cursor { txid, seq };
        let table: String = ch.get(2);
        if schema.table(&table).is_none() || tables.is_some_and(|t| !t.contains(&table)) {
            continue;
        }
        let op: String = ch.get(4);
        if op == "T" {
            keys.remove(&table);
            seen.remove(&table);
            if !batch.truncated.contains(&table) {
                batch.truncated.push(table);
            }
            continue;
        }
        let pk: Option<String> = ch.get(3);
        if let Some(pk) = pk
            && seen.entry(table.clone()).or_default().insert(pk.clone())
        {
            keys.entry(table).or_default().push(pk);
        }
    }
    let fetching = std::time::Instant::now();
    // Changed rows outside the node's scope, with their values, for
    // `children_of` only.
    let mut outside: Vec<ServerRow> = Vec::new();
    for (name, list) in keys {
        let table = table_of(schema, &name)?;
        // A table whose server definition no longer matches the snapshot
        // is said of its table (the engine goes on without it).
        let mut rows = match typed_keys(table, &list) {
            Some(columns) => fetch_by_typed_keys(&tx, schema, table, cache, &list, columns).await,
            None => fetch_by_keys(&tx, schema, table, &list).await,
        }
        .map_err(|e| e.in_table(&name))?;
        if let Some(s) = scope.and_then(|s| s.of(&name)) {
            // Out of scope in this snapshot: a deletion, marked as one. The
            // gateway keeps no record of what a node holds, so it cannot
            // tell a row that just left the scope from one the node never
            // had; the values never cross (a gateway sends a node that
            // keeps tags the row's tag instead of its key). The mark
            // keeps a local change of the row from being settled against a
            // deletion the server never made (`decide_pull`).
            let present: Vec<usize> = (0..rows.len())
                .filter(|&i| rows[i].values.is_some())
                .collect();
            let keys = present.iter().map(|&i| rows[i].pk.clone()).collect();
            let states = scope::in_scope(&tx, &mut cache.0, &schema.pg_schema, table, s, keys)
                .await
                .map_err(|e| e.in_table(&name))?;
            for (j, &i) in present.iter().enumerate() {
                if states.get(&j) != Some(&true) {
                    // Kept aside for the children query below: a parent
                    // outside the scope may still bring children a rule
                    // serves without it (a comment on another user's
                    // post that was just published). Never sent.
                    if let Some(values) = rows[i].values.take() {
                        outside.push(ServerRow {
                            values: Some(values),
                            ..rows[i].clone()
                        });
                    }
                    rows[i].out_of_scope = true;
                }
            }
        }
        batch.rows.extend(rows);
    }
    if let Some(scope) = scope {
        let children = scope::children_of(
            &tx,
            &mut cache.0,
            schema,
            scope,
            tables,
            &batch.rows,
            &outside,
        )
        .await?;
        batch.rows.extend(children);
    }
    tracing::debug!(
        changes = batch.changes,
        rows = batch.rows.len(),
        feed_ms = feed_time.as_millis() as u64,
        fetch_ms = fetching.elapsed().as_millis() as u64,
        "pull batch read"
    );
    batch.held_back = !batch.more && held_back;
    // Read only: ending it by a rollback is the same as a commit, and
    // dropping the transaction sends the rollback without waiting for its
    // answer (one round trip less per batch; the next request on the
    // connection queues behind it).
    drop(tx);
    Ok(batch)
}

/// Statements of pulls on one connection, by text: prepared once, run with
/// a generic plan. Kept with the connection they were prepared on; a
/// failed run drops both (so a statement a schema change invalidated is
/// prepared again on the next connection).
#[derive(Default)]
pub struct PullStatements(Statements);

impl PullStatements {
    /// The cache, for the other read-only statements a gateway runs on the
    /// same connection ([`super::outside_scope`]).
    pub(super) fn cache(&mut self) -> &mut Statements {
        &mut self.0
    }
}

impl std::fmt::Debug for PullStatements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PullStatements")
            .field(&self.0.len())
            .finish()
    }
}

/// Whether a key column's `to_jsonb` text decodes in Rust to exactly the
/// value it was made from: integers (JSON numbers) and text and uuids (JSON
/// strings). Other key types (timestamps, numerics, enums…) keep the
/// server-side cast from the `jsonb` key.
fn typed_key_column(column: &Column) -> bool {
    use ScalarType as S;
    !column.ty.array
        && matches!(
            column.ty.scalar,
            S::Int2 | S::Int4 | S::Int8 | S::Text | S::Varchar | S::Uuid
        )
}

/// The keys of a batch (`jsonb` text, as the feed recorded them) as one
/// array per key column, or `None` when a key column is not of a
/// [`typed_key_column`] type or a key does not have the expected shape (the
/// `jsonb` path then handles the batch).
fn typed_keys(table: &Table, keys: &[String]) -> Option<Vec<Value>> {
    let npk = table.primary_key.len();
    let columns: Vec<&Column> = table
        .primary_key
        .iter()
        .map(|k| table.column(k).filter(|c| typed_key_column(c)))
        .collect::<Option<_>>()?;
    let mut arrays: Vec<Vec<Value>> = vec![Vec::with_capacity(keys.len()); npk];
    for key in keys {
        let parts: Vec<serde_json::Value> = serde_json::from_str(key).ok()?;
        if parts.len() != npk {
            return None;
        }
        for ((part, column), array) in parts.into_iter().zip(&columns).zip(&mut arrays) {
            use ScalarType as S;
            let value = match (&column.ty.scalar, part) {
                (S::Int2 | S::Int4 | S::Int8, serde_json::Value::Number(n)) => {
                    Value::Int(n.as_i64()?)
                }
                (S::Uuid, serde_json::Value::String(s)) => {
                    Value::Text(Uuid::parse_str(&s).ok()?.hyphenated().to_string())
                }
                (S::Text | S::Varchar, serde_json::Value::String(s)) => Value::Text(s),
                _ => return None,
            };
            array.push(value);
        }
    }
    Some(arrays.into_iter().map(Value::Array).collect())
}

/// The current rows (or their absence) and versions for keys of
/// [`typed_key_column`] types: the table is searched from one typed array per
/// key column (`unnest($2::uuid[])`, index lookups without a cast per row),
/// `row_versions` by the feed's own `jsonb` key text, in a statement whose
/// text depends only on the table (prepared once per pull run).
async fn fetch_by_typed_keys(
    tx: &Transaction<'_>,
    schema: &Schema,
    table: &Table,
    cache: &mut PullStatements,
    keys: &[String],
    columns: Vec<Value>,
) -> Result<Vec<ServerRow>, RemoteError> {
    let sql = sql::rows_by_typed_keys(&schema.pg_schema, table);
    let binds: Vec<Bind<'_>> = columns.iter().map(Bind).collect();
    let mut p: Vec<&(dyn ToSql + Sync)> = vec![&keys];
    p.extend(params(&binds));
    p.push(&table.name);
    let s = statement(tx, &mut cache.0, true, &sql)
        .await
        .map_err(db(format!("reading changed rows of {}", table.name)))?;
    stream_rows(tx, &s, &p, table, keys.len()).await
}

/// Runs a fetch of changed rows and decodes each row as it arrives: the
/// decoding overlaps the server still reading and sending the rest (decoded
/// after the whole result had arrived, it added a third to each batch's read
/// on the client's side, B3).
async fn stream_rows(
    tx: &Transaction<'_>,
    statement: &Statement,
    params: &[&(dyn ToSql + Sync)],
    table: &Table,
    expected: usize,
) -> Result<Vec<ServerRow>, RemoteError> {
    let what = || db(format!("reading changed rows of {}", table.name));
    let stream = tx
        .query_raw(statement, params.iter().copied())
        .await
        .map_err(what())?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::with_capacity(expected);
    while let Some(row) = stream.try_next().await.map_err(what())? {
        out.push(server_row(&row, table, 0)?);
    }
    Ok(out)
}

/// The current rows (or their absence) and versions for `jsonb` keys.
async fn fetch_by_keys(
    tx: &Transaction<'_>,
    schema: &Schema,
    table: &Table,
    keys: &[String],
) -> Result<Vec<ServerRow>, RemoteError> {
    let sql = sql::rows_by_jsonb_keys(&schema.pg_schema, table);
    let s = tx
        .prepare(&sql)
        .await
        .map_err(db(format!("reading changed rows of {}", table.name)))?;
    stream_rows(tx, &s, &[&keys, &table.name], table, keys.len()).await
}

#[cfg(test)]
mod tests {
    use outpost_core::schema::{Column, Table};
    use outpost_core::types::{ColumnType, ScalarType, Value};

    use super::typed_keys;

    fn col(name: &str, scalar: ScalarType) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType::scalar(scalar, "x"),
            nullable: false,
            default: None,
            identity: None,
            generated: false,
        }
    }

    fn table(key: Vec<Column>) -> Table {
        Table {
            name: "T".into(),
            primary_key: key.iter().map(|c| c.name.clone()).collect(),
            columns: key,
            foreign_keys: vec![],
            uniques: vec![],
            relations: vec![],
        }
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    fn texts(list: &[&str]) -> Value {
        Value::Array(list.iter().map(|s| Value::Text(s.to_string())).collect())
    }

    /// The feed's `jsonb` keys become one typed array per key column, the
    /// text exactly as `to_jsonb` escaped it.
    #[test]
    fn keys_decode_to_typed_arrays() {
        let pair = table(vec![col("a", ScalarType::Text), col("b", ScalarType::Int4)]);
        assert_eq!(
            typed_keys(&pair, &keys(&[r#"["x", 1]"#, r#"["q\"\\\t\u0001é", -7]"#])),
            Some(vec![
                texts(&["x", "q\"\\\t\u{1}é"]),
                Value::Array(vec![Value::Int(1), Value::Int(-7)]),
            ])
        );
        let big = table(vec![col("id", ScalarType::Int8)]);
        assert_eq!(
            typed_keys(&big, &keys(&["[9007199254740993]"])),
            Some(vec![Value::Array(vec![Value::Int(9_007_199_254_740_993)])])
        );
        let ids = table(vec![col("id", ScalarType::Uuid)]);
        assert_eq!(
            typed_keys(
                &ids,
                &keys(&[r#"["6F1C3C8E-8A3B-4F7E-9A53-2D0C5E6A1B01"]"#])
            ),
            Some(vec![texts(&["6f1c3c8e-8a3b-4f7e-9a53-2d0c5e6a1b01"])])
        );
        assert_eq!(typed_keys(&ids, &[]), Some(vec![Value::Array(vec![])]));
    }

    /// Anything else keeps the `jsonb` path: other key types, keys of the
    /// wrong shape (a malformed key is never guessed at).
    #[test]
    fn other_keys_stay_on_the_jsonb_path() {
        let timed = table(vec![col("at", ScalarType::Timestamptz)]);
        assert_eq!(
            typed_keys(&timed, &keys(&[r#"["2026-01-01T00:00:00+00:00"]"#])),
            None
        );
        let numeric = table(vec![col("n", ScalarType::Numeric)]);
        assert_eq!(typed_keys(&numeric, &keys(&["[1.5]"])), None);
        let ints = table(vec![col("id", ScalarType::Int4)]);
        for bad in ["[1.5]", r#"["1"]"#, "[1, 2]", "[]", "1", "not json"] {
            assert_eq!(typed_keys(&ints, &keys(&["[1]", bad])), None, "{bad}");
        }
        let ids = table(vec![col("id", ScalarType::Uuid)]);
        assert_eq!(typed_keys(&ids, &keys(&[r#"["nope"]"#])), None);
    }
}
