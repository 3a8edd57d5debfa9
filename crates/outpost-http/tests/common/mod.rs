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
    let url = db.database_url();
    let config = outpost_core::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "LOCAL_DATABASE_URL" => Some(local.clone()),
        "LOCAL_DATABASE_SYNC_INTERVAL" => Some("0".into()),
        _ => None,
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
    })
}
