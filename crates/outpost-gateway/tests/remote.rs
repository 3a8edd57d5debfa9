//! Remote mode through a real gateway (`POST /v1/query`) against a real
//! PostgreSQL: a write carries a request id, and asking again with it,
//! after the first answer was lost or while the first attempt still waits
//! on a lock, gives the first attempt's answer, never a second write.

#[path = "../../outpost-engine/tests/common/mod.rs"]
mod common;
use common::gateway_support as support;

use std::time::Duration;

use common::{BLOG, server};
use outpost_remote::gateway::GatewayConnection;
use outpost_remote::gateway::body::Query;
use outpost_testkit::TestDb;
use support::{GatewayProcess, eventually};

/// A create of post `id` by `node`, as a node in remote mode sends it.
fn create_post(
    schema: &outpost_core::schema::Schema,
    node: uuid::Uuid,
    id: &str,
    request: Option<uuid::Uuid>,
) -> Query {
    Query {
        schema_hash: schema.hash(),
        table_hashes: schema.table_hashes(),
        node,
        model: "Post".into(),
        operation: "create".into(),
        args: serde_json::json!({"data": {"id": id, "title": "t", "userId": "u1"}}),
        relation_names: Vec::new(),
        limits_ms: (5_000, 5_000),
        idle_ms: 5_000,
        request,
        tags: false,
    }
}

async fn count(client: &outpost_remote::tokio_postgres::Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_asked_again_with_its_request_id_is_answered_not_written_twice()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let gw = GatewayProcess::start(&db, 0, &[])?;
    let token = support::token("alice", Duration::from_secs(3600))?;
    let cfg = support::config(&gw.url(), &token, &db.dir().join("n.db"))?;
    let target = cfg
        .gateway
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no gateway"))?;
    let conn = GatewayConnection::new(&target, Duration::from_secs(5))?;
    let node = uuid::Uuid::now_v7();
    let request = uuid::Uuid::now_v7();
    let schema = conn.schema().await?;
    let q = create_post(&schema, node, "p1", Some(request));

    // The first attempt waits on a lock; the second, with the same id,
    // waits for the first one's transaction.
    let locker = db.client().await?;
    locker
        .batch_execute(r#"BEGIN; LOCK TABLE "Post" IN ACCESS EXCLUSIVE MODE"#)
        .await?;
    let first = {
        let (conn, q) = (
            conn.clone(),
            create_post(&schema, node, "p1", Some(request)),
        );
        tokio::spawn(async move { conn.query(&q).await })
    };
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = '{}'",
        db.name
    );
    eventually(Duration::from_secs(10), || async {
        Ok(count(&client, &waiting).await? >= 1)
    })
    .await?;
    let second = {
        let (conn, q) = (
            conn.clone(),
            create_post(&schema, node, "p1", Some(request)),
        );
        tokio::spawn(async move { conn.query(&q).await })
    };
    eventually(Duration::from_secs(10), || async {
        Ok(count(&client, &waiting).await? >= 2)
    })
    .await?;
    locker.batch_execute("ROLLBACK").await?;
    let a = first.await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let b = second.await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(a.result["id"], "p1");
    assert_eq!(
        a.result, b.result,
        "the second attempt gets the first one's answer"
    );
    assert_eq!(a.written, b.written);
    assert_eq!(a.written.len(), 1);

    // Asked again later: the same answer, still one row and one change.
    let c = conn.query(&q).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(c.result, a.result);
    assert_eq!(count(&client, r#"SELECT count(*) FROM "Post""#).await?, 1);
    assert_eq!(
        count(
            &client,
            r#"SELECT count(*) FROM outpost.changes WHERE table_name = 'Post'"#
        )
        .await?,
        1
    );

    // Another request is another write: the same key is now a duplicate.
    let other = create_post(&schema, node, "p1", Some(uuid::Uuid::now_v7()));
    let refused = conn.query(&other).await;
    assert!(
        matches!(
            refused,
            Err(outpost_remote::connections::WriteError::NotApplied(_))
        ),
        "{refused:?}"
    );
    // A request id is the node's own: another node's same id is its own
    // request.
    let elsewhere = create_post(&schema, uuid::Uuid::now_v7(), "p2", Some(request));
    let d = conn
        .query(&elsewhere)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(d.result["id"], "p2");
    assert_eq!(count(&client, r#"SELECT count(*) FROM "Post""#).await?, 2);
    Ok(())
}
