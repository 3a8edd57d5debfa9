//! Hostile configuration and replica files, black-box through the binary:
//! each is answered with a clear error (exit 2 for configuration, 1 for a
//! replica that cannot be used) and changes nothing, neither the replica
//! file nor the server.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use outpost_testkit::TestDb;

mod common;
use common::outpost;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SCHEMA: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, "userId" text NOT NULL REFERENCES "User"(id));
INSERT INTO "User" VALUES ('u1', 'a@example.com');
INSERT INTO "Post" VALUES ('p1', 'first', 'u1');
"#;

/// Whether the server has outpost's tracking schema.
async fn tracking_installed(db: &TestDb) -> bool {
    db.client()
        .await
        .expect("client")
        .query_one(
            "SELECT count(*) > 0 FROM pg_namespace WHERE nspname = 'outpost'",
            &[],
        )
        .await
        .expect("query")
        .get(0)
}

#[tokio::test]
async fn bad_dotenv_and_flag_values_are_refused_before_anything_is_done() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let url = db.database_url();
    let dir = db.dir();
    let cases: &[(&str, &str)] = &[
        (
            "DATABASE_URL=mysql://root:hunter2@db/app\n",
            "DATABASE_URL=",
        ),
        (
            "DATABASE_URL=postgres://u:hunter2@[::1/x\n",
            "DATABASE_URL=",
        ),
        (
            "DATABASE_URL={url}?sslmode=sometimes\n",
            "sslmode=\"sometimes\" is not one of",
        ),
        (
            "DATABASE_URL={url}?sslcert=/c.pem\n",
            "sslcert is not supported",
        ),
        (
            "DATABASE_URL={url}\nLOCAL_DATABASE_SYNC_INTERVAL=soon\n",
            "LOCAL_DATABASE_SYNC_INTERVAL=\"soon\" is invalid",
        ),
        (
            "DATABASE_URL={url}\nLOCAL_DATABASE_SYNC_INTERVAL=1e3\n",
            "LOCAL_DATABASE_SYNC_INTERVAL=\"1e3\"",
        ),
        (
            "DATABASE_URL={url}\nLOCAL_DATABASE_SYNC_INTERVAL=99999999999999999999999\n",
            "LOCAL_DATABASE_SYNC_INTERVAL=",
        ),
        (
            "DATABASE_URL={url}\nENABLE_OFFLINE_MODE=perhaps\n",
            "ENABLE_OFFLINE_MODE=\"perhaps\"",
        ),
        (
            "DATABASE_URL={url}\nENABLE_LOCAL_DATABASE=2\n",
            "ENABLE_LOCAL_DATABASE=\"2\"",
        ),
        (
            "DATABASE_URL={url}\nLOCAL_DATABASE_URL=postgres://h/db\n",
            "LOCAL_DATABASE_URL=",
        ),
        (
            "DATABASE_URL={url}\nLOCAL_DATABASE_URL=file::memory:\n",
            "LOCAL_DATABASE_URL=",
        ),
        ("DATABASE_URL={url}\nthis line is not a pair\n", ".env"),
        ("DATABASE_URL='{url}\n", ".env"),
    ];
    for (env_file, expected) in cases {
        let env_file = env_file.replace("{url}", &url);
        std::fs::write(dir.join(".env"), &env_file).expect("write .env");
        let o = outpost(dir, &[], &["setup"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{env_file:?}: {err}");
        assert!(err.contains(expected), "{env_file:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            !dir.join("local.db").exists(),
            "{env_file:?} created the replica"
        );
    }
    std::fs::remove_file(dir.join(".env")).expect("rm .env");

    // Flags: bad values for outpost's variables, and clap's own checks.
    let db_flag = ["--database-url", url.as_str()];
    let flag_cases: &[(&[&str], &str)] = &[
        (
            &["setup", "--sync-interval", "ten"],
            "LOCAL_DATABASE_SYNC_INTERVAL=\"ten\"",
        ),
        (
            &["setup", "--sync-interval=-5"],
            "LOCAL_DATABASE_SYNC_INTERVAL=\"-5\"",
        ),
        (
            &["setup", "--offline-mode", "yep"],
            "ENABLE_OFFLINE_MODE=\"yep\"",
        ),
        (&["setup", "--local-database", ""], "ENABLE_LOCAL_DATABASE"),
        (
            &["setup", "--local-database-url", "mysql://x/y"],
            "LOCAL_DATABASE_URL=",
        ),
        (&["setup", "--tables", ",,"], "OUTPOST_TABLES"),
        (
            &["setup", "--env-file", "/nonexistent/.env"],
            "/nonexistent/.env",
        ),
        (&["sync", "--direction", "SIDEWAYS"], "SIDEWAYS"),
        (&["serve", "--port", "70000"], "70000"),
        (&["log", "--limit", "many"], "many"),
        (&["sync", "--policy", "Post=coin-flip"], "coin-flip"),
        (&["sync", "--policy", "nonsense"], "nonsense"),
    ];
    for (args, expected) in flag_cases {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&db_flag);
        let o = outpost(dir, &[], &all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !dir.join("local.db").exists(),
            "{args:?} created the replica"
        );
    }
    assert!(!tracking_installed(&db).await, "nothing reached the server");
}

