//! Token keys beyond the HS256 secret: RS256 and EdDSA public keys from
//! PEM files, a JWKS file whose keys are chosen by `kid` (rotation: add the
//! new key, later remove the old), algorithms pinned per key, and key files
//! that stop the gateway at start naming the file.
//!
//! The keys are fixtures in `tests/keys/`, generated once with openssl by
//! `tests/keys/generate.sh` (committed rather than generated per run: RSA
//! key generation in a debug build is slow, and they guard nothing).

#[path = "../../outpost-engine/tests/common/mod.rs"]
mod common;
use common::gateway_support as support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{BLOG, server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use outpost_core::sync::Direction;
use outpost_engine::Engine;
use outpost_gateway::auth::{Claims, Keys};
use outpost_local::Replica;
use outpost_testkit::TestDb;
use serde_json::Value;
use support::GatewayProcess;

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token signed with the private key `pem` (EdDSA or RS256, as its file
/// says), with `kid` in the header and the claims given.
fn signed(pem: &str, kid: Option<&str>, sub: &str, exp: u64, aud: Option<&str>) -> String {
    let text = std::fs::read(key(pem)).expect("fixture key");
    let (key, alg) = match EncodingKey::from_ed_pem(&text) {
        Ok(k) => (k, Algorithm::EdDSA),
        Err(_) => (
            EncodingKey::from_rsa_pem(&text).expect("an RSA key"),
            Algorithm::RS256,
        ),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(
        &header,
        &Claims {
            sub: Some(sub.into()),
            exp: Some(exp),
            iat: Some(now()),
            aud: aud.map(str::to_string),
            extra: serde_json::Map::new(),
        },
        &key,
    )
    .expect("signed")
}

/// `GET /v1/probe` with `token`: the status and the error code (empty on
/// success).
async fn probe(base: &str, token: &str) -> anyhow::Result<(u16, String)> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/probe"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 {
        // Every refusal is the gateway's error body.
        assert_eq!(body["error"]["class"], "auth", "{body}");
        assert!(body["error"]["message"].as_str().is_some(), "{body}");
    }
    Ok((
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    ))
}

/// A node in gateway topology with `token`, its replica laid out from the
/// schema the gateway serves.
async fn node(db: &TestDb, gateway: &str, token: &str, name: &str) -> anyhow::Result<Engine> {
    support::node_with_token(db, gateway, token, name).await
}

#[tokio::test]
async fn rs256_and_eddsa_tokens_verify_with_their_public_keys_and_others_are_refused()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _) = server(&db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let pems = format!(
        "{},{}",
        key("ed-a.pub.pem").display(),
        key("rsa-a.pub.pem").display()
    );
    // Public keys only: no secret.
    let gw = GatewayProcess::start(
        &db,
        0,
        &[
            ("OUTPOST_GATEWAY_SECRET", ""),
            ("OUTPOST_GATEWAY_PUBLIC_KEY", &pems),
            ("OUTPOST_GATEWAY_AUDIENCE", "gw-keys"),
        ],
    )?;
    let base = gw.url();
    let later = now() + 600;

    let ed = signed("ed-a.pem", None, "alice", later, Some("gw-keys"));
    assert_eq!(probe(&base, &ed).await?, (200, String::new()));
    let rsa = signed("rsa-a.pem", Some("any-kid"), "bob", later, Some("gw-keys"));
    assert_eq!(probe(&base, &rsa).await?, (200, String::new()));

    // A node syncs with an EdDSA token, end to end.
    let a = node(&db, &base, &ed, "a").await?;
    let report = common::sync(&a, Direction::Bidirectional).await?;
    assert!(report.success, "{report:?}");
    assert_eq!(common::local_rows(&a, "User").await?.len(), 1);

    // Another Ed25519 key: the signature does not verify.
    let other = signed("ed-b.pem", None, "alice", later, Some("gw-keys"));
    assert_eq!(probe(&base, &other).await?, (401, "bad_signature".into()));
    // HS256 while the gateway holds only public keys: refused by its
    // algorithm, with any secret, including the RSA public key's own text
    // (the classic key-confusion forgery).
    let hs = support::token("alice", Duration::from_secs(600))?;
    assert_eq!(probe(&base, &hs).await?, (401, "bad_algorithm".into()));
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: Some("alice".into()),
            exp: Some(later),
            iat: None,
            aud: Some("gw-keys".into()),
            extra: serde_json::Map::new(),
        },
        &EncodingKey::from_secret(&std::fs::read(key("rsa-a.pub.pem"))?),
    )?;
    assert_eq!(
        probe(&base, &confused).await?,
        (401, "bad_algorithm".into())
    );
    // Unsigned.
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"sub":"alice","exp":{later},"aud":"gw-keys"}}"#
        ))
    );
    assert_eq!(probe(&base, &none).await?, (401, "bad_algorithm".into()));
    // Expired (beyond the leeway) and for another audience.
    let expired = signed("ed-a.pem", None, "alice", now() - 60, Some("gw-keys"));
    assert_eq!(probe(&base, &expired).await?, (401, "token_expired".into()));
    let elsewhere = signed("rsa-a.pem", None, "alice", later, Some("another"));
    assert_eq!(
        probe(&base, &elsewhere).await?,
        (401, "wrong_audience".into())
    );

    // A node whose token is refused says why and keeps its replica.
    let b = node(&db, &base, &ed, "b").await?;
    drop(b);
    let refused = Engine::new(
        Replica::open(&db.dir().join("b.db"))?,
        support::config(&base, &other, &db.dir().join("b.db"))?,
    );
    let report = refused
        .sync(outpost_engine::SyncOptions::new(
            Direction::Bidirectional,
            outpost_core::sync::Trigger::Manual,
        ))
        .await?;
    assert!(!report.success);
    assert!(
        format!("{:?}", report.errors).contains("signature"),
        "{:?}",
        report.errors
    );
    Ok(())
}

