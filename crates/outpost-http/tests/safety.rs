//! Browser safety, secrets and an honest status, through the router (no
//! socket) against a real PostgreSQL and replica: what a web page on
//! another origin cannot do, where a password must never appear, and what
//! the status says.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use outpost_core::sync::{Direction, Trigger};
use outpost_engine::{NodeOptions, Outpost, SyncOptions};
use outpost_http::{AppState, router};
use outpost_testkit::TestDb;
use outpost_testkit::proxy::Proxy;
use tower::ServiceExt as _;

mod common;
use common::{BLOG, fixture};

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `method uri` with the given headers and body, as a browser or a
/// script would.
async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Answer> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(b.body(Body::from(body.to_string()))?)
        .await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok(Answer {
        status,
        text: String::from_utf8(bytes.to_vec())?,
    })
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// Request headers, body, and the status it must get.
type Attempt<'a> = (&'a [(&'a str, &'a str)], &'a str, StatusCode);
const HOST: (&str, &str) = ("host", "127.0.0.1:3102");

/// The posts as the node's model service sees them (the node starts
/// offline without its monitor, so they live in the replica).
async fn posts(app: &Router) -> anyhow::Result<usize> {
    let a = send(
        app,
        "POST",
        "/api/models/Post/findMany",
        &[HOST, JSON],
        "{}",
    )
    .await?;
    anyhow::ensure!(a.status == StatusCode::OK, "findMany: {}", a.text);
    Ok(a.json().as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_and_non_json_writes_are_refused_before_any_work() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let create = r#"{"data": {"id": "p1", "title": "Keep me", "userId": "u0"}}"#;
    let a = send(
        &f.app,
        "POST",
        "/api/models/Post/create",
        &[HOST, JSON],
        create,
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let delete = "/api/models/Post/deleteMany";

    // What a page on another origin can send without a preflight.
    let refused: &[Attempt] = &[
        // fetch(…, {method: 'POST', mode: 'no-cors'}): no body, no type.
        (
            &[HOST, ("origin", "http://evil.example")],
            "",
            StatusCode::FORBIDDEN,
        ),
        // The same from curl, which sends no Origin: still no JSON type.
        (&[HOST], "", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            &[HOST, ("content-type", "text/plain")],
            "{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        // A JSON type from a foreign origin (a preflight it would fail).
        (
            &[HOST, JSON, ("origin", "http://evil.example")],
            "{}",
            StatusCode::FORBIDDEN,
        ),
        (
            &[HOST, JSON, ("origin", "null")],
            "{}",
            StatusCode::FORBIDDEN,
        ),
        // No Origin, but the browser says cross-site.
        (
            &[HOST, JSON, ("sec-fetch-site", "cross-site")],
            "{}",
            StatusCode::FORBIDDEN,
        ),
        // DNS rebinding: evil.example resolving to 127.0.0.1 is "same origin".
        (
            &[
                ("host", "evil.example:3102"),
                JSON,
                ("origin", "http://evil.example:3102"),
            ],
            "{}",
            StatusCode::FORBIDDEN,
        ),
    ];
    for (headers, body, status) in refused {
        let a = send(&f.app, "POST", delete, headers, body).await?;
        assert_eq!(a.status, *status, "{headers:?}: {}", a.text);
        let code = a.json()["error"]["code"].as_str().unwrap_or("").to_string();
        let want = if *status == StatusCode::FORBIDDEN {
            "forbidden_origin"
        } else {
            "unsupported_media_type"
        };
        assert_eq!(code, want, "{}", a.text);
        assert_eq!(posts(&f.app).await?, 1, "nothing deleted by {headers:?}");
    }
    // The JSON rule covers the API's own writes only: a method a path does
    // not serve still answers 405, an unknown path 404 (schemathesis'
    // unsupported_method check).
    for (method, path, status) in [
        ("PUT", "/metrics", StatusCode::METHOD_NOT_ALLOWED),
        (
            "PUT",
            "/api/database/conflicts",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/admin/database-sync",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("POST", "/api/nowhere", StatusCode::NOT_FOUND),
    ] {
        let a = send(&f.app, method, path, &[HOST], "").await?;
        assert_eq!(a.status, status, "{method} {path}: {}", a.text);
    }
    // A mode switch from a foreign page: refused, mode unchanged.
    let a = send(
        &f.app,
        "PUT",
        "/api/database/mode",
        &[HOST, JSON, ("origin", "http://evil.example")],
        r#"{"mode": "local"}"#,
    )
    .await?;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert_eq!(f.node.mode(), outpost_engine::Mode::Auto);
    // Reads from a foreign origin are refused too.
    let a = send(
        &f.app,
        "GET",
        "/api/database/status",
        &[HOST, ("origin", "http://evil.example")],
        "",
    )
    .await?;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);

    // A link to the page from elsewhere opens it (a navigation reads only).
    let a = send(
        &f.app,
        "GET",
        "/admin/database-sync",
        &[
            HOST,
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
        ],
        "",
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    // An origin listed in OUTPOST_CORS_ORIGINS may write.
    let listed = router(AppState {
        node: f.node.clone(),
        admin_token: None,
        cors_origins: vec!["http://localhost:5173".into()],
    });
    let a = send(
        &listed,
        "POST",
        "/api/models/Post/update",
        &[HOST, JSON, ("origin", "http://localhost:5173")],
        r#"{"where": {"id": "p1"}, "data": {"title": "From the app"}}"#,
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // The node's own origin (the page's scripts) may write, bodyless too.
    let a = send(
        &f.app,
        "POST",
        delete,
        &[HOST, JSON, ("origin", "http://127.0.0.1:3102")],
        "",
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["count"], 1, "{}", a.text);
    assert_eq!(posts(&f.app).await?, 0);
    f.node.shutdown().await;
    Ok(())
}

/// The password, in the libpq form with spaces around `=` that once leaked.
const SECRET: &str = "S3cretPW!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_appears_on_no_surface_after_a_connection_cut() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut client = db.client().await?;
    client.batch_execute(BLOG).await?;
    let schema =
        outpost_remote::introspect(&client, "public", None, &["_prisma_migrations".to_string()])
            .await?;
    outpost_remote::install(&mut client, &schema).await?;
    let proxy = Proxy::start(db.server_addr()?).await?;
    let name = db
        .database_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    // Trust authentication ignores the password, so the node works with it.
    let url = format!(
        "host=127.0.0.1 port={} user=postgres password = {SECRET} dbname={name}",
        proxy.addr.port()
    );
    let local = format!("file:{}", db.dir().join("node.db").display());
    let config = outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => None,
    })?;
    let node = Outpost::open_with(
        config,
        NodeOptions {
            monitor: false,
            ..NodeOptions::default()
        },
    )
    .await?;
    assert!(node.sync(Direction::Bidirectional).await?.success);
    let app = router(AppState {
        node: node.clone(),
        admin_token: None,
        cors_origins: Vec::new(),
    });
    proxy.cut();
    let a = send(&app, "POST", "/api/database/status", &[JSON], "{}").await?;
    assert_eq!(
        a.json()["success"],
        false,
        "the cut must fail the sync: {}",
        a.text
    );
    let errors = a.json()["errors"].to_string();
    assert!(
        errors.contains("password = ***"),
        "the server is named, masked: {errors}"
    );

    let mut shown = vec![("POST /api/database/status", a.text)];
    for uri in [
        "/api/database/status",
        "/api/database/log",
        "/api/database/models",
        "/admin/database-sync",
        "/metrics",
    ] {
        shown.push((uri, send(&app, "GET", uri, &[], "").await?.text));
    }
    let replica = replica_bytes(&db.dir().join("node.db"))?;
    shown.push(("the replica file", replica));
    for (surface, text) in &shown {
        assert!(
            !text.contains(SECRET),
            "{surface} shows the password: {text}"
        );
    }
    node.shutdown().await;
    Ok(())
}

/// The replica file's bytes (and its WAL's) as text: the SyncLog's errors
/// are stored there verbatim, so a password in them would be found here.
fn replica_bytes(path: &std::path::Path) -> anyhow::Result<String> {
    let mut all = std::fs::read(path)?;
    let wal = path.with_extension("db-wal");
    if let Ok(bytes) = std::fs::read(&wal) {
        all.extend(bytes);
    }
    Ok(String::from_utf8_lossy(&all).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_tells_the_time_of_the_answer_and_success_apart_from_attempts()
-> anyhow::Result<()> {
    let f = fixture(None).await?;
    let first = send(&f.app, "GET", "/api/database/status", &[], "")
        .await?
        .json();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = send(&f.app, "GET", "/api/database/status", &[], "")
        .await?
        .json();
    assert_ne!(
        first["timestamp"], second["timestamp"],
        "the time of each answer"
    );
    let success = second["lastSyncAt"].clone();
    assert!(success.is_string(), "{second}");
    assert_eq!(second["lastAttempt"]["status"], "SUCCESS", "{second}");
    assert_eq!(second["lastAttempt"]["at"], success, "{second}");

    // A failed attempt: the server's change log is gone for a moment.
    f.client
        .batch_execute("ALTER SCHEMA outpost RENAME TO outpost_away")
        .await?;
    let a = send(&f.app, "POST", "/api/database/status", &[JSON], "{}").await?;
    assert_eq!(a.json()["success"], false, "{}", a.text);
    let s = send(&f.app, "GET", "/api/database/status", &[], "")
        .await?
        .json();
    assert_eq!(s["lastSyncAt"], success, "a failure is not a sync: {s}");
    assert_eq!(s["lastAttempt"]["status"], "FAILED", "{s}");
    assert!(
        s["lastAttempt"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{s}"
    );
    let page = send(&f.app, "GET", "/admin/database-sync", &[], "")
        .await?
        .text;
    assert!(page.contains("Last successful sync"), "{page}");
    assert!(page.contains("Last attempt"), "{page}");
    assert!(
        page.contains("failed: "),
        "the attempt's error on its own line: {page}"
    );
    f.client
        .batch_execute("ALTER SCHEMA outpost_away RENAME TO outpost")
        .await?;
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_own_sync_result_stays_and_quiet_echo_pulls_are_not_logged() -> anyhow::Result<()>
{
    let f = fixture(None).await?;
    let create = r#"{"data": {"id": "p9", "title": "Mine", "userId": "u0"}}"#;
    send(
        &f.app,
        "PUT",
        "/api/database/mode",
        &[JSON],
        r#"{"mode": "local"}"#,
    )
    .await?;
    let a = send(&f.app, "POST", "/api/models/Post/create", &[JSON], create).await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = send(
        &f.app,
        "POST",
        "/api/database/status",
        &[JSON],
        r#"{"direction": "TO_SERVER"}"#,
    )
    .await?;
    assert_eq!(a.json()["success"], true, "{}", a.text);
    // The notification the push caused: a pull that moves nothing.
    let echo = f
        .node
        .sync_with(SyncOptions::new(Direction::FromServer, Trigger::Notify))
        .await?;
    assert!(echo.success);
    // Finished notification runs in the log: none (a retry of a held-back
    // pull may be running right now; it too is dropped when it moves nothing).
    let log = send(&f.app, "GET", "/api/database/log?limit=100", &[], "")
        .await?
        .json();
    let echoes: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["trigger"] == "notify" && e["status"] != "RUNNING")
        .collect();
    assert!(log["total"].as_i64().is_some_and(|t| t >= 4), "{log}");
    assert!(
        echoes.is_empty(),
        "empty notification pulls are not logged: {echoes:?}"
    );
    // An interval pull is logged, and does not hide the user's result.
    f.node
        .sync_with(SyncOptions::new(Direction::FromServer, Trigger::Interval))
        .await?;
    let models = send(&f.app, "GET", "/api/database/models", &[], "")
        .await?
        .json();
    let post = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["model"] == "Post"))
        .cloned()
        .unwrap_or_default();
    assert_ne!(
        post["lastSync"]["trigger"], "manual",
        "an automatic run came after: {post}"
    );
    assert_eq!(post["lastManualSync"]["direction"], "TO_SERVER", "{post}");
    assert_eq!(post["lastManualSync"]["recordsSucceeded"], 1, "{post}");
    let page = send(&f.app, "GET", "/admin/database-sync", &[], "")
        .await?
        .text;
    assert!(
        page.contains("SUCCESS TO_SERVER: 1 processed, 1 ok"),
        "{page}"
    );
    f.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_is_kept_across_restarts() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let a = send(
        &f.app,
        "PUT",
        "/api/database/mode",
        &[JSON],
        r#"{"mode": "local"}"#,
    )
    .await?;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    f.node.shutdown().await;
    let url = f._db.database_url();
    let local = format!("file:{}", f._db.dir().join("node.db").display());
    let config = outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => None,
    })?;
    drop(f.app);
    drop(f.node);
    let node = Outpost::open_with(
        config,
        NodeOptions {
            monitor: false,
            ..NodeOptions::default()
        },
    )
    .await?;
    assert_eq!(node.mode(), outpost_engine::Mode::Local);
    let app = router(AppState {
        node: node.clone(),
        admin_token: None,
        cors_origins: Vec::new(),
    });
    let s = send(&app, "GET", "/api/database/status", &[], "")
        .await?
        .json();
    assert_eq!(s["mode"], "local", "{s}");
    assert_eq!(s["usingLocalDatabase"], true, "{s}");
    let page = send(&app, "GET", "/admin/database-sync", &[], "")
        .await?
        .text;
    assert!(
        page.contains(r#"<span id="st-mode">local</span> (kept across restarts)"#),
        "{page}"
    );
    node.shutdown().await;
    Ok(())
}
