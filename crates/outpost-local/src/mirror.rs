//! Mirroring: rows the node wrote on the server itself (remote mode) are
//! written into the replica as synced at their new versions, so a read
//! after a remote write finds it locally too.

use outpost_core::settle::BaseVersion;
use outpost_core::types::Value;
use outpost_core::{ReplicaState, RowStatus, Version};

use crate::data::{table_of, write_row};
use crate::error::LocalError;
use crate::keys::local_pk;
use crate::meta::cursor_row;
use crate::replica::Replica;
use crate::rows::{entry, mark_synced};

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
    /// Its tag, through a gateway with sync rules (`crate::tags`).
    pub tag: Option<String>,
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
                if let Some(tag) = &row.tag {
                    crate::tags::record(tx, &row.table, &key, tag)?;
                }
                // A pull (possibly another process's sync) may already have
                // applied a newer version between the write's commit and now:
                // versions only grow, so an older one must not overwrite it.
                if entry(tx, &row.table, &key)?.is_some_and(|e| {
                    e.status != RowStatus::Synced
                        || matches!(e.server_version, BaseVersion::Known(v) if v > Version(row.version))
                }) {
                    continue;
                }
                write_row(tx, t, &row.pk, row.values.as_deref())?;
                mark_synced(
                    tx,
                    &row.table,
                    &key,
                    BaseVersion::Known(Version(row.version)),
                    row.values.is_none(),
                )?;
                n += 1;
            }
            Ok(n)
        })
    }
}
