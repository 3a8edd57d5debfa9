//! The data a sync moves between the layers: the pull cursor, server rows
//! with their versions, rows to push and what the server answered. Plain
//! data; `outpost-remote` fills it from PostgreSQL, `outpost-local` applies it
//! to the replica, the engine decides in between.

use std::fmt;

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::ids::{LocalSeq, Version};
use crate::schema::{Schema, Table};
use crate::types::Value;

/// A position in the server's change feed: the last `(txid, seq)` applied.
/// Ordered lexicographically, which is the feed's order.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Cursor {
    /// Transaction id (`xid8`) of the last change applied.
    pub txid: i64,
    /// Its sequence number.
    pub seq: i64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.txid, self.seq)
    }
}

/// Sync direction, spelled as in the seed's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// Push, then pull.
    Bidirectional,
    /// Push only.
    ToServer,
    /// Pull only.
    FromServer,
}

impl Direction {
    /// The seed's spelling (`BIDIRECTIONAL`, `TO_SERVER`, `FROM_SERVER`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Bidirectional => "BIDIRECTIONAL",
            Direction::ToServer => "TO_SERVER",
            Direction::FromServer => "FROM_SERVER",
        }
    }

    /// Whether this direction pushes.
    pub fn pushes(self) -> bool {
        matches!(self, Direction::Bidirectional | Direction::ToServer)
    }

    /// Whether this direction pulls.
    pub fn pulls(self) -> bool {
        matches!(self, Direction::Bidirectional | Direction::FromServer)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Direction, String> {
        match s {
            "BIDIRECTIONAL" => Ok(Direction::Bidirectional),
            "TO_SERVER" => Ok(Direction::ToServer),
            "FROM_SERVER" => Ok(Direction::FromServer),
            other => Err(format!(
                "unknown direction {other:?}: expected BIDIRECTIONAL, TO_SERVER or FROM_SERVER"
            )),
        }
    }
}

/// What started a sync run (recorded in `SyncLog.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A person or a script asked for it.
    Manual,
    /// The periodic interval.
    Interval,
    /// The server came back.
    Reconnect,
    /// A server change notification.
    Notify,
    /// The node started.
    Startup,
    /// A local write was committed to the replica (by the application,
    /// another program, or the node's model service).
    LocalChange,
}

impl Trigger {
    /// The spelling stored in `SyncLog`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Interval => "interval",
            Trigger::Reconnect => "reconnect",
            Trigger::Notify => "notify",
            Trigger::Startup => "startup",
            Trigger::LocalChange => "local-change",
        }
    }
}

/// A server row as a pull or a push conflict delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRow {
    /// The table.
    pub table: String,
    /// Primary-key values in key order.
    pub pk: Vec<Value>,
    /// All columns in table order; `None` when the row is deleted.
    pub values: Option<Vec<Value>>,
    /// The row's version ([`Version::UNCHANGED`]: unchanged since tracking
    /// began).
    pub version: Version,
    /// The node whose push wrote this version, if any, as the server stores
    /// it. Text, not a [`NodeId`](crate::NodeId): a node recognises its own pushes only by
    /// the exact text they write (`outpost_core::accept`), so the spelling
    /// must survive.
    pub origin: Option<String>,
    /// That node's `local_seq` for the write.
    pub origin_local_seq: Option<LocalSeq>,
    /// When the version was written (canonical UTC text).
    pub changed_at: Option<String>,
    /// A deletion sent because the row exists but is outside the node's
    /// sync-rule scope (gateway topology), not because the server deleted
    /// it: a local change of the row is kept, not settled against a
    /// deletion (`outpost_core::settle::decide_pull`). Absent on the wire
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub out_of_scope: bool,
    /// Through a gateway with sync rules, for a node that asked for tags:
    /// the row's opaque tag (a keyed hash of its table and key, computed
    /// by the gateway with a secret the node never sees). A row the node
    /// is served carries it, and the node keeps it with the row's key; a
    /// deletion in a filtered table carries **only** the tag (`pk` empty),
    /// so a node learns nothing of keys it does not hold and finds its own
    /// row by the tag it kept. Absent on the wire when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl ServerRow {
    /// A deletion whose key the gateway withheld: only its tag crossed.
    pub fn key_withheld(&self) -> bool {
        self.pk.is_empty() && self.tag.is_some()
    }
}

