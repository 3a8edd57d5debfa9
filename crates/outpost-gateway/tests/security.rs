//! Who may use a gateway: tokens refused with their reason (none, forged,
//! expired, another audience), node ids bound to the principal that first
//! used them, a node with a refused token working offline and saying why,
//! and the gateway's database password in no answer (`/metrics` included)
//! and no log line, nor any token.

#[path = "../../outpost-engine/tests/common/mod.rs"]
mod common;
mod logs;
use common::gateway_support as support;

use std::time::Duration;

use common::{BLOG, local, server};
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::SyncOptions;
use outpost_testkit::TestDb;
use serde_json::{Value, json};
use support::GatewayProcess;

use logs::capture_logs;

const PASSWORD: &str = "pw-Zq9-never-shown";

/// The test database's URL with a password (trust authentication ignores
/// it; the gateway holds it all the same).
fn url_with_password(db: &TestDb) -> String {
    db.database_url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    )
}

async fn call(
    req: reqwest::RequestBuilder,
    seen: &mut Vec<String>,
) -> anyhow::Result<(u16, Value)> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    seen.push(text.clone());
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn refused_tokens_and_foreign_node_ids_say_why_and_no_password_escapes() -> anyhow::Result<()>
{
    let logs = capture_logs();
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    let url = url_with_password(&db);
    assert!(
        url.contains(PASSWORD),
        "the URL carries the password: {}",
        url.replace(PASSWORD, "***")
    );
    let gw = GatewayProcess::start_url(&url, 0, &[("OUTPOST_GATEWAY_AUDIENCE", "gw-test")])?;
    let base = gw.url();
    let keys =
        outpost_gateway::auth::Keys::hs256(support::SECRET, None).map_err(anyhow::Error::msg)?;
    let alice = keys
        .create("alice", Duration::from_secs(600), Some("gw-test"))
        .map_err(anyhow::Error::msg)?;
    let bob = keys
        .create("bob", Duration::from_secs(600), Some("gw-test"))
        .map_err(anyhow::Error::msg)?;
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    let probe = format!("{base}/v1/probe");

    let (s, b) = call(http.get(&probe), &mut seen).await?;
    assert_eq!((s, code(&b)), (401, "token_missing"), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Bearer"))
    );

    let forger = outpost_gateway::auth::Keys::hs256("a-different-secret-of-enough-length!", None)
        .map_err(anyhow::Error::msg)?;
    let forged = forger
        .create("alice", Duration::from_secs(600), Some("gw-test"))
        .map_err(anyhow::Error::msg)?;
    let (s, b) = call(http.get(&probe).bearer_auth(&forged), &mut seen).await?;
    assert_eq!((s, code(&b)), (401, "bad_signature"), "{b}");

    let elsewhere = keys
        .create("alice", Duration::from_secs(600), Some("another-gateway"))
        .map_err(anyhow::Error::msg)?;
    let (s, b) = call(http.get(&probe).bearer_auth(&elsewhere), &mut seen).await?;
    assert_eq!((s, code(&b)), (401, "wrong_audience"), "{b}");

    let expired = keys
        .create("alice", Duration::from_secs(1), Some("gw-test"))
        .map_err(anyhow::Error::msg)?;
    // Past `exp` and the 5 s leeway.
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let (s, b) = call(http.get(&probe).bearer_auth(&expired), &mut seen).await?;
    assert_eq!((s, code(&b)), (401, "token_expired"), "{b}");

    let (s, b) = call(http.get(&probe).bearer_auth(&alice), &mut seen).await?;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["protocol"], 1);

    // A node id is bound to the principal that used it first.
    let node = uuid::Uuid::new_v4();
    let register = format!("{base}/v1/register");
    let body = json!({"node": node, "name": "alice's tablet"});
    let (s, b) = call(
        http.post(&register).bearer_auth(&alice).json(&body),
        &mut seen,
    )
    .await?;
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        http.post(&register).bearer_auth(&bob).json(&body),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (403, "node_of_another_principal"), "{b}");
    let push = json!({"schema_hash": schema.hash(), "node": node, "cursor": {"txid": 0, "seq": 0},
                      "rows": [], "limits_ms": [1000, 1000]});
    let (s, b) = call(
        http.post(format!("{base}/v1/push"))
            .bearer_auth(&bob)
            .json(&push),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (403, "node_of_another_principal"), "{b}");
    let cursor = json!({"node": node, "cursor": {"txid": 0, "seq": 0}});
    let (s, b) = call(
        http.post(format!("{base}/v1/record_cursor"))
            .bearer_auth(&bob)
            .json(&cursor),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (403, "node_of_another_principal"), "{b}");
    let claim = json!({"node": node, "current": uuid::Uuid::new_v4(), "known": []});
    let (s, b) = call(
        http.post(format!("{base}/v1/claim"))
            .bearer_auth(&bob)
            .json(&claim),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (403, "node_of_another_principal"), "{b}");

    // Other refusals, each with its reason.
    let (s, b) = call(
        http.post(&register).bearer_auth(&alice).body("{"),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (400, "bad_request"), "{b}");
    let stale = json!({"schema_hash": "not-this-one", "cursor": {"txid": 0, "seq": 0}, "limit": 10, "tables": null});
    let (s, b) = call(
        http.post(format!("{base}/v1/pull"))
            .bearer_auth(&alice)
            .json(&stale),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (409, "schema_mismatch"), "{b}");
    let (s, b) = call(
        http.get(format!("{base}/v1/bootstrap/Nope"))
            .bearer_auth(&alice)
            .query(&[("schema_hash", schema.hash())]),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (404, "unknown_table"), "{b}");
    let (s, b) = call(
        http.get(&probe)
            .bearer_auth(&alice)
            .header("outpost-protocol", "2"),
        &mut seen,
    )
    .await?;
    assert_eq!((s, code(&b)), (400, "protocol_version"), "{b}");
    // A push the database refuses (a post of a user that does not exist):
    // the row fails with the server's message, the request succeeds.
    let row = json!({"schema_hash": schema.hash(), "node": node, "cursor": {"txid": 0, "seq": 0},
        "rows": [{"table": "Post", "local_pk": "[\"x\"]", "pk": [{"s": "x"}],
                  "values": [{"s": "x"}, {"s": "t"}, "n", {"i": 0}, {"s": "nobody"}],
                  "changed": null, "local_seq": 1, "expected": "AsOfCursor"}],
        "limits_ms": [1000, 1000]});
    let (s, b) = call(
        http.post(format!("{base}/v1/push"))
            .bearer_auth(&alice)
            .json(&row),
        &mut seen,
    )
    .await?;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["outcomes"][0]["Failed"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("foreign key")),
        "{b}"
    );

    // A prune never runs with a window shorter than the gateway's floor
    // (7 days by default): a change a second old stays.
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u-prune', 'p@x')"#)
        .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, b) = call(
        http.post(format!("{base}/v1/prune"))
            .bearer_auth(&alice)
            .json(&json!({"retention_ms": 1})),
        &mut seen,
    )
    .await?;
    assert_eq!((s, &b["deleted"]), (200, &json!(0)), "{b}");
    let kept: i64 = client
        .query_one("SELECT count(*) FROM outpost.changes", &[])
        .await?
        .get(0);
    assert!(kept >= 1, "the change log was pruned below the floor");

    // The schema and the change stream need a token too.
    let (s, _) = call(http.get(format!("{base}/v1/schema")), &mut seen).await?;
    assert_eq!(s, 401);
    let (s, _) = call(http.get(format!("{base}/v1/changes")), &mut seen).await?;
    assert_eq!(s, 401);

    // Without OUTPOST_GATEWAY_METRICS_TOKEN, /metrics is open (no node
    // token needed); it names neither the database nor its password.
    let (s, _) = call(http.get(format!("{base}/metrics")), &mut seen).await?;
    assert_eq!(s, 200);
    assert!(
        seen.last()
            .is_some_and(|m| m.contains("outpost_gateway_requests_total")),
        "{seen:?}"
    );

    let logged = logs.text();
    assert!(
        logged.contains("node registered"),
        "the gateway's log was captured"
    );
    // Request lines carry the principal, never the token.
    assert!(logged.contains("principal=alice"), "{logged}");
    for token in [&alice, &bob, &forged, &elsewhere, &expired] {
        assert!(!logged.contains(token.as_str()), "a token was logged");
    }
    for text in seen.iter().chain(std::iter::once(&logged)) {
        assert!(
            !text.contains(PASSWORD),
            "the database password escaped: {text}"
        );
    }
    drop(client);
    Ok(())
}

