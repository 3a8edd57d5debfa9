//! A node syncing through a real gateway against a real PostgreSQL: the
//! engine tests' assertions (`common`, shared with
//! `crates/outpost-engine/tests`) run on nodes in gateway topology.

#[path = "../../outpost-engine/tests/common/mod.rs"]
mod common;
use common::gateway_support as support;

use std::time::Duration;

use common::{BLOG, assert_converged, local, local_rows, server, server_rows, sync, unsettled};
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::SyncOptions;
use outpost_testkit::TestDb;
use support::{GatewayProcess, eventually};

async fn seed(
    db: &TestDb,
) -> anyhow::Result<(
    outpost_remote::tokio_postgres::Client,
    outpost_core::schema::Schema,
)> {
    let (client, schema) = server(db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x'), ('u2', 'u2@x');
               INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'one', 'u1'), ('p2', 'two', 'u2');"#,
        )
        .await?;
    Ok((client, schema))
}

#[tokio::test]
async fn bootstrap_push_and_conflict_through_a_gateway() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = seed(&db).await?;
    let gw = GatewayProcess::start(&db, 0, &[])?;
    let a = support::node(&db, &gw.url(), "alice", "a").await?;
    // The replica laid out from the gateway's schema is the server's.
    assert_eq!(a.schema().hash(), schema.hash());

    let report = sync(&a, Direction::Bidirectional).await?;
    assert!(report.bootstrapped);
    assert_converged(&client, &schema, &[&a]).await?;
    assert_eq!(local_rows(&a, "Post").await?.len(), 2);

    // Offline writes: an insert, an update, a delete.
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('p3', 'three', 0, 'u1');
           UPDATE "Post" SET title = 'one, edited' WHERE id = 'p1';
           DELETE FROM "Post" WHERE id = 'p2';"#,
    )
    .await?;
    let report = sync(&a, Direction::Bidirectional).await?;
    assert_eq!(
        report.results.get("Post").map(|s| s.records_succeeded),
        Some(3)
    );
    let titles: Vec<String> = client
        .query(r#"SELECT id || ':' || title FROM "Post" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(titles, ["p1:one, edited", "p3:three"]);
    assert_converged(&client, &schema, &[&a]).await?;

    // The same field edited on both sides: a conflict, as in direct mode.
    local(&a, r#"UPDATE "Post" SET title = 'local' WHERE id = 'p3'"#).await?;
    client
        .batch_execute(r#"UPDATE "Post" SET title = 'server' WHERE id = 'p3'"#)
        .await?;
    let report = a
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert_eq!(report.results.get("Post").map(|s| s.conflicts), Some(1));
    let left = unsettled(&a).await?;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left.iter().any(|(t, pk)| t == "Post" && pk.contains("p3")));
    // Everything else still equals the server.
    assert_converged(&client, &schema, &[&a]).await?;
    Ok(())
}

#[tokio::test]
async fn a_node_runtime_pulls_on_the_gateways_notification_and_pushes_auto_mode_writes()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = seed(&db).await?;
    let gw = GatewayProcess::start(&db, 0, &[])?;
    let path = db.dir().join("n.db");
    // No periodic sync: only the notification stream can bring the change.
    let cfg = support::config(
        &gw.url(),
        &support::token("alice", Duration::from_secs(3600))?,
        &path,
    )?;
    // A new replica file: `Outpost::open` lays it out through the gateway.
    let node = outpost_engine::Outpost::open_with(
        cfg,
        outpost_engine::NodeOptions {
            check_interval: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await?;
    // Online through the gateway, and the startup sync bootstrapped (a
    // run that only pushed may finish first: wait for the rows).
    eventually(Duration::from_secs(10), || async {
        let posts = node
            .model("Post")?
            .find_many::<serde_json::Value>(serde_json::json!({}))
            .await?;
        Ok(node.status().await.is_online && posts.len() == 2)
    })
    .await?;

    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('s1', 'from the server', 'u2')"#,
        )
        .await?;
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(10), || async {
        let found = node
            .model("Post")?
            .find_many::<serde_json::Value>(serde_json::json!({"where": {"id": "s1"}}))
            .await?;
        Ok(!found.is_empty())
    })
    .await?;
    eprintln!(
        "server commit to replica through the gateway: {:?}",
        started.elapsed()
    );

    // Auto mode through a gateway writes to the replica and pushes at once.
    node.model("Post")?
        .create::<serde_json::Value>(
            serde_json::json!({"data": {"id": "n1", "title": "from the node", "userId": "u1"}}),
        )
        .await?;
    eventually(Duration::from_secs(10), || async {
        Ok(client
            .query_opt(r#"SELECT 1 FROM "Post" WHERE id = 'n1'"#, &[])
            .await?
            .is_some())
    })
    .await?;
    // Local mode keeps its writes for a sync asked for, as in direct mode.
    node.set_mode(outpost_engine::Mode::Local).await;
    node.model("Post")?
        .create::<serde_json::Value>(
            serde_json::json!({"data": {"id": "l1", "title": "kept locally", "userId": "u1"}}),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_server = |id: &'static str| {
        let client = &client;
        async move {
            anyhow::Ok(
                client
                    .query_opt(r#"SELECT 1 FROM "Post" WHERE id = $1"#, &[&id])
                    .await?
                    .is_some(),
            )
        }
    };
    assert!(!on_server("l1").await?, "local mode pushed without a sync");
    assert_eq!(node.status().await.pending, 1);
    let report = node.sync(Direction::Bidirectional).await?;
    assert!(report.success, "{:?}", report.errors);
    assert!(on_server("l1").await?);
    // Remote mode runs on the server through the gateway: a write lands
    // at once, under the node's origin, and is mirrored as synced.
    node.set_mode(outpost_engine::Mode::Remote).await;
    let r: serde_json::Value = node
        .model("Post")?
        .create(serde_json::json!({"data": {"id": "r1", "title": "remote", "userId": "u1"}}))
        .await?;
    assert_eq!(r["title"], "remote");
    assert!(on_server("r1").await?);
    let origin: Option<String> = client
        .query_one(
            "SELECT origin FROM outpost.row_versions WHERE pk = '[\"r1\"]'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(origin, Some(node.engine().node_id().to_string()));
    node.set_mode(outpost_engine::Mode::Local).await;
    let mirrored: Option<serde_json::Value> = node
        .model("Post")?
        .find_unique(serde_json::json!({"where": {"id": "r1"}}))
        .await?;
    assert_eq!(
        mirrored.map(|p| p["syncStatus"].clone()),
        Some(serde_json::json!("SYNCED"))
    );
    node.shutdown().await;
    let _ = schema;
    Ok(())
}

#[tokio::test]
async fn two_nodes_through_two_gateways_converge() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = seed(&db).await?;
    let g1 = GatewayProcess::start(&db, 0, &[])?;
    let g2 = GatewayProcess::start(&db, 0, &[])?;
    let a = support::node(&db, &g1.url(), "alice", "a").await?;
    let b = support::node(&db, &g2.url(), "bob", "b").await?;
    sync(&a, Direction::Bidirectional).await?;
    sync(&b, Direction::Bidirectional).await?;
    for round in 0..5 {
        local(
            &a,
            &format!(
                r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('a{round}', 'a', {round}, 'u1');
                   UPDATE "Post" SET views = views + 1 WHERE id = 'p1';"#
            ),
        )
        .await?;
        local(
            &b,
            &format!(
                r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('b{round}', 'b', {round}, 'u2');
                   UPDATE "User" SET name = 'bob {round}' WHERE id = 'u2';"#
            ),
        )
        .await?;
        client
            .batch_execute(&format!(
                r#"INSERT INTO "Post" (id, title, "userId") VALUES ('s{round}', 's', 'u1')"#
            ))
            .await?;
        sync(&a, Direction::Bidirectional).await?;
        sync(&b, Direction::Bidirectional).await?;
    }
    let left = common::converge(&client, &schema, &[&a, &b]).await?;
    assert_eq!(left, 0);
    assert_eq!(server_rows(&client, &schema, "Post").await?.len(), 2 + 15);
    Ok(())
}

/// Rows of `table` on the server by id, with how often each appears.
async fn ids(
    client: &outpost_remote::tokio_postgres::Client,
    table: &str,
) -> anyhow::Result<Vec<String>> {
    Ok(client
        .query(&format!(r#"SELECT id FROM "{table}" ORDER BY id"#), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[tokio::test]
async fn a_gateway_killed_mid_push_and_mid_bootstrap_loses_and_duplicates_nothing()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = seed(&db).await?;
    // Enough rows that the copy and the push take several round trips.
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, "userId")
               SELECT 'big' || lpad(g::text, 6, '0'), 'bulk', repeat('x', 200), 'u1' FROM generate_series(1, 60000) g"#,
        )
        .await?;
    let mut gw = GatewayProcess::start(&db, 0, &[])?;
    let port = gw.addr.port();
    let a = support::node(&db, &gw.url(), "alice", "a").await?;

    // Mid-bootstrap: the gateway dies while the copy streams.
    let run = {
        let a = a.clone();
        tokio::spawn(async move {
            a.sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
                .await
        })
    };
    eventually(Duration::from_secs(30), || async {
        Ok(a.progress().is_some_and(|p| p.rows > 0))
    })
    .await?;
    gw.kill();
    let report = run.await??;
    assert!(
        !report.success,
        "the run cannot succeed without its gateway"
    );
    let gw = GatewayProcess::start(&db, port, &[])?;
    let report = sync(&a, Direction::Bidirectional).await?;
    assert!(report.bootstrapped);
    assert_converged(&client, &schema, &[&a]).await?;

    // Mid-push: 12,000 offline inserts in batches of 1,000; the gateway
    // dies after the first batches landed.
    // A registered node without a cursor keeps every change in the log
    // (nothing is pruned that it has not passed), so the count of changes
    // below says how often each row was written.
    client
        .batch_execute(
            "INSERT INTO outpost.nodes (node_id, name) VALUES ('00000000-0000-0000-0000-00000000000b', 'keeps the log')",
        )
        .await?;
    a.set_push_batch(1000);
    local(
        &a,
        r#"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 12000)
           INSERT INTO "Post" (id, title, views, "userId") SELECT 'off' || printf('%06d', n), 'offline', n, 'u2' FROM g"#,
    )
    .await?;
    let mut gw = gw;
    let run = {
        let a = a.clone();
        tokio::spawn(async move {
            a.sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
                .await
        })
    };
    eventually(Duration::from_secs(30), || async {
        Ok(client
            .query_one(r#"SELECT count(*) FROM "Post" WHERE id LIKE 'off%'"#, &[])
            .await?
            .get::<_, i64>(0)
            > 0)
    })
    .await?;
    gw.kill();
    let _ = run.await?;
    let landed: i64 = client
        .query_one(r#"SELECT count(*) FROM "Post" WHERE id LIKE 'off%'"#, &[])
        .await?
        .get(0);
    eprintln!("rows pushed before the gateway died: {landed} of 12000");
    assert!(
        landed < 12000,
        "the gateway died after the push, not during it"
    );
    let _gw = GatewayProcess::start(&db, port, &[])?;
    let left = common::converge(&client, &schema, &[&a]).await?;
    assert_eq!(left, 0);
    let all = ids(&client, "Post").await?;
    let offline: Vec<&String> = all.iter().filter(|i| i.starts_with("off")).collect();
    assert_eq!(offline.len(), 12000);
    // Each version written once: the retry found the landed rows already
    // applied instead of writing them again.
    let versions: i64 = client
        .query_one(
            r#"SELECT count(*) FROM outpost.changes WHERE table_name = 'Post' AND pk->>0 LIKE 'off%'"#,
            &[],
        )
        .await?
        .get(0);
    assert_eq!(versions, 12000, "every pushed insert recorded exactly once");
    Ok(())
}

#[tokio::test]
async fn json_bodies_measured() -> anyhow::Result<()> {
    // Sizes and times of the wire form for docs/gateway.md: a 20,000-row
    // bootstrap of a blog table through a gateway, against the same copy
    // direct.
    let db = TestDb::new().await?;
    let (client, schema) = seed(&db).await?;
    client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, views, "userId")
               SELECT 'm' || g, 'title ' || g, repeat('y', 100), g, 'u1' FROM generate_series(1, 20000) g"#,
        )
        .await?;
    let gw = GatewayProcess::start(&db, 0, &[])?;
    let via = support::node(&db, &gw.url(), "alice", "via").await?;
    let t = std::time::Instant::now();
    sync(&via, Direction::FromServer).await?;
    let through = t.elapsed();
    let direct = common::node(&db, &schema, "direct")?;
    let t = std::time::Instant::now();
    sync(&direct, Direction::FromServer).await?;
    let straight = t.elapsed();
    assert_converged(&client, &schema, &[&via, &direct]).await?;
    // The bytes of the table's stream.
    let http = reqwest::Client::new();
    let body = http
        .get(format!("{}/v1/bootstrap/Post", gw.url()))
        .bearer_auth(support::token("alice", Duration::from_secs(60))?)
        .query(&[("schema_hash", schema.hash())])
        .send()
        .await?
        .bytes()
        .await?;
    let rows = local_rows(&via, "Post").await?.len();
    eprintln!(
        "bootstrap of {rows} Post rows: through the gateway {through:?}, direct {straight:?}; stream {} bytes ({} per row)",
        body.len(),
        body.len() / rows.max(1)
    );
    assert!(body.ends_with(b"}\n"));

    // A push of 5,000 offline inserts (one batch), each way.
    for (who, node) in [("through the gateway", &via), ("direct", &direct)] {
        let prefix = if who == "direct" { "d" } else { "g" };
        local(
            node,
            &format!(
                r#"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000)
                   INSERT INTO "Post" (id, title, body, views, "userId")
                   SELECT '{prefix}' || n, 'pushed ' || n, printf('%.100c', 'z'), n, 'u2' FROM g"#
            ),
        )
        .await?;
        let t = std::time::Instant::now();
        let report = sync(node, Direction::ToServer).await?;
        eprintln!(
            "push of 5000 inserts {who}: {:?} ({:?} rows)",
            t.elapsed(),
            report.results.get("Post").map(|s| s.records_succeeded)
        );
    }
    // The request body of such a push, as the client sends it.
    let rows: Vec<outpost_core::sync::PushRow> = (0..5000)
        .map(|n| outpost_core::sync::PushRow {
            table: "Post".into(),
            local_pk: format!("[\"x{n}\"]"),
            pk: vec![outpost_core::types::Value::Text(format!("x{n}"))],
            values: Some(vec![
                outpost_core::types::Value::Text(format!("x{n}")),
                outpost_core::types::Value::Text(format!("pushed {n}")),
                outpost_core::types::Value::Text("z".repeat(100)),
                outpost_core::types::Value::Int(n),
                outpost_core::types::Value::Text("u2".into()),
            ]),
            changed: None,
            local_seq: outpost_core::ids::LocalSeq(n),
            expected: outpost_core::sync::Expected::AsOfCursor,
            moved_from: None,
        })
        .collect();
    let push_body = serde_json::to_vec(&rows)?;
    eprintln!(
        "push body of 5000 rows: {} bytes ({} per row)",
        push_body.len(),
        push_body.len() / 5000
    );
    Ok(())
}

// Multi-threaded: the proxy runs on the test's runtime while the gateway
// starts (its start blocks the calling thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_the_gateway_cannot_reach_is_unreachable_to_the_node() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = seed(&db).await?;
    let proxy = outpost_testkit::proxy::Proxy::start(db.server_addr()?).await?;
    let gw = GatewayProcess::start_url(&db.database_url_via(proxy.addr), 0, &[])?;
    let a = support::node(&db, &gw.url(), "alice", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    local(
        &a,
        r#"UPDATE "Post" SET title = 'while cut' WHERE id = 'p1'"#,
    )
    .await?;

    proxy.cut();
    let report = a
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!report.success);
    // The node reads it as a server it cannot reach (it goes offline and
    // retries), not as a refusal of its request.
    assert!(
        report.error_kind.is_some_and(|k| k.is_unreachable()),
        "{:?} {:?}",
        report.error_kind,
        report.errors
    );
    let errors = format!("{:?}", report.errors);
    assert!(errors.contains("cannot be reached"), "{errors}");

    proxy.restore();
    let left = common::converge(&client, &schema, &[&a]).await?;
    assert_eq!(left, 0);
    let title: String = client
        .query_one(r#"SELECT title FROM "Post" WHERE id = 'p1'"#, &[])
        .await?
        .get(0);
    assert_eq!(title, "while cut");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_database_connections_stay_within_its_pool() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = seed(&db).await?;
    let gw = GatewayProcess::start(&db, 0, &[("OUTPOST_GATEWAY_POOL", "2")])?;
    let token = support::token("alice", Duration::from_secs(600))?;
    let http = reqwest::Client::new();
    let count = || async {
        anyhow::Ok(
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .await?
                .get::<_, i64>(0),
        )
    };
    // Forty nodes' pulls at once: they queue for the two connections.
    let mut pulls = Vec::new();
    for _ in 0..40 {
        let req = http
            .post(format!("{}/v1/pull", gw.url()))
            .bearer_auth(&token)
            .json(&serde_json::json!({"schema_hash": schema.hash(), "cursor": {"txid": 0, "seq": 0}, "limit": 100, "tables": null}));
        pulls.push(tokio::spawn(async move { req.send().await }));
    }
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(count().await?);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for p in pulls {
        let resp = p.await??;
        assert_eq!(resp.status().as_u16(), 200);
    }
    most = most.max(count().await?);
    // Two pooled sessions and the one LISTEN connection, whatever the load.
    assert!(most <= 3, "{most} connections for a pool of 2");
    assert!(most >= 2, "the gateway's connections were seen ({most})");
    Ok(())
}
