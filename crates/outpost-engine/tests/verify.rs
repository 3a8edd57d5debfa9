//! `verify` and `resync` against a real server and replica: a freshly synced
//! replica verifies clean (by digest alone), rows altered behind outpost's
//! back on either side are reported with both values, pending edits apart,
//! and `resync` repairs the table keeping a pending edit of another row.
//! Multi-dimensional array values (in a column declared one-dimensional)
//! bootstrap, push and verify like any other.

mod common;

use common::*;
use outpost_core::sync::Direction;
use outpost_core::types::Value;
use outpost_testkit::TestDb;
use serde_json::json;

/// Many rows (the narrowing has to go below the table's digest) and the
/// common types, so the two sides' digests must agree value for value.
const ITEMS: &str = r#"
CREATE TABLE "Item" (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2),
  at timestamptz, tags text[], data jsonb, flag bool, ratio float8, u uuid, day date);
CREATE TABLE "Note" (id text PRIMARY KEY, body text);
INSERT INTO "Item"
  SELECT i, 'item ' || i, (i * 1.25)::numeric(10,2), timestamptz '2024-03-01 10:00+02' + i * interval '1 hour',
         ARRAY['a' || i, NULL], jsonb_build_object('n', i, 'k', 'v'), i % 2 = 0, i / 3.0,
         md5(i::text)::uuid, date '2020-01-05' + i
  FROM generate_series(1, 300) i;
INSERT INTO "Note" VALUES ('n1', 'first'), ('n2', NULL);
-- A two-dimensional value in a column declared one-dimensional (PostgreSQL
-- does not enforce the declared dimensions): bootstrapped and verified.
UPDATE "Item" SET tags = '{{x,y},{z,NULL}}' WHERE id = 300;
"#;

fn name_of(row: &[Value]) -> Value {
    row[1].clone()
}

#[tokio::test]
async fn verify_reports_rows_altered_behind_outposts_back_and_resync_repairs_them()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, ITEMS).await?;
    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;

    // Freshly synced: nothing differs, and no row had to cross the network
    // (the digests of both sides agree for every type of the table).
    let report = a.verify(None).await?;
    assert!(report.consistent, "{report:#?}");
    assert_eq!((report.differences, report.pending), (0, 0));
    let item = &report.models[0];
    assert_eq!(
        (item.model.as_str(), item.local_rows, item.server_rows),
        ("Item", 300, 300)
    );
    assert_eq!(item.rows_compared, 0, "{item:#?}");
    assert_eq!(item.rounds, 1);

    // A three-dimensional value written offline and pushed verifies too
    // (a push needs no pull horizon: another test's open transaction
    // cannot hold it back).
    local(
        &a,
        r#"UPDATE "Item" SET tags = '[[["1"],["2"]],[["3"],[null]]]' WHERE id = 299"#,
    )
    .await?;
    let pushed = sync(&a, Direction::ToServer).await?;
    assert_eq!(pushed.results["Item"].records_succeeded, 1, "{pushed:?}");
    let dims: i32 = client
        .query_one(
            r#"SELECT array_ndims(tags) FROM "Item" WHERE id = 299"#,
            &[],
        )
        .await?
        .get(0);
    assert_eq!(dims, 3);
    let report = a.verify(None).await?;
    assert!(report.consistent && report.pending == 0, "{report:#?}");
    assert_eq!(report.models[0].rows_compared, 0, "{report:#?}");

    // Behind outpost's back: a replica row edited, another deleted and a
    // third given a value that does not fit its column, with the capture
    // silenced; a server row changed with the triggers off.
    a.with_replica(|r| {
        r.apply_silenced(|tx| {
            tx.execute_batch(
                r#"UPDATE "Item" SET name = 'tampered' WHERE id = 5;
                   DELETE FROM "Item" WHERE id = 9;
                   UPDATE "Item" SET flag = 'yes' WHERE id = 11;"#,
            )
            .map_err(outpost_local::LocalError::sqlite("test tampering"))
        })
    })
    .await?;
    client
        .batch_execute(
            r#"BEGIN; SET LOCAL session_replication_role = replica;
               UPDATE "Item" SET name = 'server side', price = 1.5 WHERE id = 150; COMMIT;"#,
        )
        .await?;
    // An ordinary pending edit of another row: reported apart, never a
    // difference, kept by the resync.
    local(
        &a,
        r#"UPDATE "Item" SET name = 'edited offline' WHERE id = 7"#,
    )
    .await?;

    let report = a.verify(Some(vec!["Item".into()])).await?;
    assert!(!report.consistent);
    assert_eq!(report.models.len(), 1);
    let item = &report.models[0];
    assert_eq!((item.local_rows, item.server_rows), (299, 300));
    let mut diffs = item.differences.clone();
    diffs.sort_by_key(|d| d.key["id"].as_i64());
    assert_eq!(diffs.len(), 4, "{diffs:#?}");
    assert_eq!(diffs[0].key, json!({"id": 5}));
    assert_eq!(diffs[0].columns, vec!["name"]);
    assert_eq!(
        diffs[0].local.as_ref().map(|r| r["name"].clone()),
        Some(json!("tampered"))
    );
    assert_eq!(
        diffs[0].server.as_ref().map(|r| r["name"].clone()),
        Some(json!("item 5"))
    );
    assert_eq!(diffs[1].key, json!({"id": 9}));
    assert_eq!(diffs[1].local, None);
    assert_eq!(
        diffs[1].server.as_ref().map(|r| r["name"].clone()),
        Some(json!("item 9"))
    );
    // The unreadable value is shown, not a reason to stop.
    assert_eq!(diffs[2].key, json!({"id": 11}));
    assert_eq!(diffs[2].columns, vec!["flag"]);
    let shown = diffs[2].local.as_ref().map(|r| r["flag"].to_string());
    assert!(
        shown
            .as_deref()
            .is_some_and(|s| s.contains("unreadable") && s.contains("flag")),
        "{shown:?}"
    );
    assert_eq!(
        diffs[2].server.as_ref().map(|r| r["flag"].clone()),
        Some(json!(false))
    );
    diffs.remove(2);
    assert_eq!(diffs[2].key, json!({"id": 150}));
    assert_eq!(diffs[2].columns, vec!["name", "price"]);
    assert_eq!(
        diffs[2].local.as_ref().map(|r| r["price"].clone()),
        Some(json!("187.50"))
    );
    assert_eq!(
        diffs[2].server.as_ref().map(|r| r["price"].clone()),
        Some(json!("1.50"))
    );
    assert_eq!(item.pending.len(), 1);
    assert_eq!(
        (item.pending[0].key.clone(), item.pending[0].status.as_str()),
        (json!({"id": 7}), "PENDING")
    );
    // Narrowed: far fewer rows read than the table holds.
    assert!(item.rows_compared < 300 / 2, "{}", item.rows_compared);

    // Resync repairs the table and keeps the pending edit.
    let resynced = a.resync("Item").await?;
    assert!(resynced.success, "{resynced:?}");
    assert!(resynced.bootstrapped);
    let rows = local_rows(&a, "Item").await?;
    let by_id = |id: i64| {
        rows.iter()
            .find(|r| r[0] == Value::Int(id))
            .map(|r| name_of(r))
    };
    assert_eq!(by_id(5), Some(Value::Text("item 5".into())));
    assert_eq!(by_id(9), Some(Value::Text("item 9".into())));
    assert_eq!(by_id(150), Some(Value::Text("server side".into())));
    let flag = rows
        .iter()
        .find(|r| r[0] == Value::Int(11))
        .map(|r| r[6].clone());
    assert_eq!(flag, Some(Value::Bool(false)));
    assert_eq!(by_id(7), Some(Value::Text("edited offline".into())));
    let report = a.verify(None).await?;
    assert!(report.consistent, "{report:#?}");
    assert_eq!(report.pending, 1);
    // The other table was not copied again and is still consistent.
    assert_eq!(report.models[1].differences.len(), 0);

    // The kept edit still goes up.
    sync(&a, Direction::ToServer).await?;
    let name: String = client
        .query_one(r#"SELECT name FROM "Item" WHERE id = 7"#, &[])
        .await?
        .get(0);
    assert_eq!(name, "edited offline");
    let report = a.verify(None).await?;
    assert!(report.consistent && report.pending == 0, "{report:#?}");
    Ok(())
}

