//! B12: one gateway's fan-out to many connected nodes (issue 21's load
//! benchmark; bounded, loopback). `--b12-nodes` simulated nodes, each with
//! a token of its own, hold the gateway's change stream (`GET /v1/changes`)
//! and pull on every notification, as a node's runtime does, without a
//! replica (the node's SQLite side is B5's). Server commits, one at a time,
//! are timed until every node's pull has returned the committed row:
//! latency per node and commit (p50, p99) and the time until the last node
//! had it. Beside them, the gateway's resident memory per connected node
//! and the most PostgreSQL connections it held, and the same load spread
//! over two gateways against one (the gateways are stateless; on a machine
//! with few cores the second one adds no CPU).
//!
//! Each gateway runs in a child process of this binary
//! (`--child-gateway`), so its memory is its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use outpost_core::config::GatewayTarget;
use outpost_core::schema::Schema;
use outpost_core::sync::Cursor;
use outpost_core::types::Value;
use outpost_remote::gateway::{GatewayConnection, GatewayListener};
use outpost_testkit::TestDb;
use tokio::io::AsyncBufReadExt as _;

use crate::Args;

/// The shared secret of the benchmark's gateways.
const SECRET: &str = "bench-secret-0123456789-0123456789-abcdef";

/// How long one commit may take to reach every node before the run fails.
const FANOUT_LIMIT: Duration = Duration::from_secs(60);

/// Runs one gateway for the database at `url` in this process: prints
/// `listening ADDR` on stdout, then serves until killed.
pub(crate) async fn child_gateway(url: &str) -> anyhow::Result<()> {
    let options = outpost_gateway::Options::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.to_string()),
        "OUTPOST_GATEWAY_SECRET" => Some(SECRET.to_string()),
        "OUTPOST_TABLES" => Some("fanout".to_string()),
        _ => None,
    })
    .map_err(anyhow::Error::msg)?;
    let gateway = outpost_gateway::Gateway::start(options).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    outpost_gateway::serve(listener, gateway, std::future::pending()).await?;
    Ok(())
}

/// A gateway child process.
struct GatewayChild {
    child: tokio::process::Child,
    url: String,
    pid: u32,
}

impl GatewayChild {
    async fn start(db_url: &str) -> anyhow::Result<GatewayChild> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--child-gateway")
            .arg(db_url)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a gateway child")?;
        let pid = child.id().context("the gateway child has no pid")?;
        let stdout = child.stdout.take().context("the gateway child's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the gateway child did not start within 30 s")??
            .context("the gateway child ended before listening")?;
        let addr = line
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected line from the gateway child: {line}"))?;
        Ok(GatewayChild {
            child,
            url: format!("http://{addr}"),
            pid,
        })
    }

    /// Resident memory now (`VmRSS`), in KiB.
    fn rss_kib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("no VmRSS value")?
            .parse()?)
    }
}

/// When each node's pull returned each committed row: node → row id → time.
type Seen = Arc<Mutex<Vec<HashMap<i64, Instant>>>>;

/// One simulated node: waits for notifications and pulls until caught up,
/// noting when each row arrived.
async fn node_loop(
    index: usize,
    mut listener: GatewayListener,
    conn: GatewayConnection,
    schema: Arc<Schema>,
    mut cursor: Cursor,
    seen: Seen,
) -> anyhow::Result<()> {
    while listener.notified().await.is_some() {
        listener.drain();
        loop {
            let batch = conn.pull(&schema, cursor, 1_000, None).await?;
            let now = Instant::now();
            cursor = batch.cursor;
            if let Ok(mut s) = seen.lock() {
                for row in &batch.rows {
                    if let Some(Value::Int(id)) = row.pk.first() {
                        s[index].entry(*id).or_insert(now);
                    }
                }
            }
            if batch.held_back {
                // Another transaction on the cluster holds the change back.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            if !batch.more {
                break;
            }
        }
    }
    Ok(())
}

/// What one fan-out run measured.
struct Fanout {
    /// Per node and commit, ms.
    latencies: Vec<f64>,
    /// Per commit, until the last node had it, ms.
    last: Vec<f64>,
    /// Resident memory per connected node of the gateways, KiB.
    kib_per_node: f64,
    /// Most connections to the database beside the benchmark's own.
    max_connections: i64,
}

