//! The node runtime: [`Outpost`], the handle an application holds (the
//! seed's `useDatabase()`): where operations go ([`Mode`]), the connectivity
//! monitor, syncs on reconnect, on the interval and on server notifications,
//! status updates, and shutdown.
//!
//! # The monitor
//!
//! One task, an explicit state machine:
//!
//! * `Offline { attempt }`: try to connect (bounded by `check_timeout`); on
//!   failure wait an exponential backoff with jitter (`backoff_base` ×
//!   2^attempt, capped at `backoff_max`, ±25 %); on success go `Online` and
//!   sync (`reconnect`).
//! * `Online`: hold a `LISTEN outpost_changes` connection; a notification
//!   syncs at once (`notify`; `notify_debounce` can add a window);
//!   every `check_interval` a `SELECT 1` bounded by `check_timeout` checks the
//!   server; every `LOCAL_DATABASE_SYNC_INTERVAL` a sync runs (`interval`).
//!   Any failure goes `Offline`.
//!
//! Syncs never overlap: a request while one runs joins it when the running
//! one covers its direction, and otherwise waits for it and runs next.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_core::config::Config;
use outpost_core::sync::{Direction, Trigger};
use outpost_local::{ConflictEntry, LogEntry, Replica, Resolution};
use outpost_remote::connections::{AdminConnection, ModelSession};
use outpost_remote::connections::{ChangeListener, Listener};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::defaults::fed_by_sequence;
use crate::engine::{Engine, SyncOptions, SyncReport};
use crate::error::EngineError;
use crate::schedule::{Request, SyncResult};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

/// Where operations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The server while it is reachable, the replica while it is not.
    #[default]
    Auto,
    /// Always the replica.
    Local,
    /// Always the server (writes are mirrored into the replica).
    Remote,
}

impl Mode {
    /// `auto`, `local` or `remote`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Local => "local",
            Mode::Remote => "remote",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "local" => Ok(Mode::Local),
            "remote" => Ok(Mode::Remote),
            other => Err(format!(
                "unknown mode {other:?}: expected auto, local or remote"
            )),
        }
    }
}

/// The node's state, in the seed's shape plus outpost's fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The server is reachable.
    pub is_online: bool,
    /// The replica is open.
    pub local_db_connected: bool,
    /// The node holds a working connection to the server (the monitor's, or
    /// the model service's).
    pub remote_db_connected: bool,
    /// The mode set.
    pub mode: Mode,
    /// Operations go to the replica now.
    pub using_local_database: bool,
    /// Rows with local changes not yet pushed.
    pub pending: i64,
    /// Rows in conflict.
    pub conflicts: i64,
    /// Rows the server refused.
    pub failed: i64,
    /// The newest `SyncLog` row.
    pub last_sync: Option<LogEntry>,
    /// When this status was taken.
    pub timestamp: String,
}

/// Timings of the runtime; the defaults suit a field device.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// How often the server is checked while online.
    pub check_interval: Duration,
    /// How long a check (or a connection attempt) may take. A server that
    /// stops answering is noticed within `check_interval + check_timeout`.
    pub check_timeout: Duration,
    /// How long a model-service request may wait on the server. Past it a
    /// read in `auto` mode runs on the replica, a write that was sent is
    /// answered as "outcome unknown", and the node goes offline.
    pub request_timeout: Duration,
    /// First backoff while offline.
    pub backoff_base: Duration,
    /// Longest backoff while offline.
    pub backoff_max: Duration,
    /// Notifications arriving within this window trigger one sync. Zero
    /// (the default) syncs at once: notifications that arrive while a sync
    /// runs already coalesce into the one run that follows it, so a window
    /// only adds latency (B5) unless the server sends bursts spread over
    /// more than one transaction.
    pub notify_debounce: Duration,
    /// Ids reserved per table from the server's sequences, for offline creates.
    pub id_block: i64,
    /// Start the monitor (tests and one-shot tools may not want it).
    pub monitor: bool,
    /// How often the replica is checked for local writes committed by
    /// other connections (the application's own, another program, the
    /// model service); each is pushed while the node is online in `auto`
    /// mode. `None`
    /// turns the watch off (a local write then waits for the interval or
    /// a manual sync). Needs the monitor.
    pub watch_local: Option<Duration>,
}

