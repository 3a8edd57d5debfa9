//! # outpost-local
//!
//! The SQLite replica of one node: the file and its metadata tables
//! ([`replica`]), the storage form of values ([`value`]), and the capture
//! triggers that turn every local write into a tracked change (their SQL is
//! generated in `outpost_core::sqlite`, which documents the tables).
//!
//! Only this crate touches rusqlite.
//!
//! ```no_run
//! # fn main() -> Result<(), outpost_local::LocalError> {
//! let replica = outpost_local::Replica::open(std::path::Path::new("local.db"))?;
//! println!("node {} with {} tables", replica.node_id(), replica.schema().tables.len());
//! # Ok(()) }
//! ```

pub mod error;
pub mod query;
pub mod replica;
pub mod sync;
pub mod value;

pub use error::LocalError;
pub use replica::{Replica, RowEntry, SetupReport};
pub use sync::{
    ChangeEntry, ChangeKind, ChangePage, ConflictEntry, Discarded, LogEntry, ModelStats, Policies,
    ReplicaState, Resolution, Stats,
};

/// The SQLite driver, for callers that run code on the replica's connection.
pub use rusqlite;
