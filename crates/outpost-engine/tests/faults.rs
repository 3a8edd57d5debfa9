//! The engine under concurrency, lost acknowledgements, interrupted
//! bootstraps and the server's retention window.

mod common;

use std::time::Duration;

use common::*;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::SyncOptions;
use outpost_local::ReplicaState;
use outpost_testkit::TestDb;

/// A transaction that takes its sequence number first but commits last must
/// still reach the replica: pulls read only below the xmin horizon. Without
/// that rule the pull moves past `late`'s position while it is still open
/// and never delivers it.
#[tokio::test]
async fn a_long_open_transaction_is_delivered_after_it_commits() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;

    let mut slow = db.client().await?;
    let slow_tx = slow.transaction().await?;
    slow_tx
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('late', 'late@x')"#)
        .await?;
    // Interleaved writers commit after `late` took the lowest seq.
    for i in 0..3 {
        client
            .batch_execute(&format!(
                r#"INSERT INTO "User" (id, email) VALUES ('early{i}', 'e{i}@x')"#
            ))
            .await?;
        let report = sync(&a, Direction::FromServer).await?;
        // `late`'s change is at or past the horizon while it is open, and
        // so is every change committed after it: the run says so.
        assert!(report.held_back, "run {i} did not report held-back changes");
    }
    let age = a.horizon_age().await?;
    assert!(age.is_some(), "the open transaction shows in the status");
    slow_tx.commit().await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('after', 'after@x')"#)
        .await?;
    // Other tests' transactions on the same cluster hold the horizon back
    // too (it is cluster-wide): pull until it passes.
    let mut users = Vec::new();
    for _ in 0..200 {
        sync(&a, Direction::FromServer).await?;
        users = local_rows(&a, "User").await?;
        if users.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = users.iter().map(|u| format!("{:?}", u[0])).collect();
    assert!(
        ids.iter().any(|i| i.contains("\"late\"")),
        "late was skipped: {ids:?}"
    );
    assert_eq!(users.len(), 5);
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

/// The push commits on the server, the reply is lost, the node retries:
/// nothing twice, no conflict; a row edited again after the lost reply
/// treats the node's own version as its base.
#[tokio::test]
async fn a_lost_acknowledgement_applies_nothing_twice() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'one', 'u1'), ('p2', 'two', 'u1');
           UPDATE "User" SET name = 'first' WHERE id = 'u1';"#,
    )
    .await?;
    a.arm_fault(outpost_engine::FaultPoint::PushAfterCommit);
    let lost = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    assert!(!lost.success, "the reply was dropped");
    assert_eq!(
        server_rows(&client, &schema, "Post").await?.len(),
        2,
        "the push itself committed"
    );
    assert_eq!(a.status().await?.pending, 3, "the node does not know");
    let landed = post_versions(&client).await?;

    // Edit one of them again before retrying.
    local(&a, r#"UPDATE "User" SET name = 'second' WHERE id = 'u1'"#).await?;
    let retry = sync(&a, Direction::Bidirectional).await?;
    let conflicts: u64 = retry.results.values().map(|s| s.conflicts).sum();
    assert_eq!(conflicts, 0, "{retry:?}");
    assert_eq!(
        post_versions(&client).await?,
        landed,
        "the posts were not written again"
    );
    let users = server_rows(&client, &schema, "User").await?;
    assert_eq!(
        users[0][2],
        outpost_core::types::Value::Text("second".into())
    );
    assert_eq!(a.status().await?.pending, 0);
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

/// The push is pipelined: batch N's acknowledgement is taken while batch
/// N+1 is on the server. When that acknowledgement fails, both batches are
/// committed and neither is recorded; the retry writes neither again, and
/// the rows edited since land.
#[tokio::test]
async fn two_batches_unacknowledged_apply_nothing_twice() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    let mut sql = String::new();
    for i in 0..9 {
        sql.push_str(&format!(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p{i}', 'post {i}', 'u1');"#
        ));
    }
    local(&a, &sql).await?;
    a.set_push_batch(3);
    a.arm_fault(outpost_engine::FaultPoint::PushBeforeAck);
    let lost = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    assert!(!lost.success, "the first acknowledgement failed");
    let landed = post_versions(&client).await?;
    assert_eq!(
        landed.len(),
        6,
        "the first batch and the one sent beside its acknowledgement committed"
    );
    assert_eq!(a.status().await?.pending, 9, "the node recorded neither");

    local(&a, r#"UPDATE "Post" SET title = 'edited' WHERE id = 'p1'"#).await?;
    let retry = sync(&a, Direction::Bidirectional).await?;
    let conflicts: u64 = retry.results.values().map(|s| s.conflicts).sum();
    assert_eq!(conflicts, 0, "{retry:?}");
    let now = post_versions(&client).await?;
    assert_eq!(now.len(), 9);
    for (pk, version) in &landed {
        let after = now.iter().find(|(k, _)| k == pk).map(|(_, v)| *v);
        if pk.contains("p1") {
            assert_ne!(after, Some(*version), "the edit of p1 was written");
        } else {
            assert_eq!(after, Some(*version), "{pk} was written twice");
        }
    }
    assert_eq!(a.status().await?.pending, 0);
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

/// A push group records its highest `local_seq` on every version it writes
/// (`outpost_remote::feed`, "origin_local_seq"). A row whose own change was
/// not the group's highest, edited again after the group's reply was lost,
/// must still be pushed: its new change is numbered above the whole group.
/// Its group neighbour is skipped as already applied.
#[tokio::test]
async fn a_row_edited_after_a_lost_acknowledgement_lands_whatever_its_place_in_the_group()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema, a) = blog_with_user(&db).await?;
    // p1's change comes first, p2's last: the group's highest is p2's.
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'one', 'u1');
           INSERT INTO "Post" (id, title, "userId") VALUES ('p2', 'two', 'u1');"#,
    )
    .await?;
    a.arm_fault(outpost_engine::FaultPoint::PushAfterCommit);
    let lost = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    assert!(!lost.success, "the reply was dropped");
    let landed = post_versions(&client).await?;
    assert_eq!(landed.len(), 2, "the push itself committed");
    let recorded = client
        .query(
            "SELECT origin_local_seq FROM outpost.row_versions WHERE table_name = 'Post' ORDER BY pk",
            &[],
        )
        .await?;
    let seqs: Vec<Option<i64>> = recorded.iter().map(|r| r.get(0)).collect();
    assert!(
        seqs[0].is_some() && seqs[0] == seqs[1],
        "one local_seq per group: {seqs:?}"
    );

    local(
        &a,
        r#"UPDATE "Post" SET title = 'one, again' WHERE id = 'p1'"#,
    )
    .await?;
    let retry = sync(&a, Direction::Bidirectional).await?;
    assert!(retry.success, "{retry:?}");
    let conflicts: u64 = retry.results.values().map(|s| s.conflicts).sum();
    assert_eq!(conflicts, 0, "{retry:?}");
    let posts = server_rows(&client, &schema, "Post").await?;
    assert_eq!(
        posts[0][1],
        outpost_core::types::Value::Text("one, again".into()),
        "the later edit reached the server"
    );
    let now = post_versions(&client).await?;
    assert_ne!(now[0], landed[0], "p1 was written again");
    assert_eq!(now[1], landed[1], "p2 was not");
    assert_eq!(a.status().await?.pending, 0);
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

