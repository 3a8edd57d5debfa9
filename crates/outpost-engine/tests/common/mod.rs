//! Shared test support: a server with the tracking schema, nodes with their
//! own replicas, and the convergence check.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use outpost_core::config::Config;
use outpost_core::schema::Schema;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, SyncOptions, SyncReport};
use outpost_local::Replica;
use outpost_remote::tokio_postgres::Client;
use outpost_testkit::TestDb;

pub const BLOG: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text, "updatedAt" timestamptz);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, body text, views int NOT NULL DEFAULT 0,
  "userId" text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE);
"#;

/// Creates the tables, installs tracking, returns the schema.
pub async fn server(db: &TestDb, ddl: &str) -> anyhow::Result<(Client, Schema)> {
    let mut client = db.client().await?;
    client.batch_execute(ddl).await?;
    let schema =
        outpost_remote::introspect(&client, "public", None, &["_prisma_migrations".to_string()])
            .await?;
    outpost_remote::install(&mut client, &schema).await?;
    Ok((client, schema))
}

pub fn config(db: &TestDb, path: &Path) -> anyhow::Result<Config> {
    let url = db.database_url();
    let local = format!("file:{}", path.display());
    Ok(Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        _ => None,
    })?)
}

/// The server's schema after a change, installed, and the replica at
/// `path` set up for it (as `outpost setup` does).
pub async fn setup_again(
    client: &mut Client,
    path: &Path,
) -> anyhow::Result<outpost_local::replica::SetupReport> {
    let schema =
        outpost_remote::introspect(client, "public", None, &["_prisma_migrations".to_string()])
            .await?;
    outpost_remote::install(client, &schema).await?;
    let (_, report) = Replica::setup(path, &schema)?;
    Ok(report)
}

/// Has `node` prune the change log with a 1 ms window until it is empty
/// (once the cluster-wide horizon allows): every other node must then
/// copy its tables again.
pub async fn prune_everything(client: &Client, node: &Engine) -> anyhow::Result<()> {
    node.set_retention(std::time::Duration::from_millis(1));
    let mut left: i64 = -1;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        sync(node, Direction::Bidirectional).await?;
        left = client
            .query_one("SELECT count(*) FROM outpost.changes", &[])
            .await?
            .get(0);
        if left == 0 {
            break;
        }
    }
    anyhow::ensure!(left == 0, "the change log was never pruned ({left} left)");
    Ok(())
}

/// Counts the server's row updates of `table` in `counts.updates` (a
/// schema outpost does not sync), to tell a write that ran twice.
pub async fn count_updates(client: &Client, table: &str) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            r#"CREATE SCHEMA IF NOT EXISTS counts;
               CREATE TABLE IF NOT EXISTS counts.updates (tbl text PRIMARY KEY, n int NOT NULL);
               INSERT INTO counts.updates VALUES ('{table}', 0);
               CREATE OR REPLACE FUNCTION counts.count() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN UPDATE counts.updates SET n = n + 1 WHERE tbl = TG_TABLE_NAME; RETURN NULL; END $$;
               CREATE TRIGGER count_updates AFTER UPDATE ON "{table}"
                 FOR EACH ROW EXECUTE FUNCTION counts.count();"#
        ))
        .await?;
    Ok(())
}

/// The updates of `table` counted since [`count_updates`].
pub async fn updates(client: &Client, table: &str) -> anyhow::Result<i32> {
    Ok(client
        .query_one("SELECT n FROM counts.updates WHERE tbl = $1", &[&table])
        .await?
        .get(0))
}

/// A node with its own replica file `<name>.db` in the test's directory,
/// connected to the server directly, or through a gateway when
/// `OUTPOST_TEST_TOPOLOGY=gateway` (one gateway per test database, on a
/// runtime of its own: the same tests then run in both topologies;
/// docs/gateway.md).
pub fn node(db: &TestDb, schema: &Schema, name: &str) -> anyhow::Result<Engine> {
    let path = db.dir().join(format!("{name}.db"));
    let (replica, _) = Replica::setup(&path, schema)?;
    if through_gateway() {
        let url = gateway_for(db)?;
        let token = gateway_support::token(name, std::time::Duration::from_secs(3600))?;
        return Ok(Engine::new(
            replica,
            gateway_support::config(&url, &token, &path)?,
        ));
    }
    Ok(Engine::new(replica, config(db, &path)?))
}

