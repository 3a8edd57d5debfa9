//! # outpost-engine
//!
//! The sync engine of one node: it drives a sync run between the replica
//! (`outpost-local`) and the server (`outpost-remote`):
//!
//! 1. **Bootstrap** when the replica is empty, was interrupted mid-copy, fell
//!    behind the server's retention window, or has tables whose definition
//!    changed: one `REPEATABLE READ` snapshot, each table streamed with binary
//!    `COPY` into large SQLite transactions, the cursor set from the snapshot.
//! 2. **Push** (`TO_SERVER`, and first in `BIDIRECTIONAL`): the replica's
//!    coalesced local changes in foreign-key order, in batches, each batch one
//!    server transaction; the acknowledgement applied in one SQLite
//!    transaction; rows merged by conflict resolution go out in a second
//!    round.
//! 3. **Pull** (`FROM_SERVER`, and second in `BIDIRECTIONAL`): the change
//!    feed under the cursor rule, each batch applied with its cursor in one
//!    SQLite transaction.
//! 4. One `SyncLog` row per model per run, and results per model in the
//!    seed's shape ([`SyncReport`]).
//! 5. Counters of every run (outcome, duration, rows pushed and pulled,
//!    conflicts, refused rows) and the running run's progress
//!    ([`Engine::metrics`], [`Engine::progress`]), for `/metrics` and the
//!    page.
//!
//! SQLite work runs on blocking threads (`spawn_blocking`), never on an
//! async worker.
//!
//! ```no_run
//! # async fn demo(replica: outpost_local::Replica, config: outpost_core::config::Config)
//! # -> Result<(), outpost_engine::EngineError> {
//! use outpost_core::sync::{Direction, Trigger};
//! let engine = outpost_engine::Engine::new(replica, config);
//! let report = engine.sync(outpost_engine::SyncOptions::new(Direction::Bidirectional, Trigger::Manual)).await?;
//! println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
//! # Ok(()) }
//! ```

mod defaults;
mod engine;
mod error;
mod faults;
mod metrics;
mod model;
mod node;
mod prisma;
mod review;
mod schedule;

pub use engine::{
    Engine, EngineStatus, IDLE_IN_TRANSACTION_TIMEOUT, Progress, ProgressFn, SERVER_TIMEOUT,
    ServerTimeouts, SyncOptions, SyncReport,
};

pub use engine::verify::{ModelVerify, PendingRow, RowDifference, VerifyReport};
pub use error::{EngineError, ErrorKind};
pub use faults::FaultPoint;
pub use metrics::{DURATION_BUCKETS, MetricsSnapshot, SyncProgress};
pub use model::{ModelService, Output as ModelOutput};
pub use node::{Mode, NodeOptions, Outpost, Status};
pub use outpost_core::conflict::Policy;
/// The replica's review types the engine's API hands out (so callers need
/// not depend on `outpost-local`).
pub use outpost_local::{ChangeEntry, ChangePage, ConflictEntry, Discarded, LogEntry, Resolution};
pub use outpost_query::Operation;
pub use prisma::{PrismaView, check_prisma_schema, prisma_api_schema};