impl NodeOptions {
    /// The default timings with the configured timeouts (`OUTPOST_REQUEST_TIMEOUT`,
    /// `OUTPOST_CHECK_INTERVAL`, `OUTPOST_CHECK_TIMEOUT`).
    pub fn from_config(config: &Config) -> NodeOptions {
        let t = &config.timeouts;
        NodeOptions {
            check_interval: t.check_interval,
            check_timeout: t.check_timeout,
            request_timeout: t.request,
            ..NodeOptions::default()
        }
    }
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            check_interval: Duration::from_secs(2),
            check_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            notify_debounce: Duration::ZERO,
            id_block: 1000,
            monitor: true,
            watch_local: Some(WATCH_LOCAL_DEFAULT),
        }
    }
}

/// The local-write watch's default period: a write is pushed within about
/// this long plus the push itself (docs/runtime.md, B11).
pub const WATCH_LOCAL_DEFAULT: Duration = Duration::from_millis(20);

pub(crate) struct NodeInner {
    pub(crate) engine: Engine,
    pub(crate) config: Config,
    pub(crate) options: NodeOptions,
    mode: Mutex<Mode>,
    online: AtomicBool,
    /// Woken when the node goes offline: requests waiting on the server
    /// give up at once.
    pub(crate) went_offline: tokio::sync::Notify,
    status_tx: watch::Sender<Status>,
    cancel: CancellationToken,
    /// Requests to the sync scheduler (`schedule.rs`).
    scheduler: tokio::sync::mpsc::UnboundedSender<Request>,
    pub(crate) remote: tokio::sync::Mutex<Option<ModelSession>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The application's Prisma schema bound to the node's (`prisma.rs`).
    pub(crate) prisma: Option<Arc<crate::prisma::PrismaView>>,
}

/// A node: the replica, the engine and the monitor. Cheap to clone.
#[derive(Clone)]
pub struct Outpost {
    pub(crate) inner: Arc<NodeInner>,
}

fn now_text() -> String {
    outpost_core::types::timestamptz_from_chrono(chrono::Utc::now())
}

impl Outpost {
    /// Opens the node with default timings and the configured timeouts: the
    /// replica from its file (set up from the server first if the file is
    /// new), and the monitor.
    pub async fn open(config: Config) -> Result<Outpost, EngineError> {
        let options = NodeOptions::from_config(&config);
        Outpost::open_with(config, options).await
    }