#[path = "../../../outpost-gateway/tests/support/mod.rs"]
pub mod gateway_support;

/// Whether this test process syncs its nodes through a gateway
/// (`OUTPOST_TEST_TOPOLOGY=gateway`).
pub fn through_gateway() -> bool {
    std::env::var("OUTPOST_TEST_TOPOLOGY").as_deref() == Ok("gateway")
}

/// The address a node of `db` syncs with: PostgreSQL, or in gateway
/// topology `db`'s gateway (started on first use). A test that cuts or
/// stalls the path puts its proxy in front of it.
pub fn sync_addr(db: &TestDb) -> anyhow::Result<std::net::SocketAddr> {
    if through_gateway() {
        let url = gateway_for(db)?;
        let host = url.strip_prefix("http://").unwrap_or(&url);
        return Ok(host.parse()?);
    }
    db.server_addr()
}

/// The variables pointing node `name` at `db` by way of `addr` (what
/// [`sync_addr`] gave, or a proxy in front of it): `DATABASE_URL`, or in
/// gateway topology the gateway's URL and a token with `name` as its
/// subject.
pub fn server_vars(
    db: &TestDb,
    name: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Vec<(String, String)>> {
    if through_gateway() {
        let token = gateway_support::token(name, std::time::Duration::from_secs(3600))?;
        return Ok(vec![
            ("OUTPOST_GATEWAY_URL".into(), format!("http://{addr}")),
            ("OUTPOST_GATEWAY_TOKEN".into(), token),
        ]);
    }
    Ok(vec![("DATABASE_URL".into(), db.database_url_via(addr))])
}

/// Node `name`'s configuration for the node runtime (`Outpost`), syncing
/// with `db` by way of `addr` ([`sync_addr`], or a proxy in front of it)
/// in either topology; its replica `<name>.db`, no interval, then `extra`.
pub fn runtime_config(
    db: &TestDb,
    name: &str,
    addr: std::net::SocketAddr,
    extra: &[(&str, &str)],
) -> anyhow::Result<Config> {
    let local = format!("file:{}", db.dir().join(format!("{name}.db")).display());
    let mut vars = server_vars(db, name, addr)?;
    vars.push(("LOCAL_DATABASE_URL".into(), local));
    vars.push(("LOCAL_DATABASE_SYNC_INTERVAL".into(), "0".into()));
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Ok(Config::from_lookup(|k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })?)
}

/// The gateway serving `db` (started on first use, kept for the rest of
/// the test process).
fn gateway_for(db: &TestDb) -> anyhow::Result<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static GATEWAYS: OnceLock<Mutex<HashMap<String, gateway_support::GatewayProcess>>> =
        OnceLock::new();
    let map = GATEWAYS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map
        .lock()
        .map_err(|_| anyhow::anyhow!("the gateway map was poisoned"))?;
    if let Some(g) = map.get(&db.name) {
        return Ok(g.url());
    }
    // Tests set short retention windows to exercise pruning: the gateway's
    // floor (7 days by default) would keep their changes.
    let g =
        gateway_support::GatewayProcess::start(db, 0, &[("OUTPOST_GATEWAY_MIN_RETENTION", "1")])?;
    let url = g.url();
    eprintln!("{}: nodes sync through the gateway at {url}", db.name);
    map.insert(db.name.clone(), g);
    Ok(url)
}

