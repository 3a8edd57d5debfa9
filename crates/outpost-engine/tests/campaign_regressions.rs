//! Bugs the fault campaign (`crates/outpost/tests/campaign.rs`) found, each
//! reduced to the smallest sequence that shows it. See
//! `docs/reliability.md` for the campaign and the list.

mod common;

use common::*;
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::SyncOptions;
use outpost_testkit::TestDb;

/// `FAILED` rows keep the server's reason, also when a pull brings back the
/// node's own earlier push of that row (found by campaign seed 9: a pushed
/// edit whose acknowledgement was lost, then a second edit the server
/// refused; the pull re-based the row and wiped its error).
#[tokio::test]
async fn a_failed_row_keeps_its_reason_when_its_own_earlier_push_is_pulled() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, schema) = server(&db, BLOG).await?;
    let a = node(&db, &schema, "a")?;
    _client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'one', 'u1');"#,
        )
        .await?;
    sync(&a, Direction::Bidirectional).await?;
    // An edit lands on the server; its acknowledgement is lost.
    local(&a, r#"UPDATE "Post" SET title = 'edited' WHERE id = 'p1'"#).await?;
    a.arm_fault(outpost_engine::FaultPoint::PushAfterCommit);
    let lost = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    assert!(!lost.success);
    // A second edit the server refuses (no such user).
    local(
        &a,
        r#"UPDATE "Post" SET "userId" = 'ghost' WHERE id = 'p1'"#,
    )
    .await?;
    sync(&a, Direction::ToServer).await?;
    let failed = a.with_replica(|r| r.failed_rows(10)).await?;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].error.as_deref().is_some_and(|e| !e.is_empty()));
    // The pull brings back the first edit, written by this very node.
    // (The pull horizon is cluster-wide: other tests' transactions can hold
    // the change back for a moment.)
    for _ in 0..200 {
        sync(&a, Direction::FromServer).await?;
        if server_version(&a, "Post").await?.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        server_version(&a, "Post").await?.is_some(),
        "the pull brought it"
    );
    let failed = a.with_replica(|r| r.failed_rows(10)).await?;
    assert_eq!(failed.len(), 1, "still failed: {failed:?}");
    assert!(
        failed[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("foreign key")),
        "the reason is kept: {failed:?}"
    );
    Ok(())
}

/// The `server_version` of the only `_outpost_rows` entry of `table`.
async fn server_version(
    engine: &outpost_engine::Engine,
    table: &str,
) -> anyhow::Result<Option<i64>> {
    let t = table.to_string();
    Ok(engine
        .with_replica(move |r| {
            r.connection()
                .query_row(
                    "SELECT server_version FROM _outpost_rows WHERE table_name = ?1",
                    [t],
                    |row| row.get(0),
                )
                .map_err(outpost_local::LocalError::sqlite("reading a version"))
        })
        .await?)
}

/// Inserts post `p1` (of user `u1`) on `node` and pushes it; the push lands
/// but its acknowledgement is dropped, so the row stays pending there.
async fn insert_post_losing_the_ack(node: &outpost_engine::Engine) -> anyhow::Result<()> {
    local(
        node,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'mine', 'u1')"#,
    )
    .await?;
    node.arm_fault(outpost_engine::FaultPoint::PushAfterCommit);
    let lost = node
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    assert!(!lost.success, "the acknowledgement was dropped");
    Ok(())
}

