//! The replica's side of a sync: the cursor and replica state, bootstrap
//! writes, applying a pull batch, planning a push and taking its
//! acknowledgement, conflicts and their resolution, the `SyncLog`, and the
//! lists a person works from: pending changes, failed rows (retry or discard).
//!
//! Every write of server data happens in [`Replica::apply_silenced`], so it is
//! never mistaken for a local change, and data and the cursor that covers it
//! commit in one transaction. Conflicts are decided by the one pure function
//! `outpost_core::conflict::resolve`, here at pull and at push alike.

use std::collections::{BTreeMap, HashMap};

use outpost_core::conflict::{Outcome, Policy, Rules, Side, resolve};
use outpost_core::ident::{literal, quote};
use outpost_core::schema::{Schema, Table};
use outpost_core::sqlite::{pk_json, pk_json_select};
use outpost_core::sync::{Cursor, Expected, PullBatch, PushOutcome, PushRow, ServerRow};
use outpost_core::types::{ScalarType, Value};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension as _, params, params_from_iter};
use serde::Serialize;

use crate::error::LocalError;
use crate::replica::Replica;
use crate::value::{from_sqlite, row_from_json, row_to_json, to_sqlite, to_sqlite_ref};

/// Where a replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplicaState {
    /// Never bootstrapped.
    Empty,
    /// A bootstrap started and has not finished: the replica holds no
    /// consistent copy and does not claim to be synced.
    Bootstrapping,
    /// Bootstrapped; the cursor says how far it has pulled.
    Ready,
}

/// Counts for one model in one sync run, in the seed's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelStats {
    /// Rows looked at.
    pub records_processed: u64,
    /// Rows that landed (pushed, pulled, merged).
    pub records_succeeded: u64,
    /// Rows the server refused.
    pub records_failed: u64,
    /// Rows left in conflict.
    pub conflicts: u64,
}

impl ModelStats {
    /// Adds another run's counts.
    pub fn add(&mut self, other: ModelStats) {
        self.records_processed += other.records_processed;
        self.records_succeeded += other.records_succeeded;
        self.records_failed += other.records_failed;
        self.conflicts += other.conflicts;
    }
}

/// Per-model counts.
pub type Stats = BTreeMap<String, ModelStats>;

/// How a person resolves a conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Keep the local row (or deletion) and push it over the server's.
    KeepLocal,
    /// Take the server's row (or deletion).
    KeepServer,
    /// This row (all columns, table order), pushed over the server's.
    Merged(Vec<Value>),
}

/// A row in conflict, with both sides and their common ancestor.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictEntry {
    /// The table.
    pub table: String,
    /// The row key (JSON array).
    pub pk: String,
    /// The row before the local change (`None`: it did not exist).
    pub base: Option<Vec<Value>>,
    /// The local row (`None`: deleted locally).
    pub local: Option<Vec<Value>>,
    /// The server's row (`None`: deleted on the server).
    pub server: Option<Vec<Value>>,
    /// The server's version.
    pub server_version: Option<i64>,
    /// When the local change was made.
    pub changed_at: Option<String>,
}

/// A `SyncLog` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Row id.
    pub id: i64,
    /// The model.
    pub model: String,
    /// `BIDIRECTIONAL`, `TO_SERVER` or `FROM_SERVER`.
    pub direction: String,
    /// What started the run.
    pub trigger: String,
    /// `RUNNING`, `SUCCESS` or `FAILED`.
    pub status: String,
    /// Start time.
    pub started_at: String,
    /// End time.
    pub completed_at: Option<String>,
    /// Rows looked at.
    pub records_processed: i64,
    /// Rows that landed.
    pub records_succeeded: i64,
    /// Rows refused.
    pub records_failed: i64,
    /// Rows left in conflict.
    pub conflicts: i64,
    /// The error, if the run failed for this model.
    pub error: Option<String>,
}

/// The conflict policy of each model (`manual` where unset).
#[derive(Debug, Clone, Default)]
pub struct Policies(pub HashMap<String, Policy>);

impl Policies {
    /// The policy for `table`.
    pub fn of(&self, table: &str) -> Policy {
        self.0.get(table).copied().unwrap_or_default()
    }
}

fn now() -> String {
    outpost_core::types::timestamptz_from_chrono(chrono::Utc::now())
}

/// Columns of `updatedAt` kind: both sides changing them is no conflict.
fn latest_wins(table: &Table) -> Vec<usize> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            matches!(c.name.as_str(), "updatedAt" | "updated_at")
                && matches!(c.ty.scalar, ScalarType::Timestamptz | ScalarType::Timestamp)
                && !c.ty.array
        })
        .map(|(i, _)| i)
        .collect()
}

fn generated(table: &Table) -> Vec<usize> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.generated)
        .map(|(i, _)| i)
        .collect()
}

fn table_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Table, LocalError> {
    schema.table(name).ok_or_else(|| {
        LocalError::BadSnapshot(format!("table {name:?} is not in the replica's schema"))
    })
}

fn pk_where(table: &Table, first: usize) -> String {
    table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = ?{}", quote(c), first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn pk_sql(table: &Table, pk: &[Value]) -> Vec<SqlValue> {
    table
        .pk_columns()
        .zip(pk)
        .map(|(c, v)| to_sqlite(v, &c.ty))
        .collect()
}

/// The `_outpost_rows.pk` of a row with key values `pk`, as the triggers
/// compute it.
pub fn local_pk(conn: &Connection, table: &Table, pk: &[Value]) -> Result<String, LocalError> {
    let mut stmt = conn
        .prepare_cached(&pk_json_select(table))
        .map_err(LocalError::sqlite("computing a row key"))?;
    stmt.query_row(params_from_iter(pk_sql(table, pk)), |r| r.get(0))
        .map_err(LocalError::sqlite("computing a row key"))
}

/// The key values of an `_outpost_rows.pk`.
fn pk_values(table: &Table, pk: &str) -> Result<Vec<Value>, LocalError> {
    let json: Vec<serde_json::Value> =
        serde_json::from_str(pk).map_err(|e| LocalError::BadStoredValue {
            column: format!("{}._outpost_rows.pk", table.name),
            ty: "JSON array".into(),
            message: e.to_string(),
        })?;
    let mut obj = serde_json::Map::new();
    for (c, j) in table.primary_key.iter().zip(json) {
        obj.insert(c.clone(), j);
    }
    let full = row_from_json(table, &serde_json::Value::Object(obj).to_string())?;
    Ok(table
        .primary_key
        .iter()
        .filter_map(|k| table.columns.iter().position(|c| &c.name == k))
        .map(|i| full[i].clone())
        .collect())
}

/// The local row with key `pk`, if present.
pub fn read_row(
    conn: &Connection,
    table: &Table,
    pk: &[Value],
) -> Result<Option<Vec<Value>>, LocalError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        table
            .columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote(&table.name),
        pk_where(table, 1)
    );
    let mut stmt = conn
        .prepare_cached(&sql)
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

/// `INSERT OR REPLACE` of every column of `table`, in table order.
fn insert_sql(table: &Table) -> String {
    format!(
        "INSERT OR REPLACE INTO {} ({}) VALUES ({})",
        quote(&table.name),
        table
            .columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        (1..=table.columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Writes (or deletes, for `None`) a row as the server has it. Call with
/// capture silenced.
fn write_row(
    conn: &Connection,
    table: &Table,
    pk: &[Value],
    values: Option<&[Value]>,
) -> Result<(), LocalError> {
    match values {
        Some(values) => {
            let sql = insert_sql(table);
            let vals: Vec<SqlValue> = table
                .columns
                .iter()
                .zip(values)
                .map(|(c, v)| to_sqlite(v, &c.ty))
                .collect();
            conn.prepare_cached(&sql)
                .and_then(|mut s| s.execute(params_from_iter(vals)))
                .map_err(LocalError::sqlite(format!(
                    "writing a row of {}",
                    table.name
                )))?;
        }
        None => {
            let sql = format!(
                "DELETE FROM {} WHERE {}",
                quote(&table.name),
                pk_where(table, 1)
            );
            conn.prepare_cached(&sql)
                .and_then(|mut s| s.execute(params_from_iter(pk_sql(table, pk))))
                .map_err(LocalError::sqlite(format!(
                    "deleting a row of {}",
                    table.name
                )))?;
        }
    }
    Ok(())
}

/// An entry's columns the engine reads.
struct EntryState {
    status: String,
    server_version: Option<i64>,
    base_row: Option<String>,
    local_seq: Option<i64>,
    changed_at: Option<String>,
    conflict_version: Option<i64>,
}

fn entry(conn: &Connection, table: &str, pk: &str) -> Result<Option<EntryState>, LocalError> {
    conn.prepare_cached(
        "SELECT status, server_version, base_row, local_seq, changed_at, conflict_version FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![table, pk], |r| {
            Ok(EntryState {
                status: r.get(0)?,
                server_version: r.get(1)?,
                base_row: r.get(2)?,
                local_seq: r.get(3)?,
                changed_at: r.get(4)?,
                conflict_version: r.get(5)?,
            })
        })
        .optional()
    })
    .map_err(LocalError::sqlite("reading a row's sync state"))
}

