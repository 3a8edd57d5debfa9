//! A dedicated throwaway PostgreSQL cluster that a test owns outright: its
//! own data directory and port, so the test may restart it (a server crash
//! and recovery) without touching the shared server other tests use. Built
//! on [`outpost_remote::cluster`] (the code `outpost demo` uses); the
//! cluster is stopped and its directory removed when the [`Cluster`] drops.

use std::sync::Mutex;

use anyhow::Context as _;
use outpost_remote::cluster::{Cluster as Throwaway, ClusterOptions};

/// A PostgreSQL cluster started by this process on a free loopback port.
pub struct Cluster {
    /// The port it listens on.
    pub port: u16,
    inner: Mutex<Throwaway>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `initdb` (trust, user `postgres`) and start, with fsync off and room
    /// for many connections.
    pub fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("outpost-cluster-")
            .tempdir()
            .context("creating the cluster directory")?;
        let inner = Throwaway::start(
            ClusterOptions::new(dir.path())
                // fsync off is safe here: a restart kills processes, not the OS.
                .setting("fsync", "off")
                .setting("max_connections", "200"),
        )
        .context("starting a dedicated cluster")?;
        Ok(Cluster {
            port: inner.port(),
            inner: Mutex::new(inner),
            _dir: dir,
        })
    }

    /// Restarts the server the hard way (`-m immediate`: every backend is
    /// killed and the server recovers from its WAL, as after a crash).
    pub fn restart(&self) -> anyhow::Result<()> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("the cluster lock is poisoned"))?;
        inner
            .crash_restart()
            .context("restarting the dedicated cluster")
    }

    /// A libpq connection string for `dbname` as the superuser.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    /// The server's address (for a proxy in front of it).
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}
