//! # outpost-local
//!
//! The SQLite replica of one node: the file and its setup ([`replica`]),
//! its metadata and cursor ([`meta`]), the capture log folded into per-row
//! sync state ([`fold`], [`rows`]), the storage form of values ([`value`])
//! and of the sync vocabulary ([`stored`]), and the replica's side of a sync
//! by concern: [`bootstrap`], [`pull`], [`push`], [`conflicts`], [`review`],
//! [`log`], [`ids`], [`mirror`], [`scope`] (rows that left a gateway
//! node's sync-rule scope) (with [`sync`] keeping the run's counts and
//! the old paths). The capture triggers' SQL is generated in
//! `outpost_core::sqlite`, which documents the tables; the statements built
//! here at run time are in [`sql`].
//!
//! Only this crate touches rusqlite. Decisions are not taken here: the pull
//! settlement is `outpost_core::settle`, conflicts `outpost_core::conflict`.
//!
//! ```no_run
//! # fn main() -> Result<(), outpost_local::LocalError> {
//! let replica = outpost_local::Replica::open(std::path::Path::new("local.db"))?;
//! println!("node {} with {} tables", replica.node_id(), replica.schema().tables.len());
//! # Ok(()) }
//! ```

pub mod bootstrap;
pub mod conflicts;
pub mod data;
pub mod error;
pub mod fold;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod log;
pub mod meta;
pub mod mirror;
#[cfg(test)]
mod plans;
pub mod pull;
pub mod push;
pub mod query;
pub mod replica;
pub mod review;
pub mod rows;
mod schema_change;
pub mod scope;
pub mod settings;
pub mod sql;
pub mod stored;
pub mod sync;
pub mod tags;
pub mod value;
pub mod verify;
pub mod watch;

pub use error::LocalError;
pub use identity::Refreshed;
pub use replica::{Replica, SetupReport};
pub use rows::RowEntry;
pub use sync::{
    ChangeEntry, ChangeKind, ChangePage, ConflictEntry, Discarded, LogEntry, ModelStats, Policies,
    ReplicaState, Resolution, Stats,
};

/// The SQLite driver, for callers that run code on the replica's connection.
pub use rusqlite;
