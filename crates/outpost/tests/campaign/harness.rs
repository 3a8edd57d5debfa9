//! One campaign run for one seed: N nodes and one PostgreSQL database on
//! the campaign's own cluster, a random workload and random faults, then
//! every node syncs until quiet and [`check`](super::check) judges the end
//! state against the harness's independent log of acknowledged writes.
//!
//! * **Nodes**: a replica file each, a TCP [`Proxy`] between the node and
//!   the server, the application's handle [`Outpost`] (model service, monitor
//!   off) and sync runs as child processes (`outpost sync`) that may be
//!   killed with SIGKILL at any moment, or abort at a named fault point.
//! * **Node writes** go three ways: plain SQL on the replica file (any
//!   program may write it; triggers capture), the model service in local
//!   mode, and the model service in remote mode (written on the server,
//!   mirrored into the replica; a write the server cannot take while
//!   unreachable is written locally instead, as `auto` mode would).
//! * **Server writes**: three writers with their own connections; some hold
//!   a transaction open across rounds (the cursor rule's hard case).
//! * **Faults**: connection cut (for a round, for a long time, in the middle
//!   of a sync), SIGKILL of a sync at a random moment, abort at a named
//!   point, a dropped push acknowledgement, PostgreSQL restarted (immediate
//!   mode: crash recovery), the change log pruned under an offline node; a
//!   stalled path in the middle of a sync (bytes held, not refused), a
//!   replica restored from a backup, a replica copied to a new node that
//!   runs beside the original, and `outpost setup` run on a replica while
//!   its node works (once per seed after the server added a column with a
//!   default).
//!
//! * **Gateway topology** (`Shape::gateway`): the nodes sync through two
//!   `outpost gateway` processes ([`Gateways`]), a proxy per gateway and a
//!   token per node, one gateway picked per sync; a gateway is killed and
//!   started again now and then (`gateway-restart`); node writes go the
//!   three ways, remote mode through the gateway's `POST /v1/query`
//!   (scoped by the sync rules when they are on).
//!
//! Randomness comes from the seed only (timings are real, so a replay is
//! faithful in its choices, not necessarily in its interleavings).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use outpost::core::config::Config;
use outpost::core::schema::Schema;
use outpost::core::sync::Direction;
use outpost::local::Replica;
use outpost::remote::tokio_postgres::{self, Client, NoTls};
use outpost::{EngineError, Mode, NodeOptions, Outpost};
use outpost_testkit::cluster::Cluster;
use outpost_testkit::proxy::Proxy;
use serde_json::{Value as Json, json};

use super::check::{
    Ack, Actor, Anomaly, AuditEvent, FinalState, Kind, ReplicaState, Tables, Unsettled, Write,
};
use super::gateway::Gateways;

/// The server's schema: related tables with a foreign key (cascading), a
/// unique column (duplicates become FAILED rows), a `BEFORE` trigger that
/// stamps every written `Post` (a derived `slug`, a `revision` counter and
/// the time: values no node writes, which every replica must hold as the
/// server stored them), and an audit history in a schema outpost does not
/// sync.
const DDL: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, body text,
  "userId" text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE,
  slug text, revision int, "stampedAt" timestamptz, legacy text DEFAULT 'old');
CREATE SCHEMA campaign;
CREATE TABLE campaign.audit (seq bigserial PRIMARY KEY, tbl text NOT NULL, pk text NOT NULL,
  op text NOT NULL, tokens text[] NOT NULL);
CREATE FUNCTION campaign.record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO campaign.audit (tbl, pk, op, tokens)
      VALUES (TG_TABLE_NAME, jsonb_build_array(OLD.id)::text, 'D', '{}');
    RETURN OLD;
  END IF;
  INSERT INTO campaign.audit (tbl, pk, op, tokens)
    VALUES (TG_TABLE_NAME, jsonb_build_array(NEW.id)::text, left(TG_OP, 1),
      array_remove(ARRAY[to_jsonb(NEW) ->> 'name', to_jsonb(NEW) ->> 'title', to_jsonb(NEW) ->> 'body'], NULL));
  RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON "User" FOR EACH ROW EXECUTE FUNCTION campaign.record();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON "Post" FOR EACH ROW EXECUTE FUNCTION campaign.record();
CREATE FUNCTION campaign.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.slug := lower(NEW.title);
  NEW.revision := CASE WHEN TG_OP = 'UPDATE' THEN coalesce(OLD.revision, 0) + 1 ELSE 1 END;
  NEW."stampedAt" := clock_timestamp();
  RETURN NEW;
END $$;
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON "Post" FOR EACH ROW EXECUTE FUNCTION campaign.stamp();
"#;

/// Columns that carry write tokens.
pub const TOKEN_COLUMNS: [&str; 3] = ["name", "title", "body"];

/// Named points where `outpost sync` aborts (`OUTPOST_FAULT=crash:<point>`).
const CRASH_POINTS: [&str; 4] = [
    "bootstrap-mid-table",
    "push-before-send",
    "push-after-commit",
    "pull-before-apply",
];

/// How long a stall holds the path's bytes: longer than the stalled
/// child's `idle_in_transaction_session_timeout`, so the server ends a
/// session the stall left inside a batch.
const STALL: Duration = Duration::from_millis(700);
/// The sync timeouts (ms) a stalled child runs with: short, so a run whose
/// connection never flows again is abandoned quickly (its round-trip
/// deadline is statement + lock + the engine's margin).
const STALL_STATEMENT_MS: u64 = 500;
const STALL_LOCK_MS: u64 = 500;
const STALL_IDLE_MS: u64 = 500;
/// The column the setup-while-serving fault adds on the server, and the
/// value its default fills into every row; nothing in the workload writes
/// it, so every server row must still hold it at the end.
const ADDED_COLUMN: &str = "note";
/// The column the same migration drops from `Post`.
const DROPPED_COLUMN: &str = "legacy";
const FILLED: &str = "filled";

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Nodes.
    pub nodes: usize,
    /// Rounds of workload and faults.
    pub rounds: usize,
    /// Writes per round (nodes and server together).
    pub ops_per_round: usize,
    /// Whether the migration of `setup-while-serving` also drops a column
    /// of `Post` (every node is then set up again before the end). On by
    /// default; `OUTPOST_CAMPAIGN_DROP_COLUMN=0` leaves it out.
    pub drop_column: bool,
    /// Nodes sync through two `outpost gateway` processes instead of
    /// holding the database's URL (`OUTPOST_CAMPAIGN_TOPOLOGY=gateway`).
    pub gateway: bool,
    /// With `gateway`: the gateways run sync rules (on by default;
    /// `OUTPOST_CAMPAIGN_RULES=0` serves every table whole, and nodes then
    /// write in remote mode through the gateways too).
    pub rules: bool,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            nodes: 4,
            rounds: 8,
            ops_per_round: 10,
            drop_column: true,
            gateway: false,
            rules: true,
        }
    }
}

/// Counts of one run (or many, added up).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Seeds run.
    pub runs: u64,
    /// Writes attempted and acknowledged, by path and kind.
    pub ops: BTreeMap<String, u64>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Sync runs, by kind.
    pub syncs: BTreeMap<String, u64>,
    /// Rows left in CONFLICT / FAILED at the end (listed, not lost).
    pub conflicts: u64,
    /// Rows left FAILED at the end.
    pub failed: u64,
    /// Anomalies found.
    pub anomalies: u64,
}

impl Figures {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &Figures) {
        self.runs += other.runs;
        for (k, v) in &other.ops {
            *self.ops.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.faults {
            *self.faults.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.syncs {
            *self.syncs.entry(k.clone()).or_default() += v;
        }
        self.conflicts += other.conflicts;
        self.failed += other.failed;
        self.anomalies += other.anomalies;
    }

    fn fault(&mut self, kind: &str) {
        *self.faults.entry(kind.to_string()).or_default() += 1;
    }

    fn op(&mut self, key: String) {
        *self.ops.entry(key).or_default() += 1;
    }

    fn sync(&mut self, kind: &str) {
        *self.syncs.entry(kind.to_string()).or_default() += 1;
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let acked: u64 = self
            .ops
            .iter()
            .filter(|(k, _)| k.ends_with(":acked"))
            .map(|(_, v)| v)
            .sum();
        let attempted: u64 = self
            .ops
            .iter()
            .filter(|(k, _)| k.ends_with(":tried"))
            .map(|(_, v)| v)
            .sum();
        let faults: u64 = self.faults.values().sum();
        writeln!(
            f,
            "runs {}, writes tried {attempted}, acknowledged {acked}, faults {faults}, anomalies {}; left listed: {} conflict, {} failed",
            self.runs, self.anomalies, self.conflicts, self.failed
        )?;
        writeln!(f, "  faults: {:?}", self.faults)?;
        writeln!(f, "  syncs: {:?}", self.syncs)?;
        write!(f, "  writes: {:?}", self.ops)
    }
}

/// SplitMix64: a small reproducible generator (no dependency).
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len() as u64) as usize)
        }
    }
}

