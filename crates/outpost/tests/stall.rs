//! `outpost sync`, black-box, when the path to the server silently stops
//! forwarding in the middle of a push (the test proxy holds the bytes of the
//! connections open at that moment for good, as a NAT that lost its
//! mappings; new connections flow): the run ends within its deadline, the
//! server ends the session the stall left inside a batch's transaction
//! after the configured timeout, the next `outpost sync` completes, and
//! nothing is lost or doubled. The engine-level twin is
//! `crates/outpost-engine/tests/stall.rs`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use outpost_testkit::TestDb;
use outpost_testkit::proxy::Proxy;

mod common;

/// The limits the runs get (ms); the round-trip deadline is statement +
/// lock + 5 s (docs/reliability.md), so 7 s here.
const STATEMENT_MS: u64 = 1000;
const LOCK_MS: u64 = 1000;
const IDLE_MS: u64 = 1000;
const DEADLINE: Duration = Duration::from_secs(7);
const ROWS: i64 = 40_000;

fn sync_command(dir: &std::path::Path, url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_outpost"));
    cmd.current_dir(dir).args(["sync", "--json"]);
    for v in common::VARS {
        cmd.env_remove(v);
    }
    cmd.env("DATABASE_URL", url)
        .env("LOCAL_DATABASE_URL", "file:./local.db")
        .env("OUTPOST_STATEMENT_TIMEOUT", STATEMENT_MS.to_string())
        .env("OUTPOST_LOCK_TIMEOUT", LOCK_MS.to_string())
        .env("OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT", IDLE_MS.to_string())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn count(client: &outpost::remote::tokio_postgres::Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_stalled_mid_push_ends_in_time_and_the_next_one_completes() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client
        .batch_execute(
            r#"CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE);
               CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL,
                 "userId" text NOT NULL REFERENCES "User"(id));
               INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');"#,
        )
        .await?;
    let direct = db.database_url();
    let setup = common::outpost(
        db.dir(),
        &[
            ("DATABASE_URL", direct.as_str()),
            ("LOCAL_DATABASE_URL", "file:./local.db"),
        ],
        &["setup"],
    );
    anyhow::ensure!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    // Many rows edited offline: a push of several batches.
    let replica = rusqlite::Connection::open(db.dir().join("local.db"))?;
    replica.execute_batch(&format!(
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
           INSERT INTO "Post" (id, title, "userId") SELECT 'p' || i, 't' || i, 'u1' FROM n"#
    ))?;
    drop(replica);

    let proxy = Proxy::start(db.server_addr()?).await?;
    let via = db.database_url_via(proxy.addr);
    let run = sync_command(db.dir(), &via).spawn()?;
    // Stall inside a later batch's transaction: the first batch has
    // committed and the run's session has a transaction open.
    let dbname: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    // The server waits for the client inside a transaction: a batch
    // between two of its statements.
    let idle_sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' \
         AND state LIKE 'idle in transaction%'"
    );
    let waited = Instant::now();
    while count(&client, r#"SELECT count(*) FROM "Post""#).await? == 0
        || count(&client, &idle_sql).await? == 0
    {
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(60),
            "the push never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proxy.stall();
    let stalled_at = Instant::now();
    // Its commit cannot get through now: the transaction stays open until
    // the server ends it (the check below is about something).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        count(&client, &idle_sql).await? > 0,
        "the stall missed the batch's transaction"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.flow_new();

    // While the stalled run still waits for its deadline, the server ends
    // the session left inside the batch's transaction (its timeout, not
    // the process's exit, which comes later).
    let idle_bound = Duration::from_millis(IDLE_MS) + Duration::from_secs(2);
    while count(&client, &idle_sql).await? > 0 {
        anyhow::ensure!(
            stalled_at.elapsed() < idle_bound,
            "a session stays idle in transaction {:?} after the stall",
            stalled_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        idle_bound < DEADLINE,
        "the check above ran before the run's own deadline"
    );

    let out = tokio::time::timeout(Duration::from_secs(60), run.wait_with_output()).await??;
    let ended = stalled_at.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        ended < DEADLINE + Duration::from_secs(3),
        "the stalled sync ended {ended:?} after the stall: {stderr}"
    );
    assert!(
        !out.status.success(),
        "the connection died mid-push, the run cannot have succeeded: {stderr}"
    );
    assert!(
        count(&client, r#"SELECT count(*) FROM "Post""#).await? < ROWS,
        "the stall came too late to hit the push"
    );

    let next = tokio::time::timeout(
        Duration::from_secs(120),
        sync_command(db.dir(), &via).output(),
    )
    .await??;
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&next.stdout)?;
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(
        count(&client, r#"SELECT count(*) FROM "Post""#).await?,
        ROWS
    );
    assert_eq!(
        count(&client, r#"SELECT count(DISTINCT title) FROM "Post""#).await?,
        ROWS
    );
    let replica = rusqlite::Connection::open(db.dir().join("local.db"))?;
    let unsettled: i64 = replica.query_row(
        "SELECT count(*) FROM _outpost_rows WHERE status <> 'SYNCED'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(unsettled, 0, "rows left unsynced on the replica");
    Ok(())
}