/// A bootstrap stopped half-way leaves a replica that says so, and the next
/// sync finishes it.
#[tokio::test]
async fn an_interrupted_bootstrap_never_claims_to_be_synced() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) SELECT 'u' || i, 'u' || i || '@x' FROM generate_series(1, 45000) i;
               INSERT INTO "Post" (id, title, "userId") SELECT 'p' || i, 't', 'u' || i FROM generate_series(1, 100) i;"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    a.arm_fault(outpost_engine::FaultPoint::BootstrapMidTable);
    let broken = a
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!broken.success);
    let status = a.status().await?;
    assert_eq!(status.state, ReplicaState::Bootstrapping);
    // Meanwhile the server moves on.
    client.batch_execute(r#"UPDATE "User" SET name = 'moved' WHERE id = 'u7'; DELETE FROM "Post" WHERE id = 'p3';"#).await?;
    let fixed = sync(&a, Direction::Bidirectional).await?;
    assert!(fixed.bootstrapped);
    assert_eq!(a.status().await?.state, ReplicaState::Ready);
    // Until quiet: the server's later changes reach the resumed tables by
    // pull, which an open transaction on the shared cluster may delay.
    converge(&client, &schema, &[&a]).await?;
    Ok(())
}

/// A bootstrap cut mid-table resumes after the last key the replica holds:
/// the rows copied before the cut are not copied again (a field device on
/// a link that drops every few minutes still finishes a large table), and
/// what the server changed meanwhile, on either side of that key, arrives
/// by pull.
#[tokio::test]
async fn a_bootstrap_cut_mid_table_resumes_after_the_last_key_it_holds() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) SELECT 'u' || lpad(i::text, 5, '0'), 'u' || i || '@x' FROM generate_series(1, 45000) i;
               INSERT INTO "Post" (id, title, "userId") SELECT 'p' || i, 't', 'u' || lpad(i::text, 5, '0') FROM generate_series(1, 100) i;"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    a.arm_fault(outpost_engine::FaultPoint::BootstrapMidTable);
    let broken = a
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!broken.success);
    // The first chunk (20,000 rows in key order) is in, and the replica
    // says how far the copy came.
    let partial = a.with_replica(|r| r.bootstrap_partial()).await?;
    let user = partial
        .get("User")
        .ok_or_else(|| anyhow::anyhow!("no partial copy recorded: {partial:?}"))?;
    assert_eq!(user.rows, 20_000);
    assert_eq!(user.after, [Value::Text("u20000".into())]);
    assert_eq!(local_rows(&a, "User").await?.len(), 20_000);
    // Meanwhile the server moves on, on both sides of the last key held.
    client
        .batch_execute(
            r#"UPDATE "User" SET name = 'moved' WHERE id IN ('u00007', 'u30000');
               DELETE FROM "Post" WHERE id = 'p3';
               DELETE FROM "User" WHERE id IN ('u00003', 'u40000');
               INSERT INTO "User" (id, email) VALUES ('u00000a', 'early@x'), ('u99999', 'late@x');"#,
        )
        .await?;
    let fixed = sync(&a, Direction::Bidirectional).await?;
    assert!(fixed.bootstrapped);
    assert_eq!(a.status().await?.state, ReplicaState::Ready);
    // Over both runs: the 100 posts (copied whole before the cut, tables go
    // by name), then only the users after the key: 25,000 less the one
    // deleted, plus the late one. The 20,000 before it were not copied
    // again.
    assert_eq!(a.metrics().rows_bootstrapped, 100 + 25_000 - 1 + 1);
    assert!(a.with_replica(|r| r.bootstrap_partial()).await?.is_empty());
    converge(&client, &schema, &[&a]).await?;
    Ok(())
}