fn key(id: &str) -> String {
    serde_json::to_string(&json!([id])).unwrap_or_default()
}

/// A node of the campaign.
struct Node {
    dir: PathBuf,
    path: PathBuf,
    /// The node's paths to the server: one to PostgreSQL, or one to each
    /// gateway.
    proxies: Vec<Arc<Proxy>>,
    /// Whose token the node holds in gateway topology (`node-<n>`): its own
    /// index, or for a copy its original's (the same user's replica on a
    /// second device), or another original node's after a `user-switch`.
    principal: usize,
    /// The application's handle; `None` only while a restore swaps the file.
    app: Option<Outpost>,
    /// Cut until this round (exclusive); 0 when online.
    offline_until: usize,
    /// Rounds in a row without a completed sync (for the retention fault).
    idle_rounds: usize,
}

impl Node {
    /// Cuts every path of the node.
    fn cut(&self) {
        self.proxies.iter().for_each(|p| p.cut());
    }

    /// Restores every path of the node.
    fn restore(&self) {
        self.proxies.iter().for_each(|p| p.restore());
    }

    fn app(&self) -> &Outpost {
        // Only `Run::restore` takes the handle, and it puts a new one back
        // before returning.
        self.app
            .as_ref()
            .expect("a node's handle is open outside a restore")
    }
}

/// A backup of a node's replica, waiting to be restored.
struct BackupTaken {
    node: usize,
    file: PathBuf,
    /// Writes logged before the backup (ids up to this).
    mark: u64,
    round: usize,
    /// The node's principal when it was taken: the restored file is that
    /// user's again (a `user-switch` may have come between).
    principal: usize,
}

/// A direct server writer; `open` holds the writes of its open transaction
/// and when it commits. Its session has a short `lock_timeout`: the harness
/// is one task, so a writer waiting for a lock another writer of the harness
/// holds would wait for ever.
struct ServerWriter {
    client: Option<Client>,
    open: Option<(Vec<Write>, Instant)>,
}

/// A write the workload wants to make.
#[derive(Debug, Clone)]
enum Op {
    InsertUser {
        id: String,
        email: String,
    },
    UpdateUser {
        id: String,
    },
    DeleteUser {
        id: String,
    },
    InsertPost {
        id: Option<String>,
        user: String,
    },
    UpdatePost {
        id: String,
        column: &'static str,
    },
    /// Gives a post to another user (and a new title: every write carries
    /// a token); gateway topology only, where it moves the post in or out
    /// of nodes' scopes.
    MovePost {
        id: String,
        user: String,
    },
    DeletePost {
        id: String,
    },
}

impl Op {
    fn table(&self) -> &'static str {
        match self {
            Op::InsertUser { .. } | Op::UpdateUser { .. } | Op::DeleteUser { .. } => "User",
            _ => "Post",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Op::InsertUser { .. } | Op::InsertPost { .. } => Kind::Insert,
            Op::UpdateUser { .. } | Op::UpdatePost { .. } | Op::MovePost { .. } => Kind::Update,
            _ => Kind::Delete,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Op::InsertUser { .. } => "insert-user",
            Op::UpdateUser { .. } => "update-user",
            Op::DeleteUser { .. } => "delete-user",
            Op::InsertPost { .. } => "insert-post",
            Op::UpdatePost { .. } => "update-post",
            Op::MovePost { .. } => "move-post",
            Op::DeletePost { .. } => "delete-post",
        }
    }
}

/// The state of one run.
struct Run {
    seed: u64,
    shape: Shape,
    rng: Rng,
    conninfo: String,
    nodes: Vec<Node>,
    writers: Vec<ServerWriter>,
    users: Vec<String>,
    posts: Vec<String>,
    next_id: u64,
    log: Vec<Write>,
    figures: Figures,
    /// A backup waiting to be restored.
    backup: Option<BackupTaken>,
    /// Writes restores threw away (see `check`).
    restore_lost: BTreeSet<u64>,
    /// Whether a replica was copied to a new node (once per seed).
    copied: bool,
    /// Rows whose insert a copy carried before it reached the server
    /// (table, key, the copied node).
    copy_carried: BTreeSet<(String, String, usize)>,
    /// Whether the server has the added column.
    column_added: bool,
    /// What the harness itself found (a stalled sync past its deadline, a
    /// session left idle in transaction, a value erased).
    found: Vec<Anomaly>,
    /// The round being run.
    round: usize,
    /// What the harness did, in order (printed for a seed with anomalies).
    trace: Vec<String>,
    /// The gateways, in gateway topology.
    gateways: Option<Gateways>,
    _dir: tempfile::TempDir,
}

/// The result of one seed.
pub struct Outcome {
    /// Its figures.
    pub figures: Figures,
    /// What the checker found (empty: sound).
    pub anomalies: Vec<Anomaly>,
    /// The end state the checker judged (to explain an anomaly).
    pub state: FinalState,
    /// What the harness did, in order: rounds, writes, syncs and faults
    /// with their nodes.
    pub trace: Vec<String>,
    /// Where the nodes' replicas and sync logs were kept, for a seed with
    /// anomalies.
    pub kept: Option<PathBuf>,
}

/// Runs one seed against the campaign's cluster.
pub async fn run_seed(cluster: &Arc<Cluster>, seed: u64, shape: Shape) -> anyhow::Result<Outcome> {
    let dbname = format!("campaign_{seed}_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(&cluster.conninfo("postgres")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{dbname}\""))
        .await
        .context("creating the seed's database")?;
    let conninfo = cluster.conninfo(&dbname);
    let result = run_in(cluster, seed, shape, &dbname, conninfo).await;
    // Best effort: the database goes whether the run passed or not.
    if let Ok(admin) = connect(&cluster.conninfo("postgres")).await {
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{dbname}\" WITH (FORCE)"
            ))
            .await;
    }
    result
}

/// The environment that points a node at the server through path `k` of
/// `proxies`: the database's URL, or a gateway's with the token of
/// `principal`.
fn server_vars(
    gateways: Option<&Gateways>,
    proxies: &[Arc<Proxy>],
    dbname: &str,
    principal: usize,
    k: usize,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let proxy = &proxies[k.min(proxies.len() - 1)];
    Ok(match gateways {
        None => vec![(
            "DATABASE_URL",
            format!("postgres://postgres@{}/{dbname}", proxy.addr),
        )],
        Some(g) => vec![
            ("OUTPOST_GATEWAY_URL", format!("http://{}", proxy.addr)),
            ("OUTPOST_GATEWAY_TOKEN", g.token(principal)?),
        ],
    })
}

/// The node's paths: one proxy to PostgreSQL, or one to each gateway.
async fn start_proxies(
    cluster: &Cluster,
    gateways: Option<&Gateways>,
) -> anyhow::Result<Vec<Arc<Proxy>>> {
    let mut proxies = Vec::new();
    match gateways {
        None => proxies.push(Arc::new(Proxy::start(cluster.addr()).await?)),
        Some(g) => {
            for k in 0..g.len() {
                proxies.push(Arc::new(Proxy::start(g.addr(k)).await?));
            }
        }
    }
    Ok(proxies)
}

