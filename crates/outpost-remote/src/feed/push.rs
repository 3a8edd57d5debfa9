//! The push: rows applied in one transaction under the node's origin, in
//! groups of one table and one kind; each group locked and read, each row
//! decided by [`outpost_core::accept::decide`] (written, a conflict, already
//! applied), written with failure isolation (a refused statement is retried
//! row by row under savepoints), and its new version read back. Also
//! [`versions_of`], the versions a remote-mode write reads back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures_util::TryFutureExt as _;
use futures_util::future::{try_join3, try_join4};
use outpost_core::accept::{self, Acceptance, OnServer, Pushed, Pusher, Write};
use outpost_core::schema::{FkAction, Schema, Table};
use outpost_core::sync::{
    Cursor, PushOutcome, PushRow, ServerRow, parents_first_within, refused_parent,
};
use outpost_core::types::{ScalarType, Value};
use outpost_core::{NodeId, Version};
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use super::retention::feed_position;
use super::scope::{self as row_scope, Scope, TableScope};
use super::sql::{self, Source};
use super::support::{Statements, db, get_value, params, server_row, statement, table_of};
use crate::codec::Bind;
use crate::error::{RemoteError, describe};
use crate::session;

/// Most bind parameters one statement may carry (PostgreSQL allows 65535).
mod key_change;
mod scoped;

use key_change::push_move;
use scoped::scoped_group;

const MAX_PARAMS: usize = 30_000;

/// Most rows of one push statement when they travel as typed arrays.
const PUSH_GROUP: usize = 5_000;

/// Applies pushed rows in one transaction, in the order given (the engine
/// orders parents first for upserts and children first for deletes), under
/// `SET LOCAL outpost.origin = <node>`. For each row, in batches:
///
/// 1. lock the existing rows (`FOR UPDATE`), read their versions;
/// 2. decide each row ([`accept::decide`]): skip rows this node already
///    wrote at this `local_seq` (a retry after a lost acknowledgement);
///    report rows whose version moved on as conflicts with the server's row;
///    a version written by one of this node's pushes is its own base, never
///    a conflict;
/// 3. delete deleted rows, insert absent ones (`ON CONFLICT DO NOTHING` on
///    the key: a row inserted meanwhile by someone else is a conflict), then
///    update existing ones (an update may reference a row just inserted); a
///    statement the server refuses is retried row by row under savepoints,
///    parents first, again while a pass writes anything, and only the
///    refused rows fail (a row whose parent was refused says so);
/// 4. read the versions written (their `origin_local_seq` is set by the
///    capture: the feed's module doc) and record the node's highest applied
///    `local_seq`.
pub async fn push(
    client: &mut Client,
    schema: &Schema,
    node: Uuid,
    cursor: Cursor,
    rows: &[PushRow],
    limits: (Duration, Duration),
) -> Result<Vec<PushOutcome>, RemoteError> {
    push_scoped(client, schema, node, cursor, rows, limits, None).await
}

