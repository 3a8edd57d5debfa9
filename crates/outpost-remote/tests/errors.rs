//! `RemoteError`'s classes against a real server: a connection that cannot
//! be made or breaks is unreachable, a refused login is auth, a statement
//! the server (or the driver, before sending) rejects is refused — and a
//! refused statement leaves the connection usable, so it must never send a
//! node offline.

use std::time::Duration;

use outpost_core::config::DatabaseUrl;
use outpost_remote::cluster::{Cluster, ClusterOptions};
use outpost_remote::{CONNECT_TIMEOUT, ErrorClass, RemoteError};
use outpost_testkit::TestDb;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

async fn connect(url: &str) -> Result<tokio_postgres::Client, RemoteError> {
    let url = DatabaseUrl::parse(url).expect("valid url");
    outpost_remote::connect(&url, CONNECT_TIMEOUT).await
}

/// `$1::int4, $2::int4, …` up to `$n`.
fn int4_params(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}::int4"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_class(err: &RemoteError, class: ErrorClass) {
    assert_eq!(err.class(), class, "{err}");
    assert_eq!(
        err.is_unreachable(),
        class == ErrorClass::Unreachable,
        "{err}"
    );
    assert_eq!(err.is_auth(), class == ErrorClass::Auth, "{err}");
    assert_eq!(err.is_refused(), class == ErrorClass::Refused, "{err}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    // Nothing listens on port 1.
    let err = connect("postgres://postgres@127.0.0.1:1/app")
        .await
        .expect_err("connection refused");
    assert_class(&err, ErrorClass::Unreachable);
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .starts_with("cannot reach the server at postgres://postgres@127.0.0.1:1/app: "),
        "{err}"
    );

    // The driver's own error, wrapped as a statement's would be.
    let err = tokio_postgres::connect("host=127.0.0.1 port=1 user=postgres", NoTls)
        .await
        .err()
        .map(|e| RemoteError::db("connecting", e))
        .expect("connection refused");
    assert_class(&err, ErrorClass::Unreachable);
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_broken_connection_is_unreachable() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let admin = db.client().await?;
    let victim = db.client().await?;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = victim
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| RemoteError::db("querying", e))
        .expect_err("terminated");
    assert_class(&err, ErrorClass::Unreachable);
    assert!(err.is_transient());
    // And a request on the dead connection after that.
    let err = victim
        .batch_execute("SELECT 1")
        .await
        .map_err(|e| RemoteError::db("querying", e))
        .expect_err("closed");
    assert_class(&err, ErrorClass::Unreachable);
    Ok(())
}

#[tokio::test]
async fn an_unknown_role_is_an_auth_failure_that_says_so() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE outpost_nologin NOLOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await?;
    let addr = db.server_addr()?;
    for user in ["outpost_no_such_role", "outpost_nologin"] {
        let url = format!("postgres://{user}@{addr}/{}", db.name);
        let err = connect(&url).await.expect_err("login refused");
        assert_class(&err, ErrorClass::Auth);
        // Connecting failed: still transient (the node works offline
        // until it can log in), and the message says the login was refused,
        // not that the server is unreachable.
        assert!(err.is_transient());
        assert!(
            err.to_string()
                .starts_with(&format!("the server at {url} refused the login: FATAL: ")),
            "{err}"
        );
        assert!(err.to_string().contains("[SQLSTATE 28"), "{err}");
    }
    Ok(())
}

/// A cluster of our own with password authentication on TCP: a wrong
/// password is auth, the right one connects.
#[tokio::test]
async fn a_wrong_password_is_an_auth_failure() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(ClusterOptions::new(dir.path().join("pg")))?;
    let (admin, conn) = tokio_postgres::connect(&cluster.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    admin
        .batch_execute("CREATE ROLE outpost_app LOGIN PASSWORD 'right'")
        .await?;
    // The superuser keeps trust; everyone else needs a password.
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )?;
    admin.batch_execute("SELECT pg_reload_conf()").await?;
    let url = |password: &str| {
        format!(
            "postgres://outpost_app:{password}@127.0.0.1:{}/postgres",
            cluster.port()
        )
    };
    let err = connect(&url("wrong")).await.expect_err("wrong password");
    assert_class(&err, ErrorClass::Auth);
    assert!(err.to_string().contains("[SQLSTATE 28P01]"), "{err}");
    assert!(!err.to_string().contains("wrong"), "password shown: {err}");
    connect(&url("right")).await?;
    Ok(())
}