#[tokio::test]
async fn a_jwks_key_rotation_accepts_both_kids_then_refuses_the_removed_one() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let (_client, _) = server(&db, BLOG).await?;
    let jwk = |name: &str| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(key(name))?)?)
    };
    let file = db.dir().join("jwks.json");
    // Step 1 of a rotation: the new key (rsa-a) added next to the old one.
    std::fs::write(
        &file,
        serde_json::to_vec(
            &serde_json::json!({"keys": [jwk("ed-a.jwk.json")?, jwk("rsa-a.jwk.json")?]}),
        )?,
    )?;
    let jwks = file.display().to_string();
    let settings = [
        ("OUTPOST_GATEWAY_SECRET", ""),
        ("OUTPOST_GATEWAY_JWKS", jwks.as_str()),
    ];
    let mut gw = GatewayProcess::start(&db, 0, &settings)?;
    let base = gw.url();
    let port = gw.addr.port();
    let later = now() + 600;
    let old = signed("ed-a.pem", Some("ed-a"), "alice", later, None);
    let new = signed("rsa-a.pem", Some("rsa-a"), "alice", later, None);
    assert_eq!(probe(&base, &old).await?, (200, String::new()));
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    // No `kid`: every key of the token's algorithm is tried.
    let bare = signed("ed-a.pem", None, "alice", later, None);
    assert_eq!(probe(&base, &bare).await?, (200, String::new()));
    // A kid the file does not have.
    let stranger = signed("ed-b.pem", Some("ed-b"), "alice", later, None);
    assert_eq!(probe(&base, &stranger).await?, (401, "unknown_key".into()));
    // A known kid with another key's signature.
    let forged = signed("ed-b.pem", Some("ed-a"), "alice", later, None);
    assert_eq!(probe(&base, &forged).await?, (401, "bad_signature".into()));
    // A kid naming the RSA key on an EdDSA token: the key's algorithm is
    // pinned, the header's does not choose.
    let mismatched = signed("ed-a.pem", Some("rsa-a"), "alice", later, None);
    assert_eq!(
        probe(&base, &mismatched).await?,
        (401, "bad_algorithm".into())
    );

    // Step 2: the old key removed, the gateway restarted.
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({"keys": [jwk("rsa-a.jwk.json")?]}))?,
    )?;
    gw.kill();
    let gw = GatewayProcess::start(&db, port, &settings)?;
    let base = gw.url();
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    assert_eq!(probe(&base, &old).await?, (401, "unknown_key".into()));
    assert_eq!(probe(&base, &bare).await?, (401, "bad_algorithm".into()));
    Ok(())
}