/// Opens the application's handle on a node's replica, reaching the server
/// as `vars` say, in local mode.
async fn open_app(path: &Path, vars: &[(&'static str, String)]) -> anyhow::Result<Outpost> {
    let local = format!("file:{}", path.display());
    let config = Config::from_lookup(|k| match k {
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => vars
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone()),
    })?;
    let app = Outpost::open_with(
        config,
        NodeOptions {
            monitor: false,
            id_block: 50,
            ..NodeOptions::default()
        },
    )
    .await?;
    // A stall that leaves the node's open connections dead for good (the
    // `stall-mid-sync:lost` fault) would hold the handle's next run for the
    // default round-trip deadline (65 s); shorter limits keep the seed
    // quick, still with the server giving up before the node does (its
    // syncs run when the harness's long transactions have ended, so a
    // second of lock wait is plenty).
    app.engine().set_timeouts(outpost_engine::ServerTimeouts {
        statement: Duration::from_secs(1),
        lock: Duration::from_secs(1),
        idle_in_transaction: Duration::from_secs(2),
        round_trip: Duration::from_secs(3),
    });
    app.set_mode(Mode::Local).await;
    Ok(app)
}

/// A consistent copy of a replica, the two ways docs/operations.md gives:
/// SQLite's online backup API (what `sqlite3 local.db ".backup b.db"`
/// runs), or a WAL checkpoint and a plain file copy.
fn back_up(from: &Path, to: &Path, api: bool) -> anyhow::Result<()> {
    use outpost::local::rusqlite::{Connection, backup::Backup};
    let src = Connection::open(from)?;
    src.busy_timeout(Duration::from_secs(20))?;
    if api {
        let mut dst = Connection::open(to)?;
        Backup::new(&src, &mut dst)?.run_to_completion(100, Duration::ZERO, None)?;
        return Ok(());
    }
    // A reader of the WAL leaves frames behind (the first number is 1):
    // the copy would miss them, so try again.
    for _ in 0..50 {
        let busy: i64 = src.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            std::fs::copy(from, to)?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the WAL checkpoint of {} never finished", from.display())
}

/// Whether this process still has `path` (or its `-wal`) open: a handle
/// being dropped closes its SQLite connections on its own thread, and the
/// file must not be swapped under a connection that may still checkpoint.
fn still_open(path: &Path) -> bool {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target == path || target == wal)
}

async fn connect(conninfo: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(conninfo, NoTls),
    )
    .await
    .context("connecting: timed out")??;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Stalls node `i`'s path `after` a sync child started, for [`STALL`], then
/// lets it flow again (or, `for_good`, only new connections). Answers when
/// the stall began and, if the server kept a session of that child idle in
/// transaction past its timeout (plus a margin for the check itself), what
/// it found. A bootstrap's snapshot is exempt by design (docs/reliability.md:
/// it lifts the timeout for its `COPY`): a session whose last statement is
/// one of the snapshot's own (its horizon, a table's count, the `LIMIT 0`
/// probe of the columns, the `COPY`) is a bootstrap's. Each table has its
/// own snapshot, so a stall can leave one after any of them.
async fn stall_path(
    i: usize,
    after: Duration,
    for_good: bool,
    proxy: &Proxy,
    conninfo: &str,
) -> (Duration, Option<Anomaly>) {
    tokio::time::sleep(after).await;
    proxy.stall();
    tokio::time::sleep(STALL).await;
    if for_good {
        proxy.flow_new();
    } else {
        proxy.flow();
    }
    let margin = Duration::from_millis(STALL_IDLE_MS) + Duration::from_millis(800);
    tokio::time::sleep(margin.saturating_sub(STALL) + Duration::from_millis(300)).await;
    let Ok(client) = connect(conninfo).await else {
        return (after, None);
    };
    let sql = format!(
        "SELECT count(*), string_agg(left(query, 80), ' | ') FROM pg_stat_activity          WHERE application_name = 'campaign-stall-{i}' AND state LIKE 'idle in transaction%'          AND now() - state_change > interval '{} ms' AND query NOT ILIKE 'COPY%' \
         AND query NOT ILIKE '% LIMIT 0' AND query NOT ILIKE 'SELECT count(*) FROM %' \
         AND query NOT ILIKE 'SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8%'",
        margin.as_millis()
    );
    let found = match client.query_one(&sql, &[]).await {
        Ok(r) if r.get::<_, i64>(0) > 0 => Some(Anomaly {
            class: "idle-in-transaction",
            detail: format!(
                "node {i}: a stalled sync's session stays idle in transaction past {margin:?}: {:?}",
                r.get::<_, Option<String>>(1)
            ),
        }),
        _ => None,
    };
    (after, found)
}

/// Waits for the cluster to answer again (after a restart).
async fn server_up(conninfo: &str) -> anyhow::Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match connect(conninfo).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn run_in(
    cluster: &Arc<Cluster>,
    seed: u64,
    shape: Shape,
    dbname: &str,
    conninfo: String,
) -> anyhow::Result<Outcome> {
    let mut rng = Rng::new(seed);
    let mut client = connect(&conninfo).await?;
    client
        .batch_execute(DDL)
        .await
        .context("creating the schema")?;
    // A common starting point.
    let mut users = Vec::new();
    let mut posts = Vec::new();
    for i in 0..6 {
        let id = format!("u{i}");
        client
            .execute(
                r#"INSERT INTO "User" (id, email, name) VALUES ($1, $2, $3)"#,
                &[&id, &format!("seed{i}@x"), &format!("t-seed-u{i}")],
            )
            .await?;
        users.push(id);
    }
    for i in 0..8 {
        let id = format!("p{i}");
        client
            .execute(
                r#"INSERT INTO "Post" (id, title, "userId") VALUES ($1, $2, $3)"#,
                &[&id, &format!("t-seed-p{i}"), &users[i % users.len()]],
            )
            .await?;
        posts.push(id);
    }
    let schema = outpost::remote::introspect(&client, "public", None, &[]).await?;
    outpost::remote::install(&mut client, &schema).await?;
    let dir = tempfile::tempdir()?;
    let gateways = if shape.gateway {
        let url = format!("postgres://postgres@{}/{dbname}", cluster.addr());
        Some(Gateways::start(url, dir.path(), shape.rules).await?)
    } else {
        None
    };
    let mut nodes = Vec::new();
    for i in 0..shape.nodes {
        let ndir = dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&ndir)?;
        let path = ndir.join("local.db");
        let s = schema.clone();
        let p = path.clone();
        tokio::task::spawn_blocking(move || Replica::setup(&p, &s)).await??;
        let proxies = start_proxies(cluster, gateways.as_ref()).await?;
        let vars = server_vars(gateways.as_ref(), &proxies, dbname, i, 0)?;
        let app = open_app(&path, &vars).await?;
        let report = app.sync(Direction::Bidirectional).await?;
        anyhow::ensure!(
            report.success,
            "first sync of node {i}: {:?}",
            report.errors
        );
        nodes.push(Node {
            dir: ndir,
            path,
            proxies,
            principal: i,
            app: Some(app),
            offline_until: 0,
            idle_rounds: 0,
        });
    }
    let _ = rng.next();
    let mut run = Run {
        seed,
        shape,
        rng,
        conninfo,
        nodes,
        writers: (0..3)
            .map(|_| ServerWriter {
                client: None,
                open: None,
            })
            .collect(),
        users,
        posts,
        next_id: 0,
        log: Vec::new(),
        figures: Figures {
            runs: 1,
            ..Figures::default()
        },
        backup: None,
        restore_lost: BTreeSet::new(),
        copied: false,
        copy_carried: BTreeSet::new(),
        column_added: false,
        found: Vec::new(),
        round: 0,
        trace: Vec::new(),
        gateways,
        _dir: dir,
    };
    for round in 0..shape.rounds {
        run.round = round;
        run.note(format!("round {round}"));
        run.round(cluster, round).await?;
    }
    run.quiesce().await?;
    // The server's schema now, when the migration dropped a column (every
    // node was set up for it); otherwise the one the nodes started with.
    let schema = if shape.drop_column && run.column_added {
        let client = connect(&run.conninfo).await?;
        outpost::remote::introspect(&client, "public", None, &[]).await?
    } else {
        schema
    };
    let state = run.final_state(&schema).await?;
    let mut anomalies = super::check::check(&state);
    run.check_added_column().await?;
    anomalies.append(&mut run.found);
    run.figures.anomalies = anomalies.len() as u64;
    for r in &state.replicas {
        for u in r.unsettled.values() {
            match u.status.as_str() {
                "CONFLICT" => run.figures.conflicts += 1,
                "FAILED" => run.figures.failed += 1,
                _ => {}
            }
        }
    }
    for n in &run.nodes {
        n.app().shutdown().await;
    }
    // The nodes' files outlive a failing seed: its replicas, sync and
    // setup logs are what explains it.
    let kept = if anomalies.is_empty() {
        None
    } else {
        let to = std::env::temp_dir().join(format!("outpost-campaign-seed-{seed}"));
        let _ = std::fs::remove_dir_all(&to);
        copy_tree(run._dir.path(), &to).ok().map(|()| to)
    };
    Ok(Outcome {
        figures: run.figures,
        anomalies,
        state,
        trace: run.trace,
        kept,
    })
}

/// A sync child process and what was done to it; its task answers what
/// the harness found wrong with it.
struct Child {
    node: usize,
    task: tokio::task::JoinHandle<Vec<Anomaly>>,
}

/// What the server's audit history shows landed: the tokens each row was
/// written with, and the rows the server deleted.
struct Landed {
    tokens: BTreeSet<(String, String, String)>,
    deleted: BTreeSet<(String, String)>,
}

