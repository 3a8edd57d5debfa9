//! The node runtime: modes, the connectivity monitor behind a TCP proxy,
//! notifications, the model service on both databases, offline ids.

mod common;

use std::time::Duration;

use common::*;
use outpost_core::sync::Direction;
use outpost_engine::{EngineError, Mode, NodeOptions, Outpost};
use outpost_testkit::TestDb;
use outpost_testkit::proxy::Proxy;
use serde_json::{Value as Json, json};

fn fast() -> NodeOptions {
    NodeOptions {
        check_interval: Duration::from_millis(100),
        check_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..NodeOptions::default()
    }
}

async fn wait_for(
    what: &str,
    mut f: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_change_reaches_an_idle_online_node_without_the_interval() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    let node = Outpost::open_with(runtime_config(&db, "n", sync_addr(&db)?, &[])?, fast()).await?;
    wait_for("online", async || Ok(node.status().await.is_online)).await?;
    wait_for("first sync", async || {
        Ok(node
            .status()
            .await
            .last_sync
            .as_ref()
            .is_some_and(|l| l.status == "SUCCESS"))
    })
    .await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('pushed', 'p@x')"#)
        .await?;
    // The interval is off: only the notification can bring it.
    wait_for("the row in the replica", async || {
        Ok(local_rows(node.engine(), "User").await?.len() == 1)
    })
    .await?;
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_another_program_commits_to_the_replica_is_pushed_without_a_sync_asked()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    let node = Outpost::open_with(runtime_config(&db, "n", sync_addr(&db)?, &[])?, fast()).await?;
    wait_for("online and bootstrapped", async || {
        let s = node.status().await;
        Ok(s.is_online && s.last_sync.as_ref().is_some_and(|l| l.status == "SUCCESS"))
    })
    .await?;
    // Another program (here a connection of its own, as `sqlite3` or the
    // application's ORM would be) writes to the replica file. The interval
    // is off and nobody asks for a sync: only the watch can push it.
    let file = db.dir().join("n.db");
    let other = outpost_local::rusqlite::Connection::open(&file)?;
    other.busy_timeout(Duration::from_secs(5))?;
    other.execute(
        r#"INSERT INTO "User" (id, email) VALUES ('ext', 'ext@x')"#,
        [],
    )?;
    other.execute(r#"UPDATE "User" SET email = 'ext2@x' WHERE id = 'ext'"#, [])?;
    let arrived = wait_for("the row on the server", async || {
        let rows = client
            .query(r#"SELECT email FROM "User" WHERE id = 'ext'"#, &[])
            .await?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)).as_deref() == Some("ext2@x"))
    })
    .await;
    if let Err(e) = arrived {
        let log = node.engine().log(None, 100, 0).await?;
        anyhow::bail!("{e}; the sync log: {log:#?}");
    }
    // The run is logged as done once its acknowledgement is applied,
    // a moment after the server committed (longer through a gateway).
    let logged = wait_for("the push logged", async || {
        let log = node.engine().log(None, 100, 0).await?;
        Ok(log.iter().any(|e| {
            e.trigger == "local-change" && e.direction == "TO_SERVER" && e.status == "SUCCESS"
        }))
    })
    .await;
    if let Err(e) = logged {
        let log = node.engine().log(None, 100, 0).await?;
        anyhow::bail!("{e}: a push triggered by the local change is logged: {log:?}");
    }
    // The node's own pushes and pulls are not local writes: once the row
    // is synced, no further local-change runs follow.
    wait_for("nothing pending", async || {
        Ok(node.status().await.pending == 0)
    })
    .await?;
    let runs = |log: &[outpost_local::LogEntry]| {
        log.iter().filter(|e| e.trigger == "local-change").count()
    };
    let before = runs(&node.engine().log(None, 1000, 0).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&node.engine().log(None, 1000, 0).await?), before);

    // In `local` mode a person chose the replica: a write waits for a sync
    // asked for (or the interval) ...
    node.set_mode(Mode::Local).await;
    other.execute(
        r#"INSERT INTO "User" (id, email) VALUES ('held', 'held@x')"#,
        [],
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.status().await.pending, 1);
    let on_server = async || -> anyhow::Result<bool> {
        Ok(client
            .query_opt(r#"SELECT 1 FROM "User" WHERE id = 'held'"#, &[])
            .await?
            .is_some())
    };
    assert!(!on_server().await?);
    // ... and goes as soon as the node is back in `auto`, with no new write.
    node.set_mode(Mode::Auto).await;
    wait_for("the held write on the server", on_server).await?;
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_network_flips_auto_to_local_and_back() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let proxy = Proxy::start(sync_addr(&db)?).await?;
    let node = Outpost::open_with(runtime_config(&db, "n", proxy.addr, &[])?, fast()).await?;
    wait_for("online and bootstrapped", async || {
        let s = node.status().await;
        Ok(s.is_online && s.last_sync.as_ref().is_some_and(|l| l.status == "SUCCESS"))
    })
    .await?;
    let posts = node.model("Post")?;
    let online: Json = posts
        .create(json!({"data": {"id": "on", "title": "online", "userId": "u1"}}))
        .await?;
    assert_eq!(online["title"], "online");
    // Written on the server (direct), or on the replica and pushed at once
    // (through a gateway): on the server, and its push acknowledged on the
    // node (a cut between the two would leave it pending, rightly).
    wait_for("the online create on the server", async || {
        Ok(client
            .query_one(r#"SELECT count(*) FROM "Post""#, &[])
            .await?
            .get::<_, i64>(0)
            == 1
            && node.status().await.pending == 0)
    })
    .await?;

    proxy.cut();
    let updates = node.subscribe();
    wait_for("offline", async || Ok(!node.status().await.is_online)).await?;
    assert!(node.status().await.using_local_database);
    let offline: Json = posts.create(json!({"data": {"id": "off", "title": "offline", "userId": "u1"}, "include": {"user": true}})).await?;
    assert_eq!(offline["syncStatus"], "PENDING");
    assert_eq!(
        offline["user"]["id"], "u1",
        "the user comes from the replica"
    );
    let all: Vec<Json> = posts.find_many(json!({"orderBy": {"id": "asc"}})).await?;
    assert_eq!(all.len(), 2);
    assert_eq!(node.status().await.pending, 1);
    assert!(updates.has_changed()?, "subscribers heard about it");

    proxy.restore();
    wait_for("back online and pushed", async || {
        let s = node.status().await;
        Ok(s.is_online && s.pending == 0)
    })
    .await?;
    assert_eq!(
        client
            .query_one(r#"SELECT count(*) FROM "Post""#, &[])
            .await?
            .get::<_, i64>(0),
        2
    );
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_offline_mode_operations_fail_with_a_clear_error() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema) = server(&db, BLOG).await?;
    let proxy = Proxy::start(sync_addr(&db)?).await?;
    let cfg = runtime_config(&db, "n", proxy.addr, &[("ENABLE_OFFLINE_MODE", "false")])?;
    let node = Outpost::open_with(cfg, fast()).await?;
    wait_for("online", async || Ok(node.status().await.is_online)).await?;
    proxy.cut();
    wait_for("offline", async || Ok(!node.status().await.is_online)).await?;
    assert!(!node.status().await.using_local_database);
    let err = node
        .model("User")?
        .find_many::<Json>(json!({}))
        .await
        .expect_err("refused");
    assert!(matches!(err, EngineError::Unreachable(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("server unreachable") && text.contains("ENABLE_OFFLINE_MODE"),
        "{text}"
    );
    node.shutdown().await;
    Ok(())
}

const KEYS: &str = r#"
CREATE TABLE "Tag" (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE "Item" (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL);
CREATE TABLE "Note" (id text PRIMARY KEY, body text NOT NULL);
CREATE TABLE "Counter" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int NOT NULL DEFAULT 0);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_creates_with_every_kind_of_key_push_without_collisions() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, KEYS).await?;
    let options = NodeOptions {
        monitor: false,
        ..fast()
    };
    let a = Outpost::open_with(
        runtime_config(&db, "a", sync_addr(&db)?, &[])?,
        options.clone(),
    )
    .await?;
    let b = Outpost::open_with(runtime_config(&db, "b", sync_addr(&db)?, &[])?, options).await?;
    for n in [&a, &b] {
        n.sync(Direction::Bidirectional).await?; // bootstrap, and reserve id blocks
        n.set_mode(Mode::Local).await;
    }
    for (n, who) in [(&a, "a"), (&b, "b")] {
        for i in 0..5 {
            n.model("Tag")?
                .create::<Json>(json!({"data": {"name": format!("{who}{i}")}}))
                .await?;
            n.model("Item")?
                .create::<Json>(json!({"data": {"name": format!("{who}{i}")}}))
                .await?;
            n.model("Note")?
                .create::<Json>(json!({"data": {"body": format!("{who}{i}")}}))
                .await?;
            n.model("Counter")?
                .create::<Json>(json!({"data": {"n": i}}))
                .await?;
        }
    }
    for n in [&a, &b, &a] {
        let report = n.sync(Direction::Bidirectional).await?;
        let failed: u64 = report
            .results
            .values()
            .map(|s| s.records_failed + s.conflicts)
            .sum();
        assert_eq!(failed, 0, "{report:?}");
    }
    for table in ["Tag", "Item", "Note", "Counter"] {
        let n: i64 = client
            .query_one(&format!(r#"SELECT count(*) FROM "{table}""#), &[])
            .await?
            .get(0);
        assert_eq!(n, 10, "{table}");
    }
    // Online again, the server's own sequence does not collide with them.
    client
        .batch_execute(r#"INSERT INTO "Tag" (name) VALUES ('server')"#)
        .await?;
    Ok(())
}

const RELATED_KEYS: &str = r#"
CREATE TABLE "Owner" (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE "Thing" (id serial PRIMARY KEY, "ownerId" uuid NOT NULL REFERENCES "Owner"(id), label text NOT NULL);
CREATE TABLE "Part" (id bigint PRIMARY KEY, "thingId" int NOT NULL REFERENCES "Thing"(id));
INSERT INTO "Owner" VALUES ('00000000-0000-0000-0000-00000000000a', 'a'), ('00000000-0000-0000-0000-00000000000b', 'b');
INSERT INTO "Thing" ("ownerId", label)
  SELECT CASE WHEN i % 3 = 0 THEN '00000000-0000-0000-0000-00000000000b'::uuid ELSE '00000000-0000-0000-0000-00000000000a'::uuid END, 't' || i
  FROM generate_series(1, 12) i;
INSERT INTO "Part" SELECT 9000000000 + i, 1 + i % 10 FROM generate_series(1, 30) i;
"#;

/// Drops `syncStatus` at every level: only the replica's records carry it.
fn without_sync_status(v: &mut Json) {
    match v {
        Json::Object(m) => {
            m.remove("syncStatus");
            m.values_mut().for_each(without_sync_status);
        }
        Json::Array(a) => a.iter_mut().for_each(without_sync_status),
        _ => {}
    }
}

/// Relations loaded by integer and uuid keys (matched on the server with
/// one typed array parameter) give the same records remote and local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_on_integer_and_uuid_keys_read_the_same_remote_and_local() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema) = server(&db, RELATED_KEYS).await?;
    let node = Outpost::open_with(
        runtime_config(&db, "a", sync_addr(&db)?, &[])?,
        NodeOptions {
            monitor: false,
            ..fast()
        },
    )
    .await?;
    node.sync(Direction::Bidirectional).await?;
    let reads = [
        (
            "Thing",
            json!({"include": {"owner": true, "parts": {"orderBy": {"id": "asc"}}}, "orderBy": {"id": "asc"}}),
        ),
        (
            "Owner",
            json!({"include": {"things": {"include": {"parts": {"orderBy": {"id": "asc"}}}, "orderBy": {"id": "asc"}}}, "orderBy": {"id": "asc"}}),
        ),
        (
            "Part",
            json!({"include": {"thing": {"include": {"owner": true}}}, "orderBy": {"id": "asc"}}),
        ),
    ];
    for (model, args) in reads {
        node.set_mode(Mode::Remote).await;
        let remote: Vec<Json> = node.model(model)?.find_many(args.clone()).await?;
        node.set_mode(Mode::Local).await;
        let mut local: Vec<Json> = node.model(model)?.find_many(args.clone()).await?;
        local.iter_mut().for_each(without_sync_status);
        assert_eq!(remote, local, "{model} {args}");
        assert!(!remote.is_empty(), "{model}: nothing read");
    }
    // Every relation found its rows.
    node.set_mode(Mode::Remote).await;
    let things: Vec<Json> = node
        .model("Thing")?
        .find_many(json!({"include": {"owner": true, "parts": true}}))
        .await?;
    assert_eq!(things.len(), 12);
    assert!(things.iter().all(|t| t["owner"]["id"] == t["ownerId"]));
    let parts: usize = things
        .iter()
        .map(|t| t["parts"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(parts, 30, "{things:?}");
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_id_block_refuses_the_create_and_says_why() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema) = server(&db, KEYS).await?;
    let options = NodeOptions {
        monitor: false,
        id_block: 3,
        ..fast()
    };
    let a = Outpost::open_with(runtime_config(&db, "a", sync_addr(&db)?, &[])?, options).await?;
    a.sync(Direction::Bidirectional).await?;
    a.set_mode(Mode::Local).await;
    let tags = a.model("Tag")?;
    for i in 0..3 {
        tags.create::<Json>(json!({"data": {"name": format!("t{i}")}}))
            .await?;
    }
    let err = tags
        .create::<Json>(json!({"data": {"name": "one too many"}}))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("no reserved ids left for Tag.id"),
        "{err}"
    );
    // An explicit id still works.
    tags.create::<Json>(json!({"data": {"id": 1_000_000, "name": "explicit"}}))
        .await?;
    assert_eq!(tags.count(json!({})).await?, 4);
    Ok(())
}

/// Node `n` (no monitor), synced once, in remote mode.
async fn remote_node(db: &TestDb) -> anyhow::Result<Outpost> {
    let node = Outpost::open_with(
        runtime_config(db, "n", sync_addr(db)?, &[])?,
        NodeOptions {
            monitor: false,
            ..fast()
        },
    )
    .await?;
    node.sync(Direction::Bidirectional).await?;
    node.set_mode(Mode::Remote).await;
    Ok(node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_writes_run_under_the_nodes_origin_and_are_mirrored() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    let node = remote_node(&db).await?;
    let users = node.model("User")?;
    let u: Json = users
        .create(json!({"data": {"id": "r1", "email": "r@x", "name": "remote"}}))
        .await?;
    assert_eq!(u["name"], "remote");
    let origin: Option<String> = client
        .query_one(
            "SELECT origin FROM outpost.row_versions WHERE pk = '[\"r1\"]'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(origin, Some(node.engine().node_id().to_string()));
    // Mirrored into the replica as synced: local mode sees it at once.
    node.set_mode(Mode::Local).await;
    let local: Option<Json> = users.find_unique(json!({"where": {"id": "r1"}})).await?;
    assert_eq!(
        local.as_ref().map(|u| u["syncStatus"].clone()),
        Some(json!("SYNCED"))
    );
    assert_eq!(node.status().await.pending, 0);
    // A bad request names what is wrong and changes nothing.
    let err = users
        .find_many::<Json>(json!({"where": {"emial": "x"}}))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("emial"), "{err}");
    Ok(())
}

/// A remote-mode request the server cannot carry out is that request's
/// error, with the same code whether the node reaches the server directly
/// or through a gateway (which runs it on the server and passes the model
/// service's error, or the server's SQLSTATE, back): nothing is written,
/// and the node's next request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_refusals_carry_the_same_codes_in_both_topologies() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(
            r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x');
               ALTER TABLE "Post" ADD CONSTRAINT short_title CHECK (length(title) < 20);"#,
        )
        .await?;
    let node = remote_node(&db).await?;
    let users = node.model("User")?;
    let posts = node.model("Post")?;
    let cases: Vec<(&str, Result<Json, EngineError>)> = vec![
        (
            "unique_violation",
            users
                .create(json!({"data": {"id": "u2", "email": "u1@x"}}))
                .await,
        ),
        (
            "not_found",
            users
                .update(json!({"where": {"id": "nobody"}, "data": {"name": "x"}}))
                .await,
        ),
        (
            "constraint_violation",
            posts
                .create(json!({"data": {"id": "p1", "title": "t", "userId": "ghost"}}))
                .await,
        ),
        (
            "constraint_violation",
            posts
                .create(json!({"data": {"id": "p2", "title": "a title far too long to pass", "userId": "u1"}}))
                .await,
        ),
        (
            "invalid_query",
            users
                .find_many::<Json>(json!({"where": {"emial": "x"}}))
                .await
                .map(Json::Array),
        ),
    ];
    for (want, got) in cases {
        let err = got.expect_err(want);
        assert_eq!(err.code(), want, "{err}");
        assert!(!err.is_unreachable(), "{err}");
    }
    // The server's own message reaches the caller.
    let err = posts
        .create::<Json>(
            json!({"data": {"id": "p3", "title": "a title far too long to pass", "userId": "u1"}}),
        )
        .await
        .expect_err("the check refuses it");
    assert!(
        err.public_message().contains("short_title"),
        "{}",
        err.public_message()
    );
    let n: i64 = client
        .query_one(
            r#"SELECT (SELECT count(*) FROM "User") + (SELECT count(*) FROM "Post")"#,
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 1, "nothing was written");
    let ok: Json = users
        .create(json!({"data": {"id": "u3", "email": "u3@x"}}))
        .await?;
    assert_eq!(ok["id"], "u3");
    node.shutdown().await;
    Ok(())
}
