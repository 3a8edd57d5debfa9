//! The fixture both HTTP test files share: a server with the blog tables and
//! tracking installed, a node synced once (no monitor), and its router.
#![allow(dead_code)]

use axum::Router;
use outpost_core::sync::Direction;
use outpost_engine::{NodeOptions, Outpost};
use outpost_http::{AppState, router};
use outpost_remote::tokio_postgres::Client;
use outpost_testkit::TestDb;

pub const BLOG: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, views int NOT NULL DEFAULT 0,
  "userId" text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE);
INSERT INTO "User" (id, email, name) VALUES ('u0', 'zero@x', 'Zero');
"#;

pub struct Fixture {
    pub _db: TestDb,
    pub client: Client,
    pub node: Outpost,
    pub app: Router,
    /// The gateway the node syncs through, in gateway topology.
    pub _gateway: Option<gateway_support::GatewayProcess>,
}

#[path = "../../../outpost-gateway/tests/support/mod.rs"]
pub mod gateway_support;

/// Whether this test process syncs its node through a gateway
/// (`OUTPOST_TEST_TOPOLOGY=gateway`, docs/gateway.md): the API's tests then
/// run against a node in gateway topology.
pub fn through_gateway() -> bool {
    std::env::var("OUTPOST_TEST_TOPOLOGY").as_deref() == Ok("gateway")
}

pub async fn fixture(token: Option<&str>) -> anyhow::Result<Fixture> {
    let db = TestDb::new().await?;
    let mut client = db.client().await?;
    client.batch_execute(BLOG).await?;
    let schema =
        outpost_remote::introspect(&client, "public", None, &["_prisma_migrations".to_string()])
            .await?;
    outpost_remote::install(&mut client, &schema).await?;
    let local = format!("file:{}", db.dir().join("node.db").display());
    let mut vars: Vec<(&str, String)> = vec![
        ("LOCAL_DATABASE_URL", local),
        ("LOCAL_DATABASE_SYNC_INTERVAL", "0".into()),
    ];
    let gateway = if through_gateway() {
        let g = gateway_support::GatewayProcess::start(&db, 0, &[])?;
        let token = gateway_support::token("node", std::time::Duration::from_secs(3600))?;
        vars.push(("OUTPOST_GATEWAY_URL", g.url()));
        vars.push(("OUTPOST_GATEWAY_TOKEN", token));
        Some(g)
    } else {
        vars.push(("DATABASE_URL", db.database_url()));
        None
    };
    let config = outpost_core::config::Config::from_lookup(|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?;
    let node = Outpost::open_with(
        config,
        NodeOptions {
            monitor: false,
            ..NodeOptions::default()
        },
    )
    .await?;
    let report = node.sync(Direction::Bidirectional).await?;
    anyhow::ensure!(report.success, "first sync failed: {:?}", report.errors);
    let app = router(AppState {
        node: node.clone(),
        admin_token: token.map(str::to_string),
        cors_origins: Vec::new(),
    });
    Ok(Fixture {
        _db: db,
        client,
        node,
        app,
        _gateway: gateway,
    })
}
