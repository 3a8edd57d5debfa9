//! The sync commands: `sync`, `status`, `conflicts`, `log`, `verify`, `resync`.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use outpost_core::config::Config;
use outpost_core::schema::Table;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, Policy, Progress, SyncOptions};
use outpost_local::{ConflictEntry, Replica, Resolution};
use serde_json::json;

use crate::print;

/// `outpost conflicts …`
#[derive(Debug, Subcommand)]
pub enum ConflictAction {
    /// Every row in conflict.
    List,
    /// One conflict: base, local and server side by side.
    Show {
        /// The model (table).
        model: String,
        /// The row's key: `p1`, `7`, or a JSON array for composite keys.
        key: String,
    },
    /// Resolve one conflict; the next sync pushes the outcome.
    Resolve {
        /// The model (table).
        model: String,
        /// The row's key.
        key: String,
        /// Keep the local or the server version.
        #[arg(long, value_parser = ["local", "server"], conflicts_with = "merge")]
        keep: Option<String>,
        /// A merged row: a JSON object of the columns to set; the other
        /// columns come from the server's version.
        #[arg(long, value_name = "JSON")]
        merge: Option<String>,
    },
}

fn open_engine(config: &Config) -> anyhow::Result<Engine> {
    if !config.enable_local_database {
        bail!("ENABLE_LOCAL_DATABASE is false: there is no local replica");
    }
    let replica = Replica::open(&config.local_database_path)?;
    Ok(Engine::new(replica, config.clone()))
}

/// An unknown model name is an error, never an empty answer.
fn known_model(engine: &Engine, model: &str) -> anyhow::Result<()> {
    let schema = engine.schema();
    if schema.table(model).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    bail!(
        "unknown model {model:?}: the replica has {}",
        if names.is_empty() {
            "no models".to_string()
        } else {
            names.join(", ")
        }
    )
}

fn row_json(table: &Table, row: &Option<Vec<Value>>) -> serde_json::Value {
    match row {
        None => serde_json::Value::Null,
        Some(values) => serde_json::Value::Object(
            table
                .columns
                .iter()
                .zip(values)
                .map(|(c, v)| (c.name.clone(), v.to_json(&c.ty)))
                .collect(),
        ),
    }
}

fn conflict_json(engine: &Engine, c: &ConflictEntry) -> serde_json::Value {
    let schema = engine.schema();
    let Some(table) = schema.table(&c.table) else {
        return json!({"model": c.table, "key": c.pk});
    };
    let mut out = json!({
        "model": c.table,
        "key": serde_json::from_str::<serde_json::Value>(&c.pk).unwrap_or(serde_json::Value::Null),
        "base": row_json(table, &c.base),
        "local": row_json(table, &c.local),
        "server": row_json(table, &c.server),
        "serverVersion": c.server_version,
        "changedAt": c.changed_at,
    });
    if let (Some(problem), Some(obj)) = (&c.local_problem, out.as_object_mut()) {
        obj.insert("localProblem".into(), json!(problem));
    }
    out
}

