//! Gateways for tests: each runs on a runtime of its own, so
//! [`GatewayProcess::kill`] ends it the way a killed process ends (every
//! request and stream cut where it stands, its PostgreSQL connections
//! closed, nothing flushed), and a new one can start on the same port.
//! Nodes in gateway topology are built like the engine tests' direct
//! nodes (`common::node`), so the same assertions run against both.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use outpost_core::config::Config;
use outpost_engine::Engine;
use outpost_local::Replica;
use outpost_testkit::TestDb;

/// The shared secret of every test gateway.
pub const SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

/// A running gateway.
pub struct GatewayProcess {
    runtime: Option<tokio::runtime::Runtime>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl GatewayProcess {
    /// Starts a gateway for `db` on `port` (0: any), with extra settings.
    pub fn start(db: &TestDb, port: u16, extra: &[(&str, &str)]) -> anyhow::Result<GatewayProcess> {
        Self::start_url(&db.database_url(), port, extra)
    }

    /// Starts a gateway for the database at `url`.
    pub fn start_url(
        url: &str,
        port: u16,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<GatewayProcess> {
        // Its own runtime, built and entered on a thread of its own: the
        // calling test is async and may not block on another runtime.
        let url = url.to_string();
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (runtime, addr) = std::thread::spawn(move || -> anyhow::Result<_> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let addr = runtime.block_on(async move {
                // `extra` first: a test may replace the secret (an empty
                // value: a gateway with public keys only).
                let options = outpost_gateway::Options::from_lookup(|k| {
                    if let Some((_, v)) = extra.iter().find(|(e, _)| e == k) {
                        return Some(v.clone());
                    }
                    match k {
                        "DATABASE_URL" => Some(url.clone()),
                        "OUTPOST_GATEWAY_SECRET" => Some(SECRET.to_string()),
                        _ => None,
                    }
                })
                .map_err(anyhow::Error::msg)?;
                let gateway = outpost_gateway::Gateway::start(options).await?;
                // A restarted gateway takes its port back; the old socket
                // may linger a moment.
                let mut tries = 0;
                let listener = loop {
                    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => break l,
                        Err(_) if tries < 50 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(anyhow::Error::from(e)),
                    }
                };
                let addr = listener.local_addr()?;
                tokio::spawn(outpost_gateway::serve(
                    listener,
                    gateway,
                    std::future::pending(),
                ));
                anyhow::Ok(addr)
            })?;
            Ok((runtime, addr))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the gateway's thread panicked"))??;
        Ok(GatewayProcess {
            runtime: Some(runtime),
            addr,
        })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ends it at once, as `kill -9` would.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token for `sub`, valid for `ttl`.
pub fn token(sub: &str, ttl: Duration) -> anyhow::Result<String> {
    let keys = outpost_gateway::auth::Keys::hs256(SECRET, None).map_err(anyhow::Error::msg)?;
    keys.create(sub, ttl, None).map_err(anyhow::Error::msg)
}

/// A node's configuration in gateway topology: no `DATABASE_URL`.
pub fn config(gateway: &str, token: &str, path: &Path) -> anyhow::Result<Config> {
    let local = format!("file:{}", path.display());
    let (gateway, token) = (gateway.to_string(), token.to_string());
    Ok(Config::from_lookup(|k| match k {
        "OUTPOST_GATEWAY_URL" => Some(gateway.clone()),
        "OUTPOST_GATEWAY_TOKEN" => Some(token.clone()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => None,
    })?)
}

/// A node syncing through `gateway`, its replica `<name>.db` laid out from
/// the schema the gateway serves (as `outpost setup` does).
pub async fn node(db: &TestDb, gateway: &str, sub: &str, name: &str) -> anyhow::Result<Engine> {
    node_with_token(db, gateway, &token(sub, Duration::from_secs(3600))?, name).await
}

/// [`node`] with a token of the test's own making.
pub async fn node_with_token(
    db: &TestDb,
    gateway: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<Engine> {
    let path = db.dir().join(format!("{name}.db"));
    let cfg = config(gateway, token, &path)?;
    let target = cfg
        .gateway
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no gateway"))?;
    let schema = outpost_remote::gateway::GatewayConnection::new(&target, Duration::from_secs(5))?
        .schema()
        .await?;
    let (replica, _) = Replica::setup(&path, &schema)?;
    Ok(Engine::new(replica, cfg))
}

/// Waits until `check` holds, up to `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "not within {} ms",
            within.as_millis()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