fn mark_synced(
    conn: &Connection,
    table: &str,
    pk: &str,
    version: i64,
    deleted: bool,
) -> Result<(), LocalError> {
    conn.prepare_cached(
        "INSERT INTO \"_outpost_rows\" (table_name, pk, status, server_version, deleted) VALUES (?1, ?2, 'SYNCED', ?3, ?4) \
         ON CONFLICT (table_name, pk) DO UPDATE SET status = 'SYNCED', server_version = excluded.server_version, \
         base_row = NULL, deleted = excluded.deleted, error = NULL, conflict_row = NULL, conflict_version = NULL",
    )
    .and_then(|mut s| s.execute(params![table, pk, version, deleted]))
    .map_err(LocalError::sqlite("marking a row synced"))?;
    Ok(())
}

/// The common case of a push acknowledgement, set-wise: every row that
/// landed (applied, or already applied) and whose entry was not edited since
/// it was read (same `local_seq`) becomes `SYNCED` with its new version, in
/// one statement (per row, an entry read and an upsert cost more than the
/// push's server work for plain inserts). Returns the indexes of the rows so
/// settled; the others (no entry, edited since, refused, conflicts) are left
/// for the row-by-row path.
fn mark_pushed_synced(
    conn: &Connection,
    rows: &[PushRow],
    outcomes: &[PushOutcome],
) -> Result<std::collections::HashSet<usize>, LocalError> {
    let mut landed = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (row, outcome)) in rows.iter().zip(outcomes).enumerate() {
        if let PushOutcome::Applied { version } | PushOutcome::AlreadyApplied { version } = outcome
        {
            landed.push(serde_json::json!([
                row.table,
                row.local_pk,
                row.local_seq,
                version,
                i64::from(row.values.is_none())
            ]));
            index.insert((row.table.as_str(), row.local_pk.as_str()), i);
        }
    }
    let mut done = std::collections::HashSet::new();
    if landed.is_empty() {
        return Ok(done);
    }
    let list = serde_json::Value::Array(landed).to_string();
    let mut stmt = conn
        .prepare_cached(
            "UPDATE \"_outpost_rows\" SET status = 'SYNCED', server_version = a.v, base_row = NULL, \
             deleted = a.d, error = NULL, conflict_row = NULL, conflict_version = NULL \
             FROM (SELECT value ->> 0 AS t, value ->> 1 AS k, value ->> 2 AS s, \
                          value ->> 3 AS v, value ->> 4 AS d FROM json_each(?1)) AS a \
             WHERE table_name = a.t AND pk = a.k AND local_seq = a.s \
             RETURNING table_name, pk",
        )
        .map_err(LocalError::sqlite("marking pushed rows synced"))?;
    let mut found = stmt
        .query([&list])
        .map_err(LocalError::sqlite("marking pushed rows synced"))?;
    while let Some(r) = found
        .next()
        .map_err(LocalError::sqlite("marking pushed rows synced"))?
    {
        let table: String = r
            .get(0)
            .map_err(LocalError::sqlite("marking pushed rows synced"))?;
        let pk: String = r
            .get(1)
            .map_err(LocalError::sqlite("marking pushed rows synced"))?;
        if let Some(&i) = index.get(&(table.as_str(), pk.as_str())) {
            done.insert(i);
        }
    }
    Ok(done)
}

/// Re-bases a dirty entry on a server version: its base becomes the server
/// row, so the next push expects that version.
fn rebase(
    conn: &Connection,
    table: &Table,
    pk: &str,
    server: &ServerRow,
) -> Result<(), LocalError> {
    let base = server.values.as_deref().map(|v| row_to_json(table, v));
    conn.prepare_cached(
        "UPDATE \"_outpost_rows\" SET status = 'PENDING', server_version = ?3, base_row = ?4, error = NULL, \
         conflict_row = NULL, conflict_version = NULL WHERE table_name = ?1 AND pk = ?2",
    )
    .and_then(|mut s| s.execute(params![table.name, pk, server.version, base]))
    .map_err(LocalError::sqlite("re-basing a local change"))?;
    Ok(())
}

fn mark_conflict(
    conn: &Connection,
    table: &Table,
    pk: &str,
    server: &ServerRow,
) -> Result<(), LocalError> {
    let row = server.values.as_deref().map(|v| row_to_json(table, v));
    conn.prepare_cached(
        "UPDATE \"_outpost_rows\" SET status = 'CONFLICT', conflict_row = ?3, conflict_version = ?4 \
         WHERE table_name = ?1 AND pk = ?2",
    )
    .and_then(|mut s| s.execute(params![table.name, pk, row, server.version]))
    .map_err(LocalError::sqlite("recording a conflict"))?;
    Ok(())
}

/// What happened to one row whose server side moved while it had local
/// changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The server's row was taken.
    Server,
    /// The local row stays and will be pushed (possibly merged).
    Local,
    /// Left in conflict.
    Conflict,
}

/// Decides a dirty row against a newer server row with `resolve` and
/// applies the outcome. Capture must be silenced.
fn settle(
    conn: &Connection,
    table: &Table,
    pk: &str,
    state: &EntryState,
    server: &ServerRow,
    policy: Policy,
) -> Result<Settled, LocalError> {
    let local = read_row(conn, table, &server.pk)?;
    let base = match &state.base_row {
        Some(json) => Some(row_from_json(table, json)?),
        None => None,
    };
    let ignore = generated(table);
    let latest = latest_wins(table);
    let rules = Rules {
        ignore: &ignore,
        latest_wins: &latest,
    };
    // A local insert (no base) against a key the server has a tombstone
    // for (deleted, version > 0): the key existed there and was deleted,
    // possibly this very insert whose acknowledgement was lost. "Absent on
    // both sides" would read as "the server never saw it" and push it again,
    // resurrecting a deleted row; under `manual` it is a delete against an
    // edit instead.
    let tombstone = base.is_none()
        && local.is_some()
        && server.values.is_none()
        && server.version > 0
        && policy == Policy::Manual;
    // The mirror case: a row inserted here and deleted here, against a key
    // the server has. The insert may have landed (its acknowledgement lost)
    // and been changed there since; "absent in the base and here" would
    // read as an insert and delete the server never saw and take the
    // server's row without a word, losing the delete. Under `manual` it is
    // a delete against an edit.
    let deleted_own_insert =
        base.is_none() && local.is_none() && server.values.is_some() && policy == Policy::Manual;
    let outcome = if tombstone {
        Outcome::Conflict {
            kind: outpost_core::conflict::ConflictKind::ChangedLocallyDeletedOnServer,
            fields: Vec::new(),
        }
    } else if deleted_own_insert {
        Outcome::Conflict {
            kind: outpost_core::conflict::ConflictKind::DeletedLocallyChangedOnServer,
            fields: Vec::new(),
        }
    } else {
        resolve(
            base.as_deref(),
            Side {
                row: local.as_deref(),
                changed_at: state.changed_at.as_deref(),
            },
            Side {
                row: server.values.as_deref(),
                changed_at: server.changed_at.as_deref(),
            },
            policy,
            &rules,
        )
    };
    Ok(match outcome {
        Outcome::TakeServer => {
            write_row(conn, table, &server.pk, server.values.as_deref())?;
            mark_synced(
                conn,
                &table.name,
                pk,
                server.version,
                server.values.is_none(),
            )?;
            Settled::Server
        }
        Outcome::KeepLocal => {
            rebase(conn, table, pk, server)?;
            Settled::Local
        }
        Outcome::Merged(row) => {
            write_row(conn, table, &server.pk, Some(&row))?;
            rebase(conn, table, pk, server)?;
            Settled::Local
        }
        Outcome::Conflict { .. } => {
            mark_conflict(conn, table, pk, server)?;
            Settled::Conflict
        }
    })
}

