//! Applying a pull batch: truncations, then every pulled row against its
//! entry as `outpost_core::settle::decide_pull` decides, and the cursor, in
//! one silenced transaction. The common case (no local change) is written
//! set-wise, per table.

use std::collections::{HashMap, HashSet};

use outpost_core::conflict::Policy;
use outpost_core::schema::Table;
use outpost_core::settle::{BaseVersion, PullDecision, Pulled, decide_pull};
use outpost_core::sync::{PullBatch, ServerRow};
use outpost_core::{NodeId, ReplicaState, RowStatus, Version};
use rusqlite::Connection;

use crate::conflicts::{Policies, ServerSide, Settled, settle_row};
use crate::data::{RowWriter, clear_synced, read_row, table_of, write_row};
use crate::error::LocalError;
use crate::keys::{pk_values, pull_key};
use crate::meta::set_cursor;
use crate::replica::Replica;
use crate::rows::{
    RowEntry, entries_of, entry, mark_conflict, mark_synced, mark_synced_all, rebase,
    rebase_keeping_failed,
};
use crate::sync::{ModelStats, Stats};
use crate::value::row_from_json;
use outpost_core::types::Value;

/// What the pull decision needs of a pulled row.
fn pulled(row: &ServerRow) -> Pulled {
    Pulled {
        version: row.version,
        // An origin that is not a node id (set by hand) is nobody's push.
        origin: row.origin.as_deref().and_then(|o| o.parse::<NodeId>().ok()),
        origin_local_seq: row.origin_local_seq,
        left_scope: row.out_of_scope && row.values.is_none(),
    }
}

/// The server side of a pulled row for a settlement.
fn server_side(row: &ServerRow) -> ServerSide<'_> {
    ServerSide {
        pk: &row.pk,
        values: row.values.as_deref(),
        version: BaseVersion::Known(row.version),
        changed_at: row.changed_at.as_deref(),
    }
}

/// Carries out the decision for one pulled row against its entry (`state`,
/// read by the caller), the row-by-row way; counts it in `s`.
#[allow(clippy::too_many_arguments)]
fn apply_pulled_row(
    tx: &Connection,
    t: &Table,
    row: &ServerRow,
    key: &str,
    state: Option<RowEntry>,
    node: NodeId,
    policy: Policy,
    s: &mut ModelStats,
) -> Result<(), LocalError> {
    let version = BaseVersion::Known(row.version);
    let decision = decide_pull(
        state.as_ref().map(RowEntry::state).as_ref(),
        &pulled(row),
        node,
    );
    match (decision, state) {
        // `Settle` is never decided without an entry, and no entry takes
        // the server's row.
        (PullDecision::TakeServer, _) | (PullDecision::Settle, None) => {
            write_row(tx, t, &row.pk, row.values.as_deref())?;
            mark_synced(tx, &row.table, key, version, row.values.is_none())?;
            s.records_succeeded += 1;
        }
        (PullDecision::AlreadyBased, _) => s.records_succeeded += 1,
        // Only a server change the conflict had not seen counts.
        (PullDecision::KeepConflict { show_server: false }, _) => {}
        (PullDecision::KeepConflict { show_server: true }, _) => {
            mark_conflict(tx, t, key, row.values.as_deref(), version)?;
            s.conflicts += 1;
        }
        (PullDecision::OwnPush { keep_failed }, st) => {
            if let Some(st) = &st {
                take_unwritten_columns(tx, t, key, st, row)?;
            }
            if keep_failed {
                rebase_keeping_failed(tx, t, key, row.values.as_deref(), version)?;
            } else {
                rebase(tx, t, key, row.values.as_deref(), version)?;
            }
            s.records_succeeded += 1;
        }
        // The server did not delete the row: the local change stays, on
        // "no row" at this version, for the rules to refuse by name.
        (PullDecision::LeftScope { keep_failed }, _) => {
            if keep_failed {
                rebase_keeping_failed(tx, t, key, None, version)?;
            } else {
                rebase(tx, t, key, None, version)?;
            }
            s.records_succeeded += 1;
        }
        (PullDecision::Settle, Some(st)) => {
            match settle_row(tx, t, key, &st, &server_side(row), policy)? {
                Settled::Conflict => s.conflicts += 1,
                Settled::Server | Settled::Local => s.records_succeeded += 1,
                Settled::Failed => s.records_failed += 1,
            }
        }
    }
    Ok(())
}

