//! The model service on the replica: runs an `outpost_query::Plan` on the
//! SQLite file, and registers the SQL functions the plans' SQL needs
//! ([`register_functions`]: the `outpost_numeric` collation and the
//! `outpost_lower` function).
//!
//! Writes are plain SQL on the replicated tables, so the capture triggers
//! record them as local changes like any other writer's; each write runs in
//! one savepoint of a transaction begun `IMMEDIATE` (the write lock taken
//! up front, waiting out the busy timeout), so a failing write changes
//! nothing and a busy file is `LocalError::Locked`, never a half-way
//! "database is locked". Reads run in one too,
//! so all their statements see the same state of the file.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use outpost_core::schema::{Schema, Table};
use outpost_core::types::Value;
use outpost_query::text::{LOWER_FUNCTION, NUMERIC_COLLATION, compare_numeric, lower};
use outpost_query::{
    Driver, ExecOptions, Plan, QueryError, QueryOutput, Records, Statement, execute, execute_read,
};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params_from_iter};

use crate::error::LocalError;
use crate::replica::Replica;
use crate::value::from_sqlite;

/// The model service's entry points on an open replica: the same as the
/// free functions of this module, on the replica's read-write connection,
/// so a caller (the engine) needs no SQLite handle of its own.
impl Replica {
    /// [`register_functions`] on the replica's connection.
    pub fn register_query_functions(&self) -> Result<(), LocalError> {
        register_functions(self.connection())
    }

    /// [`run`] on the replica's connection. `fill` runs inside the write's
    /// transaction; it may take ids with [`Replica::reserved_ids`].
    pub fn run_query(
        &self,
        schema: &Schema,
        plan: &Plan,
        sync_status: bool,
        fill: &mut Fill<'_>,
    ) -> Result<QueryOutput, LocalError> {
        run(self.connection(), schema, plan, sync_status, fill)
    }

    /// [`read`] on the replica's connection.
    pub fn read_query(
        &self,
        schema: &Schema,
        plan: &Plan,
        sync_status: bool,
    ) -> Result<Records, LocalError> {
        read(self.connection(), schema, plan, sync_status)
    }
}

/// Registers on `conn` what the query SQL uses: the collation
/// `outpost_numeric` (decimal text by value) and the function
/// `outpost_lower` (PostgreSQL's `lower()`). Call it on every connection
/// that runs queries; without it they fail with "no such collation
/// sequence".
pub fn register_functions(conn: &Connection) -> Result<(), LocalError> {
    conn.create_collation(NUMERIC_COLLATION, compare_numeric)
        .map_err(LocalError::sqlite(
            "registering the outpost_numeric collation",
        ))?;
    conn.create_scalar_function(
        LOWER_FUNCTION,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => SqlValue::Text(lower(&String::from_utf8_lossy(t))),
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(f) => SqlValue::Real(f),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            })
        },
    )
    .map_err(LocalError::sqlite("registering the outpost_lower function"))?;
    Ok(())
}

/// The SQLite value bound for a statement parameter (the storage forms of
/// `outpost_core::types`; `json` and arrays arrive as their JSON text).
fn param(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Int(i) => SqlValue::Integer(*i),
        // SQLite turns a NaN bound as REAL into NULL; the replica stores it
        // as text.
        Value::Float(f) if f.is_nan() => SqlValue::Text("NaN".into()),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Text(s) | Value::Json(s) => SqlValue::Text(s.clone()),
        Value::Bytes(b) => SqlValue::Blob(b.clone()),
        Value::Array(_) => SqlValue::Text(
            v.to_json(&outpost_core::types::ColumnType::scalar(
                outpost_core::types::ScalarType::Text,
                "text[]",
            ))
            .to_string(),
        ),
    }
}

/// The caller's hook for rows about to be inserted (see [`run`]).
pub type Fill<'f> = dyn FnMut(&Table, &mut BTreeMap<String, Value>) -> Result<(), String> + 'f;

struct Local<'c, 'f, 'g> {
    conn: &'c Connection,
    fill: &'f mut Fill<'g>,
    model: String,
    /// Fold the change log before each statement (a write with `syncStatus`).
    sync_status: bool,
}

impl Driver for Local<'_, '_, '_> {
    type Error = LocalError;

    async fn query(&mut self, statement: &Statement) -> Result<Vec<Vec<Value>>, LocalError> {
        if self.sync_status {
            // A write's records carry `syncStatus`: fold what its own
            // statements logged (the savepoint holds the write lock by then).
            crate::fold::fold(self.conn)?;
        }
        // Through `LocalError::sqlite`: a lock held past the busy timeout is
        // `Locked` (retry later), not an internal error.
        let context = || LocalError::sqlite(format!("running a query on {}", self.model));
        let mut stmt = self
            .conn
            .prepare_cached(&statement.sql)
            .map_err(context())?;
        let mut rows = stmt
            .query(params_from_iter(statement.params.iter().map(param)))
            .map_err(context())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(context())? {
            let mut values = Vec::with_capacity(statement.columns.len());
            for (i, c) in statement.columns.iter().enumerate() {
                let raw = row.get_ref(i).map_err(context())?;
                values.push(from_sqlite(raw, &c.ty, &c.name)?);
            }
            out.push(values);
        }
        Ok(out)
    }

    fn fill(&mut self, table: &Table, row: &mut BTreeMap<String, Value>) -> Result<(), LocalError> {
        (self.fill)(table, row).map_err(|message| {
            LocalError::Query(QueryError::Refused {
                model: table.name.clone(),
                message,
            })
        })
    }
}

