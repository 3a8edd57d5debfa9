//! The [`Engine`]: one node's sync runs, never two at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_core::config::Config;
use outpost_core::conflict::Policy;
use outpost_core::schema::Schema;
use outpost_core::sync::{Cursor, Direction, Trigger};
use outpost_local::sync::{ModelStats, Policies, ReplicaState, Stats};
use outpost_local::{LogEntry, Replica};
use outpost_remote::connections::{SyncConnection, SyncLink};
use serde::Serialize;
use uuid::Uuid;

mod run;
mod scope;
pub mod verify;

use crate::error::{EngineError, ErrorKind};
use crate::faults::Faults;
use crate::metrics::{MetricsSnapshot, SyncMetrics, SyncProgress};

/// Rows per pushed server transaction.
const PUSH_BATCH: usize = 5_000;
/// Changes per pulled batch (one snapshot, one SQLite transaction).
const PULL_BATCH: i64 = 5_000;
/// Rows per SQLite transaction during a bootstrap.
const BOOTSTRAP_CHUNK: usize = 20_000;
/// Push rounds in one run: a row merged by conflict resolution goes out in
/// the next round.
const PUSH_ROUNDS: usize = 3;
/// Server-side limits for sync statements (`statement_timeout`) and for
/// waiting on a lock (`lock_timeout`), so a sync never hangs on a lock or a
/// runaway statement. A bootstrap's `COPY` is exempt from the statement
/// limit (a huge table may take longer to stream) but not from the lock one.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a sync session may sit idle inside a transaction before the
/// server ends it (`idle_in_transaction_session_timeout`): a node that
/// vanished mid-push never holds its batch's row locks for longer.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to the server's own limits for the node's deadline on one round
/// trip: the server gives up first and says why; the node's deadline fires
/// only when the server cannot answer at all (a stalled path).
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// The bounds of a sync's server work. Every round trip of a run (connect,
/// each statement, each pushed batch, each pulled batch, each chunk of a
/// bootstrap's copy) has a deadline; a run past one is abandoned, its
/// connection dropped, and the next run starts on a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// The sessions' `statement_timeout` (not applied to a bootstrap's COPY).
    pub statement: Duration,
    /// The sessions' `lock_timeout`.
    pub lock: Duration,
    /// The sessions' `idle_in_transaction_session_timeout`.
    pub idle_in_transaction: Duration,
    /// The node's own deadline on one round trip.
    pub round_trip: Duration,
}

impl ServerTimeouts {
    /// The given server limits, with the round-trip deadline derived from
    /// them (statement + lock + 5 s).
    pub fn new(statement: Duration, lock: Duration) -> ServerTimeouts {
        ServerTimeouts {
            statement,
            lock,
            idle_in_transaction: IDLE_IN_TRANSACTION_TIMEOUT,
            round_trip: statement + lock + DEADLINE_MARGIN,
        }
    }
}

impl ServerTimeouts {
    /// The bounds configured (`OUTPOST_STATEMENT_TIMEOUT`, `…_LOCK_…`,
    /// `…_IDLE_IN_TRANSACTION_…`), with the round-trip deadline derived.
    pub fn from_config(t: &outpost_core::config::Timeouts) -> ServerTimeouts {
        ServerTimeouts {
            idle_in_transaction: t.idle_in_transaction,
            ..ServerTimeouts::new(t.statement, t.lock)
        }
    }
}

impl Default for ServerTimeouts {
    fn default() -> ServerTimeouts {
        ServerTimeouts::new(SERVER_TIMEOUT, SERVER_TIMEOUT)
    }
}
/// Changes older than this are pruned even if a node has not seen them (that
/// node then bootstraps again).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Progress of a long step, for a progress bar.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Copying a table during a bootstrap.
    Bootstrap {
        /// The table.
        table: String,
        /// Rows copied so far.
        rows: u64,
        /// Rows in the snapshot.
        total: u64,
        /// Copy rate so far.
        rows_per_sec: f64,
    },
    /// Pushing local changes.
    Push {
        /// Rows sent so far.
        rows: u64,
    },
    /// Pulling server changes.
    Pull {
        /// Changes applied so far.
        changes: u64,
    },
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What a sync run does.
#[derive(Clone)]
pub struct SyncOptions {
    /// Push, pull or both.
    pub direction: Direction,
    /// Only these models (all when `None`).
    pub models: Option<Vec<String>>,
    /// What started the run (for `SyncLog`).
    pub trigger: Trigger,
    /// Progress reports.
    pub progress: Option<ProgressFn>,
}

