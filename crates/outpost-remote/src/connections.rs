//! Long-lived connections the node keeps (the settings they run with are
//! in [`crate::session`]), as types that hold their driver:
//! [`Listener`], the monitor's `LISTEN outpost_changes` connection, which is
//! also its probe of the server, [`ModelSession`], the model service's
//! connection (reads, and writes in one transaction under the node's
//! origin), and [`SyncConnection`], the sync engine's, with the feed's
//! operations as its methods. [`AdminConnection`] is the connection of a
//! setup: the node's first (a new replica laid out from the server's
//! schema) and the `outpost setup` and `outpost server` commands'. The node
//! never holds a driver client itself; it bounds every call here with its
//! own deadline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outpost_core::schema::{Schema, Table};
use outpost_core::types::Value;
use outpost_query::{Plan, Records};
use serde_json::Value as Json;

use futures_util::StreamExt as _;
use outpost_core::config::{DatabaseUrl, TableSelection};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

use crate::error::RemoteError;
use crate::feed::{Claim, FeedPosition};
use crate::tracking::{InstallReport, UninstallReport};
use outpost_core::sync::{Cursor, PullBatch, PushOutcome, PushRow};
use uuid::Uuid;

/// The channel the server's change triggers notify (`outpost.notify()`).
pub const CHANGES_CHANNEL: &str = "outpost_changes";

/// A connection listening for change notifications. Dropping it closes the
/// connection and stops its driver task.
pub struct Listener {
    client: Client,
    notes: mpsc::UnboundedReceiver<()>,
    driver: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Connects and runs `LISTEN`, each within `timeout`.
    pub async fn open(url: &DatabaseUrl, timeout: Duration) -> Result<Listener, RemoteError> {
        let (client, mut connection) = crate::connect::connect_raw(url, timeout).await?;
        let (tx, notes) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
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
        let listener = Listener {
            client,
            notes,
            driver,
        };
        let sql = format!("LISTEN {CHANGES_CHANNEL}");
        match tokio::time::timeout(timeout, listener.client.batch_execute(&sql)).await {
            Ok(Ok(())) => Ok(listener),
            Ok(Err(e)) => Err(RemoteError::db("listening for changes", e)),
            Err(_) => Err(RemoteError::Unreachable {
                auth: false,
                server: url.redacted(),
                reason: format!(
                    "listening for changes: no answer within {} ms",
                    timeout.as_millis()
                ),
            }),
        }
    }

    /// The next notification; `None` when the connection ended.
    pub async fn notified(&mut self) -> Option<()> {
        self.notes.recv().await
    }

    /// Drops the notifications that arrived meanwhile (one sync covers
    /// them all).
    pub fn drain(&mut self) {
        while self.notes.try_recv().is_ok() {}
    }

    /// Whether the server answers a `SELECT 1` on this connection within
    /// `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.client.is_closed()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The connection of a setup: reading the synced tables' schema from the
/// server and installing, reading or removing the tracking schema, as
/// methods, so a caller (the node's first setup, the command line) holds no
/// driver client.
pub struct AdminConnection {
    client: Client,
}

impl AdminConnection {
    /// [`crate::connect()`]: connects within `timeout`.
    pub async fn connect(
        url: &DatabaseUrl,
        timeout: Duration,
    ) -> Result<AdminConnection, RemoteError> {
        Ok(AdminConnection {
            client: crate::connect::connect(url, timeout).await?,
        })
    }

    /// [`crate::introspect()`]: the schema of the tables `tables` selects.
    pub async fn introspect(&self, tables: &TableSelection) -> Result<Schema, RemoteError> {
        crate::introspect(
            &self.client,
            &tables.pg_schema,
            tables.include.as_deref(),
            &tables.exclude,
        )
        .await
    }

    /// [`crate::installed_version`].
    pub async fn installed_version(&self) -> Result<Option<i32>, RemoteError> {
        crate::installed_version(&self.client).await
    }

    /// [`crate::install`]: installs or upgrades the tracking schema for
    /// `schema`'s tables.
    pub async fn install(&mut self, schema: &Schema) -> Result<InstallReport, RemoteError> {
        crate::install(&mut self.client, schema).await
    }