/// The blog schema with one user, `u1`, and a node `a` synced to it: the
/// start of most single-node engine tests.
pub async fn blog_with_user(db: &TestDb) -> anyhow::Result<(Client, Schema, Engine)> {
    let (client, schema) = server(db, BLOG).await?;
    client
        .batch_execute(r#"INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x')"#)
        .await?;
    let a = node(db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    Ok((client, schema, a))
}

pub async fn sync(engine: &Engine, direction: Direction) -> anyhow::Result<SyncReport> {
    let report = engine
        .sync(SyncOptions::new(direction, Trigger::Manual))
        .await?;
    anyhow::ensure!(report.success, "sync failed: {:?}", report.errors);
    Ok(report)
}

/// Runs SQL on a node's replica, as the application would (captured).
pub async fn local(engine: &Engine, sql: &str) -> anyhow::Result<usize> {
    let sql = sql.to_string();
    Ok(engine
        .with_replica(move |r| {
            r.connection()
                .execute_batch(&sql)
                .map_err(outpost_local::LocalError::sqlite("test write"))?;
            Ok(r.connection().changes() as usize)
        })
        .await?)
}

pub async fn local_rows(engine: &Engine, table: &str) -> anyhow::Result<Vec<Vec<Value>>> {
    let t = table.to_string();
    Ok(engine.with_replica(move |r| r.all_rows(&t)).await?)
}

pub async fn server_rows(
    client: &Client,
    schema: &Schema,
    table: &str,
) -> anyhow::Result<Vec<Vec<Value>>> {
    Ok(outpost_remote::feed::all_rows(client, schema, table).await?)
}

/// Keys (local pk JSON) of rows in CONFLICT or FAILED.
pub async fn unsettled(engine: &Engine) -> anyhow::Result<BTreeSet<(String, String)>> {
    Ok(engine
        .with_replica(|r| {
            let mut stmt = r
                .connection()
                .prepare("SELECT table_name, pk FROM _outpost_rows WHERE status IN ('CONFLICT', 'FAILED')")
                .map_err(outpost_local::LocalError::sqlite("test"))?;
            let rows = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(outpost_local::LocalError::sqlite("test"))?;
            rows.collect::<Result<BTreeSet<_>, _>>().map_err(outpost_local::LocalError::sqlite("test"))
        })
        .await?)
}

/// Every replica equals the server row for row, except rows listed as
/// CONFLICT or FAILED on that node.
pub async fn assert_converged(
    client: &Client,
    schema: &Schema,
    nodes: &[&Engine],
) -> anyhow::Result<usize> {
    let mut excluded_total = 0;
    for node in nodes {
        let skip = unsettled(node).await?;
        excluded_total += skip.len();
        for table in &schema.tables {
            let name = table.name.clone();
            let key_of = |rows: Vec<Vec<Value>>| -> BTreeMap<String, Vec<Value>> {
                let idx: Vec<usize> = table
                    .primary_key
                    .iter()
                    .filter_map(|k| table.columns.iter().position(|c| &c.name == k))
                    .collect();
                rows.into_iter()
                    .map(|r| {
                        let key: Vec<serde_json::Value> = idx
                            .iter()
                            .map(|&i| r[i].to_json(&table.columns[i].ty))
                            .collect();
                        (serde_json::to_string(&key).unwrap_or_default(), r)
                    })
                    .collect()
            };
            let server = key_of(server_rows(client, schema, &name).await?);
            let local = key_of(local_rows(node, &name).await?);
            let skipped: BTreeSet<String> = skip
                .iter()
                .filter(|(t, _)| *t == name)
                .map(|(_, pk)| pk.clone())
                .collect();
            let keys: BTreeSet<&String> = server.keys().chain(local.keys()).collect();
            for k in keys {
                if skipped.contains(k) {
                    continue;
                }
                anyhow::ensure!(
                    server.get(k) == local.get(k),
                    "node {} table {name} row {k}: server {:?} vs replica {:?}",
                    node.node_id(),
                    server.get(k),
                    local.get(k)
                );
            }
        }
    }
    Ok(excluded_total)
}

/// Syncs every node until all replicas equal the server (the pull horizon is
/// cluster-wide, so other tests' transactions can hold a change back for a
/// moment), then returns the number of rows left in CONFLICT/FAILED.
pub async fn converge(
    client: &Client,
    schema: &Schema,
    nodes: &[&Engine],
) -> anyhow::Result<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for n in nodes {
            sync(n, Direction::Bidirectional).await?;
        }
        match assert_converged(client, schema, nodes).await {
            Ok(n) => return Ok(n),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
