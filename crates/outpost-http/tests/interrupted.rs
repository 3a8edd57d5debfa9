//! A sync run killed mid-way leaves its `SyncLog` rows `RUNNING`; the next
//! node to open the replica closes them as `INTERRUPTED`, and the status
//! API and the Database Sync Manager page say so instead of "running".

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use outpost_engine::{NodeOptions, Outpost};
use outpost_http::{AppState, router};
use outpost_local::rusqlite;
use tower::ServiceExt;

mod common;
use common::*;

async fn get(app: &Router, uri: &str) -> anyhow::Result<(StatusCode, String)> {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty())?)
        .await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok((status, String::from_utf8(bytes.to_vec())?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_shows_as_interrupted_after_the_node_restarts() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let path = f._db.dir().join("node.db");
    // What a process killed mid-run leaves behind: its rows opened, never
    // closed, and no run lock held (the process is gone).
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch(
            r#"INSERT INTO "SyncLog" (model, direction, trigger, status, "startedAt")
               VALUES ('User', 'BIDIRECTIONAL', 'manual', 'RUNNING', '2026-12-05T08:00:00.000Z'),
                      ('Post', 'BIDIRECTIONAL', 'manual', 'RUNNING', '2026-12-05T08:00:00.000Z')"#,
        )?;
    }
    // The node starts again on the same file.
    let url = f._db.database_url();
    let local = format!("file:{}", path.display());
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
    let app = router(AppState {
        node,
        admin_token: None,
        cors_origins: Vec::new(),
    });

    let (status, body) = get(&app, "/api/database/status").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(s["lastAttempt"]["status"], "INTERRUPTED", "{s}");
    assert!(
        s["lastAttempt"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("interrupted: the process running this sync stopped")),
        "{s}"
    );
    // The first sync of the fixture stays the last successful one.
    assert!(!s["lastSyncAt"].is_null(), "{s}");

    let (status, body) = get(&app, "/api/database/log?limit=5").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let log: serde_json::Value = serde_json::from_str(&body)?;
    let statuses: Vec<&str> = log["entries"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(&statuses[..2], ["INTERRUPTED", "INTERRUPTED"], "{log}");
    assert!(!statuses.contains(&"RUNNING"), "{log}");

    let (status, html) = get(&app, "/admin/database-sync").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("interrupted: its process stopped before it finished"),
        "the page says the last attempt was interrupted"
    );
    Ok(())
}
