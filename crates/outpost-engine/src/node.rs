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

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use outpost_core::config::Config;
use outpost_core::sync::{Direction, Trigger};
use outpost_local::{ConflictEntry, LogEntry, Replica, Resolution};
use outpost_remote::tokio_postgres::{AsyncMessage, Client};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, SyncOptions, SyncReport};
use crate::error::EngineError;

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
    /// How long a check (or a connection attempt) may take.
    pub check_timeout: Duration,
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
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            check_interval: Duration::from_secs(5),
            check_timeout: Duration::from_secs(3),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            notify_debounce: Duration::ZERO,
            id_block: 1000,
            monitor: true,
        }
    }
}

type SharedSync = Shared<BoxFuture<'static, Result<SyncReport, String>>>;

/// The running sync: its direction, its generation number and its future.
type Running = (Direction, u64, SharedSync);

pub(crate) struct NodeInner {
    pub(crate) engine: Engine,
    pub(crate) config: Config,
    pub(crate) options: NodeOptions,
    mode: Mutex<Mode>,
    online: AtomicBool,
    status_tx: watch::Sender<Status>,
    cancel: CancellationToken,
    running: Mutex<Option<Running>>,
    generation: std::sync::atomic::AtomicU64,
    retrying: AtomicBool,
    pub(crate) remote: tokio::sync::Mutex<Option<Client>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
    /// Opens the node with default timings: the replica from its file (set
    /// up from the server first if the file is new), and the monitor.
    pub async fn open(config: Config) -> Result<Outpost, EngineError> {
        Outpost::open_with(config, NodeOptions::default()).await
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
            Err(outpost_local::LocalError::NotSetUp { .. }) => {
                // A new file: lay it out from the server (which must answer).
                let url = config
                    .require_database_url("a new replica is laid out from the server's schema")
                    .map_err(|e| EngineError::Config(e.to_string()))?;
                let mut client = outpost_remote::connect(url, options.check_timeout).await?;
                let t = &config.tables;
                let schema = outpost_remote::introspect(
                    &client,
                    &t.pg_schema,
                    t.include.as_deref(),
                    &t.exclude,
                )
                .await?;
                outpost_core::sqlite::check_schema(&schema).map_err(EngineError::Config)?;
                if outpost_remote::installed_version(&client).await?.is_none() {
                    outpost_remote::install(&mut client, &schema).await?;
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
        let node = Outpost {
            inner: Arc::new(NodeInner {
                engine,
                config,
                options,
                mode: Mutex::new(mode),
                online: AtomicBool::new(false),
                status_tx,
                cancel: CancellationToken::new(),
                running: Mutex::new(None),
                generation: std::sync::atomic::AtomicU64::new(0),
                retrying: AtomicBool::new(false),
                remote: tokio::sync::Mutex::new(None),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        crate::model::register_sqlite_functions(&node.inner.engine).await?;
        node.publish().await;
        if node.inner.options.monitor {
            let monitor = tokio::spawn(monitor(node.clone()));
            if let Ok(mut t) = node.inner.tasks.lock() {
                t.push(monitor);
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
            Mode::Auto => !self.is_online() && self.inner.config.enable_offline_mode,
        }
    }

    pub(crate) fn set_online(&self, online: bool) -> bool {
        self.inner.online.swap(online, Ordering::SeqCst) != online
    }

    /// Recomputes the status and tells subscribers if it changed.
    pub(crate) async fn publish(&self) {
        let engine_status = self.inner.engine.status().await.ok();
        // The monitor's LISTEN connection counts: it is a working connection.
        let remote_db_connected = self.is_online()
            || self
                .inner
                .remote
                .lock()
                .await
                .as_ref()
                .is_some_and(|c| !c.is_closed());
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

    /// Runs a sync with options; never two at once. A manual request while
    /// a sync runs joins it when it covers the same direction. A request from
    /// the monitor (a notification, the interval, a reconnect) waits for it
    /// and then runs (or joins) the next one, because the running sync may
    /// have read the server before the change that caused the request.
    pub async fn sync_with(&self, options: SyncOptions) -> Result<SyncReport, EngineError> {
        let join_running = options.trigger == Trigger::Manual && options.models.is_none();
        let mut waited = false;
        loop {
            let running = self.inner.running.lock().ok().and_then(|r| r.clone());
            let Some((dir, generation, fut)) = running else {
                break;
            };
            let covers = dir == options.direction || dir == Direction::Bidirectional;
            if covers && (join_running || waited) {
                return fut.await.map_err(EngineError::Internal);
            }
            let _ = fut.await;
            // That run is over: clear its slot if its owner has not yet (it
            // may not have been polled since), then the next run (started by
            // whoever gets there first) is ours to join.
            let next = match self.inner.running.lock() {
                Ok(mut r) => {
                    if r.as_ref().is_some_and(|(_, g, _)| *g == generation) {
                        *r = None;
                    }
                    r.clone()
                }
                Err(_) => None,
            };
            waited = true;
            if next.is_none() {
                break;
            }
        }
        let engine = self.inner.engine.clone();
        let direction = options.direction;
        let trigger = options.trigger;
        let fut: BoxFuture<'static, Result<SyncReport, String>> =
            async move { engine.sync(options).await.map_err(|e| e.to_string()) }.boxed();
        let shared = fut.shared();
        // Decide under the lock, await outside it.
        let started: Result<u64, SharedSync> = {
            let mut r = self
                .inner
                .running
                .lock()
                .map_err(|_| EngineError::Internal("the sync lock was poisoned".into()))?;
            match r.clone() {
                // Someone started one while we looked, and it covers ours.
                Some((dir, _, other)) if dir == direction || dir == Direction::Bidirectional => {
                    Err(other)
                }
                _ => {
                    let g = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
                    *r = Some((direction, g, shared.clone()));
                    Ok(g)
                }
            }
        };
        let generation = match started {
            Ok(g) => g,
            Err(other) => return other.await.map_err(EngineError::Internal),
        };
        let result = shared.await;
        if let Ok(mut r) = self.inner.running.lock()
            && r.as_ref().is_some_and(|(_, g, _)| *g == generation)
        {
            *r = None;
        }
        if let Ok(report) = &result {
            if !report.success
                && report
                    .errors
                    .values()
                    .any(|e| e.contains("cannot reach the server"))
            {
                self.set_online(false);
            }
            if report.success {
                // Keep the id blocks topped up while the server answers.
                if let Err(e) = crate::model::top_up_ids(self).await {
                    tracing::warn!(error = %e, "could not reserve ids for offline creates");
                }
            }
            if report.success && report.held_back && trigger != Trigger::Manual {
                self.retry_held_back();
            }
        }
        self.publish().await;
        result.map_err(EngineError::Internal)
    }

    /// Pulls again shortly while an open server transaction holds committed
    /// changes back (one retry loop at a time; 10 ms doubling to 1 s).
    fn retry_held_back(&self) {
        if self.inner.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(10);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = node.inner.cancel.cancelled() => break,
                }
                // Straight to the engine (it never runs two syncs at once):
                // this loop must not schedule itself again.
                let options = SyncOptions::new(Direction::FromServer, Trigger::Notify);
                match node.inner.engine.sync(options).await {
                    Ok(r) if r.success && r.held_back => {
                        delay = (delay * 2).min(Duration::from_secs(1))
                    }
                    _ => break,
                }
            }
            node.inner.retrying.store(false, Ordering::SeqCst);
            node.publish().await;
        });
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

    /// Stops the monitor and waits for a running sync to finish (a sync
    /// commits or rolls back as a whole; nothing is left half-applied).
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let running = self.inner.running.lock().ok().and_then(|r| r.clone());
        if let Some((_, _, fut)) = running {
            let _ = fut.await;
        }
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

    /// The server connection for model queries, opened on demand.
    pub(crate) async fn remote_client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, EngineError> {
        let mut guard = self.inner.remote.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            let url = self
                .inner
                .config
                .require_database_url("remote mode needs the server")
                .map_err(|e| EngineError::Config(e.to_string()))?;
            let client = outpost_remote::connect(url, self.inner.options.check_timeout).await?;
            *guard = Some(client);
        }
        Ok(guard)
    }
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
                    Ok((client, notes)) => {
                        node.set_online(true);
                        node.publish().await;
                        let trigger = if first {
                            Trigger::Startup
                        } else {
                            Trigger::Reconnect
                        };
                        first = false;
                        let n = node.clone();
                        tokio::spawn(async move {
                            let _ = n
                                .sync_with(SyncOptions::new(Direction::Bidirectional, trigger))
                                .await;
                        });
                        online(&node, client, notes).await;
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

type Notes = tokio::sync::mpsc::UnboundedReceiver<()>;

/// Opens the LISTEN connection; notifications arrive on the channel.
async fn listen(node: &Outpost) -> Result<(Client, Notes), EngineError> {
    let url = node
        .inner
        .config
        .require_database_url("the monitor needs the server")
        .map_err(|e| EngineError::Config(e.to_string()))?;
    let (client, mut connection) =
        outpost_remote::connect_raw(url, node.inner.options.check_timeout).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt as _;
        while let Some(msg) = messages.next().await {
            match msg {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    client
        .batch_execute("LISTEN outpost_changes")
        .await
        .map_err(|e| outpost_remote::RemoteError::db("listening for changes", e))?;
    Ok((client, rx))
}

/// The online loop: returns when the server stops answering or on shutdown.
async fn online(node: &Outpost, client: Client, mut notes: Notes) {
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
            note = notes.recv() => {
                if note.is_none() {
                    return; // the LISTEN connection ended
                }
                if !options.notify_debounce.is_zero() {
                    tokio::time::sleep(options.notify_debounce).await;
                }
                while notes.try_recv().is_ok() {}
                let n = node.clone();
                tokio::spawn(async move {
                    let _ = n.sync_with(SyncOptions::new(Direction::FromServer, Trigger::Notify)).await;
                });
            }
            _ = check.tick() => {
                let ok = matches!(
                    tokio::time::timeout(options.check_timeout, client.simple_query("SELECT 1")).await,
                    Ok(Ok(_))
                );
                if !ok {
                    return;
                }
            }
            _ = periodic.tick(), if interval.is_some() => {
                let n = node.clone();
                tokio::spawn(async move {
                    let _ = n.sync_with(SyncOptions::new(Direction::Bidirectional, Trigger::Interval)).await;
                });
            }
        }
    }
}