    /// Opens the node with the given timings.
    pub async fn open_with(config: Config, options: NodeOptions) -> Result<Outpost, EngineError> {
        if !config.enable_local_database {
            return Err(EngineError::Config(
                "ENABLE_LOCAL_DATABASE is false: outpost needs its replica (set it to true)".into(),
            ));
        }
        let path = config.local_database_path.clone();
        let replica = match Replica::open(&path) {
            Ok(r) => r,
            Err(outpost_local::LocalError::NotSetUp { .. }) if config.gateway.is_some() => {
                // A new file in gateway topology: laid out from the schema
                // the gateway syncs (it installed the tracking schema).
                let target = config
                    .gateway
                    .as_ref()
                    .ok_or_else(|| EngineError::Internal("the gateway target vanished".into()))?;
                let gateway =
                    outpost_remote::gateway::GatewayConnection::new(target, options.check_timeout)?;
                let schema = gateway.schema().await?;
                outpost_core::sqlite::check_schema(&schema).map_err(EngineError::Config)?;
                let p = path.clone();
                tokio::task::spawn_blocking(move || Replica::setup(&p, &schema))
                    .await
                    .map_err(|e| EngineError::Internal(e.to_string()))??
                    .0
            }
            Err(outpost_local::LocalError::NotSetUp { .. }) => {
                // A new file: lay it out from the server (which must answer).
                let url = config
                    .require_database_url("a new replica is laid out from the server's schema")
                    .map_err(|e| EngineError::Config(e.to_string()))?;
                let mut server = AdminConnection::connect(url, options.check_timeout).await?;
                let schema = server.introspect(&config.tables).await?;
                outpost_core::sqlite::check_schema(&schema).map_err(EngineError::Config)?;
                if server.installed_version().await?.is_none() {
                    server.install(&schema).await?;
                }
                let p = path.clone();
                tokio::task::spawn_blocking(move || Replica::setup(&p, &schema))
                    .await
                    .map_err(|e| EngineError::Internal(e.to_string()))??
                    .0
            }
            Err(e) => return Err(e.into()),
        };
        // The mode a person chose survives a restart (kept in the replica).
        let mode = match replica.setting("mode") {
            Ok(Some(m)) => m.parse().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring the stored mode");
                Mode::Auto
            }),
            Ok(None) => Mode::Auto,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored mode; using auto");
                Mode::Auto
            }
        };
        let engine = Engine::new(replica, config.clone());
        let prisma = crate::prisma::for_node(&config, &engine.schema())?;
        let initial = Status {
            is_online: false,
            local_db_connected: true,
            remote_db_connected: false,
            mode,
            using_local_database: config.enable_offline_mode,
            pending: 0,
            conflicts: 0,
            failed: 0,
            last_sync: None,
            timestamp: now_text(),
        };
        let (status_tx, _) = watch::channel(initial);
        let (scheduler_tx, scheduler_rx) = tokio::sync::mpsc::unbounded_channel();
        let node = Outpost {
            inner: Arc::new(NodeInner {
                engine,
                config,
                options,
                mode: Mutex::new(mode),
                online: AtomicBool::new(false),
                went_offline: tokio::sync::Notify::new(),
                status_tx,
                cancel: CancellationToken::new(),
                scheduler: scheduler_tx,
                remote: tokio::sync::Mutex::new(None),
                tasks: Mutex::new(Vec::new()),
                prisma,
            }),
        };
        // outpost's SQLite functions (numeric order, Unicode lower) on the
        // replica's connection, for the model service's local reads.
        node.inner
            .engine
            .with_replica(|r| r.register_query_functions())
            .await?;
        node.publish().await;
        let runner = node.clone();
        let scheduler = tokio::spawn(crate::schedule::scheduler(
            move |options| run_sync(runner.clone(), options),
            node.inner.cancel.clone(),
            scheduler_rx,
        ));
        if let Ok(mut t) = node.inner.tasks.lock() {
            t.push(scheduler);
        }
        if node.inner.options.monitor {
            let monitor = tokio::spawn(monitor(node.clone()));
            if let Ok(mut t) = node.inner.tasks.lock() {
                t.push(monitor);
            }
            if let Some(every) = node.inner.options.watch_local {
                let watch = tokio::spawn(watch_local(node.clone(), every));
                if let Ok(mut t) = node.inner.tasks.lock() {
                    t.push(watch);
                }
            }
        }
        Ok(node)
    }

    /// The sync engine underneath.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The node's current status.
    pub async fn status(&self) -> Status {
        self.publish().await;
        let mut status = self.inner.status_tx.borrow().clone();
        // The channel keeps the time of the last change; an answer carries
        // the time it was given.
        status.timestamp = now_text();
        status
    }

    /// Status updates: the receiver sees every change of online state, mode,
    /// and counts after syncs and writes.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status_tx.subscribe()
    }

    /// The mode set.
    pub fn mode(&self) -> Mode {
        self.inner.mode.lock().map(|m| *m).unwrap_or_default()
    }

    /// Sets where operations go, and keeps it in the replica for the next
    /// start.
    pub async fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.inner.mode.lock() {
            *m = mode;
        }
        let text = mode.as_str();
        if let Err(e) = self
            .inner
            .engine
            .with_replica(move |r| r.set_setting("mode", text))
            .await
        {
            // The mode holds for this run either way.
            tracing::warn!(error = %e, "cannot store the mode in the replica");
        }
        self.publish().await;
    }

    /// Whether the monitor sees the server.
    pub fn is_online(&self) -> bool {
        self.inner.online.load(Ordering::SeqCst)
    }

    /// Whether operations go to the replica now (mode, online state and
    /// `ENABLE_OFFLINE_MODE` together).
    pub fn using_local(&self) -> bool {
        match self.mode() {
            Mode::Local => true,
            Mode::Remote => false,
            // Through a gateway there is no database session for requests:
            // auto mode works on the replica and pushes each write as soon
            // as the watch sees it (docs/gateway.md); without offline mode
            // only while the gateway answers.
            Mode::Auto if self.inner.config.gateway.is_some() => {
                self.is_online() || self.inner.config.enable_offline_mode
            }
            Mode::Auto => !self.is_online() && self.inner.config.enable_offline_mode,
        }
    }

    pub(crate) fn set_online(&self, online: bool) -> bool {
        let changed = self.inner.online.swap(online, Ordering::SeqCst) != online;
        if changed && !online {
            self.inner.went_offline.notify_waiters();
        }
        changed
    }

    /// Recomputes the status and tells subscribers if it changed.
    pub(crate) async fn publish(&self) {
        let engine_status = self.inner.engine.status().await.ok();
        // The monitor's LISTEN connection counts: it is a working connection.
        // Never waits on a request holding the model service's connection
        // (the status must answer while the server does not): a connection
        // in use counts as connected.
        let remote_db_connected = self.is_online()
            || match self.inner.remote.try_lock() {
                Ok(slot) => slot.as_ref().is_some_and(ModelSession::is_open),
                Err(_) => true,
            };
        let status = Status {
            is_online: self.is_online(),
            local_db_connected: engine_status.is_some(),
            remote_db_connected,
            mode: self.mode(),
            using_local_database: self.using_local(),
            pending: engine_status.as_ref().map_or(0, |s| s.pending),
            conflicts: engine_status.as_ref().map_or(0, |s| s.conflicts),
            failed: engine_status.as_ref().map_or(0, |s| s.failed),
            last_sync: engine_status.and_then(|s| s.last_sync),
            timestamp: now_text(),
        };
        self.inner.status_tx.send_if_modified(|old| {
            let mut cmp = status.clone();
            cmp.timestamp = old.timestamp.clone();
            if *old == cmp {
                false
            } else {
                *old = status;
                true
            }
        });
    }

    /// Runs a sync (trigger `manual`); joins one already running that
    /// covers `direction`.
    pub async fn sync(&self, direction: Direction) -> Result<SyncReport, EngineError> {
        self.sync_with(SyncOptions::new(direction, Trigger::Manual))
            .await
    }

    /// Runs a sync with options; never two at once (see the scheduler,
    /// `schedule.rs`). A manual request of every model while a sync runs
    /// joins it when it covers the same direction. A request from the
    /// monitor (a notification, the interval, a reconnect) waits for it and
    /// then runs (or joins) the next one, because the running sync may have
    /// read the server before the change that caused the request.
    pub async fn sync_with(&self, options: SyncOptions) -> Result<SyncReport, EngineError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.inner
            .scheduler
            .send(Request {
                options,
                reply: Some(reply),
            })
            .map_err(|_| EngineError::Internal("the node is shut down".into()))?;
        result
            .await
            .map_err(|_| EngineError::Internal("the node shut down before the sync ran".into()))?
            .map_err(EngineError::Internal)
    }

    /// Asks for a sync without waiting for it (the monitor).
    fn request_sync(&self, direction: Direction, trigger: Trigger) {
        let _ = self.inner.scheduler.send(Request {
            options: SyncOptions::new(direction, trigger),
            reply: None,
        });
    }

    /// Keeps the id blocks for offline creates topped up while the server
    /// answers (after each successful sync).
    pub(crate) async fn top_up_ids(&self) {
        let sent = AtomicBool::new(false);
        let topped = self
            .bounded_request("reserving ids", &sent, reserve_ids(self))
            .await;
        if let Err(e) = topped {
            tracing::warn!(error = %e, "could not reserve ids for offline creates");
        }
    }

    /// Rows in conflict.
    pub async fn conflicts(&self) -> Result<Vec<ConflictEntry>, EngineError> {
        self.inner.engine.conflicts().await
    }

    /// Resolves a conflict; the next sync pushes the outcome.
    pub async fn resolve(
        &self,
        model: &str,
        pk: &str,
        resolution: Resolution,
    ) -> Result<(), EngineError> {
        self.inner.engine.resolve(model, pk, resolution).await?;
        self.publish().await;
        Ok(())
    }

    /// Drops the local change of a row the server refused and puts the
    /// server's row back (or removes it, when the server has none); `None`
    /// when the row is not `FAILED`. See `Replica::discard_failed`.
    pub async fn discard_failed(
        &self,
        model: &str,
        pk: &str,
    ) -> Result<Option<outpost_local::Discarded>, EngineError> {
        let out = self.inner.engine.discard_failed(model, pk).await?;
        self.publish().await;
        Ok(out)
    }

    /// Puts a refused row back in the push queue; `false` when it is not
    /// `FAILED`.
    pub async fn retry_failed(&self, model: &str, pk: &str) -> Result<bool, EngineError> {
        let out = self.inner.engine.retry_failed(model, pk).await?;
        self.publish().await;
        Ok(out)
    }

    /// Compares the replica with the server for `models` (all when
    /// `None`): differing rows with both values, rows with local changes
    /// apart. Needs the server; changes nothing. See `Engine::verify`.
    pub async fn verify(
        &self,
        models: Option<Vec<String>>,
    ) -> Result<crate::VerifyReport, EngineError> {
        self.inner.engine.verify(models).await
    }

    /// Copies one model again from the server, keeping its rows with local
    /// changes; runs as a pull-only sync through the scheduler. See
    /// `Engine::resync`.
    pub async fn resync(&self, model: &str) -> Result<SyncReport, EngineError> {
        self.inner.engine.begin_resync(model).await?;
        let report = self
            .sync_with(SyncOptions::new(Direction::FromServer, Trigger::Manual))
            .await?;
        self.publish().await;
        Ok(report)
    }

    /// Stops the monitor and waits for a running sync to finish (a sync
    /// commits or rolls back as a whole; nothing is left half-applied).
    pub async fn shutdown(&self) {
        // The scheduler finishes the running sync, the monitor stops; both
        // are awaited.
        self.inner.cancel.cancel();
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
        *self.inner.remote.lock().await = None;
    }

    /// Asks the gateway whether it answers, within the monitor's probe
    /// timeout (a node in gateway topology without offline mode checks
    /// before working on the replica while the monitor sees it away).
    /// The error says why it does not.
    pub(crate) async fn probe_gateway(&self) -> Result<(), String> {
        let Some(target) = &self.inner.config.gateway else {
            return Err("no gateway configured".into());
        };
        let timeout = self.inner.options.check_timeout;
        let conn = outpost_remote::gateway::GatewayConnection::new(target, timeout)
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, conn.probe()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the gateway did not answer its probe within {} ms",
                timeout.as_millis()
            )),
        }
    }

    /// The server connection for model queries, opened on demand.
    pub(crate) async fn remote_client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<ModelSession>>, EngineError> {
        if self.inner.config.gateway.is_some() {
            return Err(EngineError::Config(
                "a node in gateway topology has no database session of its own: its remote-mode \
                 requests go through the gateway (docs/gateway.md)"
                    .into(),
            ));
        }
        let mut guard = self.inner.remote.lock().await;
        if guard.as_ref().is_none_or(|c| !c.is_open()) {
            *guard = None;
            let url = self
                .inner
                .config
                .require_database_url("remote mode needs the server")
                .map_err(|e| EngineError::Config(e.to_string()))?;
            let session = ModelSession::connect(url, self.inner.options.check_timeout).await?;
            *guard = Some(session);
        }
        Ok(guard)
    }

    /// Runs `work` (a model request on the server) under the request
    /// deadline; it gives up early when the node goes offline. `sent` tells
    /// whether a write had reached the server when it gave up: such a write
    /// is "outcome unknown", anything else is unreachable (and may run on
    /// the replica). Either way the node goes offline, and the request's
    /// connection is dropped with it.
    pub(crate) async fn bounded_request<T>(
        &self,
        what: &str,
        sent: &AtomicBool,
        work: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let deadline = self.inner.options.request_timeout;
        let offline = self.inner.went_offline.notified();
        tokio::pin!(offline);
        offline.as_mut().enable();
        let reason = tokio::select! {
            r = tokio::time::timeout(deadline, work) => match r {
                Ok(r) => return r,
                Err(_) => format!("no answer from the server within {} ms", deadline.as_millis()),
            },
            _ = &mut offline => "the server stopped answering the node's probe".to_string(),
        };
        if self.set_online(false) {
            self.publish().await;
        }
        Err(if sent.load(Ordering::SeqCst) {
            EngineError::OutcomeUnknown(format!(
                "{what}: {reason} while it was in flight: it may or may not have been applied; \
                 the next sync shows which (it is not retried automatically)"
            ))
        } else {
            EngineError::Unreachable(format!("{what}: {reason}"))
        })
    }
}