    /// [`crate::uninstall`].
    pub async fn uninstall(&mut self) -> Result<UninstallReport, RemoteError> {
        crate::uninstall(&mut self.client).await
    }
}

/// The sync engine's connection, kept between runs together with the pull
/// statements prepared on it (a notification-driven pull then costs no
/// connection set-up). The engine drops it after any failed run.
pub struct SyncConnection {
    client: Client,
    statements: crate::feed::PullStatements,
}

impl SyncConnection {
    /// Connects within `timeout` and applies the session's `settings` (its
    /// limits), within `timeout` too.
    pub async fn connect(
        url: &DatabaseUrl,
        timeout: Duration,
        settings: &str,
    ) -> Result<SyncConnection, RemoteError> {
        let client = crate::connect::connect(url, timeout).await?;
        match tokio::time::timeout(timeout, client.batch_execute(settings)).await {
            Ok(Ok(())) => Ok(SyncConnection {
                client,
                statements: crate::feed::PullStatements::default(),
            }),
            Ok(Err(e)) => Err(RemoteError::db("setting the sync session's limits", e)),
            Err(_) => Err(RemoteError::Unreachable {
                auth: false,
                server: url.redacted(),
                reason: format!(
                    "setting the sync session's limits: no answer within {} ms",
                    timeout.as_millis()
                ),
            }),
        }
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.client.is_closed()
    }

    // The feed's functions on this connection: the sync engine calls these
    // and never names the driver's client.

    /// [`crate::feed::probe`]: tracking version and retention mark.
    pub async fn probe(&self) -> Result<(Option<i32>, Option<Cursor>), RemoteError> {
        crate::feed::probe(&self.client).await
    }

    /// [`crate::installed_version`].
    pub async fn installed_version(&self) -> Result<Option<i32>, RemoteError> {
        crate::installed_version(&self.client).await
    }

    /// [`crate::feed::register_node`].
    pub async fn register_node(&self, node: Uuid, name: &str) -> Result<i64, RemoteError> {
        crate::feed::register_node(&self.client, node, name).await
    }

    /// [`crate::feed::claim_incarnation`].
    pub async fn claim_incarnation(
        &self,
        node: Uuid,
        current: Uuid,
        known: &[Uuid],
    ) -> Result<Claim, RemoteError> {
        crate::feed::claim_incarnation(&self.client, node, current, known).await
    }

    /// [`crate::feed::feed_position`].
    pub async fn feed_position(&self, cursor: Cursor) -> Result<FeedPosition, RemoteError> {
        crate::feed::feed_position(&self.client, cursor).await
    }

    /// [`crate::feed::record_cursor`].
    pub async fn record_cursor(&self, node: Uuid, cursor: Cursor) -> Result<(), RemoteError> {
        crate::feed::record_cursor(&self.client, node, cursor).await
    }

    /// [`crate::feed::horizon_age`].
    pub async fn horizon_age(&self) -> Result<Option<Duration>, RemoteError> {
        crate::feed::horizon_age(&self.client).await
    }

    /// [`crate::feed::prune`].
    pub async fn prune(&mut self, retention: Duration) -> Result<u64, RemoteError> {
        crate::feed::prune(&mut self.client, retention).await
    }

    /// [`crate::feed::push`].
    pub async fn push(
        &mut self,
        schema: &Schema,
        node: Uuid,
        cursor: Cursor,
        rows: &[PushRow],
        limits: (Duration, Duration),
    ) -> Result<Vec<PushOutcome>, RemoteError> {
        crate::feed::push(&mut self.client, schema, node, cursor, rows, limits).await
    }

    /// [`crate::feed::pull`], with the statements kept on this connection.
    pub async fn pull(
        &mut self,
        schema: &Schema,
        cursor: Cursor,
        limit: i64,
        tables: Option<&[String]>,
    ) -> Result<PullBatch, RemoteError> {
        crate::feed::pull(
            &mut self.client,
            schema,
            cursor,
            limit,
            tables,
            &mut self.statements,
        )
        .await
    }

    /// [`crate::feed::Bootstrap::begin`]: the bootstrap's snapshot.
    pub async fn bootstrap(&mut self) -> Result<crate::feed::Bootstrap<'_>, RemoteError> {
        crate::feed::Bootstrap::begin(&mut self.client).await
    }

    /// [`crate::feed::VerifySnapshot::begin`]: a verify's snapshot.
    pub async fn verify_snapshot(
        &mut self,
    ) -> Result<crate::feed::VerifySnapshot<'_>, RemoteError> {
        crate::feed::VerifySnapshot::begin(&mut self.client).await
    }
}