/// [`push`] for a node with a [`Scope`] (the gateway's sync rules): a row
/// of a scoped table is refused (`FAILED`, naming the rule) when its server
/// row before the change exists and does not satisfy the table's condition,
/// or when the row it writes does not; the other rows still apply
/// (`scoped_group`).
pub async fn push_scoped(
    client: &mut Client,
    schema: &Schema,
    node: Uuid,
    cursor: Cursor,
    rows: &[PushRow],
    (statement_timeout, lock_timeout): (Duration, Duration),
    scope: Option<&Scope>,
) -> Result<Vec<PushOutcome>, RemoteError> {
    // Every row in the table's shape, before anything is written: a row
    // planned under another snapshot would have its missing values taken
    // for NULL (a server default erased) or its values misplaced.
    for r in rows {
        let table = table_of(schema, &r.table)?;
        if let Some(got) = r.shape_mismatch(table) {
            return Err(RemoteError::PushShape {
                table: table.name.clone(),
                got,
                columns: table.columns.len(),
            });
        }
    }
    let tx = client.transaction().await.map_err(db("starting a push"))?;
    // Generic plans: a push's statements are prepared once and run per
    // group; a custom plan would fold the group's arrays into constants and
    // plan them again every time (tens of ms for 5,000 rows). The generic
    // estimate (a few rows per array) also favours the index lookups the
    // push wants.
    tx.batch_execute(&session::push(
        NodeId(node),
        statement_timeout,
        lock_timeout,
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
    let ctx = Pusher {
        node: NodeId(node),
        cursor,
        pruned_ok,
    };
    // Consecutive rows of one table and one kind form a group; the insert
    // half of a key change is a group of its own.
    let mut start = 0;
    while start < rows.len() {
        let table = table_of(schema, &rows[start].table)?;
        let table_scope = scope.and_then(|s| s.of(&table.name));
        // Under sync rules a key change takes the ordinary way: the rules
        // judge the insert and the delete.
        if rows[start].moved_from.is_some()
            && table_scope.is_none()
            && push_move(&tx, schema, table, &ctx, rows, start, &mut outcomes)
                .await
                .map_err(|e| e.in_table(&table.name))?
        {
            start += 1;
            continue;
        }
        let is_delete = rows[start].values.is_none();
        // Typed arrays take any number of rows in a handful of parameters;
        // a `VALUES` list is bounded by the parameter limit.
        let per = if sql::unnestable(table) {
            PUSH_GROUP
        } else {
            (MAX_PARAMS / (table.columns.len() + 2)).clamp(1, 1000)
        };
        let mut end = start + 1;
        while end < rows.len()
            && end - start < per
            && rows[end].table == rows[start].table
            && rows[end].values.is_none() == is_delete
            && rows[end].moved_from.is_none()
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
        match table_scope {
            Some(scope) => {
                scoped_group(
                    &tx,
                    schema,
                    table,
                    &ctx,
                    &mut cache,
                    scope,
                    &rows[start..end],
                    &mut outcomes[start..end],
                )
                .await
            }
            None => {
                push_group(
                    &tx,
                    schema,
                    table,
                    &ctx,
                    &mut cache,
                    &rows[start..end],
                    &mut outcomes[start..end],
                )
                .await
            }
        }
        .map_err(|e| e.in_table(&table.name))?;
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
        .map(|(r, _)| r.local_seq.get())
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

/// The lock, state and version statements look a group's rows up by key.
/// Left to itself the planner hashes the group and scans the whole table
/// and its `row_versions` (stale statistics of a growing table): a push then
/// costs O(table) per group (256 ms per 5,000 rows at the start of a
/// 100,000-row push, 1,165 ms at its end). Index lookups only, for these
/// statements ([`session::INDEX_ONLY`]), and afterwards the server's own
/// settings again ([`session::PLANNER_DEFAULTS`]).
async fn push_group(
    tx: &Transaction<'_>,
    schema: &Schema,
    table: &Table,
    by: &Pusher,
    cache: &mut Statements,
    rows: &[PushRow],
    outcomes: &mut [Option<PushOutcome>],
) -> Result<(), RemoteError> {
    let from = sql::qualified(&schema.pg_schema, &table.name);
    let all: Vec<&PushRow> = rows.iter().collect();
    let keys = sql::key_source(table, &all);
    let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
    // 1. Lock what exists, in key order (no deadlock between pushes).
    let lock_sql = sql::lock_rows(&from, table, &keys);
    // 2. What the decision needs of each row (no values).
    let state_sql = sql::row_decisions(&from, table, &keys);
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
        tx.batch_execute(session::INDEX_ONLY)
            .map_err(db("planning a push group")),
        tx.query(&lock, &lock_params)
            .map_err(db(format!("locking rows of {}", table.name))),
        tx.query(&state, &state_params)
            .map_err(db(format!("reading versions of {}", table.name))),
        tx.batch_execute(session::PLANNER_DEFAULTS)
            .map_err(db("planning a push group")),
    )
    .await?;
    let read_time = started.elapsed();
    // The decision is outpost_core::accept's; this only carries it out.
    let me = by.node.to_string();
    let mut to_write: Vec<(usize, Write)> = Vec::new();
    // Rows answered with the server's row: (index, already applied).
    let mut answered: Vec<(usize, bool)> = Vec::new();
    for st in &states {
        let i = st.get::<_, i32>(0) as usize;
        if outcomes[i].is_some() {
            continue;
        }
        let row = &rows[i];
        let found = decision_of(st, by, &me);
        let pushed = Pushed {
            expected: row.expected,
            local_seq: row.local_seq,
            delete: row.values.is_none(),
        };
        match accept::decide(&pushed, &found, by) {
            Acceptance::AlreadyApplied => answered.push((i, true)),
            Acceptance::Conflict => answered.push((i, false)),
            Acceptance::Write(write) => to_write.push((i, write)),
        }
    }
    // Their rows and versions, read before this group writes anything (the
    // existing ones are locked, so they are the rows decided on).
    if !answered.is_empty() {
        let subset: Vec<&PushRow> = answered.iter().map(|&(i, _)| &rows[i]).collect();
        let now = fetch_current(tx, &from, table, cache, &subset).await?;
        for (&(i, applied), server) in answered.iter().zip(now) {
            outcomes[i] = Some(if applied {
                PushOutcome::AlreadyApplied {
                    version: server.version,
                    row: server.values,
                    tag: None,
                }
            } else {
                PushOutcome::Conflict(server)
            });
        }
    }
    if to_write.is_empty() {
        return Ok(());
    }
    // 3. Write, isolating refused rows. The capture records
    // `outpost.local_seq` as each written version's `origin_local_seq`: the
    // group's highest. That is all a retry's check needs (feed module doc,
    // "origin_local_seq"), and it spares a second write of every version.
    let writing = std::time::Instant::now();
    let group_seq = to_write
        .iter()
        .map(|&(i, _)| rows[i].local_seq.get())
        .max()
        .unwrap_or(0)
        .to_string();
    tx.execute(session::SET_LOCAL_SEQ, &[&group_seq])
        .await
        .map_err(db("starting a push group"))?;
    let before = changes_so_far(tx, table).await?;
    let written = write_rows(tx, schema, &from, table, cache, rows, &to_write, outcomes).await?;
    if let Some(before) = before {
        let keys: Vec<Vec<Value>> = written.iter().map(|&i| rows[i].pk.clone()).collect();
        unstamp(tx, table, before, keys).await?;
    }
    // Rows an insert found already present (inserted meanwhile): conflicts.
    let lost: Vec<usize> = to_write
        .iter()
        .map(|&(i, _)| i)
        .filter(|i| outcomes[*i].is_none() && !written.contains(i))
        .collect();
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
    let src = sql::key_values(table, done.iter().map(|&i| rows[i].pk.clone()).collect());
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    let mut p = params(&binds);
    p.push(&table.name);
    let versions_stmt = statement(
        tx,
        cache,
        src.cacheable,
        &sql::written_versions(&from, table, &src),
    )
    .await
    .map_err(db(format!("reading versions of {}", table.name)))?;
    let (_, versions, _) = try_join3(
        tx.batch_execute(session::INDEX_ONLY)
            .map_err(db("planning a push group")),
        tx.query(&versions_stmt, &p)
            .map_err(db(format!("reading versions of {}", table.name))),
        tx.batch_execute(session::PLANNER_DEFAULTS)
            .map_err(db("planning a push group")),
    )
    .await?;
    for v in versions {
        let j = v.get::<_, i32>(0) as usize;
        if let Some(&i) = done.get(j) {
            outcomes[i] = Some(PushOutcome::Applied {
                version: Version(v.get(1)),
                row: stored_row(&v, table)?,
                tag: None,
            });
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

/// For a table whose foreign-key actions can write its own rows (a
/// self-reference with `ON DELETE CASCADE`, `SET NULL`, …): the newest
/// change of this transaction before a group's writes. `None` for other
/// tables, whose captures tell the push's rows apart themselves (tracking
/// schema version 6).
pub(super) async fn changes_so_far(
    tx: &Transaction<'_>,
    table: &Table,
) -> Result<Option<i64>, RemoteError> {
    let acts = |a: FkAction| !matches!(a, FkAction::NoAction | FkAction::Restrict);
    let within = table
        .foreign_keys
        .iter()
        .any(|fk| fk.ref_table == table.name && (acts(fk.on_delete) || acts(fk.on_update)));
    if !within {
        return Ok(None);
    }
    let row = tx
        .query_one(sql::NEWEST_CHANGE_OF_TRANSACTION, &[])
        .await
        .map_err(db("reading the push's changes"))?;
    Ok(Some(row.get(0)))
}

/// Unstamp: a self-reference's foreign-key action writes rows of the pushed
/// table in the push statement's own transition table, so the capture
/// stamps them with the push's change number too. This clears the number on
/// the versions written since `before` whose keys the push did not write
/// (`keys`): they stay changes with the node as origin that the own-write
/// rules treat like anyone's (a queued edit of such a row meets it).
pub(super) async fn unstamp(
    tx: &Transaction<'_>,
    table: &Table,
    before: i64,
    keys: Vec<Vec<Value>>,
) -> Result<(), RemoteError> {
    let src = sql::key_values(table, keys);
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    let mut p = params(&binds);
    p.push(&table.name);
    p.push(&before);
    tx.execute(&sql::unstamp_others(table, &src), &p)
        .await
        .map_err(db(format!("recording the push's rows of {}", table.name)))?;
    Ok(())
}

/// The row as stored, from a row of [`sql::written_versions`] (`None`:
/// it is gone): the acknowledgement writes it into the replica
/// (docs/protocol.md, "The server's row after a push").
fn stored_row(v: &tokio_postgres::Row, table: &Table) -> Result<Option<Vec<Value>>, RemoteError> {
    if !v.get::<_, bool>(2) {
        return Ok(None);
    }
    table
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| get_value(v, 3 + c, &col.name))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A row of [`sql::row_decisions`]: what the decision needs of the server's
/// row.
fn decision_of(st: &tokio_postgres::Row, by: &Pusher, me: &str) -> OnServer {
    let change = match (st.get::<_, Option<i64>>(1), st.get::<_, Option<i64>>(2)) {
        (Some(txid), Some(seq)) => Some(Cursor { txid, seq }),
        _ => None,
    };
    OnServer {
        version: Version(st.get::<_, Option<i64>>(3).unwrap_or(0)),
        origin: origin_of(st.get::<_, Option<&str>>(4), by.node, me),
        origin_local_seq: st.get::<_, Option<i64>>(5).map(outpost_core::LocalSeq),
        present: st.get(6),
        change,
    }
}

/// The node a version's `origin` names. This node only when the text is
/// exactly its id as its pushes write it (another spelling of the same
/// UUID was not written by them); `None` for no origin or one that is not a
/// node id.
fn origin_of(origin: Option<&str>, me: NodeId, me_text: &str) -> Option<NodeId> {
    match origin {
        Some(o) if o == me_text => Some(me),
        Some(o) => o.parse::<NodeId>().ok().filter(|n| *n != me),
        None => None,
    }
}

/// The current server rows for `rows`' keys (in the same order).
async fn fetch_current(
    tx: &Transaction<'_>,
    from: &str,
    table: &Table,
    cache: &mut Statements,
    rows: &[&PushRow],
) -> Result<Vec<ServerRow>, RemoteError> {
    let keys = sql::key_source(table, rows);
    let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
    let text = sql::current_rows(from, table, &keys);
    let mut p = params(&key_binds);
    p.push(&table.name);
    let found = async {
        let s = statement(tx, cache, keys.cacheable, &text).await?;
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

/// Writes the rows decided `to_write`: deletes, then inserts of absent
/// rows, then updates of existing ones (an update may point at a row this
/// group inserts: `insert Node 2; update Node 1 set parent = 2`). Returns
/// the indexes written; refused rows get a `Failed` outcome; inserts that
/// met an existing key are neither.
///
/// A statement the server refuses is retried row by row, parents within
/// the group first, so that only the refused rows fail; rows refused then
/// are tried again while a pass writes anything (a row may have needed one
/// written after it). A row still refused whose parent in this push was
/// refused too fails saying so (`depends on …`), not with a bare
/// foreign-key error.
#[allow(clippy::too_many_arguments)]
async fn write_rows(
    tx: &Transaction<'_>,
    schema: &Schema,
    from: &str,
    table: &Table,
    cache: &mut Statements,
    rows: &[PushRow],
    to_write: &[(usize, Write)],
    outcomes: &mut [Option<PushOutcome>],
) -> Result<BTreeSet<usize>, RemoteError> {
    let mut written = BTreeSet::new();
    // (row, kind, the columns written, the server's last refusal and the
    // column it names)
    type Refused = (usize, Write, Vec<usize>, (String, Option<String>));
    let mut refused: Vec<Refused> = Vec::new();
    for kind in [Write::Delete, Write::Insert, Write::Update] {
        let set: Vec<usize> = to_write
            .iter()
            .filter(|(_, w)| *w == kind)
            .map(|&(i, _)| i)
            .collect();
        if set.is_empty() {
            continue;
        }
        // Updates in groups by the columns they change (only those are
        // written).
        for (cols, set) in by_columns(table, rows, set, kind) {
            match run_savepointed(tx, from, table, cache, rows, &set, &cols, kind).await? {
                Ok(done) => written.extend(done),
                Err(_) => {
                    // Row by row: only the refused rows fail.
                    for i in parents_first_within(table, rows, &set) {
                        match run_savepointed(tx, from, table, cache, rows, &[i], &cols, kind)
                            .await?
                        {
                            Ok(done) => written.extend(done),
                            Err(why) => refused.push((i, kind, cols.clone(), why)),
                        }
                    }
                }
            }
        }
    }
    // Again while a pass writes something: each pass settles at least one
    // row, so this ends; a chain written children first needs one pass per
    // level, and the rows left are refused for a reason of their own (or
    // their parent's).
    while !refused.is_empty() {
        let before = refused.len();
        let mut still = Vec::new();
        for (i, kind, cols, _) in refused {
            match run_savepointed(tx, from, table, cache, rows, &[i], &cols, kind).await? {
                Ok(done) => written.extend(done),
                Err(again) => still.push((i, kind, cols, again)),
            }
        }
        refused = still;
        if refused.len() == before {
            break;
        }
    }
    let failed: Vec<usize> = refused.iter().map(|(i, ..)| *i).collect();
    for (i, _, _, (message, column)) in refused {
        outcomes[i] = Some(PushOutcome::Failed {
            message: refusal(table, &rows[i], &message, column),
        });
    }
    // A row whose parent (in this group) was refused says so; parents
    // first, so a grandchild names its parent's reason.
    for i in parents_first_within(table, rows, &failed) {
        let own = outcomes[i].take();
        let reason = refused_parent(schema, table, &rows[i], rows, outcomes);
        outcomes[i] = match reason {
            Some(message) => Some(PushOutcome::Failed { message }),
            None => own,
        };
    }
    Ok(written)
}

/// The rows `set` of one kind of write, grouped by the columns each writes:
/// an insert writes every writable column; an update its key and the
/// columns the node changed relative to its base ([`PushRow::changed`]), so
/// a value the server assigned and the node never changed stays.
fn by_columns(
    table: &Table,
    rows: &[PushRow],
    set: Vec<usize>,
    kind: Write,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    let all = writable(table);
    if kind != Write::Update {
        return vec![(all, set)];
    }
    let mut groups: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for i in set {
        let cols: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&c| {
                table.primary_key.contains(&table.columns[c].name)
                    || rows[i]
                        .changed
                        .as_ref()
                        .is_none_or(|m| m.get(c).copied().unwrap_or(true))
            })
            .collect();
        groups.entry(cols).or_default().push(i);
    }
    groups.into_iter().collect()
}

/// A refused row's message: the server's, with the table and the row's key
/// (and, when the server names it, the column), so a person can find it.
fn refusal(table: &Table, row: &PushRow, message: &str, column: Option<String>) -> String {
    match column.or_else(|| too_long(table, row)) {
        Some(c) => format!("{} {}, column {c}: {message}", table.name, row.local_pk),
        None => format!("{} {}: {message}", table.name, row.local_pk),
    }
}

/// The first `varchar(n)`/`char(n)` column whose pushed value is longer
/// than `n` characters (trailing spaces aside, as PostgreSQL counts): the
/// server's "value too long" message names the type but not the column.
fn too_long(table: &Table, row: &PushRow) -> Option<String> {
    let values = row.values.as_ref()?;
    table.columns.iter().zip(values).find_map(|(c, v)| {
        let limit = match (&c.ty.scalar, c.ty.array) {
            (ScalarType::Varchar | ScalarType::Char, false) => type_length(&c.ty.pg_name)?,
            _ => return None,
        };
        match v {
            Value::Text(s) if s.trim_end_matches(' ').chars().count() > limit => {
                Some(c.name.clone())
            }
            _ => None,
        }
    })
}

/// The column of the first bound value that cannot be encoded as its
/// parameter's type (the driver's message names the parameter's number
/// only). Parameter `j` carries column `cols[j % cols.len()]` in both
/// layouts of a row source (one array per column, or a `VALUES` list).
fn unencodable(
    table: &Table,
    cols: &[usize],
    binds: &[Bind<'_>],
    types: &[tokio_postgres::types::Type],
) -> Option<String> {
    use tokio_postgres::types::ToSql as _;
    if cols.is_empty() {
        return None;
    }
    binds
        .iter()
        .zip(types)
        .enumerate()
        .find_map(|(j, (b, ty))| {
            let mut buf = bytes::BytesMut::new();
            b.to_sql_checked(ty, &mut buf)
                .is_err()
                .then(|| table.columns[cols[j % cols.len()]].name.clone())
        })
}

/// `n` of a type printed as `name(n)`.
fn type_length(pg_name: &str) -> Option<usize> {
    let (_, rest) = pg_name.split_once('(')?;
    rest.strip_suffix(')')?.parse().ok()
}

/// Runs one write statement for rows `set` (writing columns `cols`) inside a
/// savepoint. The outer error is a broken connection; the inner one the
/// server's refusal, with the column it names, if any.
#[allow(clippy::too_many_arguments)]
async fn run_savepointed(
    tx: &Transaction<'_>,
    from: &str,
    table: &Table,
    cache: &mut Statements,
    rows: &[PushRow],
    set: &[usize],
    cols: &[usize],
    kind: Write,
) -> Result<Result<Vec<usize>, (String, Option<String>)>, RemoteError> {
    let npk = table.primary_key.len();
    let subset: Vec<&PushRow> = set.iter().map(|&i| &rows[i]).collect();
    let (text, src): (String, Source) = match kind {
        Write::Delete => {
            let src = sql::key_source(table, &subset);
            (sql::delete_rows(from, table, &src), src)
        }
        Write::Update | Write::Insert => {
            // Bound without the columns' modifiers: the server's assignment
            // rules apply, as for an application's INSERT.
            let types: Vec<String> = cols
                .iter()
                .map(|&c| sql::assign_type(&table.columns[c].ty))
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
            let src = sql::source(
                sql::unnestable(table),
                &sql::value_names(cols),
                &types,
                cells,
                1,
            );
            let text = if kind == Write::Update {
                match sql::update_rows(from, table, cols, &src) {
                    Some(text) => text,
                    // A key-only table: nothing to update, the row exists.
                    None => return Ok(Ok(set.to_vec())),
                }
            } else {
                sql::insert_rows(from, table, cols, &src)
            };
            (text, src)
        }
    };
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    tx.batch_execute(&session::savepoint_for("outpost_row", &table.name))
        .await
        .map_err(db("setting a savepoint"))?;
    // Prepared inside the savepoint: a statement the server cannot even
    // prepare (a column gone on the server) is a refusal like any other.
    let (result, param_types) = match statement(tx, cache, src.cacheable, &text).await {
        Ok(s) => (tx.query(&s, &params(&binds)).await, s.params().to_vec()),
        Err(e) => (Err(e), Vec::new()),
    };
    match result {
        Ok(returned) => {
            tx.batch_execute("RELEASE SAVEPOINT outpost_row")
                .await
                .map_err(db("releasing a savepoint"))?;
            let done = match kind {
                Write::Insert => {
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
                Write::Update => returned
                    .iter()
                    .filter_map(|r| set.get(r.get::<_, i32>(0) as usize).copied())
                    .collect(),
                // A delete of an absent row is done too: the row is gone.
                Write::Delete => set.to_vec(),
            };
            Ok(Ok(done))
        }
        Err(e) => {
            // A broken connection, or a timeout/deadlock of the moment, is
            // not the rows' fault: the push fails, the rows stay pending.
            if crate::error::is_connection_error(&e) || crate::error::is_transient(&e) {
                return Err(RemoteError::Db {
                    action: format!("writing rows of {}", table.name),
                    source: e,
                });
            }
            tx.batch_execute("ROLLBACK TO SAVEPOINT outpost_row")
                .await
                .map_err(db("rolling back to a savepoint"))?;
            let column = match e.as_db_error() {
                Some(d) => d.column().map(str::to_string),
                // Not sent: a value could not be encoded for its type.
                None if kind != Write::Delete => unencodable(table, cols, &binds, &param_types),
                None => None,
            };
            Ok(Err((describe(&e), column)))
        }
    }
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
        .batch_execute(session::KEY_SETTINGS)
        .await
        .map_err(db("preparing to read versions"))?;
    let keys = sql::key_values(table, pks.to_vec());
    let key_binds: Vec<Bind<'_>> = keys.params.iter().map(Bind).collect();
    let mut p = params(&key_binds);
    p.push(&table.name);
    let found = client
        .query(&sql::versions_by_key(table, &keys), &p)
        .await
        .map_err(db(format!("reading versions of {}", table.name)))?;
    Ok(found.iter().map(|r| r.get::<_, i64>(1)).collect())
}
