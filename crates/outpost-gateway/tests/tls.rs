//! The gateway serving TLS itself (`OUTPOST_GATEWAY_TLS_CERT`,
//! `OUTPOST_GATEWAY_TLS_KEY`; docs/gateway.md, "TLS"): a node that trusts
//! the certificate (`OUTPOST_GATEWAY_CA`) syncs over `https://`; one that
//! does not is refused with the reason and sends nothing; plain HTTP to the
//! TLS port gets no answer; a half-configured gateway does not start.

#[path = "../../outpost-engine/tests/common/mod.rs"]
mod common;
use common::gateway_support as support;

use std::path::Path;
use std::time::Duration;

use common::{BLOG, local, server, sync};
use outpost_core::config::Config;
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::{Engine, SyncOptions};
use outpost_local::Replica;
use outpost_testkit::TestDb;
use support::GatewayProcess;

/// A self-signed certificate for `localhost`, written as PEM files:
/// `(cert, key)`.
fn certificate(dir: &Path) -> anyhow::Result<(String, String)> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert = dir.join("gateway.crt");
    let key = dir.join("gateway.key");
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok((cert.display().to_string(), key.display().to_string()))
}

/// A node configured for `url`, trusting `ca` when given.
fn node_config(url: &str, ca: Option<&str>, path: &Path) -> anyhow::Result<Config> {
    let token = support::token("alice", Duration::from_secs(3600))?;
    let local = format!("file:{}", path.display());
    let (url, ca) = (url.to_string(), ca.map(str::to_string));
    Ok(Config::from_lookup(|k| match k {
        "OUTPOST_GATEWAY_URL" => Some(url.clone()),
        "OUTPOST_GATEWAY_TOKEN" => Some(token.clone()),
        "OUTPOST_GATEWAY_CA" => ca.clone(),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => None,
    })?)
}

#[tokio::test]
async fn a_node_syncs_over_the_gateways_own_tls_and_an_untrusting_one_is_refused()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let (cert, key) = certificate(db.dir())?;
    let gw = GatewayProcess::start(
        &db,
        0,
        &[
            ("OUTPOST_GATEWAY_TLS_CERT", &cert),
            ("OUTPOST_GATEWAY_TLS_KEY", &key),
        ],
    )?;
    let url = format!("https://localhost:{}", gw.addr.port());

    // Trusting the certificate: bootstrap, push and pull over TLS.
    let path = db.dir().join("a.db");
    let cfg = node_config(&url, Some(&cert), &path)?;
    let target = cfg
        .gateway
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no gateway"))?;
    let served = outpost_remote::gateway::GatewayConnection::new(&target, Duration::from_secs(5))?
        .schema()
        .await?;
    assert_eq!(served.hash(), schema.hash());
    let (replica, _) = Replica::setup(&path, &served)?;
    let a = Engine::new(replica, cfg);
    sync(&a, Direction::Bidirectional).await?;
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'over tls', 'u1')"#,
    )
    .await?;
    sync(&a, Direction::Bidirectional).await?;
    let title: String = client
        .query_one(r#"SELECT title FROM "Post" WHERE id = 'p1'"#, &[])
        .await?
        .get(0);
    assert_eq!(title, "over tls");

    // Not trusting it (no OUTPOST_GATEWAY_CA): refused, saying why, and
    // its pending row stays pending.
    let path = db.dir().join("b.db");
    let (replica, _) = Replica::setup(&path, &served)?;
    let b = Engine::new(replica, node_config(&url, None, &path)?);
    local(
        &b,
        r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p2', 'untrusted', 'u1')"#,
    )
    .await?;
    let report = b
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!report.success, "{report:?}");
    let said = format!("{:?}", report.errors);
    assert!(said.to_lowercase().contains("certificate"), "{said}");
    let n: i64 = client
        .query_one(r#"SELECT count(*) FROM "Post" WHERE id = 'p2'"#, &[])
        .await?
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(b.status().await?.pending, 1);

    // Plain HTTP to the TLS port: no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/probe", gw.addr.port()))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    Ok(())
}

