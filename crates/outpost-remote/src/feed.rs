//! The server side of a sync: the change feed read under the cursor rule
//! ([`pull`]), the bootstrap snapshot streamed with binary `COPY`
//! ([`Bootstrap`]), the push with its version check and failure isolation
//! ([`push`]), the node registry and changelog retention.
//!
//! Every key crosses as typed values bound with the binary codec; the
//! server computes its `jsonb` row keys itself (`jsonb_build_array`), in
//! sessions with the capture function's settings (`TimeZone=UTC`,
//! `IntervalStyle=postgres`, `extra_float_digits=1`) so the text matches.
//! A push sends a group's rows as one typed array per column (`unnest`), so
//! its statements have the same text for every group and are prepared once
//! per push; tables with array columns keep `VALUES` lists.
//!
//! # `origin_local_seq`
//!
//! A push group's writes run with `outpost.local_seq` set to the highest
//! `local_seq` of the group's rows, and the capture trigger stores it as
//! `row_versions.origin_local_seq` of every version it writes. A retry skips
//! a row whose version has this node as origin and an `origin_local_seq` at
//! or above the row's own `local_seq`. The group's highest is as good as the
//! row's own for that test: a row's pushed change is its latest when the
//! push was planned, and any later change of the row is numbered above
//! every change that existed then, so above the group's highest as well.
//! One value per group lets the capture write it in the statement that
//! writes the version, instead of a second update of every version.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::{try_join3, try_join4};
use futures_util::{Stream, StreamExt as _, TryFutureExt as _, TryStreamExt as _};
use outpost_core::ident::quote;
use outpost_core::schema::{Schema, Table};
use outpost_core::sync::{Cursor, Expected, PullBatch, PushOutcome, PushRow, ServerRow};
use outpost_core::types::Value;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Row, Statement, Transaction};
use uuid::Uuid;

use crate::codec::{Bind, PgValue};
use crate::error::{RemoteError, describe};

/// Session settings that make `jsonb_build_array` print keys exactly as the
/// capture trigger does.
macro_rules! key_settings {
    () => {
        "SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1;"
    };
}
const KEY_SETTINGS: &str = key_settings!();

/// Planner settings that leave a statement index lookups only (no
/// sequential or bitmap scans, hash or merge joins, materialized inner
/// sides) and no JIT, which the cost penalty of a disabled node would
/// otherwise set off. Used by the pull and by the push's key lookups:
/// their plans are kept (generic) while the tables grow, so they must not
/// depend on the statistics of their first run.
macro_rules! index_only {
    () => {
        "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
         SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; \
         SET LOCAL enable_material = off; SET LOCAL jit = off;"
    };
}

/// Most bind parameters one statement may carry (PostgreSQL allows 65535).
const MAX_PARAMS: usize = 30_000;

/// Most rows of one push statement when they travel as typed arrays.
const PUSH_GROUP: usize = 5_000;