/// One batch of the change feed, read in one server snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullBatch {
    /// Tables truncated on the server (apply before `rows`).
    pub truncated: Vec<String>,
    /// The current state of every row changed in the batch (after the last
    /// truncate of its table).
    pub rows: Vec<ServerRow>,
    /// The number of changes the batch covers.
    pub changes: usize,
    /// The cursor after the batch (unchanged when it was empty).
    pub cursor: Cursor,
    /// More changes are waiting below the horizon.
    pub more: bool,
    /// Changes exist past the horizon: an open transaction (anywhere on the
    /// cluster) holds them back; pull again shortly.
    pub held_back: bool,
    /// Changes past the batch's start cursor were pruned before its
    /// snapshot (the retention mark is past the cursor): the batch holds
    /// nothing and the replica must be bootstrapped again.
    pub pruned: bool,
    /// Through a gateway with sync rules: for each table the batch covers
    /// that is filtered, a digest of the rule and the claim values it
    /// reads. A table not listed is served whole (as a direct connection
    /// serves every table). A node copies a table again when this differs
    /// from the digest it copied the table under, so a changed rule brings
    /// the rows that moved in and removes those that moved out.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scopes: std::collections::BTreeMap<String, String>,
}

/// What the replica expects the server's version of a pushed row to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expected {
    /// This exact version.
    Version(Version),
    /// The version the replica's cursor covers (the row was not changed on
    /// the server since the replica last saw it).
    AsOfCursor,
    /// The replica does not know its base (a row written while its state
    /// was unclear, e.g. an interrupted acknowledgement): no server version
    /// is trusted as the base, so the rows are compared as a conflict and a
    /// real difference is settled there.
    Unknown,
}

/// A local change to push: the row's final state, coalesced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRow {
    /// The table.
    pub table: String,
    /// The key of the replica's `_outpost_rows` entry.
    pub local_pk: String,
    /// Primary-key values in key order.
    pub pk: Vec<Value>,
    /// All columns in table order; `None` for a delete.
    pub values: Option<Vec<Value>>,
    /// For an update: which columns (in table order) the node changed
    /// relative to the row's base. Only those are written, so a value the
    /// server assigned (a trigger, a default) and the node never saw is not
    /// overwritten with the node's stale one. `None`: every column (an
    /// insert, or a row whose base is not known).
    pub changed: Option<Vec<bool>>,
    /// The entry's `local_seq` (the change being pushed).
    pub local_seq: LocalSeq,
    /// The version the change was based on.
    pub expected: Expected,
    /// For the insert half of a primary-key change: the old key's values.
    /// The same push carries the old key's delete; the server applies the
    /// pair as one `UPDATE` of the key when both would be written as they
    /// are (so `ON UPDATE` actions of foreign keys run), and as the insert
    /// and the delete otherwise (docs/protocol.md, "Key changes"). A server
    /// that does not know the field applies the pair as insert and delete,
    /// as before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<Vec<Value>>,
}

impl PushRow {
    /// The length of this row's values or changed-column mask when it is
    /// not `table`'s column count: the row was planned under another schema
    /// snapshot, and sending it would misplace its values (or take a
    /// missing one for NULL). `None` when the row has the table's shape.
    pub fn shape_mismatch(&self, table: &Table) -> Option<usize> {
        let columns = table.columns.len();
        [
            self.values.as_ref().map(Vec::len),
            self.changed.as_ref().map(Vec::len),
        ]
        .into_iter()
        .flatten()
        .find(|&n| n != columns)
    }
}

