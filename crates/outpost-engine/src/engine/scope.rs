//! Rows that leave a gateway node's scope with their parent
//! (`outpost_local::scope`). A pull batch through a gateway with sync
//! rules names the tables it filters (`PullBatch::scopes`); for every row
//! the batch changes in a table that a filtered table references, the node
//! looks up its own rows under it, asks the gateway which of those are
//! outside its scope now, and, once the batch is applied, removes them.
//! Asked before the batch is applied, so that a failed check fails the
//! batch (pulled again next run) rather than leaving rows behind for good.
//! The removed rows are parents in turn (a comment's replies). A change
//! the node could not read (a tag of a row it never held) may be the
//! parent of rows it holds without their parent; for those tables it asks
//! about such rows ([`outpost_local::Replica::orphans_of`]) too.

use std::collections::{BTreeMap, BTreeSet};

use outpost_core::schema::Schema;
use outpost_core::sync::PullBatch;
use outpost_core::types::Value;
use outpost_local::sync::Stats;
use outpost_remote::connections::SyncLink;

use super::Engine;
use crate::error::EngineError;

/// Keys asked per request (the gateway takes up to 10,000).
const CHECK_CHUNK: usize = 1_000;

/// Rows to remove after a batch is applied: keys by table.
pub(super) type MovedOut = BTreeMap<String, Vec<Vec<Value>>>;

impl Engine {
    /// The rows of this node's filtered tables under the rows `batch`
    /// changes that the gateway no longer serves it; empty without rules.
    /// For a table in `orphaned` (the batch carried changes of its rows
    /// that this replica never held, as tags it cannot read), the rows of
    /// its filtered child tables that this replica holds without their
    /// parent are asked about too: the change may have been their
    /// parent's.
    pub(super) async fn moved_out(
        &self,
        conn: &SyncLink,
        schema: &Schema,
        batch: &PullBatch,
        orphaned: &BTreeSet<String>,
    ) -> Result<MovedOut, EngineError> {
        let mut out = MovedOut::new();
        if batch.scopes.is_empty() {
            return Ok(out);
        }
        let scoped: BTreeSet<&str> = batch.scopes.keys().map(String::as_str).collect();
        let referenced: BTreeSet<&str> = schema
            .tables
            .iter()
            .filter(|t| scoped.contains(t.name.as_str()))
            .flat_map(|t| t.foreign_keys.iter().map(|fk| fk.ref_table.as_str()))
            .collect();
        let mut parents: MovedOut = MovedOut::new();
        for row in &batch.rows {
            if referenced.contains(row.table.as_str()) {
                parents
                    .entry(row.table.clone())
                    .or_default()
                    .push(row.pk.clone());
            }
        }
        // Level by level: the rows found outside are the parents of the
        // next level. A table's rows are asked about once per level, and
        // there are no more levels than tables (a cycle of references
        // stops there).
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for level in 0..schema.tables.len() {
            if parents.is_empty() && (level > 0 || orphaned.is_empty()) {
                break;
            }
            let mut next = MovedOut::new();
            for child in schema
                .tables
                .iter()
                .filter(|t| scoped.contains(t.name.as_str()))
            {
                for fk in &child.foreign_keys {
                    let keys = parents.get(&fk.ref_table).cloned();
                    let orphans = level == 0 && orphaned.contains(&fk.ref_table);
                    if keys.is_none() && !orphans {
                        continue;
                    }
                    let (name, fk) = (child.name.clone(), fk.clone());
                    let under = self
                        .with_replica(move |r| {
                            let mut under = match keys {
                                Some(keys) => r.rows_under(&name, &fk, &keys)?,
                                None => Vec::new(),
                            };
                            if orphans {
                                under.extend(r.orphans_of(&name, &fk)?);
                            }
                            Ok(under)
                        })
                        .await?;
                    for chunk in under.chunks(CHECK_CHUNK) {
                        let outside = self
                            .bounded(
                                "checking rows against the sync rules",
                                conn.outside_scope(schema, child, chunk.to_vec()),
                            )
                            .await?;
                        let gone = outside
                            .into_iter()
                            .filter_map(|i| chunk.get(i).cloned())
                            .filter(|k| seen.insert((child.name.clone(), format!("{k:?}"))));
                        next.entry(child.name.clone()).or_default().extend(gone);
                    }
                }
            }
            next.retain(|_, keys| !keys.is_empty());
            for (table, keys) in &next {
                out.entry(table.clone())
                    .or_default()
                    .extend(keys.iter().cloned());
            }
            parents = next;
        }
        Ok(out)
    }

    /// Removes what [`Engine::moved_out`] found (rows with local changes
    /// stay, for their push to be refused by name), counting the removals
    /// as pulled rows of their tables.
    pub(super) async fn remove_moved_out(
        &self,
        moved: MovedOut,
        stats: &mut Stats,
    ) -> Result<(), EngineError> {
        for (table, keys) in moved {
            let name = table.clone();
            let removed = self
                .with_replica(move |r| r.remove_outside(&name, &keys))
                .await?;
            if removed > 0 {
                tracing::debug!(table, removed, "removed rows that left the node's scope");
                let s = stats.entry(table).or_default();
                s.records_processed += removed as u64;
                s.records_succeeded += removed as u64;
            }
        }
        Ok(())
    }
}