/// This node's own push came back, but the server's row may hold more than
/// the node wrote: a trigger's stamp, a cascade, a counter an `AFTER`
/// trigger of another push moved. The own-write rule covers exactly the
/// values the node wrote: a column the node did not change relative to its
/// base takes the server's value; the columns it changed stay local (they
/// are pushed again, harmlessly, if the server stored them otherwise). A
/// local insert (no base) whose push this version includes (its change
/// number at or below the version's `origin_local_seq`) takes the server's
/// row whole: the node wrote all of it, and the server may have filled in
/// more.
fn take_unwritten_columns(
    tx: &Connection,
    t: &Table,
    key: &str,
    st: &RowEntry,
    row: &ServerRow,
) -> Result<(), LocalError> {
    let Some(server) = row.values.as_deref() else {
        return Ok(());
    };
    if st.deleted {
        return Ok(());
    }
    let local_pk = pk_values(t, key)?;
    let Ok(Some(now)) = read_row(tx, t, &local_pk) else {
        return Ok(());
    };
    let keep_key = |mut r: Vec<Value>| {
        for (k, v) in t.primary_key.iter().zip(&local_pk) {
            if let Some(i) = t.columns.iter().position(|c| &c.name == k) {
                r[i] = v.clone();
            }
        }
        r
    };
    let merged: Vec<Value> = match st.base_row.as_deref().map(|b| row_from_json(t, b)) {
        Some(Ok(base)) => keep_key(
            now.iter()
                .zip(&base)
                .zip(server)
                .map(|((n, b), s)| if n == b { s.clone() } else { n.clone() })
                .collect(),
        ),
        Some(Err(_)) => return Ok(()),
        None => {
            let covered = matches!(
                (st.local_seq, row.origin_local_seq),
                (Some(l), Some(o)) if l <= o
            );
            if !covered {
                return Ok(());
            }
            keep_key(server.to_vec())
        }
    };
    if merged != now {
        write_row(tx, t, &local_pk, Some(&merged))?;
    }
    Ok(())
}

/// What [`Replica::apply_pull`] keeps per table of a batch.
struct PullTable<'c> {
    /// Entries of the batch's keys not yet looked at.
    entries: HashMap<String, RowEntry>,
    writer: RowWriter<'c>,
    /// `(pk, version, deleted)` of rows now synced, for [`mark_synced_all`].
    synced: Vec<(String, Version, bool)>,
}

impl Replica {
    /// Applies a pull batch in one transaction, with the cursor when
    /// `advance` (a pull limited to some models leaves the cursor alone:
    /// their changes are re-read by the next full pull, harmlessly).
    ///
    /// Each row is decided by `outpost_core::settle::decide_pull`
    /// (docs/protocol.md, "## Pull"): a row without local changes takes the
    /// server's state; a version this node pushed itself re-bases a local
    /// change; any other goes through `settle` with the model's policy.
    /// Applying a version the replica already has changes nothing.
    pub fn apply_pull(
        &mut self,
        batch: &PullBatch,
        policies: &Policies,
        advance: bool,
    ) -> Result<Stats, LocalError> {
        // A deletion with only its tag names its row through the tag
        // (the engine resolves a batch before its scope checks already).
        if batch.rows.iter().any(ServerRow::key_withheld) {
            let mut resolved = batch.clone();
            self.resolve_withheld(&mut resolved)?;
            return self.apply_pull(&resolved, policies, advance);
        }
        let schema = self.schema().clone();
        let node = NodeId(self.node_id());
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
            for (row, key) in batch.rows.iter().zip(&keys) {
                if let Some(tag) = &row.tag {
                    crate::tags::record(tx, &row.table, key, tag)?;
                }
            }
            // The feed names each row once per batch. A batch naming one twice
            // (made by hand) takes the row-by-row path: each row then sees the
            // entry the previous one left.
            let mut seen = HashSet::with_capacity(keys.len());
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
                let policy = policies.of(&row.table);
                let s = stats.entry(row.table.clone()).or_default();
                if !unique {
                    s.records_processed += 1;
                    let state = entry(tx, &row.table, key)?;
                    apply_pulled_row(tx, t, row, key, state, node, policy, s)?;
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
                let no_local_change = state
                    .as_ref()
                    .is_none_or(|st| st.status == RowStatus::Synced);
                match decide_pull(
                    state.as_ref().map(RowEntry::state).as_ref(),
                    &pulled(row),
                    node,
                ) {
                    // No local change (the common case): written set-wise,
                    // without a statement of its own for the entry.
                    PullDecision::TakeServer => {
                        pt.writer.write(tx, t, &row.pk, row.values.as_deref())?;
                        pt.synced
                            .push((key.clone(), row.version, row.values.is_none()));
                        s.records_processed += 1;
                        s.records_succeeded += 1;
                    }
                    // A version the replica already has with no local
                    // change (the echo of this node's own push) is not a
                    // change pulled: not counted, so a run that only sees
                    // echoes moved nothing.
                    PullDecision::AlreadyBased if no_local_change => {}
                    PullDecision::AlreadyBased => {
                        s.records_processed += 1;
                        s.records_succeeded += 1;
                    }
                    _ => {
                        s.records_processed += 1;
                        apply_pulled_row(tx, t, row, key, state, node, policy, s)?;
                    }
                }
            }
            for (name, pt) in &tables {
                mark_synced_all(tx, name, &pt.synced)?;
            }
            if advance {
                set_cursor(tx, batch.cursor, ReplicaState::Ready)?;
            }
            Ok(stats)
        })
    }
}

/// A server `TRUNCATE`: rows without local changes go; rows with local
/// changes are settled against a deleted server row of unknown version.
fn truncate(
    conn: &Connection,
    table: &Table,
    policy: Policy,
    stats: &mut Stats,
) -> Result<(), LocalError> {
    clear_synced(conn, table, &format!("truncating {}", table.name))?;
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
        let key = pk_values(table, &pk)?;
        let server = ServerSide {
            pk: &key,
            values: None,
            version: BaseVersion::Unknown,
            changed_at: None,
        };
        if settle_row(conn, table, &pk, &state, &server, policy)? == Settled::Conflict {
            stats.entry(table.name.clone()).or_default().conflicts += 1;
        }
    }
    Ok(())
}
