//! `outpost-bench`: outpost's benchmark harness against a real PostgreSQL and
//! SQLite. Every scenario is measured beside a baseline doing the same work
//! the plainest way, in the same run on the same data, and the ratio is
//! printed (the machine is noisy; absolute times drift, ratios less so).
//!
//! ```text
//! cargo run --release -p outpost-bench                  # default sizes
//! cargo run --release -p outpost-bench -- --quick       # seconds, for CI
//! cargo run --release -p outpost-bench -- --rows 200000 --push-rows 20000 --runs 5
//! ```
//!
//! Scenarios (`--only B2,B6` runs a subset):
//!
//! * **B1 bootstrap**: a `--rows`-row, 6-column table (uuid, text, int,
//!   numeric, timestamptz, jsonb) into an empty replica, in a child process
//!   whose peak RSS is reported. Baseline: binary `COPY TO STDOUT`, decoded,
//!   and a prepared insert into a SQLite table of the same shape in one
//!   transaction.
//! * **B2 push**: `--push-rows` rows inserted locally, pushed. Baseline:
//!   binary `COPY FROM` of the same rows into an untracked copy of the table.
//! * **B3 pull**: `--pull-rows` server-side updates pulled by an up-to-date
//!   replica. Baseline: the same rows read with binary `COPY` and applied by
//!   a prepared `UPDATE` loop in one SQLite transaction.
//! * **B4 size**: `--offline-changes` local changes (60% updates, 30%
//!   inserts, 10% deletes) synced with a `--b4-large-rows` table against the
//!   same with a `--b4-small-rows` table; the figure is time(large) /
//!   time(small).
//! * **B7 fleet**: `--nodes` nodes with `--node-changes` pending inserts
//!   each, all syncing at once, then checked row for row against the server.
//!   Baseline: one node syncing all those inserts.
//! * **B5 latency**: a server commit until the row is visible in an online
//!   node's replica (p50, p99), `--latency-commits` single-row commits.
//! * **B6 capture**: `--capture-rows` local inserts through the capture
//!   triggers, one per transaction and in batches of 1,000; baseline: the same
//!   inserts into an untracked table of the same shape in the same file.
//! * **B8 include**: `find_many` of `--include-rows` posts with their users,
//!   local and remote, into a struct (`typed`, the target's line) and as
//!   JSON (`json`); baseline: the same two queries hand-written, every value
//!   decoded into tuples.
//! * **B9 updates**: `--b9-updates` rows of a `--b9-rows`-row table updated
//!   locally, pushed. Baseline: the same values applied to an untracked copy
//!   by one `UPDATE … FROM jsonb_array_elements` per 2,000 rows (PowerSync's
//!   connector's statement).
//! * **B10 held replica**: B2 on a replica that already holds
//!   `--b10-held-rows` synced rows; baseline: B2 on a fresh replica.
//! * **B11 round trip**: `--b11-edits` edits another program commits to
//!   node A's replica, one transaction each, until each is in node B's
//!   replica (p50, p99 per edit; absolute, loopback).
//! * **B12 gateway fan-out**: `--b12-nodes` simulated nodes on one gateway's
//!   change stream, `--b12-commits` server commits timed until every node
//!   pulled them (p50, p99), the gateway's memory per connected node and its
//!   PostgreSQL connections; the same over two gateways against one.
//! * **B13 server floor**: the least a push's server write costs with
//!   today's trigger capture, and with capture from the WAL (a row written
//!   only if its `xmin` is unchanged), beside B9's and B2's baselines; the
//!   decoding cost where the server has `wal_level = logical`
//!   (`floor_scenarios`). Evidence for a design decision, not a figure of
//!   outpost's.

mod floor_scenarios;
mod gateway_scenarios;
mod node_scenarios;
mod push_scenarios;
mod sync_scenarios;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures_util::{StreamExt as _, pin_mut};
use outpost_core::config::Config;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, SyncOptions};
use outpost_local::Replica;
use outpost_remote::codec::{Bind, PgValue};
use outpost_remote::tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use outpost_remote::tokio_postgres::types::{ToSql, Type};
use outpost_testkit::TestDb;

