//! The `outpost` binary, black-box: configuration layers, `setup`, and the
//! server tracking commands, against a real PostgreSQL and SQLite file.

use std::process::{Command, Output};

use outpost_testkit::TestDb;

mod common;
use common::outpost;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const PRISMA_SCHEMA: &str = r#"
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN');
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text, role "Role" NOT NULL DEFAULT 'USER',
  "createdAt" timestamptz NOT NULL DEFAULT now());
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, price numeric(12,2), tags text[] NOT NULL DEFAULT '{}',
  metadata jsonb, "userId" text NOT NULL REFERENCES "User"(id));
CREATE TABLE "_prisma_migrations" (id varchar(36) PRIMARY KEY, checksum text);
INSERT INTO "User" (id, email) VALUES ('u1', 'a@example.com');
"#;

#[tokio::test]
async fn setup_creates_the_replica_and_is_idempotent() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(PRISMA_SCHEMA)
        .await
        .expect("schema");
    let url = db.database_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LOCAL_DATABASE_URL", "file:./data/local.db"),
    ];

    let first = outpost(db.dir(), &env, &["setup"]);
    let (out, err) = text(&first);
    assert!(first.status.success(), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("2 tables synced: Post, User"), "{out}");
    assert!(db.dir().join("data/local.db").exists());

    let second = outpost(db.dir(), &env, &["setup", "--json"]);
    let (out, err) = text(&second);
    assert!(second.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["unchanged"], true, "{out}");
    assert_eq!(report["tables"], serde_json::json!(["Post", "User"]));

    // The server side was installed by setup.
    let status = outpost(db.dir(), &env, &["server", "status", "--json"]);
    let (out, _) = text(&status);
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(status["installedVersion"].is_number(), "{out}");

    // Local writes are captured in the file setup made.
    let conn = rusqlite::Connection::open(db.dir().join("data/local.db")).expect("open");
    conn.execute(
        r#"INSERT INTO "User" (id, email, role) VALUES ('u2', 'b@example.com', 'ADMIN')"#,
        [],
    )
    .expect("insert");
    let status = outpost(db.dir(), &env, &["status", "--json"]);
    let (out, _) = text(&status);
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["pending"], 1, "{out}");
    let created: String = conn
        .query_row(
            r#"SELECT "createdAt" FROM "User" WHERE id = 'u2'"#,
            [],
            |r| r.get(0),
        )
        .expect("default filled");
    assert_eq!(
        created.len(),
        "2025-05-29T13:15:00.000000Z".len(),
        "{created}"
    );
}

#[tokio::test]
async fn setup_offline_opens_an_existing_replica_and_refuses_a_new_one() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(PRISMA_SCHEMA)
        .await
        .expect("schema");
    let url = db.database_url();
    let ok = outpost(db.dir(), &[("DATABASE_URL", &url)], &["setup"]);
    assert!(ok.status.success(), "{:?}", text(&ok));

    // Port 9 on loopback: nothing listens there.
    let down = "postgres://postgres:topsecret@127.0.0.1:9/app";
    let offline = outpost(db.dir(), &[("DATABASE_URL", down)], &["setup"]);
    let (out, err) = text(&offline);
    assert!(offline.status.success(), "{out}{err}");
    assert!(out.contains("opened from its schema snapshot"), "{out}");
    assert!(!out.contains("topsecret") && !err.contains("topsecret"));

    let fresh = outpost(
        db.dir(),
        &[
            ("DATABASE_URL", down),
            ("LOCAL_DATABASE_URL", "file:./other.db"),
        ],
        &["setup"],
    );
    let (out, err) = text(&fresh);
    assert_eq!(fresh.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("cannot reach the server at postgres://postgres:***@127.0.0.1:9/app"),
        "{err}"
    );
    assert!(
        err.contains("a first setup reads the schema from the server"),
        "{err}"
    );
    assert!(!err.contains("topsecret"));
}

