//! `outpost sync` killed at named points and at random moments: after a
//! clean sync, replica and server agree, nothing is lost, nothing doubled.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_local::Replica;
use outpost_testkit::TestDb;

const SCHEMA: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, "userId" text NOT NULL REFERENCES "User"(id));
INSERT INTO "User" (id, email) SELECT 'u' || i, 'u' || i || '@x' FROM generate_series(1, 30000) i;
"#;

fn outpost(dir: &Path, url: &str, fault: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    cmd.current_dir(dir)
        .args(args)
        .env("DATABASE_URL", url)
        .env("LOCAL_DATABASE_URL", "file:./local.db")
        .env_remove("OUTPOST_FAULT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(f) = fault {
        cmd.env("OUTPOST_FAULT", format!("crash:{f}"));
    }
    cmd
}

fn sync_clean(dir: &Path, url: &str) {
    let out = outpost(dir, url, None, &["sync"]).output().expect("run");
    assert!(
        out.status.success(),
        "clean sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every replica row equals the server's, and the replica has nothing left to push.
async fn assert_agree(db: &TestDb, client: &outpost_remote::tokio_postgres::Client) {
    let replica = Replica::open(&db.dir().join("local.db")).expect("open replica");
    let schema = replica.schema().clone();
    assert!(
        replica.dirty_rows().expect("dirty").is_empty(),
        "changes left behind"
    );
    for t in &schema.tables {
        let local = replica.all_rows(&t.name).expect("local rows");
        let server = outpost_remote::feed::all_rows(client, &schema, &t.name)
            .await
            .expect("server rows");
        assert_eq!(local.len(), server.len(), "table {}", t.name);
        assert!(local == server, "table {} differs", t.name);
    }
}

fn local_write(db: &TestDb, sql: &str) {
    let conn = rusqlite::Connection::open(db.dir().join("local.db")).expect("open");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.execute_batch(sql).expect("local write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_each_named_point_then_converges() {
    let db = TestDb::new().await.expect("db");
    let client = db.client().await.expect("client");
    client.batch_execute(SCHEMA).await.expect("schema");
    let url = db.database_url();
    let setup = outpost(db.dir(), &url, None, &["setup"])
        .output()
        .expect("setup");
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );

    // Bootstrap killed half-way through the big table.
    let out = outpost(db.dir(), &url, Some("bootstrap-mid-table"), &["sync"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "the fault fired");
    sync_clean(db.dir(), &url);
    assert_agree(&db, &client).await;

    for (round, point) in ["push-before-send", "push-after-commit", "pull-before-apply"]
        .iter()
        .enumerate()
    {
        local_write(
            &db,
            &format!(
                r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p{round}a', 'local', 'u1'), ('p{round}b', 'local', 'u2');
                   UPDATE "User" SET name = 'local {round}' WHERE id = 'u3';
                   DELETE FROM "User" WHERE id = 'u{}';"#,
                100 + round
            ),
        );
        client
            .batch_execute(&format!(
                r#"UPDATE "User" SET name = 'server {round}' WHERE id = 'u4';
                   INSERT INTO "Post" (id, title, "userId") VALUES ('s{round}', 'server', 'u5');"#
            ))
            .await
            .expect("server write");
        let out = outpost(db.dir(), &url, Some(point), &["sync"])
            .output()
            .expect("run");
        assert!(!out.status.success(), "the fault at {point} fired");
        sync_clean(db.dir(), &url);
        // Pull until the (cluster-wide) horizon lets the server's write through.
        for _ in 0..100 {
            let n: i64 = client
                .query_one(r#"SELECT count(*) FROM "Post""#, &[])
                .await
                .expect("count")
                .get(0);
            let replica = Replica::open(&db.dir().join("local.db")).expect("open");
            if replica.all_rows("Post").expect("rows").len() as i64 == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            sync_clean(db.dir(), &url);
        }
        assert_agree(&db, &client).await;
        let posts: i64 = client
            .query_one(r#"SELECT count(*) FROM "Post" WHERE title = 'local'"#, &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(
            posts,
            2 * (round as i64 + 1),
            "local posts landed once each after {point}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_then_converges() {
    let db = TestDb::new().await.expect("db");
    let client = db.client().await.expect("client");
    client.batch_execute(SCHEMA).await.expect("schema");
    let url = db.database_url();
    let setup = outpost(db.dir(), &url, None, &["setup"])
        .output()
        .expect("setup");
    assert!(setup.status.success());
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        // xorshift: reproducible delays without a dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..8 {
        if round > 0 {
            local_write(
                &db,
                &format!(
                    r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
                       INSERT INTO "Post" (id, title, "userId") SELECT 'r{round}_' || i, 'local', 'u' || i FROM n;
                       UPDATE "User" SET name = 'n{round}' WHERE id IN ('u10', 'u11');"#
                ),
            );
            client
                .batch_execute(&format!(
                    r#"UPDATE "User" SET name = 'srv{round}' WHERE id = 'u20'"#
                ))
                .await
                .expect("server write");
        }
        let mut child = outpost(db.dir(), &url, None, &["sync"])
            .spawn()
            .expect("spawn");
        tokio::time::sleep(Duration::from_millis(next() % 400)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    sync_clean(db.dir(), &url);
    for _ in 0..100 {
        let replica = Replica::open(&db.dir().join("local.db")).expect("open");
        let n: i64 = client
            .query_one(r#"SELECT count(*) FROM "User" WHERE name = 'srv7'"#, &[])
            .await
            .expect("c")
            .get(0);
        let local_has = replica
            .all_rows("User")
            .expect("rows")
            .iter()
            .any(|r| r[2] == outpost_core::types::Value::Text("srv7".into()));
        if n == 1 && local_has {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        sync_clean(db.dir(), &url);
    }
    assert_agree(&db, &client).await;
    let posts: i64 = client
        .query_one(r#"SELECT count(*) FROM "Post""#, &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(posts, 7 * 300, "every local post landed exactly once");
}

/// `(status, count)` of the replica's `SyncLog`, read as any program would.
fn log_statuses(db: &TestDb) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(db.dir().join("local.db")).expect("open");
    let mut stmt = conn
        .prepare("SELECT status, count(*) FROM \"SyncLog\" GROUP BY status ORDER BY status")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_logged_interrupted_when_the_replica_is_next_opened() {
    let db = TestDb::new().await.expect("db");
    let client = db.client().await.expect("client");
    client
        .batch_execute(r#"CREATE TABLE "Note" (id text PRIMARY KEY, body text NOT NULL);"#)
        .await
        .expect("schema");
    let url = db.database_url();
    let setup = outpost(db.dir(), &url, None, &["setup"])
        .output()
        .expect("setup");
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    sync_clean(db.dir(), &url);
    local_write(
        &db,
        r#"INSERT INTO "Note" (id, body) VALUES ('n1', 'kept')"#,
    );
    let out = outpost(db.dir(), &url, Some("push-before-send"), &["sync"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "the fault fired");
    // The killed process left its row open.
    assert_eq!(
        log_statuses(&db),
        vec![("RUNNING".to_string(), 1), ("SUCCESS".to_string(), 1)]
    );
    // The next start (here `status`) closes it, and says so.
    let status = outpost(db.dir(), &url, None, &["status"])
        .stdout(Stdio::piped())
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("interrupted: its process stopped before it finished"),
        "{text}"
    );
    assert_eq!(
        log_statuses(&db),
        vec![("INTERRUPTED".to_string(), 1), ("SUCCESS".to_string(), 1)]
    );
    // Nothing was lost: the next sync pushes the note.
    sync_clean(db.dir(), &url);
    let n: i64 = client
        .query_one(r#"SELECT count(*) FROM "Note" WHERE body = 'kept'"#, &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(
        log_statuses(&db),
        vec![("INTERRUPTED".to_string(), 1), ("SUCCESS".to_string(), 2)]
    );
}
