//! `outpost demo`, black-box: the binary starts a throwaway PostgreSQL, seeds
//! it, serves the page and the API, and on SIGTERM stops the server and
//! removes the cluster's directory. Also: the message when PostgreSQL's
//! binaries are missing, and the demo against a given `DATABASE_URL`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outpost_testkit::TestDb;

mod common;
use common::VARS;

fn demo_command(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    cmd.current_dir(dir).args(["demo", "--port", "0"]);
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// Every line the child prints, stdout and stderr, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    rx
}

/// Collects lines until one contains `needle`; panics with all of them after
/// `limit`.
fn wait_for(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => panic!(
                "no line with {needle:?}; output so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// A JSON request as the application (or the page's script) sends it;
/// the status code and the JSON answer.
fn http_json(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, json_body(&out))
}

fn json_body(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).expect("body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// `http://127.0.0.1:PORT/admin/database-sync` → `127.0.0.1:PORT`.
fn addr_of(url_line: &str) -> String {
    let start = url_line.find("http://").expect("url") + "http://".len();
    let rest = &url_line[start..];
    rest[..rest.find('/').expect("path")].to_string()
}

/// Alive means present in /proc and not a zombie (a container's init may not
/// reap the orphaned postmaster at once).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn demo_serves_a_seeded_throwaway_cluster_and_removes_it_on_sigterm() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut child = demo_command(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn outpost demo");
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let dir_line = wait_for(&rx, &mut seen, "starting a throwaway PostgreSQL in ");
    let dir = PathBuf::from(
        dir_line
            .rsplit("starting a throwaway PostgreSQL in ")
            .next()
            .expect("dir")
            .trim(),
    );
    let pid_line = wait_for(&rx, &mut seen, "(pid ");
    let pid: u32 = pid_line
        .rsplit("(pid ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("pid in {pid_line:?}"));
    let url_line = wait_for(&rx, &mut seen, "/admin/database-sync");
    assert!(url_line.contains("http://127.0.0.1:"), "{url_line}");
    let addr = addr_of(&url_line);
    // The demo names its database, so the quick start's server-side edit
    // can be made; the connection string it prints works.
    let db_line = wait_for(&rx, &mut seen, "Server database (DATABASE_URL): ");
    let printed = db_line
        .rsplit("Server database (DATABASE_URL): ")
        .next()
        .expect("url")
        .trim()
        .to_string();
    assert!(printed.starts_with("postgres"), "{db_line}");
    let psql_line = wait_for(&rx, &mut seen, "Try a server-side edit: psql ");
    assert!(psql_line.contains(&printed), "{psql_line}");
    assert!(psql_line.contains(r#"UPDATE \"Post\""#), "{psql_line}");
    assert!(dir.join("data").is_dir(), "the cluster lives in {dir:?}");
    assert!(process_alive(pid), "postgres runs");

    // The node comes online against the throwaway server and its first
    // sync copies the seeded rows.
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        status = json_body(&http_get(&addr, "/api/database/status"));
        if status["isOnline"] == true && status["lastSyncAt"].is_string() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status["isOnline"], true, "{status}");
    assert_eq!(status["remoteDbConnected"], true, "{status}");
    let page = http_get(&addr, "/admin/database-sync");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let models = json_body(&http_get(&addr, "/api/database/models"));
    let text = models.to_string();
    assert!(
        text.contains("\"User\"") && text.contains("\"Post\""),
        "{text}"
    );

    // The quick start, step by step: local mode, a create without an id,
    // an edit, the same field edited on the server through the printed
    // connection string, a sync that finds the conflict, resolve, sync.
    let (code, mode) = http_json(&addr, "PUT", "/api/database/mode", r#"{"mode": "local"}"#);
    assert_eq!(
        (code, mode["mode"].as_str()),
        (200, Some("local")),
        "{mode}"
    );
    let (code, created) = http_json(
        &addr,
        "POST",
        "/api/models/Post/create",
        r#"{"data": {"title": "Written offline", "userId": "u2"}}"#,
    );
    assert_eq!(code, 200, "create without an id in local mode: {created}");
    assert!(
        created["id"].as_str().is_some_and(|id| id.len() == 36),
        "{created}"
    );
    assert!(created["createdAt"].is_string(), "{created}");
    let (code, edited_locally) = http_json(
        &addr,
        "POST",
        "/api/models/Post/update",
        r#"{"where": {"id": "p1"}, "data": {"title": "Edited locally"}}"#,
    );
    assert_eq!(code, 200, "{edited_locally}");
    let edited = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let (client, conn) = outpost_remote::tokio_postgres::connect(
                &printed,
                outpost_remote::tokio_postgres::NoTls,
            )
            .await?;
            tokio::spawn(conn);
            client
                .execute(
                    r#"UPDATE "Post" SET title = 'Edited on the server' WHERE id = 'p1'"#,
                    &[],
                )
                .await
        })
        .expect("the printed connection string works");
    assert_eq!(edited, 1, "the psql line's edit finds its row");
    let (code, report) = http_json(&addr, "POST", "/api/database/status", "{}");
    assert_eq!(code, 200, "{report}");
    let mut conflicts = serde_json::Value::Null;
    for _ in 0..50 {
        conflicts = json_body(&http_get(&addr, "/api/database/conflicts"));
        if conflicts.to_string().contains("\"p1\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        conflicts.to_string().contains("\"p1\""),
        "p1 in conflict: {conflicts} after {report}"
    );
    let (code, resolved) = http_json(
        &addr,
        "POST",
        "/api/database/conflicts/Post/p1/resolve",
        r#"{"keep": "local"}"#,
    );
    assert_eq!(code, 200, "{resolved}");
    let (code, report) = http_json(&addr, "POST", "/api/database/status", "{}");
    assert_eq!(
        (code, report["success"].as_bool()),
        (200, Some(true)),
        "{report}"
    );
    let on_server = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let (client, conn) = outpost_remote::tokio_postgres::connect(
                &printed,
                outpost_remote::tokio_postgres::NoTls,
            )
            .await?;
            tokio::spawn(conn);
            let title: String = client
                .query_one(r#"SELECT title FROM "Post" WHERE id = 'p1'"#, &[])
                .await?
                .get(0);
            let offline: i64 = client
                .query_one(
                    r#"SELECT count(*) FROM "Post" WHERE title = 'Written offline'"#,
                    &[],
                )
                .await?
                .get(0);
            Ok::<_, outpost_remote::tokio_postgres::Error>((title, offline))
        })
        .expect("server");
    assert_eq!(on_server, ("Edited locally".to_string(), 1));

    sigterm(&child);
    let exit = child.wait().expect("wait");
    // Drain what is left for the message below.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(line);
    }
    assert!(exit.success(), "{exit:?}\n{}", seen.join("\n"));
    assert!(!dir.exists(), "{dir:?} removed\n{}", seen.join("\n"));
    assert!(!process_alive(pid), "postgres {pid} stopped");
    assert!(
        seen.iter().any(|l| l.contains("PostgreSQL stopped")),
        "{}",
        seen.join("\n")
    );
}