#[derive(Debug, Parser)]
#[command(
    name = "outpost-bench",
    about = "outpost benchmarks, each beside a baseline from the same run"
)]
pub(crate) struct Args {
    /// Rows of the bootstrap table (B1).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows pushed (B2).
    #[arg(long, default_value_t = 100_000)]
    push_rows: u64,
    /// Rows inserted locally (B6).
    #[arg(long, default_value_t = 100_000)]
    capture_rows: u64,
    /// Server commits timed to the replica (B5).
    #[arg(long, default_value_t = 1_000)]
    latency_commits: usize,
    /// Posts read with their users (B8).
    #[arg(long, default_value_t = 10_000)]
    include_rows: u64,
    /// Server-side updates pulled (B3).
    #[arg(long, default_value_t = 100_000)]
    pull_rows: u64,
    /// Offline changes synced (B4).
    #[arg(long, default_value_t = 100)]
    offline_changes: u64,
    /// Rows of B4's small table (the baseline).
    #[arg(long, default_value_t = 10_000)]
    b4_small_rows: u64,
    /// Rows of B4's large table.
    #[arg(long, default_value_t = 1_000_000)]
    b4_large_rows: u64,
    /// Nodes syncing at once (B7).
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Pending changes per node (B7).
    #[arg(long, default_value_t = 1_000)]
    node_changes: u64,
    /// Rows of B9's table.
    #[arg(long, default_value_t = 100_000)]
    b9_rows: u64,
    /// Rows updated locally and pushed (B9).
    #[arg(long, default_value_t = 10_000)]
    b9_updates: u64,
    /// Synced rows the replica holds before its push (B10).
    #[arg(long, default_value_t = 1_000_000)]
    b10_held_rows: u64,
    /// Edits another program commits to node A's replica, to be seen in
    /// node B's (B11).
    #[arg(long, default_value_t = 10_000)]
    b11_edits: usize,
    /// Simulated nodes on the gateway's change stream (B12).
    #[arg(long, default_value_t = 1_000)]
    b12_nodes: usize,
    /// Server commits fanned out to them (B12).
    #[arg(long, default_value_t = 20)]
    b12_commits: usize,
    /// Only these scenarios, comma-separated (`--only B2,B6`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Runs per scenario (median and spread are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Small sizes and one run: checks the harness end to end in seconds.
    #[arg(long)]
    quick: bool,
    /// Internal: run one bootstrap in this process and print its figures.
    #[arg(long, hide = true)]
    child_bootstrap: Option<PathBuf>,
    /// Internal: the server for `--child-bootstrap`.
    #[arg(long, hide = true)]
    child_url: Option<String>,
    /// Internal: run a gateway for this database in this process (B12).
    #[arg(long, hide = true)]
    child_gateway: Option<String>,
}

const BENCH_TABLE: &str = r#"CREATE TABLE bench (id uuid PRIMARY KEY, name text NOT NULL, n integer NOT NULL,
  amount numeric(12,2) NOT NULL, at timestamptz NOT NULL, doc jsonb NOT NULL)"#;

