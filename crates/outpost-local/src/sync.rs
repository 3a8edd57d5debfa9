//! The replica's side of a sync, by concern: [`bootstrap`](crate::bootstrap)
//! writes, applying a [`pull`](crate::pull), planning and acknowledging a
//! [`push`](crate::push), [`conflicts`](crate::conflicts) and their
//! resolution, the [`review`](crate::review) lists (pending, failed, retry,
//! discard), the [`log`](crate::log) (`SyncLog`), reserved [`ids`](crate::ids)
//! and [`mirror`](crate::mirror)ing remote writes. This module keeps the
//! run's counts and, at their old paths, the items callers name as
//! `outpost_local::sync::…`.
//!
//! Every write of server data happens in [`Replica::apply_silenced`], so it is
//! never mistaken for a local change, and data and the cursor that covers it
//! commit in one transaction. What happens to a pulled row, or to a pushed
//! one the server answered with a conflict, is decided by the pure functions
//! of `outpost_core::settle` (which end in `outpost_core::conflict::resolve`);
//! this crate only carries the decisions out.
//!
//! [`Replica::apply_silenced`]: crate::Replica::apply_silenced

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::conflicts::{ConflictEntry, Policies, Resolution};
pub use crate::data::read_row;
pub use crate::ids::take_id;
pub use crate::keys::local_pk;
pub use crate::log::LogEntry;
pub use crate::mirror::Mirrored;
pub use crate::review::{ChangeEntry, ChangeKind, ChangePage, Discarded, FailedEntry};
/// Where a replica stands (`outpost_core`'s, re-exported at its old path).
pub use outpost_core::ReplicaState;

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
