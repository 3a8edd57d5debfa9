//! `outpost gateway` and a node in gateway topology, black-box: a token
//! from `outpost gateway token create`, the gateway as its own process,
//! and `outpost setup`, `sync` and `config` on a node that has no
//! `DATABASE_URL`.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use outpost_testkit::TestDb;

mod common;
use common::{VARS, outpost};

const SECRET: &str = "binary-test-secret-0123456789-0123456789";

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The gateway process; killed (by its own id) when dropped.
struct GatewayChild(Child);

impl Drop for GatewayChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn token_create_prints_a_token_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("dir");
    let env = [("OUTPOST_GATEWAY_SECRET", SECRET)];
    let o = outpost(
        dir.path(),
        &env,
        &[
            "gateway",
            "token",
            "create",
            "--sub",
            "clinic-7",
            "--expires",
            "12h",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let token = out.trim();
    assert_eq!(token.split('.').count(), 3, "{out}");
    let keys = outpost_gateway::auth::Keys::hs256(SECRET, None).expect("keys");
    let p = keys
        .verify(Some(&format!("Bearer {token}")))
        .expect("verifies");
    assert_eq!(p.0, "clinic-7");

    let o = outpost(
        dir.path(),
        &env,
        &[
            "gateway",
            "token",
            "create",
            "--sub",
            "x",
            "--expires",
            "soon",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("not a duration"), "{}", text(&o).1);
    let o = outpost(
        dir.path(),
        &[],
        &[
            "gateway",
            "token",
            "create",
            "--sub",
            "x",
            "--expires",
            "1h",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("OUTPOST_GATEWAY_SECRET"),
        "{}",
        text(&o).1
    );
    let o = outpost(
        dir.path(),
        &[("OUTPOST_GATEWAY_SECRET", "short")],
        &[
            "gateway",
            "token",
            "create",
            "--sub",
            "x",
            "--expires",
            "1h",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("too short"), "{}", text(&o).1);

    // Signed with a private key (the gateway's fixtures), no secret
    // needed; the gateway verifies it with the public key.
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../outpost-gateway/tests/keys");
    let private = fixtures.join("ed-a.pem").display().to_string();
    let create = |key: &str| {
        outpost(
            dir.path(),
            &[],
            &[
                "gateway",
                "token",
                "create",
                "--sub",
                "clinic-7",
                "--expires",
                "1h",
                "--key",
                key,
                "--kid",
                "ed-a",
            ],
        )
    };
    let o = create(&private);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let public = fixtures.join("ed-a.pub.pem");
    let keys = outpost_gateway::auth::Keys::load(&outpost_gateway::auth::KeySources {
        public_keys: vec![public.as_path()],
        ..Default::default()
    })
    .expect("keys");
    let p = keys
        .verify(Some(&format!("Bearer {}", out.trim())))
        .expect("verifies");
    assert_eq!(p.0, "clinic-7");
    // A public key cannot sign: refused, naming the file.
    let o = create(&public.display().to_string());
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("ed-a.pub.pem") && text(&o).1.contains("not a private key"),
        "{}",
        text(&o).1
    );
}

#[tokio::test]
async fn a_node_sets_up_and_syncs_through_the_gateway_binary() {
    let db = TestDb::new().await.expect("test db");
    let client = db.client().await.expect("client");
    client
        .batch_execute(
            r#"CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL);
               INSERT INTO "User" VALUES ('u1', 'a@x'), ('u2', 'b@x');"#,
        )
        .await
        .expect("schema");
    let port = free_port();
    let url = db.database_url();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    for v in VARS {
        cmd.env_remove(v);
    }
    let gateway = cmd
        .current_dir(db.dir())
        .args(["gateway", "--port", &port.to_string()])
        .env("DATABASE_URL", &url)
        .env("OUTPOST_GATEWAY_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the gateway");
    let _gateway = GatewayChild(gateway);
    // Up when its port answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = outpost(
        db.dir(),
        &[("OUTPOST_GATEWAY_SECRET", SECRET)],
        &[
            "gateway",
            "token",
            "create",
            "--sub",
            "n1",
            "--expires",
            "1h",
        ],
    );
    let token = text(&o).0.trim().to_string();
    let gw = format!("http://127.0.0.1:{port}");
    let env = [
        ("OUTPOST_GATEWAY_URL", gw.as_str()),
        ("OUTPOST_GATEWAY_TOKEN", token.as_str()),
        ("LOCAL_DATABASE_URL", "file:./node.db"),
    ];
    let o = outpost(db.dir(), &env, &["setup"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("1 tables synced: User"), "{out}");

    let o = outpost(db.dir(), &env, &["sync", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["success"], true, "{out}");
    let replica = rusqlite::Connection::open(db.dir().join("node.db")).expect("replica");
    let users: i64 = replica
        .query_row(r#"SELECT count(*) FROM "User""#, [], |r| r.get(0))
        .expect("count");
    assert_eq!(
        users, 2,
        "the bootstrap through the gateway copied the rows"
    );

    // The node's API, served in gateway topology: online through the
    // gateway, the replica bootstrapped.
    let api_port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    for v in VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let serve = cmd
        .current_dir(db.dir())
        .args(["serve", "--port", &api_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the node");
    let _serve = GatewayChild(serve);
    let status_url = format!("http://127.0.0.1:{api_port}/api/database/status");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let got = reqwest::get(&status_url).await;
        if let Ok(r) = got
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["isOnline"] == true
        {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not come online through the gateway"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["mode"], "auto", "{status}");
    drop(_serve);

    let o = outpost(db.dir(), &env, &["config"]);
    let (out, _) = text(&o);
    assert!(out.contains(&gw), "{out}");
    assert!(!out.contains(&token), "the token is never shown: {out}");

    // Both topologies at once is refused, naming both.
    let both = [
        ("OUTPOST_GATEWAY_URL", gw.as_str()),
        ("OUTPOST_GATEWAY_TOKEN", token.as_str()),
        ("DATABASE_URL", url.as_str()),
    ];
    let o = outpost(db.dir(), &both, &["config"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("not both"), "{}", text(&o).1);
}
