//! Test support: every test gets its own PostgreSQL database (created, then
//! dropped when the [`TestDb`] is dropped) and its own SQLite file in a
//! temporary directory, so tests run in parallel without seeing each other.
//!
//! Which server: `OUTPOST_TEST_PG` if set (a libpq connection string for a
//! superuser, e.g. `host=127.0.0.1 port=5432 user=postgres`), else the local
//! service on 127.0.0.1:5432. If nothing answers there, the first test starts a
//! throwaway cluster ([`outpost_remote::cluster`]: `initdb`/`pg_ctl` from
//! `/usr/lib/postgresql/*/bin` or `$PATH`) in `$TMPDIR/outpost-test-pg` on a free port,
//! shared by every later test process (a file lock keeps two processes from
//! starting two clusters). It stays up after the tests; `pg_ctl -D
//! $TMPDIR/outpost-test-pg/data stop` ends it.

pub mod cluster;
pub mod proxy;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
pub use outpost_remote::cluster::{Cluster, ClusterOptions};
use tokio_postgres::{Client, NoTls};

/// A fresh PostgreSQL database and a SQLite path of one test's own.
pub struct TestDb {
    /// The database's name (`outpost_t_…`).
    pub name: String,
    /// A libpq connection string for the test database.
    pub url: String,
    /// Where the test's replica goes (the file does not exist yet).
    pub sqlite_path: PathBuf,
    admin: String,
    dir: tempfile::TempDir,
}

impl TestDb {
    /// Creates an empty database and a temporary directory.
    pub async fn new() -> anyhow::Result<TestDb> {
        let admin = admin_conninfo()?;
        let name = format!("outpost_t_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin, NoTls)
            .await
            .with_context(|| format!("connecting to the test server ({admin})"))?;
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .context("creating the test database")?;
        drop(client);
        let _ = task.await;
        let url = format!("{admin} dbname={name}");
        let dir = tempfile::tempdir()?;
        Ok(TestDb {
            sqlite_path: dir.path().join("replica.db"),
            name,
            url,
            admin,
            dir,
        })
    }

    /// The test's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `postgres://` URL for the test database, as a user would write
    /// `DATABASE_URL`.
    pub fn database_url(&self) -> String {
        let mut host = "127.0.0.1".to_string();
        let mut port = "5432".to_string();
        let mut user = "postgres".to_string();
        for part in self.admin.split_whitespace() {
            match part.split_once('=') {
                Some(("host", v)) => host = v.to_string(),
                Some(("port", v)) => port = v.to_string(),
                Some(("user", v)) => user = v.to_string(),
                _ => {}
            }
        }
        format!("postgres://{user}@{host}:{port}/{}", self.name)
    }

    /// The server's address (for a proxy in front of it).
    pub fn server_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let mut host = "127.0.0.1".to_string();
        let mut port = "5432".to_string();
        for part in self.admin.split_whitespace() {
            match part.split_once('=') {
                Some(("host", v)) => host = v.to_string(),
                Some(("port", v)) => port = v.to_string(),
                _ => {}
            }
        }
        Ok(format!("{host}:{port}").parse()?)
    }

    /// A `postgres://` URL for the test database through `addr` (a proxy).
    pub fn database_url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }

    /// A new connection to the test database; its driver task runs on the
    /// current runtime.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any runtime guarantee, so use a thread of its own.
        let admin = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// The superuser connection string of the test server, starting a throwaway
/// cluster when none answers (module doc).
pub fn admin_conninfo() -> anyhow::Result<String> {
    static ADMIN: OnceLock<Result<String, String>> = OnceLock::new();
    ADMIN
        .get_or_init(|| find_or_start_server().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("no PostgreSQL for tests: {e}"))
}

fn find_or_start_server() -> anyhow::Result<String> {
    if let Ok(conninfo) = std::env::var("OUTPOST_TEST_PG") {
        return Ok(format!("{conninfo} dbname=postgres"));
    }
    let service = "host=127.0.0.1 port=5432 user=postgres dbname=postgres".to_string();
    if answers(&service) {
        return Ok(service);
    }
    start_throwaway_cluster()
}

fn answers(conninfo: &str) -> bool {
    let conninfo = conninfo.to_string();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        rt.block_on(async {
            let connect = tokio_postgres::connect(&conninfo, NoTls);
            matches!(
                tokio::time::timeout(Duration::from_secs(3), connect).await,
                Ok(Ok(_))
            )
        })
    })
    .join()
    .unwrap_or(false)
}

fn start_throwaway_cluster() -> anyhow::Result<String> {
    let base = std::env::temp_dir().join("outpost-test-pg");
    fs::create_dir_all(&base)?;
    let lock = fs::File::create(base.join("lock"))?;
    lock.lock()
        .context("locking the throwaway cluster directory")?;
    let port_file = base.join("port");
    if let Ok(port) = fs::read_to_string(&port_file) {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            port.trim()
        );
        if answers(&conninfo) {
            return Ok(conninfo);
        }
    }
    // The same machinery as `outpost demo` (outpost_remote::cluster), kept
    // running for later test processes.
    let cluster = Cluster::start(
        ClusterOptions::new(&base)
            .setting("fsync", "off")
            .setting("max_connections", "300"),
    )?;
    let conninfo = cluster.conninfo("postgres");
    let (port, _) = cluster.keep();
    let mut f = fs::File::create(&port_file)?;
    write!(f, "{port}")?;
    Ok(conninfo)
}