/// A row a model-service write left on the server, with its new version
/// (what the replica mirrors).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WrittenRow {
    /// The table.
    pub table: String,
    /// Primary-key values.
    pub pk: Vec<Value>,
    /// The row after the write (`None`: deleted).
    pub values: Option<Vec<Value>>,
    /// Its server version after the write.
    pub version: i64,
    /// Its tag, through a gateway with sync rules, for a node that asked
    /// for tags ([`outpost_core::sync::ServerRow::tag`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// How a write failed.
#[derive(Debug)]
pub enum WriteError {
    /// Nothing was committed: the server rolled the transaction back (or
    /// never began it).
    NotApplied(RemoteError),
    /// The connection was lost while the commit was in flight: the write
    /// may or may not have been applied.
    CommitLost(RemoteError),
}

/// The settings of a model-service write transaction: the node's origin (so
/// its own pull skips the change) and an idle limit, so a write whose node
/// went silent mid-transaction never holds its locks for long.
pub fn write_settings_sql(origin: uuid::Uuid, idle_limit: Duration) -> String {
    format!(
        "{} SET LOCAL idle_in_transaction_session_timeout = {};",
        crate::session::origin(outpost_core::NodeId(origin)),
        idle_limit.as_millis().max(1)
    )
}

/// The model service's connection to the server.
pub struct ModelSession {
    client: Client,
}

impl ModelSession {
    /// Connects within `timeout`.
    pub async fn connect(
        url: &DatabaseUrl,
        timeout: Duration,
    ) -> Result<ModelSession, RemoteError> {
        Ok(ModelSession {
            client: crate::connect::connect(url, timeout).await?,
        })
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.client.is_closed()
    }

    /// A read, as rows.
    pub async fn read(&self, schema: &Schema, plan: &Plan) -> Result<Records, RemoteError> {
        crate::query::read(&self.client, schema, plan).await
    }

    /// A read, as Prisma's JSON result.
    pub async fn run(&self, schema: &Schema, plan: &Plan) -> Result<Json, RemoteError> {
        Ok(crate::query::run(&self.client, schema, plan).await?.result)
    }

    /// A write in one transaction under `origin`; its result and the rows it
    /// left, with their versions. `sent` is set once the write's statements
    /// are on their way (from then on, a caller that gives up cannot know
    /// whether it landed).
    pub async fn write(
        &mut self,
        schema: &Schema,
        plan: &Plan,
        origin: uuid::Uuid,
        idle_limit: Duration,
        sent: &AtomicBool,
    ) -> Result<(Json, Vec<WrittenRow>), WriteError> {
        write_in(
            &mut self.client,
            schema,
            plan,
            origin,
            idle_limit,
            sent,
            GatewayWrite::default(),
        )
        .await
    }
}