/// What the server did with one pushed row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PushOutcome {
    /// Written; the row's new version (for a delete of an absent row, its
    /// current version).
    Applied {
        /// The version now on the server.
        version: Version,
        /// The row as the server stored it, read back in the push's
        /// transaction after the write (triggers, defaults, rounding and
        /// normalised input included); `None` when it is deleted. The
        /// acknowledgement writes it into the replica.
        row: Option<Vec<Value>>,
        /// The row's tag ([`ServerRow::tag`]), through a gateway with sync
        /// rules for a node that asked for tags.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// This node had already written this change (a retry after a lost
    /// acknowledgement): nothing written again.
    AlreadyApplied {
        /// The version on the server.
        version: Version,
        /// The row as the server has it (as for `Applied`).
        row: Option<Vec<Value>>,
        /// As for `Applied`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// The server's row changed since the replica's base: nothing written;
    /// the server's current row for resolution.
    Conflict(ServerRow),
    /// The server refused the row; nothing written.
    Failed {
        /// The server's message, or why the row was not sent.
        message: String,
    },
}

/// `set` reordered so that a row another row of `set` references through a
/// foreign key of the table to itself comes before it (a tree's parents
/// before its children; a cycle is cut anywhere). Other tables' keys and
/// rows without a parent in `set` keep their order.
pub fn parents_first_within(table: &Table, rows: &[PushRow], set: &[usize]) -> Vec<usize> {
    let own: Vec<_> = table
        .foreign_keys
        .iter()
        .filter(|fk| fk.ref_table == table.name)
        .collect();
    if own.is_empty() || set.len() < 2 {
        return set.to_vec();
    }
    let position = |name: &String| table.columns.iter().position(|c| &c.name == name);
    // The text of a row's values in `cols` (`Value` has no `Hash`: its
    // debug text stands in, as for the insert's keys); None when a column
    // is missing or a value is NULL (no reference).
    let key = |i: usize, cols: &[String]| -> Option<String> {
        let values = rows[i].values.as_ref()?;
        let picked: Option<Vec<&Value>> = cols
            .iter()
            .map(|c| position(c).and_then(|j| values.get(j)))
            .collect();
        let picked = picked?;
        if picked.iter().any(|v| v.is_null()) {
            return None;
        }
        Some(format!("{picked:?}"))
    };
    let mut referenced: HashMap<(usize, String), usize> = HashMap::new();
    for (f, fk) in own.iter().enumerate() {
        for &i in set {
            if let Some(k) = key(i, &fk.ref_columns) {
                referenced.insert((f, k), i);
            }
        }
    }
    let parents = |i: usize| -> Vec<usize> {
        own.iter()
            .enumerate()
            .filter_map(|(f, fk)| key(i, &fk.columns).and_then(|k| referenced.get(&(f, k))))
            .copied()
            .filter(|&p| p != i)
            .collect()
    };
    // Depth-first, post-order, without recursion (a chain may be a whole
    // group long). 1: being visited, 2: placed.
    let mut state: HashMap<usize, u8> = HashMap::new();
    let mut out = Vec::with_capacity(set.len());
    for &root in set {
        let mut stack = vec![(root, false)];
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                if state.get(&n) != Some(&2) {
                    state.insert(n, 2);
                    out.push(n);
                }
                continue;
            }
            if state.contains_key(&n) {
                continue;
            }
            state.insert(n, 1);
            stack.push((n, true));
            for p in parents(n) {
                if !state.contains_key(&p) {
                    stack.push((p, false));
                }
            }
        }
    }
    out
}

/// If `row` (of `table`) references, by a foreign key, a row of `rows` whose
/// outcome is `Failed` (the server refused it), says which and why: the
/// `FAILED` reason of a row whose parent was refused.
pub fn refused_parent(
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