/// Reserves ids for every sequence-fed column whose block is half used.
async fn reserve_ids(node: &Outpost) -> Result<(), EngineError> {
    let schema = node.inner.engine.schema().clone();
    let wanted: Vec<(String, String)> = schema
        .tables
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .filter(|c| fed_by_sequence(t, c))
                .map(|c| (t.name.clone(), c.name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let block = node.inner.options.id_block;
    // The guard holds the model service's session while ids are reserved
    // on it, as the loop below needs it.
    let guard;
    let source = if let Some(target) = &node.inner.config.gateway {
        IdSource::Gateway(outpost_remote::gateway::GatewayConnection::new(
            target,
            node.inner.options.check_timeout,
        )?)
    } else {
        guard = node.remote_client().await?;
        let Some(session) = guard.as_ref() else {
            return Ok(());
        };
        IdSource::Direct(session, &schema.pg_schema)
    };
    for (table, column) in wanted {
        let (t, c) = (table.clone(), column.clone());
        let left = node
            .inner
            .engine
            .with_replica(move |r| r.ids_left(&t, &c))
            .await?;
        if left >= block / 2 {
            continue;
        }
        if let Some(runs) = source.reserve(&table, &column, block - left).await? {
            node.inner
                .engine
                .with_replica(move |r| r.add_ids(&table, &column, &runs))
                .await?;
        }
    }
    Ok(())
}

/// Where [`reserve_ids`] takes blocks of a server sequence from: the
/// gateway, or the model service's session on the server (in the synced
/// PostgreSQL schema).
enum IdSource<'a> {
    Gateway(outpost_remote::gateway::GatewayConnection),
    Direct(&'a ModelSession, &'a str),
}

impl IdSource<'_> {
    async fn reserve(
        &self,
        table: &str,
        column: &str,
        n: i64,
    ) -> Result<Option<Vec<(i64, i64)>>, outpost_remote::RemoteError> {
        match self {
            IdSource::Gateway(g) => g.reserve_ids(table, column, n).await,
            IdSource::Direct(session, pg_schema) => {
                session.reserve_ids(pg_schema, table, column, n).await
            }
        }
    }
}

