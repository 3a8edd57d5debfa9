//! Operating a gateway: `/metrics` moving with a node's sync (and refused
//! without its token), rate limits per principal (429 with `Retry-After`,
//! other principals unaffected, a limited node working offline and syncing
//! after the wait), and request log lines carrying the principal, never
//! the token or the database password.

#[path = "../../outpost-engine/tests/common/mod.rs"]
mod common;
mod logs;
use common::gateway_support as support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{BLOG, local, server};
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::SyncOptions;
use outpost_testkit::TestDb;
use serde_json::Value;
use support::{GatewayProcess, eventually};

use logs::capture_logs;

const PASSWORD: &str = "pw-Metrics-7-never-shown";
const METRICS_TOKEN: &str = "scrape-token-0123456789";

fn url_with_password(db: &TestDb) -> String {
    db.database_url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    )
}

/// `/metrics` read into `name{labels}` → value.
async fn scrape(base: &str) -> anyhow::Result<(String, BTreeMap<String, f64>)> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "scrape: {}", resp.status());
    let text = resp.text().await?;
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = line.rsplit_once(' ') {
            values.insert(k.to_string(), v.parse::<f64>().unwrap_or(f64::NAN));
        }
    }
    Ok((text, values))
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_a_nodes_sync_and_need_their_token() -> anyhow::Result<()> {
    let logs = capture_logs();
    let db = TestDb::new().await?;
    let (client, _) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x'), ('u2', 'u2@x')"#)
        .await?;
    let gw = GatewayProcess::start_url(
        &url_with_password(&db),
        0,
        &[("OUTPOST_GATEWAY_METRICS_TOKEN", METRICS_TOKEN)],
    )?;
    let base = gw.url();
    let http = reqwest::Client::new();

    // Without the metrics token, or with a node's: refused, the gateway's
    // error body.
    let node_token = support::token("alice", Duration::from_secs(600))?;
    for req in [
        http.get(format!("{base}/metrics")),
        http.get(format!("{base}/metrics")).bearer_auth(&node_token),
    ] {
        let resp = req.send().await?;
        assert_eq!(resp.status(), 401);
        let b: Value = resp.json().await?;
        assert_eq!(b["error"]["code"], "metrics_token", "{b}");
    }

    let (_, before) = scrape(&base).await?;
    assert_eq!(get(&before, "outpost_gateway_pool_size"), 10.0);
    assert_eq!(get(&before, "outpost_gateway_nodes_connected"), 0.0);

    let a = support::node(&db, &base, "alice", "a").await?;
    common::sync(&a, Direction::Bidirectional).await?;
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('p1', 't', 0, 'u1'), ('p2', 't', 0, 'u2')"#,
    )
    .await?;
    common::sync(&a, Direction::Bidirectional).await?;
    client
        .batch_execute(r#"UPDATE "User" SET name = 'n' WHERE id = 'u1'"#)
        .await?;
    common::sync(&a, Direction::Bidirectional).await?;

    // A node online: its change stream open.
    let stream = http
        .get(format!("{base}/v1/changes"))
        .bearer_auth(&node_token)
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    let (text, after) = scrape(&base).await?;
    let grew = |key: &str| get(&after, key) > get(&before, key);
    assert_eq!(
        get(
            &after,
            r#"outpost_gateway_requests_total{route="/metrics",status="401"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            &after,
            r#"outpost_gateway_requests_refused_total{code="metrics_token"}"#
        ),
        2.0
    );
    for key in [
        r#"outpost_gateway_requests_total{route="/v1/push",status="200"}"#,
        r#"outpost_gateway_requests_total{route="/v1/pull",status="200"}"#,
        r#"outpost_gateway_requests_total{route="/v1/bootstrap/{table}",status="200"}"#,
        r#"outpost_gateway_request_bytes_total{route="/v1/push"}"#,
        r#"outpost_gateway_response_bytes_total{route="/v1/bootstrap/{table}"}"#,
        r#"outpost_gateway_response_bytes_total{route="/v1/pull"}"#,
        r#"outpost_gateway_rows_served_total{table="User"}"#,
        "outpost_gateway_nodes_connected",
        "outpost_gateway_nodes_registered",
    ] {
        assert!(grew(key), "{key} did not grow:\n{text}");
    }
    // Two users bootstrapped, then one pulled after its update.
    assert_eq!(
        get(&after, r#"outpost_gateway_rows_served_total{table="User"}"#),
        3.0,
        "{text}"
    );
    assert_eq!(
        get(
            &after,
            r#"outpost_gateway_rows_received_total{table="Post"}"#
        ),
        2.0,
        "{text}"
    );
    assert_eq!(get(&after, "outpost_gateway_nodes_connected"), 1.0);
    assert!(get(&after, "outpost_gateway_pool_connections_open") >= 1.0);
    assert!(text.contains("outpost_gateway_pool_connections_in_use"));
    assert!(text.contains("outpost_gateway_oldest_node_seconds"));
    // The node goes away: no longer counted.
    drop(stream);
    eventually(Duration::from_secs(5), || async {
        let (_, m) = scrape(&base).await?;
        Ok(get(&m, "outpost_gateway_nodes_connected") == 0.0)
    })
    .await?;

    let logged = logs.text();
    assert!(!text.contains(PASSWORD) && !logged.contains(PASSWORD));
    assert!(!logged.contains(&node_token), "a token was logged");
    assert!(
        !logged.contains(METRICS_TOKEN),
        "the metrics token was logged"
    );
    // Each request's line names its principal.
    assert!(
        logged.lines().any(|l| l.contains("request")
            && l.contains("/v1/push")
            && l.contains("principal=alice")),
        "{logged}"
    );
    Ok(())
}

/// Two gateways over one database share each principal's budget: the
/// requests one let through are taken out of the other's bucket within a
/// few exchanges (`OUTPOST_GATEWAY_RATE_SHARE`), so a principal spreading
/// its requests over gateways gets its rate, not the rate times the
/// gateways. Other principals keep theirs.
#[tokio::test]
async fn gateways_of_one_database_share_a_principals_rate() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    server(&db, BLOG).await?;
    // One request every 5 s, bursts of 5; counts shared every 50 ms.
    let vars = [
        ("OUTPOST_GATEWAY_RATE", "0.2"),
        ("OUTPOST_GATEWAY_BURST", "5"),
        ("OUTPOST_GATEWAY_RATE_SHARE", "50"),
    ];
    let a = GatewayProcess::start(&db, 0, &vars)?;
    let b = GatewayProcess::start(&db, 0, &vars)?;
    // Both have read the (empty) counts once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::new();
    let alice = support::token("alice", Duration::from_secs(600))?;
    let bob = support::token("bob", Duration::from_secs(600))?;
    let probe = |gw: &GatewayProcess| format!("{}/v1/probe", gw.url());
    for _ in 0..5 {
        let resp = http.get(probe(&a)).bearer_auth(&alice).send().await?;
        assert_eq!(resp.status(), 200, "alice's burst on gateway a");
    }
    // Many exchanges later, gateway b has taken them out of alice's bucket.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut served = 0;
    let mut limited = 0;
    for _ in 0..5 {
        match http
            .get(probe(&b))
            .bearer_auth(&alice)
            .send()
            .await?
            .status()
            .as_u16()
        {
            200 => served += 1,
            429 => limited += 1,
            other => anyhow::bail!("unexpected status {other}"),
        }
    }
    // Without sharing b would serve all 5 (a burst of its own); the
    // bucket refills one request in 5 s, so at most one more is served.
    assert!(
        served <= 1 && limited >= 4,
        "served {served}, limited {limited}"
    );
    let resp = http.get(probe(&b)).bearer_auth(&bob).send().await?;
    assert_eq!(resp.status(), 200, "another principal keeps its budget");
    Ok(())
}

