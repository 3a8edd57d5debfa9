//! A path that stops forwarding without refusing (the proxy's stall: bytes
//! are accepted and held), and a request the server rejects: the node stays
//! responsive, notices the stall within its documented bound, never reports
//! a stuck write as written, abandons a stalled sync, and does not go
//! offline for a request's own error.

mod common;

use std::time::{Duration, Instant};

use common::*;
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::{ErrorKind, NodeOptions, Outpost, ServerTimeouts, SyncOptions};
use outpost_testkit::TestDb;
use outpost_testkit::proxy::Proxy;
use serde_json::{Value as Json, json};

/// Short timings: a stall is noticed within `check_interval + check_timeout`
/// (0.7 s here).
fn fast() -> NodeOptions {
    NodeOptions {
        check_interval: Duration::from_millis(200),
        check_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(3),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..NodeOptions::default()
    }
}

async fn wait_for(
    what: &str,
    mut f: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

async fn count(client: &outpost_remote::tokio_postgres::Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// The blog with user `u1` on the server, and node `n` syncing with it
/// through a TCP proxy (in front of PostgreSQL, or of the gateway),
/// online and bootstrapped.
struct Behind {
    db: TestDb,
    client: outpost_remote::tokio_postgres::Client,
    proxy: Proxy,
    node: Outpost,
}

async fn node_behind_a_proxy() -> anyhow::Result<Behind> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let proxy = Proxy::start(sync_addr(&db)?).await?;
    let node = Outpost::open_with(runtime_config(&db, "n", proxy.addr, &[])?, fast()).await?;
    wait_for("online and bootstrapped", async || {
        let s = node.status().await;
        Ok(s.is_online && s.last_sync.as_ref().is_some_and(|l| l.status == "SUCCESS"))
    })
    .await?;
    Ok(Behind {
        db,
        client,
        proxy,
        node,
    })
}

/// A session holding `Post` locked (in an open transaction) until
/// `ROLLBACK` is sent on it: a write to it waits on the server, in flight.
async fn lock_posts(db: &TestDb) -> anyhow::Result<outpost_remote::tokio_postgres::Client> {
    let locker = db.client().await?;
    locker
        .batch_execute(r#"BEGIN; LOCK TABLE "Post" IN ACCESS EXCLUSIVE MODE"#)
        .await?;
    Ok(locker)
}

/// Waits until a session of `db` waits on a lock.
async fn a_write_waits_on_the_lock(b: &Behind) -> anyhow::Result<()> {
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = '{}'",
        b.db.name
    );
    wait_for("a write waiting on the lock", async || {
        Ok(count(&b.client, &waiting).await? >= 1)
    })
    .await
}

/// Asserts that for 5 s after `stalled_at` the status answers within a
/// second, and that the node goes offline within the bound
/// (`check_interval + check_timeout`, plus scheduling slack) with
/// operations on the replica.
async fn responsive_and_offline_within_the_bound(
    node: &Outpost,
    stalled_at: Instant,
) -> anyhow::Result<()> {
    let mut offline_after = None;
    while stalled_at.elapsed() < Duration::from_secs(5) {
        let asked = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(1), node.status())
            .await
            .map_err(|_| anyhow::anyhow!("the status did not answer within a second"))?;
        assert!(asked.elapsed() < Duration::from_secs(1));
        if !status.is_online && offline_after.is_none() {
            assert!(status.using_local_database);
            offline_after = Some(stalled_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let offline_after = offline_after.ok_or_else(|| anyhow::anyhow!("never went offline"))?;
    assert!(
        offline_after < Duration::from_millis(2000),
        "offline after {offline_after:?}"
    );
    Ok(())
}

/// Starts a create of post `id` on `node`'s model service, timed.
fn spawn_create(
    node: &Outpost,
    id: &str,
) -> anyhow::Result<tokio::task::JoinHandle<(Result<Json, outpost_engine::EngineError>, Duration)>>
{
    let posts = node.model("Post")?;
    let data = json!({"data": {"id": id, "title": "t", "userId": "u1"}});
    Ok(tokio::spawn(async move {
        let started = Instant::now();
        let r = posts.create::<Json>(data).await;
        (r, started.elapsed())
    }))
}

/// The issue's scenario: a create is on the server (waiting on a lock) when
/// the path stalls. The status keeps answering within a second, the node
/// goes offline within the bound, the stuck create is "outcome unknown"
/// (not written, not replayed), a create made offline lands when the path
/// flows again, and nothing is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_path_keeps_the_node_responsive_and_the_stuck_write_unknown() -> anyhow::Result<()>
{
    if through_gateway() {
        eprintln!(
            "direct topology only (through a gateway `auto` works on the replica): see \
             a_stalled_gateway_path_keeps_the_node_responsive_and_pushes_exactly_once and \
             a_remote_write_through_a_stalled_gateway_path_is_outcome_unknown"
        );
        return Ok(());
    }
    let b = node_behind_a_proxy().await?;
    let (client, proxy, node) = (&b.client, &b.proxy, &b.node);
    let posts = node.model("Post")?;
    // Opens the model service's connection.
    let _: Json = posts
        .create(json!({"data": {"id": "before", "title": "t", "userId": "u1"}}))
        .await?;

    // Hold the table so the next create waits on the server, in flight.
    let locker = lock_posts(&b.db).await?;
    let stuck = spawn_create(node, "stuck")?;
    a_write_waits_on_the_lock(&b).await?;

    proxy.stall();
    let stalled_at = Instant::now();
    locker.batch_execute("ROLLBACK").await?;
    responsive_and_offline_within_the_bound(node, stalled_at).await?;

    let (result, took) = stuck.await?;
    let err = result.expect_err("the stuck create cannot be reported as written");
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(
        took < fast().request_timeout + Duration::from_secs(1),
        "{took:?}"
    );

    // New operations go to the replica.
    let after: Json = posts
        .create(json!({"data": {"id": "after", "title": "t", "userId": "u1"}}))
        .await?;
    assert_eq!(after["syncStatus"], "PENDING");

    proxy.flow();
    wait_for("back online and pushed", async || {
        let s = node.status().await;
        Ok(s.is_online && s.pending == 0)
    })
    .await?;
    assert_eq!(
        count(client, r#"SELECT count(*) FROM "Post" WHERE id = 'after'"#).await?,
        1
    );
    // The stuck create was rolled back by the server (never committed),
    // and nothing replayed it.
    assert_eq!(
        count(client, r#"SELECT count(*) FROM "Post" WHERE id = 'stuck'"#).await?,
        0
    );
    assert_eq!(count(client, r#"SELECT count(*) FROM "Post""#).await?, 2);
    node.shutdown().await;
    Ok(())
}

/// The gateway counterpart of the scenario above: a write's push is on
/// the server (waiting on a lock) when the path to the gateway stalls; the
/// lock goes and the push commits there, but its answer never comes back
/// (the stalled connections stay dead). The status keeps answering within
/// a second, the node goes offline within the bound, a create made offline
/// waits, and once new connections flow both land exactly once: the stuck
/// push's retry is recognised as already applied, not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_gateway_path_keeps_the_node_responsive_and_pushes_exactly_once()
-> anyhow::Result<()> {
    if !through_gateway() {
        eprintln!("gateway topology only (OUTPOST_TEST_TOPOLOGY=gateway)");
        return Ok(());
    }
    let b = node_behind_a_proxy().await?;
    let (client, proxy, node) = (&b.client, &b.proxy, &b.node);
    let posts = node.model("Post")?;

    let locker = lock_posts(&b.db).await?;
    let _: Json = posts
        .create(json!({"data": {"id": "stuck", "title": "t", "userId": "u1"}}))
        .await?;
    a_write_waits_on_the_lock(&b).await?;

    proxy.stall();
    let stalled_at = Instant::now();
    locker.batch_execute("ROLLBACK").await?;
    wait_for("the stuck push committed on the server", async || {
        Ok(count(client, r#"SELECT count(*) FROM "Post" WHERE id = 'stuck'"#).await? == 1)
    })
    .await?;
    responsive_and_offline_within_the_bound(node, stalled_at).await?;
    let after: Json = posts
        .create(json!({"data": {"id": "after", "title": "t", "userId": "u1"}}))
        .await?;
    assert_eq!(after["syncStatus"], "PENDING");
    assert!(node.status().await.pending >= 1);

    proxy.flow_new();
    wait_for("back online and pushed", async || {
        let s = node.status().await;
        Ok(s.is_online && s.pending == 0)
    })
    .await?;
    assert_eq!(count(client, r#"SELECT count(*) FROM "Post""#).await?, 2);
    let status = node.status().await;
    assert_eq!((status.conflicts, status.failed), (0, 0), "{status:?}");
    let mine: Vec<Json> = posts.find_many(json!({"orderBy": {"id": "asc"}})).await?;
    let states: Vec<(&str, &str)> = mine
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default(),
                p["syncStatus"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(states, [("after", "SYNCED"), ("stuck", "SYNCED")]);
    node.shutdown().await;
    Ok(())
}

/// Remote mode through a gateway on a path that stalls: a write waiting on
/// a server lock when the path stalls is "outcome unknown" within the
/// bound (the gateway commits it once the lock goes, and its answer is
/// held), never reported written or failed, and not replayed: once the
/// path flows the server holds it once, and the node's replica gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_write_through_a_stalled_gateway_path_is_outcome_unknown() -> anyhow::Result<()> {
    if !through_gateway() {
        eprintln!("gateway topology only (OUTPOST_TEST_TOPOLOGY=gateway)");
        return Ok(());
    }
    let b = node_behind_a_proxy().await?;
    let (client, proxy, node) = (&b.client, &b.proxy, &b.node);
    node.set_mode(outpost_engine::Mode::Remote).await;
    let locker = lock_posts(&b.db).await?;
    let stuck = spawn_create(node, "stuck")?;
    a_write_waits_on_the_lock(&b).await?;
    proxy.stall();
    locker.batch_execute("ROLLBACK").await?;
    let (result, took) = stuck.await?;
    let err = result.expect_err("the stuck create cannot be reported as written");
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(
        took < fast().request_timeout + Duration::from_secs(1),
        "{took:?}"
    );
    // The gateway committed it; nothing runs it again.
    assert_eq!(
        count(client, r#"SELECT count(*) FROM "Post" WHERE id = 'stuck'"#).await?,
        1
    );
    proxy.flow_new();
    node.set_mode(outpost_engine::Mode::Auto).await;
    wait_for("the write in the replica", async || {
        Ok(local_rows(node.engine(), "Post").await?.len() == 1)
    })
    .await?;
    assert_eq!(count(client, r#"SELECT count(*) FROM "Post""#).await?, 1);
    node.shutdown().await;
    Ok(())
}

/// A one-second stall in the middle of a push (connections open then stay
/// dead, new ones flow, as after a NAT lost its mappings): the run ends
/// within its deadline, the server ends the session idle in the batch's
/// transaction, the next sync completes, nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_mid_push_ends_the_sync_within_its_deadline() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let proxy = Proxy::start(sync_addr(&db)?).await?;
    let path = db.dir().join("a.db");
    let (replica, _) = outpost_local::Replica::setup(&path, &schema)?;
    let a = outpost_engine::Engine::new(replica, runtime_config(&db, "a", proxy.addr, &[])?);
    let timeouts = ServerTimeouts {
        statement: Duration::from_secs(2),
        lock: Duration::from_secs(2),
        idle_in_transaction: Duration::from_secs(1),
        round_trip: Duration::from_secs(2),
    };
    a.set_timeouts(timeouts);
    sync(&a, Direction::Bidirectional).await?;
    const ROWS: i64 = 4000;
    local(
        &a,
        &format!(
            r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
               INSERT INTO "Post" (id, title, views, "userId") SELECT 'p' || i, 't', 0, 'u1' FROM n"#
        ),
    )
    .await?;
    a.set_push_batch(50);

    let runner = a.clone();
    let run = tokio::spawn(async move {
        runner
            .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
            .await
    });
    wait_for("the push under way", async || {
        Ok(a.progress()
            .is_some_and(|p| p.phase == "push" && p.rows >= 100))
    })
    .await?;
    proxy.stall();
    let stalled_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.flow_new();

    let report = run.await??;
    let ended = stalled_at.elapsed();
    assert!(
        !report.success,
        "the stalled run cannot succeed: {report:?}"
    );
    assert_eq!(
        report.error_kind,
        Some(ErrorKind::Unreachable),
        "{report:?}"
    );
    assert!(
        ended < timeouts.round_trip + Duration::from_secs(2),
        "the run ended {ended:?} after the stall"
    );
    // The server ends the session left in the batch's transaction.
    let dbname: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let idle_sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' \
         AND state LIKE 'idle in transaction%'"
    );
    let deadline = stalled_at + timeouts.idle_in_transaction + Duration::from_secs(5);
    loop {
        if count(&client, &idle_sql).await? == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "a session stays idle in transaction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(
        count(&client, r#"SELECT count(*) FROM "Post""#).await?,
        ROWS
    );
    assert_eq!(
        count(&client, r#"SELECT count(DISTINCT id) FROM "Post""#).await?,
        ROWS
    );
    assert_converged(&client, &schema, &[&a]).await?;
    assert_eq!(a.status().await?.pending, 0);
    Ok(())
}

/// A request the server rejects (more values in `in` than one statement can
/// carry) is an error of that request, named as such; the node stays online
/// and keeps using the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_oversize_request_leaves_the_node_online() -> anyhow::Result<()> {
    if through_gateway() {
        eprintln!("direct topology only: a node reads its replica through a gateway");
        return Ok(());
    }
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let node = Outpost::open_with(runtime_config(&db, "n", sync_addr(&db)?, &[])?, fast()).await?;
    wait_for("online", async || Ok(node.status().await.is_online)).await?;
    let ids: Vec<String> = (0..100_000).map(|i| format!("id{i}")).collect();
    let err = node
        .model("User")?
        .find_many::<Json>(json!({"where": {"id": {"in": ids}}}))
        .await
        .expect_err("too many values for one statement");
    let text = err.to_string();
    let head = &text[..text.len().min(400)];
    assert_eq!(err.kind(), ErrorKind::Refused, "{head}");
    assert!(text.contains("65535"), "{head}");
    let s = node.status().await;
    assert!(s.is_online && !s.using_local_database, "{s:?}");
    // The next request is served (by the server: the node is online).
    let found: Option<Json> = node
        .model("User")?
        .find_unique(json!({"where": {"id": "u1"}}))
        .await?;
    assert!(found.is_some());
    assert!(node.status().await.is_online);
    node.shutdown().await;
    Ok(())
}