/// One run and what follows it: offline when the server could not be
/// reached, ids topped up while it answers, the status published.
fn run_sync(node: Outpost, options: SyncOptions) -> BoxFuture<'static, SyncResult> {
    async move {
        // A write's own push belongs to auto mode: one queued before the
        // node switched to local mode (or went offline) is dropped, so a
        // write made after the switch waits for a sync asked for. Nobody
        // waits on such a run; the text is for the scheduler only.
        if options.trigger == Trigger::LocalChange
            && !(node.mode() == Mode::Auto && node.is_online())
        {
            return Err("not run: the node left auto mode".into());
        }
        let result = node.inner.engine.sync(options).await;
        if let Ok(report) = &result {
            if report.error_kind.is_some_and(|k| k.is_unreachable()) {
                node.set_online(false);
            }
            if report.success {
                node.top_up_ids().await;
            }
        }
        node.publish().await;
        result.map_err(|e| e.to_string())
    }
    .boxed()
}

fn backoff(options: &NodeOptions, attempt: u32) -> Duration {
    let base = options.backoff_base.as_secs_f64() * 2f64.powi(attempt.min(16) as i32);
    let capped = base.min(options.backoff_max.as_secs_f64());
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64(capped * jitter)
}

/// The monitor's states.
enum MonitorState {
    Online,
    Offline { attempt: u32 },
}

