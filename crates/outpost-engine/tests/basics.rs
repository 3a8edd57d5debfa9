//! End-to-end sync between a server and nodes: bootstrap, push, pull, the
//! SyncLog, conflicts and their resolution, foreign-key order, refused rows.

mod common;

use common::*;
use outpost_core::sync::Direction;
use outpost_core::types::Value;
use outpost_engine::Policy;
use outpost_local::Resolution;
use outpost_testkit::TestDb;

#[tokio::test]
async fn bootstrap_push_pull_round_trip() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'a@x'), ('u2', 'b@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'hello', 'u1');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    let report = sync(&a, Direction::Bidirectional).await?;
    assert!(report.bootstrapped);
    assert_eq!(local_rows(&a, "User").await?.len(), 2);
    assert_converged(&client, &schema, &[&a]).await?;

    // Local writes go up.
    local(&a, r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p2', 'offline', 'u2'); UPDATE "User" SET name = 'Ann' WHERE id = 'u1';"#).await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(report.results["Post"].records_succeeded, 1, "{report:?}");
    assert_eq!(report.results["User"].records_succeeded, 1, "{report:?}");
    let origin: Option<String> = client
        .query_one(
            "SELECT origin FROM outpost.row_versions WHERE table_name = 'Post' AND pk = '[\"p2\"]'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(origin, Some(a.node_id().to_string()));

    // Server writes come down.
    client
        .batch_execute(
            r#"UPDATE "Post" SET views = 7 WHERE id = 'p1'; DELETE FROM "User" WHERE id = 'u2';"#,
        )
        .await?;
    // Until quiet: an open transaction anywhere on the shared cluster can
    // hold these changes back for a moment (the pull horizon).
    converge(&client, &schema, &[&a]).await?;
    let posts = local_rows(&a, "Post").await?;
    assert_eq!(posts.len(), 1, "the cascade deleted p2 with u2");
    assert_eq!(posts[0][3], Value::Int(7));

    // One SyncLog row per model per run (at least three runs).
    let log = a.log(None, 100, 0).await?;
    assert!(log.len() >= 6 && log.len() % 2 == 0, "{log:?}");
    assert!(log.iter().all(|l| l.status == "SUCCESS"));
    let status = a.status().await?;
    assert_eq!((status.pending, status.conflicts, status.failed), (0, 0, 0));
    Ok(())
}

#[tokio::test]
async fn two_nodes_see_each_others_writes() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    let (a, b) = (node(&db, &schema, "a")?, node(&db, &schema, "b")?);
    sync(&a, Direction::Bidirectional).await?;
    sync(&b, Direction::Bidirectional).await?;
    local(&a, r#"INSERT INTO "User" (id, email) VALUES ('ua', 'a@x')"#).await?;
    local(&b, r#"INSERT INTO "User" (id, email) VALUES ('ub', 'b@x')"#).await?;
    converge(&client, &schema, &[&a, &b]).await?;
    assert_eq!(local_rows(&b, "User").await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn field_disjoint_edits_merge_and_same_field_edits_conflict() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'a@x');
               INSERT INTO "Post" (id, title, body, "userId") VALUES ('p1', 't', 'b', 'u1'), ('p2', 't', 'b', 'u1');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    // p1: different fields; p2: the same field.
    local(&a, r#"UPDATE "Post" SET title = 'local title' WHERE id = 'p1'; UPDATE "Post" SET title = 'local' WHERE id = 'p2';"#).await?;
    client
        .batch_execute(r#"UPDATE "Post" SET body = 'server body' WHERE id = 'p1'; UPDATE "Post" SET title = 'server' WHERE id = 'p2';"#)
        .await?;
    let report = sync(&a, Direction::Bidirectional).await?;
    assert_eq!(report.results["Post"].conflicts, 1, "{report:?}");
    let p1: Vec<Vec<Value>> = server_rows(&client, &schema, "Post").await?;
    assert_eq!(p1[0][1], Value::Text("local title".into()));
    assert_eq!(p1[0][2], Value::Text("server body".into()));
    assert_converged(&client, &schema, &[&a]).await?;

    let conflicts = a.conflicts().await?;
    assert_eq!(conflicts.len(), 1);
    let c = &conflicts[0];
    assert_eq!(c.pk, "[\"p2\"]");
    assert_eq!(
        c.local.as_ref().map(|r| r[1].clone()),
        Some(Value::Text("local".into()))
    );
    assert_eq!(
        c.server.as_ref().map(|r| r[1].clone()),
        Some(Value::Text("server".into()))
    );
    assert_eq!(
        c.base.as_ref().map(|r| r[1].clone()),
        Some(Value::Text("t".into()))
    );
    // A conflict is never pushed.
    sync(&a, Direction::ToServer).await?;
    assert_eq!(
        server_rows(&client, &schema, "Post").await?[1][1],
        Value::Text("server".into())
    );

    // Resolve with a merged row: title from local, the rest from the server.
    let mut merged = c.server.clone().unwrap_or_default();
    merged[1] = Value::Text("merged".into());
    a.resolve("Post", "[\"p2\"]", Resolution::Merged(merged))
        .await?;
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(
        server_rows(&client, &schema, "Post").await?[1][1],
        Value::Text("merged".into())
    );
    assert_eq!(a.conflicts().await?.len(), 0);
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

#[tokio::test]
async fn delete_against_edit_conflicts_both_ways_and_resolves() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'a@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 't', 'u1'), ('p2', 't', 'u1');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    // p1: deleted locally, edited on the server; p2: edited locally, deleted on the server.
    local(
        &a,
        r#"DELETE FROM "Post" WHERE id = 'p1'; UPDATE "Post" SET title = 'mine' WHERE id = 'p2';"#,
    )
    .await?;
    client
        .batch_execute(r#"UPDATE "Post" SET title = 'theirs' WHERE id = 'p1'; DELETE FROM "Post" WHERE id = 'p2';"#)
        .await?;
    let report = sync(&a, Direction::Bidirectional).await?;
    assert_eq!(report.results["Post"].conflicts, 2, "{report:?}");
    let conflicts = a.conflicts().await?;
    let p1 = conflicts
        .iter()
        .find(|c| c.pk == "[\"p1\"]")
        .expect("p1 conflict");
    assert!(p1.local.is_none() && p1.server.is_some());
    let p2 = conflicts
        .iter()
        .find(|c| c.pk == "[\"p2\"]")
        .expect("p2 conflict");
    assert!(p2.local.is_some() && p2.server.is_none());
    // Keep local for p1 (the delete wins), keep server for p2 (the delete wins too).
    a.resolve("Post", "[\"p1\"]", Resolution::KeepLocal).await?;
    a.resolve("Post", "[\"p2\"]", Resolution::KeepServer)
        .await?;
    sync(&a, Direction::Bidirectional).await?;
    assert!(server_rows(&client, &schema, "Post").await?.is_empty());
    assert!(local_rows(&a, "Post").await?.is_empty());
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

#[tokio::test]
async fn policies_decide_without_a_person() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email, name) VALUES ('s', 's@x', 'base'), ('c', 'c@x', 'base'), ('l', 'l@x', 'base');"#)
        .await?;
    for (policy, expect) in [
        (Policy::ServerWins, "server"),
        (Policy::ClientWins, "local"),
        (Policy::LastWriteWins, "server"),
    ] {
        let a = node(&db, &schema, &format!("n-{policy}"))?;
        a.set_policy("User", policy)?;
        sync(&a, Direction::Bidirectional).await?;
        local(&a, r#"UPDATE "User" SET name = 'local' WHERE id = 's'"#).await?;
        // The server edit is the later one, for last-write-wins.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        client
            .batch_execute(r#"UPDATE "User" SET name = 'server' WHERE id = 's'"#)
            .await?;
        let report = sync(&a, Direction::Bidirectional).await?;
        assert_eq!(report.results["User"].conflicts, 0, "{policy}");
        let users = server_rows(&client, &schema, "User").await?;
        let s = users
            .iter()
            .find(|u| u[0] == Value::Text("s".into()))
            .expect("s");
        assert_eq!(s[2], Value::Text(expect.into()), "{policy}");
        assert_converged(&client, &schema, &[&a]).await?;
        client
            .batch_execute(r#"UPDATE "User" SET name = 'base' WHERE id = 's'"#)
            .await?;
        sync(&a, Direction::Bidirectional).await?;
    }
    Ok(())
}

#[tokio::test]
async fn parents_and_children_created_and_deleted_offline_push_in_order() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('old', 'o@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('op1', 't', 'old'), ('op2', 't', 'old');"#,
        )
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    // Children inserted before their parent, locally; and a parent deleted
    // after its children.
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('c1', 't', 'new'), ('c2', 't', 'new');
           INSERT INTO "User" (id, email) VALUES ('new', 'n@x');
           DELETE FROM "Post" WHERE "userId" = 'old';
           DELETE FROM "User" WHERE id = 'old';"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(report.results["Post"].records_failed, 0, "{report:?}");
    assert_eq!(report.results["User"].records_failed, 0, "{report:?}");
    let posts = server_rows(&client, &schema, "Post").await?;
    assert_eq!(posts.len(), 2);
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

#[tokio::test]
async fn a_refused_row_fails_alone_in_a_thousand() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('taken', 'dup@x')"#)
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    let mut sql = String::from("BEGIN;");
    for i in 0..1000 {
        let email = if i == 500 {
            "dup@x".to_string()
        } else {
            format!("u{i}@x")
        };
        sql.push_str(&format!(
            r#"INSERT INTO "User" (id, email) VALUES ('u{i}', '{email}');"#
        ));
    }
    sql.push_str("COMMIT;");
    local(&a, &sql).await?;
    let report = a
        .sync(outpost_engine::SyncOptions::new(
            Direction::ToServer,
            outpost_core::sync::Trigger::Manual,
        ))
        .await?;
    let users = &report.results["User"];
    assert_eq!(
        (users.records_succeeded, users.records_failed),
        (999, 1),
        "{report:?}"
    );
    assert_eq!(server_rows(&client, &schema, "User").await?.len(), 1000);
    let status = a.status().await?;
    assert_eq!(status.failed, 1);
    let msg: String = a
        .with_replica(|r| {
            r.connection()
                .query_row(
                    "SELECT error FROM _outpost_rows WHERE status = 'FAILED'",
                    [],
                    |row| row.get(0),
                )
                .map_err(outpost_local::LocalError::sqlite("test"))
        })
        .await?;
    assert!(
        msg.contains("duplicate key") && msg.contains("email"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn children_of_a_refused_parent_fail_with_the_reason() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('taken', 'dup@x')"#)
        .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    local(
        &a,
        r#"INSERT INTO "User" (id, email) VALUES ('new', 'dup@x');
           INSERT INTO "Post" (id, title, "userId") VALUES ('child', 't', 'new'), ('fine', 't', 'taken');"#,
    )
    .await?;
    let report = a
        .sync(outpost_engine::SyncOptions::new(
            Direction::ToServer,
            outpost_core::sync::Trigger::Manual,
        ))
        .await?;
    assert_eq!(report.results["User"].records_failed, 1, "{report:?}");
    assert_eq!(report.results["Post"].records_failed, 1, "{report:?}");
    assert_eq!(report.results["Post"].records_succeeded, 1, "{report:?}");
    let msg: String = a
        .with_replica(|r| {
            r.connection()
                .query_row(
                    "SELECT error FROM _outpost_rows WHERE pk = '[\"child\"]'",
                    [],
                    |row| row.get(0),
                )
                .map_err(outpost_local::LocalError::sqlite("test"))
        })
        .await?;
    assert!(msg.starts_with("depends on User [\"new\"]"), "{msg}");
    assert!(msg.contains("duplicate key"), "{msg}");
    Ok(())
}

/// A table with an array column travels as a `VALUES` list (an array of
/// arrays does not `unnest` one level), the others as typed arrays: both
/// push inserts, updates, deletes and a refused row the same way.
#[tokio::test]
async fn array_columns_push_like_scalar_ones() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(
        &db,
        r#"CREATE TABLE "Tagged" (id text PRIMARY KEY, tags text[], n integer CHECK (n >= 0));
           CREATE TABLE "Plain" (id text PRIMARY KEY, n integer CHECK (n >= 0));
           INSERT INTO "Tagged" VALUES ('t0', '{x}', 0), ('t9', '{z}', 9);
           INSERT INTO "Plain" VALUES ('p0', 0), ('p9', 9);"#,
    )
    .await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    local(
        &a,
        r#"INSERT INTO "Tagged" (id, tags, n) VALUES ('t1', '["a","b"]', 1), ('t2', NULL, -2);
           UPDATE "Tagged" SET n = 5 WHERE id = 't0'; DELETE FROM "Tagged" WHERE id = 't9';
           INSERT INTO "Plain" (id, n) VALUES ('p1', 1), ('p2', -2);
           UPDATE "Plain" SET n = 5 WHERE id = 'p0'; DELETE FROM "Plain" WHERE id = 'p9';"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    for t in ["Tagged", "Plain"] {
        assert_eq!(report.results[t].records_succeeded, 3, "{t}: {report:?}");
        assert_eq!(report.results[t].records_failed, 1, "{t}: {report:?}");
    }
    let tagged = server_rows(&client, &schema, "Tagged").await?;
    assert_eq!(tagged.len(), 2, "{tagged:?}");
    assert_eq!(tagged[1][0], Value::Text("t1".into()));
    assert_eq!(
        tagged[1][1],
        Value::Array(vec![Value::Text("a".into()), Value::Text("b".into())])
    );
    let plain = server_rows(&client, &schema, "Plain").await?;
    assert_eq!(
        plain,
        vec![
            vec![Value::Text("p0".into()), Value::Int(5)],
            vec![Value::Text("p1".into()), Value::Int(1)],
        ]
    );
    let status = a.status().await?;
    assert_eq!((status.pending, status.failed), (0, 2));
    Ok(())
}

/// The `_outpost_rows` versions of a table's entries on a node, sorted.
async fn entry_versions(engine: &outpost_engine::Engine, table: &str) -> anyhow::Result<Vec<i64>> {
    let table = table.to_string();
    Ok(engine
        .with_replica(move |r| {
            let mut stmt = r
                .connection()
                .prepare("SELECT server_version FROM _outpost_rows WHERE table_name = ?1 AND status = 'SYNCED' ORDER BY 1")
                .map_err(outpost_local::LocalError::sqlite("test"))?;
            let rows = stmt
                .query_map([&table], |row| row.get(0))
                .map_err(outpost_local::LocalError::sqlite("test"))?;
            rows.collect::<Result<Vec<i64>, _>>()
                .map_err(outpost_local::LocalError::sqlite("test"))
        })
        .await?)
}

/// Server changes reach a node whatever the key: integer, text, `varchar`,
/// uuid and composite keys (fetched through typed key arrays), timestamp
/// keys (through the `jsonb` key); text keys with characters JSON escapes;
/// updates, deletes, a row updated then deleted, a key deleted and inserted
/// again, a truncate. The batches are a few changes each, so the statements
/// prepared by the first serve the others. Every entry records the server's
/// version (remote-mode mirroring relies on it), and pulling again changes
/// nothing.
#[tokio::test]
async fn pulls_rows_of_every_key_type() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(
        &db,
        r#"CREATE TABLE "Small" (id smallint PRIMARY KEY, v text);
           CREATE TABLE "Big" (id bigint PRIMARY KEY, v text);
           CREATE TABLE "Named" (id varchar(40) PRIMARY KEY, v text);
           CREATE TABLE "Ided" (id uuid PRIMARY KEY, v text);
           CREATE TABLE "Pair" (a text, b integer, v text, PRIMARY KEY (a, b));
           CREATE TABLE "Timed" (at timestamptz PRIMARY KEY, v text);
           CREATE TABLE "Gone" (id integer PRIMARY KEY, v text);
           INSERT INTO "Small" VALUES (1, 'a'), (-2, 'b'), (3, 'c');
           INSERT INTO "Big" VALUES (9007199254740993, 'a'), (-1, 'b'), (2, 'c');
           INSERT INTO "Named" VALUES ('plain', 'a'), ('quote " back \ slash', 'b'), (E'tab\tnl\n\u0001', 'c'), ('é ☃ 𝄞', 'd');
           INSERT INTO "Ided" VALUES ('6F1C3C8E-8A3B-4F7E-9A53-2D0C5E6A1B01', 'a'), ('00000000-0000-0000-0000-000000000000', 'b');
           INSERT INTO "Pair" VALUES ('x', 1, 'a'), ('x', 2, 'b'), ('y', 1, 'c');
           INSERT INTO "Timed" VALUES ('2026-01-01 00:00:00+00', 'a'), ('2026-01-02 12:30:00.5+00', 'b');
           INSERT INTO "Gone" VALUES (1, 'a'), (2, 'b');"#,
    )
    .await?;
    let a = node(&db, &schema, "a")?;
    a.set_pull_batch(3);
    sync(&a, Direction::Bidirectional).await?;
    client
        .batch_execute(
            r#"UPDATE "Small" SET v = v || '!'; DELETE FROM "Small" WHERE id = 3; INSERT INTO "Small" VALUES (4, 'new');
               UPDATE "Big" SET v = v || '!' WHERE id <> -1; DELETE FROM "Big" WHERE id = -1;
               UPDATE "Named" SET v = v || '!'; DELETE FROM "Named" WHERE id = 'plain';
               INSERT INTO "Named" VALUES ('new"one', 'e'), ('plain', 'again');
               UPDATE "Ided" SET v = v || '!';
               DELETE FROM "Ided" WHERE id = '00000000-0000-0000-0000-000000000000';
               UPDATE "Pair" SET v = v || '!' WHERE a = 'x'; DELETE FROM "Pair" WHERE a = 'y';
               INSERT INTO "Pair" VALUES ('y', 2, 'd');
               UPDATE "Timed" SET v = v || '!'; DELETE FROM "Timed" WHERE v = 'a!';
               UPDATE "Gone" SET v = 'z'; TRUNCATE "Gone"; INSERT INTO "Gone" VALUES (3, 'c');"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    let named = local_rows(&a, "Named").await?;
    assert_eq!(named.len(), 5, "{named:?}");
    assert!(named.contains(&vec![
        Value::Text("plain".into()),
        Value::Text("again".into())
    ]));
    assert!(named.contains(&vec![
        Value::Text("tab\tnl\n\u{1}".into()),
        Value::Text("c!".into())
    ]));
    assert_eq!(
        local_rows(&a, "Ided").await?,
        [vec![
            Value::Text("6f1c3c8e-8a3b-4f7e-9a53-2d0c5e6a1b01".into()),
            Value::Text("a!".into())
        ]]
    );
    assert_eq!(
        local_rows(&a, "Gone").await?,
        [vec![Value::Int(3), Value::Text("c".into())]]
    );
    // Every pulled key's entry carries the server's version of the row
    // (deleted rows included), whatever the key type.
    for t in ["Small", "Big", "Named", "Ided", "Pair", "Timed"] {
        let server: Vec<i64> = client
            .query(
                "SELECT version FROM outpost.row_versions WHERE table_name = $1 ORDER BY 1",
                &[&t],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(entry_versions(&a, t).await?, server, "{t}");
    }
    // Each entry of a present row names it by the replica's own key text
    // (escapes included), so the row's next local edit finds it.
    for (t, key) in [
        ("Small", "id"),
        ("Big", "id"),
        ("Named", "id"),
        ("Ided", "id"),
        ("Pair", "a, b"),
        ("Timed", "at"),
    ] {
        let sql = format!(
            "SELECT (SELECT count(*) FROM _outpost_rows WHERE table_name = '{t}' AND deleted = 0), \
             (SELECT count(*) FROM \"{t}\" x JOIN _outpost_rows e ON e.table_name = '{t}' \
               AND e.pk = json_array({key}) AND e.deleted = 0)"
        );
        let (entries, matched): (i64, i64) = a
            .with_replica(move |r| {
                r.connection()
                    .query_row(&sql, [], |row| Ok((row.get(0)?, row.get(1)?)))
                    .map_err(outpost_local::LocalError::sqlite("test"))
            })
            .await?;
        assert!(entries > 0, "{t}");
        assert_eq!(entries, matched, "{t}");
    }
    // Nothing new: a pull changes nothing.
    let before: Vec<Vec<i64>> = {
        let mut v = Vec::new();
        for t in ["Small", "Big", "Named", "Ided", "Pair", "Timed"] {
            v.push(entry_versions(&a, t).await?);
        }
        v
    };
    sync(&a, Direction::FromServer).await?;
    for (t, versions) in ["Small", "Big", "Named", "Ided", "Pair", "Timed"]
        .into_iter()
        .zip(before)
    {
        assert_eq!(entry_versions(&a, t).await?, versions, "{t}");
    }
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

/// Keys typed by a person (a URL segment, a CLI argument) follow one rule:
/// JSON when it fits the model's key, else the plain string.
#[tokio::test]
async fn typed_keys_are_json_or_the_plain_string() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema, a) = blog_with_user(&db).await?;
    let plain = a.local_key("User", &serde_json::json!("u1")).await?;
    assert_eq!(a.local_key_from_text("User", "u1").await?, plain);
    assert_eq!(a.local_key_from_text("User", "\"u1\"").await?, plain);
    assert_eq!(a.local_key_from_text("User", "[\"u1\"]").await?, plain);
    // `7` is JSON, but a number does not fit a text key: the string "7".
    assert_eq!(
        a.local_key_from_text("User", "7").await?,
        a.local_key("User", &serde_json::json!("7")).await?
    );
    assert!(a.local_key_from_text("Nope", "u1").await.is_err());
    Ok(())
}
