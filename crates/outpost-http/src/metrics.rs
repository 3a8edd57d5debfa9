//! `GET /metrics`, Prometheus text format: gauges from the node's status
//! (online, pending changes, conflicts, failed rows, per model too, the
//! replication lag) and the engine's counters of its sync runs (runs by
//! result, a duration histogram, rows pushed, pulled and copied, conflicts
//! and refused rows). The counters live in the engine
//! ([`outpost_engine::Engine::metrics`]) so every run counts, whoever started
//! it; they restart from zero with the node.

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

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// The engine's counters and the replication lag.
fn sync_metrics(
    out: &mut String,
    m: &outpost_engine::MetricsSnapshot,
    running: bool,
    lag: Option<std::time::Duration>,
) {
    let name = "outpost_sync_runs_total";
    let _ = writeln!(
        out,
        "# HELP {name} Sync runs finished, by result.\n# TYPE {name} counter\n{name}{{result=\"success\"}} {}\n{name}{{result=\"failure\"}} {}",
        m.runs_succeeded, m.runs_failed
    );
    let name = "outpost_sync_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long sync runs took.\n# TYPE {name} histogram"
    );
    for (le, n) in &m.duration_buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}",
        count = m.duration_count,
        sum = m.duration_sum_secs
    );
    gauge(
        out,
        "outpost_sync_running",
        "1 while a sync run is under way.",
        i64::from(running),
    );
    counter(
        out,
        "outpost_rows_pushed_total",
        "Rows the server took from pushes.",
        m.rows_pushed,
    );
    counter(
        out,
        "outpost_rows_pulled_total",
        "Server changes applied by pulls.",
        m.rows_pulled,
    );
    counter(
        out,
        "outpost_rows_bootstrapped_total",
        "Rows copied by bootstraps.",
        m.rows_bootstrapped,
    );
    counter(
        out,
        "outpost_sync_conflicts_total",
        "Rows sync runs left in conflict.",
        m.conflicts,
    );
    counter(
        out,
        "outpost_sync_failed_rows_total",
        "Rows the server refused during pushes.",
        m.failed,
    );
    // No sample before the first pull: there is no lag to speak of yet.
    if let Some(lag) = lag {
        let name = "outpost_replication_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds since the pull cursor last moved (the last full pull).\n# TYPE {name} gauge\n{name} {}",
            lag.as_secs_f64()
        );
    }
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
    let node_engine = state.node.engine();
    sync_metrics(
        &mut out,
        &node_engine.metrics(),
        node_engine.progress().is_some(),
        node_engine.cursor_age().await?,
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}