impl Landed {
    async fn read(conninfo: &str) -> anyhow::Result<Landed> {
        let client = connect(conninfo).await?;
        let mut tokens = BTreeSet::new();
        for r in client
            .query("SELECT tbl, pk, unnest(tokens) FROM campaign.audit", &[])
            .await?
        {
            tokens.insert((r.get(0), r.get(1), r.get(2)));
        }
        let mut deleted = BTreeSet::new();
        for r in client
            .query(
                "SELECT DISTINCT tbl, pk FROM campaign.audit WHERE op = 'D'",
                &[],
            )
            .await?
        {
            deleted.insert((r.get(0), r.get(1)));
        }
        Ok(Landed { tokens, deleted })
    }

    /// Whether the write is on the server. A row absent from the server is
    /// no proof that a delete landed: its insert may never have reached the
    /// server either (and come back later with a restored or copied file's
    /// pending insert). A delete landed when the server deleted the row.
    fn has(&self, w: &Write) -> bool {
        match (&w.kind, &w.token) {
            (Kind::Delete, _) => self.deleted.contains(&(w.table.clone(), w.pk.clone())),
            (_, Some(t)) => self
                .tokens
                .contains(&(w.table.clone(), w.pk.clone(), t.clone())),
            (_, None) => true,
        }
    }
}

/// Copies a directory tree (the seed's node directories).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