/// A node that fell behind the retention window bootstraps again and keeps
/// its local writes.
#[tokio::test]
async fn a_node_behind_the_retention_window_rebootstraps_without_losing_writes()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let (a, b) = (node(&db, &schema, "a")?, node(&db, &schema, "b")?);
    sync(&a, Direction::Bidirectional).await?;
    sync(&b, Direction::Bidirectional).await?;
    // b goes offline with a local write; the server changes a lot meanwhile.
    local(
        &b,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('offline', 'kept', 'u1')"#,
    )
    .await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) SELECT 'x' || i, 'x' || i || '@x' FROM generate_series(1, 50) i;"#)
        .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.set_retention(Duration::from_millis(1));
    // Pruning also waits for the (cluster-wide) horizon: retry a moment.
    let mut left: i64 = -1;
    for _ in 0..200 {
        sync(&a, Direction::Bidirectional).await?;
        left = client
            .query_one("SELECT count(*) FROM outpost.changes", &[])
            .await?
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "everything older than the window was pruned");

    let report = sync(&b, Direction::Bidirectional).await?;
    assert!(report.bootstrapped, "b was told to bootstrap again");
    assert_eq!(
        server_rows(&client, &schema, "Post").await?.len(),
        1,
        "b's offline write landed"
    );
    converge(&client, &schema, &[&a, &b]).await?;
    Ok(())
}

async fn post_versions(
    c: &outpost_remote::tokio_postgres::Client,
) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = c
        .query("SELECT pk::text, version FROM outpost.row_versions WHERE table_name = 'Post' ORDER BY pk", &[])
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect())
}
