//! The engine's counters move with real syncs against a real server.

mod common;

use common::*;
use outpost_core::sync::Direction;
use outpost_testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_syncs_move_the_counters() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u0', 'zero@x'), ('u1', 'one@x')"#)
        .await?;
    let engine = node(&db, &schema, "n")?;
    let zero = engine.metrics();
    assert_eq!((zero.runs_succeeded, zero.duration_count), (0, 0));
    assert_eq!(engine.cursor_age().await?, None, "never pulled");
    assert_eq!(engine.progress(), None);

    // First run: a bootstrap copies the two users.
    sync(&engine, Direction::Bidirectional).await?;
    let m = engine.metrics();
    assert_eq!((m.runs_succeeded, m.runs_failed), (1, 0));
    assert_eq!(m.rows_bootstrapped, 2);
    assert_eq!(m.duration_count, 1);
    assert!(m.duration_sum_secs > 0.0);
    assert!(engine.cursor_age().await?.is_some_and(|a| a.as_secs() < 60));

    // A local insert is pushed; a server insert is pulled.
    local(
        &engine,
        r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('p1', 'Hi', 0, 'u0')"#,
    )
    .await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u2', 'two@x')"#)
        .await?;
    sync(&engine, Direction::Bidirectional).await?;
    let m = engine.metrics();
    assert_eq!(m.runs_succeeded, 2);
    assert_eq!(m.rows_pushed, 1);
    // An open transaction anywhere on the shared server may hold the change
    // back for a moment (the pull horizon): pull until it arrives.
    let mut extra = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while engine.metrics().rows_pulled == 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "never pulled");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sync(&engine, Direction::FromServer).await?;
        extra += 1;
    }

    // A refused row (duplicate email) counts as failed; a conflict counts.
    local(
        &engine,
        r#"INSERT INTO "User" (id, email) VALUES ('u9', 'two@x'); UPDATE "User" SET name = 'local' WHERE id = 'u1'"#,
    )
    .await?;
    client
        .batch_execute(r#"UPDATE "User" SET name = 'server' WHERE id = 'u1'"#)
        .await?;
    sync(&engine, Direction::Bidirectional).await?;
    let m = engine.metrics();
    assert_eq!(m.failed, 1, "{m:?}");
    assert_eq!(m.conflicts, 1, "{m:?}");
    assert_eq!(m.runs_succeeded, 3 + extra);
    assert_eq!(m.duration_count, 3 + extra);
    assert_eq!(engine.progress(), None, "no run under way");

    // While a run goes, its progress is visible to anyone holding the engine.
    local(
        &engine,
        r#"UPDATE "User" SET name = 'again' WHERE id = 'u0'"#,
    )
    .await?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (e, s) = (engine.clone(), seen.clone());
    let mut options =
        outpost_engine::SyncOptions::new(Direction::ToServer, outpost_core::sync::Trigger::Manual);
    options.progress = Some(std::sync::Arc::new(move |_| {
        if let (Some(p), Ok(mut s)) = (e.progress(), s.lock()) {
            s.push((p.direction, p.phase, p.rows));
        }
    }));
    assert!(engine.sync(options).await?.success);
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen, vec![("TO_SERVER".to_string(), "push".to_string(), 1)]);
    assert_eq!(engine.progress(), None, "cleared at the end");

    // A run that cannot reach the server counts as failed.
    let broken = {
        let path = db.dir().join("n.db");
        drop(engine);
        let replica = outpost_local::Replica::open(&path)?;
        let config = outpost_core::config::Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some("postgres://postgres@127.0.0.1:1/none".into()),
            "LOCAL_DATABASE_URL" => Some(format!("file:{}", path.display())),
            _ => None,
        })?;
        outpost_engine::Engine::new(replica, config)
    };
    let report = broken
        .sync(outpost_engine::SyncOptions::new(
            Direction::Bidirectional,
            outpost_core::sync::Trigger::Manual,
        ))
        .await?;
    assert!(!report.success);
    let m = broken.metrics();
    assert_eq!(
        (m.runs_succeeded, m.runs_failed),
        (0, 1),
        "a new engine starts at zero"
    );
    Ok(())
}