#[tokio::test]
async fn verify_and_resync_refuse_an_unknown_model() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema, a) = blog_with_user(&db).await?;
    let e = a.verify(Some(vec!["Nope".into()])).await.unwrap_err();
    assert!(e.to_string().contains("Nope"), "{e}");
    let e = a.resync("Nope").await.unwrap_err();
    assert!(e.to_string().contains("Nope"), "{e}");
    // Nothing was started: the replica is still ready and syncs.
    let (_, state) = a.with_replica(|r| r.cursor()).await?;
    assert_eq!(state.to_string(), "READY");
    sync(&a, Direction::Bidirectional).await?;
    Ok(())
}

#[tokio::test]
async fn resync_and_verify_while_the_server_is_away_change_nothing() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema, a) = blog_with_user(&db).await?;
    local(&a, r#"UPDATE "User" SET name = 'offline' WHERE id = 'u1'"#).await?;
    drop(a);
    // The same replica, its server address now a closed port.
    let path = db.dir().join("a.db");
    let local_url = format!("file:{}", path.display());
    let config = outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some("postgres://postgres@127.0.0.1:1/none".to_string()),
        "LOCAL_DATABASE_URL" => Some(local_url.clone()),
        _ => None,
    })?;
    let a = outpost_engine::Engine::new(outpost_local::Replica::open(&path)?, config);
    let e = a.resync("User").await.unwrap_err();
    assert_eq!(e.kind(), outpost_engine::ErrorKind::Unreachable, "{e}");
    let e = a.verify(None).await.unwrap_err();
    assert_eq!(e.kind(), outpost_engine::ErrorKind::Unreachable, "{e}");
    // Still ready, the local edit still pending.
    let (_, state) = a.with_replica(|r| r.cursor()).await?;
    assert_eq!(state.to_string(), "READY");
    assert_eq!(a.status().await?.pending, 1);
    Ok(())
}