fn db(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> RemoteError {
    let action = action.into();
    move |source| RemoteError::Db { action, source }
}

fn value_err(action: &str, column: &str, source: tokio_postgres::Error) -> RemoteError {
    RemoteError::Value {
        action: action.to_string(),
        column: column.to_string(),
        pg_type: String::new(),
        source,
    }
}

fn table_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Table, RemoteError> {
    schema
        .table(name)
        .ok_or_else(|| RemoteError::TrackingCorrupt {
            message: format!("table {name:?} is not in the synced schema"),
        })
}

fn params<'a>(binds: &'a [Bind<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

/// `"a", "b"` of every column.
fn column_list(table: &Table, prefix: &str) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("{prefix}{}", quote(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pk_type(table: &Table, i: usize) -> String {
    table
        .column(&table.primary_key[i])
        .map_or_else(|| "text".to_string(), |c| c.ty.pg_name.clone())
}

fn get_value(row: &Row, idx: usize, column: &str) -> Result<Value, RemoteError> {
    row.try_get::<_, PgValue>(idx)
        .map(|v| v.0)
        .map_err(|e| value_err("reading a server row", column, e))
}

// ---- node registry --------------------------------------------------------

/// Registers the node (or updates its last-seen time) and returns the
/// highest `local_seq` the server applied for it.
pub async fn register_node(client: &Client, node: Uuid, name: &str) -> Result<i64, RemoteError> {
    let row = client
        .query_one(
            "INSERT INTO \"outpost\".\"nodes\" (node_id, name, last_seen_at) VALUES ($1, $2, now()) \
             ON CONFLICT (node_id) DO UPDATE SET last_seen_at = now() RETURNING applied_local_seq",
            &[&node, &name],
        )
        .await
        .map_err(db("registering the node"))?;
    Ok(row.get(0))
}

/// Records the node's cursor, so retention knows what it has seen.
pub async fn record_cursor(client: &Client, node: Uuid, cursor: Cursor) -> Result<(), RemoteError> {
    client
        .execute(
            "UPDATE \"outpost\".\"nodes\" SET cursor_txid = $2::text::xid8, cursor_seq = $3, last_seen_at = now() \
             WHERE node_id = $1",
            &[&node, &cursor.txid.to_string(), &cursor.seq],
        )
        .await
        .map_err(db("recording the node's cursor"))?;
    Ok(())
}

/// Where retention stands for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPosition {
    /// Changes up to this point were pruned (`None`: never pruned).
    pub pruned_through: Option<Cursor>,
    /// Whether a node at the given cursor missed pruned changes and must
    /// bootstrap again.
    pub must_rebootstrap: bool,
}

/// Whether a node whose cursor is `cursor` can still pull, or fell behind
/// the retention window.
pub async fn feed_position(
    client: &impl tokio_postgres::GenericClient,
    cursor: Cursor,
) -> Result<FeedPosition, RemoteError> {
    let row = client
        .query_opt(
            "SELECT value FROM \"outpost\".\"meta\" WHERE key = 'pruned_through'",
            &[],
        )
        .await
        .map_err(db("reading the retention mark"))?;
    let pruned_through = row.and_then(|r| {
        let v: String = r.get(0);
        let (t, s) = v.split_once(',')?;
        Some(Cursor {
            txid: t.parse().ok()?,
            seq: s.parse().ok()?,
        })
    });
    Ok(FeedPosition::at(cursor, pruned_through))
}

impl FeedPosition {
    /// Where a node at `cursor` stands against the retention mark.
    pub fn at(cursor: Cursor, pruned_through: Option<Cursor>) -> FeedPosition {
        FeedPosition {
            must_rebootstrap: pruned_through.is_some_and(|p| cursor < p),
            pruned_through,
        }
    }
}

/// What a kept connection checks before a sync, in one round trip (B5):
/// the installed tracking version (`None` when the `meta` row is missing)
/// and the retention mark. Fails when the tracking schema is gone or the
/// connection is dead; the caller then opens a new connection and checks
/// step by step ([`crate::installed_version`], [`feed_position`]), which
/// says which.
pub async fn probe(client: &Client) -> Result<(Option<i32>, Option<Cursor>), RemoteError> {
    let messages = client
        .simple_query(
            "SELECT key, value FROM \"outpost\".\"meta\" WHERE key IN ('schema_version', 'pruned_through')",
        )
        .await
        .map_err(db("checking the server"))?;
    let (mut version, mut pruned_through) = (None, None);
    for message in messages {
        let tokio_postgres::SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        match (row.get(0), row.get(1)) {
            (Some("schema_version"), Some(v)) => version = v.trim().parse::<i32>().ok(),
            (Some("pruned_through"), Some(v)) => {
                pruned_through = v.split_once(',').and_then(|(t, s)| {
                    Some(Cursor {
                        txid: t.parse().ok()?,
                        seq: s.parse().ok()?,
                    })
                })
            }
            _ => {}
        }
    }
    Ok((version, pruned_through))
}

/// Deletes changes every registered node has passed, and changes older than
/// `retention` whatever the nodes' cursors (a node behind them is told to
/// bootstrap again by [`feed_position`]). Returns how many were deleted.
pub async fn prune(client: &mut Client, retention: Duration) -> Result<u64, RemoteError> {
    let tx = client.transaction().await.map_err(db("starting a prune"))?;
    // All nodes have passed: at or before the lowest cursor, when every
    // registered node has one (no node: nothing has been passed); or older
    // than the window. One scan of the log: the previous form tested every
    // change against every node and deleted them through a join on
    // `(txid, seq)`, three times as long (770 against 250 ms for 100,000
    // changes, one node; in B3 it ran inside every full pull).
    let row = tx
        .query_one(
            "WITH gone AS (DELETE FROM \"outpost\".\"changes\" c \
               WHERE (c.txid, c.seq) <= (SELECT n.cursor_txid, n.cursor_seq FROM \"outpost\".\"nodes\" n \
                   WHERE NOT EXISTS (SELECT 1 FROM \"outpost\".\"nodes\" x \
                     WHERE x.cursor_txid IS NULL OR x.cursor_seq IS NULL) \
                   ORDER BY n.cursor_txid, n.cursor_seq LIMIT 1) \
                 OR (c.changed_at < now() - $1::float8 * interval '1 second' \
                   AND c.txid < pg_snapshot_xmin(pg_current_snapshot())) \
               RETURNING c.txid::text::int8 AS t, c.seq) \
             SELECT (SELECT count(*) FROM gone), \
               (SELECT t::text || ',' || seq FROM gone ORDER BY t DESC, seq DESC LIMIT 1)",
            &[&retention.as_secs_f64()],
        )
        .await
        .map_err(db("pruning the change log"))?;
    let count: i64 = row.get(0);
    if count > 0 {
        // The highest pruned position: the largest (txid, seq) removed.
        let top = tx
            .query_one(
                "SELECT COALESCE((SELECT value FROM \"outpost\".\"meta\" WHERE key = 'pruned_through'), '0,0')",
                &[],
            )
            .await
            .map_err(db("reading the retention mark"))?;
        let old: String = top.get(0);
        let top_pruned: Option<String> = row.get(1);
        if let Some(new) = top_pruned {
            let parse = |s: &str| -> (i64, i64) {
                let (a, b) = s.split_once(',').unwrap_or(("0", "0"));
                (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
            };
            if parse(&new) > parse(&old) {
                tx.execute(
                    "INSERT INTO \"outpost\".\"meta\" (key, value) VALUES ('pruned_through', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&new],
                )
                .await
                .map_err(db("recording the retention mark"))?;
            }
        }
    }
    tx.commit().await.map_err(db("committing a prune"))?;
    Ok(count as u64)
}

/// The age of the oldest open transaction that holds the pull horizon back,
/// if any transaction with an xid is open.
pub async fn horizon_age(client: &Client) -> Result<Option<Duration>, RemoteError> {
    let row = client
        .query_one(
            "SELECT EXTRACT(EPOCH FROM max(now() - xact_start))::float8 FROM pg_stat_activity \
             WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map_err(db("reading open transactions"))?;
    let secs: Option<f64> = row.get(0);
    Ok(secs.filter(|s| *s >= 0.0).map(Duration::from_secs_f64))
}

// ---- bootstrap --------------------------------------------------------------

/// One consistent snapshot of the server for a bootstrap: a `REPEATABLE
/// READ` read-only transaction and the cursor it starts the feed from.
pub struct Bootstrap<'a> {
    tx: Transaction<'a>,
    /// The feed position the snapshot covers: every change of a transaction
    /// below the snapshot's xmin is in it; later ones are pulled (again) from
    /// here, which is harmless.
    pub cursor: Cursor,
}

impl<'a> Bootstrap<'a> {
    /// Opens the snapshot.
    pub async fn begin(client: &'a mut Client) -> Result<Bootstrap<'a>, RemoteError> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db("starting the bootstrap snapshot"))?;
        // Streaming a huge table can outlast any statement limit the
        // session has (the client writes SQLite as it reads, so the COPY runs
        // as long as that takes); the session's lock_timeout still bounds
        // waiting for a table lock.
        tx.batch_execute(
            "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0;",
        )
        .await
        .map_err(db("lifting the statement limit for the bootstrap"))?;
        let row = tx
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8",
                &[],
            )
            .await
            .map_err(db("reading the snapshot's horizon"))?;
        let xmin: i64 = row.get(0);
        Ok(Bootstrap {
            tx,
            cursor: Cursor { txid: xmin, seq: 0 },
        })
    }

    /// The number of rows of a table in the snapshot (for progress).
    pub async fn count(&self, table: &Table) -> Result<i64, RemoteError> {
        let row = self
            .tx
            .query_one(&format!("SELECT count(*) FROM {}", quote(&table.name)), &[])
            .await
            .map_err(db(format!("counting the rows of {}", table.name)))?;
        Ok(row.get(0))
    }

    /// Streams every row of `table` in the snapshot with binary `COPY`,
    /// in primary-key order (SQLite inserts fastest in key order), never
    /// holding the table in memory.
    pub async fn rows(
        &self,
        pg_schema: &str,
        table: &'a Table,
    ) -> Result<impl Stream<Item = Result<Vec<Value>, RemoteError>> + 'a, RemoteError> {
        let cols = column_list(table, "");
        let from = format!("{}.{}", quote(pg_schema), quote(&table.name));
        let order = table
            .primary_key
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let probe = self
            .tx
            .prepare(&format!("SELECT {cols} FROM {from} LIMIT 0"))
            .await
            .map_err(db(format!("preparing the copy of {}", table.name)))?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        let copy = self
            .tx
            .copy_out(&format!(
                "COPY (SELECT {cols} FROM {from} ORDER BY {order}) TO STDOUT (FORMAT binary)"
            ))
            .await
            .map_err(db(format!("copying {}", table.name)))?;
        let name = table.name.clone();
        let stream = BinaryCopyOutStream::new(copy, &types)
            .map_err(move |e| RemoteError::Db {
                action: format!("copying {name}"),
                source: e,
            })
            .map(move |row| {
                let row = row?;
                (0..table.columns.len())
                    .map(|i| {
                        row.try_get::<PgValue>(i)
                            .map(|v| v.0)
                            .map_err(|e| value_err("copying a row", &table.columns[i].name, e))
                    })
                    .collect::<Result<Vec<Value>, RemoteError>>()
            });
        Ok(stream)
    }

    /// Ends the snapshot.
    pub async fn finish(self) -> Result<(), RemoteError> {
        self.tx
            .commit()
            .await
            .map_err(db("ending the bootstrap snapshot"))
    }
}

// ---- pull --------------------------------------------------------------------

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
    match pull_once(client, schema, cursor, limit, tables, cache).await {
        // A kept statement outlived a column type change on the server:
        // prepare everything again and read the batch again.
        Err(e) if e.is_stale_statement() => {
            tracing::debug!(error = %e, "a pull statement went stale; preparing again");
            cache.0.clear();
            pull_once(client, schema, cursor, limit, tables, cache).await
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
    let feed = statement(&tx, &mut cache.0, true, PULL_FEED_SQL)
        .await
        .map_err(db("reading the change feed"))?;
    let held = statement(&tx, &mut cache.0, true, PULL_HELD_BACK_SQL)
        .await
        .map_err(db("checking for held-back changes"))?;
    let started = std::time::Instant::now();
    let txid = cursor.txid.to_string();
    let feed_params: [&(dyn ToSql + Sync); 3] = [&txid, &cursor.seq, &limit];
    let held_params: [&(dyn ToSql + Sync); 2] = [&txid, &cursor.seq];
    let (settings, changes, held_back) = tokio::join!(
        tx.batch_execute(PULL_SETTINGS),
        tx.query(&feed, &feed_params),
        tx.query_one(&held, &held_params),
    );
    settings.map_err(db("preparing a pull"))?;
    let changes = changes.map_err(db("reading the change feed"))?;
    let held_back: bool = held_back
        .and_then(|r| r.try_get(0))
        .map_err(db("checking for held-back changes"))?;
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
    let mut seen: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
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
    for (name, list) in keys {
        let table = table_of(schema, &name)?;
        let rows = match typed_keys(table, &list) {
            Some(columns) => fetch_by_typed_keys(&tx, schema, table, cache, &list, columns).await?,
            None => fetch_by_keys(&tx, schema, table, &list).await?,
        };
        batch.rows.extend(rows);
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

/// Planner settings of a pull's read-only transaction (why: [`pull`]).
const PULL_SETTINGS: &str = concat!(
    key_settings!(),
    " ",
    index_only!(),
    " SET LOCAL enable_sort = off; SET LOCAL plan_cache_mode = force_generic_plan;"
);

/// The change feed after a cursor, up to the snapshot's xmin (docs/design.md §4).
const PULL_FEED_SQL: &str = "SELECT c.txid::text::int8, c.seq, c.table_name, c.pk::text, c.op FROM \"outpost\".\"changes\" c \
     WHERE (c.txid, c.seq) > ($1::text::xid8, $2::int8) AND c.txid < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY c.txid, c.seq LIMIT $3";

/// Whether a change after the cursor is held back by a transaction still
/// open in the snapshot: `(txid, seq) > cursor AND txid >= xmin`, written so
/// that the index walk starts at the larger of the two txids. With the row
/// comparison as an index condition, the walk started at the cursor and
/// stepped over every change after it (the whole backlog, at every batch).
const PULL_HELD_BACK_SQL: &str = "SELECT EXISTS (SELECT 1 FROM \"outpost\".\"changes\" \
     WHERE txid >= greatest(pg_snapshot_xmin(pg_current_snapshot()), $1::text::xid8) \
     AND (txid <> $1::text::xid8 OR seq > $2::int8))";

/// Statements of pulls on one connection, by text: prepared once, run with
/// a generic plan. Kept with the connection they were prepared on; a
/// failed run drops both (so a statement a schema change invalidated is
/// prepared again on the next connection).
#[derive(Default)]
pub struct PullStatements(Statements);

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
fn typed_key_column(column: &outpost_core::schema::Column) -> bool {
    use outpost_core::types::ScalarType as S;
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
    let columns: Vec<&outpost_core::schema::Column> = table
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
            use outpost_core::types::ScalarType as S;
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
    let npk = table.primary_key.len();
    let names: Vec<String> = (0..npk).map(|i| format!("k{i}")).collect();
    let arrays: Vec<String> = (0..npk)
        .map(|i| format!("${}::{}[]", i + 2, pk_type(table, i)))
        .collect();
    let join: Vec<String> = table
        .primary_key
        .iter()
        .zip(&names)
        .map(|(c, k)| format!("t.{} = v.{k}", quote(c)))
        .collect();
    let from = format!("{}.{}", quote(&schema.pg_schema), quote(&table.name));
    let sql = format!(
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.{first} IS NOT NULL, {vk}, {cols} \
         FROM unnest($1::text[], {arrays}) v(key, {names}) \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = v.key::jsonb \
         LEFT JOIN {from} t ON {join}",
        first = quote(&table.primary_key[0]),
        vk = qualified_keys(&names),
        arrays = arrays.join(", "),
        names = names.join(", "),
        cols = column_list(table, "t."),
        tn = npk + 2,
        join = join.join(" AND "),
    );
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
    let key_cols: Vec<String> = (0..table.primary_key.len())
        .map(|i| format!("(k.key ->> {i})::{} AS \"_k{i}\"", pk_type(table, i)))
        .collect();
    let join: Vec<String> = table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{} = (k.key ->> {i})::{}", quote(c), pk_type(table, i)))
        .collect();
    let present = quote(&table.primary_key[0]);
    let from = format!("{}.{}", quote(&schema.pg_schema), quote(&table.name));
    let sql = format!(
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.{present} IS NOT NULL, {keys}, {cols} \
         FROM (SELECT unnest($1::text[])::jsonb AS key) k \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $2 AND rv.pk = k.key \
         LEFT JOIN {from} t ON {join}",
        keys = key_cols.join(", "),
        cols = column_list(table, "t."),
        join = join.join(" AND "),
    );
    let s = tx
        .prepare(&sql)
        .await
        .map_err(db(format!("reading changed rows of {}", table.name)))?;
    stream_rows(tx, &s, &[&keys, &table.name], table, keys.len()).await
}

/// A [`ServerRow`] from columns `version, origin, origin_local_seq,
/// updated_at, present, pk…, columns…` starting at `at`.
fn server_row(r: &Row, table: &Table, at: usize) -> Result<ServerRow, RemoteError> {
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
        version: r.get::<_, Option<i64>>(at).unwrap_or(0),
        origin: r.get(at + 1),
        origin_local_seq: r.get(at + 2),
        changed_at,
    })
}

// ---- push --------------------------------------------------------------------

/// Applies pushed rows in one transaction, in the order given (the engine
/// orders parents first for upserts and children first for deletes), under
/// `SET LOCAL outpost.origin = <node>`. For each row, in batches:
///
/// 1. lock the existing rows (`FOR UPDATE`), read their versions;
/// 2. skip rows this node already wrote at this `local_seq` (a retry after a
///    lost acknowledgement); report rows whose version moved on as conflicts
///    with the server's row; a version written by this node itself is its
///    own base, never a conflict;
/// 3. update existing rows, insert absent ones (`ON CONFLICT DO NOTHING` on
///    the key: a row inserted meanwhile by someone else is a conflict),
///    delete deleted ones; a statement the server refuses is retried row by
///    row under savepoints, and only the refused rows fail;
/// 4. read the versions written (their `origin_local_seq` is set by the
///    capture: module doc) and record the node's highest applied
///    `local_seq`.
pub async fn push(
    client: &mut Client,
    schema: &Schema,
    node: Uuid,
    cursor: Cursor,
    rows: &[PushRow],
    statement_timeout: Duration,
) -> Result<Vec<PushOutcome>, RemoteError> {
    let tx = client.transaction().await.map_err(db("starting a push"))?;
    // Generic plans: a push's statements are prepared once and run per
    // group; a custom plan would fold the group's arrays into constants and
    // plan them again every time (tens of ms for 5,000 rows). The generic
    // estimate (a few rows per array) also favours the index lookups the
    // push wants.
    tx.batch_execute(&format!(
        "{KEY_SETTINGS} SET LOCAL outpost.origin = '{node}'; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
         SET LOCAL plan_cache_mode = force_generic_plan;",
        statement_timeout.as_millis(),
        statement_timeout.as_millis()
    ))
    .await
    .map_err(db("preparing a push"))?;
    // A version whose change was pruned is covered when the node's cursor
    // is past everything pruned (otherwise the node must bootstrap again).
    let pruned_ok = {
        let pos = feed_position(&tx, cursor).await?;
        pos.pruned_through.is_some() && !pos.must_rebootstrap
    };
    let mut outcomes: Vec<Option<PushOutcome>> = vec![None; rows.len()];
    let mut cache = Statements::new();
    // Consecutive rows of one table and one kind form a group.
    let mut start = 0;
    while start < rows.len() {
        let table = table_of(schema, &rows[start].table)?;
        let is_delete = rows[start].values.is_none();
        // Typed arrays take any number of rows in a handful of parameters;
        // a `VALUES` list is bounded by the parameter limit.
        let per = if unnestable(table) {
            PUSH_GROUP
        } else {
            (MAX_PARAMS / (table.columns.len() + 2)).clamp(1, 1000)
        };
        let mut end = start + 1;
        while end < rows.len()
            && end - start < per
            && rows[end].table == rows[start].table
            && rows[end].values.is_none() == is_delete
        {
            end += 1;
        }
        // Children of a row refused earlier in this push fail with a reason
        // of their own instead of a bare foreign-key error.
        for i in start..end {
            if let Some(message) = refused_parent(schema, table, &rows[i], rows, &outcomes) {
                outcomes[i] = Some(PushOutcome::Failed { message });
            }
        }
        let ctx = GroupContext {
            node,
            cursor,
            pruned_ok,
        };
        push_group(
            &tx,
            schema,
            table,
            &ctx,
            &mut cache,
            &rows[start..end],
            &mut outcomes[start..end],
        )
        .await?;
        start = end;
    }
    let max_seq = rows
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| {
            matches!(
                o,
                Some(PushOutcome::Applied { .. } | PushOutcome::AlreadyApplied { .. })
            )
        })
        .map(|(r, _)| r.local_seq)
        .max()
        .unwrap_or(0);
    tx.execute(
        "INSERT INTO \"outpost\".\"nodes\" (node_id, last_seen_at, applied_local_seq) VALUES ($1, now(), $2) \
         ON CONFLICT (node_id) DO UPDATE SET last_seen_at = now(), \
         applied_local_seq = GREATEST(\"outpost\".\"nodes\".applied_local_seq, EXCLUDED.applied_local_seq)",
        &[&node, &max_seq],
    )
    .await
    .map_err(db("recording the node's applied changes"))?;
    tx.commit().await.map_err(db("committing a push"))?;
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(PushOutcome::Failed {
                message: "not processed".into(),
            })
        })
        .collect())
}

