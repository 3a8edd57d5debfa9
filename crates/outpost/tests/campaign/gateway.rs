//! The campaign's gateway topology (`OUTPOST_CAMPAIGN_TOPOLOGY=gateway`):
//! two `outpost gateway` processes over the seed's database, each node
//! reaching them through a proxy of its own per gateway and picking one
//! per sync, with a token of its own. Gateways are stateless, so one may be
//! killed and started again on its port at any moment (the
//! `gateway-restart` fault). Sync rules give each node a scope of its
//! own ([`RULES`]); the checker finds a row a replica holds outside it.
//! With `OUTPOST_CAMPAIGN_RULES=0` the gateways serve every table whole.
//! Either way nodes also write in remote mode, through the gateway's
//! `POST /v1/query` (scoped to the node's rows under the rules).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use outpost_gateway::auth::Keys;

use super::check::Tables;

/// The sync rules (docs/gateway.md): every user, and the posts of users
/// whose id does not end in the digit the node's principal ends in (node
/// `n` sees no posts of users `…n`); a node's write of such a post is
/// refused. [`scope`] is the same rule over the final rows.
const RULES: &str = r#"
[[rule]]
table = "User"
where = 'true'

[[rule]]
table = "Post"
where = 'right("userId", 1) <> right($sub, 1)'
"#;

/// The rows of `server` node principal `principal` may hold under
/// [`RULES`].
pub fn scope(server: &Tables, principal: usize) -> Tables {
    let sub = format!("node-{principal}");
    let last = |s: &str| s.chars().last();
    let mut scoped = server.clone();
    if let Some(posts) = scoped.get_mut("Post") {
        posts.retain(|(_, row)| {
            row.get("userId")
                .and_then(|v| v.as_str())
                .is_none_or(|u| last(u) != last(&sub))
        });
    }
    scoped
}

/// The HS256 secret the gateways verify the nodes' tokens with.
const SECRET: &str = "campaign-gateway-secret-0123456789-abcdef";

/// Two gateway processes and what restarting one needs.
pub struct Gateways {
    database_url: String,
    dir: PathBuf,
    ports: Vec<u16>,
    procs: Vec<Option<tokio::process::Child>>,
    keys: Keys,
    /// Whether they run with [`RULES`].
    rules: bool,
}

impl Gateways {
    /// Starts two gateways over `database_url`, logging into `dir`, with
    /// [`RULES`] or (`rules` false) serving every table whole, remote mode
    /// included.
    pub async fn start(database_url: String, dir: &Path, rules: bool) -> anyhow::Result<Gateways> {
        let keys = Keys::hs256(SECRET, None).map_err(anyhow::Error::msg)?;
        std::fs::write(dir.join("rules.toml"), RULES)?;
        let mut g = Gateways {
            database_url,
            dir: dir.to_path_buf(),
            ports: Vec::new(),
            procs: Vec::new(),
            keys,
            rules,
        };
        for _ in 0..2 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            g.ports.push(port);
            g.procs.push(None);
        }
        for k in 0..g.ports.len() {
            g.spawn(k).await?;
        }
        Ok(g)
    }

    /// Whether they run with sync rules (each node its own scope; no
    /// remote mode).
    pub fn rules(&self) -> bool {
        self.rules
    }

    /// How many gateways there are.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Gateway `k`'s address.
    pub fn addr(&self, k: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[k]))
    }

    /// Starts gateway `k` on its port and waits until the port answers.
    pub async fn spawn(&mut self, k: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("gateway-{k}.log")))?;
        let rules: &[&str] = if self.rules {
            &["--rules", "rules.toml"]
        } else {
            &[]
        };
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["gateway", "--port", &self.ports[k].to_string()])
            .args(rules)
            .current_dir(&self.dir)
            .env_clear()
            .env("DATABASE_URL", &self.database_url)
            .env("OUTPOST_GATEWAY_SECRET", SECRET)
            // The `changelog-pruned` fault asks for a 1 ms window: a
            // gateway grants no less than this.
            .env("OUTPOST_GATEWAY_MIN_RETENTION", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting outpost gateway")?;
        self.procs[k] = Some(child);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(self.addr(k)).await.is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "gateway {k} did not start (see gateway-{k}.log)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Gateway `k`'s process, taken to be killed (started again with
    /// [`Gateways::spawn`]).
    pub fn take(&mut self, k: usize) -> Option<tokio::process::Child> {
        self.procs[k].take()
    }

    /// Node `i`'s token (subject `node-<i>`).
    pub fn token(&self, i: usize) -> anyhow::Result<String> {
        self.keys
            .create(&format!("node-{i}"), Duration::from_secs(24 * 3600), None)
            .map_err(anyhow::Error::msg)
    }
}
