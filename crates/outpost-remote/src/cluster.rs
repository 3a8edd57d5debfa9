//! A throwaway PostgreSQL cluster started from the installed binaries, for
//! `outpost demo` and for the tests (`outpost-testkit`).
//!
//! [`Cluster::start`] runs `initdb` (when the directory holds no cluster
//! yet) and `pg_ctl start` on a free port of 127.0.0.1, with trust
//! authentication for the `postgres` user and the Unix socket in the same
//! directory. The binaries are searched in `$OUTPOST_PG_BINDIR` when set,
//! else the newest `/usr/lib/postgresql/*/bin` (Debian, Ubuntu), else
//! `$PATH`; when none is found the error names the package to install.
//!
//! `initdb` refuses to run as root, so when we are root every tool runs as
//! the `postgres` user through `runuser`, and the cluster directory is handed
//! to that user first.
//!
//! A [`Cluster`] stops its server when dropped and, if it was started with
//! [`ClusterOptions::remove_on_stop`], deletes its directory; [`Cluster::keep`]
//! leaves it running (the tests share one cluster between processes).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a throwaway cluster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No `initdb`/`pg_ctl` in any searched place.
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found in {searched}; \
         install them (Debian/Ubuntu: `apt-get install postgresql`), \
         set OUTPOST_PG_BINDIR to their directory, or give DATABASE_URL"
    )]
    NoBinaries {
        /// Where we looked.
        searched: String,
    },
    /// We are root and there is no `postgres` user to run the tools as.
    #[error(
        "initdb refuses to run as root and there is no `postgres` user to run it as \
         (create one, or run as an ordinary user)"
    )]
    NoPostgresUser,
    /// A tool ran and failed.
    #[error("{tool} failed: {output}")]
    Tool {
        /// `initdb`, `pg_ctl`…
        tool: String,
        /// What it printed.
        output: String,
    },
    /// Reading or writing the cluster directory, or running a tool.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster's directory: `data/` (the cluster), `log`, the socket.
    /// Created if missing; an existing cluster in it is reused.
    pub dir: PathBuf,
    /// Server settings passed as `-c name=value` (e.g. `ssl=on`).
    pub settings: Vec<(String, String)>,
    /// Delete `dir` when the cluster stops.
    pub remove_on_stop: bool,
}

impl ClusterOptions {
    /// A cluster in `dir` with the default settings, kept on disk after it stops.
    pub fn new(dir: impl Into<PathBuf>) -> ClusterOptions {
        ClusterOptions {
            dir: dir.into(),
            settings: Vec::new(),
            remove_on_stop: false,
        }
    }

    /// Adds a server setting.
    pub fn setting(mut self, name: &str, value: impl Into<String>) -> ClusterOptions {
        self.settings.push((name.to_string(), value.into()));
        self
    }
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    remove_on_stop: bool,
    running: bool,
}