impl SyncOptions {
    /// A run of every model.
    pub fn new(direction: Direction, trigger: Trigger) -> SyncOptions {
        SyncOptions {
            direction,
            models: None,
            trigger,
            progress: None,
        }
    }
}

/// The result of a sync run: the body of the seed's
/// `POST /api/database/status` response, plus what outpost adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// No model failed.
    pub success: bool,
    /// Counts per model.
    pub results: BTreeMap<String, ModelStats>,
    /// The error per model that failed.
    pub errors: BTreeMap<String, String>,
    /// When the run ended.
    pub timestamp: String,
    /// The direction.
    pub direction: Direction,
    /// Whether the run (re)bootstrapped the replica.
    pub bootstrapped: bool,
    /// Committed server changes are held back by an open transaction (the
    /// pull horizon); another pull shortly will bring them.
    pub held_back: bool,
    /// Why the run failed, when it did.
    #[serde(skip)]
    pub error_kind: Option<ErrorKind>,
}

/// The node's sync state, from the replica alone (works offline).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    /// The node's id.
    pub node_id: Uuid,
    /// `EMPTY`, `BOOTSTRAPPING` or `READY`.
    pub state: ReplicaState,
    /// The pull cursor.
    pub cursor: Cursor,
    /// Rows with local changes not yet pushed.
    pub pending: i64,
    /// Rows in conflict.
    pub conflicts: i64,
    /// Rows the server refused.
    pub failed: i64,
    /// Per model: `{pending, conflicts, failed}`.
    pub models: BTreeMap<String, BTreeMap<String, i64>>,
    /// The newest `SyncLog` row: the last attempt, failed or not.
    pub last_sync: Option<LogEntry>,
    /// The newest `SyncLog` row that succeeded.
    pub last_success: Option<LogEntry>,
}

struct Inner {
    replica: Arc<Mutex<Replica>>,
    /// The replica's schema snapshot, reloaded when another process changes
    /// it (`Engine::refresh`).
    schema: std::sync::RwLock<Arc<Schema>>,
    /// The node id, replaced when a copied or restored replica becomes a
    /// new node (`outpost_local::identity`).
    node_id: std::sync::RwLock<Uuid>,
    config: Config,
    policies: Mutex<Policies>,
    running: tokio::sync::Mutex<()>,
    retention: Mutex<Duration>,
    /// The bounds of sync sessions.
    timeouts: Mutex<ServerTimeouts>,
    /// Bumped to abandon the run under way (the monitor saw the server
    /// stop answering).
    abandon: tokio::sync::watch::Sender<u64>,
    push_batch: std::sync::atomic::AtomicUsize,
    /// Changes per pulled batch ([`PULL_BATCH`]; tests set it smaller).
    pull_batch: std::sync::atomic::AtomicI64,
    faults: Faults,
    metrics: SyncMetrics,
    /// The server connection of the last successful run, kept for the next
    /// one: a notification-driven pull then costs no connection set-up
    /// (B5). Dropped after any failed run, so a broken connection is never
    /// reused. Its prepared pull statements are kept with it.
    client: Mutex<Option<SyncLink>>,
}

/// What a run has done so far, carried through its phases.
#[derive(Debug, Default)]
struct RunState {
    /// Counts per model.
    stats: Stats,
    /// The run (re)bootstrapped the replica.
    bootstrapped: bool,
    /// The pull found committed changes held back by an open transaction.
    held_back: bool,
    /// Tables whose definition on the server no longer matches the
    /// snapshot, with the server's refusal: skipped by this run (their
    /// local edits stay queued), the other tables synced.
    changed: BTreeMap<String, String>,
}

/// The sync engine of one node. Cheap to clone; clones share the replica,
/// and runs never overlap (a second run waits for the first).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Runs `f` with the replica's lock held.
fn locked<T>(
    replica: &std::sync::Mutex<Replica>,
    f: impl FnOnce(&mut Replica) -> Result<T, outpost_local::LocalError>,
) -> Result<T, EngineError> {
    let mut guard = replica
        .lock()
        .map_err(|_| EngineError::Internal("the replica lock was poisoned".into()))?;
    f(&mut guard).map_err(EngineError::from)
}