/// A model-service write on `client` in one transaction under `origin`
/// ([`ModelSession::write`]; a gateway runs a node's remote-mode writes
/// with it on a pooled connection).
///
/// With a [`GatewayWrite::request`] id, the write is done at most once per
/// id: its answer is recorded in `outpost.gateway_requests` in the same
/// transaction, claimed first, so a second attempt of the same request
/// waits for the first one's transaction and, when it committed, is given
/// the recorded answer instead of writing again. With a
/// [`GatewayWrite::scope`] (a
/// gateway's sync rules), the write reads, updates and deletes only rows
/// in scope, and one that leaves a row outside it is refused whole
/// (`QueryError::Refused`, naming the row and the rule) and rolled back.
pub async fn write_in(
    client: &mut Client,
    schema: &Schema,
    plan: &Plan,
    origin: uuid::Uuid,
    idle_limit: Duration,
    sent: &AtomicBool,
    gateway: GatewayWrite<'_>,
) -> Result<(Json, Vec<WrittenRow>), WriteError> {
    let GatewayWrite { request, scope } = gateway;
    let tx = client
        .transaction()
        .await
        .map_err(|e| WriteError::NotApplied(RemoteError::db("starting a write", e)))?;
    let prepared = tx
        .batch_execute(&write_settings_sql(origin, idle_limit))
        .await
        .map_err(|e| RemoteError::db("starting a write", e));
    sent.store(true, Ordering::SeqCst);
    if let (Ok(()), Some(id)) = (&prepared, request) {
        let claimed = tx
            .execute(
                "INSERT INTO \"outpost\".\"gateway_requests\" (node_id, request_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&origin, &id],
            )
            .await
            .map_err(|e| WriteError::NotApplied(RemoteError::db("claiming a request id", e)))?;
        if claimed == 0 {
            // An earlier attempt of this request committed (the insert
            // waited for it while it was in flight): its answer.
            let _ = tx.rollback().await;
            return recorded_answer(client, origin, id).await;
        }
    }
    let scopes = scope.map(crate::query::scopes);
    let out = match prepared {
        Ok(()) => crate::query::run_scoped(&tx, schema, plan, scopes.as_ref()).await,
        Err(e) => Err(e),
    }
    .map_err(WriteError::NotApplied)?;
    if let Some(scope) = scope {
        // What the write left must stay in the node's scope: a row handed
        // to another node's scope (a changed owner, a row created for
        // someone else) refuses the whole write, rolled back.
        let left: Vec<(&str, &[Value])> = out
            .written
            .iter()
            .filter(|w| w.values.is_some())
            .map(|w| (w.table.as_str(), w.pk.as_slice()))
            .collect();
        let refused = crate::feed::written_outside(&tx, schema, scope, &left)
            .await
            .map_err(WriteError::NotApplied)?;
        if !refused.is_empty() {
            let _ = tx.rollback().await;
            return Err(WriteError::NotApplied(RemoteError::Query(
                outpost_query::QueryError::Refused {
                    model: plan.model().to_string(),
                    message: refused.join("; "),
                },
            )));
        }
    }
    let mut written = Vec::with_capacity(out.written.len());
    let mut by_table: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, w) in out.written.iter().enumerate() {
        by_table.entry(w.table.as_str()).or_default().push(i);
    }
    for (table, idx) in by_table {
        let Some(t) = schema.table(table) else {
            continue;
        };
        let pks: Vec<Vec<Value>> = idx.iter().map(|&i| out.written[i].pk.clone()).collect();
        let versions = crate::feed::versions_of(&tx, t, &pks)
            .await
            .map_err(WriteError::NotApplied)?;
        for (&i, version) in idx.iter().zip(versions) {
            let w = &out.written[i];
            written.push(WrittenRow {
                table: w.table.clone(),
                pk: w.pk.clone(),
                values: w.values.clone(),
                version,
                tag: None,
            });
        }
    }
    if let Some(id) = request {
        let answer = serde_json::json!({"result": &out.result, "written": &written});
        tx.execute(
            "UPDATE \"outpost\".\"gateway_requests\" SET answer = $3 WHERE node_id = $1 AND request_id = $2",
            &[&origin, &id, &answer],
        )
        .await
        .map_err(|e| WriteError::NotApplied(RemoteError::db("recording a request's answer", e)))?;
        // A node asks again within its request deadline: a day is plenty.
        tx.execute(
            "DELETE FROM \"outpost\".\"gateway_requests\" WHERE node_id = $1 AND at < now() - interval '1 day'",
            &[&origin],
        )
        .await
        .map_err(|e| WriteError::NotApplied(RemoteError::db("pruning request ids", e)))?;
    }
    if let Err(e) = tx.commit().await {
        let lost = crate::error::is_connection_error(&e);
        let e = RemoteError::db("committing a write", e);
        return Err(if lost {
            WriteError::CommitLost(e)
        } else {
            WriteError::NotApplied(e)
        });
    }
    Ok((out.result, written))
}

/// What a gateway adds to a remote-mode write ([`write_in`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayWrite<'a> {
    /// The request id that makes the write happen at most once.
    pub request: Option<uuid::Uuid>,
    /// The node's sync rules: the write runs scoped and what it leaves is
    /// checked before it commits.
    pub scope: Option<&'a crate::feed::Scope>,
}

/// The answer recorded for a request that committed ([`write_in`]).
async fn recorded_answer(
    client: &Client,
    node: uuid::Uuid,
    id: uuid::Uuid,
) -> Result<(Json, Vec<WrittenRow>), WriteError> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        result: Json,
        written: Vec<WrittenRow>,
    }
    let what = "reading a request's recorded answer";
    let answer: Option<Json> = client
        .query_opt(
            "SELECT answer FROM \"outpost\".\"gateway_requests\" WHERE node_id = $1 AND request_id = $2",
            &[&node, &id],
        )
        .await
        .map_err(|e| WriteError::CommitLost(RemoteError::db(what, e)))?
        .and_then(|r| r.get(0));
    // Applied, but its answer cannot be given: still not a second write.
    let unreadable = |why: String| {
        WriteError::CommitLost(RemoteError::Gateway {
            action: what.into(),
            gateway: String::new(),
            status: 200,
            code: "outcome_unknown".into(),
            message: why,
            class: crate::error::ErrorClass::Invalid,
            sqlstate: None,
        })
    };
    let answer =
        answer.ok_or_else(|| unreadable(format!("request {id} has no answer recorded")))?;
    let r: Recorded = serde_json::from_value(answer).map_err(|e| {
        unreadable(format!(
            "request {id}'s recorded answer does not parse: {e}"
        ))
    })?;
    Ok((r.result, r.written))
}

