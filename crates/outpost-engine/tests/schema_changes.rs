//! Schema changes on the server with local edits waiting (docs/protocol.md,
//! "Schema changes"): a dropped column or table fails only its own table's
//! sync until `setup` migrates the replica, the other tables push and pull;
//! `setup` keeps the edits, pushes the rest of an edit whose column is
//! gone and then reports the lost value as `FAILED`; a dropped table's
//! edits are saved to a file.

mod common;

use common::*;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, SyncOptions, SyncReport};
use outpost_remote::tokio_postgres::Client;
use outpost_testkit::TestDb;

/// A change waited for is synced for up to `TRIES × PAUSE` (30 s): the pull
/// horizon is cluster-wide.
const TRIES: usize = 60;
const PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

async fn run(engine: &Engine) -> anyhow::Result<SyncReport> {
    Ok(engine
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?)
}

/// `(status, error)` of a row's entry.
async fn entry(
    engine: &Engine,
    table: &str,
    pk: &str,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    let (table, pk) = (table.to_string(), pk.to_string());
    Ok(engine
        .with_replica(move |r| {
            use outpost_local::LocalError;
            let got = r.connection().query_row(
                "SELECT status, error FROM _outpost_rows WHERE table_name = ?1 AND pk = ?2",
                outpost_local::rusqlite::params![table, pk],
                |row| Ok((row.get(0)?, row.get(1)?)),
            );
            match got {
                Ok(v) => Ok(Some(v)),
                Err(outpost_local::rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) => Err(LocalError::sqlite("test")(e)),
            }
        })
        .await?)
}