impl Engine {
    /// An engine over an open replica.
    pub fn new(mut replica: Replica, config: Config) -> Engine {
        let timeouts = ServerTimeouts::from_config(&config.timeouts);
        // A replica opened with another user's token (a shared device)
        // becomes that user's node before the user edits anything, so
        // edits made from now on are theirs (`Replica::switch_principal`).
        if let Some(sub) = config.gateway.as_ref().and_then(|g| g.subject()) {
            let old = replica.node_id();
            match replica.switch_principal(&sub) {
                Ok(Some(new)) => tracing::warn!(
                    old = %old,
                    new = %new,
                    "this replica was registered by another principal than this token's: it has no \
                     local edits, so it continues as a new node under this token, and tables whose \
                     scope differs are copied again at the next sync"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "checking the replica's principal failed; the next sync checks again")
                }
            }
        }
        Engine {
            inner: Arc::new(Inner {
                schema: std::sync::RwLock::new(Arc::new(replica.schema().clone())),
                node_id: std::sync::RwLock::new(replica.node_id()),
                replica: Arc::new(Mutex::new(replica)),
                config,
                policies: Mutex::new(Policies::default()),
                running: tokio::sync::Mutex::new(()),
                retention: Mutex::new(DEFAULT_RETENTION),
                timeouts: Mutex::new(timeouts),
                abandon: tokio::sync::watch::channel(0).0,
                push_batch: std::sync::atomic::AtomicUsize::new(PUSH_BATCH),
                pull_batch: std::sync::atomic::AtomicI64::new(PULL_BATCH),
                faults: Faults::from_env(),
                metrics: SyncMetrics::default(),
                client: Mutex::new(None),
            }),
        }
    }

    /// The node's id (a copied or restored replica becomes a new node:
    /// `docs/protocol.md`, "Node identity").
    pub fn node_id(&self) -> Uuid {
        match self.inner.node_id.read() {
            Ok(id) => *id,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// The replica's schema, as last loaded: another process changing the
    /// replica's snapshot (an `outpost setup`) is noticed at the start of
    /// the next run or model write ([`Engine::refresh`]).
    pub fn schema(&self) -> Arc<Schema> {
        match self.inner.schema.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads what another process may have changed in the replica file:
    /// its schema snapshot (an `outpost setup` beside this node, a
    /// migration) and its node id. Returns whether the schema changed. Run
    /// at the start of every sync run and before a model write that found
    /// the snapshot changed; a write transaction of the engine never uses a
    /// stale snapshot (it checks first and fails with
    /// `LocalError::SchemaChanged`).
    pub async fn refresh(&self) -> Result<bool, EngineError> {
        let (changed, node, schema) = self
            .with_replica(|r| {
                let changed = r.refresh()?;
                let schema = changed.schema.then(|| r.schema().clone());
                Ok((changed, r.node_id(), schema))
            })
            .await?;
        if changed.node_id {
            self.set_node_id(node);
        }
        if let Some(schema) = schema {
            if let Ok(mut slot) = self.inner.schema.write() {
                *slot = Arc::new(schema);
            }
            tracing::warn!(
                "the replica's schema snapshot was changed by another process; reloaded"
            );
        }
        Ok(changed.schema)
    }

    pub(crate) fn set_node_id(&self, id: Uuid) {
        if let Ok(mut slot) = self.inner.node_id.write() {
            *slot = id;
        }
    }

    /// Sets a model's conflict policy.
    pub fn set_policy(&self, model: &str, policy: Policy) -> Result<(), EngineError> {
        self.check_model(model)?;
        if let Ok(mut p) = self.inner.policies.lock() {
            p.0.insert(model.to_string(), policy);
        }
        Ok(())
    }

    /// Sets how long the server keeps changes a node has not seen.
    pub fn set_retention(&self, retention: Duration) {
        if let Ok(mut r) = self.inner.retention.lock() {
            *r = retention;
        }
    }

    /// Sets the server-side `statement_timeout` and `lock_timeout` of sync
    /// sessions (default 30 s each, `SERVER_TIMEOUT`).
    pub fn set_server_timeouts(&self, statement: Duration, lock: Duration) {
        self.set_timeouts(ServerTimeouts::new(statement, lock));
    }

    /// Sets every bound of sync sessions ([`ServerTimeouts`]).
    pub fn set_timeouts(&self, timeouts: ServerTimeouts) {
        if let Ok(mut t) = self.inner.timeouts.lock() {
            *t = timeouts;
        }
        // The limits are set when a session opens: the kept connection
        // still has the old ones, so the next run opens a new one.
        if let Ok(mut slot) = self.inner.client.lock() {
            *slot = None;
        }
    }

    /// The bounds of sync sessions.
    pub fn timeouts(&self) -> ServerTimeouts {
        self.inner.timeouts.lock().map(|t| *t).unwrap_or_default()
    }

    /// Abandons the run under way, if any: it ends at once with an
    /// `Unreachable` error and its server connection is dropped (a sync
    /// commits or rolls back as a whole on both sides, so nothing is left
    /// half-applied). The monitor calls it when its probe fails.
    pub fn abandon_running(&self) {
        self.inner.abandon.send_modify(|n| *n += 1);
    }

    /// Sets the rows per pushed server transaction (tests: several batches
    /// without thousands of rows).
    ///
    /// Hidden: a test hook; the batch size is not a tuning knob (see
    /// docs/performance.md). Not behind the `faults` feature because the
    /// engine's own integration tests use it without fault points.
    #[doc(hidden)]
    pub fn set_push_batch(&self, rows: usize) {
        self.inner
            .push_batch
            .store(rows.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the changes per pulled batch (tests: many batches, each reusing
    /// the statements the first one prepared, without thousands of rows).
    ///
    /// Hidden: a test hook, as [`Engine::set_push_batch`].
    #[doc(hidden)]
    pub fn set_pull_batch(&self, changes: i64) {
        self.inner
            .pull_batch
            .store(changes.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Arms a fault point to fail once (tests; only with the `faults`
    /// feature).
    #[cfg(feature = "faults")]
    pub fn arm_fault(&self, point: crate::faults::FaultPoint) {
        self.inner.faults.arm(point);
    }

    pub(crate) fn check_model(&self, model: &str) -> Result<(), EngineError> {
        match self.schema().table(model) {
            Some(_) => Ok(()),
            None => Err(EngineError::UnknownModel(model.to_string())),
        }
    }

    fn policies(&self) -> Policies {
        self.inner
            .policies
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Runs `f` on the replica on a blocking thread.
    ///
    /// Hidden: a hook for tests and the benchmark harness, which read and
    /// write the replica's tables directly as another program would. An
    /// application uses the model service and the review operations.
    #[doc(hidden)]
    pub async fn with_replica<T, F>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Replica) -> Result<T, outpost_local::LocalError> + Send + 'static,
    {
        let replica = self.inner.replica.clone();
        tokio::task::spawn_blocking(move || locked(&replica, f))
            .await
            .map_err(|e| EngineError::Internal(format!("a replica task failed: {e}")))?
    }

    /// Runs `f` on the replica on the calling thread, where the runtime
    /// lets a task block (`block_in_place` on a multi-threaded runtime),
    /// else as [`Engine::with_replica`] does. For reads with large results:
    /// built on a blocking thread, they are allocated in that thread's
    /// allocator arena, which gives the memory back once the caller has
    /// freed it, and faults it in again page by page on the next read
    /// (B8: twice the time of a 10,000-record `findMany`).
    pub(crate) async fn with_replica_here<T, F>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Replica) -> Result<T, outpost_local::LocalError> + Send + 'static,
    {
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_threaded {
            return self.with_replica(f).await;
        }
        tokio::task::block_in_place(move || locked(&self.inner.replica, f))
    }

    /// The way to the server for a run: a gateway client when the node is
    /// configured with one, else a direct connection.
    async fn connect(&self) -> Result<SyncLink, EngineError> {
        if let Some(target) = &self.inner.config.gateway {
            let timeout = outpost_remote::CONNECT_TIMEOUT.min(self.timeouts().round_trip);
            let t = self.timeouts();
            return Ok(SyncLink::Gateway(
                outpost_remote::gateway::GatewayConnection::new(target, timeout)?
                    .with_limits(t.statement, t.lock),
            ));
        }
        Ok(SyncLink::Direct(self.connect_direct().await?))
    }

    /// A direct connection to the server (verify needs one).
    async fn connect_direct(&self) -> Result<SyncConnection, EngineError> {
        let url = self
            .inner
            .config
            .require_database_url("syncing needs the PostgreSQL server")
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let t = self.timeouts();
        // Every statement of the session is bounded (pull, registry,
        // retention); a push sets its own per transaction, a bootstrap lifts
        // the statement limit for its COPY. A session idle in a transaction
        // (its node gone silent) is ended by the server.
        let timeout = outpost_remote::CONNECT_TIMEOUT.min(t.round_trip);
        Ok(SyncConnection::connect(url, timeout, &session_settings_sql(&t)).await?)
    }

    /// Runs one server round trip under the run's deadline
    /// ([`ServerTimeouts::round_trip`]); past it the caller's run fails as
    /// unreachable and drops its connection.
    async fn bounded<T, E>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, EngineError>
    where
        EngineError: From<E>,
    {
        let deadline = self.timeouts().round_trip;
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r.map_err(EngineError::from),
            Err(_) => Err(stalled(what, deadline)),
        }
    }

    /// The node's sync state from the replica alone.
    pub async fn status(&self) -> Result<EngineStatus, EngineError> {
        let node_id = self.node_id();
        self.with_replica(move |r| {
            let (cursor, state) = r.cursor()?;
            let counts = r.status_counts()?;
            let mut models: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            let (mut pending, mut conflicts, mut failed) = (0, 0, 0);
            for ((table, status), n) in counts {
                let key = match status.as_str() {
                    "PENDING" => {
                        pending += n;
                        "pending"
                    }
                    "CONFLICT" => {
                        conflicts += n;
                        "conflicts"
                    }
                    _ => {
                        failed += n;
                        "failed"
                    }
                };
                models.entry(table).or_default().insert(key.into(), n);
            }
            let last_sync = r.sync_log(None, 1, 0)?.into_iter().next();
            let last_success = r.last_successful_sync()?;
            Ok(EngineStatus {
                node_id,
                state,
                cursor,
                pending,
                conflicts,
                failed,
                models,
                last_sync,
                last_success,
            })
        })
        .await
    }

    /// How long the oldest open server transaction has held the pull horizon
    /// back, if any is open.
    pub async fn horizon_age(&self) -> Result<Option<Duration>, EngineError> {
        let conn = self.connect().await?;
        self.bounded("reading the pull horizon", conn.horizon_age())
            .await
    }

    /// Runs one sync: bootstrap if needed, then push and/or pull. Errors that
    /// stop the run are reported per model in the [`SyncReport`] (and in
    /// `SyncLog`); only a bad request (unknown model) is an `Err`.
    #[tracing::instrument(skip_all, fields(direction = %options.direction, trigger = options.trigger.as_str()))]
    pub async fn sync(&self, options: SyncOptions) -> Result<SyncReport, EngineError> {
        if let Some(models) = &options.models {
            for m in models {
                self.check_model(m)?;
            }
        }
        let _running = self.inner.running.lock().await;
        // Another process may have changed the replica's schema (an
        // `outpost setup`): never run with the old one.
        if let Err(e) = self.refresh().await {
            // The run's own write transactions check the snapshot again.
            tracing::warn!(error = %e, "could not check the replica's schema snapshot");
        }
        let models = self.run_models(&options);
        let direction = options.direction.as_str();
        let trigger = options.trigger.as_str();
        let log_models = models.clone();
        // The run lock is held from before the log rows are written until
        // after they are closed: while it is held, no process opening the
        // replica takes them for a killed run's (`Replica::run_lock`).
        let (_run_lock, log_ids) = self
            .with_replica(move |r| {
                let lock = r.run_lock();
                let ids = log_models
                    .iter()
                    .map(|m| r.log_start(m, direction, trigger).map(|id| (m.clone(), id)))
                    .collect::<Result<Vec<(String, i64)>, _>>()?;
                Ok((lock, ids))
            })
            .await?;
        let mut run = RunState::default();
        let started = Instant::now();
        self.inner.metrics.set_progress(|p| {
            *p = Some(SyncProgress {
                direction: direction.to_string(),
                trigger: trigger.to_string(),
                phase: "connecting".into(),
                rows: 0,
                table: None,
                started_at: outpost_core::types::timestamptz_from_chrono(chrono::Utc::now()),
            })
        });
        // Only a request made during this run abandons it.
        let mut abandon = self.inner.abandon.subscribe();
        abandon.borrow_and_update();
        let outcome = tokio::select! {
            r = self.run(&options, &mut run) => r,
            _ = abandon.changed() => Err(EngineError::Unreachable(
                "the sync was abandoned: the server stopped answering the node's probe \
                 (the next sync starts on a new connection)"
                    .into(),
            )),
        };
        let RunState {
            stats,
            bootstrapped,
            held_back,
            changed,
        } = run;
        // A table the server changed fails alone (`changed`): its model's
        // log row says why, the others succeed.
        let error_kind = outcome.as_ref().err().map(EngineError::kind);
        let error = outcome.err().map(|e| e.to_string());
        self.inner.metrics.finish_run(
            error.is_none(),
            started.elapsed(),
            stats.values().map(|s| s.conflicts).sum(),
            stats.values().map(|s| s.records_failed).sum(),
        );
        self.inner.metrics.set_progress(|p| *p = None);
        let mut report = SyncReport {
            success: error.is_none() && changed.keys().all(|t| !models.contains(t)),
            results: BTreeMap::new(),
            errors: BTreeMap::new(),
            timestamp: outpost_core::types::timestamptz_from_chrono(chrono::Utc::now()),
            direction: options.direction,
            bootstrapped,
            held_back,
            error_kind,
        };
        for m in &models {
            report
                .results
                .insert(m.clone(), stats.get(m).copied().unwrap_or_default());
            if let Some(e) = error.as_ref().or(changed.get(m)) {
                report.errors.insert(m.clone(), e.clone());
            }
        }
        let finished = report.results.clone();
        let errors = report.errors.clone();
        // A notification pull that moved nothing is the echo of a push (the
        // server notifies about the push's own writes): not a run worth a
        // log line next to the push itself.
        let quiet = options.trigger == Trigger::Notify && error.is_none();
        self.with_replica(move |r| {
            for (m, id) in &log_ids {
                let stats = finished.get(m).copied().unwrap_or_default();
                if quiet && stats == ModelStats::default() && !errors.contains_key(m) {
                    r.log_discard(*id)?;
                } else {
                    r.log_finish(*id, stats, errors.get(m).map(String::as_str))?;
                }
            }
            Ok(())
        })
        .await?;
        if let Some(e) = &error {
            tracing::warn!(error = %e, "sync failed");
        }
        Ok(report)
    }
}

/// The error of a round trip past its deadline.
fn stalled(what: &str, deadline: Duration) -> EngineError {
    EngineError::Unreachable(format!(
        "{what}: no answer from the server within {} ms; the connection was dropped",
        deadline.as_millis()
    ))
}

/// The settings of a sync session ([`ServerTimeouts`]).
fn session_settings_sql(t: &ServerTimeouts) -> String {
    format!(
        "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {};",
        t.statement.as_millis(),
        t.lock.as_millis(),
        t.idle_in_transaction.as_millis()
    )
}

impl Engine {
    /// Publishes progress to the run's callback and to [`Engine::progress`].
    fn report(&self, options: &SyncOptions, progress: Progress) {
        let (phase, rows, table) = match &progress {
            Progress::Bootstrap { table, rows, .. } => ("bootstrap", *rows, Some(table.clone())),
            Progress::Push { rows } => ("push", *rows, None),
            Progress::Pull { changes } => ("pull", *changes, None),
        };
        self.inner.metrics.set_progress(|p| {
            if let Some(p) = p {
                p.phase = phase.into();
                p.rows = rows;
                p.table = table;
            }
        });
        if let Some(f) = &options.progress {
            f(progress);
        }
    }

    /// The node's sync counters (totals since it opened).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// The run under way, if one is: direction, phase, rows so far.
    pub fn progress(&self) -> Option<SyncProgress> {
        self.inner.metrics.progress()
    }

    /// How long ago the pull cursor last moved (a full pull or a
    /// bootstrap): the replication lag as far as this node can tell. `None`
    /// before the first pull.
    pub async fn cursor_age(&self) -> Result<Option<Duration>, EngineError> {
        let at = self.with_replica(|r| r.cursor_updated_at()).await?;
        Ok(at
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .unwrap_or_default()
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_sessions_are_bounded_on_the_server() {
        let t = ServerTimeouts::new(Duration::from_secs(30), Duration::from_millis(1500));
        assert_eq!(t.round_trip, Duration::from_millis(36_500));
        assert_eq!(t.idle_in_transaction, IDLE_IN_TRANSACTION_TIMEOUT);
        assert_eq!(
            session_settings_sql(&t),
            "SET statement_timeout = 30000; SET lock_timeout = 1500; \
             SET idle_in_transaction_session_timeout = 10000;"
        );
    }
}