impl ModelSession {
    /// Reserves `n` ids from a column's sequence (see
    /// [`crate::feed::reserve_ids`]).
    pub async fn reserve_ids(
        &self,
        pg_schema: &str,
        table: &str,
        column: &str,
        n: i64,
    ) -> Result<Option<Vec<(i64, i64)>>, RemoteError> {
        crate::feed::reserve_ids(&self.client, pg_schema, table, column, n).await
    }
}

/// The engine's way to the server: a direct connection, or a gateway
/// (docs/gateway.md). The same operations on either; the engine runs on
/// this and never names which.
pub enum SyncLink {
    /// A PostgreSQL connection (`DATABASE_URL`).
    Direct(SyncConnection),
    /// An `outpost gateway` (`OUTPOST_GATEWAY_URL`).
    Gateway(crate::gateway::GatewayConnection),
}

impl SyncLink {
    /// Whether the link can be used again (a gateway client always can:
    /// it reconnects per request).
    pub fn is_open(&self) -> bool {
        match self {
            SyncLink::Direct(c) => c.is_open(),
            SyncLink::Gateway(_) => true,
        }
    }

    /// Tracking version and retention mark.
    pub async fn probe(&self) -> Result<(Option<i32>, Option<Cursor>), RemoteError> {
        match self {
            SyncLink::Direct(c) => c.probe().await,
            SyncLink::Gateway(g) => g.probe().await,
        }
    }

    /// The tracking schema's version.
    pub async fn installed_version(&self) -> Result<Option<i32>, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.installed_version().await,
            SyncLink::Gateway(g) => g.installed_version().await,
        }
    }

    /// Registers the node.
    pub async fn register_node(&self, node: Uuid, name: &str) -> Result<i64, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.register_node(node, name).await,
            SyncLink::Gateway(g) => g.register_node(node, name).await,
        }
    }

    /// Claims the file's incarnation.
    pub async fn claim_incarnation(
        &self,
        node: Uuid,
        current: Uuid,
        known: &[Uuid],
    ) -> Result<Claim, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.claim_incarnation(node, current, known).await,
            SyncLink::Gateway(g) => g.claim_incarnation(node, current, known).await,
        }
    }

    /// Whether a node at `cursor` can still pull.
    pub async fn feed_position(&self, cursor: Cursor) -> Result<FeedPosition, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.feed_position(cursor).await,
            SyncLink::Gateway(g) => g.feed_position(cursor).await,
        }
    }

    /// Records the node's cursor.
    pub async fn record_cursor(&self, node: Uuid, cursor: Cursor) -> Result<(), RemoteError> {
        match self {
            SyncLink::Direct(c) => c.record_cursor(node, cursor).await,
            SyncLink::Gateway(g) => g.record_cursor(node, cursor).await,
        }
    }

    /// How long the oldest open transaction holds the horizon.
    pub async fn horizon_age(&self) -> Result<Option<Duration>, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.horizon_age().await,
            SyncLink::Gateway(g) => g.horizon_age().await,
        }
    }

    /// Prunes the change log.
    pub async fn prune(&mut self, retention: Duration) -> Result<u64, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.prune(retention).await,
            SyncLink::Gateway(g) => g.prune(retention).await,
        }
    }

    /// Pushes a batch.
    pub async fn push(
        &mut self,
        schema: &Schema,
        node: Uuid,
        cursor: Cursor,
        rows: &[PushRow],
        limits: (Duration, Duration),
    ) -> Result<Vec<PushOutcome>, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.push(schema, node, cursor, rows, limits).await,
            SyncLink::Gateway(g) => g.push(schema, node, cursor, rows, limits).await,
        }
    }

    /// Pulls a batch.
    pub async fn pull(
        &mut self,
        schema: &Schema,
        cursor: Cursor,
        limit: i64,
        tables: Option<&[String]>,
    ) -> Result<PullBatch, RemoteError> {
        match self {
            SyncLink::Direct(c) => c.pull(schema, cursor, limit, tables).await,
            SyncLink::Gateway(g) => g.pull(schema, cursor, limit, tables).await,
        }
    }

    /// The indexes of `keys` of `table` whose rows have left this node's
    /// sync-rule scope ([`crate::gateway::GatewayConnection::outside_scope`]). A direct
    /// connection has no rules: none.
    pub async fn outside_scope(
        &self,
        schema: &Schema,
        table: &Table,
        keys: Vec<Vec<Value>>,
    ) -> Result<Vec<usize>, RemoteError> {
        match self {
            SyncLink::Direct(_) => Ok(Vec::new()),
            SyncLink::Gateway(g) => g.outside_scope(schema, table, keys).await,
        }
    }

    /// Starts a bootstrap: one snapshot for every table (direct), or one
    /// per table, each with its own cursor (a gateway, which keeps no
    /// state between requests; docs/protocol.md "Bootstrap over HTTP").
    pub async fn bootstrap(&mut self) -> Result<BootstrapSource<'_>, RemoteError> {
        match self {
            SyncLink::Direct(c) => Ok(BootstrapSource::Direct(c.bootstrap().await?)),
            SyncLink::Gateway(g) => Ok(BootstrapSource::Gateway(g)),
        }
    }
}