#[tokio::test]
async fn a_principal_over_its_rate_is_told_to_wait_and_its_node_syncs_after() -> anyhow::Result<()>
{
    let logs = capture_logs();
    let db = TestDb::new().await?;
    let (client, _) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    // 10 requests a second, bursts of 20: a sync fits in a burst.
    let gw = GatewayProcess::start(
        &db,
        0,
        &[
            ("OUTPOST_GATEWAY_RATE", "10"),
            ("OUTPOST_GATEWAY_BURST", "20"),
        ],
    )?;
    let base = gw.url();
    let a = support::node(&db, &base, "alice", "a").await?;
    common::sync(&a, Direction::Bidirectional).await?;

    let http = reqwest::Client::new();
    let alice = support::token("alice", Duration::from_secs(600))?;
    let bob = support::token("bob", Duration::from_secs(600))?;
    let probe = format!("{base}/v1/probe");
    // A burst above the limit.
    let mut limited = None;
    for _ in 0..40 {
        let resp = http.get(&probe).bearer_auth(&alice).send().await?;
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let resp = limited.ok_or_else(|| anyhow::anyhow!("40 requests at once were never limited"))?;
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Retry-After"))?;
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    let b: Value = resp.json().await?;
    assert_eq!(b["error"]["code"], "rate_limited", "{b}");
    assert_eq!(b["error"]["class"], "unreachable", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry after")),
        "{b}"
    );
    // Another principal is not affected.
    let resp = http.get(&probe).bearer_auth(&bob).send().await?;
    assert_eq!(resp.status(), 200);

    // Alice's node, limited: its write stays local, the sync says why.
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('p1', 'offline', 0, 'u1')"#,
    )
    .await?;
    let report = a
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!report.success, "{report:?}");
    let errors = format!("{:?}", report.errors);
    assert!(errors.contains("too many requests"), "{errors}");
    assert!(
        client
            .query_opt(r#"SELECT 1 FROM "Post" WHERE id = 'p1'"#, &[])
            .await?
            .is_none()
    );
    // After the wait (the whole burst back: 20 at 10 a second), it syncs.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = common::sync(&a, Direction::Bidirectional).await?;
    assert!(report.success, "{report:?}");
    assert!(
        client
            .query_opt(r#"SELECT 1 FROM "Post" WHERE id = 'p1'"#, &[])
            .await?
            .is_some()
    );
    let logged = logs.text();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("status=429") && l.contains("principal=alice")),
        "{logged}"
    );
    assert!(!logged.contains(&alice) && !logged.contains(&bob));
    Ok(())
}