async fn server_text(client: &Client, sql: &str) -> anyhow::Result<Option<String>> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Syncs `a` until its edit of post `p1` is no longer pending, then checks
/// that the edit met the server's delete: `p1` is not on the server again
/// and the node lists it as a conflict.
async fn edit_meets_the_delete(client: &Client, a: &Engine) -> anyhow::Result<()> {
    let mut status = None;
    for _ in 0..TRIES {
        run(a).await?;
        status = entry(a, "Post", r#"["p1"]"#).await?.map(|e| e.0);
        if status.as_deref() != Some("PENDING") {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let n: i64 = client
        .query_one(r#"SELECT count(*) FROM "Post" WHERE id = 'p1'"#, &[])
        .await?
        .get(0);
    assert_eq!(n, 0, "the deleted row was inserted again ({status:?})");
    assert_eq!(status.as_deref(), Some("CONFLICT"));
    Ok(())
}

/// User `u1` with post `p1` (body `b0`) on the server, and node `a`
/// converged on them (`p1` came with its bootstrap: no entry of its own).
async fn user_and_post(db: &TestDb) -> anyhow::Result<(Client, Engine)> {
    let (client, schema) = server(db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    let a = node(db, &schema, "a")?;
    converge(&client, &schema, &[&a]).await?;
    Ok((client, a))
}

/// `a` edits post `p1` offline; the server deletes `p1`, drops a column of
/// `Post` and changes user `u1`; `a` syncs on its old schema until `u1`'s
/// change arrives (the cursor moves past the delete while `Post` is held
/// back).
async fn edit_delete_and_sync_on_the_old_schema(client: &Client, a: &Engine) -> anyhow::Result<()> {
    local(a, r#"UPDATE "Post" SET title = 't-local' WHERE id = 'p1'"#).await?;
    delete_and_sync_on_the_old_schema(client, a).await
}

/// The server deletes `p1`, drops a column of `Post` and changes user
/// `u1`; `a` syncs on its old schema until `u1`'s change arrives.
async fn delete_and_sync_on_the_old_schema(client: &Client, a: &Engine) -> anyhow::Result<()> {
    client
        .batch_execute(
            r#"DELETE FROM "Post" WHERE id = 'p1';
               ALTER TABLE "Post" DROP COLUMN body;
               UPDATE "User" SET name = 'after' WHERE id = 'u1';"#,
        )
        .await?;
    for _ in 0..TRIES {
        run(a).await?;
        let users = local_rows(a, "User").await?;
        if users
            .iter()
            .any(|r| r.contains(&Value::Text("after".into())))
        {
            return Ok(());
        }
        tokio::time::sleep(PAUSE).await;
    }
    anyhow::bail!("User's change never arrived")
}

#[tokio::test]
async fn a_dropped_column_fails_only_its_table_and_setup_keeps_the_rest_of_the_edit()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    local(
        &a,
        r#"UPDATE "Post" SET title = 't-local', body = 'b-local' WHERE id = 'p1'"#,
    )
    .await?;
    local(
        &a,
        r#"UPDATE "User" SET name = 'local name' WHERE id = 'u1'"#,
    )
    .await?;
    client
        .batch_execute(
            r#"ALTER TABLE "Post" DROP COLUMN body;
               UPDATE "Post" SET views = 5 WHERE id = 'p1';
               INSERT INTO "User" (id, email) VALUES ('u2', 'u2@x');"#,
        )
        .await?;

    // Before setup: Post fails saying what to do; User pushes and pulls.
    let mut pulled_u2 = false;
    for _ in 0..TRIES {
        let report = run(&a).await?;
        assert!(!report.success, "{report:?}");
        let post = report.errors.get("Post").cloned().unwrap_or_default();
        assert!(
            post.contains("Post") && post.contains("outpost setup"),
            "{report:?}"
        );
        assert!(!report.errors.contains_key("User"), "{report:?}");
        if local_rows(&a, "User").await?.len() == 2 {
            pulled_u2 = true;
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    assert!(pulled_u2, "a server change to User never arrived");
    assert_eq!(
        server_text(&client, r#"SELECT name FROM "User" WHERE id = 'u1'"#).await?,
        Some("local name".into())
    );
    assert_eq!(
        entry(&a, "Post", r#"["p1"]"#).await?.map(|e| e.0),
        Some("PENDING".into())
    );
    assert_eq!(
        server_text(&client, r#"SELECT title FROM "Post" WHERE id = 'p1'"#).await?,
        Some("t".into())
    );

    // `setup` carries the edit into the new definition.
    let path = db.dir().join("a.db");
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.rebuilt, ["Post"]);
    assert_eq!((report.kept_edits, report.lost_values), (1, 1));

    let mut done = false;
    for _ in 0..TRIES {
        let report = run(&a).await?;
        let title = server_text(&client, r#"SELECT title FROM "Post" WHERE id = 'p1'"#).await?;
        let views: i32 = client
            .query_one(r#"SELECT views FROM "Post" WHERE id = 'p1'"#, &[])
            .await?
            .get(0);
        if title.as_deref() == Some("t-local") && report.errors.is_empty() {
            // Only the changed column went: the server's views stayed.
            assert_eq!(views, 5);
            done = true;
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    assert!(done, "the rest of the edit never landed");
    let (status, error) = entry(&a, "Post", r#"["p1"]"#).await?.unwrap_or_default();
    assert_eq!(status, "FAILED");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("body") && error.contains("b-local"),
        "{error}"
    );
    // The local row is the server's, with the server's views.
    let posts = local_rows(&a, "Post").await?;
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0].contains(&Value::Text("t-local".into())),
        "{posts:?}"
    );
    assert!(posts[0].contains(&Value::Int(5)), "{posts:?}");

    // Seen and retried: synced, nothing else changes.
    let retried = a
        .with_replica(|r| r.retry_failed("Post", r#"["p1"]"#))
        .await?;
    assert!(retried);
    let schema = a.schema();
    for _ in 0..TRIES {
        run(&a).await?;
        if unsettled(&a).await?.is_empty()
            && assert_converged(&client, &schema, &[&a]).await.is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(PAUSE).await;
    }
    anyhow::bail!(
        "never converged after the retry: {:?}",
        unsettled(&a).await?
    )
}

#[tokio::test]
async fn a_dropped_table_fails_alone_and_setup_saves_its_edits_to_a_file() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema) = server(
        &db,
        &format!(r#"{BLOG} CREATE TABLE "Tag" (id int PRIMARY KEY, label text NOT NULL);"#),
    )
    .await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let a = node(&db, &schema, "a")?;
    converge(&client, &schema, &[&a]).await?;
    local(
        &a,
        r#"INSERT INTO "Tag" (id, label) VALUES (7, 'offline tag')"#,
    )
    .await?;
    local(
        &a,
        r#"UPDATE "User" SET name = 'kept going' WHERE id = 'u1'"#,
    )
    .await?;
    client.batch_execute(r#"DROP TABLE "Tag""#).await?;

    let report = run(&a).await?;
    assert!(
        report
            .errors
            .get("Tag")
            .is_some_and(|e| e.contains("outpost setup")),
        "{report:?}"
    );
    assert!(!report.errors.contains_key("User"), "{report:?}");
    assert_eq!(
        server_text(&client, r#"SELECT name FROM "User" WHERE id = 'u1'"#).await?,
        Some("kept going".into())
    );

    let path = db.dir().join("a.db");
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.dropped, ["Tag"]);
    assert_eq!(report.saved_edits.len(), 1, "{report:?}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report.saved_edits[0])?)?;
    assert_eq!(saved["table"], "Tag");
    assert_eq!(saved["edits"][0]["row"]["label"], "offline tag", "{saved}");
    assert_eq!(saved["edits"][0]["status"], "PENDING");

    // The node syncs cleanly afterwards.
    let report = run(&a).await?;
    assert!(report.success, "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_changed_table_without_local_edits_stops_only_its_own_pull_and_is_copied_after_setup()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    client
        .batch_execute(
            r#"ALTER TABLE "Post" DROP COLUMN body;
               UPDATE "Post" SET views = 5 WHERE id = 'p1';
               INSERT INTO "User" (id, email) VALUES ('u2', 'u2@x');"#,
        )
        .await?;
    // The pull meets the changed table, lists it for a copy and goes on.
    let mut pulled = false;
    for _ in 0..TRIES {
        let report = run(&a).await?;
        assert!(!report.errors.contains_key("User"), "{report:?}");
        if local_rows(&a, "User").await?.len() == 2 {
            assert!(
                report
                    .errors
                    .get("Post")
                    .is_some_and(|e| e.contains("outpost setup"))
                    || a.with_replica(|r| r.rebootstrap_tables()).await? == ["Post"],
                "{report:?}"
            );
            pulled = true;
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    assert!(pulled, "a server change to User never arrived");
    // After setup the table is copied again, with the change the pull
    // skipped.
    let path = db.dir().join("a.db");
    setup_again(&mut client, &path).await?;
    for _ in 0..TRIES {
        let report = run(&a).await?;
        let posts = local_rows(&a, "Post").await?;
        if report.success && posts.len() == 1 && posts[0].contains(&Value::Int(5)) {
            return Ok(());
        }
        tokio::time::sleep(PAUSE).await;
    }
    anyhow::bail!("Post never came back: {:?}", local_rows(&a, "Post").await?)
}

/// A push that landed but whose acknowledgement was lost, then `setup`
/// migrating the table for a server change: the edit is not written a
/// second time, and the local value of the dropped column is reported.
/// (The campaign's rows rewritten with the values they had after a `setup`
/// were a remote-mode write run twice, `identity.rs`; this pins the push's
/// side of the same situation.)
#[tokio::test]
async fn an_edit_whose_ack_was_lost_is_not_pushed_again_after_setup() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    count_updates(&client, "Post").await?;
    converge(&client, &schema, &[&a]).await?;
    // The edit covers the column the server drops next, too.
    local(
        &a,
        r#"UPDATE "Post" SET title = 't-local', body = 'b-local' WHERE id = 'p1'"#,
    )
    .await?;
    a.arm_fault(outpost_engine::FaultPoint::PushAfterCommit);
    let lost = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    assert!(!lost.success, "the acknowledgement was dropped");
    assert_eq!(
        server_text(&client, r#"SELECT title FROM "Post" WHERE id = 'p1'"#).await?,
        Some("t-local".into())
    );
    client
        .batch_execute(r#"ALTER TABLE "Post" DROP COLUMN body"#)
        .await?;
    let path = db.dir().join("a.db");
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.rebuilt, ["Post"]);
    // The dropped column's local value is reported (setup cannot tell an
    // edit that landed from one that did not); the rest was on the server.
    let mut status = None;
    for _ in 0..TRIES {
        run(&a).await?;
        status = entry(&a, "Post", r#"["p1"]"#).await?;
        if status.as_ref().is_some_and(|s| s.0 != "PENDING") {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let (status, error) = status.unwrap_or_default();
    assert_eq!(status, "FAILED", "{error:?}");
    assert!(error.unwrap_or_default().contains("b-local"));
    assert_eq!(
        updates(&client, "Post").await?,
        1,
        "the landed edit was written again"
    );
    Ok(())
}

/// An offline edit of a row the server deleted, with the table migrated by
/// `setup` before the edit is pushed: a delete-against-edit conflict, as
/// without the migration, never the row inserted again (campaign seed 11
/// with the drop-column migration).
#[tokio::test]
async fn an_edit_of_a_row_deleted_on_the_server_stays_a_conflict_across_setup() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    local(&a, r#"UPDATE "Post" SET title = 't-local' WHERE id = 'p1'"#).await?;
    client
        .batch_execute(
            r#"DELETE FROM "Post" WHERE id = 'p1';
               ALTER TABLE "Post" DROP COLUMN body;"#,
        )
        .await?;
    let path = db.dir().join("a.db");
    let report = setup_again(&mut client, &path).await?;
    assert_eq!(report.rebuilt, ["Post"]);
    edit_meets_the_delete(&client, &a).await?;
    Ok(())
}

/// The same with the change log pruned while the node was away, so that
/// the node copies every table again before the migration reaches it.
#[tokio::test]
async fn an_edit_of_a_deleted_row_stays_a_conflict_across_a_prune_and_setup() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    let b = node(&db, &schema, "b")?;
    converge(&client, &schema, &[&a, &b]).await?;
    local(&a, r#"UPDATE "Post" SET title = 't-local' WHERE id = 'p1'"#).await?;
    client
        .batch_execute(r#"DELETE FROM "Post" WHERE id = 'p1'"#)
        .await?;
    prune_everything(&client, &b).await?;
    client
        .batch_execute(r#"ALTER TABLE "Post" DROP COLUMN body"#)
        .await?;
    // The node comes back on its old schema first: User syncs, Post waits.
    run(&a).await?;
    let path = db.dir().join("a.db");
    setup_again(&mut client, &path).await?;
    edit_meets_the_delete(&client, &a).await?;
    Ok(())
}

/// A conflict (an offline edit against a server delete) that `setup`
/// carries across a migration stays a conflict: its server side is still
/// "deleted", and nothing is pushed until a person resolves it.
#[tokio::test]
async fn a_conflict_with_a_server_delete_survives_setup() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    local(&a, r#"UPDATE "Post" SET title = 't-local' WHERE id = 'p1'"#).await?;
    client
        .batch_execute(r#"DELETE FROM "Post" WHERE id = 'p1'"#)
        .await?;
    let mut status = None;
    for _ in 0..TRIES {
        run(&a).await?;
        status = entry(&a, "Post", r#"["p1"]"#).await?.map(|e| e.0);
        if status.as_deref() == Some("CONFLICT") {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    assert_eq!(status.as_deref(), Some("CONFLICT"));
    client
        .batch_execute(r#"ALTER TABLE "Post" DROP COLUMN body"#)
        .await?;
    let path = db.dir().join("a.db");
    setup_again(&mut client, &path).await?;
    for _ in 0..3 {
        run(&a).await?;
    }
    let n: i64 = client
        .query_one(r#"SELECT count(*) FROM "Post" WHERE id = 'p1'"#, &[])
        .await?
        .get(0);
    let status = entry(&a, "Post", r#"["p1"]"#).await?.map(|e| e.0);
    assert_eq!(n, 0, "the deleted row was inserted again ({status:?})");
    assert_eq!(status.as_deref(), Some("CONFLICT"));
    Ok(())
}

/// The node syncs on its old schema between the server's delete (with the
/// migration) and its `setup`: its other tables move the cursor past the
/// delete while `Post` is held back. The edit must still meet the delete.
#[tokio::test]
async fn an_edit_of_a_row_deleted_while_its_table_was_held_back_stays_a_conflict()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    edit_delete_and_sync_on_the_old_schema(&client, &a).await?;
    let path = db.dir().join("a.db");
    setup_again(&mut client, &path).await?;
    edit_meets_the_delete(&client, &a).await?;
    Ok(())
}

/// Seed 11's history in two steps: the row came with the bootstrap (no
/// entry, so the edit's base is "as of the cursor"), the node edits it
/// offline, the server deletes it and drops a column, the node syncs its
/// other tables on the old schema (the cursor moves past the delete), the
/// log is pruned, then `setup`.
#[tokio::test]
async fn an_edit_of_a_bootstrapped_row_deleted_while_held_back_stays_a_conflict()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, a) = user_and_post(&db).await?;
    edit_delete_and_sync_on_the_old_schema(&client, &a).await?;
    // A node set up on the new schema prunes the log.
    let schema = outpost_remote::introspect(&client, "public", None, &[]).await?;
    outpost_remote::install(&mut client, &schema).await?;
    let b = node(&db, &schema, "b")?;
    prune_everything(&client, &b).await?;
    let path = db.dir().join("a.db");
    setup_again(&mut client, &path).await?;
    edit_meets_the_delete(&client, &a).await?;
    Ok(())
}

/// The same history with the edit made after `setup` (found by the gateway
/// campaign's seed 7): the table waits for its copy, the replica still
/// holds the row of the old copy, and the cursor is past its delete. An
/// edit of it then has no base ("as of the cursor" is not one while the
/// table waits), so it meets the delete as a conflict.
#[tokio::test]
async fn an_edit_made_while_its_table_waits_for_a_copy_stays_a_conflict() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, a) = user_and_post(&db).await?;
    delete_and_sync_on_the_old_schema(&client, &a).await?;
    let path = db.dir().join("a.db");
    setup_again(&mut client, &path).await?;
    // The row of the old copy is still there until the table's copy.
    let edited = local(&a, r#"UPDATE "Post" SET title = 't-local' WHERE id = 'p1'"#).await?;
    assert_eq!(edited, 1, "the old copy's row is still in the replica");
    edit_meets_the_delete(&client, &a).await?;
    Ok(())
}

/// An edit whose only difference from the server's row, after `setup`,
/// was a value of a dropped column: the server's row is taken (the rest of
/// the edit equals it), and the dropped value is reported, not lost.
#[tokio::test]
async fn taking_the_servers_row_over_an_edit_reports_its_dropped_values() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (mut client, schema, a) = blog_with_user(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b0', 'u1')"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    local(
        &a,
        r#"UPDATE "Post" SET title = 'same', body = 'b-local' WHERE id = 'p1'"#,
    )
    .await?;
    client
        .batch_execute(
            r#"ALTER TABLE "Post" DROP COLUMN body;
               UPDATE "Post" SET title = 'same' WHERE id = 'p1';"#,
        )
        .await?;
    let path = db.dir().join("a.db");
    let report = setup_again(&mut client, &path).await?;
    assert_eq!((report.kept_edits, report.lost_values), (1, 1));
    // A pull alone (a notified one, say) meets the server's newer row
    // first.
    let mut status = None;
    for _ in 0..TRIES {
        a.sync(SyncOptions::new(Direction::FromServer, Trigger::Manual))
            .await?;
        status = entry(&a, "Post", r#"["p1"]"#).await?;
        if status.as_ref().is_some_and(|s| s.0 != "PENDING") {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let (status, error) = status.unwrap_or_default();
    assert_eq!(status, "FAILED", "{error:?}");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("body") && error.contains("b-local"),
        "{error}"
    );
    Ok(())
}