impl Run {
    /// Adds a line to the seed's trace.
    fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    fn token(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}-{}", self.seed, self.next_id)
    }

    fn random_op(&mut self) -> Option<Op> {
        let roll = self.rng.below(100);
        Some(match roll {
            0..=14 => {
                let id = self.fresh("u");
                // Now and then an email another user already has: the
                // server refuses it (FAILED on push, an error online).
                let email = if self.rng.chance(0.1) {
                    format!("seed{}@x", self.rng.below(6))
                } else {
                    format!("{id}@x")
                };
                Op::InsertUser { id, email }
            }
            15..=29 => Op::UpdateUser {
                id: self.rng.pick(&self.users)?.clone(),
            },
            30..=35 => Op::DeleteUser {
                id: self.rng.pick(&self.users)?.clone(),
            },
            36..=55 => {
                let user = self.rng.pick(&self.users)?.clone();
                let id = if self.rng.chance(0.7) {
                    Some(self.fresh("p"))
                } else {
                    None
                };
                Op::InsertPost { id, user }
            }
            56..=89 if self.gateways.is_some() && self.rng.chance(0.25) => Op::MovePost {
                id: self.rng.pick(&self.posts)?.clone(),
                user: self.rng.pick(&self.users)?.clone(),
            },
            56..=89 => Op::UpdatePost {
                id: self.rng.pick(&self.posts)?.clone(),
                column: if self.rng.chance(0.5) {
                    "title"
                } else {
                    "body"
                },
            },
            _ => Op::DeletePost {
                id: self.rng.pick(&self.posts)?.clone(),
            },
        })
    }

    fn record(
        &mut self,
        actor: Actor,
        op: &Op,
        id: &str,
        token: Option<String>,
        ack: Ack,
        via: &'static str,
    ) {
        let (table, kind) = (op.table(), op.kind());
        let n = self.log.len() as u64 + 1;
        self.note(format!(
            "write #{n} {actor:?} {kind:?} {table} {id} {token:?} via {via} ({ack:?})"
        ));
        self.log.push(Write {
            id: n,
            actor,
            table: table.to_string(),
            pk: key(id),
            kind,
            token,
            ack,
            via,
        });
        self.figures.op(format!(
            "{via}:{}",
            if ack == Ack::Acked {
                "acked"
            } else {
                "unknown"
            }
        ));
    }

    fn learn(&mut self, op: &Op, id: &str) {
        match op {
            Op::InsertUser { .. } => self.users.push(id.to_string()),
            Op::InsertPost { .. } => self.posts.push(id.to_string()),
            _ => {}
        }
    }

    async fn round(&mut self, cluster: &Arc<Cluster>, round: usize) -> anyhow::Result<()> {
        // Connectivity for this round: restore what ended, cut some more.
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            if node.offline_until > 0 && node.offline_until <= round {
                node.offline_until = 0;
                node.restore();
            }
        }
        if self.rng.chance(0.3) {
            let i = self.rng.below(self.nodes.len() as u64) as usize;
            if self.nodes[i].offline_until == 0 {
                let long = self.rng.chance(0.3);
                let rounds = if long {
                    4 + self.rng.below(3) as usize
                } else {
                    1 + self.rng.below(2) as usize
                };
                self.figures.fault(if long {
                    "offline-long"
                } else {
                    "connection-cut"
                });
                self.nodes[i].offline_until = round + rounds;
                self.nodes[i].cut();
                self.note(format!("node {i}: offline until round {}", round + rounds));
            }
        }
        // Sync runs as child processes, for the nodes the dice pick.
        let mut children = Vec::new();
        for i in 0..self.nodes.len() {
            if !self.rng.chance(0.7) {
                continue;
            }
            children.push(self.spawn_sync(i)?);
        }
        // A gateway killed in the middle of it all, now and then, and
        // started again once the syncs ended.
        let gateway_down = if self.gateways.is_some() && self.rng.chance(0.15) {
            let k = self.rng.below(2) as usize;
            let delay = Duration::from_millis(self.rng.below(300));
            self.figures.fault("gateway-restart");
            self.note(format!("gateway {k}: killed after {delay:?}"));
            let child = self.gateways.as_mut().and_then(|g| g.take(k));
            Some((
                k,
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(mut c) = child {
                        let _ = c.start_kill();
                        let _ = c.wait().await;
                    }
                }),
            ))
        } else {
            None
        };
        // `outpost setup` on a replica whose node keeps working.
        if self.rng.chance(0.1) {
            let i = self.rng.below(self.nodes.len() as u64) as usize;
            if self.nodes[i].offline_until == 0 {
                children.push(self.setup_while_serving(i).await?);
            }
        }
        // A server restart in the middle of it all, now and then.
        let restart = if self.rng.chance(0.06) {
            self.figures.fault("postgres-restart");
            self.note("postgres restart".into());
            let delay = Duration::from_millis(self.rng.below(300));
            let c = cluster.clone();
            Some(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                tokio::task::spawn_blocking(move || c.restart()).await
            }))
        } else {
            None
        };
        // Writes meanwhile, on nodes and on the server.
        for _ in 0..self.shape.ops_per_round {
            let Some(op) = self.random_op() else { continue };
            let who = self.rng.below(self.nodes.len() as u64 + 2) as usize;
            if who < self.nodes.len() {
                self.node_write(who, op).await;
            } else {
                let w = self.rng.below(self.writers.len() as u64) as usize;
                self.server_write(w, op).await;
            }
            if self.rng.chance(0.3) {
                tokio::time::sleep(Duration::from_millis(self.rng.below(40))).await;
            }
            self.finish_due(false).await;
        }
        // Wait for the syncs, ending long transactions when they are due
        // (a sync may be waiting for their locks).
        let waited = Instant::now();
        while !children.iter().all(|c| c.task.is_finished()) {
            self.finish_due(false).await;
            if waited.elapsed() > Duration::from_secs(180) {
                anyhow::bail!("a sync child never ended");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.note("sync children ended".into());
        for c in children {
            if let Ok(mut found) = c.task.await {
                self.found.append(&mut found);
            }
            self.nodes[c.node].idle_rounds = 0;
        }
        if let Some(r) = restart {
            match r.await {
                Ok(Ok(Ok(()))) => {}
                other => anyhow::bail!("restarting PostgreSQL failed: {other:?}"),
            }
            server_up(&self.conninfo).await?;
        }
        if let Some((k, killed)) = gateway_down {
            let _ = killed.await;
            if let Some(g) = self.gateways.as_mut() {
                g.spawn(k).await?;
            }
            self.note(format!("gateway {k}: started again"));
        }
        // The harness's own syncs below would wait for these locks.
        self.finish_due(true).await;
        // In-process syncs: a dropped acknowledgement, or pruning the
        // change log while a node has been away for a while.
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        if self.nodes[i].offline_until == 0 {
            let long_away = self
                .nodes
                .iter()
                .any(|n| n.idle_rounds >= 3 || n.offline_until > round + 1);
            if long_away && self.rng.chance(0.5) {
                self.figures.fault("changelog-pruned");
                self.nodes[i]
                    .app()
                    .engine()
                    .set_retention(Duration::from_millis(1));
                let r = self.nodes[i].app().sync(Direction::Bidirectional).await;
                self.note(format!(
                    "node {i}: in-process sync, change log pruned: {}",
                    brief(&r)
                ));
                self.nodes[i]
                    .app()
                    .engine()
                    .set_retention(Duration::from_secs(7 * 24 * 3600));
                self.figures.sync("in-process");
            } else if self.rng.chance(0.3) {
                self.figures.fault("ack-dropped");
                self.nodes[i]
                    .app()
                    .engine()
                    .arm_fault(outpost_engine::FaultPoint::PushAfterCommit);
                let r = self.nodes[i].app().sync(Direction::Bidirectional).await;
                self.note(format!(
                    "node {i}: in-process sync, acknowledgement dropped: {}",
                    brief(&r)
                ));
                self.figures.sync("in-process");
            }
        }
        // A backup now, restored a round or more later (the node's handle
        // stopped meanwhile); or a copy of a replica to a new node.
        match self.backup.take() {
            Some(b)
                if b.round < round && (self.rng.chance(0.5) || round + 1 == self.shape.rounds) =>
            {
                self.restore(b).await?;
            }
            Some(b) => self.backup = Some(b),
            None if round + 2 < self.shape.rounds && self.rng.chance(0.25) => {
                let i = self.rng.below(self.nodes.len() as u64) as usize;
                self.take_backup(i, round).await?;
            }
            None => {}
        }
        if !self.copied && round + 1 < self.shape.rounds && self.rng.chance(0.05) {
            let i = self.rng.below(self.nodes.len() as u64) as usize;
            self.copy_replica(cluster, i).await?;
        }
        // Drawn only through gateways, so direct seeds keep their course.
        if self.gateways.is_some() && round + 1 < self.shape.rounds && self.rng.chance(0.3) {
            let i = self.rng.below(self.nodes.len() as u64) as usize;
            self.switch_user(i).await?;
        }
        for n in &mut self.nodes {
            n.idle_rounds += 1;
        }
        Ok(())
    }

    fn spawn_sync(&mut self, i: usize) -> anyhow::Result<Child> {
        // Through a gateway, either one: nodes switch between them.
        let k = if self.gateways.is_some() {
            self.rng.below(2) as usize
        } else {
            0
        };
        let vars = self.server_vars(i, k)?;
        let node = &self.nodes[i];
        let proxy = node.proxies[k].clone();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_outpost"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("sync.log"))?;
        for v in [
            "DATABASE_URL",
            "OUTPOST_GATEWAY_URL",
            "OUTPOST_GATEWAY_TOKEN",
        ] {
            cmd.env_remove(v);
        }
        cmd.envs(vars);
        cmd.arg("sync")
            .current_dir(&node.dir)
            .env(
                "LOCAL_DATABASE_URL",
                format!("file:{}", node.path.display()),
            )
            .env("LOCAL_DATABASE_SYNC_INTERVAL", "0")
            .env_remove("OUTPOST_FAULT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let roll = self.rng.below(100);
        let mut what = String::from("plain");
        let mut kill_after = None;
        let mut cut_after = None;
        let mut stall = None;
        match roll {
            0..=11 => {
                let point = *self.rng.pick(&CRASH_POINTS).unwrap_or(&"push-after-commit");
                cmd.env("OUTPOST_FAULT", format!("crash:{point}"));
                self.figures.fault(&format!("abort-at:{point}"));
                what = format!("abort at {point}");
            }
            12..=29 => {
                kill_after = Some(Duration::from_millis(self.rng.below(250)));
                self.figures.fault("sigkill");
                what = format!("SIGKILL after {kill_after:?}");
            }
            30..=37 if self.nodes[i].offline_until == 0 => {
                cut_after = Some(Duration::from_millis(self.rng.below(200)));
                self.figures.fault("cut-mid-sync");
                what = format!("cut after {cut_after:?}");
            }
            38..=40 if self.nodes[i].offline_until == 0 => {
                // Mostly the path flows again with the held bytes; now and
                // then the open connections stay dead for good (a NAT that
                // lost its mappings) and only the run's deadline ends it.
                let for_good = self.rng.chance(0.2);
                let after = Duration::from_millis(self.rng.below(150));
                self.figures.fault(if for_good {
                    "stall-mid-sync:lost"
                } else {
                    "stall-mid-sync:flows"
                });
                // Short limits, and a name to find its sessions by (a
                // gateway's sessions are its own: only the limits).
                cmd.env("OUTPOST_STATEMENT_TIMEOUT", STALL_STATEMENT_MS.to_string())
                    .env("OUTPOST_LOCK_TIMEOUT", STALL_LOCK_MS.to_string())
                    .env(
                        "OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT",
                        STALL_IDLE_MS.to_string(),
                    );
                if self.gateways.is_none() {
                    cmd.env(
                        "DATABASE_URL",
                        format!(
                            "postgres://postgres@{}/{}?application_name=campaign-stall-{i}",
                            proxy.addr,
                            self.dbname()
                        ),
                    );
                }
                stall = Some((after, for_good));
                what = format!("stall after {after:?} (for good: {for_good})");
            }
            _ => {}
        }
        self.figures.sync("child-process");
        self.note(format!("node {i}: sync child starts ({what})"));
        let mut child = cmd.spawn().context("starting outpost sync")?;
        let cut = cut_after.map(|d| (d, proxy.clone()));
        let stall = stall.map(|s| (s, proxy, self.conninfo.clone()));
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let staller = stall.map(|((after, for_good), proxy, conninfo)| {
                tokio::spawn(async move { stall_path(i, after, for_good, &proxy, &conninfo).await })
            });
            let cutter = cut.map(|(d, proxy)| {
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    proxy.cut();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    proxy.restore();
                })
            });
            match kill_after {
                Some(d) => {
                    tokio::select! {
                        _ = child.wait() => {}
                        _ = tokio::time::sleep(d) => {
                            let _ = child.start_kill(); // SIGKILL
                            let _ = child.wait().await;
                        }
                    }
                }
                None => {
                    if tokio::time::timeout(Duration::from_secs(90), child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                    }
                }
            }
            let ended = started.elapsed();
            if let Some(c) = cutter {
                let _ = c.await;
            }
            let mut found = Vec::new();
            if let Some(s) = staller {
                let (after, idle) = s.await.unwrap_or((Duration::ZERO, None));
                found.extend(idle);
                // The run must end within its deadline after the stall
                // began (plus the time to start the process and exit).
                let deadline = outpost_engine::ServerTimeouts::new(
                    Duration::from_millis(STALL_STATEMENT_MS),
                    Duration::from_millis(STALL_LOCK_MS),
                )
                .round_trip;
                let bound = after + STALL + deadline + Duration::from_secs(3);
                if ended > bound {
                    found.push(Anomaly {
                        class: "stall-hang",
                        detail: format!(
                            "node {i}: a sync stalled {after:?} after it started ended after {ended:?}, past its bound {bound:?}"
                        ),
                    });
                }
            }
            found
        });
        Ok(Child { node: i, task })
    }

    /// `outpost setup` on node `i`'s replica while the node works (its
    /// handle open, maybe a sync child running); the first time in a seed,
    /// after the server added a column with a default that fills every row.
    async fn setup_while_serving(&mut self, i: usize) -> anyhow::Result<Child> {
        if !self.column_added {
            // The harness's own open transactions would block the ALTER.
            self.finish_due(true).await;
            let client = connect(&self.conninfo).await?;
            client.batch_execute("SET lock_timeout = '3s'").await?;
            // One migration: a column added to User, one dropped from Post
            // (the nodes that are not set up again keep Post's edits
            // queued until they are; every node is before the end).
            let drop = if self.shape.drop_column {
                format!(r#"; ALTER TABLE "Post" DROP COLUMN "{DROPPED_COLUMN}""#)
            } else {
                String::new()
            };
            let added = client
                .batch_execute(&format!(
                    r#"ALTER TABLE "User" ADD COLUMN "{ADDED_COLUMN}" text DEFAULT '{FILLED}'{drop}"#
                ))
                .await;
            // A sync holding a lock past the timeout: set up without it.
            self.column_added = added.is_ok();
        }
        self.figures.fault(if self.column_added {
            "setup-while-serving"
        } else {
            "setup-while-serving:unchanged"
        });
        self.note(format!(
            "node {i}: setup while serving (column added: {})",
            self.column_added
        ));
        let mut cmd = self.setup_command(i)?;
        let mut child = cmd.spawn().context("starting outpost setup")?;
        let task = tokio::spawn(async move {
            // A setup that fails (the path cut meanwhile) changes nothing;
            // the node keeps working either way.
            if tokio::time::timeout(Duration::from_secs(90), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Vec::new()
        });
        Ok(Child { node: i, task })
    }

    /// `outpost setup` for node `i`'s replica, through its proxy; its
    /// output goes to the node's `setup.log`.
    fn setup_command(&self, i: usize) -> anyhow::Result<tokio::process::Command> {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("setup.log"))?;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_outpost"));
        for v in [
            "DATABASE_URL",
            "OUTPOST_GATEWAY_URL",
            "OUTPOST_GATEWAY_TOKEN",
        ] {
            cmd.env_remove(v);
        }
        cmd.envs(self.server_vars(i, 0)?);
        cmd.arg("setup")
            .current_dir(&node.dir)
            .env(
                "LOCAL_DATABASE_URL",
                format!("file:{}", node.path.display()),
            )
            .env_remove("OUTPOST_FAULT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// After the migration, every node is set up for it before the end
    /// (as an operator would, `outpost setup` on each device): a node left
    /// on the old schema keeps `Post`'s edits queued, which is right but
    /// never converges. Setup on a replica already migrated changes
    /// nothing.
    async fn setup_all(&mut self) -> anyhow::Result<()> {
        if !self.column_added || !self.shape.drop_column {
            return Ok(());
        }
        for i in 0..self.nodes.len() {
            let status = self
                .setup_command(i)?
                .status()
                .await
                .context("running outpost setup")?;
            anyhow::ensure!(
                status.success(),
                "outpost setup failed on node {i} (see its setup.log)"
            );
        }
        self.note("every node set up for the migration".into());
        Ok(())
    }

    /// Backs node `i`'s replica up while it runs.
    async fn take_backup(&mut self, i: usize, round: usize) -> anyhow::Result<()> {
        let api = self.rng.chance(0.5);
        let file = self.nodes[i].dir.join(format!("backup-{round}.db"));
        let (from, to) = (self.nodes[i].path.clone(), file.clone());
        tokio::task::spawn_blocking(move || back_up(&from, &to, api)).await??;
        self.figures.fault(if api {
            "backup-taken:api"
        } else {
            "backup-taken:checkpointed-copy"
        });
        self.note(format!("node {i}: backup taken (api: {api})"));
        self.backup = Some(BackupTaken {
            node: i,
            file,
            mark: self.log.len() as u64,
            round,
            principal: self.nodes[i].principal,
        });
        Ok(())
    }

    /// Puts the backup back in place of its node's replica, as
    /// docs/operations.md says (node stopped, `-wal`/`-shm` removed), and
    /// starts the node again. First records which of the node's writes
    /// since the backup the restore throws away: those the server does not
    /// have now (they were never synced; for a delete, the server never
    /// deleted the row).
    async fn restore(&mut self, b: BackupTaken) -> anyhow::Result<()> {
        self.figures.fault("restore-from-backup");
        self.note(format!(
            "node {}: backup of round {} restored",
            b.node, b.round
        ));
        let landed = Landed::read(&self.conninfo).await?;
        for w in &self.log {
            if w.id <= b.mark || w.actor != Actor::Node(b.node) || w.ack != Ack::Acked {
                continue;
            }
            if !landed.has(w) {
                self.restore_lost.insert(w.id);
                self.figures.op("restore-threw-away".into());
            }
        }
        self.stop_app(b.node).await?;
        let node = &mut self.nodes[b.node];
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", node.path.display()));
            if side.exists() {
                std::fs::remove_file(side)?;
            }
        }
        std::fs::copy(&b.file, &node.path)?;
        node.principal = b.principal;
        let vars = self.server_vars(b.node, 0)?;
        let node = &mut self.nodes[b.node];
        node.app = Some(open_app(&node.path, &vars).await?);
        Ok(())
    }

    /// Shuts node `i`'s handle down and waits until its replica is closed.
    async fn stop_app(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        if let Some(app) = node.app.take() {
            app.shutdown().await;
        }
        let waited = Instant::now();
        while still_open(&node.path) {
            anyhow::ensure!(
                waited.elapsed() < Duration::from_secs(20),
                "node {i}'s replica stays open after its handle was shut down"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// A shared device's next user (gateway topology): node `i`, with
    /// nothing left to settle, is opened with another original node's
    /// principal; it becomes that principal's node as it opens
    /// (docs/gateway.md, "A shared device"), and from then on its rows must
    /// be those of the new principal's scope.
    async fn switch_user(&mut self, i: usize) -> anyhow::Result<()> {
        let originals = self.shape.nodes;
        let Some(app) = self.nodes[i].app.as_ref() else {
            return Ok(());
        };
        // The leaving user syncs first, as an app does at sign-out; it may
        // fail (the node offline), and what it leaves decides below.
        let _ = app
            .engine()
            .sync(outpost_engine::SyncOptions::new(
                outpost_core::sync::Direction::Bidirectional,
                outpost_core::sync::Trigger::Manual,
            ))
            .await;
        let status = app.engine().status().await?;
        if originals < 2 || status.pending + status.conflicts + status.failed > 0 {
            self.figures.op("user-switch-skipped".into());
            return Ok(());
        }
        let from = self.nodes[i].principal;
        let to = (from + 1 + self.rng.below(originals as u64 - 1) as usize) % originals;
        self.figures.fault("user-switch");
        self.note(format!(
            "node {i}: user node-{from} signs out, node-{to} signs in"
        ));
        self.stop_app(i).await?;
        self.nodes[i].principal = to;
        let vars = self.server_vars(i, 0)?;
        let app = open_app(&self.nodes[i].path, &vars).await?;
        anyhow::ensure!(
            app.engine().node_id() != status.node_id,
            "node {i}: opened under another principal with nothing to settle, it did not become a new node"
        );
        self.nodes[i].app = Some(app);
        Ok(())
    }

    /// Copies node `i`'s replica (while it runs) to a new node with its own
    /// directory and path, which runs beside the original from now on.
    async fn copy_replica(&mut self, cluster: &Arc<Cluster>, i: usize) -> anyhow::Result<()> {
        self.figures.fault("replica-copy");
        let n = self.nodes.len();
        self.note(format!("node {n}: a copy of node {i}'s replica"));
        // The copy carries node i's inserts not yet on the server: either
        // device may push its own state of those rows first (see `check`).
        let landed = Landed::read(&self.conninfo).await?;
        for w in &self.log {
            if w.actor == Actor::Node(i)
                && w.kind == Kind::Insert
                && w.ack == Ack::Acked
                && !landed.has(w)
            {
                self.copy_carried.insert((w.table.clone(), w.pk.clone(), i));
            }
        }
        let dir = self._dir.path().join(format!("node{n}"));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("local.db");
        let (from, to) = (self.nodes[i].path.clone(), path.clone());
        tokio::task::spawn_blocking(move || back_up(&from, &to, true)).await??;
        let proxies = start_proxies(cluster, self.gateways.as_ref()).await?;
        let principal = self.nodes[i].principal;
        let vars = server_vars(
            self.gateways.as_ref(),
            &proxies,
            &self.dbname(),
            principal,
            0,
        )?;
        let app = open_app(&path, &vars).await?;
        self.nodes.push(Node {
            dir,
            path,
            proxies,
            principal,
            app: Some(app),
            offline_until: 0,
            idle_rounds: 0,
        });
        self.copied = true;
        Ok(())
    }

    /// After `setup-while-serving` added a column: it still holds its
    /// value on every server row (nothing wrote it; a stale schema would
    /// push NULL over it), and every replica that has the column agrees
    /// with the server.
    async fn check_added_column(&mut self) -> anyhow::Result<()> {
        if !self.column_added {
            return Ok(());
        }
        let client = connect(&self.conninfo).await?;
        let server: BTreeMap<String, Option<String>> = client
            .query(&format!(r#"SELECT id, "{ADDED_COLUMN}" FROM "User""#), &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (id, v) in &server {
            if v.as_deref() != Some(FILLED) {
                self.found.push(Anomaly {
                    class: "erased",
                    detail: format!(
                        "server: User {id}: the added column holds {v:?}, not its filled value {FILLED:?}"
                    ),
                });
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let path = n.path.clone();
            let local = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                use outpost::local::rusqlite::{Connection, OpenFlags};
                let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                let has: i64 = conn.query_row(
                    "SELECT count(*) FROM pragma_table_info('User') WHERE name = ?1",
                    [ADDED_COLUMN],
                    |r| r.get(0),
                )?;
                if has == 0 {
                    return Ok(None);
                }
                let mut stmt = conn.prepare(&format!(
                    r#"SELECT u.id, u."{ADDED_COLUMN}" FROM "User" u
                       WHERE NOT EXISTS (SELECT 1 FROM _outpost_rows r WHERE r.table_name = 'User'
                         AND r.pk = json_array(u.id) AND r.status IN ('CONFLICT', 'FAILED'))"#
                ))?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(rows))
            })
            .await??;
            for (id, v) in local.into_iter().flatten() {
                if server.get(&id).is_some_and(|s| *s != v) {
                    self.found.push(Anomaly {
                        class: "diverged",
                        detail: format!(
                            "node {i}: User {id}: the added column holds {v:?}, the server {:?}",
                            server.get(&id)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// [`server_vars`] of node `i` through its path `k`.
    fn server_vars(&self, i: usize, k: usize) -> anyhow::Result<Vec<(&'static str, String)>> {
        server_vars(
            self.gateways.as_ref(),
            &self.nodes[i].proxies,
            &self.dbname(),
            self.nodes[i].principal,
            k,
        )
    }

    fn dbname(&self) -> String {
        self.conninfo
            .split_whitespace()
            .find_map(|p| p.strip_prefix("dbname="))
            .unwrap_or_default()
            .to_string()
    }

    /// A write on node `i`, by one of the three paths.
    async fn node_write(&mut self, i: usize, op: Op) {
        // Under sync rules, remote mode runs scoped through the gateway: a
        // write outside the node's scope is refused there (not recorded).
        let path = self.rng.below(3);
        let token = self.token();
        let via = match path {
            0 => "replica-sql",
            1 => "model-local",
            _ => "model-remote",
        };
        self.figures.op(format!("{via}:tried"));
        self.figures.op(format!("op:{}", op.name()));
        if path == 2 {
            let app = self.nodes[i].app().clone();
            app.set_mode(Mode::Remote).await;
            // Bounded: a lock held by one of the harness's own open server
            // transactions would block it for ever. Timed out = unknown.
            let result =
                match tokio::time::timeout(Duration::from_secs(2), model_write(&app, &op, &token))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(EngineError::OutcomeUnknown("timed out".into())),
                };
            app.set_mode(Mode::Local).await;
            match result {
                Ok(Some(id)) => {
                    self.learn(&op, &id);
                    self.record(Actor::Node(i), &op, &id, Some(token), Ack::Acked, via);
                    return;
                }
                Ok(None) => return,
                Err(EngineError::OutcomeUnknown(_)) => {
                    if let Some(id) = op_id(&op) {
                        self.learn(&op, &id);
                        self.record(Actor::Node(i), &op, &id, Some(token), Ack::Unknown, via);
                    }
                    return;
                }
                Err(EngineError::Unreachable(_)) => {
                    // As `auto` mode does: the server is away, write locally.
                }
                Err(_) => return,
            }
        }
        let result = if path == 0 {
            let p = self.nodes[i].path.clone();
            let (o, t) = (op.clone(), token.clone());
            tokio::task::spawn_blocking(move || sql_write(&p, &o, &t))
                .await
                .unwrap_or(Ok(None))
        } else {
            let app = self.nodes[i].app().clone();
            model_write(&app, &op, &token)
                .await
                .map_err(|e| e.to_string())
        };
        if let Ok(Some(id)) = result {
            self.learn(&op, &id);
            let via = if path == 2 {
                "model-remote-fallback"
            } else {
                via
            };
            self.record(Actor::Node(i), &op, &id, Some(token), Ack::Acked, via);
        }
    }

    /// A write by server writer `w`: autocommit, or inside a long
    /// transaction (started now and then; its writes count when it commits).
    async fn server_write(&mut self, w: usize, op: Op) {
        self.figures.op("server:tried".into());
        if self.writers[w]
            .client
            .as_ref()
            .is_none_or(|c| c.is_closed())
        {
            self.writers[w].open = None;
            self.writers[w].client = match connect(&self.conninfo).await {
                Ok(c) if c.batch_execute("SET lock_timeout = '300ms'").await.is_ok() => Some(c),
                _ => None,
            };
        }
        let token = self.token();
        let start_tx = self.writers[w].open.is_none() && self.rng.chance(0.15);
        let until = Instant::now() + Duration::from_millis(100 + self.rng.below(900));
        let Some(client) = self.writers[w].client.as_ref() else {
            return;
        };
        if start_tx {
            if client.batch_execute("BEGIN").await.is_err() {
                return;
            }
            self.figures.fault("long-server-transaction");
            self.writers[w].open = Some((Vec::new(), until));
        }
        let Some(client) = self.writers[w].client.as_ref() else {
            return;
        };
        let id = op_id(&op).unwrap_or_else(|| format!("p{}-{}", self.seed, self.next_id));
        let result = server_sql(client, &op, &id, &token).await;
        let in_tx = self.writers[w].open.is_some();
        match result {
            Ok(0) => {}
            Ok(_) => {
                self.learn(&op, &id);
                let n = self.log.len() as u64 + 1;
                let write = Write {
                    id: n,
                    actor: Actor::Server,
                    table: op.table().into(),
                    pk: key(&id),
                    kind: op.kind(),
                    token: Some(token),
                    ack: Ack::Acked,
                    via: "server",
                };
                if in_tx {
                    if let Some((pending, _)) = self.writers[w].open.as_mut() {
                        pending.push(write);
                    }
                } else {
                    self.log.push(write);
                    self.figures.op("server:acked".into());
                }
            }
            Err(e) => {
                let lost_connection = e.is_closed() || e.code().is_none();
                if in_tx {
                    // The transaction is aborted: nothing of it lands.
                    if let Some(c) = self.writers[w].client.as_ref() {
                        let _ = c.batch_execute("ROLLBACK").await;
                    }
                    self.writers[w].open = None;
                } else if lost_connection {
                    self.learn(&op, &id);
                    self.record(Actor::Server, &op, &id, Some(token), Ack::Unknown, "server");
                }
            }
        }
    }

    /// Commits the long transactions whose time came (all with `force`).
    async fn finish_due(&mut self, force: bool) {
        for w in 0..self.writers.len() {
            let due = self.writers[w]
                .open
                .as_ref()
                .is_some_and(|(_, until)| force || *until <= Instant::now());
            if due {
                self.finish_tx(w).await;
            }
        }
    }

    async fn finish_tx(&mut self, w: usize) {
        let Some((pending, _)) = self.writers[w].open.take() else {
            return;
        };
        let Some(client) = self.writers[w].client.as_ref() else {
            return;
        };
        let ack = match client.batch_execute("COMMIT").await {
            Ok(()) => Ack::Acked,
            Err(e) if e.is_closed() || e.code().is_none() => Ack::Unknown,
            Err(_) => return,
        };
        for mut write in pending {
            write.id = self.log.len() as u64 + 1;
            write.ack = ack;
            self.figures.op(format!(
                "server:{}",
                if ack == Ack::Acked {
                    "acked"
                } else {
                    "unknown"
                }
            ));
            self.log.push(write);
        }
    }

    /// Ends the faults and syncs every node until quiet: every report a
    /// success, nothing pending, every replica equal to the server.
    async fn quiesce(&mut self) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            n.restore();
            n.offline_until = 0;
        }
        server_up(&self.conninfo).await?;
        for w in 0..self.writers.len() {
            if self.writers[w]
                .client
                .as_ref()
                .is_none_or(|c| c.is_closed())
            {
                self.writers[w].open = None;
            }
            self.finish_tx(w).await;
        }
        self.setup_all().await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last_error = String::new();
        loop {
            let mut quiet = true;
            for (i, n) in self.nodes.iter().enumerate() {
                self.figures
                    .syncs
                    .entry("until-quiet".into())
                    .and_modify(|v| *v += 1)
                    .or_insert(1);
                match n.app().sync(Direction::Bidirectional).await {
                    Ok(r) if r.success && !r.held_back => {
                        let s = r.results.values().map(|s| s.records_processed).sum::<u64>();
                        if s > 0 || r.bootstrapped {
                            quiet = false;
                        }
                    }
                    Ok(r) => {
                        quiet = false;
                        last_error = format!("node {i}: {:?}", r.errors);
                    }
                    Err(e) => {
                        quiet = false;
                        last_error = format!("node {i}: {e}");
                    }
                }
            }
            if quiet {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("the nodes never went quiet; last error: {last_error}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn final_state(&self, schema: &Schema) -> anyhow::Result<FinalState> {
        let client = connect(&self.conninfo).await?;
        let mut server = Tables::new();
        for t in &schema.tables {
            let rows = outpost::remote::feed::all_rows(&client, schema, &t.name).await?;
            server.insert(t.name.clone(), to_rows(t, rows));
        }
        let audit = client
            .query(
                "SELECT seq, tbl, pk, op, tokens FROM campaign.audit ORDER BY seq",
                &[],
            )
            .await?
            .iter()
            .map(|r| AuditEvent {
                seq: r.get(0),
                table: r.get(1),
                pk: r.get(2),
                op: r.get(3),
                tokens: r.get(4),
            })
            .collect();
        let mut replicas = Vec::new();
        for n in &self.nodes {
            let s = schema.clone();
            let state = n
                .app()
                .engine()
                .with_replica(move |r| {
                    let mut tables = Tables::new();
                    for t in &s.tables {
                        tables.insert(t.name.clone(), to_rows(t, r.all_rows(&t.name)?));
                    }
                    r.fold_changes()?;
                    let mut stmt = r
                        .connection()
                        .prepare("SELECT table_name, pk, status, error FROM _outpost_rows WHERE status <> 'SYNCED'")
                        .map_err(outpost::local::LocalError::sqlite("campaign"))?;
                    let unsettled = stmt
                        .query_map([], |row| {
                            Ok((
                                (row.get(0)?, row.get(1)?),
                                Unsettled {
                                    status: row.get(2)?,
                                    reason: row.get(3)?,
                                },
                            ))
                        })
                        .map_err(outpost::local::LocalError::sqlite("campaign"))?
                        .collect::<Result<BTreeMap<_, _>, _>>()
                        .map_err(outpost::local::LocalError::sqlite("campaign"))?;
                    Ok(ReplicaState {
                        tables,
                        unsettled,
                        scope: None,
                    })
                })
                .await?;
            let scope = self
                .gateways
                .as_ref()
                .filter(|g| g.rules())
                .map(|_| super::gateway::scope(&server, n.principal));
            replicas.push(ReplicaState { scope, ..state });
        }
        Ok(FinalState {
            server,
            replicas,
            audit,
            log: self.log.clone(),
            token_columns: TOKEN_COLUMNS.iter().map(|s| s.to_string()).collect(),
            restore_lost: self.restore_lost.clone(),
            copy_carried: self.copy_carried.clone(),
        })
    }
}

fn to_rows(
    t: &outpost::core::schema::Table,
    rows: Vec<Vec<outpost::core::types::Value>>,
) -> Vec<(String, super::check::Row)> {
    let key_idx: Vec<usize> = t
        .primary_key
        .iter()
        .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
        .collect();
    rows.into_iter()
        .map(|r| {
            let pk: Vec<Json> = key_idx
                .iter()
                .map(|&i| r[i].to_json(&t.columns[i].ty))
                .collect();
            let row = t
                .columns
                .iter()
                .zip(&r)
                .map(|(c, v)| (c.name.clone(), v.to_json(&c.ty)))
                .collect();
            (serde_json::to_string(&pk).unwrap_or_default(), row)
        })
        .collect()
}

fn op_id(op: &Op) -> Option<String> {
    match op {
        Op::InsertUser { id, .. }
        | Op::UpdateUser { id }
        | Op::DeleteUser { id }
        | Op::UpdatePost { id, .. }
        | Op::MovePost { id, .. }
        | Op::DeletePost { id } => Some(id.clone()),
        Op::InsertPost { id, .. } => id.clone(),
    }
}

/// The write as plain SQL on the replica file (captured by its triggers).
/// `Ok(Some(id))` when a row was written and committed.
fn sql_write(path: &std::path::Path, op: &Op, token: &str) -> Result<Option<String>, String> {
    use outpost::local::rusqlite::{Connection, params};
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(20))
        .map_err(|e| e.to_string())?;
    let (n, id) = match op {
        Op::InsertUser { id, email } => (
            conn.execute(
                r#"INSERT INTO "User" (id, email, name) VALUES (?1, ?2, ?3)"#,
                params![id, email, token],
            ),
            id.clone(),
        ),
        Op::UpdateUser { id } => (
            conn.execute(
                r#"UPDATE "User" SET name = ?1 WHERE id = ?2"#,
                params![token, id],
            ),
            id.clone(),
        ),
        Op::DeleteUser { id } => (
            conn.execute(r#"DELETE FROM "User" WHERE id = ?1"#, params![id]),
            id.clone(),
        ),
        Op::InsertPost { id, user } => {
            let id = id.clone().unwrap_or_else(|| format!("px-{token}"));
            (
                conn.execute(
                    r#"INSERT INTO "Post" (id, title, "userId") VALUES (?1, ?2, ?3)"#,
                    params![id, token, user],
                ),
                id,
            )
        }
        Op::UpdatePost { id, column } => (
            conn.execute(
                &format!(r#"UPDATE "Post" SET "{column}" = ?1 WHERE id = ?2"#),
                params![token, id],
            ),
            id.clone(),
        ),
        Op::MovePost { id, user } => (
            conn.execute(
                r#"UPDATE "Post" SET "userId" = ?1, title = ?2 WHERE id = ?3"#,
                params![user, token, id],
            ),
            id.clone(),
        ),
        Op::DeletePost { id } => (
            conn.execute(r#"DELETE FROM "Post" WHERE id = ?1"#, params![id]),
            id.clone(),
        ),
    };
    match n {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(id)),
        Err(e) => Err(e.to_string()),
    }
}

/// The write through the model service (in the node's current mode).
async fn model_write(app: &Outpost, op: &Op, token: &str) -> Result<Option<String>, EngineError> {
    let out: Json = match op {
        Op::InsertUser { id, email } => {
            app.model("User")?
                .create(json!({"data": {"id": id, "email": email, "name": token}}))
                .await?
        }
        Op::UpdateUser { id } => {
            app.model("User")?
                .update(json!({"where": {"id": id}, "data": {"name": token}}))
                .await?
        }
        Op::DeleteUser { id } => {
            app.model("User")?
                .delete(json!({"where": {"id": id}}))
                .await?
        }
        Op::InsertPost { id, user } => {
            let mut data = json!({"title": token, "userId": user});
            if let Some(id) = id {
                data["id"] = json!(id);
            }
            app.model("Post")?.create(json!({"data": data})).await?
        }
        Op::UpdatePost { id, column } => {
            app.model("Post")?
                .update(json!({"where": {"id": id}, "data": {*column: token}}))
                .await?
        }
        Op::MovePost { id, user } => {
            app.model("Post")?
                .update(json!({"where": {"id": id}, "data": {"userId": user, "title": token}}))
                .await?
        }
        Op::DeletePost { id } => {
            app.model("Post")?
                .delete(json!({"where": {"id": id}}))
                .await?
        }
    };
    Ok(out.get("id").and_then(Json::as_str).map(str::to_string))
}

/// The write on the server; the number of rows it touched.
async fn server_sql(
    client: &Client,
    op: &Op,
    id: &str,
    token: &str,
) -> Result<u64, tokio_postgres::Error> {
    match op {
        Op::InsertUser { email, .. } => {
            client
                .execute(
                    r#"INSERT INTO "User" (id, email, name) VALUES ($1, $2, $3)"#,
                    &[&id, email, &token],
                )
                .await
        }
        Op::UpdateUser { .. } => {
            client
                .execute(
                    r#"UPDATE "User" SET name = $1 WHERE id = $2"#,
                    &[&token, &id],
                )
                .await
        }
        Op::DeleteUser { .. } => {
            client
                .execute(r#"DELETE FROM "User" WHERE id = $1"#, &[&id])
                .await
        }
        Op::InsertPost { user, .. } => {
            client
                .execute(
                    r#"INSERT INTO "Post" (id, title, "userId") VALUES ($1, $2, $3)"#,
                    &[&id, &token, user],
                )
                .await
        }
        Op::UpdatePost { column, .. } => {
            client
                .execute(
                    &format!(r#"UPDATE "Post" SET "{column}" = $1 WHERE id = $2"#),
                    &[&token, &id],
                )
                .await
        }
        Op::MovePost { user, .. } => {
            client
                .execute(
                    r#"UPDATE "Post" SET "userId" = $1, title = $2 WHERE id = $3"#,
                    &[user, &token, &id],
                )
                .await
        }
        Op::DeletePost { .. } => {
            client
                .execute(r#"DELETE FROM "Post" WHERE id = $1"#, &[&id])
                .await
        }
    }
}

/// A sync's outcome in a few words, for the trace.
fn brief<T: std::fmt::Debug, E: std::fmt::Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(v) => {
            let s = format!("{v:?}");
            s.chars().take(200).collect()
        }
        Err(e) => format!("error: {e}"),
    }
}
