//! A dedicated throwaway PostgreSQL cluster that a test owns outright: its
//! own data directory and port, so the test may restart it (a server crash
//! and recovery) without touching the shared server other tests use. The
//! cluster is stopped and its directory removed when the [`Cluster`] drops.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use crate::{is_root, run_pg};

/// A PostgreSQL cluster started by this process on a free loopback port.
pub struct Cluster {
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `initdb` (trust, user `postgres`, no fsync) and start.
    pub fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("outpost-cluster-")
            .tempdir()
            .context("creating the cluster directory")?;
        if is_root() {
            // initdb refuses root; the postgres user must own the directory.
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let data = dir.path().join("data");
        run_pg(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = Cluster { port, dir };
        cluster.pg_ctl(&["start"])?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, action: &[&str]) -> anyhow::Result<()> {
        let opts = format!(
            // fsync off is safe here: a restart kills processes, not the OS.
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let data = self.data().to_string_lossy().to_string();
        let log = self.dir.path().join("log").to_string_lossy().to_string();
        let mut args = vec!["-D", &data, "-l", &log, "-o", &opts, "-w"];
        args.extend_from_slice(action);
        run_pg("pg_ctl", &args)
    }

    /// Restarts the server the hard way (`-m immediate`: every backend is
    /// killed and the server recovers from its WAL, as after a crash).
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "immediate", "restart"])
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

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}