/// The rows of one push statement as a derived table `v(i, n0, n1…)`, `i`
/// being the row's index in the list (from 0).
struct Source {
    sql: String,
    params: Vec<Value>,
    /// The text is the same for every group (typed arrays): worth keeping
    /// prepared for the rest of the push.
    cacheable: bool,
}

/// Whether a table's rows can travel as `unnest` arrays: not with array
/// columns (`int[][]` is `int[]` to PostgreSQL, so an array of arrays would
/// not `unnest` one level).
fn unnestable(table: &Table) -> bool {
    !table.columns.iter().any(|c| c.ty.array)
}

/// `v(i, names…)` of `cells[row][column]`, typed `types[column]`, bound from
/// parameter `first_param`: one typed array per column expanded by
/// `unnest … WITH ORDINALITY` (the statement is parsed and planned like a
/// small one, whatever the group size; a `VALUES` list of 6,000 parameters
/// cost more to parse and plan than to run), or a `VALUES` list when the
/// table has array columns.
fn source(
    unnest: bool,
    names: &[String],
    types: &[String],
    cells: Vec<Vec<Value>>,
    first_param: usize,
) -> Source {
    if unnest {
        let mut columns: Vec<Vec<Value>> = vec![Vec::with_capacity(cells.len()); names.len()];
        for row in cells {
            for (column, v) in columns.iter_mut().zip(row) {
                column.push(v);
            }
        }
        let arrays: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(j, t)| format!("${}::{t}[]", first_param + j))
            .collect();
        Source {
            sql: format!(
                "(SELECT (u.o - 1)::int4 AS i, {n} FROM unnest({a}) WITH ORDINALITY u({n}, o)) v",
                n = names.join(", "),
                a = arrays.join(", "),
            ),
            params: columns.into_iter().map(Value::Array).collect(),
            cacheable: true,
        }
    } else {
        let mut params = Vec::new();
        let tuples: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let mut c = vec![i.to_string()];
                for (v, t) in row.into_iter().zip(types) {
                    params.push(v);
                    c.push(format!("${}::{t}", first_param + params.len() - 1));
                }
                format!("({})", c.join(", "))
            })
            .collect();
        Source {
            sql: format!("(VALUES {}) v(i, {})", tuples.join(", "), names.join(", ")),
            params,
            cacheable: false,
        }
    }
}

