//! `GET /metrics`: gauges from the node's status, Prometheus text format.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;
use crate::error::ApiError;

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

pub(crate) async fn handler(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let status = state.node.status().await;
    let engine = state.node.engine().status().await?;
    let mut out = String::new();
    gauge(
        &mut out,
        "outpost_online",
        "1 when the server is reachable.",
        i64::from(status.is_online),
    );
    gauge(
        &mut out,
        "outpost_local_db_connected",
        "1 when the replica can be read.",
        i64::from(status.local_db_connected),
    );
    gauge(
        &mut out,
        "outpost_remote_db_connected",
        "1 when a server connection is open.",
        i64::from(status.remote_db_connected),
    );
    gauge(
        &mut out,
        "outpost_using_local_database",
        "1 when operations go to the replica.",
        i64::from(status.using_local_database),
    );
    gauge(
        &mut out,
        "outpost_pending_changes",
        "Local changes not yet pushed.",
        status.pending,
    );
    gauge(
        &mut out,
        "outpost_conflicts",
        "Rows in conflict.",
        status.conflicts,
    );
    gauge(
        &mut out,
        "outpost_failed",
        "Rows the server refused.",
        status.failed,
    );
    for (key, name, help) in [
        (
            "pending",
            "outpost_model_pending_changes",
            "Local changes not yet pushed, per model.",
        ),
        (
            "conflicts",
            "outpost_model_conflicts",
            "Rows in conflict, per model.",
        ),
        (
            "failed",
            "outpost_model_failed",
            "Rows the server refused, per model.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for table in &state.node.engine().schema().tables {
            let n = engine
                .models
                .get(&table.name)
                .and_then(|m| m.get(key))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {n}", escape(&table.name));
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}