#[test]
fn bad_key_files_stop_the_gateway_naming_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").expect("write");
    let not_json = dir.path().join("jwks.json");
    std::fs::write(&not_json, "{\"keys\": 3}").expect("write");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "{\"keys\": []}").expect("write");
    let oct = dir.path().join("oct.json");
    std::fs::write(
        &oct,
        r#"{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}"#,
    )
    .expect("write");
    let missing = dir.path().join("missing.pem");
    let private = key("ed-a.pem");
    let options = |k: &'static str, v: &Path| {
        let v = v.display().to_string();
        outpost_gateway::Options::from_lookup(move |name| match name {
            "DATABASE_URL" => Some("postgres://postgres@127.0.0.1:5432/postgres".into()),
            n if n == k => Some(v.clone()),
            _ => None,
        })
    };
    for (var, path, says) in [
        ("OUTPOST_GATEWAY_PUBLIC_KEY", &missing, "cannot be read"),
        ("OUTPOST_GATEWAY_PUBLIC_KEY", &garbage, "not a PEM file"),
        ("OUTPOST_GATEWAY_PUBLIC_KEY", &private, "is a private key"),
        ("OUTPOST_GATEWAY_JWKS", &not_json, "is not a JWKS"),
        ("OUTPOST_GATEWAY_JWKS", &empty, "has no signature keys"),
        ("OUTPOST_GATEWAY_JWKS", &oct, "OUTPOST_GATEWAY_SECRET"),
    ] {
        let err = options(var, path).expect_err("refused");
        assert!(
            err.contains(&path.display().to_string()) && err.contains(var) && err.contains(says),
            "{var}={}: {err}",
            path.display()
        );
    }
    // No key at all.
    let err = outpost_gateway::Options::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://postgres@127.0.0.1:5432/postgres".into()),
        _ => None,
    })
    .expect_err("refused");
    assert!(err.contains("no token key"), "{err}");
    // The private keys sign what the public ones verify (`token create
    // --key`), with the kid in the header.
    let signer = Keys::signing_pem(&key("rsa-a.pem"), Some("rsa-a")).expect("signer");
    let token = signer
        .create("alice", Duration::from_secs(60), None)
        .expect("token");
    let jwks = dir.path().join("rsa.json");
    std::fs::write(
        &jwks,
        format!(
            "{{\"keys\": [{}]}}",
            std::fs::read_to_string(key("rsa-a.jwk.json")).expect("jwk")
        ),
    )
    .expect("write");
    let keys = Keys::load(&outpost_gateway::auth::KeySources {
        jwks: Some(&jwks),
        ..Default::default()
    })
    .expect("keys");
    let p = keys
        .verify(Some(&format!("Bearer {token}")))
        .expect("verified");
    assert_eq!(p.0, "alice");
    assert!(Keys::signing_pem(&key("rsa-a.pub.pem"), None).is_err());
}

/// An auth provider's JWKS at its URL, as the test serves it: `None`
/// answers 500. Counts the fetches.
struct Provider {
    jwks: std::sync::Mutex<Option<Value>>,
    fetches: std::sync::atomic::AtomicUsize,
}

