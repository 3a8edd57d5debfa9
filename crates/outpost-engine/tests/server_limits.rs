//! What sync work costs the server: its sessions carry a `lock_timeout` and
//! a `statement_timeout` (a bootstrap's COPY is exempt from the latter), and
//! a push holds locks on user tables for one batch at most. Asserted by
//! structure (which error, which transactions, who waits), not by timing.

mod common;

use std::time::Duration;

use common::*;
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::SyncOptions;
use outpost_testkit::TestDb;

async fn failed_with(
    engine: &outpost_engine::Engine,
    direction: Direction,
) -> anyhow::Result<String> {
    let report = engine
        .sync(SyncOptions::new(direction, Trigger::Manual))
        .await?;
    anyhow::ensure!(!report.success, "the sync should have failed: {report:?}");
    Ok(report.errors.values().next().cloned().unwrap_or_default())
}

/// A table locked by someone else makes a pull and a bootstrap give up
/// after the lock timeout (instead of waiting for ever), and both succeed
/// once the lock is gone.
#[tokio::test]
async fn pulls_and_bootstraps_give_up_on_a_lock_after_the_lock_timeout() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    let fresh = node(&db, &schema, "fresh")?;
    for n in [&a, &fresh] {
        // The statement limit stays long: the lock limit must be what fires.
        n.set_server_timeouts(Duration::from_secs(600), Duration::from_millis(200));
    }
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u2', 'u2@x')"#)
        .await?;
    // Wait until the pull horizon (cluster-wide) passes that change, so the
    // pull does read "User".
    for _ in 0..400 {
        let passed: bool = client
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) > (SELECT max(txid) FROM outpost.changes)",
                &[],
            )
            .await?
            .get(0);
        if passed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut locker = db.client().await?;
    let tx = locker.transaction().await?;
    tx.batch_execute(r#"LOCK TABLE "User" IN ACCESS EXCLUSIVE MODE"#)
        .await?;
    let pull = failed_with(&a, Direction::FromServer).await?;
    assert!(pull.contains("lock timeout"), "pull: {pull}");
    let bootstrap = failed_with(&fresh, Direction::Bidirectional).await?;
    assert!(bootstrap.contains("lock timeout"), "bootstrap: {bootstrap}");
    tx.rollback().await?;
    converge(&client, &schema, &[&a, &fresh]).await?;
    Ok(())
}

/// A bootstrap's COPY streams as long as it takes: a statement limit far
/// shorter than the copy does not cut it off (the session's limit is lifted
/// inside the bootstrap's snapshot only).
#[tokio::test]
async fn a_bootstrap_copy_outlasts_a_short_statement_timeout() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    // Rows written before tracking is installed: the change log stays empty,
    // so the COPY is the only long statement of the sync.
    let (_client, schema) = server(
        &db,
        &format!(
            r#"{BLOG} INSERT INTO "User" (id, email, name) SELECT 'u' || i, 'u' || i || '@x', repeat('x', 200)
               FROM generate_series(1, 60000) i;"#
        ),
    )
    .await?;
    let a = node(&db, &schema, "a")?;
    // 60,000 rows written into SQLite while the COPY streams take far
    // longer than 20 ms.
    a.set_server_timeouts(Duration::from_millis(20), Duration::from_secs(30));
    let started = std::time::Instant::now();
    let report = sync(&a, Direction::FromServer).await?;
    assert!(report.bootstrapped);
    assert!(
        started.elapsed() > Duration::from_millis(20),
        "the copy took longer than the statement limit, or the test proves nothing"
    );
    assert_eq!(local_rows(&a, "User").await?.len(), 60_000);
    Ok(())
}

