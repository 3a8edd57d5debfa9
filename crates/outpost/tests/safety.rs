//! The binary keeps its secrets and speaks plainly: no password or admin
//! token in any output or log (at `trace` too), slow clients cut off,
//! `config`, `status`, `log`, `conflicts show` and `setup` messages in
//! words, and no panic when stdout closes early.

use std::io::{Read as _, Write as _};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use outpost_testkit::TestDb;
use outpost_testkit::proxy::Proxy;

mod common;
use common::outpost;

const SCHEMA: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text);
INSERT INTO "User" (id, email, name) VALUES ('u1', 'a@example.com', 'Ada');
"#;

const SECRET: &str = "S3cretPW!";
const TOKEN: &str = "tok-0123456789abcdef-secret";

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn db_name(db: &TestDb) -> String {
    db.database_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// One HTTP/1.1 request on a fresh connection; the whole answer.
fn http(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shows_and_logs_no_secret_at_trace_and_drops_slow_clients() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let proxy = Proxy::start(db.server_addr().expect("addr"))
        .await
        .expect("proxy");
    let url = format!(
        "host=127.0.0.1 port={} user=postgres password = {SECRET} dbname={}",
        proxy.addr.port(),
        db_name(&db)
    );
    let env = [("DATABASE_URL", url.as_str())];
    let o = outpost(db.dir(), &env, &["setup"]);
    assert!(o.status.success(), "{:?}", text(&o));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .current_dir(db.dir())
        .args(["serve", "--port", &port.to_string()])
        .env("DATABASE_URL", &url)
        .env("OUTPOST_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let get = |path: &str| {
        http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{bearer}Connection: close\r\n\r\n"),
        )
    };
    let mut shown = vec![get("/api/database/status")];
    shown.push(http(
        port,
        &format!("GET /admin/database-sync?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    ));
    // The line is cut: the sync fails and its error names the server.
    proxy.cut();
    // A connection the node opened while the cut was under way can close
    // after its login ("connection closed", no server to name); the next
    // run meets the cut line itself.
    let mut sync = String::new();
    for _ in 0..3 {
        sync = http(
            port,
            &format!(
                "POST /api/database/status HTTP/1.1\r\nHost: 127.0.0.1\r\n{bearer}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            ),
        );
        if sync.contains("password = ***") {
            break;
        }
    }
    assert!(sync.contains("\"success\":false"), "{sync}");
    assert!(sync.contains("password = ***"), "{sync}");
    shown.push(sync);
    for path in [
        "/api/database/log",
        "/api/database/models",
        "/admin/database-sync",
        "/metrics",
    ] {
        shown.push(get(path));
    }
    for answer in &shown {
        assert!(
            !answer.contains(SECRET),
            "an answer shows the password: {answer}"
        );
    }

    // A client that sends half a request head is cut off, not kept.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /api/database/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "a trickling client is dropped within the header timeout; waited {waited:?}"
    );
    // So is an idle keep-alive connection.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "an idle connection is closed"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let log = log.join().expect("log reader");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging was on: {log}"
    );
    assert!(
        log.contains("/admin/database-sync"),
        "requests are logged: {log}"
    );
    assert!(!log.contains(SECRET), "the log shows the password");
    assert!(!log.contains(TOKEN), "the log shows the admin token");
}

#[test]
fn config_shows_neither_passwords_nor_nulls() {
    let dir = tempfile::tempdir().expect("dir");
    for url in [
        format!("host=h port=5432 user=u password = {SECRET} dbname=app"),
        format!("host=h PASSWORD={SECRET} user=u"),
        format!("host=h password='{SECRET} x' user=u"),
        format!("postgres://u:{}@h:5432/app", "S3cretPW%21"),
    ] {
        let o = outpost(dir.path(), &[("DATABASE_URL", url.as_str())], &["config"]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{url}: {err}");
        for shown in [&out, &err] {
            assert!(!shown.contains("S3cretPW"), "{url} shown as {shown}");
        }
        assert!(!out.contains("null"), "{out}");
        assert!(
            out.contains("OUTPOST_TABLES=(all tables with a primary key)"),
            "{out}"
        );
        assert!(out.contains("***"), "{out}");
    }
    // Strings outpost refuses: the error echoes them, masked.
    for bad in [
        format!("host=h password {SECRET} user=u"),
        format!("postgres://u:{}@h1:5432,h2:5433/app", "S3cretPW%21"),
    ] {
        let o = outpost(dir.path(), &[("DATABASE_URL", bad.as_str())], &["config"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}{err}");
        assert!(err.contains("DATABASE_URL="), "{err}");
        assert!(
            !err.contains("S3cretPW") && !out.contains("S3cretPW"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_messages_are_plain_words() {
    let db = TestDb::new().await.expect("test db");
    let client = db.client().await.expect("client");
    client.batch_execute(SCHEMA).await.expect("schema");
    let url = db.database_url();
    let env = [("DATABASE_URL", url.as_str())];
    assert!(outpost(db.dir(), &env, &["setup"]).status.success());
    assert!(outpost(db.dir(), &env, &["sync"]).status.success());

    let o = outpost(db.dir(), &env, &["status"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("mode: auto ("), "{out}");
    assert!(out.contains("server: online"), "{out}");
    assert!(out.contains("last successful sync: 20"), "{out}");
    for internal in ["Ready", "cursor", "Some(", "None"] {
        assert!(!out.contains(internal), "{internal:?} in {out}");
    }

    // An unknown model is an error, not an empty log.
    let o = outpost(db.dir(), &env, &["log", "--model", "Athor"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(err.contains("unknown model \"Athor\""), "{err}");
    assert!(err.contains("User"), "the models it has: {err}");

    // A conflict, shown without Rust's debug formatting.
    let replica = rusqlite::Connection::open(db.dir().join("local.db")).expect("replica");
    replica
        .execute(r#"UPDATE "User" SET name = 'Local' WHERE id = 'u1'"#, [])
        .expect("local edit");
    client
        .batch_execute(r#"UPDATE "User" SET name = 'Server' WHERE id = 'u1'"#)
        .await
        .expect("server edit");
    let _ = outpost(db.dir(), &env, &["sync"]);
    let o = outpost(db.dir(), &env, &["conflicts", "show", "User", "u1"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("(server version "), "{out}");
    assert!(!out.contains("Some("), "{out}");

    // stdout closed before the command writes: no panic.
    let script = format!(
        "{{ sleep 0.5; exec '{}' status; }} | true",
        env!("CARGO_BIN_EXE_outpost")
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(db.dir())
        .env("DATABASE_URL", &url)
        .output()
        .expect("sh");
    let (_, err) = text(&o);
    assert!(!err.contains("panicked"), "{err}");

    // A setup error says what failed.
    let fresh = tempfile::tempdir().expect("dir");
    let missing = url.replace(&db_name(&db), "no_such_database_here");
    let o = outpost(
        fresh.path(),
        &[("DATABASE_URL", missing.as_str())],
        &["setup"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no_such_database_here"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!err.contains("has never been set up"), "{err}");
    assert!(err.contains("refused the login"), "{err}");

    // A login the server refuses (here an unknown role; a wrong password
    // is the same class of error) says so, not "cannot reach".
    let stranger = url.replace("postgres@", "no_such_role_here@");
    let o = outpost(db.dir(), &[("DATABASE_URL", stranger.as_str())], &["sync"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("refused the login"), "{err}");
    assert!(err.contains("no_such_role_here"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}