impl Provider {
    fn publish(&self, keys: Option<Vec<Value>>) {
        if let Ok(mut j) = self.jwks.lock() {
            *j = keys.map(|k| serde_json::json!({ "keys": k }));
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Serves `provider` at `/.well-known/jwks.json` on a port of its own; the
/// URL.
async fn serve_jwks(provider: std::sync::Arc<Provider>) -> anyhow::Result<String> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let provider = provider.clone();
            async move {
                provider
                    .fetches
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = provider.jwks.lock().ok().and_then(|j| j.clone());
                match body {
                    Some(v) => axum::Json(v).into_response(),
                    None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/.well-known/jwks.json"))
}

/// Polls `probe` with `token` until it answers `want` (at most 10 s).
async fn until_probe(base: &str, token: &str, want: (u16, &str)) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = probe(base, token).await?;
        if (got.0, got.1.as_str()) == want {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "still {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JWKS given as a URL (an auth provider's `/.well-known/jwks.json`) is
/// fetched before the gateway serves and read again while it runs: a key
/// the provider publishes verifies on its first token, a key it removes is
/// refused after the next refresh, an outage of the provider keeps the
/// keys read last; all without a restart. Tokens with made-up `kid`s do
/// not turn into fetches, and a URL that cannot be fetched at start stops
/// the gateway naming it.
// Two workers: starting a gateway blocks the test's thread while the
// gateway fetches the JWKS this runtime serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_read_again_so_a_key_rotation_needs_no_restart() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _) = server(&db, BLOG).await?;
    let jwk = |name: &str| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(key(name))?)?)
    };
    let provider = std::sync::Arc::new(Provider {
        jwks: std::sync::Mutex::new(None),
        fetches: std::sync::atomic::AtomicUsize::new(0),
    });
    let url = serve_jwks(provider.clone()).await?;
    provider.publish(Some(vec![jwk("ed-a.jwk.json")?]));
    let later = now() + 600;
    let old = signed("ed-a.pem", Some("ed-a"), "alice", later, None);
    let new = signed("rsa-a.pem", Some("rsa-a"), "alice", later, None);

    let start = |refresh: &str| {
        GatewayProcess::start(
            &db,
            0,
            &[
                ("OUTPOST_GATEWAY_SECRET", ""),
                ("OUTPOST_GATEWAY_JWKS", url.as_str()),
                ("OUTPOST_GATEWAY_JWKS_REFRESH", refresh),
            ],
        )
    };
    // A refresh far away: only a token's unknown kid reads the JWKS again.
    let gw = start("600000")?;
    let base = gw.url();
    assert_eq!(provider.fetches(), 1, "fetched once, at start");
    assert_eq!(probe(&base, &old).await?, (200, String::new()));
    // The provider publishes its next key; its first token is verified.
    provider.publish(Some(vec![jwk("ed-a.jwk.json")?, jwk("rsa-a.jwk.json")?]));
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    assert_eq!(provider.fetches(), 2);
    // Made-up kids: refused, and read again at most every 30 s.
    for i in 0..20 {
        let stranger = signed(
            "ed-b.pem",
            Some(&format!("made-up-{i}")),
            "alice",
            later,
            None,
        );
        assert_eq!(probe(&base, &stranger).await?, (401, "unknown_key".into()));
    }
    assert_eq!(provider.fetches(), 2, "no fetch per made-up kid");
    drop(gw);

    // A refresh every 200 ms: the removed key stops verifying by itself.
    let gw = start("200")?;
    let base = gw.url();
    assert_eq!(probe(&base, &old).await?, (200, String::new()));
    provider.publish(Some(vec![jwk("rsa-a.jwk.json")?]));
    until_probe(&base, &old, (401, "unknown_key")).await?;
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    // The provider down (500s): the keys read last stay.
    provider.publish(None);
    let before = provider.fetches();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while provider.fetches() < before + 3 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "no refresh tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    // The reads are counted, and the keys verifying now.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    let sample = |line: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    assert!(
        sample("outpost_gateway_jwks_reads_total{result=\"failed\"}") >= 3.0,
        "{metrics}"
    );
    assert!(
        sample("outpost_gateway_jwks_reads_total{result=\"ok\"}") >= 2.0,
        "{metrics}"
    );
    assert_eq!(sample("outpost_gateway_jwks_keys"), 1.0, "{metrics}");
    drop(gw);

    // Down at start: the gateway does not start, and says which URL.
    let err = match start("300000") {
        Ok(_) => anyhow::bail!("a gateway without its keys started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&url) && err.contains("OUTPOST_GATEWAY_JWKS") && err.contains("500"),
        "{err}"
    );
    // A bad refresh setting is refused by name.
    let err = outpost_gateway::Options::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://postgres@127.0.0.1:5432/postgres".into()),
        "OUTPOST_GATEWAY_JWKS" => Some("https://auth.example.com/.well-known/jwks.json".into()),
        "OUTPOST_GATEWAY_JWKS_REFRESH" => Some("soon".into()),
        _ => None,
    })
    .expect_err("refused");
    assert!(err.contains("OUTPOST_GATEWAY_JWKS_REFRESH"), "{err}");
    Ok(())
}