#[tokio::test]
async fn a_gateway_with_half_a_tls_setting_or_a_bad_file_does_not_start() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (cert, key) = certificate(db.dir())?;
    let url = db.database_url();
    let options = |extra: Vec<(&'static str, String)>| {
        outpost_gateway::Options::from_lookup(|k| {
            if let Some((_, v)) = extra.iter().find(|(e, _)| *e == k) {
                return Some(v.clone());
            }
            match k {
                "DATABASE_URL" => Some(url.clone()),
                "OUTPOST_GATEWAY_SECRET" => Some(support::SECRET.to_string()),
                _ => None,
            }
        })
    };
    let only_cert = options(vec![("OUTPOST_GATEWAY_TLS_CERT", cert.clone())])
        .expect_err("a certificate without its key");
    assert!(only_cert.contains("OUTPOST_GATEWAY_TLS_KEY"), "{only_cert}");
    let only_key = options(vec![("OUTPOST_GATEWAY_TLS_KEY", key.clone())])
        .expect_err("a key without its certificate");
    assert!(only_key.contains("OUTPOST_GATEWAY_TLS_CERT"), "{only_key}");
    // The key given as the certificate: named, with what is wrong.
    let swapped = options(vec![
        ("OUTPOST_GATEWAY_TLS_CERT", key.clone()),
        ("OUTPOST_GATEWAY_TLS_KEY", key.clone()),
    ])
    .expect_err("a key file as the certificate");
    assert!(
        swapped.contains("OUTPOST_GATEWAY_TLS_CERT") && swapped.contains("gateway.key"),
        "{swapped}"
    );
    let missing = options(vec![
        ("OUTPOST_GATEWAY_TLS_CERT", cert.clone()),
        ("OUTPOST_GATEWAY_TLS_KEY", format!("{key}.missing")),
    ])
    .expect_err("a missing key file");
    assert!(missing.contains("OUTPOST_GATEWAY_TLS_KEY"), "{missing}");
    // Both right: it starts with TLS.
    let ok = options(vec![
        ("OUTPOST_GATEWAY_TLS_CERT", cert),
        ("OUTPOST_GATEWAY_TLS_KEY", key),
    ])
    .map_err(anyhow::Error::msg)?;
    assert!(ok.tls.is_some());
    Ok(())
}

/// `GET /v1/probe` over TLS on a new connection, trusting only `ca_pem`:
/// the status, or the error's text.
async fn probe_trusting(port: u16, ca_pem: &str, token: &str) -> Result<u16, String> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    match client
        .get(format!("https://localhost:{port}/v1/probe"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(outpost_remote::error::with_causes(&e)),
    }
}

/// A renewed certificate (both files rewritten, as an ACME client does) is
/// served to new connections without a restart; a file caught half written
/// keeps the certificate read last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let _ = server(&db, BLOG).await?;
    let (cert, key) = certificate(db.dir())?;
    let first = std::fs::read_to_string(&cert)?;
    let gw = GatewayProcess::start(
        &db,
        0,
        &[
            ("OUTPOST_GATEWAY_TLS_CERT", &cert),
            ("OUTPOST_GATEWAY_TLS_KEY", &key),
            ("OUTPOST_GATEWAY_TLS_RELOAD", "200"),
        ],
    )?;
    let port = gw.addr.port();
    let token = support::token("alice", Duration::from_secs(3600))?;
    assert_eq!(probe_trusting(port, &first, &token).await, Ok(200));

    // Renewed: another key pair in the same files.
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    std::fs::write(&key, renewed.signing_key.serialize_pem())?;
    std::fs::write(&cert, renewed.cert.pem())?;
    let second = renewed.cert.pem();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while probe_trusting(port, &second, &token).await != Ok(200) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = probe_trusting(port, &first, &token).await;
    assert!(
        old.as_ref()
            .is_err_and(|e| e.to_lowercase().contains("certificate")),
        "{old:?}"
    );

    // Half written: the certificate read last stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB")?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(probe_trusting(port, &second, &token).await, Ok(200));
    Ok(())
}