pub async fn sync(
    config: &Config,
    direction: Direction,
    models: Vec<String>,
    policies: &[(String, Policy)],
    json_mode: bool,
) -> anyhow::Result<()> {
    let engine = open_engine(config)?;
    for (model, policy) in policies {
        engine.set_policy(model, *policy)?;
    }
    let mut options = SyncOptions::new(direction, Trigger::Manual);
    if !models.is_empty() {
        options.models = Some(models);
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    if let Some(bar) = bar.clone() {
        options.progress = Some(Arc::new(move |p: Progress| match p {
            Progress::Bootstrap {
                table,
                rows,
                total,
                rows_per_sec,
            } => bar.set_message(format!(
                "bootstrap {table}: {rows}/{total} rows ({rows_per_sec:.0} rows/s)"
            )),
            Progress::Push { rows } => bar.set_message(format!("push: {rows} rows sent")),
            Progress::Pull { changes } => {
                bar.set_message(format!("pull: {changes} changes applied"))
            }
        }));
    }
    let report = engine.sync(options).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print(json_mode, serde_json::to_value(&report)?, || {
        let mut out = String::new();
        for (model, s) in &report.results {
            out.push_str(&format!(
                "{model}: {} processed, {} succeeded, {} failed, {} conflicts\n",
                s.records_processed, s.records_succeeded, s.records_failed, s.conflicts
            ));
        }
        if report.bootstrapped {
            out.push_str("(the replica was bootstrapped from the server)\n");
        }
        out.trim_end().to_string()
    });
    if !report.success {
        let reasons: Vec<String> = report
            .errors
            .values()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        bail!("sync {} failed: {}", report.direction, reasons.join("; "));
    }
    Ok(())
}

pub async fn status(config: &Config, json_mode: bool) -> anyhow::Result<()> {
    let engine = open_engine(config)?;
    let status = engine.status().await?;
    // The server part is best effort: the status works offline.
    let server = match tokio::time::timeout(Duration::from_secs(5), engine.horizon_age()).await {
        Ok(Ok(age)) => {
            json!({"reachable": true, "oldestOpenTransactionSecs": age.map(|d| d.as_secs_f64())})
        }
        Ok(Err(e)) => json!({"reachable": false, "error": e.to_string()}),
        Err(_) => json!({"reachable": false, "error": "no answer within 5s"}),
    };
    // The mode the node keeps in the replica (the page's or the API's
    // choice); `auto` until someone picks another.
    let mode = engine
        .with_replica(|r| r.setting("mode"))
        .await?
        .unwrap_or_else(|| "auto".into());
    let mut value = serde_json::to_value(&status)?;
    value["server"] = server.clone();
    value["mode"] = json!(mode);
    print(json_mode, value, || {
        let mut out = String::new();
        out.push_str(&format!(
            "mode: {mode} ({})\n",
            match mode.as_str() {
                "local" => "reads and writes go to the local replica",
                "remote" => "reads and writes go to the server",
                _ => "the server while it answers, the local replica while it does not",
            }
        ));
        if server["reachable"] == true {
            out.push_str("server: online");
            if let Some(age) = server["oldestOpenTransactionSecs"].as_f64() {
                out.push_str(&format!(
                    "; an open transaction ({age:.1}s old) holds back changes committed after it started"
                ));
            }
            out.push('\n');
        } else {
            out.push_str(&format!(
                "server: offline ({})\n",
                server["error"].as_str().unwrap_or("no answer")
            ));
        }
        match &status.last_success {
            Some(l) => out.push_str(&format!(
                "last successful sync: {}\n",
                l.completed_at.as_deref().unwrap_or(&l.started_at)
            )),
            None => out.push_str("last successful sync: never\n"),
        }
        if let Some(l) = &status.last_sync
            && l.status != "SUCCESS"
        {
            out.push_str(&format!(
                "last attempt: {} {}, {}\n",
                l.completed_at.as_deref().unwrap_or(&l.started_at),
                l.direction.to_lowercase().replace('_', " "),
                match (&l.status[..], &l.error) {
                    ("RUNNING", _) => "still running".to_string(),
                    ("INTERRUPTED", _) => {
                        "interrupted: its process stopped before it finished".to_string()
                    }
                    (_, Some(e)) => format!("failed: {e}"),
                    _ => "failed".to_string(),
                }
            ));
        }
        match status.state {
            outpost_local::sync::ReplicaState::Ready => {}
            outpost_local::sync::ReplicaState::Empty => out.push_str(
                "the replica has not been filled from the server yet: run `outpost sync`\n",
            ),
            outpost_local::sync::ReplicaState::Bootstrapping => out.push_str(
                "the first copy from the server was interrupted: run `outpost sync` to finish it\n",
            ),
        }
        out.push_str(&format!(
            "local changes not yet pushed: {}; conflicts: {}; rows the server refused: {}",
            status.pending, status.conflicts, status.failed
        ));
        for (model, counts) in &status.models {
            let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push_str(&format!("\n  {model}: {}", parts.join(", ")));
        }
        out
    });
    Ok(())
}

pub async fn conflicts(
    config: &Config,
    action: ConflictAction,
    json_mode: bool,
) -> anyhow::Result<()> {
    let engine = open_engine(config)?;
    match action {
        ConflictAction::List => {
            let list = engine.conflicts().await?;
            let value: Vec<serde_json::Value> =
                list.iter().map(|c| conflict_json(&engine, c)).collect();
            print(json_mode, json!(value), || {
                if list.is_empty() {
                    return "no conflicts".into();
                }
                list.iter()
                    .map(|c| format!("{} {}", c.table, c.pk))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ConflictAction::Show { model, key } => {
            let pk = engine.local_key_from_text(&model, &key).await?;
            let list = engine.conflicts().await?;
            let Some(c) = list.iter().find(|c| c.table == model && c.pk == pk) else {
                bail!("no conflict on {model} {pk}");
            };
            let value = conflict_json(&engine, c);
            print(json_mode, value.clone(), || {
                let mut out = match c.server_version {
                    Some(v) => format!("{model} {pk} (server version {v})\n"),
                    None => format!("{model} {pk} (deleted on the server)\n"),
                };
                if let Some(table) = engine.schema().table(&model) {
                    let cell = |side: &str, col: &str| -> String {
                        match &value[side] {
                            serde_json::Value::Null => "(deleted)".into(),
                            row => row[col].to_string(),
                        }
                    };
                    out.push_str(&format!(
                        "{:<20} {:<24} {:<24} {:<24}\n",
                        "column", "base", "local", "server"
                    ));
                    for col in &table.columns {
                        out.push_str(&format!(
                            "{:<20} {:<24} {:<24} {:<24}\n",
                            col.name,
                            cell("base", &col.name),
                            cell("local", &col.name),
                            cell("server", &col.name)
                        ));
                    }
                }
                out.trim_end().to_string()
            });
        }
        ConflictAction::Resolve {
            model,
            key,
            keep,
            merge,
        } => {
            let pk = engine.local_key_from_text(&model, &key).await?;
            let resolution = match (keep.as_deref(), merge) {
                (Some("local"), None) => Resolution::KeepLocal,
                (Some("server"), None) => Resolution::KeepServer,
                (None, Some(merge)) => {
                    let obj: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(&merge)
                            .context("--merge must be a JSON object of column values")?;
                    let list = engine.conflicts().await?;
                    let c = list
                        .iter()
                        .find(|c| c.table == model && c.pk == pk)
                        .with_context(|| format!("no conflict on {model} {pk}"))?;
                    engine.merged_resolution(&model, c, &obj)?
                }
                _ => bail!(
                    "say how to resolve: --keep local, --keep server, or --merge '{{\"column\": value}}'"
                ),
            };
            engine.resolve(&model, &pk, resolution).await?;
            print(
                json_mode,
                json!({"resolved": true, "model": model, "key": pk}),
                || format!("resolved {model} {pk}; the next sync pushes it"),
            );
        }
    }
    Ok(())
}

pub async fn log(
    config: &Config,
    model: Option<String>,
    limit: i64,
    json_mode: bool,
) -> anyhow::Result<()> {
    let engine = open_engine(config)?;
    if let Some(m) = &model {
        known_model(&engine, m)?;
    }
    let entries = engine.log(model, limit.clamp(1, 10_000), 0).await?;
    print(json_mode, serde_json::to_value(&entries)?, || {
        entries
            .iter()
            .map(|l| {
                format!(
                    "#{} {} {} {} ({}) {} processed {} ok {} failed {} conflicts{}",
                    l.id,
                    l.started_at,
                    l.model,
                    l.direction,
                    l.trigger,
                    l.records_processed,
                    l.records_succeeded,
                    l.records_failed,
                    l.conflicts,
                    l.error
                        .as_deref()
                        .map(|e| format!(" — {e}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub async fn serve(config: &Config, host: std::net::IpAddr, port: u16) -> anyhow::Result<()> {
    serve_with(config, host, Some(port), shutdown_signal(), |addr| {
        eprintln!("outpost serving on http://{addr}");
    })
    .await
}

/// The node and its HTTP API until `shutdown` completes (`serve`, `demo`).
/// `port: None` means 3000, or a free port if 3000 is taken. `listening`
/// is called with the bound address before the first request is served.
pub async fn serve_with(
    config: &Config,
    host: std::net::IpAddr,
    port: Option<u16>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let token = std::env::var("OUTPOST_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    if !host.is_loopback() && token.is_none() {
        bail!(
            "binding to {host} exposes the admin and model API beyond this machine: set OUTPOST_ADMIN_TOKEN \
             (clients send it as `Authorization: Bearer <token>`), or bind to 127.0.0.1"
        );
    }
    if token.as_ref().is_some_and(|t| t.len() < 16) {
        bail!("OUTPOST_ADMIN_TOKEN is too short: use at least 16 characters");
    }
    let cors_origins: Vec<String> = std::env::var("OUTPOST_CORS_ORIGINS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect()
        })
        .unwrap_or_default();
    // Bind before opening the node, so a taken port fails fast.
    let listener = match port {
        Some(port) => tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?,
        None => match tokio::net::TcpListener::bind((host, 3000)).await {
            Ok(l) => l,
            Err(_) => tokio::net::TcpListener::bind((host, 0))
                .await
                .with_context(|| format!("binding {host}"))?,
        },
    };
    let node = outpost_engine::Outpost::open(config.clone()).await?;
    let app = outpost_http::router(outpost_http::AppState {
        node: node.clone(),
        admin_token: token,
        cors_origins,
    });
    listening(listener.local_addr()?);
    let served = outpost_http::serve(listener, app, shutdown)
        .await
        .context("serving HTTP");
    // Stop the monitor; a running sync commits or rolls back whole first.
    node.shutdown().await;
    served
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `outpost verify`: compares the replica with the server; exits 1 when a
/// row differs (local changes not yet pushed are listed, not counted).
pub async fn verify(config: &Config, models: Vec<String>, json_mode: bool) -> anyhow::Result<()> {
    let engine = open_engine(config)?;
    for m in &models {
        known_model(&engine, m)?;
    }
    let report = engine
        .verify((!models.is_empty()).then_some(models))
        .await?;
    print(json_mode, serde_json::to_value(&report)?, || {
        let mut out = String::new();
        for m in &report.models {
            out.push_str(&format!(
                "{}: {} local rows, {} server rows, {} differing, {} with local changes\n",
                m.model,
                m.local_rows,
                m.server_rows,
                m.differences.len(),
                m.pending.len()
            ));
            for d in &m.differences {
                out.push_str(&format!("  differs {} ({})\n", d.key, d.columns.join(", ")));
                let side = |r: &Option<serde_json::Value>| {
                    r.as_ref()
                        .map_or_else(|| "(missing)".to_string(), |v| v.to_string())
                };
                out.push_str(&format!("    local:  {}\n", side(&d.local)));
                out.push_str(&format!("    server: {}\n", side(&d.server)));
            }
            if m.unexamined_buckets > 0 {
                out.push_str(&format!(
                    "  and {} more buckets of rows differ, not compared (the gateway sends at most 10,000 rows a table)\n",
                    m.unexamined_buckets
                ));
            }
            for p in &m.pending {
                out.push_str(&format!(
                    "  local change {} {}{}\n",
                    p.key,
                    p.status,
                    if p.deleted { " (deleted)" } else { "" }
                ));
            }
        }
        if report.consistent {
            out.push_str("the replica matches the server");
        } else {
            out.push_str(&format!(
                "{} rows differ; `outpost resync --model M` copies a model again",
                report.differences
            ));
        }
        out
    });
    if !report.consistent {
        let unexamined: usize = report.models.iter().map(|m| m.unexamined_buckets).sum();
        if unexamined > 0 {
            bail!(
                "{} rows differ from the server, and {unexamined} buckets of rows were not compared",
                report.differences
            );
        }
        bail!("{} rows differ from the server", report.differences);
    }
    Ok(())
}

/// `outpost resync --model M`: copies one model again, keeping its rows
/// with local changes.
pub async fn resync(config: &Config, model: &str, json_mode: bool) -> anyhow::Result<()> {
    let engine = open_engine(config)?;
    known_model(&engine, model)?;
    let report = engine.resync(model).await?;
    print(json_mode, serde_json::to_value(&report)?, || {
        if report.success {
            format!("{model} copied again from the server; rows with local changes kept")
        } else {
            String::new()
        }
    });
    if !report.success {
        let reasons: std::collections::BTreeSet<&String> = report.errors.values().collect();
        let reasons: Vec<&str> = reasons.into_iter().map(String::as_str).collect();
        bail!("resync of {model} failed: {}", reasons.join("; "));
    }
    Ok(())
}