/// `v(i, k0, k1…)` of the rows' keys.
fn key_source(table: &Table, rows: &[&PushRow]) -> Source {
    let npk = table.primary_key.len();
    let names: Vec<String> = (0..npk).map(|i| format!("k{i}")).collect();
    let types: Vec<String> = (0..npk).map(|i| pk_type(table, i)).collect();
    let cells = rows
        .iter()
        .map(|r| {
            (0..npk)
                .map(|j| r.pk.get(j).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    source(unnestable(table), &names, &types, cells, 1)
}

/// Statements prepared during one push, by text.
type Statements = HashMap<String, Statement>;

/// The prepared statement for `sql`, kept for the next group when its text
/// does not depend on the group.
async fn statement(
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

/// If `row` references (by a foreign key) a row of this push that the server
/// refused, says which and why.
fn refused_parent(
    schema: &Schema,
    table: &Table,
    row: &PushRow,
    rows: &[PushRow],
    outcomes: &[Option<PushOutcome>],
) -> Option<String> {
    let values = row.values.as_ref()?;
    for fk in &table.foreign_keys {
        let Some(parent) = schema.table(&fk.ref_table) else {
            continue;
        };
        let child_vals: Vec<&Value> = fk
            .columns
            .iter()
            .filter_map(|c| {
                table
                    .columns
                    .iter()
                    .position(|x| &x.name == c)
                    .map(|i| &values[i])
            })
            .collect();
        if child_vals.iter().any(|v| v.is_null()) {
            continue;
        }
        for (other, outcome) in rows.iter().zip(outcomes) {
            let Some(PushOutcome::Failed { message }) = outcome else {
                continue;
            };
            if other.table != parent.name {
                continue;
            }
            let Some(pvals) = &other.values else { continue };
            let parent_vals: Vec<&Value> = fk
                .ref_columns
                .iter()
                .filter_map(|c| {
                    parent
                        .columns
                        .iter()
                        .position(|x| &x.name == c)
                        .map(|i| &pvals[i])
                })
                .collect();
            if parent_vals == child_vals {
                return Some(format!(
                    "depends on {} {} (foreign key {}), which the server refused: {message}",
                    parent.name, other.local_pk, fk.name
                ));
            }
        }
    }
    None
}

/// `v.k0, v.k1, …`: the key columns of a `v(i, k0, k1…)` source.
fn qualified_keys(kcols: &[String]) -> String {
    kcols
        .iter()
        .map(|k| format!("v.{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What every group of a push shares.
struct GroupContext {
    node: Uuid,
    cursor: Cursor,
    pruned_ok: bool,
}

/// The lock, state and version statements look a group's rows up by key. Left to
/// itself the planner hashes the group and scans the whole table and its
/// `row_versions` (stale statistics of a growing table): a push then costs
/// O(table) per group (256 ms per 5,000 rows at the start of a 100,000-row
/// push, 1,165 ms at its end). Index lookups only, for these statements
/// ([`index_only!`]). Afterwards the server's own settings again
/// (`DEFAULT`: what the configuration, role or database sets, not
/// necessarily `on`).
const INDEX_ONLY: &str = index_only!();
const PLANNER_DEFAULTS: &str = "SET LOCAL enable_seqscan = DEFAULT; SET LOCAL enable_bitmapscan = DEFAULT; \
     SET LOCAL enable_hashjoin = DEFAULT; SET LOCAL enable_mergejoin = DEFAULT; \
     SET LOCAL enable_material = DEFAULT; SET LOCAL jit = DEFAULT;";

async fn push_group(
    tx: &Transaction<'_>,
    schema: &Schema,
    table: &Table,
    ctx: &GroupContext,
    cache: &mut Statements,
    rows: &[PushRow],
    outcomes: &mut [Option<PushOutcome>],
) -> Result<(), RemoteError> {
    let from = format!("{}.{}", quote(&schema.pg_schema), quote(&table.name));
    let npk = table.primary_key.len();
    let kcols: Vec<String> = (0..npk).map(|i| format!("k{i}")).collect();
    let pk_quoted: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
    let all: Vec<&PushRow> = rows.iter().collect();
    let keys = key_source(table, &all);
    let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
    // 1. Lock what exists, in key order (no deadlock between pushes).
    let lock_sql = format!(
        "SELECT 1 FROM {from} t WHERE ({pk}) IN (SELECT {k} FROM {src}) ORDER BY {pk} FOR UPDATE",
        pk = pk_quoted
            .iter()
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        k = kcols.join(", "),
        src = keys.sql,
    );
    // 2. Versions and current rows.
    let join: Vec<String> = pk_quoted
        .iter()
        .zip(&kcols)
        .map(|(c, k)| format!("t.{c} = v.{k}"))
        .collect();
    let state_sql = format!(
        "SELECT v.i, c.txid::text::int8, c.seq, rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, \
         t.{first} IS NOT NULL, {vk}, {cols} \
         FROM {src} \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = jsonb_build_array({vk}) \
         LEFT JOIN \"outpost\".\"changes\" c ON c.seq = rv.version \
         LEFT JOIN {from} t ON {join}",
        first = pk_quoted[0],
        vk = qualified_keys(&kcols),
        src = keys.sql,
        cols = column_list(table, "t."),
        tn = keys.params.len() + 1,
        join = join.join(" AND "),
    );
    let started = std::time::Instant::now();
    let lock = statement(tx, cache, keys.cacheable, &lock_sql)
        .await
        .map_err(db(format!("locking rows of {}", table.name)))?;
    let state = statement(tx, cache, keys.cacheable, &state_sql)
        .await
        .map_err(db(format!("reading versions of {}", table.name)))?;
    let lock_params = params(&key_binds);
    let mut state_params = params(&key_binds);
    state_params.push(&table.name);
    // One round trip: tokio-postgres pipelines requests polled together, and
    // the server runs them in order (the state read, in its own snapshot,
    // sees the rows as locked).
    let (_, _, states, _) = try_join4(
        tx.batch_execute(INDEX_ONLY)
            .map_err(db("planning a push group")),
        tx.query(&lock, &lock_params)
            .map_err(db(format!("locking rows of {}", table.name))),
        tx.query(&state, &state_params)
            .map_err(db(format!("reading versions of {}", table.name))),
        tx.batch_execute(PLANNER_DEFAULTS)
            .map_err(db("planning a push group")),
    )
    .await?;
    let read_time = started.elapsed();
    let node_text = ctx.node.to_string();
    let mut to_write: Vec<usize> = Vec::new();
    let mut existed: HashMap<usize, bool> = HashMap::new();
    for st in &states {
        let i = st.get::<_, i32>(0) as usize;
        if outcomes[i].is_some() {
            continue;
        }
        let row = &rows[i];
        let server = server_row(st, table, 3)?;
        let change: Option<Cursor> =
            match (st.get::<_, Option<i64>>(1), st.get::<_, Option<i64>>(2)) {
                (Some(txid), Some(seq)) => Some(Cursor { txid, seq }),
                _ => None,
            };
        let own = server.origin.as_deref() == Some(node_text.as_str());
        if own && server.origin_local_seq.is_some_and(|s| s >= row.local_seq) {
            outcomes[i] = Some(PushOutcome::AlreadyApplied {
                version: server.version,
            });
            continue;
        }
        // Only a version one of this node's pushes wrote is its own base (a
        // retry after a lost acknowledgement). A version its model service
        // wrote in remote mode (no local_seq) is a later write that the
        // queued row never saw: compare it like anyone else's.
        let own_push = own && server.origin_local_seq.is_some();
        let based_on_current = own_push
            || match row.expected {
                Expected::Version(v) => v == server.version,
                Expected::AsOfCursor => match change {
                    Some(c) => c <= ctx.cursor,
                    None => server.version == 0 || ctx.pruned_ok,
                },
            };
        if !based_on_current {
            outcomes[i] = Some(PushOutcome::Conflict(server));
            continue;
        }
        existed.insert(i, server.values.is_some());
        to_write.push(i);
    }
    if to_write.is_empty() {
        return Ok(());
    }
    // 3. Write, isolating refused rows. The capture records
    // `outpost.local_seq` as each written version's `origin_local_seq`: the
    // group's highest. That is all a retry's check needs (module doc,
    // "origin_local_seq"), and it spares a second write of every version.
    let writing = std::time::Instant::now();
    let group_seq = to_write
        .iter()
        .map(|&i| rows[i].local_seq)
        .max()
        .unwrap_or(0)
        .to_string();
    tx.execute(
        "SELECT set_config('outpost.local_seq', $1, true)",
        &[&group_seq],
    )
    .await
    .map_err(db("starting a push group"))?;
    let written = write_rows(tx, &from, table, cache, rows, &to_write, &existed, outcomes).await?;
    // Rows an insert found already present (inserted meanwhile): conflicts.
    let mut lost: Vec<usize> = Vec::new();
    for &i in &to_write {
        if outcomes[i].is_none() && !written.contains(&i) {
            lost.push(i);
        }
    }
    if !lost.is_empty() {
        let subset: Vec<&PushRow> = lost.iter().map(|&i| &rows[i]).collect();
        let now = fetch_current(tx, &from, table, cache, &subset).await?;
        for (j, &i) in lost.iter().enumerate() {
            outcomes[i] = Some(match now.get(j) {
                Some(server) => PushOutcome::Conflict(server.clone()),
                None => PushOutcome::Failed {
                    message: "the row changed on the server during the push".into(),
                },
            });
        }
    }
    let write_time = writing.elapsed();
    // 4. The versions of what was written.
    let versioning = std::time::Instant::now();
    let done: Vec<usize> = written.into_iter().collect();
    if done.is_empty() {
        return Ok(());
    }
    let types: Vec<String> = (0..npk).map(|i| pk_type(table, i)).collect();
    let cells: Vec<Vec<Value>> = done
        .iter()
        .map(|&i| {
            (0..npk)
                .map(|j| rows[i].pk.get(j).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    let src = source(unnestable(table), &kcols, &types, cells, 1);
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    let mut p = params(&binds);
    p.push(&table.name);
    // Entries by key through the index (left to itself the planner hashed
    // every entry of the table).
    let sql = format!(
        "SELECT v.i, COALESCE(r.version, 0) FROM {src} \
         LEFT JOIN LATERAL (SELECT x.version FROM \"outpost\".\"row_versions\" x \
           WHERE x.table_name = ${tn} AND x.pk = jsonb_build_array({vk})) r ON true",
        vk = qualified_keys(&kcols),
        src = src.sql,
        tn = src.params.len() + 1,
    );
    let versions_stmt = statement(tx, cache, src.cacheable, &sql)
        .await
        .map_err(db(format!("reading versions of {}", table.name)))?;
    let (_, versions, _) = try_join3(
        tx.batch_execute(INDEX_ONLY)
            .map_err(db("planning a push group")),
        tx.query(&versions_stmt, &p)
            .map_err(db(format!("reading versions of {}", table.name))),
        tx.batch_execute(PLANNER_DEFAULTS)
            .map_err(db("planning a push group")),
    )
    .await?;
    for v in versions {
        let j = v.get::<_, i32>(0) as usize;
        if let Some(&i) = done.get(j) {
            outcomes[i] = Some(PushOutcome::Applied { version: v.get(1) });
        }
    }
    tracing::debug!(
        table = %table.name,
        rows = rows.len(),
        read_ms = read_time.as_millis() as u64,
        write_ms = write_time.as_millis() as u64,
        version_ms = versioning.elapsed().as_millis() as u64,
        "push group"
    );
    Ok(())
}

/// The current server rows for `rows`' keys (in the same order).
async fn fetch_current(
    tx: &Transaction<'_>,
    from: &str,
    table: &Table,
    cache: &mut Statements,
    rows: &[&PushRow],
) -> Result<Vec<ServerRow>, RemoteError> {
    let npk = table.primary_key.len();
    let kcols: Vec<String> = (0..npk).map(|i| format!("k{i}")).collect();
    let keys = key_source(table, rows);
    let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
    let join: Vec<String> = table
        .primary_key
        .iter()
        .zip(&kcols)
        .map(|(c, k)| format!("t.{} = v.{k}", quote(c)))
        .collect();
    let sql = format!(
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.{first} IS NOT NULL, {vk}, {cols} \
         FROM {src} \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = jsonb_build_array({vk}) \
         LEFT JOIN {from} t ON {join} ORDER BY v.i",
        first = quote(&table.primary_key[0]),
        vk = qualified_keys(&kcols),
        src = keys.sql,
        cols = column_list(table, "t."),
        tn = keys.params.len() + 1,
        join = join.join(" AND "),
    );
    let mut p = params(&key_binds);
    p.push(&table.name);
    let found = async {
        let s = statement(tx, cache, keys.cacheable, &sql).await?;
        tx.query(&s, &p).await
    }
    .await
    .map_err(db(format!("reading rows of {}", table.name)))?;
    found.iter().map(|r| server_row(r, table, 0)).collect()
}

/// Columns a push writes: not generated ones.
fn writable(table: &Table) -> Vec<usize> {
    (0..table.columns.len())
        .filter(|&i| !table.columns[i].generated)
        .collect()
}

/// Writes rows `idx` (deletes, updates of rows that existed, inserts of
/// absent ones). Returns the indexes written; refused rows get a `Failed`
/// outcome; inserts that met an existing key are neither.
#[allow(clippy::too_many_arguments)]
async fn write_rows(
    tx: &Transaction<'_>,
    from: &str,
    table: &Table,
    cache: &mut Statements,
    rows: &[PushRow],
    idx: &[usize],
    existed: &HashMap<usize, bool>,
    outcomes: &mut [Option<PushOutcome>],
) -> Result<std::collections::BTreeSet<usize>, RemoteError> {
    let mut written = std::collections::BTreeSet::new();
    let deletes: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| rows[i].values.is_none())
        .collect();
    let updates: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| rows[i].values.is_some() && existed.get(&i) == Some(&true))
        .collect();
    let inserts: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| rows[i].values.is_some() && existed.get(&i) != Some(&true))
        .collect();
    for (kind, set) in [
        (Kind::Delete, deletes),
        (Kind::Update, updates),
        (Kind::Insert, inserts),
    ] {
        if set.is_empty() {
            continue;
        }
        match run_savepointed(tx, from, table, cache, rows, &set, kind).await? {
            Ok(done) => written.extend(done),
            Err(_) => {
                // Row by row: only the refused rows fail.
                for &i in &set {
                    match run_savepointed(tx, from, table, cache, rows, &[i], kind).await? {
                        Ok(done) => written.extend(done),
                        Err(message) => outcomes[i] = Some(PushOutcome::Failed { message }),
                    }
                }
            }
        }
    }
    Ok(written)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Delete,
    Update,
    Insert,
}

/// Runs one write statement for rows `set` inside a savepoint. The outer
/// error is a broken connection; the inner one the server's refusal.
async fn run_savepointed(
    tx: &Transaction<'_>,
    from: &str,
    table: &Table,
    cache: &mut Statements,
    rows: &[PushRow],
    set: &[usize],
    kind: Kind,
) -> Result<Result<Vec<usize>, String>, RemoteError> {
    let npk = table.primary_key.len();
    let pk_quoted: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
    let cols = writable(table);
    let subset: Vec<&PushRow> = set.iter().map(|&i| &rows[i]).collect();
    let (sql, src) = match kind {
        Kind::Delete => {
            let src = key_source(table, &subset);
            let k: Vec<String> = (0..npk).map(|i| format!("k{i}")).collect();
            let sql = format!(
                "DELETE FROM {from} t USING {src} WHERE {cond} RETURNING v.i",
                src = src.sql,
                cond = pk_quoted
                    .iter()
                    .zip(&k)
                    .map(|(c, k)| format!("t.{c} = v.{k}"))
                    .collect::<Vec<_>>()
                    .join(" AND "),
            );
            (sql, src)
        }
        Kind::Update | Kind::Insert => {
            let vnames: Vec<String> = (0..cols.len()).map(|j| format!("c{j}")).collect();
            let types: Vec<String> = cols
                .iter()
                .map(|&c| table.columns[c].ty.pg_name.clone())
                .collect();
            let cells: Vec<Vec<Value>> = subset
                .iter()
                .map(|r| {
                    let row = r.values.as_deref().unwrap_or(&[]);
                    cols.iter()
                        .map(|&c| row.get(c).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect();
            let src = source(unnestable(table), &vnames, &types, cells, 1);
            let names: Vec<String> = cols
                .iter()
                .map(|&c| quote(&table.columns[c].name))
                .collect();
            let sql = if matches!(kind, Kind::Update) {
                let set_list: Vec<String> = names
                    .iter()
                    .zip(&vnames)
                    .filter(|(n, _)| !pk_quoted.contains(n))
                    .map(|(n, v)| format!("{n} = v.{v}"))
                    .collect();
                let cond: Vec<String> = pk_quoted
                    .iter()
                    .map(|c| {
                        let pos = names.iter().position(|n| n == c).unwrap_or(0);
                        format!("t.{c} = v.{}", vnames[pos])
                    })
                    .collect();
                if set_list.is_empty() {
                    // A key-only table: nothing to update, the row exists.
                    return Ok(Ok(set.to_vec()));
                }
                format!(
                    "UPDATE {from} t SET {sets} FROM {src} WHERE {cond} RETURNING v.i",
                    sets = set_list.join(", "),
                    src = src.sql,
                    cond = cond.join(" AND "),
                )
            } else {
                let overriding = if table
                    .columns
                    .iter()
                    .any(|c| c.identity == Some(outpost_core::schema::Identity::Always))
                {
                    " OVERRIDING SYSTEM VALUE"
                } else {
                    ""
                };
                format!(
                    "INSERT INTO {from} ({names}){overriding} SELECT {vn} FROM {src} ORDER BY v.i \
                     ON CONFLICT ({pk}) DO NOTHING RETURNING {ret}",
                    names = names.join(", "),
                    vn = vnames
                        .iter()
                        .map(|v| format!("v.{v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    src = src.sql,
                    pk = pk_quoted.join(", "),
                    ret = pk_quoted.join(", "),
                )
            };
            (sql, src)
        }
    };
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    tx.batch_execute("SAVEPOINT outpost_row")
        .await
        .map_err(db("setting a savepoint"))?;
    // Prepared inside the savepoint: a statement the server cannot even
    // prepare (a column gone on the server) is a refusal like any other.
    let result = match statement(tx, cache, src.cacheable, &sql).await {
        Ok(s) => tx.query(&s, &params(&binds)).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(returned) => {
            tx.batch_execute("RELEASE SAVEPOINT outpost_row")
                .await
                .map_err(db("releasing a savepoint"))?;
            let done = match kind {
                Kind::Insert => {
                    // RETURNING gives the keys inserted; match them to rows
                    // through a map (a linear search per row was quadratic
                    // in the group size). `Value` has no `Hash`: its debug
                    // text stands in.
                    let by_key: HashMap<String, usize> = set
                        .iter()
                        .map(|&i| (format!("{:?}", rows[i].pk), i))
                        .collect();
                    let mut done = Vec::new();
                    for r in &returned {
                        let key: Vec<Value> = (0..npk)
                            .map(|j| get_value(r, j, &table.primary_key[j]))
                            .collect::<Result<_, _>>()?;
                        // A miss (keys equal but spelled differently, like
                        // -0.0 and 0.0) falls back to the exact comparison.
                        let found = by_key
                            .get(&format!("{key:?}"))
                            .copied()
                            .or_else(|| set.iter().copied().find(|&i| rows[i].pk == key));
                        if let Some(i) = found {
                            done.push(i);
                        }
                    }
                    done
                }
                Kind::Update => returned
                    .iter()
                    .filter_map(|r| set.get(r.get::<_, i32>(0) as usize).copied())
                    .collect(),
                // A delete of an absent row is done too: the row is gone.
                Kind::Delete => set.to_vec(),
            };
            Ok(Ok(done))
        }
        Err(e) => {
            if crate::error::is_connection_error(&e) {
                return Err(RemoteError::Db {
                    action: format!("writing rows of {}", table.name),
                    source: e,
                });
            }
            tx.batch_execute("ROLLBACK TO SAVEPOINT outpost_row")
                .await
                .map_err(db("rolling back to a savepoint"))?;
            Ok(Err(describe(&e)))
        }
    }
}

/// The number of rows of a synced table on the server.
pub async fn row_count(client: &Client, schema: &Schema, table: &str) -> Result<i64, RemoteError> {
    let t = table_of(schema, table)?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.{}",
                quote(&schema.pg_schema),
                quote(&t.name)
            ),
            &[],
        )
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
    let order = t
        .primary_key
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM {}.{} ORDER BY {order}",
                column_list(t, ""),
                quote(&schema.pg_schema),
                quote(&t.name)
            ),
            &[],
        )
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

// ---- ids and versions for the node runtime -----------------------------------------

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
    let qualified = format!("{}.{}", quote(pg_schema), quote(table));
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

/// The current versions of rows by key, in the order given (0 for a row
/// never changed since tracking began).
pub async fn versions_of<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    table: &Table,
    pks: &[Vec<Value>],
) -> Result<Vec<i64>, RemoteError> {
    if pks.is_empty() {
        return Ok(Vec::new());
    }
    client
        .batch_execute(KEY_SETTINGS)
        .await
        .map_err(db("preparing to read versions"))?;
    let rows: Vec<PushRow> = pks
        .iter()
        .map(|pk| PushRow {
            table: table.name.clone(),
            local_pk: String::new(),
            pk: pk.clone(),
            values: None,
            local_seq: 0,
            expected: Expected::AsOfCursor,
        })
        .collect();
    let npk = table.primary_key.len();
    let kcols: Vec<String> = (0..npk).map(|i| format!("k{i}")).collect();
    let refs: Vec<&PushRow> = rows.iter().collect();
    let keys = key_source(table, &refs);
    let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
    let mut p = params(&key_binds);
    p.push(&table.name);
    let sql = format!(
        "SELECT v.i, COALESCE(rv.version, 0) FROM {src} \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = jsonb_build_array({vk}) ORDER BY v.i",
        src = keys.sql,
        vk = qualified_keys(&kcols),
        tn = keys.params.len() + 1,
    );
    let found = client
        .query(&sql, &p)
        .await
        .map_err(db(format!("reading versions of {}", table.name)))?;
    Ok(found.iter().map(|r| r.get::<_, i64>(1)).collect())
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