async fn fanout_run(
    db: &TestDb,
    gateways: &[GatewayChild],
    nodes: usize,
    commits: usize,
    next_id: &mut i64,
) -> anyhow::Result<Fanout> {
    let writer = db.client().await?;
    let monitor = db.client().await?;
    let idle_kib: f64 = gateways
        .iter()
        .map(GatewayChild::rss_kib)
        .sum::<anyhow::Result<f64>>()?;
    let keys = outpost_gateway::auth::Keys::hs256(SECRET, None).map_err(anyhow::Error::msg)?;
    let timeout = Duration::from_secs(30);
    let first = GatewayTarget::new(
        &gateways[0].url,
        &keys
            .create("schema", Duration::from_secs(3600), None)
            .map_err(anyhow::Error::msg)?,
    )?;
    let schema = Arc::new(GatewayConnection::new(&first, timeout)?.schema().await?);
    let seen: Seen = Arc::new(Mutex::new(vec![HashMap::new(); nodes]));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..nodes {
        let token = keys
            .create(&format!("node-{i}"), Duration::from_secs(3600), None)
            .map_err(anyhow::Error::msg)?;
        let target = GatewayTarget::new(&gateways[i % gateways.len()].url, &token)?;
        let conn = GatewayConnection::new(&target, timeout)?;
        // Caught up first: the node's cursor where the feed is now.
        let mut cursor = Cursor::default();
        loop {
            let batch = conn.pull(&schema, cursor, 10_000, None).await?;
            cursor = batch.cursor;
            if !batch.more && !batch.held_back {
                break;
            }
        }
        let listener = GatewayListener::open(&target, timeout).await?;
        tasks.spawn(node_loop(
            i,
            listener,
            conn,
            schema.clone(),
            cursor,
            seen.clone(),
        ));
    }
    let connected_kib: f64 = gateways
        .iter()
        .map(GatewayChild::rss_kib)
        .sum::<anyhow::Result<f64>>()?;
    let mut latencies = Vec::with_capacity(nodes * commits);
    let mut last = Vec::with_capacity(commits);
    let mut max_connections = 0i64;
    for _ in 0..commits {
        *next_id += 1;
        let id = *next_id;
        writer
            .execute("INSERT INTO fanout (id, v) VALUES ($1, 'x')", &[&id])
            .await?;
        let committed = Instant::now();
        loop {
            if let Some(Err(e)) = tasks.try_join_next() {
                anyhow::bail!("a simulated node stopped: {e}");
            }
            let (have, latest) = {
                let s = seen
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the seen map was poisoned"))?;
                let times: Vec<Instant> = s.iter().filter_map(|m| m.get(&id).copied()).collect();
                (times.len(), times.into_iter().max())
            };
            let n: i64 = monitor
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND pid <> pg_backend_pid()",
                    &[],
                )
                .await?
                .get(0);
            // The writer is the benchmark's own.
            max_connections = max_connections.max(n - 1);
            if have == nodes {
                let latest = latest.unwrap_or(committed);
                last.push(latest.duration_since(committed).as_secs_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(
                committed.elapsed() < FANOUT_LIMIT,
                "row {id} reached {have} of {nodes} nodes in {} s",
                FANOUT_LIMIT.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let s = seen
            .lock()
            .map_err(|_| anyhow::anyhow!("the seen map was poisoned"))?;
        latencies.extend(
            s.iter()
                .filter_map(|m| m.get(&id))
                .map(|t| t.saturating_duration_since(committed).as_secs_f64() * 1000.0),
        );
    }
    tasks.abort_all();
    Ok(Fanout {
        latencies,
        last,
        kib_per_node: (connected_kib - idle_kib) / nodes as f64,
        max_connections,
    })
}

impl Fanout {
    /// Prints the run's line; returns the median time until every node
    /// had a commit.
    fn print(&self, gateways: &str, nodes: usize) -> f64 {
        let every = percentile(self.last.clone(), 0.5);
        println!(
            "B12 fan-out, {gateways}   {nodes:>6} nodes | per node and commit p50 {:>7.1} ms, p99 {:>7.1} ms | every node {every:>7.1} ms (median of {}) | gateway memory {:.1} KiB per connected node | PostgreSQL connections at most {} | (absolute, loopback)",
            percentile(self.latencies.clone(), 0.5),
            percentile(self.latencies.clone(), 0.99),
            self.last.len(),
            self.kib_per_node,
            self.max_connections,
        );
        every
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[at.min(v.len() - 1)]
}

/// B12 (module doc).
pub(crate) async fn fanout(args: &Args) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    db.client()
        .await?
        .batch_execute("CREATE TABLE fanout (id bigint PRIMARY KEY, v text NOT NULL)")
        .await?;
    let nodes = args.b12_nodes.max(1);
    let commits = args.b12_commits.max(1);
    let mut next_id = 0i64;
    let mut one_last = Vec::new();
    let mut two_last = Vec::new();
    for _ in 0..args.runs {
        // Fresh gateways each run: the memory figure starts from idle.
        let one = [GatewayChild::start(&db.database_url()).await?];
        let f = fanout_run(&db, &one, nodes, commits, &mut next_id).await?;
        one_last.push(f.print("1 gateway ", nodes));
        drop(one);
        let two = [
            GatewayChild::start(&db.database_url()).await?,
            GatewayChild::start(&db.database_url()).await?,
        ];
        let f = fanout_run(&db, &two, nodes, commits, &mut next_id).await?;
        two_last.push(f.print("2 gateways", nodes));
        for mut g in two {
            let _ = g.child.kill().await;
        }
    }
    let ratios: Vec<f64> = one_last
        .iter()
        .zip(&two_last)
        .map(|(a, b)| b / a.max(1e-9))
        .collect();
    println!(
        "B12 two gateways / one    {nodes:>6} nodes | time until every node had a commit, median ratio {:.2} ({:.2}–{:.2}) | (for comparison)",
        percentile(ratios.clone(), 0.5),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    Ok(())
}