async fn monitor(node: Outpost) {
    let cancel = node.inner.cancel.clone();
    let mut state = MonitorState::Offline { attempt: 0 };
    let mut first = true;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        state = match state {
            MonitorState::Offline { attempt } => {
                if attempt > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(&node.inner.options, attempt - 1)) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                match listen(&node).await {
                    Ok(listener) => {
                        node.set_online(true);
                        node.publish().await;
                        let trigger = if first {
                            Trigger::Startup
                        } else {
                            Trigger::Reconnect
                        };
                        first = false;
                        node.request_sync(Direction::Bidirectional, trigger);
                        online(&node, listener).await;
                        MonitorState::Online
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, attempt, "server unreachable");
                        if node.set_online(false) {
                            node.publish().await;
                        }
                        first = false;
                        MonitorState::Offline {
                            attempt: attempt + 1,
                        }
                    }
                }
            }
            MonitorState::Online => {
                // `online` returned: the server went away (or shutdown).
                node.set_online(false);
                *node.inner.remote.lock().await = None;
                node.publish().await;
                tracing::info!("server unreachable; operations use the replica");
                MonitorState::Offline { attempt: 1 }
            }
        }
    }
}

/// The local-write watch (`outpost_local::watch`): every `every`, asks
/// whether a local write was committed since the last look, and while the
/// node is online in `auto` mode requests a push for it (in `local` mode a
/// person chose the replica: its writes wait for the interval or a sync
/// they ask for, as before). A burst of writes needs no window
/// of its own: requests made while a push runs coalesce into the one run
/// queued after it (`schedule.rs`), which takes everything committed by
/// then. A write seen offline or outside `auto` mode is owed: it is pushed
/// when the node is online in `auto` mode again (a reconnect syncs anyway).
async fn watch_local(node: Outpost, every: Duration) {
    let cancel = node.inner.cancel.clone();
    let path = node.inner.config.local_database_path.clone();
    let opened =
        tokio::task::spawn_blocking(move || outpost_local::watch::LocalWrites::open(&path)).await;
    let mut watch = match opened {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot watch the replica for local writes; they are pushed at the next sync");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the replica for local writes");
            return;
        }
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said = false;
    // A write seen while a push could not be asked for (offline, or not in
    // `auto` mode) is owed until it can.
    let mut owed = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let polled = tokio::task::spawn_blocking(move || {
            let r = watch.poll();
            (watch, r)
        })
        .await;
        let Ok((w, result)) = polled else { return };
        watch = w;
        let mut fresh = false;
        match result {
            Ok(new) => {
                fresh = new;
                owed |= new;
                said = false;
            }
            // A busy or briefly unreadable file: look again next tick, and
            // say so once rather than every 20 ms.
            Err(e) if !said => {
                said = true;
                tracing::warn!(error = %e, "cannot read the replica's change log");
            }
            Err(_) => {}
        }
        if owed && node.is_online() && node.mode() == Mode::Auto {
            owed = false;
            // An older write may have been pushed meanwhile (a sync asked
            // for, the reconnect's): no run for nothing.
            let still = fresh
                || node
                    .inner
                    .engine
                    .status()
                    .await
                    .map_or(true, |s| s.pending > 0);
            if still {
                node.request_sync(Direction::ToServer, Trigger::LocalChange);
            }
        }
    }
}