pub(crate) fn config(url: &str, path: &Path) -> anyhow::Result<Config> {
    let local = format!("file:{}", path.display());
    Ok(Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.to_string()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "OUTPOST_TABLES" => Some("bench".to_string()),
        _ => None,
    })?)
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    outpost: Duration,
    baseline: Duration,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub(crate) fn summarize(name: &str, rows: u64, samples: &[Sample], target: &str) {
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    if target.starts_with("time") {
        // Time ratio: outpost's time over the baseline's (lower is better).
        let ours: Vec<f64> = samples
            .iter()
            .map(|s| s.outpost.as_secs_f64() * 1000.0)
            .collect();
        let base: Vec<f64> = samples
            .iter()
            .map(|s| s.baseline.as_secs_f64() * 1000.0)
            .collect();
        let ratios: Vec<f64> = samples
            .iter()
            .map(|s| s.outpost.as_secs_f64() / s.baseline.as_secs_f64().max(1e-9))
            .collect();
        let (rl, rh) = spread(&ratios);
        println!(
            "{name:<24} {rows:>9} rows | outpost {:>9.1} ms | baseline {:>9.1} ms | time ratio {:.2} ({rl:.2}–{rh:.2}) | target {target}",
            median(ours),
            median(base),
            median(ratios.clone()),
        );
        return;
    }
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    let ours: Vec<f64> = samples.iter().map(|s| rate(s.outpost)).collect();
    let base: Vec<f64> = samples.iter().map(|s| rate(s.baseline)).collect();
    let ratios: Vec<f64> = samples
        .iter()
        .map(|s| rate(s.outpost) / rate(s.baseline))
        .collect();
    let ((ol, oh), (bl, bh), (rl, rh)) = (spread(&ours), spread(&base), spread(&ratios));
    println!(
        "{name:<24} {rows:>9} rows | outpost {:>9.0} rows/s ({ol:.0}–{oh:.0}) | baseline {:>9.0} rows/s ({bl:.0}–{bh:.0}) | ratio {:.2} ({rl:.2}–{rh:.2}) | target {target}",
        median(ours.clone()),
        median(base.clone()),
        median(ratios.clone()),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let (Some(path), Some(url)) = (&args.child_bootstrap, &args.child_url) {
        return child_bootstrap(path, url).await;
    }
    if let Some(url) = &args.child_gateway {
        return gateway_scenarios::child_gateway(url).await;
    }
    if args.quick {
        args.rows = args.rows.min(20_000);
        args.push_rows = args.push_rows.min(5_000);
        args.capture_rows = args.capture_rows.min(5_000);
        args.latency_commits = args.latency_commits.min(50);
        args.include_rows = args.include_rows.min(2_000);
        args.pull_rows = args.pull_rows.min(5_000);
        args.offline_changes = args.offline_changes.min(20);
        args.b4_small_rows = args.b4_small_rows.min(1_000);
        args.b4_large_rows = args.b4_large_rows.min(20_000);
        args.nodes = args.nodes.min(3);
        args.node_changes = args.node_changes.min(100);
        args.b9_rows = args.b9_rows.min(5_000);
        args.b9_updates = args.b9_updates.min(500);
        args.b10_held_rows = args.b10_held_rows.min(5_000);
        args.b11_edits = args.b11_edits.min(500);
        args.b12_nodes = args.b12_nodes.min(20);
        args.b12_commits = args.b12_commits.min(3);
        args.runs = 1;
    }
    args.runs = args.runs.max(1);
    let db = TestDb::new().await?;
    println!(
        "outpost-bench: {} cores, PostgreSQL at {}, {} run(s) each",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        db.database_url(),
        args.runs
    );
    let wanted =
        |name: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(name));
    if wanted("B1") || wanted("B2") {
        // B2's table is created `LIKE bench`.
        bootstrap_scenario(&db, &args, wanted("B1")).await?;
    }
    if wanted("B2") {
        push_scenario(&db, &args).await?;
    }
    if wanted("B9") {
        push_scenarios::updates_vs_connector(&db, &args).await?;
    }
    if wanted("B13") {
        floor_scenarios::server_floor(&db, &args).await?;
    }
    if wanted("B10") {
        push_scenarios::push_on_held_replica(&db, &args).await?;
    }
    if wanted("B3") {
        sync_scenarios::pull_updates(&db, &args).await?;
    }
    if wanted("B4") {
        sync_scenarios::sync_vs_size(&db, &args).await?;
    }
    if wanted("B7") {
        sync_scenarios::fleet(&db, &args).await?;
    }
    if wanted("B11") {
        node_scenarios::round_trip(&args).await?;
    }
    if wanted("B12") {
        gateway_scenarios::fanout(&args).await?;
    }
    if wanted("B5") || wanted("B6") || wanted("B8") {
        let nodes = TestDb::new().await?;
        node_scenarios::blog(&nodes, 1000, args.include_rows).await?;
        if wanted("B8") {
            node_scenarios::find_many_include(&nodes, &args).await?;
        }
        if wanted("B6") {
            node_scenarios::capture_overhead(&nodes, &args).await?;
        }
        if wanted("B5") {
            node_scenarios::latency(&nodes, args.latency_commits).await?;
        }
    }
    Ok(())
}