#[tokio::test]
async fn a_node_with_an_expired_or_foreign_token_works_offline_and_says_why() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let gw = GatewayProcess::start(&db, 0, &[])?;
    let a = support::node(&db, &gw.url(), "alice", "a").await?;
    common::sync(&a, Direction::Bidirectional).await?;

    // The same replica, now with a token that has expired.
    let path = db.dir().join("a.db");
    let expired = support::token("alice", Duration::from_secs(1))?;
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let cfg = support::config(&gw.url(), &expired, &path)?;
    let node = outpost_engine::Outpost::open_with(
        cfg,
        outpost_engine::NodeOptions {
            check_interval: Duration::from_millis(200),
            backoff_max: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await?;
    // It keeps working: writes land in the replica, pending.
    node.model("Post")?
        .create::<Value>(json!({"data": {"id": "p-off", "title": "offline", "userId": "u1"}}))
        .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = node.status().await;
    assert!(!status.is_online, "a refused token is no way to the server");
    assert_eq!(status.pending, 1);
    // A sync says why, and so does the SyncLog.
    let report = node.sync(Direction::Bidirectional).await?;
    assert!(!report.success);
    let errors = format!("{:?}", report.errors);
    assert!(errors.contains("expired"), "{errors}");
    let log = node
        .engine()
        .with_replica(|r| r.sync_log(None, 1, 0))
        .await?;
    assert!(
        log.first()
            .and_then(|e| e.error.as_deref())
            .is_some_and(|e| e.contains("expired")),
        "{log:?}"
    );
    node.shutdown().await;
    assert!(
        client
            .query_opt(r#"SELECT 1 FROM "Post" WHERE id = 'p-off'"#, &[])
            .await?
            .is_none()
    );

    // Another principal's token on alice's replica: refused by name.
    let bob = support::token("bob", Duration::from_secs(600))?;
    let b = outpost_engine::Engine::new(
        outpost_local::Replica::open(&path)?,
        support::config(&gw.url(), &bob, &path)?,
    );
    local(
        &b,
        r#"UPDATE "Post" SET title = 'by bob' WHERE id = 'p-off'"#,
    )
    .await?;
    let report = b
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!report.success);
    let errors = format!("{:?}", report.errors);
    assert!(errors.contains("another principal"), "{errors}");
    Ok(())
}

/// A node whose token is in `OUTPOST_GATEWAY_TOKEN_FILE`: the file is read
/// for every request, so a token the application renews is used without a
/// restart; until the file holds a valid token the node works offline and
/// says why.
#[tokio::test]
async fn a_token_file_is_read_for_every_request_so_a_renewed_token_needs_no_restart()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let gw = GatewayProcess::start(&db, 0, &[])?;
    // The replica laid out as `outpost setup` does, then used with a file.
    drop(support::node(&db, &gw.url(), "alice", "a").await?);
    let path = db.dir().join("a.db");
    let file = db.dir().join("node.token");
    let (url, local_url) = (gw.url(), format!("file:{}", path.display()));
    let lookup = |token_var: Option<String>| {
        let (url, local_url, file) = (url.clone(), local_url.clone(), file.clone());
        outpost_core::config::Config::from_lookup(move |k| match k {
            "OUTPOST_GATEWAY_URL" => Some(url.clone()),
            "OUTPOST_GATEWAY_TOKEN_FILE" => Some(file.display().to_string()),
            "OUTPOST_GATEWAY_TOKEN" => token_var.clone(),
            "LOCAL_DATABASE_URL" => Some(local_url.clone()),
            "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
            _ => None,
        })
    };
    // Both ways at once is refused by name.
    let both = lookup(Some("abc.def.ghi".into()))
        .err()
        .map(|e| e.to_string());
    assert!(
        both.as_deref()
            .is_some_and(|e| e.contains("OUTPOST_GATEWAY_TOKEN_FILE") && e.contains("not both")),
        "{both:?}"
    );
    let cfg = lookup(None)?;
    assert!(
        !format!("{cfg:?}").contains("eyJ"),
        "no token in the config's Debug"
    );
    let node = outpost_engine::Engine::new(outpost_local::Replica::open(&path)?, cfg);
    let sync = || node.sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual));

    // No file yet: offline, saying which file to write.
    local(
        &node,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p-f', 'file', 'u1')"#,
    )
    .await?;
    let report = sync().await?;
    assert!(!report.success);
    let said = format!("{:?}", report.errors);
    assert!(
        said.contains("node.token") && said.contains("cannot be read"),
        "{said}"
    );
    assert_eq!(report.error_kind, Some(outpost_engine::ErrorKind::Auth));

    // A token of another key: refused by the gateway, with its reason.
    let forged = outpost_gateway::auth::Keys::hs256(&"x".repeat(40), None)
        .and_then(|k| k.create("alice", Duration::from_secs(600), None))
        .map_err(anyhow::Error::msg)?;
    std::fs::write(&file, format!("{forged}\n"))?;
    let report = sync().await?;
    assert!(!report.success);
    assert!(
        format!("{:?}", report.errors).contains("signature"),
        "{:?}",
        report.errors
    );

    // The application writes a good token: the same engine syncs with it,
    // and the offline write lands.
    let good = support::token("alice", Duration::from_secs(600))?;
    std::fs::write(&file, format!("{good}\n"))?;
    let report = sync().await?;
    assert!(report.success, "{:?}", report.errors);
    let title: String = client
        .query_one(r#"SELECT title FROM "Post" WHERE id = 'p-f'"#, &[])
        .await?
        .get(0);
    assert_eq!(title, "file");
    Ok(())
}