/// A push of several batches commits each batch on its own: while the push
/// waits for a row lock in its last batch, the rows of its earlier batches
/// are committed and unlocked (a writer with a tiny lock_timeout updates one),
/// and each batch is one server transaction of at most the batch size.
#[tokio::test]
async fn a_push_holds_row_locks_for_one_batch_at_most() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('old', 'old', 'u1');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    a.set_push_batch(100);
    // 200 new posts (batches 1 and 2), then an edit of 'old' (batch 3).
    local(
        &a,
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
           INSERT INTO "Post" (id, title, "userId") SELECT 'n' || i, 'new', 'u1' FROM n;"#,
    )
    .await?;
    local(&a, r#"UPDATE "Post" SET title = 'edited' WHERE id = 'old'"#).await?;
    // Someone holds 'old'.
    let mut holder = db.client().await?;
    let hold = holder.transaction().await?;
    hold.batch_execute(r#"SELECT 1 FROM "Post" WHERE id = 'old' FOR UPDATE"#)
        .await?;
    let pusher = a.clone();
    let push = tokio::spawn(async move {
        pusher
            .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
            .await
    });
    // Wait until the push waits for that lock.
    let mut waiting = false;
    for _ in 0..600 {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
                &[],
            )
            .await?
            .get(0);
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waiting, "the push reached the locked row");
    // Batches 1 and 2 are committed and hold no locks.
    let landed: i64 = client
        .query_one(r#"SELECT count(*) FROM "Post" WHERE id LIKE 'n%'"#, &[])
        .await?
        .get(0);
    assert_eq!(
        landed, 200,
        "earlier batches committed while the push waits"
    );
    let writer = db.client().await?;
    writer
        .batch_execute(
            r#"SET lock_timeout = '50ms'; UPDATE "Post" SET title = 'server' WHERE id IN ('n1', 'n150')"#,
        )
        .await?;
    hold.rollback().await?;
    let report = push.await??;
    assert!(report.success, "{report:?}");
    // One transaction per batch, none larger than a batch.
    let per_tx: Vec<i64> = client
        .query(
            "SELECT count(*) FROM outpost.changes WHERE origin = $1 GROUP BY txid ORDER BY txid",
            &[&a.node_id().to_string()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(per_tx, vec![100, 100, 1], "changes per push transaction");
    converge(&client, &schema, &[&a]).await?;
    Ok(())
}

/// The connection a node keeps between runs is checked before each: the
/// tracking schema dropped meanwhile gives the clear error, not a failure
/// of some statement prepared on the old connection.
#[tokio::test]
async fn a_kept_connection_notices_the_tracking_schema_is_gone() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema, a) = blog_with_user(&db).await?;
    sync(&a, Direction::FromServer).await?;
    client.batch_execute("DROP SCHEMA outpost CASCADE").await?;
    let error = failed_with(&a, Direction::FromServer).await?;
    assert!(
        error.contains("no outpost tracking schema"),
        "unexpected error: {error}"
    );
    Ok(())
}

/// A column whose type changes on the server between two pulls (the
/// statements prepared on the kept connection describe the old type) does
/// not stop the node: the row arrives with its new value.
#[tokio::test]
async fn a_column_type_change_between_pulls_does_not_break_the_kept_statements()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(r#"UPDATE "User" SET email = 'first@x' WHERE id = 'u1'"#)
        .await?;
    // Until quiet (another test's open transaction can hold changes back),
    // so the pull statements were prepared and used.
    converge(&client, &schema, &[&a]).await?;
    client
        .batch_execute(
            r#"ALTER TABLE "User" ALTER COLUMN email TYPE varchar(200);
               UPDATE "User" SET email = 'second@x' WHERE id = 'u1'"#,
        )
        .await?;
    sync(&a, Direction::FromServer).await?;
    converge(&client, &schema, &[&a]).await?;
    let rows = local_rows(&a, "User").await?;
    assert!(
        format!("{rows:?}").contains("second@x"),
        "the update after the type change arrived: {rows:?}"
    );
    Ok(())
}

/// `OUTPOST_STATEMENT_TIMEOUT` reaches the server's sessions: a push whose
/// statement runs past it (a slow `BEFORE` trigger) is cancelled by the
/// server and the run fails saying so; the edit stays pending and lands once
/// the limit is raised.
#[tokio::test]
async fn the_configured_statement_timeout_bounds_the_push() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, _) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$;
               CREATE TRIGGER slow BEFORE INSERT ON "User" FOR EACH ROW EXECUTE FUNCTION slow();"#,
        )
        .await?;
    let path = db.dir().join("short.db");
    let (replica, _) = outpost_local::Replica::setup(&path, &schema)?;
    let url = db.database_url();
    let local_url = format!("file:{}", path.display());
    let config = outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local_url.clone()),
        "OUTPOST_STATEMENT_TIMEOUT" => Some("300".into()),
        _ => None,
    })?;
    let short = outpost_engine::Engine::new(replica, config);
    assert_eq!(short.timeouts().statement, Duration::from_millis(300));
    sync(&short, Direction::Bidirectional).await?;
    local(
        &short,
        r#"INSERT INTO "User" (id, email) VALUES ('slow', 'slow@x')"#,
    )
    .await?;
    let error = failed_with(&short, Direction::ToServer).await?;
    assert!(error.contains("statement timeout"), "{error}");
    let landed: i64 = client
        .query_one(r#"SELECT count(*) FROM "User" WHERE id = 'slow'"#, &[])
        .await?
        .get(0);
    assert_eq!(landed, 0, "the cancelled push wrote nothing");
    short.set_server_timeouts(Duration::from_secs(30), Duration::from_secs(30));
    sync(&short, Direction::ToServer).await?;
    let landed: i64 = client
        .query_one(r#"SELECT count(*) FROM "User" WHERE id = 'slow'"#, &[])
        .await?
        .get(0);
    assert_eq!(landed, 1, "the edit was kept and landed");
    Ok(())
}

/// A row locked on the server by someone else makes the push give up after
/// the lock timeout without blaming the row: the run fails, the edit stays
/// pending (not `FAILED`), and it lands once the lock is gone.
#[tokio::test]
async fn a_push_that_meets_a_lock_keeps_its_rows_pending() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema, a) = blog_with_user(&db).await?;
    a.set_server_timeouts(Duration::from_secs(600), Duration::from_millis(200));
    local(
        &a,
        r#"UPDATE "User" SET name = 'from the node' WHERE id = 'u1'"#,
    )
    .await?;
    let mut locker = db.client().await?;
    let tx = locker.transaction().await?;
    tx.batch_execute(r#"SELECT * FROM "User" WHERE id = 'u1' FOR UPDATE"#)
        .await?;
    let error = failed_with(&a, Direction::ToServer).await?;
    assert!(error.contains("lock timeout"), "{error}");
    let status = a.status().await?;
    assert_eq!((status.pending, status.failed), (1, 0), "{status:?}");
    tx.rollback().await?;
    sync(&a, Direction::ToServer).await?;
    let name: Option<String> = client
        .query_one(r#"SELECT name FROM "User" WHERE id = 'u1'"#, &[])
        .await?
        .get(0);
    assert_eq!(name.as_deref(), Some("from the node"));
    Ok(())
}