#[tokio::test]
async fn rejected_statements_are_refused_and_keep_the_connection() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL CHECK (n > 0)); \
             INSERT INTO t VALUES (1, 1)",
        )
        .await?;
    let run = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .batch_execute(sql)
                .await
                .map_err(|e| RemoteError::db("running a statement", e))
                .expect_err(sql)
        }
    };
    for sql in [
        "SELEC 1",                                             // syntax
        "INSERT INTO t VALUES (1, 2)",                         // unique
        "INSERT INTO t VALUES (2, 0)",                         // check
        "INSERT INTO t VALUES (3, NULL)",                      // not null
        "INSERT INTO t VALUES ('x', 1)",                       // a bad value
        "SELECT missing FROM t",                               // a column gone
        "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)", // cancelled
    ] {
        let err = run(sql).await;
        assert_class(&err, ErrorClass::Refused);
        assert!(!err.is_transient(), "{sql}: {err}");
        assert!(!err.exceeds_protocol_limits(), "{sql}: {err}");
    }
    // The driver refuses to send these; nothing reaches the server.
    let many: Vec<i32> = (0..70_000).collect();
    let params: Vec<&(dyn ToSql + Sync)> = many.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let sql = format!("SELECT {}", int4_params(many.len()));
    let err = client
        .query(&sql, &params)
        .await
        .map_err(|e| RemoteError::db("too many parameters", e))
        .expect_err("too many parameters");
    assert_class(&err, ErrorClass::Refused);
    assert!(!err.is_transient(), "{err}");
    let err = client
        .query("SELECT 1 WHERE $1 = 1", &[&1_i32, &2_i32])
        .await
        .map_err(|e| RemoteError::db("a wrong parameter count", e))
        .expect_err("parameter count");
    assert_class(&err, ErrorClass::Refused);
    let err = client
        .batch_execute("SELECT 'a\0b'")
        .await
        .map_err(|e| RemoteError::db("a NUL in the text", e))
        .expect_err("nul");
    assert_class(&err, ErrorClass::Refused);
    // The connection is fine after all of them.
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    Ok(())
}

/// What outpost cannot use is its own class, never a refusal or the
/// connection's.
/// A statement with more bind parameters than the protocol's 16-bit count
/// (a very long `IN` list) is told apart from other refusals by the
/// driver's error, not by its text; the refusals above are not.
#[tokio::test]
async fn an_oversize_statement_exceeds_the_protocol_limits() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    let many: Vec<i32> = (0..70_000).collect();
    let params: Vec<&(dyn ToSql + Sync)> = many.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let sql = format!("SELECT 1 WHERE 0 IN ({})", int4_params(many.len()));
    let err = client
        .query(&sql, &params)
        .await
        .map_err(|e| RemoteError::db("a long IN list", e))
        .expect_err("more parameters than the protocol carries");
    assert!(err.exceeds_protocol_limits(), "{err}");
    assert_eq!(err.cause(), Some(outpost_remote::Cause::Refused), "{err}");
    Ok(())
}

#[tokio::test]
async fn an_undecodable_result_is_invalid() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    let row = client.query_one("SELECT 'text'::text", &[]).await?;
    let err = row
        .try_get::<_, i32>(0)
        .map_err(|e| RemoteError::db("reading", e))
        .expect_err("a text is not an int4");
    assert_class(&err, ErrorClass::Invalid);
    assert!(!err.is_transient());
    let err = RemoteError::NoPrimaryKey { table: "T".into() };
    assert_class(&err, ErrorClass::Invalid);
    Ok(())
}