#[tokio::test]
async fn a_table_without_primary_key_is_refused_by_name() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute("CREATE TABLE ok (id int PRIMARY KEY); CREATE TABLE \"AuditLog\" (at timestamptz, what text);")
        .await
        .expect("schema");
    let url = db.database_url();
    let o = outpost(db.dir(), &[("DATABASE_URL", &url)], &["setup"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("AuditLog"), "{err}");
    assert!(!db.dir().join("local.db").exists(), "nothing written");
    // Excluding it lets setup go on.
    let o = outpost(
        db.dir(),
        &[
            ("DATABASE_URL", &url),
            ("OUTPOST_EXCLUDE_TABLES", "AuditLog"),
        ],
        &["setup"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
}

/// One `setup` run names every table and column it cannot replicate, and
/// the exclusion it prints lets the next run go on; the domains, `citext`,
/// `tsvector` and multi-dimensional arrays of the same schema are accepted.
#[tokio::test]
async fn setup_names_every_unreplicable_column_in_one_run() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS citext;
             CREATE DOMAIN year AS integer CHECK (VALUE > 1900);
             CREATE TYPE pair AS (a int, b int);
             CREATE TYPE floatrange AS RANGE (subtype = float8);
             CREATE TABLE film (id int PRIMARY KEY, made year, title citext, doc tsvector, grid int[][]);
             CREATE TABLE odd (id int PRIMARY KEY, p pair, r floatrange);
             CREATE TABLE log (at timestamptz, what text);",
        )
        .await
        .expect("schema");
    let url = db.database_url();
    let o = outpost(db.dir(), &[("DATABASE_URL", &url)], &["setup"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for needle in [
        "table \"log\" has no primary key",
        "table \"odd\", column \"p\": type pair cannot be replicated: pair is a composite type",
        "table \"odd\", column \"r\": type floatrange cannot be replicated",
        "OUTPOST_EXCLUDE_TABLES=log,odd",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
    assert!(!err.contains("film"), "{err}");
    assert!(!db.dir().join("local.db").exists(), "nothing written");
    let o = outpost(
        db.dir(),
        &[
            ("DATABASE_URL", &url),
            ("OUTPOST_EXCLUDE_TABLES", "log,odd"),
        ],
        &["setup"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn bad_configuration_names_the_variable_and_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = outpost(
        dir.path(),
        &[("LOCAL_DATABASE_SYNC_INTERVAL", "soon")],
        &["config"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("LOCAL_DATABASE_SYNC_INTERVAL=\"soon\" is invalid"),
        "{err}"
    );

    let o = outpost(
        dir.path(),
        &[("DATABASE_URL", "mysql://root:hunter2@db/app")],
        &["config"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("DATABASE_URL="), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let o = outpost(dir.path(), &[], &["setup", "--offline-mode", "perhaps"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("ENABLE_OFFLINE_MODE=\"perhaps\""), "{err}");
}

#[test]
fn dotenv_environment_and_flags_layer_in_that_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".env"),
        "# Local Database Configuration\nENABLE_LOCAL_DATABASE=true\nLOCAL_DATABASE_URL=file:./local.db\n\
LOCAL_DATABASE_SYNC_INTERVAL=300000 # 5 minutes in milliseconds\nENABLE_OFFLINE_MODE=true\n\
DATABASE_URL=postgres://app:pa55@db.internal:5432/app\n",
    )
    .expect("write .env");
    let show = |env: &[(&str, &str)], args: &[&str]| -> serde_json::Value {
        let mut all = vec!["config", "--json"];
        all.extend_from_slice(args);
        let o = outpost(dir.path(), env, &all);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(!out.contains("pa55"), "{out}");
        serde_json::from_str(&out).expect("json")
    };
    let from_file = show(&[], &[]);
    assert_eq!(from_file["LOCAL_DATABASE_SYNC_INTERVAL"], 300000);
    assert_eq!(
        from_file["DATABASE_URL"],
        "postgres://app:***@db.internal:5432/app"
    );
    let from_env = show(&[("LOCAL_DATABASE_SYNC_INTERVAL", "1000")], &[]);
    assert_eq!(from_env["LOCAL_DATABASE_SYNC_INTERVAL"], 1000);
    let from_flag = show(
        &[("LOCAL_DATABASE_SYNC_INTERVAL", "1000")],
        &["--sync-interval", "250", "--tables", "Post,User"],
    );
    assert_eq!(from_flag["LOCAL_DATABASE_SYNC_INTERVAL"], 250);
    assert_eq!(
        from_flag["OUTPOST_TABLES"],
        serde_json::json!(["Post", "User"])
    );
}

#[tokio::test]
async fn server_install_and_uninstall_are_idempotent_and_keep_user_data() {
    let db = TestDb::new().await.expect("test db");
    let client = db.client().await.expect("client");
    client.batch_execute(PRISMA_SCHEMA).await.expect("schema");
    let url = db.database_url();
    let env = [("DATABASE_URL", url.as_str())];
    for _ in 0..2 {
        let o = outpost(db.dir(), &env, &["server", "install"]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u9', 'z@example.com')"#)
        .await
        .expect("insert");
    let changes: i64 = client
        .query_one("SELECT count(*) FROM outpost.changes", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(changes, 1);
    for expect_removed in [true, false] {
        let o = outpost(db.dir(), &env, &["server", "uninstall", "--json"]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["removed"], expect_removed);
    }
    let users: i64 = client
        .query_one(r#"SELECT count(*) FROM "User""#, &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 2);
    let schema: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'outpost'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(schema, 0);
}

#[tokio::test]
async fn sync_status_conflicts_and_log_from_the_command_line() {
    let db = TestDb::new().await.expect("test db");
    let client = db.client().await.expect("client");
    client.batch_execute(PRISMA_SCHEMA).await.expect("schema");
    let url = db.database_url();
    let env = [("DATABASE_URL", url.as_str())];
    assert!(outpost(db.dir(), &env, &["setup"]).status.success());

    // The seed's response shape.
    let o = outpost(db.dir(), &env, &["sync", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["success"], true);
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(report["timestamp"].is_string());
    for field in ["recordsProcessed", "recordsSucceeded", "recordsFailed"] {
        assert!(report["results"]["User"][field].is_number(), "{out}");
    }

    // A conflict: the same field edited on both sides.
    let conn = rusqlite::Connection::open(db.dir().join("local.db")).expect("open");
    conn.execute(r#"UPDATE "User" SET name = 'local' WHERE id = 'u1'"#, [])
        .expect("local edit");
    client
        .batch_execute(r#"UPDATE "User" SET name = 'server' WHERE id = 'u1'"#)
        .await
        .expect("server edit");
    let o = outpost(db.dir(), &env, &["sync", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    assert_eq!(report["results"]["User"]["conflicts"], 1, "{report}");

    let o = outpost(db.dir(), &env, &["conflicts", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    assert_eq!(list[0]["model"], "User");
    assert_eq!(list[0]["local"]["name"], "local");
    assert_eq!(list[0]["server"]["name"], "server");
    assert_eq!(list[0]["base"]["name"], serde_json::Value::Null);
    let o = outpost(db.dir(), &env, &["conflicts", "show", "User", "u1"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("\"local\"") && out.contains("\"server\""),
        "{out}"
    );
    // The merged row follows the rule the HTTP API uses (one function): an
    // unknown column is refused, named, and the conflict stays.
    let o = outpost(
        db.dir(),
        &env,
        &[
            "conflicts",
            "resolve",
            "User",
            "u1",
            "--merge",
            r#"{"nope": 1}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("unknown column \"nope\" on model User"),
        "{}",
        text(&o).1
    );
    let o = outpost(db.dir(), &env, &["conflicts", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let o = outpost(
        db.dir(),
        &env,
        &[
            "conflicts",
            "resolve",
            "User",
            "u1",
            "--merge",
            r#"{"name": "both"}"#,
        ],
    );
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(outpost(db.dir(), &env, &["sync"]).status.success());
    let name: Option<String> = client
        .query_one(r#"SELECT name FROM "User" WHERE id = 'u1'"#, &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(name.as_deref(), Some("both"));

    let o = outpost(db.dir(), &env, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    assert_eq!(status["conflicts"], 0);
    assert_eq!(status["server"]["reachable"], true);
    let o = outpost(db.dir(), &env, &["log", "--model", "User", "--json"]);
    let log: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    assert_eq!(log.as_array().map(Vec::len), Some(3));
    assert_eq!(log[0]["model"], "User");

    // Bad input is refused with a reason; an unreachable server fails the sync.
    let o = outpost(db.dir(), &env, &["sync", "--direction", "SIDEWAYS"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("SIDEWAYS"));
    let o = outpost(db.dir(), &env, &["sync", "--model", "Nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("unknown model \"Nope\""),
        "{}",
        text(&o).1
    );
    let down = [("DATABASE_URL", "postgres://postgres:pw@127.0.0.1:9/x")];
    let o = outpost(db.dir(), &down, &["sync", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("cannot reach the server"), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json even on failure");
    assert_eq!(report["success"], false);
    let o = outpost(db.dir(), &down, &["status"]);
    assert!(o.status.success(), "status works offline");
    assert!(text(&o).0.contains("server: offline"), "{}", text(&o).0);
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_seed_status_and_stops_on_sigterm() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(PRISMA_SCHEMA)
        .await
        .expect("schema");
    let url = db.database_url();
    // Off loopback without a token: refused before anything starts.
    let o = outpost(
        db.dir(),
        &[("DATABASE_URL", &url)],
        &["serve", "--host", "0.0.0.0", "--port", "0"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("OUTPOST_ADMIN_TOKEN"), "{}", text(&o).1);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .current_dir(db.dir())
        .args(["serve", "--port", &port.to_string()])
        .env("DATABASE_URL", &url)
        .env_remove("OUTPOST_ADMIN_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut body = None;
    for _ in 0..200 {
        if let Some(r) = http_get(port, "/api/database/status") {
            body = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = body.expect("the server answered");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for field in [
        "isOnline",
        "localDbConnected",
        "remoteDbConnected",
        "timestamp",
    ] {
        assert!(body.contains(&format!("\"{field}\"")), "{body}");
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
}

/// `setup` reads the application's `prisma/schema.prisma` when present:
/// what does not fit the database is named, a model with no table is a note,
/// a field with no column stops setup before anything is written.
#[tokio::test]
async fn setup_reads_the_prisma_schema_and_says_where_it_disagrees() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(PRISMA_SCHEMA)
        .await
        .expect("schema");
    let url = db.database_url();
    let models = r#"
enum Role {
  USER
  ADMIN
}
model User {
  id        String   @id @default(cuid())
  email     String   @unique
  name      String?
  role      Role     @default(USER)
  joinedAt  DateTime @default(now()) @map("createdAt")
  writings  Post[]
}
model Post {
  id       String   @id @default(uuid())
  title    String
  price    Decimal?
  tags     String[]
  metadata Json?
  userId   String
  author   User     @relation(fields: [userId], references: [id])
}
model Comment {
  id   String @id @default(cuid())
  body String
  @@map("comments")
}
"#;
    std::fs::create_dir_all(db.dir().join("prisma")).expect("dir");
    std::fs::write(db.dir().join("prisma/schema.prisma"), models).expect("write");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LOCAL_DATABASE_URL", "file:./a.db"),
    ];
    let o = outpost(db.dir(), &env, &["setup"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("Prisma schema: ./prisma/schema.prisma"),
        "{out}"
    );
    assert!(
        out.contains("note: model Comment (table \"comments\") is not among the synced tables"),
        "{out}"
    );
    // The generated types speak the schema's names.
    let o = outpost(db.dir(), &env, &["generate", "typescript"]);
    let (ts, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(ts.contains("  joinedAt: string;"), "{ts}");
    assert!(
        !ts.contains("createdAt"),
        "the column's name is not the field's"
    );
    assert!(ts.contains("writings?:") && ts.contains("author?:"), "{ts}");

    // A field mapped to a column the table lacks: refused by name, no replica.
    std::fs::write(
        db.dir().join("prisma/schema.prisma"),
        models.replace(
            "  name      String?",
            "  name      String? @map(\"full_name\")",
        ),
    )
    .expect("write");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LOCAL_DATABASE_URL", "file:./b.db"),
    ];
    let o = outpost(db.dir(), &env, &["setup"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("User.name") && err.contains("full_name"),
        "{err}"
    );
    assert!(!db.dir().join("b.db").exists(), "nothing written");
}

/// `OUTPOST_LOG_FORMAT=json`: every log line on stderr is one JSON object
/// with its level, target and fields (a log shipper reads them as they
/// are); another format is refused by name.
#[tokio::test]
async fn logs_are_json_lines_with_outpost_log_format_json() {
    let db = TestDb::new().await.expect("test db");
    db.client()
        .await
        .expect("client")
        .batch_execute(PRISMA_SCHEMA)
        .await
        .expect("schema");
    let url = db.database_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LOCAL_DATABASE_URL", "file:./local.db"),
        ("RUST_LOG", "info"),
        ("OUTPOST_LOG_FORMAT", "json"),
    ];
    let o = outpost(db.dir(), &env, &["setup"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log line at info: {err}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }

    let o = outpost(db.dir(), &[("OUTPOST_LOG_FORMAT", "xml")], &["config"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("OUTPOST_LOG_FORMAT=\"xml\""), "{err}");
}