/// One pulled row against its entry (`state`, read by the caller), the
/// row-by-row way: every case of [`Replica::apply_pull`]'s doc.
#[allow(clippy::too_many_arguments)]
fn apply_pulled_row(
    tx: &Connection,
    t: &Table,
    row: &ServerRow,
    key: &str,
    state: Option<EntryState>,
    node: &str,
    policies: &Policies,
    s: &mut ModelStats,
) -> Result<(), LocalError> {
    match state {
        None => {
            write_row(tx, t, &row.pk, row.values.as_deref())?;
            mark_synced(tx, &row.table, key, row.version, row.values.is_none())?;
            s.records_succeeded += 1;
        }
        Some(st) if st.status == "SYNCED" => {
            if st.server_version != Some(row.version) {
                write_row(tx, t, &row.pk, row.values.as_deref())?;
                mark_synced(tx, &row.table, key, row.version, row.values.is_none())?;
            }
            s.records_succeeded += 1;
        }
        Some(st) if st.server_version == Some(row.version) => {
            // Already based on this version.
            s.records_succeeded += 1;
        }
        Some(st) if st.status == "CONFLICT" => {
            // Still in conflict; show the newest server side. Only
            // a server change the conflict had not seen counts.
            if st.conflict_version != Some(row.version) {
                mark_conflict(tx, t, key, row)?;
                s.conflicts += 1;
            }
        }
        Some(st) => {
            // Our own push coming back (a remote-mode write has
            // no local_seq: it goes through `settle` like others).
            if row.origin.as_deref() == Some(node) && row.origin_local_seq.is_some() {
                // Newer local edits stay.
                // A refused edit stays refused, with the server's
                // reason (re-basing clears it).
                let reason: Option<String> = if st.status == "FAILED" {
                    tx.query_row(
                        "SELECT error FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2",
                        params![row.table, key],
                        |r| r.get(0),
                    )
                    .map_err(LocalError::sqlite("reading a failed row"))?
                } else {
                    None
                };
                rebase(tx, t, key, row)?;
                if st.status == "FAILED" {
                    tx.execute(
                        "UPDATE \"_outpost_rows\" SET status = 'FAILED', error = ?3 WHERE table_name = ?1 AND pk = ?2",
                        params![row.table, key, reason],
                    )
                    .map_err(LocalError::sqlite("keeping a failed row"))?;
                }
                s.records_succeeded += 1;
            } else {
                match settle(tx, t, key, &st, row, policies.of(&row.table))? {
                    Settled::Conflict => s.conflicts += 1,
                    _ => s.records_succeeded += 1,
                }
            }
        }
    }
    Ok(())
}

/// What [`Replica::apply_pull`] keeps per table of a batch.
struct PullTable<'c> {
    /// Entries of the batch's keys not yet looked at.
    entries: HashMap<String, EntryState>,
    writer: RowWriter<'c>,
    /// `(pk, version, deleted)` of rows now synced, for [`mark_synced_all`].
    synced: Vec<(String, i64, bool)>,
}

/// The entries of `keys` of `table`, in one statement.
fn entries_of(
    conn: &Connection,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, EntryState>, LocalError> {
    let what = "reading the sync state of pulled rows";
    let list = serde_json::to_string(keys).map_err(|e| LocalError::BadSnapshot(e.to_string()))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT pk, status, server_version, base_row, local_seq, changed_at, conflict_version FROM \"_outpost_rows\" \
             WHERE table_name = ?1 AND pk IN (SELECT value FROM json_each(?2))",
        )
        .map_err(LocalError::sqlite(what))?;
    let rows = stmt
        .query_map(params![table, list], |r| {
            Ok((
                r.get::<_, String>(0)?,
                EntryState {
                    status: r.get(1)?,
                    server_version: r.get(2)?,
                    base_row: r.get(3)?,
                    local_seq: r.get(4)?,
                    changed_at: r.get(5)?,
                    conflict_version: r.get(6)?,
                },
            ))
        })
        .map_err(LocalError::sqlite(what))?;
    rows.collect::<Result<_, _>>()
        .map_err(LocalError::sqlite(what))
}