/// Polls a future that never waits (every driver call above completes at
/// once).
fn run_ready<T>(fut: impl Future<Output = Result<T, LocalError>>) -> Result<T, LocalError> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(LocalError::Query(QueryError::Internal {
            model: String::new(),
            message: "the replica's query did not complete synchronously".into(),
        })),
    }
}

/// Runs a plan on the replica. Local writes go through the capture
/// triggers (plain SQL on the replicated tables; capture is not
/// silenced), inside one savepoint, so a failing write changes nothing;
/// a read's statements run in one savepoint too (one snapshot).
///
/// `fill` is called for every row about to be inserted (`create`,
/// `createMany`, `upsert`'s create) with the row's column values given so
/// far (column name → value), so the caller can fill defaults and ids; it
/// may add entries; `Err(message)` refuses the row (and the write).
///
/// With `sync_status`, every returned record (also nested relation
/// records) gets a `syncStatus` field: the row's `_outpost_rows.status`, or
/// `"SYNCED"` when it has no entry.
pub fn run(
    conn: &Connection,
    schema: &Schema,
    plan: &Plan,
    sync_status: bool,
    fill: &mut Fill<'_>,
) -> Result<QueryOutput, LocalError> {
    let mut driver = Local {
        conn,
        fill,
        model: plan.model().to_string(),
        sync_status: sync_status && plan.is_write(),
    };
    if sync_status {
        // `syncStatus` reads `_outpost_rows`: fold what capture logged
        // before the savepoint, in a transaction of its own.
        crate::fold::fold_for_read(conn)?;
    }
    let options = ExecOptions::replica(sync_status);
    in_savepoint(conn, plan, || {
        run_ready(execute(&mut driver, schema, plan, &options))
    })
}

/// Runs a read plan (`findMany`, `findFirst`, `findUnique`) on the replica
/// as [`run`] does, and returns its rows unassembled
/// ([`outpost_query::Records`]), for the caller to deserialize into its
/// own types without JSON records in between.
pub fn read(
    conn: &Connection,
    schema: &Schema,
    plan: &Plan,
    sync_status: bool,
) -> Result<Records, LocalError> {
    let mut no_fill = |_: &Table, _: &mut BTreeMap<String, Value>| Ok(());
    let mut driver = Local {
        conn,
        fill: &mut no_fill,
        model: plan.model().to_string(),
        sync_status: false,
    };
    if sync_status {
        crate::fold::fold_for_read(conn)?;
    }
    let options = ExecOptions::replica(sync_status);
    in_savepoint(conn, plan, || {
        run_ready(execute_read(&mut driver, schema, plan, &options))
    })
}

/// Runs `f` in one savepoint, rolled back when it fails. A write outside
/// any transaction first begins one `IMMEDIATE`: it takes the write lock
/// up front, waiting up to the busy timeout, instead of upgrading a read
/// lock half-way (an upgrade fails at once when another connection wrote
/// meanwhile); a lock still held after the timeout is `LocalError::Locked`.
fn in_savepoint<T>(
    conn: &Connection,
    plan: &Plan,
    f: impl FnOnce() -> Result<T, LocalError>,
) -> Result<T, LocalError> {
    let what = || format!("starting {} on {}", plan.operation(), plan.model());
    let own_tx = plan.is_write() && conn.is_autocommit();
    if own_tx {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(LocalError::sqlite(what()))?;
    }
    // A read runs several statements (a relation level each, and the check
    // for sync metadata before each), so it too runs in one savepoint: one
    // snapshot of the file, whoever else writes to it.
    if let Err(e) = conn.execute_batch("SAVEPOINT outpost_query") {
        if own_tx {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return Err(LocalError::sqlite(what())(e));
    }
    let out = f();
    let end = if out.is_ok() {
        conn.execute_batch("RELEASE outpost_query").and_then(|()| {
            if own_tx {
                conn.execute_batch("COMMIT")
            } else {
                Ok(())
            }
        })
    } else {
        conn.execute_batch("ROLLBACK TO outpost_query; RELEASE outpost_query")
    };
    if own_tx && !conn.is_autocommit() {
        // A failed write (or a failed commit) leaves nothing behind.
        let _ = conn.execute_batch("ROLLBACK");
    }
    match (out, end) {
        (Ok(out), Ok(())) => Ok(out),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(LocalError::sqlite(format!(
            "committing {} on {}",
            plan.operation(),
            plan.model()
        ))(e)),
    }
}