/// Opens the LISTEN connection (the monitor's probe, too).
async fn listen(node: &Outpost) -> Result<ChangeListener, EngineError> {
    if let Some(target) = &node.inner.config.gateway {
        return Ok(ChangeListener::Gateway(
            outpost_remote::gateway::GatewayListener::open(
                target,
                node.inner.options.check_timeout,
            )
            .await?,
        ));
    }
    let url = node
        .inner
        .config
        .require_database_url("the monitor needs the server")
        .map_err(|e| EngineError::Config(e.to_string()))?;
    Ok(ChangeListener::Direct(
        Listener::open(url, node.inner.options.check_timeout).await?,
    ))
}

/// The online loop: returns when the server stops answering or on shutdown.
async fn online(node: &Outpost, mut listener: ChangeListener) {
    let options = node.inner.options.clone();
    let cancel = node.inner.cancel.clone();
    let mut check = tokio::time::interval(options.check_interval);
    check.tick().await;
    let interval = node.inner.config.sync_interval;
    let mut periodic =
        tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600 * 24 * 365)));
    periodic.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            note = listener.notified() => {
                if note.is_none() {
                    return; // the LISTEN connection ended
                }
                if !options.notify_debounce.is_zero() {
                    tokio::time::sleep(options.notify_debounce).await;
                }
                listener.drain();
                node.request_sync(Direction::FromServer, Trigger::Notify);
            }
            _ = check.tick() => {
                if !listener.probe(options.check_timeout).await {
                    // The probe decides: a sync waiting on the same path is
                    // abandoned now rather than at its own deadline.
                    node.inner.engine.abandon_running();
                    return;
                }
                // Something else (a request, a sync) found the server away
                // while the probe still reaches it: back online at once.
                if node.set_online(true) {
                    node.publish().await;
                    tracing::info!("server reachable again; operations use it");
                    node.request_sync(Direction::Bidirectional, Trigger::Reconnect);
                }
            }
            _ = periodic.tick(), if interval.is_some() => {
                node.request_sync(Direction::Bidirectional, Trigger::Interval);
            }
        }
    }
}