/// [`mark_synced`] of many rows of one table in one statement per kind
/// (the per-row upsert was a third of a pull's SQLite time). The rows travel
/// as JSON objects `{pk: version}`, one for present rows and one for deleted
/// ones, so `json_each` hands out each key and version as plain values: a
/// list of `[pk, version, deleted]` arrays had every element rendered back
/// to text and parsed again by each `value ->> n`, half of the statement's
/// time (B3).
fn mark_synced_all(
    conn: &Connection,
    table: &str,
    rows: &[(String, i64, bool)],
) -> Result<(), LocalError> {
    for deleted in [false, true] {
        let list: BTreeMap<&str, i64> = rows
            .iter()
            .filter(|(_, _, d)| *d == deleted)
            .map(|(pk, v, _)| (pk.as_str(), *v))
            .collect();
        if list.is_empty() {
            continue;
        }
        let list =
            serde_json::to_string(&list).map_err(|e| LocalError::BadSnapshot(e.to_string()))?;
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

/// [`write_row`] with its statements built once per table: an existing row
/// is updated in place (its key index untouched), an absent one inserted.
/// Both statements are prepared once per table and batch and bind the
/// values without copying them (per row, the statement cache's lookup and
/// return and a copy of every text value were a fifth of the write).
struct RowWriter<'c> {
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
    fn new(conn: &'c Connection, table: &Table) -> Result<RowWriter<'c>, LocalError> {
        let key: Vec<usize> = table
            .primary_key
            .iter()
            .filter_map(|k| table.columns.iter().position(|c| &c.name == k))
            .collect();
        let rest: Vec<usize> = (0..table.columns.len())
            .filter(|i| !key.contains(i))
            .collect();
        let update = (!rest.is_empty() && key.len() == table.primary_key.len()).then(|| {
            format!(
                "UPDATE {} SET {} WHERE {}",
                quote(&table.name),
                rest.iter()
                    .enumerate()
                    .map(|(n, &i)| format!("{} = ?{}", quote(&table.columns[i].name), n + 1))
                    .collect::<Vec<_>>()
                    .join(", "),
                key.iter()
                    .enumerate()
                    .map(|(n, &i)| format!(
                        "{} = ?{}",
                        quote(&table.columns[i].name),
                        rest.len() + n + 1
                    ))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            )
        });
        let what = || LocalError::sqlite(format!("writing a row of {}", table.name));
        let update = match update {
            Some(sql) => Some(conn.prepare_cached(&sql).map_err(what())?),
            None => None,
        };
        let insert = conn.prepare_cached(&insert_sql(table)).map_err(what())?;
        Ok(RowWriter {
            update,
            insert,
            order: rest.into_iter().chain(key).collect(),
        })
    }

    /// Writes (or deletes, for `None`) a row as the server has it. Call with
    /// capture silenced.
    fn write(
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

/// [`local_pk`] without a statement where Rust provably produces the same
/// text as SQLite's `json_array` of the bound values (integers, and text
/// escaped as SQLite's `jsonAppendString` does); anything else (REAL and
/// BLOB columns, other storage) asks SQLite.
fn pull_key(conn: &Connection, table: &Table, pk: &[Value]) -> Result<String, LocalError> {
    match pk_json_rust(table, pk) {
        Some(key) => Ok(key),
        None => local_pk(conn, table, pk),
    }
}

fn pk_json_rust(table: &Table, pk: &[Value]) -> Option<String> {
    let mut out = String::from("[");
    for (n, (c, v)) in table.pk_columns().zip(pk).enumerate() {
        if !c.ty.array && matches!(c.ty.sqlite_decl(), "REAL" | "BLOB") {
            return None;
        }
        if n > 0 {
            out.push(',');
        }
        match to_sqlite(v, &c.ty) {
            SqlValue::Integer(i) => out.push_str(&i.to_string()),
            SqlValue::Text(s) => json_string(&mut out, &s),
            _ => return None,
        }
    }
    out.push(']');
    Some(out)
}

/// Appends `s` as a JSON string exactly as SQLite's `json_array` writes
/// text: `"` and `\` escaped with a backslash, `\b \t \n \f \r` by name,
/// other bytes below 0x20 as `\u00xx` (lowercase hex), everything else as is.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn cursor_row(conn: &Connection) -> Result<(Cursor, ReplicaState), LocalError> {
    conn.query_row(
        "SELECT txid, seq, state FROM \"_outpost_cursor\" WHERE id = 1",
        [],
        |r| {
            let state: String = r.get(2)?;
            Ok((
                Cursor {
                    txid: r.get(0)?,
                    seq: r.get(1)?,
                },
                match state.as_str() {
                    "READY" => ReplicaState::Ready,
                    "BOOTSTRAPPING" => ReplicaState::Bootstrapping,
                    _ => ReplicaState::Empty,
                },
            ))
        },
    )
    .map_err(LocalError::sqlite("reading the cursor"))
}

fn set_cursor(conn: &Connection, cursor: Cursor, state: &str) -> Result<(), LocalError> {
    conn.execute(
        "UPDATE \"_outpost_cursor\" SET txid = ?1, seq = ?2, state = ?3, updated_at = ?4 WHERE id = 1",
        params![cursor.txid, cursor.seq, state, now()],
    )
    .map_err(LocalError::sqlite("moving the cursor"))?;
    Ok(())
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, LocalError> {
    conn.query_row(
        "SELECT value FROM \"_outpost_meta\" WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
    .map_err(LocalError::sqlite(format!("reading _outpost_meta.{key}")))
}

fn meta_set(conn: &Connection, key: &str, value: Option<&str>) -> Result<(), LocalError> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO \"_outpost_meta\" (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, v],
        ),
        None => conn.execute("DELETE FROM \"_outpost_meta\" WHERE key = ?1", [key]),
    }
    .map_err(LocalError::sqlite(format!("writing _outpost_meta.{key}")))?;
    Ok(())
}

impl Replica {
    /// The pull cursor and the replica's state.
    pub fn cursor(&self) -> Result<(Cursor, ReplicaState), LocalError> {
        cursor_row(self.connection())
    }

    // ---- bootstrap ---------------------------------------------------------

    /// Starts (or resumes) a bootstrap. Returns the tables already copied by
    /// an interrupted earlier attempt, with the feed position of the
    /// snapshot each was copied from; they are not copied again.
    pub fn bootstrap_begin(&mut self) -> Result<BTreeMap<String, Cursor>, LocalError> {
        let (cursor, state) = self.cursor()?;
        let conn = self.connection();
        if state == ReplicaState::Bootstrapping {
            let done: BTreeMap<String, Cursor> = match meta_get(conn, "bootstrap_done")? {
                Some(j) => serde_json::from_str(&j).unwrap_or_default(),
                None => BTreeMap::new(),
            };
            return Ok(done);
        }
        let tx = conn
            .unchecked_transaction()
            .map_err(LocalError::sqlite("starting a bootstrap"))?;
        set_cursor(&tx, cursor, "BOOTSTRAPPING")?;
        meta_set(&tx, "bootstrap_done", Some("{}"))?;
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
            let sql = format!(
                "DELETE FROM {name} WHERE NOT EXISTS (SELECT 1 FROM \"_outpost_rows\" r WHERE r.table_name = {lit} \
                 AND r.pk = {key} AND r.status <> 'SYNCED')",
                name = quote(&t.name),
                lit = literal(&t.name),
                key = pk_json(t, &quote(&t.name)),
            );
            tx.execute(&sql, []).map_err(LocalError::sqlite(format!("emptying {table}")))?;
            tx.execute(
                "DELETE FROM \"_outpost_rows\" WHERE table_name = ?1 AND status = 'SYNCED'",
                [&t.name],
            )
            .map_err(LocalError::sqlite(format!("forgetting synced rows of {table}")))?;
            Ok(())
        })
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
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        let dirty_exists: bool = self
            .connection()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM \"_outpost_rows\" WHERE table_name = ?1 AND status <> 'SYNCED')",
                [table],
                |r| r.get(0),
            )
            .map_err(LocalError::sqlite("checking local changes"))?;
        self.apply_silenced(|tx| {
            let cols = t
                .columns
                .iter()
                .map(|c| quote(&c.name))
                .collect::<Vec<_>>()
                .join(", ");
            let marks = (1..=t.columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            // The common case (nothing local) takes the plain insert.
            let sql = format!(
                "INSERT OR IGNORE INTO {} ({cols}) VALUES ({marks})",
                quote(&t.name)
            );
            let mut stmt = tx
                .prepare_cached(&sql)
                .map_err(LocalError::sqlite(format!("copying into {table}")))?;
            for row in rows {
                if dirty_exists {
                    let pk: Vec<Value> = t
                        .primary_key
                        .iter()
                        .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
                        .map(|i| row[i].clone())
                        .collect();
                    let key = local_pk(tx, t, &pk)?;
                    if entry(tx, table, &key)?.is_some_and(|e| e.status != "SYNCED") {
                        continue;
                    }
                }
                let vals = t.columns.iter().zip(row).map(|(c, v)| to_sqlite(v, &c.ty));
                stmt.execute(params_from_iter(vals))
                    .map_err(LocalError::sqlite(format!("copying into {table}")))?;
            }
            if let Some(cursor) = done {
                let mut map: BTreeMap<String, Cursor> = match meta_get(tx, "bootstrap_done")? {
                    Some(j) => serde_json::from_str(&j).unwrap_or_default(),
                    None => BTreeMap::new(),
                };
                map.insert(table.to_string(), cursor);
                let json = serde_json::to_string(&map)
                    .map_err(|e| LocalError::BadSnapshot(e.to_string()))?;
                meta_set(tx, "bootstrap_done", Some(&json))?;
            }
            Ok(())
        })
    }

    /// Finishes a bootstrap: the cursor becomes the oldest snapshot any
    /// table was copied from (later changes are pulled again, harmlessly)
    /// and the replica is ready.
    pub fn bootstrap_finish(&mut self) -> Result<Cursor, LocalError> {
        self.apply_silenced(|tx| {
            let map: BTreeMap<String, Cursor> = match meta_get(tx, "bootstrap_done")? {
                Some(j) => serde_json::from_str(&j).unwrap_or_default(),
                None => BTreeMap::new(),
            };
            let cursor = map.values().min().copied().unwrap_or_default();
            set_cursor(tx, cursor, "READY")?;
            meta_set(tx, "bootstrap_done", None)?;
            meta_set(tx, "rebootstrap_tables", None)?;
            // Rows with local changes kept through a re-bootstrap have no
            // trustworthy base version any more: make the next push compare.
            tx.execute(
                "UPDATE \"_outpost_rows\" SET server_version = -1 WHERE status <> 'SYNCED' AND server_version IS NULL",
                [],
            )
            .map_err(LocalError::sqlite("marking kept local changes"))?;
            Ok(cursor)
        })
    }

    /// Tables the replica needs to copy again (their definition changed).
    pub fn rebootstrap_tables(&self) -> Result<Vec<String>, LocalError> {
        Ok(match meta_get(self.connection(), "rebootstrap_tables")? {
            Some(j) => serde_json::from_str(&j).unwrap_or_default(),
            None => Vec::new(),
        })
    }

    // ---- pull ----------------------------------------------------------------

    /// Applies a pull batch in one transaction, with the cursor when
    /// `advance` (a pull limited to some models leaves the cursor alone:
    /// their changes are re-read by the next full pull, harmlessly).
    ///
    /// A row without local changes takes the server's state. A row with
    /// local changes: a version this node wrote itself re-bases it; any
    /// other goes through `resolve` with the model's policy. Applying a
    /// version the replica already has changes nothing.
    pub fn apply_pull(
        &mut self,
        batch: &PullBatch,
        policies: &Policies,
        advance: bool,
    ) -> Result<Stats, LocalError> {
        let schema = self.schema().clone();
        let node = self.node_id().to_string();
        self.apply_silenced(|tx| {
            let mut stats = Stats::new();
            for name in &batch.truncated {
                let t = table_of(&schema, name)?;
                stats.entry(name.clone()).or_default().records_processed += 1;
                truncate(tx, t, policies.of(name), &mut stats)?;
            }
            let mut keys = Vec::with_capacity(batch.rows.len());
            for row in &batch.rows {
                keys.push(pull_key(tx, table_of(&schema, &row.table)?, &row.pk)?);
            }
            // The feed names each row once per batch. A batch naming one twice
            // (made by hand) takes the row-by-row path: each row then sees the
            // entry the previous one left.
            let mut seen = std::collections::HashSet::with_capacity(keys.len());
            let unique = batch
                .rows
                .iter()
                .zip(&keys)
                .all(|(row, key)| seen.insert((row.table.as_str(), key.as_str())));
            // Per table: its entries for the batch's keys, read in one
            // statement, and the rows that end up synced, written in one.
            let mut tables: HashMap<&str, PullTable> = HashMap::new();
            // Distinct rows are applied in key order: the replica's key
            // index, its rows (bootstrapped in key order) and `_outpost_rows`
            // are then walked forward page by page, not probed at random in
            // the order the server happened to write them (B3).
            let mut order: Vec<usize> = (0..batch.rows.len()).collect();
            if unique {
                order.sort_unstable_by(|&a, &b| {
                    (batch.rows[a].table.as_str(), keys[a].as_str())
                        .cmp(&(batch.rows[b].table.as_str(), keys[b].as_str()))
                });
            }
            for (row, key) in order.into_iter().map(|i| (&batch.rows[i], &keys[i])) {
                let t = table_of(&schema, &row.table)?;
                let s = stats.entry(row.table.clone()).or_default();
                s.records_processed += 1;
                if !unique {
                    let state = entry(tx, &row.table, key)?;
                    apply_pulled_row(tx, t, row, key, state, &node, policies, s)?;
                    continue;
                }
                let pt = match tables.entry(row.table.as_str()) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let mine: Vec<&str> = batch
                            .rows
                            .iter()
                            .zip(&keys)
                            .filter(|(r, _)| r.table == row.table)
                            .map(|(_, k)| k.as_str())
                            .collect();
                        v.insert(PullTable {
                            entries: entries_of(tx, &row.table, &mine)?,
                            writer: RowWriter::new(tx, t)?,
                            synced: Vec::new(),
                        })
                    }
                };
                let state = pt.entries.remove(key.as_str());
                if state.as_ref().is_none_or(|st| st.status == "SYNCED") {
                    // No local change: the common case, without a statement
                    // of its own for the entry.
                    if state.is_none_or(|st| st.server_version != Some(row.version)) {
                        pt.writer.write(tx, t, &row.pk, row.values.as_deref())?;
                        pt.synced
                            .push((key.clone(), row.version, row.values.is_none()));
                    }
                    s.records_succeeded += 1;
                } else {
                    apply_pulled_row(tx, t, row, key, state, &node, policies, s)?;
                }
            }
            for (name, pt) in &tables {
                mark_synced_all(tx, name, &pt.synced)?;
            }
            if advance {
                set_cursor(tx, batch.cursor, "READY")?;
            }
            Ok(stats)
        })
    }

    // ---- push ----------------------------------------------------------------

    /// The local changes to push, coalesced (one per row: its final state),
    /// in foreign-key order: upserts parents first, then deletes children
    /// first. Rows in `CONFLICT` or `FAILED` are not pushed.
    pub fn pending_push(
        &self,
        tables: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<PushRow>, LocalError> {
        crate::replica::fold(self.connection())?;
        let schema = self.schema();
        let conn = self.connection();
        // Per table: (pk, local_seq, deleted, server_version).
        type Dirty = (String, i64, bool, Option<i64>);
        let mut by_table: HashMap<String, Vec<Dirty>> = HashMap::new();
        {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT table_name, pk, local_seq, deleted, server_version FROM \"_outpost_rows\" \
                     WHERE status = 'PENDING' ORDER BY local_seq LIMIT ?1",
                )
                .map_err(LocalError::sqlite("reading local changes"))?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })
                .map_err(LocalError::sqlite("reading local changes"))?;
            for row in rows {
                let (table, pk, seq, deleted, version) =
                    row.map_err(LocalError::sqlite("reading local changes"))?;
                if tables.is_some_and(|ts| !ts.contains(&table)) || schema.table(&table).is_none() {
                    continue;
                }
                by_table
                    .entry(table)
                    .or_default()
                    .push((pk, seq.unwrap_or(0), deleted, version));
            }
        }
        let order = schema.parents_first();
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for t in &order {
            let Some(list) = by_table.get(&t.name) else {
                continue;
            };
            for (pk, seq, deleted, version) in list {
                let pk_vals = pk_values(t, pk)?;
                let values = if *deleted {
                    None
                } else {
                    read_row(conn, t, &pk_vals)?
                };
                let row = PushRow {
                    table: t.name.clone(),
                    local_pk: pk.clone(),
                    pk: pk_vals,
                    local_seq: *seq,
                    expected: match version {
                        Some(v) => Expected::Version(*v),
                        None => Expected::AsOfCursor,
                    },
                    values,
                };
                if row.values.is_some() {
                    upserts.push(row);
                } else {
                    deletes.push(row);
                }
            }
        }
        // Children first for deletes: reverse table order.
        deletes.sort_by_key(|r| std::cmp::Reverse(order.iter().position(|t| t.name == r.table)));
        upserts.extend(deletes);
        Ok(upserts)
    }

    /// Takes the server's answer to a push in one transaction: landed rows
    /// become `SYNCED` (or stay `PENDING`, re-based, when edited again
    /// meanwhile); refused rows `FAILED` with the server's message; rows
    /// whose server version moved on go through `resolve`.
    pub fn ack_push(
        &mut self,
        rows: &[PushRow],
        outcomes: &[PushOutcome],
        policies: &Policies,
    ) -> Result<Stats, LocalError> {
        let schema = self.schema().clone();
        self.apply_silenced(|tx| {
            let mut stats = Stats::new();
            let synced = mark_pushed_synced(tx, rows, outcomes)?;
            for (i, (row, outcome)) in rows.iter().zip(outcomes).enumerate() {
                let t = table_of(&schema, &row.table)?;
                let s = stats.entry(row.table.clone()).or_default();
                s.records_processed += 1;
                if synced.contains(&i) {
                    s.records_succeeded += 1;
                    continue;
                }
                let Some(state) = entry(tx, &row.table, &row.local_pk)? else {
                    continue;
                };
                let edited_since = state.local_seq != Some(row.local_seq);
                match outcome {
                    PushOutcome::Applied { version } | PushOutcome::AlreadyApplied { version } => {
                        s.records_succeeded += 1;
                        if edited_since {
                            let base = row.values.as_deref().map(|v| row_to_json(t, v));
                            tx.execute(
                                "UPDATE \"_outpost_rows\" SET server_version = ?3, base_row = ?4 WHERE table_name = ?1 AND pk = ?2",
                                params![row.table, row.local_pk, version, base],
                            )
                            .map_err(LocalError::sqlite("recording a pushed version"))?;
                        } else {
                            mark_synced(tx, &row.table, &row.local_pk, *version, row.values.is_none())?;
                        }
                    }
                    PushOutcome::Failed { message } => {
                        s.records_failed += 1;
                        if !edited_since {
                            tx.execute(
                                "UPDATE \"_outpost_rows\" SET status = 'FAILED', error = ?3 WHERE table_name = ?1 AND pk = ?2",
                                params![row.table, row.local_pk, message],
                            )
                            .map_err(LocalError::sqlite("recording a refused row"))?;
                        }
                    }
                    PushOutcome::Conflict(server) => match settle(tx, t, &row.local_pk, &state, server, policies.of(&row.table))? {
                        Settled::Conflict => s.conflicts += 1,
                        Settled::Server => s.records_succeeded += 1,
                        // Queued again: the next push round sends it and
                        // counts it then, so a run counts each row once.
                        Settled::Local => s.records_processed -= 1,
                    },
                }
            }
            Ok(stats)
        })
    }

    // ---- conflicts and failed rows ------------------------------------------------

    /// Rows in conflict, with both sides and the base.
    pub fn conflicts(&self) -> Result<Vec<ConflictEntry>, LocalError> {
        crate::replica::fold_for_read(self.connection())?;
        let schema = self.schema();
        let conn = self.connection();
        let mut stmt = conn
            .prepare(
                "SELECT table_name, pk, base_row, conflict_row, conflict_version, changed_at FROM \"_outpost_rows\" \
                 WHERE status = 'CONFLICT' ORDER BY table_name, local_seq",
            )
            .map_err(LocalError::sqlite("reading conflicts"))?;
        let raw = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(LocalError::sqlite("reading conflicts"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(LocalError::sqlite("reading conflicts"))?;
        let mut out = Vec::with_capacity(raw.len());
        for (table, pk, base, server, version, changed_at) in raw {
            let Some(t) = schema.table(&table) else {
                continue;
            };
            let key = pk_values(t, &pk)?;
            out.push(ConflictEntry {
                base: base.map(|j| row_from_json(t, &j)).transpose()?,
                local: read_row(conn, t, &key)?,
                server: server.map(|j| row_from_json(t, &j)).transpose()?,
                server_version: version,
                changed_at,
                table,
                pk,
            });
        }
        Ok(out)
    }

    /// Resolves a conflict. Keep local and merged rows are pushed by the next
    /// sync, over the server version the conflict showed.
    pub fn resolve_conflict(
        &mut self,
        table: &str,
        pk: &str,
        resolution: Resolution,
    ) -> Result<(), LocalError> {
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        self.apply_silenced(|tx| {
            let (server_json, version): (Option<String>, Option<i64>) = tx
                .query_row(
                    "SELECT conflict_row, conflict_version FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2 AND status = 'CONFLICT'",
                    params![table, pk],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(LocalError::sqlite("reading a conflict"))?
                .ok_or_else(|| LocalError::NotFound(format!("no conflict on {table} {pk}")))?;
            let key = pk_values(t, pk)?;
            let server = ServerRow {
                table: table.to_string(),
                pk: key.clone(),
                values: server_json.map(|j| row_from_json(t, &j)).transpose()?,
                version: version.unwrap_or(0),
                origin: None,
                origin_local_seq: None,
                changed_at: None,
            };
            match resolution {
                Resolution::KeepServer => {
                    write_row(tx, t, &key, server.values.as_deref())?;
                    mark_synced(tx, table, pk, server.version, server.values.is_none())?;
                }
                Resolution::KeepLocal => rebase(tx, t, pk, &server)?,
                Resolution::Merged(values) => {
                    if values.len() != t.columns.len() {
                        return Err(LocalError::NotFound(format!(
                            "a merged row of {table} needs {} values, got {}",
                            t.columns.len(),
                            values.len()
                        )));
                    }
                    let merged_key: Vec<Value> = t
                        .primary_key
                        .iter()
                        .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
                        .map(|i| values[i].clone())
                        .collect();
                    if merged_key != key {
                        return Err(LocalError::NotFound(format!("a merged row of {table} cannot change its key")));
                    }
                    write_row(tx, t, &key, Some(&values))?;
                    rebase(tx, t, pk, &server)?;
                    tx.execute(
                        "UPDATE \"_outpost_rows\" SET deleted = 0 WHERE table_name = ?1 AND pk = ?2",
                        params![table, pk],
                    )
                    .map_err(LocalError::sqlite("resolving a conflict"))?;
                }
            }
            Ok(())
        })
    }

    /// Puts a `FAILED` row back in the queue (after its cause was fixed).
    pub fn retry_failed(&mut self, table: &str, pk: &str) -> Result<bool, LocalError> {
        crate::replica::fold(self.connection())?;
        let n = self
            .connection()
            .execute(
                "UPDATE \"_outpost_rows\" SET status = 'PENDING', error = NULL WHERE table_name = ?1 AND pk = ?2 AND status = 'FAILED'",
                params![table, pk],
            )
            .map_err(LocalError::sqlite("retrying a failed row"))?;
        Ok(n > 0)
    }

    /// Counts of entries by status.
    pub fn status_counts(&self) -> Result<BTreeMap<(String, String), i64>, LocalError> {
        crate::replica::fold_for_read(self.connection())?;
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

    // ---- SyncLog -----------------------------------------------------------------

    /// Records the start of a run for a model; returns the log row's id.
    pub fn log_start(
        &self,
        model: &str,
        direction: &str,
        trigger: &str,
    ) -> Result<i64, LocalError> {
        self.connection()
            .execute(
                "INSERT INTO \"SyncLog\" (model, direction, trigger, status, \"startedAt\") VALUES (?1, ?2, ?3, 'RUNNING', ?4)",
                params![model, direction, trigger, now()],
            )
            .map_err(LocalError::sqlite("writing the sync log"))?;
        Ok(self.connection().last_insert_rowid())
    }

    /// Records the end of a run for a model.
    pub fn log_finish(
        &self,
        id: i64,
        stats: ModelStats,
        error: Option<&str>,
    ) -> Result<(), LocalError> {
        self.connection()
            .execute(
                "UPDATE \"SyncLog\" SET status = ?2, \"completedAt\" = ?3, \"recordsProcessed\" = ?4, \
                 \"recordsSucceeded\" = ?5, \"recordsFailed\" = ?6, conflicts = ?7, error = ?8 WHERE id = ?1",
                params![
                    id,
                    if error.is_some() { "FAILED" } else { "SUCCESS" },
                    now(),
                    stats.records_processed as i64,
                    stats.records_succeeded as i64,
                    stats.records_failed as i64,
                    stats.conflicts as i64,
                    error
                ],
            )
            .map_err(LocalError::sqlite("writing the sync log"))?;
        Ok(())
    }

    /// The newest `limit` log rows (of one model, when given), newest first.
    pub fn sync_log(
        &self,
        model: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<LogEntry>, LocalError> {
        let mut stmt = self
            .connection()
            .prepare_cached(
                "SELECT id, model, direction, trigger, status, \"startedAt\", \"completedAt\", \"recordsProcessed\", \
                 \"recordsSucceeded\", \"recordsFailed\", conflicts, error FROM \"SyncLog\" \
                 WHERE ?1 IS NULL OR model = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
            )
            .map_err(LocalError::sqlite("reading the sync log"))?;
        let rows = stmt
            .query_map(params![model, limit, offset], |r| {
                Ok(LogEntry {
                    id: r.get(0)?,
                    model: r.get(1)?,
                    direction: r.get(2)?,
                    trigger: r.get(3)?,
                    status: r.get(4)?,
                    started_at: r.get(5)?,
                    completed_at: r.get(6)?,
                    records_processed: r.get(7)?,
                    records_succeeded: r.get(8)?,
                    records_failed: r.get(9)?,
                    conflicts: r.get(10)?,
                    error: r.get(11)?,
                })
            })
            .map_err(LocalError::sqlite("reading the sync log"))?;
        rows.collect::<Result<_, _>>()
            .map_err(LocalError::sqlite("reading the sync log"))
    }

    /// Every row of a table in key order (for convergence checks and tools).
    pub fn all_rows(&self, table: &str) -> Result<Vec<Vec<Value>>, LocalError> {
        let t = table_of(self.schema(), table)?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            t.columns
                .iter()
                .map(|c| quote(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&t.name),
            t.primary_key
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut stmt = self
            .connection()
            .prepare(&sql)
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

/// A server `TRUNCATE`: rows without local changes go; rows with local
/// changes go through `resolve` against a deleted server row.
fn truncate(
    conn: &Connection,
    table: &Table,
    policy: Policy,
    stats: &mut Stats,
) -> Result<(), LocalError> {
    let sql = format!(
        "DELETE FROM {name} WHERE NOT EXISTS (SELECT 1 FROM \"_outpost_rows\" r WHERE r.table_name = {lit} \
         AND r.pk = {key} AND r.status <> 'SYNCED')",
        name = quote(&table.name),
        lit = literal(&table.name),
        key = pk_json(table, &quote(&table.name)),
    );
    conn.execute(&sql, [])
        .map_err(LocalError::sqlite(format!("truncating {}", table.name)))?;
    conn.execute(
        "DELETE FROM \"_outpost_rows\" WHERE table_name = ?1 AND status = 'SYNCED'",
        [&table.name],
    )
    .map_err(LocalError::sqlite(format!("truncating {}", table.name)))?;
    let dirty: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT pk FROM \"_outpost_rows\" WHERE table_name = ?1 AND status IN ('PENDING', 'FAILED')")
            .map_err(LocalError::sqlite("reading local changes"))?;
        let rows = stmt
            .query_map([&table.name], |r| r.get(0))
            .map_err(LocalError::sqlite("reading local changes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(LocalError::sqlite("reading local changes"))?
    };
    for pk in dirty {
        let Some(state) = entry(conn, &table.name, &pk)? else {
            continue;
        };
        let server = ServerRow {
            table: table.name.clone(),
            pk: pk_values(table, &pk)?,
            values: None,
            version: -1,
            origin: None,
            origin_local_seq: None,
            changed_at: None,
        };
        if settle(conn, table, &pk, &state, &server, policy)? == Settled::Conflict {
            stats.entry(table.name.clone()).or_default().conflicts += 1;
        }
    }
    Ok(())
}

/// A row a remote write changed, to mirror into the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirrored {
    /// The table.
    pub table: String,
    /// Primary-key values.
    pub pk: Vec<Value>,
    /// The row after the write (`None`: deleted).
    pub values: Option<Vec<Value>>,
    /// Its server version after the write.
    pub version: i64,
}

impl Replica {
    /// Mirrors rows the node wrote on the server (remote mode) into the
    /// replica, as synced at their new versions. A row with local changes
    /// not yet pushed is left alone: the next sync reconciles it.
    pub fn mirror(&mut self, rows: &[Mirrored]) -> Result<usize, LocalError> {
        let schema = self.schema().clone();
        self.apply_silenced(|tx| {
            // During a bootstrap (possibly another process's) a mirrored row
            // could land between a table's clearing and its copy from an
            // older snapshot, and its entry would then hide the copy's stale
            // row from later pulls. Mirror nothing: the copy, or the pull
            // after it, brings the write.
            if cursor_row(tx)?.1 != ReplicaState::Ready {
                return Ok(0);
            }
            let mut n = 0;
            for row in rows {
                let t = table_of(&schema, &row.table)?;
                let key = local_pk(tx, t, &row.pk)?;
                // A pull (possibly another process's sync) may already have
                // applied a newer version between the write's commit and now:
                // versions only grow, so an older one must not overwrite it.
                if entry(tx, &row.table, &key)?.is_some_and(|e| {
                    e.status != "SYNCED" || e.server_version.is_some_and(|v| v > row.version)
                }) {
                    continue;
                }
                write_row(tx, t, &row.pk, row.values.as_deref())?;
                mark_synced(tx, &row.table, &key, row.version, row.values.is_none())?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// Ids still reserved for `table.column`.
    pub fn ids_left(&self, table: &str, column: &str) -> Result<i64, LocalError> {
        self.connection()
            .query_row(
                "SELECT COALESCE(sum(last - next + 1), 0) FROM \"_outpost_ids\" WHERE table_name = ?1 AND column_name = ?2",
                params![table, column],
                |r| r.get(0),
            )
            .map_err(LocalError::sqlite("counting reserved ids"))
    }

    /// Adds ids reserved from the server's sequence (each a run `next..=last`).
    pub fn add_ids(
        &mut self,
        table: &str,
        column: &str,
        runs: &[(i64, i64)],
    ) -> Result<(), LocalError> {
        let tx = self
            .connection()
            .unchecked_transaction()
            .map_err(LocalError::sqlite("storing reserved ids"))?;
        for (next, last) in runs {
            tx.execute(
                "INSERT OR IGNORE INTO \"_outpost_ids\" (table_name, column_name, next, last) VALUES (?1, ?2, ?3, ?4)",
                params![table, column, next, last],
            )
            .map_err(LocalError::sqlite("storing reserved ids"))?;
        }
        tx.commit()
            .map_err(LocalError::sqlite("storing reserved ids"))
    }
}

/// Takes the next reserved id for `table.column` (inside the caller's
/// transaction), or `None` when the block ran out.
pub fn take_id(conn: &Connection, table: &str, column: &str) -> Result<Option<i64>, LocalError> {
    let run: Option<(i64, i64)> = conn
        .query_row(
            "SELECT next, last FROM \"_outpost_ids\" WHERE table_name = ?1 AND column_name = ?2 ORDER BY next LIMIT 1",
            params![table, column],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(LocalError::sqlite("taking a reserved id"))?;
    let Some((next, last)) = run else {
        return Ok(None);
    };
    if next >= last {
        conn.execute(
            "DELETE FROM \"_outpost_ids\" WHERE table_name = ?1 AND column_name = ?2 AND next = ?3",
            params![table, column, next],
        )
    } else {
        conn.execute(
            "UPDATE \"_outpost_ids\" SET next = next + 1 WHERE table_name = ?1 AND column_name = ?2 AND next = ?3",
            params![table, column, next],
        )
    }
    .map_err(LocalError::sqlite("taking a reserved id"))?;
    Ok(Some(next))
}

/// A row the server refused: its table, key (JSON array) and the server's
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedEntry {
    /// The table.
    pub table: String,
    /// The row key, a JSON array.
    pub pk: String,
    /// The server's message.
    pub error: Option<String>,
}

impl Replica {
    /// Rows in `FAILED`, by table and key (at most `limit`).
    pub fn failed_rows(&self, limit: i64) -> Result<Vec<FailedEntry>, LocalError> {
        crate::replica::fold_for_read(self.connection())?;
        let mut stmt = self
            .connection()
            .prepare_cached(
                "SELECT table_name, pk, error FROM \"_outpost_rows\" WHERE status = 'FAILED' \
                 ORDER BY table_name, pk LIMIT ?1",
            )
            .map_err(LocalError::sqlite("listing failed rows"))?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(FailedEntry {
                    table: r.get(0)?,
                    pk: r.get(1)?,
                    error: r.get(2)?,
                })
            })
            .map_err(LocalError::sqlite("listing failed rows"))?;
        rows.collect::<Result<_, _>>()
            .map_err(LocalError::sqlite("listing failed rows"))
    }
}

// ---- pending changes, failed rows and discarding a refused change ---------------

/// What a local change does on the server when pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The row did not exist before the local change (or the server had
    /// deleted it): the push creates it.
    Insert,
    /// The row existed and was changed locally.
    Update,
    /// The row was deleted locally.
    Delete,
}

/// One row with a local change the server does not have yet: `PENDING`
/// (waiting for the next push) or `FAILED` (refused; `error` says why).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEntry {
    /// The table.
    pub table: String,
    /// The row key, a JSON array (`_outpost_rows.pk`).
    pub pk: String,
    /// What the push does.
    pub kind: ChangeKind,
    /// The local row now (`None`: deleted locally).
    pub values: Option<Vec<Value>>,
    /// When the row was last changed locally.
    pub changed_at: Option<String>,
    /// The number of its latest local change.
    pub local_seq: Option<i64>,
    /// The server's message, for a `FAILED` row.
    pub error: Option<String>,
}

/// A page of [`ChangeEntry`]s and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    /// The entries, oldest change first.
    pub entries: Vec<ChangeEntry>,
    /// Entries matching the filter, over all pages.
    pub total: i64,
}

/// What discarding a refused change left in the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Discarded {
    /// The row as the server has it, now back in the replica (`None`: the
    /// server has no such row, so it is gone locally too).
    pub row: Option<Vec<Value>>,
    /// The server version the row is at (`None`: as of the cursor).
    pub server_version: Option<i64>,
}

impl Replica {
    /// Local changes not yet pushed (`PENDING`), of one table when given,
    /// oldest change first, `limit` from `offset`.
    pub fn pending_changes(
        &self,
        table: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, LocalError> {
        self.changes("PENDING", table, limit, offset)
    }

    /// Rows the server refused (`FAILED`), with its message, of one table
    /// when given, oldest change first, `limit` from `offset`.
    pub fn failed_changes(
        &self,
        table: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, LocalError> {
        self.changes("FAILED", table, limit, offset)
    }

    fn changes(
        &self,
        status: &str,
        table: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<ChangePage, LocalError> {
        crate::replica::fold_for_read(self.connection())?;
        let what = || format!("listing {} rows", status.to_ascii_lowercase());
        let conn = self.connection();
        let total: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM \"_outpost_rows\" WHERE status = ?1 AND (?2 IS NULL OR table_name = ?2)",
            )
            .and_then(|mut s| s.query_row(params![status, table], |r| r.get(0)))
            .map_err(LocalError::sqlite(what()))?;
        let mut entries: Vec<ChangeEntry> = conn
            .prepare_cached(
                "SELECT table_name, pk, deleted, base_row IS NULL, local_seq, changed_at, error FROM \"_outpost_rows\" \
                 WHERE status = ?1 AND (?2 IS NULL OR table_name = ?2) \
                 ORDER BY local_seq, table_name, pk LIMIT ?3 OFFSET ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![status, table, limit, offset], |r| {
                    let (deleted, no_base): (bool, bool) = (r.get(2)?, r.get(3)?);
                    Ok(ChangeEntry {
                        table: r.get(0)?,
                        pk: r.get(1)?,
                        kind: if deleted {
                            ChangeKind::Delete
                        } else if no_base {
                            ChangeKind::Insert
                        } else {
                            ChangeKind::Update
                        },
                        values: None,
                        local_seq: r.get(4)?,
                        changed_at: r.get(5)?,
                        error: r.get(6)?,
                    })
                })?
                .collect()
            })
            .map_err(LocalError::sqlite(what()))?;
        for e in &mut entries {
            if let Some(t) = self.schema().table(&e.table)
                && e.kind != ChangeKind::Delete
            {
                e.values = read_row(conn, t, &pk_values(t, &e.pk)?)?;
            }
        }
        Ok(ChangePage { entries, total })
    }

    /// Drops the local change of a `FAILED` row and puts back the server's
    /// version of the row: `base_row` at `server_version`, which is the
    /// newest server state the replica has seen for it (a pull that moves
    /// the server side re-bases the entry, so the two stay together). When
    /// the server has no such row (a refused insert, or a row the server
    /// deleted) the row goes locally too. Works offline; server changes not
    /// yet pulled arrive with the next pull, as for any synced row.
    ///
    /// Returns `None` (and changes nothing) when the row is not `FAILED`.
    pub fn discard_failed(
        &mut self,
        table: &str,
        pk: &str,
    ) -> Result<Option<Discarded>, LocalError> {
        let schema = self.schema().clone();
        let t = table_of(&schema, table)?;
        self.apply_silenced(|tx| {
            let Some(state) = entry(tx, table, pk)?.filter(|s| s.status == "FAILED") else {
                return Ok(None);
            };
            let key = pk_values(t, pk)?;
            let row = state
                .base_row
                .as_deref()
                .map(|j| row_from_json(t, j))
                .transpose()?;
            write_row(tx, t, &key, row.as_deref())?;
            match state.server_version {
                Some(v) => mark_synced(tx, table, pk, v, row.is_none())?,
                // No version: the row is the server's as of the cursor, which
                // is what "no entry" means.
                None => {
                    tx.execute(
                        "DELETE FROM \"_outpost_rows\" WHERE table_name = ?1 AND pk = ?2",
                        params![table, pk],
                    )
                    .map_err(LocalError::sqlite("discarding a failed row"))?;
                }
            }
            Ok(Some(Discarded {
                row,
                server_version: state.server_version,
            }))
        })
    }

    /// Count of `SyncLog` rows, of one model when given.
    pub fn sync_log_count(&self, model: Option<&str>) -> Result<i64, LocalError> {
        self.connection()
            .prepare_cached("SELECT count(*) FROM \"SyncLog\" WHERE ?1 IS NULL OR model = ?1")
            .and_then(|mut s| s.query_row(params![model], |r| r.get(0)))
            .map_err(LocalError::sqlite("counting the sync log"))
    }

    /// When the pull cursor last moved (a full pull or a bootstrap), as
    /// stored: the age of the replica's copy of the server.
    pub fn cursor_updated_at(&self) -> Result<Option<String>, LocalError> {
        self.connection()
            .query_row(
                "SELECT updated_at FROM \"_outpost_cursor\" WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(LocalError::sqlite("reading the cursor"))
    }
}

#[cfg(test)]
mod pull_key_tests {
    //! The Rust row key of a pull must be byte for byte the key SQLite's
    //! `json_array` computes (and the triggers store), or a pulled row would
    //! miss its entry.

    use super::*;
    use outpost_core::schema::Column;
    use outpost_core::types::ColumnType;
    use proptest::prelude::*;

    fn col(name: &str, scalar: ScalarType, array: bool) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType {
                scalar,
                array,
                pg_name: name.into(),
                domain: None,
            },
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

    /// Asserts the Rust key equals SQLite's (when Rust gives one) and that
    /// Rust gives one exactly when `rust_expected`.
    fn same(conn: &Connection, t: &Table, pk: &[Value], rust_expected: bool) {
        let sqlite = local_pk(conn, t, pk).expect("sqlite key");
        match pk_json_rust(t, pk) {
            Some(rust) => {
                assert!(rust_expected, "{pk:?} should have gone to SQLite");
                assert_eq!(rust, sqlite, "key of {pk:?}");
            }
            None => assert!(!rust_expected, "{pk:?} should be computed in Rust"),
        }
        assert_eq!(pull_key(conn, t, pk).expect("key"), sqlite);
    }

    fn tricky_strings() -> Vec<String> {
        let mut out: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        out.extend(
            [
                "",
                "\0",
                "\"",
                "\\",
                "\\\"",
                "'",
                "it's",
                "\u{7f}",
                "\u{80}",
                "é",
                "\u{2028}\u{2029}",
                "😀",
                "\u{feff}x",
                "{\"json\": [1, 2]}",
                "[\"a\"]",
                "1.50",
                "2026-11-25T05:00:00.000000Z",
                "0b7e3c1e-5f43-4a77-9c2b-2e9f4f9f1b1d",
                "\t\n\r\u{8}\u{c}\u{1}\u{1f}",
            ]
            .map(str::to_string),
        );
        out
    }

    #[test]
    fn text_integer_and_composite_keys_match_sqlite() {
        let conn = Connection::open_in_memory().expect("open");
        let text = table(vec![col("id", ScalarType::Text, false)]);
        let uuid = table(vec![col("id", ScalarType::Uuid, false)]);
        let numeric = table(vec![col("id", ScalarType::Numeric, false)]);
        let enum_ = table(vec![col("id", ScalarType::Enum("Role".into()), false)]);
        let int = table(vec![col("id", ScalarType::Int8, false)]);
        let boolean = table(vec![col("id", ScalarType::Bool, false)]);
        let pair = table(vec![
            col("a", ScalarType::Int4, false),
            col("b", ScalarType::Text, false),
        ]);
        for s in tricky_strings() {
            same(&conn, &text, &[Value::Text(s.clone())], true);
            same(&conn, &uuid, &[Value::Text(s.clone())], true);
            same(&conn, &numeric, &[Value::Text(s.clone())], true);
            same(&conn, &enum_, &[Value::Text(s.clone())], true);
            same(&conn, &pair, &[Value::Int(-7), Value::Text(s)], true);
        }
        for i in [i64::MIN, -1, 0, 1, 9_007_199_254_740_993, i64::MAX] {
            same(&conn, &int, &[Value::Int(i)], true);
            same(
                &conn,
                &pair,
                &[Value::Int(i), Value::Text("x".into())],
                true,
            );
        }
        same(&conn, &boolean, &[Value::Bool(true)], true);
        same(&conn, &boolean, &[Value::Bool(false)], true);
    }

    #[test]
    fn real_blob_and_odd_storage_go_to_sqlite() {
        let conn = Connection::open_in_memory().expect("open");
        let real = table(vec![col("id", ScalarType::Float8, false)]);
        for f in [0.1, -0.0, 1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            same(&conn, &real, &[Value::Float(f)], false);
        }
        let blob = table(vec![col("id", ScalarType::Bytea, false)]);
        same(&conn, &blob, &[Value::Bytes(vec![0, 0xab, 0xff])], false);
        // A float in a text key is stored as REAL: SQLite formats it.
        let text = table(vec![col("id", ScalarType::Text, false)]);
        same(&conn, &text, &[Value::Float(2.5)], false);
        same(&conn, &text, &[Value::Null], false);
        // An array key is text (its JSON), which Rust escapes itself.
        let array = table(vec![col("id", ScalarType::Text, true)]);
        same(
            &conn,
            &array,
            &[Value::Array(vec![
                Value::Text("a\"b".into()),
                Value::Text("\n".into()),
            ])],
            true,
        );
    }

    proptest! {
        #[test]
        fn any_text_and_integer_key_matches_sqlite(s in any::<String>(), i in any::<i64>()) {
            let conn = Connection::open_in_memory().expect("open");
            let text = table(vec![col("id", ScalarType::Text, false)]);
            same(&conn, &text, &[Value::Text(s.clone())], true);
            let pair = table(vec![
                col("a", ScalarType::Int8, false),
                col("b", ScalarType::Varchar, false),
            ]);
            same(&conn, &pair, &[Value::Int(i), Value::Text(s)], true);
        }
    }
}