/// A row whose insert landed but whose acknowledgement was lost, then was
/// deleted by another node, is not inserted again by the retry (found by
/// campaign seed 3 of the second run: the retry saw "inserted here, absent
/// there" as a local insert the server had never seen, and resurrected the
/// deleted row). The node lists the row as a conflict instead.
#[tokio::test]
async fn a_retried_insert_does_not_resurrect_a_row_deleted_after_it_landed() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let (a, b) = (node(&db, &schema, "a")?, node(&db, &schema, "b")?);
    sync(&a, Direction::Bidirectional).await?;
    sync(&b, Direction::Bidirectional).await?;
    insert_post_losing_the_ack(&a).await?;
    // b sees the post and deletes it.
    for _ in 0..200 {
        sync(&b, Direction::FromServer).await?;
        if !local_rows(&b, "Post").await?.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(local(&b, r#"DELETE FROM "Post" WHERE id = 'p1'"#).await?, 1);
    sync(&b, Direction::ToServer).await?;
    assert!(server_rows(&client, &schema, "Post").await?.is_empty());
    // a retries.
    sync(&a, Direction::Bidirectional).await?;
    assert!(
        server_rows(&client, &schema, "Post").await?.is_empty(),
        "the deleted row came back"
    );
    converge(&client, &schema, &[&a, &b]).await?;
    Ok(())
}

/// A node's later write on the server (remote mode) is not undone by its
/// own earlier offline edit of that row (found by campaign seed 31 of the
/// 200-seed run: the offline edit, pushed after the remote delete, was
/// trusted as "based on this node's own version" and inserted the deleted
/// row again). Only versions a push wrote count as the node's own base;
/// here the two writes clash and the row is listed as a conflict.
#[tokio::test]
async fn an_earlier_offline_edit_does_not_undo_a_later_remote_delete() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email, name) VALUES ('u1', 'u1@x', 'first')"#)
        .await?;
    let path = db.dir().join("app.db");
    outpost_local::Replica::setup(&path, &schema)?;
    let app = outpost_engine::Outpost::open_with(
        config(&db, &path)?,
        outpost_engine::NodeOptions {
            monitor: false,
            ..outpost_engine::NodeOptions::default()
        },
    )
    .await?;
    let report = app.sync(Direction::Bidirectional).await?;
    assert!(report.success, "{report:?}");
    // Offline: an edit, queued.
    app.set_mode(outpost_engine::Mode::Local).await;
    let _: serde_json::Value = app
        .model("User")?
        .update(serde_json::json!({"where": {"id": "u1"}, "data": {"name": "offline"}}))
        .await?;
    // Online again, before any sync: the application deletes the row.
    app.set_mode(outpost_engine::Mode::Remote).await;
    let _: serde_json::Value = app
        .model("User")?
        .delete(serde_json::json!({"where": {"id": "u1"}}))
        .await?;
    assert!(server_rows(&client, &schema, "User").await?.is_empty());
    let report = app.sync(Direction::Bidirectional).await?;
    assert!(report.success, "{report:?}");
    assert!(
        server_rows(&client, &schema, "User").await?.is_empty(),
        "the earlier offline edit brought the deleted row back"
    );
    let conflicts = app.conflicts().await?;
    assert_eq!(conflicts.len(), 1, "the clash is listed: {conflicts:?}");
    app.shutdown().await;
    Ok(())
}

/// The mirror of a remote-mode write never overwrites a newer server
/// version a concurrent pull already applied (found by campaign seed 46 of
/// the 200-seed run: a sync in another process pulled the row's delete
/// between the write's commit and its mirror, the mirror then wrote the
/// older row back as synced, and the cursor had moved past the delete, so
/// the replica kept a row the server no longer had).
#[tokio::test]
async fn a_late_mirror_does_not_overwrite_a_newer_pulled_version() -> anyhow::Result<()> {
    use outpost_core::sync::{PullBatch, ServerRow};
    use outpost_core::types::Value;
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'one', 'u1');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    let post = local_rows(&a, "Post").await?.remove(0);
    let key = vec![Value::Text("p1".into())];
    // A pull applies version 100 of p1: deleted.
    let batch = PullBatch {
        rows: vec![ServerRow {
            table: "Post".into(),
            pk: key.clone(),
            values: None,
            version: outpost_core::Version(100),
            origin: None,
            origin_local_seq: None,
            changed_at: None,
            out_of_scope: false,
            tag: None,
        }],
        ..PullBatch::default()
    };
    a.with_replica(move |r| r.apply_pull(&batch, &outpost_local::Policies::default(), false))
        .await?;
    // Then the mirror of an earlier remote write (version 99) arrives.
    let mut edited = post.clone();
    edited[1] = Value::Text("remote edit".into());
    a.with_replica(move |r| {
        r.mirror(&[outpost_local::sync::Mirrored {
            table: "Post".into(),
            pk: key,
            values: Some(edited),
            version: 99,
            tag: None,
        }])
    })
    .await?;
    assert!(
        local_rows(&a, "Post").await?.is_empty(),
        "the older mirrored row came back over the newer delete"
    );
    Ok(())
}

/// A bootstrap resumed after the change log was pruned copies again the
/// tables it had finished before (found by campaign seed 2 of the second
/// 200-seed run: a node killed mid-bootstrap kept its finished table from
/// the old snapshot, the changes after that snapshot were pruned meanwhile,
/// and the resumed bootstrap's cursor started before the pruned range, so a
/// row inserted in between never reached the replica).
#[tokio::test]
async fn a_resumed_bootstrap_recopies_tables_whose_changes_were_pruned() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    // Tables are copied in name order: "Post" (small) first, then "User"
    // (big enough for the mid-table fault point).
    assert_eq!(schema.tables[0].name, "Post");
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) SELECT 'u' || i, 'u' || i || '@x' FROM generate_series(1, 25000) i;
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'early', 'u1');"#,
        )
        .await?;
    let b = node(&db, &schema, "b")?;
    sync(&b, Direction::Bidirectional).await?;
    let a = node(&db, &schema, "a")?;
    a.arm_fault(outpost_engine::FaultPoint::BootstrapMidTable);
    let broken = a
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!broken.success, "stopped in the middle of User, Post done");
    client
        .batch_execute(r#"INSERT INTO "Post" (id, title, "userId") VALUES ('late', 'after the snapshot', 'u2')"#)
        .await?;
    // b prunes everything older than a millisecond (once the horizon allows).
    prune_everything(&client, &b).await?;
    sync(&a, Direction::Bidirectional).await?;
    let posts = local_rows(&a, "Post").await?;
    assert_eq!(
        posts.len(),
        2,
        "the late post reached the resumed replica: {posts:?}"
    );
    converge(&client, &schema, &[&a, &b]).await?;
    Ok(())
}

