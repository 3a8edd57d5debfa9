//! Pushing: the plan (the local changes to send, coalesced, in foreign-key
//! order, each with the version it expects) and the acknowledgement (the
//! server's answer taken into `_outpost_rows` in one silenced transaction).
//! What the server accepts is decided on the server (`outpost_remote`); a
//! row it answers with a conflict is settled here like a pulled one.

use std::collections::{HashMap, HashSet};

use outpost_core::settle::BaseVersion;
use outpost_core::sync::{Expected, PushOutcome, PushRow};
use outpost_core::{LocalSeq, Version};
use rusqlite::{Connection, params};

use crate::conflicts::{Policies, ServerSide, Settled, settle_row};
use crate::data::{read_row, table_of, write_row};
use crate::error::LocalError;
use crate::fold::fold;
use crate::keys::pk_values;
use crate::replica::Replica;
use crate::rows::{entry, mark_failed, mark_synced};
use crate::stored::Sql;
use crate::sync::Stats;
use crate::value::{row_from_json, row_to_json};
use outpost_core::schema::Table;
use outpost_core::types::Value;

/// The version a push of a row based on `base` expects to find on the
/// server. `Expected` has no "unknown" yet: an unknown base is sent as
/// version -1, which no row has, so the server compares the rows (and a
/// real difference is settled) instead of trusting the base.
fn expected(base: BaseVersion) -> Expected {
    match base {
        BaseVersion::AsOfCursor => Expected::AsOfCursor,
        BaseVersion::Known(v) => Expected::Version(v.get()),
        BaseVersion::Unknown => Expected::Version(BaseVersion::UNKNOWN_STORED),
    }
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
) -> Result<HashSet<usize>, LocalError> {
    let mut landed = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (row, outcome)) in rows.iter().zip(outcomes).enumerate() {
        if let PushOutcome::Applied { version, .. } | PushOutcome::AlreadyApplied { version, .. } =
            outcome
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
    let mut done = HashSet::new();
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

/// The server's stored row with the replica's spelling of its key: the
/// row is written over the local one it answers, never beside it (a key the
/// server stored in another spelling, an upper-case uuid say, would
/// otherwise make two rows of one).
fn keyed_as_local(table: &Table, pk: &[Value], stored: &[Value]) -> Vec<Value> {
    let mut row = stored.to_vec();
    for (k, v) in table.primary_key.iter().zip(pk) {
        if let Some(i) = table.columns.iter().position(|c| &c.name == k)
            && let Some(slot) = row.get_mut(i)
        {
            *slot = v.clone();
        }
    }
    row
}

impl Replica {
    /// The local changes to push, coalesced (one per row: its final state),
    /// in foreign-key order: upserts parents first, then deletes children
    /// first. Rows in `CONFLICT` or `FAILED` are not pushed. A row with a
    /// local value that cannot be sent for its column becomes `FAILED` here
    /// (docs/protocol.md, "What a push writes"); when a whole batch was such
    /// rows, the next one is read, so they never hide the rows behind them.
    pub fn pending_push(
        &self,
        tables: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<PushRow>, LocalError> {
        loop {
            let (rows, refused) = self.plan_push(tables, limit)?;
            // Refused rows are `FAILED` now: the next read does not see them.
            if !rows.is_empty() || refused == 0 {
                return Ok(rows);
            }
        }
    }

    /// One read of [`Replica::pending_push`]: the rows to push, and how many
    /// were refused locally.
    fn plan_push(
        &self,
        tables: Option<&[String]>,
        limit: usize,
    ) -> Result<(Vec<PushRow>, usize), LocalError> {
        fold(self.connection())?;
        let mut refused = 0;
        let schema = self.schema();
        let conn = self.connection();
        // Per table: (pk, local_seq, deleted, base version, base row).
        type Dirty = (String, LocalSeq, bool, BaseVersion, Option<String>);
        let mut by_table: HashMap<String, Vec<Dirty>> = HashMap::new();
        {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT table_name, pk, local_seq, deleted, server_version, base_row FROM \"_outpost_rows\" \
                     WHERE status = 'PENDING' ORDER BY local_seq LIMIT ?1",
                )
                .map_err(LocalError::sqlite("reading local changes"))?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get(1)?,
                        r.get::<_, Option<Sql<LocalSeq>>>(2)?,
                        r.get(3)?,
                        r.get::<_, Sql<BaseVersion>>(4)?.0,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .map_err(LocalError::sqlite("reading local changes"))?;
            for row in rows {
                let (table, pk, seq, deleted, version, base) =
                    row.map_err(LocalError::sqlite("reading local changes"))?;
                if tables.is_some_and(|ts| !ts.contains(&table)) || schema.table(&table).is_none() {
                    continue;
                }
                by_table.entry(table).or_default().push((
                    pk,
                    seq.map_or(LocalSeq(0), |s| s.0),
                    deleted,
                    version,
                    base,
                ));
            }
        }
        let order = schema.parents_first();
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for t in &order {
            let Some(list) = by_table.get(&t.name) else {
                continue;
            };
            for (pk, seq, deleted, version, base) in list {
                let pk_vals = pk_values(t, pk)?;
                let values = if *deleted {
                    None
                } else {
                    match read_row(conn, t, &pk_vals) {
                        Ok(values) => values,
                        // A value that cannot be sent for its column fails
                        // its own row; the push goes on without it.
                        Err(LocalError::BadStoredValue {
                            column,
                            ty,
                            message,
                        }) => {
                            let reason = format!(
                                "{} {pk}, column {column}: the local value cannot be sent as {ty}: {message}",
                                t.name
                            );
                            tracing::warn!(table = %t.name, %pk, %column, "{reason}");
                            mark_failed(conn, &t.name, pk, &reason)?;
                            refused += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                };
                let changed = match (&values, base) {
                    (Some(values), Some(base)) => row_from_json(t, base)
                        .ok()
                        .map(|base| values.iter().zip(&base).map(|(a, b)| a != b).collect()),
                    _ => None,
                };
                let row = PushRow {
                    table: t.name.clone(),
                    local_pk: pk.clone(),
                    pk: pk_vals,
                    local_seq: seq.get(),
                    expected: expected(*version),
                    values,
                    changed,
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
        Ok((upserts, refused))
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
                    // The server's row is the truth: what it stored (its
                    // triggers, defaults, rounding) replaces what was sent.
                    if let PushOutcome::Applied { row: Some(stored), .. }
                    | PushOutcome::AlreadyApplied { row: Some(stored), .. } = outcome
                        && row.values.as_ref() != Some(stored)
                    {
                        write_row(tx, t, &row.pk, Some(&keyed_as_local(t, &row.pk, stored)))?;
                    }
                    s.records_succeeded += 1;
                    continue;
                }
                let Some(state) = entry(tx, &row.table, &row.local_pk)? else {
                    continue;
                };
                let edited_since = state.local_seq != Some(LocalSeq(row.local_seq));
                match outcome {
                    PushOutcome::Applied { version, row: stored }
                    | PushOutcome::AlreadyApplied { version, row: stored } => {
                        s.records_succeeded += 1;
                        if edited_since {
                            // Edited again during the push: the server's
                            // row becomes the base, and the columns not
                            // edited since take its values (a trigger's
                            // stamp is not later sent back stale).
                            let stored = match (stored, &row.values) {
                                (Some(v), _) => Some(keyed_as_local(t, &row.pk, v)),
                                (None, pushed) => pushed.clone(),
                            };
                            if let (Some(stored), Some(pushed)) = (&stored, &row.values)
                                && !state.deleted
                                && let Ok(Some(now)) = read_row(tx, t, &row.pk)
                            {
                                let merged: Vec<Value> = now
                                    .iter()
                                    .zip(pushed)
                                    .zip(stored)
                                    .map(|((n, p), s)| if n == p { s.clone() } else { n.clone() })
                                    .collect();
                                if merged != now {
                                    write_row(tx, t, &row.pk, Some(&merged))?;
                                }
                            }
                            let base = stored.as_deref().map(|v| row_to_json(t, v));
                            tx.execute(
                                "UPDATE \"_outpost_rows\" SET server_version = ?3, base_row = ?4 WHERE table_name = ?1 AND pk = ?2",
                                params![row.table, row.local_pk, Sql(Version(*version)), base],
                            )
                            .map_err(LocalError::sqlite("recording a pushed version"))?;
                        } else {
                            if let (Some(stored), Some(pushed)) = (stored, &row.values)
                                && pushed != stored
                            {
                                write_row(tx, t, &row.pk, Some(&keyed_as_local(t, &row.pk, stored)))?;
                            }
                            mark_synced(
                                tx,
                                &row.table,
                                &row.local_pk,
                                BaseVersion::Known(Version(*version)),
                                row.values.is_none(),
                            )?;
                        }
                    }
                    PushOutcome::Failed { message } => {
                        s.records_failed += 1;
                        if !edited_since {
                            mark_failed(tx, &row.table, &row.local_pk, message)?;
                        }
                    }
                    PushOutcome::Conflict(server) => {
                        let side = ServerSide {
                            pk: &server.pk,
                            values: server.values.as_deref(),
                            version: BaseVersion::Known(Version(server.version)),
                            changed_at: server.changed_at.as_deref(),
                        };
                        match settle_row(tx, t, &row.local_pk, &state, &side, policies.of(&row.table))? {
                        Settled::Conflict => s.conflicts += 1,
                        Settled::Server => s.records_succeeded += 1,
                        // Queued again: the next push round sends it and
                        // counts it then, so a run counts each row once.
                        Settled::Local => s.records_processed -= 1,
                        }
                    }
                }
            }
            Ok(stats)
        })
    }
}