// ---- B1 -----------------------------------------------------------------------

async fn bootstrap_scenario(db: &TestDb, args: &Args, measure: bool) -> anyhow::Result<()> {
    let client = db.client().await?;
    client.batch_execute(BENCH_TABLE).await?;
    if !measure {
        return Ok(());
    }
    client
        .execute(
            "INSERT INTO bench SELECT gen_random_uuid(), md5(i::text), i, (i % 100000) / 100.0, \
             now() - i * interval '1 second', jsonb_build_object('i', i, 'tag', 'bench') \
             FROM generate_series(1, $1::int8) i",
            &[&(args.rows as i64)],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE bench").await?;
    let mut admin = db.client().await?;
    let schema =
        outpost_remote::introspect(&admin, "public", Some(&["bench".to_string()]), &[]).await?;
    outpost_remote::install(&mut admin, &schema).await?;
    let mut samples = Vec::new();
    let mut peak = 0.0f64;
    for run in 0..args.runs {
        let path = db.dir().join(format!("b1-{run}.db"));
        let exe = std::env::current_exe()?;
        let started = Instant::now();
        let out = std::process::Command::new(exe)
            .arg("--child-bootstrap")
            .arg(&path)
            .arg("--child-url")
            .arg(db.database_url())
            .output()
            .context("running the bootstrap child")?;
        let outpost = started.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "bootstrap child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(mib) = text.lines().find_map(|l| l.strip_prefix("peak_rss_mib=")) {
            peak = peak.max(mib.trim().parse().unwrap_or(0.0));
        }
        let copied = Replica::open(&path)?.all_rows("bench")?.len() as u64;
        anyhow::ensure!(
            copied == args.rows,
            "bootstrap copied {copied} of {} rows",
            args.rows
        );
        let baseline =
            baseline_copy_to_sqlite(db, &db.dir().join(format!("b1-base-{run}.db"))).await?;
        samples.push(Sample { outpost, baseline });
        let _ = std::fs::remove_file(&path);
    }
    summarize(
        "B1 bootstrap",
        args.rows,
        &samples,
        "ratio >= 0.8, peak RSS <= 150 MB",
    );
    println!(
        "{:<14} peak RSS of the bootstrap process: {peak:.1} MiB",
        ""
    );
    Ok(())
}

async fn child_bootstrap(path: &Path, url: &str) -> anyhow::Result<()> {
    let cfg = config(url, path)?;
    let client =
        outpost_remote::connect(cfg.require_database_url("bench")?, Duration::from_secs(10))
            .await?;
    let schema =
        outpost_remote::introspect(&client, "public", Some(&["bench".to_string()]), &[]).await?;
    let (replica, _) = Replica::setup(path, &schema)?;
    let engine = Engine::new(replica, cfg);
    let report = engine
        .sync(SyncOptions::new(Direction::FromServer, Trigger::Manual))
        .await?;
    anyhow::ensure!(report.success, "bootstrap failed: {:?}", report.errors);
    println!("peak_rss_mib={:.1}", peak_rss_mib().unwrap_or(0.0));
    Ok(())
}