/// A remote-mode write mirrored while the replica bootstraps does not leave
/// a stale copied row behind (found by campaign seed 80 of the third run: a
/// remote delete was mirrored between a table's clearing and its copy from
/// an older snapshot; the copy put the row back while its entry said
/// "deleted at the newest version", so the re-pulled delete was skipped as
/// already applied). During a bootstrap nothing is mirrored: the copy or the
/// pull after it brings the write.
#[tokio::test]
async fn a_mirror_during_a_bootstrap_does_not_hide_a_later_delete() -> anyhow::Result<()> {
    use outpost_core::sync::{PullBatch, ServerRow};
    use outpost_core::types::Value;
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'one', 'u1');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    let post = local_rows(&a, "Post").await?.remove(0);
    let key = vec![Value::Text("p1".into())];
    let (k1, k2) = (key.clone(), key.clone());
    a.with_replica(move |r| {
        // A bootstrap starts and clears Post; the copy (older snapshot,
        // p1 present) is still on its way when the mirror of a remote
        // delete (version 100) arrives.
        let (cursor, _) = r.cursor()?;
        r.bootstrap_begin()?;
        r.bootstrap_clear("Post")?;
        r.mirror(&[outpost_local::sync::Mirrored {
            table: "Post".into(),
            pk: k1,
            values: None,
            version: 100,
            tag: None,
        }])?;
        r.bootstrap_insert("Post", &[post], Some(cursor))?;
        r.bootstrap_insert("User", &[], Some(cursor))?;
        r.bootstrap_finish()?;
        // The pull after the bootstrap delivers the delete.
        let batch = PullBatch {
            rows: vec![ServerRow {
                table: "Post".into(),
                pk: k2,
                values: None,
                version: outpost_core::Version(100),
                origin: None,
                origin_local_seq: None,
                changed_at: None,
                out_of_scope: false,
                tag: None,
            }],
            ..PullBatch::default()
        };
        r.apply_pull(&batch, &outpost_local::Policies::default(), false)?;
        Ok(())
    })
    .await?;
    assert!(
        local_rows(&a, "Post").await?.is_empty(),
        "the copied row hid the delete"
    );
    Ok(())
}

