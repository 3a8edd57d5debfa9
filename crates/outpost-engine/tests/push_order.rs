//! Push order over the whole pending set: parents before children across
//! batches, children before parents for deletes, inserts before the
//! updates that reference them within a table (self-references), and
//! isolation retries that fail only the bad row and its true dependants.

mod common;

use common::{local, node, server, server_rows, sync, unsettled};
use outpost_core::sync::Direction;
use outpost_testkit::TestDb;

const SCHEMA: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL,
  "userId" text NOT NULL REFERENCES "User"(id));
CREATE TABLE "Node" (id int PRIMARY KEY, label text, parent_id int REFERENCES "Node"(id));
"#;

/// The server's `(id, parent_id)` of every node, by id.
async fn server_nodes(
    client: &outpost_remote::tokio_postgres::Client,
) -> anyhow::Result<Vec<(i32, Option<i32>)>> {
    Ok(client
        .query(r#"SELECT id, parent_id FROM "Node" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// `FAILED` rows of the node: (table, key, error), by table and key.
async fn failed(a: &outpost_engine::Engine) -> anyhow::Result<Vec<(String, String, String)>> {
    Ok(a.with_replica(|r| r.failed_rows(100))
        .await?
        .into_iter()
        .map(|f| (f.table, f.pk, f.error.unwrap_or_default()))
        .collect())
}

#[tokio::test]
async fn a_parent_edited_after_more_than_a_batch_of_changes_lands_before_its_children()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, SCHEMA).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('old', 'old@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('o1', 'old', 'old'), ('o2', 'old', 'old');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    a.set_push_batch(10);
    // A new user and its posts; the user's entry is renumbered by its
    // later edit, after 25 other changes: by age alone it would come two
    // batches after its posts.
    local(
        &a,
        r#"INSERT INTO "User" (id, email) VALUES ('p', 'p@x');
           INSERT INTO "Post" (id, title, "userId") VALUES ('c1', 'child', 'p'), ('c2', 'child', 'p');"#,
    )
    .await?;
    // The old user's posts go after it (deleted children first is the
    // order the server needs; locally they are deleted last).
    local(&a, r#"DELETE FROM "User" WHERE id = 'old'"#).await?;
    local(
        &a,
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25)
           INSERT INTO "Node" (id, label) SELECT i, 'other' FROM n;"#,
    )
    .await?;
    local(&a, r#"UPDATE "User" SET name = 'edited' WHERE id = 'p'"#).await?;
    local(&a, r#"DELETE FROM "Post" WHERE "userId" = 'old'"#).await?;

    let report = sync(&a, Direction::ToServer).await?;
    let failed_count: u64 = report.results.values().map(|s| s.records_failed).sum();
    assert_eq!(failed(&a).await?, vec![], "no row failed");
    assert_eq!(failed_count, 0);
    let users: Vec<(String, Option<String>)> = client
        .query(r#"SELECT id, name FROM "User" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(users, vec![("p".to_string(), Some("edited".to_string()))]);
    let posts: Vec<(String, String)> = client
        .query(r#"SELECT id, "userId" FROM "Post" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        posts,
        vec![
            ("c1".to_string(), "p".to_string()),
            ("c2".to_string(), "p".to_string())
        ]
    );
    assert_eq!(server_nodes(&client).await?.len(), 25);
    assert_eq!(
        a.with_replica(|r| r.dirty_rows()).await?.len(),
        0,
        "nothing left to push"
    );
    Ok(())
}

#[tokio::test]
async fn self_referencing_inserts_and_updates_land_in_one_push() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, SCHEMA).await?;
    client
        .batch_execute(r#"INSERT INTO "Node" (id, label) VALUES (1, 'root')"#)
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    // An update pointing at a row inserted in the same push.
    local(
        &a,
        r#"INSERT INTO "Node" (id, label) VALUES (2, 'new');
           UPDATE "Node" SET parent_id = 2 WHERE id = 1;"#,
    )
    .await?;
    // Children inserted before their parents, each its own statement.
    local(&a, r#"INSERT INTO "Node" (id, parent_id) VALUES (5, 4)"#).await?;
    local(&a, r#"INSERT INTO "Node" (id, parent_id) VALUES (4, 3)"#).await?;
    local(&a, r#"INSERT INTO "Node" (id, parent_id) VALUES (3, 2)"#).await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(failed(&a).await?, vec![]);
    assert_eq!(report.results["Node"].records_failed, 0);
    assert_eq!(
        server_nodes(&client).await?,
        vec![
            (1, Some(2)),
            (2, None),
            (3, Some(2)),
            (4, Some(3)),
            (5, Some(4))
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_self_referencing_parent_edited_after_more_than_a_batch_lands_with_its_children()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, SCHEMA).await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    a.set_push_batch(10);
    // A tree 100 <- 101 <- 102, then 25 other nodes, then an edit of the
    // root and of the middle: by age both come batches after 102.
    local(
        &a,
        r#"INSERT INTO "Node" (id, label) VALUES (100, 'root');
           INSERT INTO "Node" (id, parent_id) VALUES (101, 100);
           INSERT INTO "Node" (id, parent_id) VALUES (102, 101);"#,
    )
    .await?;
    local(
        &a,
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25)
           INSERT INTO "Node" (id, label) SELECT i, 'other' FROM n;"#,
    )
    .await?;
    local(
        &a,
        r#"UPDATE "Node" SET label = 'edited' WHERE id IN (100, 101)"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(failed(&a).await?, vec![]);
    assert_eq!(report.results["Node"].records_failed, 0);
    let nodes = server_nodes(&client).await?;
    assert_eq!(nodes.len(), 28);
    assert!(nodes.contains(&(101, Some(100))) && nodes.contains(&(102, Some(101))));
    let labels: Vec<Option<String>> = client
        .query(
            r#"SELECT label FROM "Node" WHERE id IN (100, 101) ORDER BY id"#,
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        labels,
        vec![Some("edited".to_string()), Some("edited".to_string())]
    );
    assert_eq!(a.with_replica(|r| r.dirty_rows()).await?.len(), 0);
    Ok(())
}

#[tokio::test]
async fn one_bad_row_fails_alone_with_its_true_dependants() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, SCHEMA).await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    // A chain 13 -> 12 -> 11 written children first; 20 points at a node
    // nobody has; 21 depends on 20; 30 is unrelated.
    for sql in [
        r#"INSERT INTO "Node" (id, parent_id) VALUES (13, 12)"#,
        r#"INSERT INTO "Node" (id, parent_id) VALUES (12, 11)"#,
        r#"INSERT INTO "Node" (id, parent_id) VALUES (11, NULL)"#,
        r#"INSERT INTO "Node" (id, parent_id) VALUES (21, 20)"#,
        r#"INSERT INTO "Node" (id, parent_id) VALUES (20, 999)"#,
        r#"INSERT INTO "Node" (id, parent_id) VALUES (30, NULL)"#,
    ] {
        local(&a, sql).await?;
    }
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(report.results["Node"].records_failed, 2);
    assert_eq!(report.results["Node"].records_succeeded, 4);
    assert_eq!(
        server_nodes(&client).await?,
        vec![(11, None), (12, Some(11)), (13, Some(12)), (30, None)]
    );
    let failed = failed(&a).await?;
    let keys: Vec<(&str, &str)> = failed
        .iter()
        .map(|(t, k, _)| (t.as_str(), k.as_str()))
        .collect();
    assert_eq!(keys, vec![("Node", "[20]"), ("Node", "[21]")]);
    // The bad row fails with the server's own reason; its dependant says
    // which row it waited for and why that one failed.
    let (bad, dependant) = (&failed[0].2, &failed[1].2);
    assert!(bad.contains("foreign key"), "{bad}");
    assert!(!bad.contains("depends on"), "{bad}");
    assert!(
        dependant.starts_with("depends on Node [20] (foreign key ")
            && dependant.contains("which the server refused: ")
            && dependant.ends_with(bad.as_str()),
        "{dependant}"
    );
    // The replica keeps the failed rows as written; the rest are synced.
    let unsettled = unsettled(&a).await?;
    assert_eq!(unsettled.len(), 2);
    assert_eq!(
        server_rows(&client, &schema, "Node").await?.len(),
        4,
        "nothing else was written"
    );
    Ok(())
}

#[tokio::test]
async fn children_of_a_row_refused_in_an_earlier_batch_fail_saying_so() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, SCHEMA).await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    // The server takes an email the node has not pulled yet.
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('srv', 'taken@x')"#)
        .await?;
    a.set_push_batch(3);
    local(
        &a,
        r#"INSERT INTO "User" (id, email) VALUES ('bad', 'taken@x'), ('g1', 'g1@x'), ('g2', 'g2@x');
           INSERT INTO "Post" (id, title, "userId") VALUES
             ('b1', 't', 'bad'), ('b2', 't', 'bad'), ('b3', 't', 'bad'), ('b4', 't', 'bad'),
             ('ok', 't', 'g1');"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(report.results["User"].records_failed, 1);
    assert_eq!(report.results["Post"].records_failed, 4);
    assert_eq!(report.results["Post"].records_succeeded, 1);
    let failed = failed(&a).await?;
    let (bad, posts): (Vec<_>, Vec<_>) = failed.iter().partition(|(t, _, _)| t == "User");
    assert_eq!(bad.len(), 1);
    let bad_reason = &bad[0].2;
    assert!(bad_reason.contains("duplicate key"), "{bad_reason}");
    assert_eq!(
        posts.iter().map(|(_, k, _)| k.as_str()).collect::<Vec<_>>(),
        vec![r#"["b1"]"#, r#"["b2"]"#, r#"["b3"]"#, r#"["b4"]"#]
    );
    for (_, k, reason) in &posts {
        assert!(
            reason.starts_with(r#"depends on User ["bad"] (foreign key "#)
                && reason.ends_with(bad_reason.as_str()),
            "{k}: {reason}"
        );
    }
    let on_server: Vec<String> = client
        .query(r#"SELECT id FROM "Post" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(on_server, vec!["ok".to_string()]);
    Ok(())
}