/// Where a bootstrap copies tables from (see [`SyncLink::bootstrap`]).
pub enum BootstrapSource<'a> {
    /// One snapshot of the server.
    Direct(crate::feed::Bootstrap<'a>),
    /// A gateway: a snapshot per table.
    Gateway(&'a crate::gateway::GatewayConnection),
}

impl<'a> BootstrapSource<'a> {
    /// One table's copy: the cursor its snapshot covers, its row count,
    /// the sync rule that filtered it (a direct copy is the whole table),
    /// and its rows in key order; with `after`, only the rows after that
    /// key (a resumed copy, [`crate::feed::resumable`] tables only).
    pub async fn table(
        &'a self,
        schema: &Schema,
        table: &'a outpost_core::schema::Table,
        after: Option<&[Value]>,
    ) -> Result<crate::gateway::TableCopy<'a>, RemoteError> {
        match self {
            BootstrapSource::Direct(b) => {
                let count = b.count(table).await?;
                let rows = b.rows_in(&schema.pg_schema, table, None, after).await?;
                Ok(crate::gateway::TableCopy {
                    cursor: b.cursor,
                    count,
                    scope: None,
                    rows: Box::pin(rows),
                })
            }
            BootstrapSource::Gateway(g) => g.copy_table(schema, table, after).await,
        }
    }

    /// Ends the bootstrap (the direct snapshot's transaction).
    pub async fn finish(self) -> Result<(), RemoteError> {
        match self {
            BootstrapSource::Direct(b) => b.finish().await,
            BootstrapSource::Gateway(_) => Ok(()),
        }
    }
}

/// The monitor's notification stream and probe, on either topology.
pub enum ChangeListener {
    /// `LISTEN outpost_changes` on the server.
    Direct(Listener),
    /// A gateway's `GET /v1/changes`.
    Gateway(crate::gateway::GatewayListener),
}

impl ChangeListener {
    /// The next notification; `None` when the stream ended.
    pub async fn notified(&mut self) -> Option<()> {
        match self {
            ChangeListener::Direct(l) => l.notified().await,
            ChangeListener::Gateway(l) => l.notified().await,
        }
    }

    /// Drops the notifications that arrived meanwhile.
    pub fn drain(&mut self) {
        match self {
            ChangeListener::Direct(l) => l.drain(),
            ChangeListener::Gateway(l) => l.drain(),
        }
    }

    /// Whether the server (or gateway) answers within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        match self {
            ChangeListener::Direct(l) => l.probe(timeout).await,
            ChangeListener::Gateway(l) => l.probe(timeout).await,
        }
    }

    /// Whether the stream is still open.
    pub fn is_open(&self) -> bool {
        match self {
            ChangeListener::Direct(l) => l.is_open(),
            ChangeListener::Gateway(l) => l.is_open(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_carry_the_origin_and_an_idle_limit() {
        assert_eq!(
            write_settings_sql(uuid::Uuid::nil(), Duration::from_secs(10)),
            "SET LOCAL outpost.origin = '00000000-0000-0000-0000-000000000000'; \
             SET LOCAL idle_in_transaction_session_timeout = 10000;"
        );
    }
}