/// A row this node inserted, whose acknowledgement was lost, then updated on
/// the server and deleted here before the node pulled it again, is listed as
/// a conflict, not silently put back (found by campaign seed 1024 of the
/// third session's run: the delete's entry had no base, as a row created
/// here, so "absent in the base and here, present on the server" read as an
/// insert and delete the server had never seen, and the server's row won
/// without a word; the local delete was lost).
#[tokio::test]
async fn a_local_delete_of_an_own_insert_updated_on_the_server_is_a_conflict() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    insert_post_losing_the_ack(&a).await?;
    client
        .batch_execute(r#"UPDATE "Post" SET title = 'theirs' WHERE id = 'p1'"#)
        .await?;
    assert_eq!(local(&a, r#"DELETE FROM "Post" WHERE id = 'p1'"#).await?, 1);
    sync(&a, Direction::ToServer).await?;
    let server = server_rows(&client, &schema, "Post").await?;
    let conflicts = a.with_replica(|r| r.conflicts()).await?;
    assert!(
        server.is_empty() || conflicts.iter().any(|c| c.pk == "[\"p1\"]"),
        "the local delete was dropped: server {server:?}, conflicts {conflicts:?}"
    );
    assert_eq!(server.len(), 1, "the server's update was not overwritten");
    Ok(())
}

/// A prune that commits between a run's check of the retention mark and
/// its pull's snapshot must not make the pull skip the pruned changes.
/// Ordinarily no prune removes changes a registered node has not pulled
/// (it stops at the lowest recorded cursor), but a copied or restored file
/// shares its node id with the file the server last heard from until it is
/// told apart, and the other file's cursor can let the server prune what
/// this one still needs. (Suspected in a campaign `diverged` seen once
/// under load, seed 14: the copied node lacked a row another node had
/// inserted, after prunes while it was away.) Here the prune is timed into
/// the window by a row lock that holds the run's push: the run has checked
/// the mark and waits; the change log is pruned past its cursor; the lock
/// goes; the pull must notice and copy the server again.
#[tokio::test]
async fn a_prune_between_the_check_and_the_pull_does_not_skip_changes() -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let a = node(&db, &schema, "a")?;
    for _ in 0..200 {
        sync(&a, Direction::Bidirectional).await?;
        if local_rows(&a, "User").await?.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(local_rows(&a, "User").await?.len(), 1);
    let (cursor, _) = a.with_replica(|r| r.cursor()).await?;
    // A change the node has not pulled, and a local edit to push.
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('gap', 'gap@x')"#)
        .await?;
    local(&a, r#"UPDATE "User" SET name = 'local' WHERE id = 'u1'"#).await?;
    // Hold the row the push writes.
    let mut holder = db.client().await?;
    let lock = holder.transaction().await?;
    lock.execute(r#"SELECT 1 FROM "User" WHERE id = 'u1' FOR UPDATE"#, &[])
        .await?;
    let running = {
        let a = a.clone();
        tokio::spawn(async move { sync(&a, Direction::Bidirectional).await })
    };
    // The run is past its check of the mark once its push waits on the lock.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await?
            .get(0);
        if waiting > 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the push never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Prune past the node's cursor (the horizon is cluster-wide: other
    // tests' transactions can keep the change back for a while).
    let mut pruner = db.client().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        outpost_remote::feed::prune(&mut pruner, Duration::from_millis(1)).await?;
        let mark = outpost_remote::feed::feed_position(&pruner, cursor).await?;
        if mark.must_rebootstrap {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the change log was never pruned past the cursor"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.commit().await?;
    let report = running.await??;
    assert!(report.success, "{report:?}");
    let ids: Vec<String> = local_rows(&a, "User")
        .await?
        .iter()
        .map(|r| format!("{:?}", r[0]))
        .collect();
    assert!(
        ids.iter().any(|id| id.contains("gap")),
        "the pruned change's row reached the replica: {ids:?}"
    );
    let name: Option<String> = client
        .query_one(r#"SELECT name FROM "User" WHERE id = 'u1'"#, &[])
        .await?
        .get(0);
    assert_eq!(name.as_deref(), Some("local"));
    Ok(())
}

/// An older queued edit is not taken for "already applied" because a
/// foreign-key action of the node's own later push touched the row (found
/// by campaign seed 163: node 0's offline edit of a post, then its delete of
/// the post's user; with `Post` held back the `User` push went first, the
/// server's `ON DELETE CASCADE` deleted the post, and the capture stamped
/// the post's tombstone with the `User` push's change number, so the post's
/// older edit was answered "already applied" and vanished). Only the rows
/// a push's own statement writes carry its change number (tracking schema
/// version 6): the cascaded delete is a change like anyone's, and the edit
/// meets it as a conflict.
#[tokio::test]
async fn an_edit_is_not_answered_already_applied_by_a_cascade_of_a_later_push() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p5', 'first', 'u1')"#,
    )
    .await?;
    sync(&a, Direction::Bidirectional).await?;
    // Offline: the post is edited, then its user deleted without touching
    // the post locally (as the model service's delete does).
    local(
        &a,
        r#"UPDATE "Post" SET title = 'edited offline' WHERE id = 'p5'"#,
    )
    .await?;
    local(
        &a,
        r#"PRAGMA foreign_keys = OFF; DELETE FROM "User" WHERE id = 'u1'; PRAGMA foreign_keys = ON;"#,
    )
    .await?;
    // Only `User` is pushed first, as when `Post` is held back.
    let mut only_users = SyncOptions::new(Direction::ToServer, Trigger::Manual);
    only_users.models = Some(vec!["User".into()]);
    let first = a.sync(only_users).await?;
    assert!(first.success, "{first:?}");
    assert!(
        server_rows(&client, &schema, "Post").await?.is_empty(),
        "the cascade ran"
    );
    let stamped: Option<i64> = client
        .query_one(
            "SELECT origin_local_seq FROM outpost.row_versions WHERE table_name = 'Post'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(
        stamped, None,
        "the cascaded delete carries no change number of the push"
    );
    // Then everything: the post's edit meets the cascaded delete.
    let report = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    let conflicts: u64 = report.results.values().map(|s| s.conflicts).sum();
    assert_eq!(
        conflicts, 1,
        "the edit is a conflict, not 'already applied': {report:?}"
    );
    let listed = a.conflicts().await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        unsettled(&a)
            .await?
            .contains(&("Post".to_string(), "[\"p5\"]".to_string())),
        "the edit is kept for a person"
    );
    Ok(())
}
