//! `outpost verify` and `outpost resync`, black-box, and every command's
//! behaviour on a closed stdout (`outpost status | head -3`).

use std::io::Read as _;
use std::process::{Command, Output, Stdio};

use outpost_testkit::TestDb;

mod common;
use common::{VARS, outpost};

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const SCHEMA: &str = r#"
CREATE TABLE "Item" (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2));
INSERT INTO "Item" SELECT i, 'item ' || i, i * 2 FROM generate_series(1, 120) i;
CREATE TABLE "Tag" (id text PRIMARY KEY, label text);
INSERT INTO "Tag" VALUES ('t1', 'one');
"#;

#[tokio::test]
async fn verify_prints_both_values_and_resync_repairs_keeping_a_pending_edit() {
    let db = TestDb::new().await.expect("test db");
    let client = db.client().await.expect("client");
    client.batch_execute(SCHEMA).await.expect("schema");
    let url = db.database_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LOCAL_DATABASE_URL", "file:./local.db"),
    ];
    let ok = |o: &Output| {
        let (out, err) = text(o);
        assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
        out
    };
    ok(&outpost(db.dir(), &env, &["setup"]));
    ok(&outpost(db.dir(), &env, &["sync"]));
    let out = ok(&outpost(db.dir(), &env, &["verify"]));
    assert!(
        out.contains("Item: 120 local rows, 120 server rows, 0 differing"),
        "{out}"
    );
    assert!(out.contains("the replica matches the server"), "{out}");

    // A server row changed with the capture bypassed; a pending local edit
    // of another row (written by another program: captured).
    client
        .batch_execute(
            r#"BEGIN; SET LOCAL session_replication_role = replica;
               UPDATE "Item" SET name = 'changed quietly' WHERE id = 42; COMMIT;"#,
        )
        .await
        .expect("bypass");
    let conn = rusqlite::Connection::open(db.dir().join("local.db")).expect("open replica");
    conn.execute(r#"UPDATE "Item" SET name = 'mine' WHERE id = 7"#, [])
        .expect("local edit");
    drop(conn);

    let run = outpost(db.dir(), &env, &["verify", "--model", "Item"]);
    let (out, err) = text(&run);
    assert_eq!(run.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(out.contains(r#"differs {"id":42} (name)"#), "{out}");
    assert!(out.contains(r#""name":"item 42""#), "{out}");
    assert!(out.contains(r#""name":"changed quietly""#), "{out}");
    assert!(out.contains(r#"local change {"id":7} PENDING"#), "{out}");
    assert!(!out.contains("Tag:"), "only the model asked for: {out}");
    assert!(err.contains("1 rows differ"), "{err}");

    let json = outpost(db.dir(), &env, &["verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(report["differences"], 1);
    assert_eq!(
        report["models"][0]["differences"][0]["server"]["name"],
        "changed quietly"
    );
    assert_eq!(
        report["models"][0]["differences"][0]["local"]["name"],
        "item 42"
    );

    ok(&outpost(db.dir(), &env, &["resync", "--model", "Item"]));
    let out = ok(&outpost(db.dir(), &env, &["verify"]));
    assert!(
        out.contains("Item: 120 local rows, 120 server rows, 0 differing, 1 with local changes"),
        "{out}"
    );
    let conn = rusqlite::Connection::open(db.dir().join("local.db")).expect("open replica");
    let kept: String = conn
        .query_row(r#"SELECT name FROM "Item" WHERE id = 7"#, [], |r| r.get(0))
        .expect("row 7");
    assert_eq!(kept, "mine");

    // A bad model name is a clear error, exit 1, nothing done.
    let run = outpost(db.dir(), &env, &["resync", "--model", "Nope"]);
    let (_, err) = text(&run);
    assert_eq!(run.status.code(), Some(1));
    assert!(err.contains("unknown model \"Nope\""), "{err}");
}

/// Runs `outpost args` with its stdout a pipe whose reader is gone before
/// anything is written, as `outpost status | head -0` would leave it.
fn closed_stdout(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn outpost");
    drop(child.stdout.take());
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).expect("stderr");
    }
    let status = child.wait().expect("wait");
    (status.code(), err)
}

#[tokio::test]
async fn no_command_panics_on_a_closed_stdout() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let url = db.database_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LOCAL_DATABASE_URL", "file:./local.db"),
    ];
    for args in [
        &["setup"][..],
        &["sync"],
        &["status"],
        &["status", "--json"],
        &["config"],
        &["log"],
        &["conflicts", "list"],
        &["verify"],
        &["resync", "--model", "Tag"],
        &["server", "status"],
        &["generate", "typescript"],
        &["--help"],
    ] {
        let (code, err) = closed_stdout(db.dir(), &env, args);
        assert!(!err.contains("panicked"), "outpost {args:?}: {err}");
        assert_eq!(code, Some(0), "outpost {args:?} exits quietly: {err}");
    }
}