#[test]
fn demo_without_postgresql_binaries_names_the_package() {
    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(cwd.path().join("tmp")).expect("tmp");
    let out = demo_command(cwd.path())
        .env("OUTPOST_PG_BINDIR", cwd.path().join("nowhere"))
        .env("TMPDIR", cwd.path().join("tmp"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("apt-get install postgresql"), "{err}");
    assert!(err.contains("initdb"), "{err}");
    // Nothing was created.
    let tmp = cwd.path().join("tmp");
    assert!(std::fs::read_dir(&tmp).expect("tmp").next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_database_url_creates_the_sample_only_where_absent() {
    let db = TestDb::new().await.expect("test db");
    let url = db.database_url();
    let run = |expect: &str| {
        let mut child = demo_command(db.dir())
            .env("DATABASE_URL", &url)
            .env("LOCAL_DATABASE_URL", "file:./demo.db")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let rx = lines(&mut child);
        let mut seen = Vec::new();
        wait_for(&rx, &mut seen, expect);
        let line = wait_for(&rx, &mut seen, "/admin/database-sync");
        let status = json_body(&http_get(&addr_of(&line), "/api/database/status"));
        assert!(status.get("isOnline").is_some(), "{status}");
        sigterm(&child);
        assert!(child.wait().expect("wait").success());
    };
    let client = db.client().await.expect("client");
    run("created and seeded the sample tables");
    let users: i64 = client
        .query_one("SELECT count(*) FROM \"User\"", &[])
        .await
        .expect("users")
        .get(0);
    assert_eq!(users, 3);
    client
        .batch_execute("DELETE FROM \"Post\" WHERE id = 'p4'")
        .await
        .expect("delete");
    // Second run: the tables exist and are left as they are.
    run("already has User/Post");
    let posts: i64 = client
        .query_one("SELECT count(*) FROM \"Post\"", &[])
        .await
        .expect("posts")
        .get(0);
    assert_eq!(posts, 3, "no reseeding");
    assert!(db.dir().join("demo.db").exists(), "the configured replica");
}