/// A set-up and synced replica at `dir/local.db`; returns its env.
async fn replica(db: &TestDb) -> Vec<(&'static str, String)> {
    db.client()
        .await
        .expect("client")
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let env = vec![
        ("DATABASE_URL", db.database_url()),
        ("LOCAL_DATABASE_URL", "file:./local.db".to_string()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = outpost(db.dir(), &env_ref, &["setup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = outpost(db.dir(), &env_ref, &["sync"]);
    assert!(o.status.success(), "{}", stderr(&o));
    env
}

fn env_ref<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The replica's rows and metadata, to compare before and after.
fn contents(path: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
    let mut out = String::new();
    for table in [
        "User",
        "Post",
        "_outpost_meta",
        "_outpost_rows",
        "_outpost_changes",
        "_outpost_cursor",
        "SyncLog",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1"))
            .expect("prepare");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = Vec::new();
                for i in 0..n {
                    line.push(format!("{:?}", r.get_ref(i)?));
                }
                Ok(line.join("|"))
            })
            .expect("query");
        for row in rows {
            out.push_str(&format!("{table}: {}\n", row.expect("row")));
        }
    }
    out
}

async fn server_rows(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .expect("client")
        .query(
            "SELECT format('%s %s %s', id, title, \"userId\") FROM \"Post\" ORDER BY id",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_replica_file_is_created_owner_only() {
    let db = TestDb::new().await.expect("test db");
    let _env = replica(&db).await;
    let mode = std::fs::metadata(db.dir().join("local.db"))
        .expect("replica")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[tokio::test]
async fn a_corrupt_replica_is_refused_and_left_as_it_is() {
    let db = TestDb::new().await.expect("test db");
    let env = replica(&db).await;
    let path = db.dir().join("local.db");
    // Random bytes where the replica was.
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for f in ["local.db-wal", "local.db-shm"] {
        let _ = std::fs::remove_file(db.dir().join(f));
    }
    std::fs::write(&path, &garbage).expect("corrupt");
    let before = server_rows(&db).await;
    for args in [
        &["status"][..],
        &["sync"],
        &["setup"],
        &["log"],
        &["conflicts", "list"],
    ] {
        let o = outpost(db.dir(), &env_ref(&env), args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("local.db"), "{args:?} names the file: {err}");
        assert!(
            err.contains("not an SQLite database") || err.contains("not a database"),
            "{args:?}: {err}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            garbage,
            "{args:?} changed the file"
        );
    }
    assert_eq!(server_rows(&db).await, before);
}

#[tokio::test]
async fn a_read_only_replica_is_refused_even_for_root() {
    let db = TestDb::new().await.expect("test db");
    let env = replica(&db).await;
    let path = db.dir().join("local.db");
    let before = contents(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    let bytes = std::fs::read(&path).expect("read");
    for args in [&["status"][..], &["sync"], &["setup"]] {
        let o = outpost(db.dir(), &env_ref(&env), args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("read-only"), "{args:?}: {err}");
        assert!(err.contains("local.db"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "{args:?} wrote");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(contents(&path), before);
}

#[tokio::test]
async fn a_replica_locked_by_another_process_is_reported_and_unchanged() {
    let db = TestDb::new().await.expect("test db");
    let env = replica(&db).await;
    let path = db.dir().join("local.db");
    // Another writer: a local change made inside a write transaction that
    // stays open while outpost runs.
    let holder = rusqlite::Connection::open(&path).expect("open");
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE \"Post\" SET title = 'held' WHERE id = 'p1';")
        .expect("hold the write lock");
    let before_server = server_rows(&db).await;
    for args in [&["status"][..], &["sync"]] {
        let started = Instant::now();
        let o = outpost(db.dir(), &env_ref(&env), args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("locked"), "{args:?}: {err}");
        assert!(err.contains("another"), "{args:?} says who: {err}");
        assert!(started.elapsed() < Duration::from_secs(30), "bounded wait");
    }
    assert_eq!(server_rows(&db).await, before_server);
    // The holder's transaction is intact and still its own to commit.
    holder.execute_batch("ROLLBACK").expect("rollback");
    let title: String = holder
        .query_row("SELECT title FROM \"Post\" WHERE id = 'p1'", [], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(title, "first");
    drop(holder);
    let o = outpost(db.dir(), &env_ref(&env), &["status"]);
    assert!(o.status.success(), "usable once released: {}", stderr(&o));
}

#[tokio::test]
async fn a_replica_from_a_newer_outpost_is_refused_and_unchanged() {
    let db = TestDb::new().await.expect("test db");
    let env = replica(&db).await;
    let path = db.dir().join("local.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute(
            "UPDATE \"_outpost_meta\" SET value = '99' WHERE key = 'meta_version'",
            [],
        )
        .expect("newer version");
    }
    let before = contents(&path);
    let before_server = server_rows(&db).await;
    for args in [&["status"][..], &["sync"], &["setup"], &["log"]] {
        let o = outpost(db.dir(), &env_ref(&env), args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("metadata version 99"), "{args:?}: {err}");
        assert!(err.contains("upgrade outpost"), "{args:?}: {err}");
        assert_eq!(contents(&path), before, "{args:?} changed the replica");
    }
    assert_eq!(server_rows(&db).await, before_server);
}
