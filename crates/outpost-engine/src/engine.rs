//! The [`Engine`]: one node's sync runs, never two at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use outpost_core::config::Config;
use outpost_core::conflict::Policy;
use outpost_core::schema::Schema;
use outpost_core::sync::{Cursor, Direction, PushOutcome, Trigger};
use outpost_core::types::Value;
use outpost_local::sync::{ModelStats, Policies, ReplicaState, Stats};
use outpost_local::{LogEntry, Replica};
use outpost_remote::feed;
use outpost_remote::session::SyncConnection;
use outpost_remote::tokio_postgres::Client;
use serde::Serialize;
use uuid::Uuid;

use crate::error::{EngineError, ErrorKind};
use crate::faults::{FaultPoint, Faults};
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
    /// The newest `SyncLog` row.
    pub last_sync: Option<LogEntry>,
}

struct Inner {
    replica: Arc<Mutex<Replica>>,
    schema: Schema,
    node_id: Uuid,
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
    client: Mutex<Option<SyncConnection>>,
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
    pub fn new(replica: Replica, config: Config) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                schema: replica.schema().clone(),
                node_id: replica.node_id(),
                replica: Arc::new(Mutex::new(replica)),
                config,
                policies: Mutex::new(Policies::default()),
                running: tokio::sync::Mutex::new(()),
                retention: Mutex::new(DEFAULT_RETENTION),
                timeouts: Mutex::new(ServerTimeouts::default()),
                abandon: tokio::sync::watch::channel(0).0,
                push_batch: std::sync::atomic::AtomicUsize::new(PUSH_BATCH),
                pull_batch: std::sync::atomic::AtomicI64::new(PULL_BATCH),
                faults: Faults::from_env(),
                metrics: SyncMetrics::default(),
                client: Mutex::new(None),
            }),
        }
    }

    /// The node's id.
    pub fn node_id(&self) -> Uuid {
        self.inner.node_id
    }

    /// The replica's schema.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
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
    #[doc(hidden)]
    pub fn set_push_batch(&self, rows: usize) {
        self.inner
            .push_batch
            .store(rows.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the changes per pulled batch (tests: many batches, each reusing
    /// the statements the first one prepared, without thousands of rows).
    #[doc(hidden)]
    pub fn set_pull_batch(&self, changes: i64) {
        self.inner
            .pull_batch
            .store(changes.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Arms a fault point to fail once (tests; only with the `faults`
    /// feature).
    #[cfg(feature = "faults")]
    pub fn arm_fault(&self, point: FaultPoint) {
        self.inner.faults.arm(point);
    }

    pub(crate) fn check_model(&self, model: &str) -> Result<(), EngineError> {
        match self.inner.schema.table(model) {
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

    async fn connect(&self) -> Result<SyncConnection, EngineError> {
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
        let node_id = self.inner.node_id;
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
            Ok(EngineStatus {
                node_id,
                state,
                cursor,
                pending,
                conflicts,
                failed,
                models,
                last_sync,
            })
        })
        .await
    }

    /// How long the oldest open server transaction has held the pull horizon
    /// back, if any is open.
    pub async fn horizon_age(&self) -> Result<Option<Duration>, EngineError> {
        let conn = self.connect().await?;
        self.bounded("reading the pull horizon", feed::horizon_age(conn.client()))
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
        let models: Vec<String> = match &options.models {
            Some(m) => m.clone(),
            None => self
                .inner
                .schema
                .tables
                .iter()
                .map(|t| t.name.clone())
                .collect(),
        };
        let direction = options.direction.as_str();
        let trigger = options.trigger.as_str();
        let log_models = models.clone();
        let log_ids: Vec<(String, i64)> = self
            .with_replica(move |r| {
                log_models
                    .iter()
                    .map(|m| r.log_start(m, direction, trigger).map(|id| (m.clone(), id)))
                    .collect()
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
        } = run;
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
            success: error.is_none(),
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
            if let Some(e) = &error {
                report.errors.insert(m.clone(), e.clone());
            }
        }
        let finished = report.results.clone();
        let err = error.clone();
        self.with_replica(move |r| {
            for (m, id) in &log_ids {
                r.log_finish(
                    *id,
                    finished.get(m).copied().unwrap_or_default(),
                    err.as_deref(),
                )?;
            }
            Ok(())
        })
        .await?;
        if let Some(e) = &error {
            tracing::warn!(error = %e, "sync failed");
        }
        Ok(report)
    }

    /// Phase 1, connect: the kept connection when it passes its check, else
    /// a new one (the node registered on it); then the phases on it, and the
    /// connection kept for the next run only when this one succeeded.
    async fn run(&self, options: &SyncOptions, run: &mut RunState) -> Result<(), EngineError> {
        let kept = self
            .inner
            .client
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .filter(SyncConnection::is_open);
        // A kept connection is checked (alive, tracking schema there,
        // retention mark) in one round trip; anything unexpected and a new
        // connection checks step by step, saying what is wrong.
        let probed = match kept {
            Some(k) => match self
                .bounded("checking the kept connection", feed::probe(k.client()))
                .await
            {
                Ok((Some(version), pruned)) => Some((k, version, pruned)),
                _ => None,
            },
            None => None,
        };
        let (mut kept, version, pruned_through, reused) = match probed {
            Some((k, version, pruned)) => (k, Some(version), Some(pruned), true),
            None => {
                let client = self.connect().await?;
                let version = self
                    .bounded(
                        "reading the tracking schema's version",
                        outpost_remote::installed_version(client.client()),
                    )
                    .await?;
                (client, version, None, false)
            }
        };
        if version.is_none() {
            return Err(EngineError::Config(
                "the server has no outpost tracking schema: run `outpost server install` (or `outpost setup`) first".into(),
            ));
        }
        let node = self.inner.node_id;
        if !reused {
            // Registered by the run that opened this connection.
            let name = format!("node {node}");
            self.bounded(
                "registering the node",
                feed::register_node(kept.client(), node, &name),
            )
            .await?;
        }
        let (client, statements) = kept.parts();
        self.run_on(client, statements, pruned_through, options, run)
            .await?;
        if let Ok(mut slot) = self.inner.client.lock() {
            *slot = Some(kept);
        }
        Ok(())
    }

    /// The phases on a checked connection: 2 push (a ready replica's local
    /// writes go first), 3 bootstrap when needed (then push again), 4 pull.
    /// `pruned_through` is the retention mark when the check read it
    /// already.
    async fn run_on(
        &self,
        client: &mut Client,
        statements: &mut feed::PullStatements,
        pruned_through: Option<Option<Cursor>>,
        options: &SyncOptions,
        run: &mut RunState,
    ) -> Result<(), EngineError> {
        let (cursor, state) = self.with_replica(|r| r.cursor()).await?;
        let rebootstrap_tables = self.with_replica(|r| r.rebootstrap_tables()).await?;
        let behind = state == ReplicaState::Ready
            && match pruned_through {
                Some(mark) => feed::FeedPosition::at(cursor, mark).must_rebootstrap,
                None => {
                    self.bounded(
                        "reading the feed position",
                        feed::feed_position(client, cursor),
                    )
                    .await?
                    .must_rebootstrap
                }
            };
        if state == ReplicaState::Ready && options.direction.pushes() {
            // Push before any re-bootstrap: local writes go first.
            self.push(client, options, &mut run.stats).await?;
        }
        if state != ReplicaState::Ready || behind || !rebootstrap_tables.is_empty() {
            if behind {
                tracing::warn!(%cursor, "the node fell behind the server's retention window; bootstrapping again");
            }
            self.bootstrap(client, options, state == ReplicaState::Bootstrapping)
                .await?;
            run.bootstrapped = true;
            if options.direction.pushes() {
                self.push(client, options, &mut run.stats).await?;
            }
        }
        if options.direction.pulls() {
            run.held_back = self
                .pull(client, statements, options, &mut run.stats)
                .await?;
        }
        Ok(())
    }

    async fn bootstrap(
        &self,
        client: &mut Client,
        options: &SyncOptions,
        resuming: bool,
    ) -> Result<(), EngineError> {
        let mut done = self.with_replica(|r| r.bootstrap_begin()).await?;
        // Tables finished by an interrupted attempt are kept only while the
        // changes after their snapshot are still in the log: the cursor
        // starts from the oldest snapshot, and a pruned change would never
        // reach them. Otherwise copy everything again.
        if let Some(oldest) = done.values().min().copied()
            && self
                .bounded(
                    "reading the feed position",
                    feed::feed_position(client, oldest),
                )
                .await?
                .must_rebootstrap
        {
            tracing::warn!(%oldest, "changes after the interrupted bootstrap's snapshot were pruned; copying every table again");
            done.clear();
        }
        if resuming {
            tracing::info!(
                tables_done = done.len(),
                "resuming an interrupted bootstrap"
            );
        }
        let schema = self.inner.schema.clone();
        let snapshot = self
            .bounded(
                "starting the bootstrap snapshot",
                feed::Bootstrap::begin(client),
            )
            .await?;
        for table in &schema.tables {
            if done.contains_key(&table.name) {
                continue;
            }
            let total = self
                .bounded("counting a table's rows", snapshot.count(table))
                .await?
                .max(0) as u64;
            let name = table.name.clone();
            self.with_replica(move |r| r.bootstrap_clear(&name)).await?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<Vec<Value>>, Option<Cursor>)>(2);
            let replica = self.inner.replica.clone();
            let name = table.name.clone();
            let writer = tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
                let mut guard = replica
                    .lock()
                    .map_err(|_| EngineError::Internal("the replica lock was poisoned".into()))?;
                while let Some((rows, done)) = rx.blocking_recv() {
                    guard.bootstrap_insert(&name, &rows, done)?;
                }
                Ok(())
            });
            let started = Instant::now();
            let mut copied: u64 = 0;
            let mut chunk = Vec::with_capacity(BOOTSTRAP_CHUNK);
            let stream = self
                .bounded(
                    "starting a table's copy",
                    snapshot.rows(&schema.pg_schema, table),
                )
                .await?;
            let deadline = self.timeouts().round_trip;
            futures_util::pin_mut!(stream);
            let mut first = true;
            // One deadline per row would cost a timer each: the deadline
            // covers a chunk instead.
            let mut chunk_deadline = tokio::time::Instant::now() + deadline;
            loop {
                let row = match tokio::time::timeout_at(chunk_deadline, stream.next()).await {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(_) => return Err(stalled("copying a table", deadline)),
                };
                chunk.push(row?);
                if chunk.len() == BOOTSTRAP_CHUNK {
                    copied += chunk.len() as u64;
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(BOOTSTRAP_CHUNK));
                    if tx.send((full, None)).await.is_err() {
                        break;
                    }
                    chunk_deadline = tokio::time::Instant::now() + deadline;
                    if first {
                        first = false;
                        self.inner.faults.hit(FaultPoint::BootstrapMidTable)?;
                    }
                    self.report(
                        options,
                        Progress::Bootstrap {
                            table: table.name.clone(),
                            rows: copied,
                            total,
                            rows_per_sec: copied as f64 / started.elapsed().as_secs_f64().max(1e-9),
                        },
                    );
                }
            }
            copied += chunk.len() as u64;
            let _ = tx.send((chunk, Some(snapshot.cursor))).await;
            drop(tx);
            writer.await.map_err(|e| {
                EngineError::Internal(format!("the bootstrap writer failed: {e}"))
            })??;
            SyncMetrics::add(&self.inner.metrics.rows_bootstrapped, copied);
            self.report(
                options,
                Progress::Bootstrap {
                    table: table.name.clone(),
                    rows: copied,
                    total,
                    rows_per_sec: copied as f64 / started.elapsed().as_secs_f64().max(1e-9),
                },
            );
            tracing::info!(table = %table.name, rows = copied, secs = started.elapsed().as_secs_f64(), "table copied");
        }
        self.bounded("ending the bootstrap snapshot", snapshot.finish())
            .await?;
        let cursor = self.with_replica(|r| r.bootstrap_finish()).await?;
        self.bounded(
            "recording the cursor",
            feed::record_cursor(client, self.inner.node_id, cursor),
        )
        .await?;
        Ok(())
    }

    async fn push(
        &self,
        client: &mut Client,
        options: &SyncOptions,
        stats: &mut Stats,
    ) -> Result<(), EngineError> {
        let policies = self.policies();
        let mut sent: u64 = 0;
        // Rounds in a row in which no row left the queue (every row was
        // only queued again, merged by a conflict policy).
        let mut requeued_only = 0;
        // A backstop, as before: a run pushes at most this many batches (an
        // application writing as fast as the push drains keeps the rest
        // for the next run).
        for _round in 0..PUSH_ROUNDS * 100 {
            let models = options.models.clone();
            let planned = Instant::now();
            let batch = self
                .inner
                .push_batch
                .load(std::sync::atomic::Ordering::Relaxed);
            let rows = self
                .with_replica(move |r| r.pending_push(models.as_deref(), batch))
                .await?;
            let plan_time = planned.elapsed();
            if rows.is_empty() {
                break;
            }
            let (cursor, _) = self.with_replica(|r| r.cursor()).await?;
            self.inner.faults.hit(FaultPoint::PushBeforeSend)?;
            let sending = Instant::now();
            let outcomes = self
                .bounded(
                    "pushing a batch",
                    feed::push(
                        client,
                        &self.inner.schema,
                        self.inner.node_id,
                        cursor,
                        &rows,
                        self.timeouts().statement,
                    ),
                )
                .await?;
            // The server committed; a crash or a lost reply here must not
            // make the retry apply anything twice.
            self.inner.faults.hit(FaultPoint::PushAfterCommit)?;
            sent += rows.len() as u64;
            let landed = outcomes
                .iter()
                .filter(|o| {
                    matches!(
                        o,
                        PushOutcome::Applied { .. } | PushOutcome::AlreadyApplied { .. }
                    )
                })
                .count();
            SyncMetrics::add(&self.inner.metrics.rows_pushed, landed as u64);
            self.report(options, Progress::Push { rows: sent });
            let failed_or_conflict = outcomes
                .iter()
                .filter(|o| matches!(o, PushOutcome::Conflict(_) | PushOutcome::Failed { .. }))
                .count();
            let send_time = sending.elapsed();
            let p = policies.clone();
            let acking = Instant::now();
            let acked = self
                .with_replica(move |r| r.ack_push(&rows, &outcomes, &p))
                .await?;
            // A row moved when it left the queue: landed, refused, or parked
            // as a conflict. A merged row goes out in the next round; when
            // rounds only queue rows again, the run stops after
            // PUSH_ROUNDS of them (the next run tries again).
            let moved: u64 = acked
                .values()
                .map(|s| s.records_succeeded + s.records_failed + s.conflicts)
                .sum();
            merge(stats, acked);
            if moved == 0 {
                requeued_only += 1;
                if requeued_only >= PUSH_ROUNDS {
                    break;
                }
            } else {
                requeued_only = 0;
            }
            tracing::debug!(
                rows = sent,
                failed_or_conflict,
                plan_ms = plan_time.as_millis() as u64,
                send_ms = send_time.as_millis() as u64,
                ack_ms = acking.elapsed().as_millis() as u64,
                "push batch acknowledged"
            );
        }
        Ok(())
    }

    async fn pull(
        &self,
        client: &mut Client,
        statements: &mut feed::PullStatements,
        options: &SyncOptions,
        stats: &mut Stats,
    ) -> Result<bool, EngineError> {
        let policies = self.policies();
        let (mut cursor, _) = self.with_replica(|r| r.cursor()).await?;
        let advance = options.models.is_none();
        let mut applied: u64 = 0;
        let mut held_back = false;
        let schema = &self.inner.schema;
        let models = options.models.as_deref();
        // The read of the next batch overlaps the SQLite apply of this one
        // (the server and the replica work at the same time; B3). The read
        // only needs the cursor the current batch ends at, and batches are
        // still applied strictly in order, each with its own cursor.
        let reading = Instant::now();
        let limit = self
            .inner
            .pull_batch
            .load(std::sync::atomic::Ordering::Relaxed);
        let first = self
            .bounded(
                "pulling a batch",
                feed::pull(client, schema, cursor, limit, models, statements),
            )
            .await?;
        let mut ahead = Some((first, reading.elapsed()));
        while let Some((batch, read_time)) = ahead.take() {
            self.inner.faults.hit(FaultPoint::PullBeforeApply)?;
            let next = batch.cursor;
            let more = batch.more;
            let (changes, rows) = (batch.changes, batch.rows.len());
            held_back = batch.held_back;
            applied += batch.changes as u64;
            SyncMetrics::add(&self.inner.metrics.rows_pulled, batch.changes as u64);
            let p = policies.clone();
            let applying = Instant::now();
            let apply = async {
                let got = self
                    .with_replica(move |r| r.apply_pull(&batch, &p, advance))
                    .await;
                (got, applying.elapsed())
            };
            // Both run to the end (`join`, not `select`): an apply is never
            // abandoned half-way, and its error wins over the read's.
            let ((got, apply_time), read) = if more {
                let read = async {
                    let reading = Instant::now();
                    let batch = self
                        .bounded(
                            "pulling a batch",
                            feed::pull(client, schema, next, limit, models, statements),
                        )
                        .await;
                    batch.map(|b| (b, reading.elapsed()))
                };
                let (applied, read) = tokio::join!(apply, read);
                (applied, Some(read))
            } else {
                (apply.await, None)
            };
            merge(stats, got?);
            tracing::debug!(
                changes,
                rows,
                read_ms = read_time.as_millis() as u64,
                apply_ms = apply_time.as_millis() as u64,
                "pull batch applied"
            );
            self.report(options, Progress::Pull { changes: applied });
            cursor = next;
            ahead = read.transpose()?;
        }
        if advance {
            self.bounded(
                "recording the cursor",
                feed::record_cursor(client, self.inner.node_id, cursor),
            )
            .await?;
        }
        // A notification-driven pull skips the prune: it runs after every
        // server commit (B5), and the other runs (manual, interval,
        // reconnect) prune often enough.
        if advance && options.trigger != Trigger::Notify {
            let retention = self
                .inner
                .retention
                .lock()
                .map(|r| *r)
                .unwrap_or(DEFAULT_RETENTION);
            let pruned = self
                .bounded("pruning the change log", feed::prune(client, retention))
                .await?;
            if pruned > 0 {
                tracing::debug!(pruned, "pruned the change log");
            }
        }
        Ok(held_back)
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

fn merge(into: &mut Stats, from: Stats) {
    for (k, v) in from {
        into.entry(k).or_default().add(v);
    }
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