/// The plain way: binary COPY out, decoded, a prepared insert into an
/// identical SQLite table, one transaction.
async fn baseline_copy_to_sqlite(db: &TestDb, path: &Path) -> anyhow::Result<Duration> {
    let client = db.client().await?;
    let started = Instant::now();
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE bench (id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL,
           amount TEXT NOT NULL, at TEXT NOT NULL, doc TEXT NOT NULL);",
    )?;
    let types = [
        Type::UUID,
        Type::TEXT,
        Type::INT4,
        Type::NUMERIC,
        Type::TIMESTAMPTZ,
        Type::JSONB,
    ];
    let copy = client
        .copy_out("COPY (SELECT id, name, n, amount, at, doc FROM bench ORDER BY id) TO STDOUT (FORMAT binary)")
        .await?;
    let stream = BinaryCopyOutStream::new(copy, &types);
    pin_mut!(stream);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Vec<Value>>>(2);
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let txn = conn.unchecked_transaction()?;
        {
            let mut stmt = txn.prepare("INSERT INTO bench VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            while let Some(chunk) = rx.blocking_recv() {
                for row in chunk {
                    let v: Vec<rusqlite::types::Value> = row
                        .into_iter()
                        .map(|v| match v {
                            Value::Int(i) => rusqlite::types::Value::Integer(i),
                            Value::Text(s) | Value::Json(s) => rusqlite::types::Value::Text(s),
                            _ => rusqlite::types::Value::Null,
                        })
                        .collect();
                    stmt.execute(rusqlite::params_from_iter(v))?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    });
    let mut chunk = Vec::with_capacity(20_000);
    while let Some(row) = stream.next().await {
        let row = row?;
        let values: Vec<Value> = (0..6)
            .map(|i| row.try_get::<PgValue>(i).map(|v| v.0))
            .collect::<Result<_, _>>()?;
        chunk.push(values);
        if chunk.len() == 20_000 {
            tx.send(std::mem::take(&mut chunk)).await.ok();
        }
    }
    tx.send(chunk).await.ok();
    drop(tx);
    writer.await??;
    Ok(started.elapsed())
}

// ---- B2 -----------------------------------------------------------------------

pub(crate) fn bench_row(i: u64) -> Vec<Value> {
    vec![
        Value::Text(uuid::Uuid::new_v4().to_string()),
        Value::Text(format!("pushed row {i}")),
        Value::Int(i as i64),
        Value::Text(format!("{}.{:02}", i % 100_000, i % 100)),
        Value::Text(outpost_core::types::format_timestamptz(
            800_000_000_000_000 + i as i64 * 1_000_000,
        )),
        Value::Json(format!("{{\"i\": {i}, \"tag\": \"push\"}}")),
    ]
}

async fn push_scenario(db: &TestDb, args: &Args) -> anyhow::Result<()> {
    let mut client = db.client().await?;
    client
        .batch_execute("CREATE TABLE pushed (LIKE bench INCLUDING ALL); CREATE TABLE pushed_plain (LIKE bench INCLUDING ALL);")
        .await?;
    let schema =
        outpost_remote::introspect(&client, "public", Some(&["pushed".to_string()]), &[]).await?;
    outpost_remote::install(&mut client, &schema).await?;
    let mut samples = Vec::new();
    for run in 0..args.runs {
        client
            .batch_execute("TRUNCATE pushed; TRUNCATE pushed_plain;")
            .await?;
        let rows: Vec<Vec<Value>> = (0..args.push_rows).map(bench_row).collect();
        // Outpost: a bootstrapped node, rows written locally, then pushed.
        let path = db.dir().join(format!("b2-{run}.db"));
        let (replica, _) = Replica::setup(&path, &schema)?;
        let cfg = config(&db.database_url(), &path)?;
        let cfg = Config {
            tables: outpost_core::config::TableSelection {
                include: Some(vec!["pushed".into()]),
                ..cfg.tables
            },
            ..cfg
        };
        let engine = Engine::new(replica, cfg);
        let first = engine
            .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
            .await?;
        anyhow::ensure!(first.success, "{:?}", first.errors);
        push_scenarios::insert_locally(&engine, "pushed", rows.clone()).await?;
        let outpost =
            push_scenarios::timed_push(&engine, &client, "pushed", args.push_rows).await?;

        // Baseline: binary COPY FROM into an untracked copy.
        let started = Instant::now();
        let sink = client
            .copy_in("COPY pushed_plain (id, name, n, amount, at, doc) FROM STDIN (FORMAT binary)")
            .await?;
        let types = [
            Type::UUID,
            Type::TEXT,
            Type::INT4,
            Type::NUMERIC,
            Type::TIMESTAMPTZ,
            Type::JSONB,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for row in &rows {
            let binds: Vec<Bind<'_>> = row.iter().map(Bind).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&refs).await?;
        }
        writer.finish().await?;
        let baseline = started.elapsed();
        samples.push(Sample { outpost, baseline });
        let _ = std::fs::remove_file(&path);
    }
    summarize("B2 push", args.push_rows, &samples, "ratio >= 0.5");
    Ok(())
}