/// A PEM public key file replaced in place (a rotation) is read again
/// while the gateway runs (`OUTPOST_GATEWAY_JWKS_REFRESH` applies to PEM
/// files too): the new key's tokens verify and the replaced key's are
/// refused, without a restart; a file half-written or removed meanwhile
/// keeps the keys read last.
#[tokio::test]
async fn a_pem_key_file_replaced_in_place_is_read_again() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _) = server(&db, BLOG).await?;
    let path = db.dir().join("gateway.pub.pem");
    std::fs::copy(key("ed-a.pub.pem"), &path)?;
    let gw = GatewayProcess::start(
        &db,
        0,
        &[
            ("OUTPOST_GATEWAY_SECRET", ""),
            ("OUTPOST_GATEWAY_PUBLIC_KEY", &path.display().to_string()),
            ("OUTPOST_GATEWAY_JWKS_REFRESH", "200"),
        ],
    )?;
    let base = gw.url();
    let later = now() + 600;
    let old = signed("ed-a.pem", None, "alice", later, None);
    let new = signed("ed-b.pem", None, "alice", later, None);
    assert_eq!(probe(&base, &old).await?, (200, String::new()));
    assert_eq!(probe(&base, &new).await?, (401, "bad_signature".into()));

    // Rotated: the file now holds the new public key.
    let tmp = db.dir().join("gateway.pub.pem.tmp");
    std::fs::copy(key("ed-b.pub.pem"), &tmp)?;
    std::fs::rename(&tmp, &path)?;
    until_probe(&base, &new, (200, "")).await?;
    assert_eq!(probe(&base, &old).await?, (401, "bad_signature".into()));

    // Garbage, then no file: the key read last stays.
    std::fs::write(&path, "-----BEGIN PUBLIC")?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    std::fs::remove_file(&path)?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    Ok(())
}

/// `sub` of a verified token, or the refusal's code.
fn verified(keys: &Keys, token: &str) -> Result<String, String> {
    keys.verify(Some(&format!("Bearer {token}")))
        .map(|p| p.0)
        .map_err(|e| match e {
            outpost_gateway::GatewayError::Unauthorized { code, .. } => code.to_string(),
            other => other.to_string(),
        })
}

#[test]
fn elliptic_curve_pem_keys_verify_with_their_curves_algorithm() -> anyhow::Result<()> {
    let load = |public: &str| {
        let path = key(public);
        Keys::load(&outpost_gateway::auth::KeySources {
            public_keys: vec![path.as_path()],
            ..Default::default()
        })
    };
    let p256 = load("ec256-a.pub.pem").map_err(anyhow::Error::msg)?;
    let p384 = load("ec384-a.pub.pem").map_err(anyhow::Error::msg)?;
    assert_eq!(p256.algorithms(), "ES256");
    assert_eq!(p384.algorithms(), "ES384");

    // `token create --key` signs with the private halves, each with its
    // curve's algorithm, and each verifies against its public key only.
    let sign = |private: &str| {
        Keys::signing_pem(&key(private), None)
            .and_then(|k| k.create("alice", Duration::from_secs(600), None))
    };
    let t256 = sign("ec256-a.pem").map_err(anyhow::Error::msg)?;
    let t384 = sign("ec384-a.pem").map_err(anyhow::Error::msg)?;
    assert_eq!(verified(&p256, &t256), Ok("alice".into()));
    assert_eq!(verified(&p384, &t384), Ok("alice".into()));
    assert_eq!(verified(&p256, &t384), Err("bad_algorithm".into()));
    assert_eq!(verified(&p384, &t256), Err("bad_algorithm".into()));
    // An ES256 token whose payload was swapped for another (mallory's)
    // keeps its header and signature: refused as a bad signature.
    let mut parts: Vec<&str> = t256.split('.').collect();
    let other = signed("ed-a.pem", None, "mallory", now() + 600, None);
    let other_payload = other.split('.').nth(1).unwrap_or_default().to_string();
    parts[1] = &other_payload;
    assert_eq!(
        verified(&p256, &parts.join(".")),
        Err("bad_signature".into())
    );

    // Curves jsonwebtoken cannot verify are refused at start, by name.
    let e = load("ec521-a.pub.pem").err().unwrap_or_default();
    assert!(
        e.contains("ec521-a.pub.pem") && e.contains("P-256 or P-384"),
        "{e}"
    );
    let e = Keys::signing_pem(&key("ec521-a.pem"), None)
        .err()
        .unwrap_or_default();
    assert!(e.contains("P-256 or P-384"), "{e}");
    // SEC1 private keys get the conversion to PKCS#8.
    let e = Keys::signing_pem(&key("ec256-a.sec1.pem"), None)
        .err()
        .unwrap_or_default();
    assert!(e.contains("openssl pkcs8 -topk8"), "{e}");
    Ok(())
}