impl Cluster {
    /// Initializes (if needed) and starts a cluster on a free port; waits
    /// until it accepts connections.
    pub fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin = bin_dir()?;
        let root = is_root();
        if root && !user_exists("postgres") {
            return Err(ClusterError::NoPostgresUser);
        }
        fs::create_dir_all(&options.dir).map_err(io(format!(
            "creating the cluster directory {}",
            options.dir.display()
        )))?;
        let mut cluster = Cluster {
            bin,
            dir: options.dir.clone(),
            port: 0,
            remove_on_stop: options.remove_on_stop,
            running: false,
        };
        if root {
            // The tools run as `postgres`: hand it the directory (and any
            // files the caller put there, such as a TLS key).
            cluster.run_plain("chown", &["-R", "postgres:postgres"], &[&options.dir])?;
            // A private parent directory (a root-only $TMPDIR) hides the
            // cluster from its own server: say so instead of initdb's riddle.
            let reachable = Command::new("runuser")
                .args(["-u", "postgres", "--", "test", "-w"])
                .arg(&options.dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !reachable {
                return Err(ClusterError::Tool {
                    tool: "runuser".into(),
                    output: format!(
                        "the postgres user cannot write to {} (a parent directory is private to root); \
                         point TMPDIR at a directory it can reach, such as /tmp",
                        options.dir.display()
                    ),
                });
            }
        }
        let data = cluster.data_dir();
        if !data.join("PG_VERSION").exists() {
            cluster.run_tool(
                "initdb",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-A".as_ref(),
                    "trust".as_ref(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "--no-sync".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                ],
            )?;
        }
        // A port picked free can be taken before the server binds it: try a
        // few.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {}",
                options.dir.display()
            );
            for (k, v) in &options.settings {
                opts.push_str(&format!(" -c {k}={v}"));
            }
            let log = options.dir.join("log");
            match cluster.run_tool(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    opts.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            ) {
                Ok(()) => {
                    cluster.port = port;
                    cluster.running = true;
                    return Ok(cluster);
                }
                Err(e) => {
                    let log_text = fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = log_text.lines().rev().take(5).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    last = Some(ClusterError::Tool {
                        tool: "pg_ctl start".into(),
                        output: format!("{e}; server log: {}", tail.join(" | ")),
                    });
                    if !log_text.contains("could not bind") {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| ClusterError::Tool {
            tool: "pg_ctl start".into(),
            output: "no free port".into(),
        }))
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory (`dir/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The postmaster's process id, from `postmaster.pid`.
    pub fn pid(&self) -> Option<u32> {
        fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The server's major version (`PG_VERSION`).
    pub fn version(&self) -> Option<String> {
        fs::read_to_string(self.data_dir().join("PG_VERSION"))
            .ok()
            .map(|v| v.trim().to_string())
    }

    /// A libpq connection string for `dbname` as the superuser `postgres`.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    /// A `postgres://` URL for `dbname` as the superuser `postgres`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Stops the server (fast shutdown: sessions are rolled back) and, if
    /// asked at start, deletes the directory. Idempotent.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if self.running {
            let data = self.data_dir();
            self.run_tool(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "fast".as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "stop".as_ref(),
                ],
            )?;
            self.running = false;
        }
        if self.remove_on_stop && self.dir.exists() {
            fs::remove_dir_all(&self.dir).map_err(io(format!(
                "removing the cluster directory {}",
                self.dir.display()
            )))?;
        }
        Ok(())
    }

    /// Restarts the server the hard way (`pg_ctl -m immediate restart`:
    /// every backend is killed and the server recovers from its WAL, as
    /// after a crash), on the same port and settings (pg_ctl reuses the
    /// options of the last start).
    pub fn crash_restart(&mut self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let log = self.dir.join("log");
        self.run_tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "restart".as_ref(),
            ],
        )?;
        self.running = true;
        Ok(())
    }

    /// Leaves the server running and its directory in place.
    pub fn keep(mut self) -> (u16, PathBuf) {
        self.running = false;
        self.remove_on_stop = false;
        (self.port, self.dir.clone())
    }

    fn run_plain(&self, program: &str, args: &[&str], paths: &[&Path]) -> Result<(), ClusterError> {
        let out = Command::new(program)
            .args(args)
            .args(paths)
            .output()
            .map_err(io(format!("running {program}")))?;
        if !out.status.success() {
            return Err(ClusterError::Tool {
                tool: program.into(),
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Runs a PostgreSQL tool, as `postgres` when we are root.
    fn run_tool(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), ClusterError> {
        let bin = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        // `pg_ctl start` always gets `-l`, so the server writes to its log
        // and does not hold our pipes open after pg_ctl exits.
        let out = cmd
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(io(format!("running {}", bin.display())))?;
        if !out.status.success() {
            return Err(ClusterError::Tool {
                tool: tool.into(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, dir = %self.dir.display(), "stopping the throwaway cluster");
        }
    }
}

/// The directory holding `initdb` and `pg_ctl` (module doc for the order).
pub fn bin_dir() -> Result<PathBuf, ClusterError> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("OUTPOST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(ClusterError::NoBinaries {
                searched: format!("OUTPOST_PG_BINDIR={}", dir.display()),
            })
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.into_iter().rev().find(|(_, d)| has_tools(d)) {
        return Ok(dir);
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Ok(dir);
    }
    Err(ClusterError::NoBinaries {
        searched: "/usr/lib/postgresql/*/bin and $PATH".into(),
    })
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the process's effective user; `id -u` where
    // there is no /proc.
    if let Ok(m) = fs::metadata("/proc/self") {
        return m.uid() == 0;
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}
