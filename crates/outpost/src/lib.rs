//! # outpost
//!
//! A local SQLite replica of a PostgreSQL database that keeps working offline
//! and syncs both ways. This crate is the `outpost` binary and the facade
//! that re-exports the public API of the layers below it:
//!
//! * [`core`]: schema model, value mapping, generated SQL, configuration;
//! * [`local`]: the SQLite replica and its capture triggers;
//! * [`remote`]: PostgreSQL introspection, the tracking schema, the value codec;
//! * [`query`]: the Prisma-like query layer, identical on both databases;
//! * [`engine`]: sync runs, and the node runtime [`Outpost`] with its model
//!   service (see `docs/runtime.md`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = outpost::core::config::Config::from_lookup(|k| std::env::var(k).ok())?;
//! let replica = outpost::local::Replica::open(&config.local_database_path)?;
//! println!("node {}", replica.node_id());
//! # Ok(()) }
//! ```

pub use outpost_core as core;
pub use outpost_engine as engine;
pub use outpost_engine::{
    EngineError, Mode, ModelService, NodeOptions, Operation, Outpost, Status,
};
pub use outpost_local as local;
pub use outpost_query as query;
pub use outpost_remote as remote;