/// 48 bytes of `c`.
fn secret_of(c: char) -> String {
    std::iter::repeat_n(c, 48).collect()
}

#[tokio::test]
async fn a_secret_file_is_read_again_new_secret_first_old_kept_until_removed() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let (_client, _) = server(&db, BLOG).await?;
    let path = db.dir().join("gateway.secrets");
    let (a, b) = (secret_of('a'), secret_of('b'));
    std::fs::write(&path, format!("# the gateway's HS256 secrets\n{a}\n"))?;
    let gw = GatewayProcess::start(
        &db,
        0,
        &[
            ("OUTPOST_GATEWAY_SECRET", ""),
            ("OUTPOST_GATEWAY_SECRET_FILE", &path.display().to_string()),
            ("OUTPOST_GATEWAY_JWKS_REFRESH", "200"),
        ],
    )?;
    let base = gw.url();
    let token = |secret: &str| {
        Keys::hs256(secret, None)
            .and_then(|k| k.create("alice", Duration::from_secs(600), None))
            .map_err(anyhow::Error::msg)
    };
    let (old, new) = (token(&a)?, token(&b)?);
    assert_eq!(probe(&base, &old).await?, (200, String::new()));
    assert_eq!(probe(&base, &new).await?, (401, "bad_signature".into()));

    // Rotation, step 1: the new secret first, the old kept below it.
    std::fs::write(&path, format!("{b}\n{a}\n"))?;
    until_probe(&base, &new, (200, "")).await?;
    assert_eq!(probe(&base, &old).await?, (200, String::new()));
    // `token create` with the file signs with its first secret.
    let keys = Keys::load(&outpost_gateway::auth::KeySources {
        secret_file: Some(&path),
        ..Default::default()
    })
    .map_err(anyhow::Error::msg)?;
    let created = keys
        .create("carol", Duration::from_secs(600), None)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        verified(
            &Keys::hs256(&b, None).map_err(anyhow::Error::msg)?,
            &created
        ),
        Ok("carol".into())
    );

    // Step 2: the old secret removed; its tokens are refused.
    std::fs::write(&path, format!("{b}\n"))?;
    until_probe(&base, &old, (401, "bad_signature")).await?;
    assert_eq!(probe(&base, &new).await?, (200, String::new()));

    // A short secret or an emptied file keeps the secrets read last.
    std::fs::write(&path, "too short\n")?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    std::fs::write(&path, "")?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(probe(&base, &new).await?, (200, String::new()));
    // At start, a bad file is refused naming the file and the line.
    std::fs::write(&path, format!("{b}\nshort\n"))?;
    let e = Keys::load(&outpost_gateway::auth::KeySources {
        secret_file: Some(&path),
        ..Default::default()
    })
    .err()
    .unwrap_or_default();
    assert!(
        e.contains("gateway.secrets") && e.contains("line 2") && e.contains("too short"),
        "{e}"
    );
    assert!(!e.contains(&b), "the message shows no secret: {e}");
    Ok(())
}
