//! Creates work the same online and offline: the server's defaults the
//! replica can compute are computed in local mode, and a text key with no
//! default gets the same kind of generated id (UUIDv7) in both modes.

use outpost_engine::{Mode, NodeOptions, Outpost};
use outpost_testkit::TestDb;
use serde_json::{Value as Json, json};

mod common;

const SCHEMA: &str = r#"
CREATE TABLE "Note" (id text PRIMARY KEY DEFAULT gen_random_uuid()::text, body text NOT NULL,
  "createdAt" timestamptz NOT NULL DEFAULT now());
CREATE TABLE "Tag" (id text PRIMARY KEY, name text NOT NULL);
"#;

fn uuid_version(id: &Json) -> Option<usize> {
    uuid::Uuid::parse_str(id.as_str()?)
        .ok()
        .map(|u| u.get_version_num())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_without_an_id_work_in_every_mode() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = common::server(&db, SCHEMA).await?;
    let config = common::runtime_config(&db, "n", common::sync_addr(&db)?, &[])?;
    let node = Outpost::open_with(
        config,
        NodeOptions {
            monitor: false,
            ..NodeOptions::default()
        },
    )
    .await?;
    for mode in [Mode::Local, Mode::Remote] {
        node.set_mode(mode).await;
        let note: Json = node
            .model("Note")?
            .create(json!({"data": {"body": format!("in {mode:?}")}}))
            .await?;
        assert_eq!(
            uuid_version(&note["id"]),
            Some(4),
            "{mode:?}: gen_random_uuid()::text: {note}"
        );
        assert!(note["createdAt"].is_string(), "{mode:?}: now(): {note}");
        let tag: Json = node
            .model("Tag")?
            .create(json!({"data": {"name": format!("in {mode:?}")}}))
            .await?;
        assert_eq!(
            uuid_version(&tag["id"]),
            Some(7),
            "{mode:?}: a key without default: {tag}"
        );
    }
    // The local creates reach the server with their ids.
    node.set_mode(Mode::Auto).await;
    let report = node
        .sync(outpost_core::sync::Direction::Bidirectional)
        .await?;
    assert!(report.success, "{:?}", report.errors);
    let n: i64 = client
        .query_one(r#"SELECT count(*) FROM "Note""#, &[])
        .await?
        .get(0);
    let t: i64 = client
        .query_one(r#"SELECT count(*) FROM "Tag""#, &[])
        .await?
        .get(0);
    assert_eq!((n, t), (2, 2));
    node.shutdown().await;
    Ok(())
}
