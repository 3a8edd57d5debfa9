//! The handlers of [`crate::ROUTES`].

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use outpost_core::schema::Table;
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{ChangeEntry, ChangePage, ConflictEntry, Resolution};
use outpost_engine::{Mode, Operation, SyncOptions};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;

type ApiResult = Result<axum::Json<Json>, ApiError>;

fn table(state: &AppState, model: &str) -> Result<Table, ApiError> {
    // A copy: the node reloads its schema when another process changes the
    // replica's snapshot.
    let schema = state.node.engine().schema();
    schema.table(model).cloned().ok_or_else(|| {
        let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
        ApiError::not_found(
            "unknown_model",
            format!("unknown model {model:?} (models: {})", names.join(", ")),
        )
    })
}

// ---- status and sync ----------------------------------------------------------

pub(crate) async fn status(State(state): State<AppState>) -> ApiResult {
    let s = state.node.status().await;
    // The last success and the last attempt are different facts: a failed
    // attempt does not make the replica any less recent.
    let engine_status = state.node.engine().status().await?;
    let lag = state.node.engine().cursor_age().await?;
    let last_sync_at = engine_status
        .last_success
        .as_ref()
        .and_then(|l| l.completed_at.clone());
    let last_attempt = engine_status.last_sync.as_ref().map(|l| {
        json!({
            "at": l.completed_at.clone().unwrap_or_else(|| l.started_at.clone()),
            "status": l.status,
            "direction": l.direction,
            "trigger": l.trigger,
            "error": l.error,
        })
    });
    Ok(axum::Json(json!({
        "isOnline": s.is_online,
        "localDbConnected": s.local_db_connected,
        "remoteDbConnected": s.remote_db_connected,
        "timestamp": s.timestamp,
        "mode": s.mode,
        "usingLocalDatabase": s.using_local_database,
        "pendingChanges": s.pending,
        "conflicts": s.conflicts,
        "failed": s.failed,
        "lastSyncAt": last_sync_at,
        "lastAttempt": last_attempt,
        // Seconds since the pull cursor last moved; null before the first pull.
        "replicationLagSeconds": lag.map(|d| d.as_secs_f64()),
        // The run under way (direction, phase, rows so far), for live progress.
        "syncing": state.node.engine().progress(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncBody {
    direction: Option<String>,
    models: Option<Vec<String>>,
}

pub(crate) async fn trigger_sync(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SyncBody>,
) -> ApiResult {
    let direction = match body.direction.as_deref() {
        None => Direction::Bidirectional,
        Some(d) => Direction::from_str(d)
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "unknown_direction", m))?,
    };
    if let Some(models) = &body.models {
        for m in models {
            table(&state, m).map_err(|e| ApiError {
                status: StatusCode::BAD_REQUEST,
                ..e
            })?;
        }
    }
    let mut options = SyncOptions::new(direction, Trigger::Manual);
    options.models = body.models;
    let report = state.node.sync_with(options).await?;
    serde_json::to_value(report)
        .map(axum::Json)
        .map_err(|e| ApiError::internal(&e))
}

// ---- mode -------------------------------------------------------------------

fn mode_json(state: &AppState) -> Json {
    json!({ "mode": state.node.mode(), "usingLocalDatabase": state.node.using_local() })
}

pub(crate) async fn get_mode(State(state): State<AppState>) -> ApiResult {
    Ok(axum::Json(mode_json(&state)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeBody {
    mode: String,
}

pub(crate) async fn put_mode(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ModeBody>,
) -> ApiResult {
    let mode = Mode::from_str(&body.mode)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "unknown_mode", m))?;
    state.node.set_mode(mode).await;
    Ok(axum::Json(mode_json(&state)))
}

// ---- models -------------------------------------------------------------------

pub(crate) async fn models(State(state): State<AppState>) -> ApiResult {
    let engine = state.node.engine();
    let status = engine.status().await?;
    let mut out = Vec::new();
    for t in &engine.schema().tables {
        let counts = status.models.get(&t.name);
        let count = |k: &str| counts.and_then(|c| c.get(k)).copied().unwrap_or(0);
        let last = engine
            .log(Some(t.name.clone()), 1, 0)
            .await?
            .into_iter()
            .next();
        let name = t.name.clone();
        let manual = engine
            .with_replica(move |r| r.last_sync_by(&name, "manual"))
            .await?;
        out.push(json!({
            "model": t.name,
            "pending": count("pending"),
            "conflicts": count("conflicts"),
            "failed": count("failed"),
            "lastSync": last,
            // The user's own last run: automatic runs after it do not hide it.
            "lastManualSync": manual,
        }));
    }
    Ok(axum::Json(json!({ "models": out })))
}

// ---- conflicts ----------------------------------------------------------------

fn row_json(table: &Table, row: Option<&Vec<Value>>) -> Json {
    match row {
        None => Json::Null,
        Some(values) => Json::Object(
            table
                .columns
                .iter()
                .zip(values)
                .map(|(c, v)| (c.name.clone(), v.to_json(&c.ty)))
                .collect(),
        ),
    }
}

/// A replica row key (`["u0"]`) as JSON; the text itself if it is not JSON.
fn key_json(pk: &str) -> Json {
    serde_json::from_str(pk).unwrap_or_else(|_| Json::String(pk.to_string()))
}

fn conflict_json(state: &AppState, c: &ConflictEntry) -> Json {
    let key = key_json(&c.pk);
    let mut out = json!({
        "model": c.table,
        "key": key,
        "serverVersion": c.server_version,
        "changedAt": c.changed_at,
    });
    if let (Some(t), Some(obj)) = (
        state.node.engine().schema().table(&c.table),
        out.as_object_mut(),
    ) {
        obj.insert("base".into(), row_json(t, c.base.as_ref()));
        obj.insert("local".into(), row_json(t, c.local.as_ref()));
        obj.insert("server".into(), row_json(t, c.server.as_ref()));
    }
    if let (Some(problem), Some(obj)) = (&c.local_problem, out.as_object_mut()) {
        obj.insert("localProblem".into(), Json::String(problem.clone()));
    }
    out
}

pub(crate) async fn conflicts(State(state): State<AppState>) -> ApiResult {
    let list = state.node.conflicts().await?;
    let out: Vec<Json> = list.iter().map(|c| conflict_json(&state, c)).collect();
    Ok(axum::Json(json!({ "conflicts": out })))
}

/// The replica's row key for a key from the URL: JSON (`["a",1]`, `7`,
/// `"p1"`) or, when that does not fit, the plain string.
async fn local_key(state: &AppState, model: &str, key: &str) -> Result<String, ApiError> {
    table(state, model)?;
    state
        .node
        .engine()
        .local_key_from_text(model, key)
        .await
        .map_err(|e| match e {
            outpost_engine::EngineError::Config(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_key", m)
            }
            other => other.into(),
        })
}

async fn find_conflict(
    state: &AppState,
    model: &str,
    key: &str,
) -> Result<(String, ConflictEntry), ApiError> {
    let pk = local_key(state, model, key).await?;
    let entry = state
        .node
        .conflicts()
        .await?
        .into_iter()
        .find(|c| c.table == model && c.pk == pk)
        .ok_or_else(|| {
            ApiError::not_found("no_conflict", format!("{model} {key} is not in conflict"))
        })?;
    Ok((pk, entry))
}

pub(crate) async fn conflict(
    State(state): State<AppState>,
    Path((model, key)): Path<(String, String)>,
) -> ApiResult {
    let (_, entry) = find_conflict(&state, &model, &key).await?;
    Ok(axum::Json(conflict_json(&state, &entry)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveBody {
    keep: Option<String>,
    merged: Option<Map<String, Json>>,
}

pub(crate) async fn resolve(
    State(state): State<AppState>,
    Path((model, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> ApiResult {
    let (pk, entry) = find_conflict(&state, &model, &key).await?;
    let resolution = match (body.keep.as_deref(), body.merged) {
        (Some("local"), None) => Resolution::KeepLocal,
        (Some("server"), None) => Resolution::KeepServer,
        (Some(other), None) => {
            return Err(ApiError::bad_request(format!(
                "unknown keep {other:?}: expected \"local\" or \"server\""
            )));
        }
        (None, Some(merged)) => state
            .node
            .engine()
            .merged_resolution(&model, &entry, &merged)
            // A bad merged row is a bad body, as the other shapes are.
            .map_err(|e| match e.kind() {
                outpost_engine::ErrorKind::BadInput => ApiError::bad_request(e.to_string()),
                _ => ApiError::from(e),
            })?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of {\"keep\": \"local\"|\"server\"} or {\"merged\": {column: value}}",
            ));
        }
    };
    state.node.resolve(&model, &pk, resolution).await?;
    Ok(axum::Json(
        json!({ "resolved": true, "model": model, "key": conflict_json(&state, &entry)["key"] }),
    ))
}

// ---- log, pending changes and failed rows ------------------------------------

/// The paging and filter parameters of the list endpoints: `model` (checked
/// against the schema), `limit` (0 to 1000, default 50) and `offset`.
struct Paging {
    model: Option<String>,
    limit: i64,
    offset: i64,
}

impl Paging {
    fn parse(state: &AppState, params: &HashMap<String, String>) -> Result<Paging, ApiError> {
        if let Some(unknown) = params
            .keys()
            .find(|k| !matches!(k.as_str(), "model" | "limit" | "offset"))
        {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {unknown:?} (parameters: model, limit, offset)"
            )));
        }
        let number = |name: &str, default: i64, max: i64| -> Result<i64, ApiError> {
            match params.get(name) {
                None => Ok(default),
                Some(s) => match s.parse::<i64>() {
                    Ok(n) if (0..=max).contains(&n) => Ok(n),
                    _ => Err(ApiError::bad_request(format!(
                        "{name} must be an integer from 0 to {max}; got {s:?}"
                    ))),
                },
            }
        };
        let limit = number("limit", 50, 1000)?;
        let offset = number("offset", 0, i64::MAX)?;
        let model = match params.get("model").filter(|m| !m.is_empty()) {
            Some(m) => Some(
                table(state, m)
                    .map_err(|e| ApiError {
                        status: StatusCode::BAD_REQUEST,
                        ..e
                    })?
                    .name
                    .clone(),
            ),
            None => None,
        };
        Ok(Paging {
            model,
            limit,
            offset,
        })
    }
}

pub(crate) async fn log(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let p = Paging::parse(&state, &params)?;
    let engine = state.node.engine();
    let entries = engine.log(p.model.clone(), p.limit, p.offset).await?;
    let total = engine.log_count(p.model).await?;
    Ok(axum::Json(json!({
        "entries": entries,
        "total": total,
        "limit": p.limit,
        "offset": p.offset,
    })))
}

/// A pending or failed row: model, key, operation, the local row, when.
fn change_json(state: &AppState, c: &ChangeEntry) -> Json {
    let values = state
        .node
        .engine()
        .schema()
        .table(&c.table)
        .map_or(Json::Null, |t| row_json(t, c.values.as_ref()));
    let mut out = json!({
        "model": c.table,
        "key": key_json(&c.pk),
        "operation": c.kind,
        "values": values,
        "changedAt": c.changed_at,
        "localSeq": c.local_seq,
    });
    if let (Some(error), Some(obj)) = (&c.error, out.as_object_mut()) {
        obj.insert("error".into(), Json::String(error.clone()));
    }
    out
}

fn page_json(state: &AppState, field: &str, page: &ChangePage, p: &Paging) -> Json {
    let list: Vec<Json> = page.entries.iter().map(|c| change_json(state, c)).collect();
    let mut out = Map::new();
    out.insert(field.into(), Json::Array(list));
    out.insert("total".into(), json!(page.total));
    out.insert("limit".into(), json!(p.limit));
    out.insert("offset".into(), json!(p.offset));
    Json::Object(out)
}

pub(crate) async fn pending(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let p = Paging::parse(&state, &params)?;
    let page = state
        .node
        .engine()
        .pending_changes(p.model.clone(), p.limit, p.offset)
        .await?;
    Ok(axum::Json(page_json(&state, "changes", &page, &p)))
}

pub(crate) async fn failed(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let p = Paging::parse(&state, &params)?;
    let page = state
        .node
        .engine()
        .failed_changes(p.model.clone(), p.limit, p.offset)
        .await?;
    Ok(axum::Json(page_json(&state, "failed", &page, &p)))
}

fn no_failed_row(model: &str, key: &str) -> ApiError {
    ApiError::not_found(
        "no_failed_row",
        format!("{model} {key} is not a FAILED row"),
    )
}

/// The body of an action without arguments: empty or `{}` (with
/// `Content-Type: application/json`, which every write needs).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoArguments {}

pub(crate) async fn retry(
    State(state): State<AppState>,
    Path((model, key)): Path<(String, String)>,
    ApiJson(NoArguments {}): ApiJson<NoArguments>,
) -> ApiResult {
    let pk = local_key(&state, &model, &key).await?;
    if !state.node.retry_failed(&model, &pk).await? {
        return Err(no_failed_row(&model, &key));
    }
    Ok(axum::Json(
        json!({ "retried": true, "model": model, "key": key_json(&pk) }),
    ))
}

pub(crate) async fn discard(
    State(state): State<AppState>,
    Path((model, key)): Path<(String, String)>,
    ApiJson(NoArguments {}): ApiJson<NoArguments>,
) -> ApiResult {
    let pk = local_key(&state, &model, &key).await?;
    let discarded = state
        .node
        .discard_failed(&model, &pk)
        .await?
        .ok_or_else(|| no_failed_row(&model, &key))?;
    let t = table(&state, &model)?;
    Ok(axum::Json(json!({
        "discarded": true,
        "model": model,
        "key": key_json(&pk),
        "row": row_json(&t, discarded.row.as_ref()),
        "serverVersion": discarded.server_version,
    })))
}

// ---- the model service --------------------------------------------------------

pub(crate) async fn model_operation(
    State(state): State<AppState>,
    Path((model, operation)): Path<(String, String)>,
    ApiJson(args): ApiJson<Json>,
) -> Result<axum::Json<outpost_engine::ModelOutput>, ApiError> {
    table(&state, &model)?;
    let operation = Operation::from_str(&operation)
        .map_err(|e| ApiError::not_found("unknown_operation", e.to_string()))?;
    if !args.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the body must be Prisma's argument object (a JSON object)",
        ));
    }
    let service = state.node.model(&model)?;
    // Reads are written from their rows, without JSON records in between.
    Ok(axum::Json(service.run_output(operation, args).await?))
}

// ---- verify and resync ----------------------------------------------------------

/// `GET /api/database/verify?model=M`: the replica compared with the server
/// (every model without `model`; an empty `model=` too).
pub(crate) async fn verify(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    if let Some(unknown) = params.keys().find(|k| k.as_str() != "model") {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {unknown:?} (parameters: model)"
        )));
    }
    let models = match params.get("model").filter(|m| !m.is_empty()) {
        Some(m) => Some(vec![
            table(&state, m)
                .map_err(|e| ApiError {
                    status: StatusCode::BAD_REQUEST,
                    ..e
                })?
                .name
                .clone(),
        ]),
        None => None,
    };
    let report = state.node.verify(models).await?;
    serde_json::to_value(report)
        .map(axum::Json)
        .map_err(|e| ApiError::internal(&e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResyncBody {
    model: String,
}

/// `POST /api/database/resync` `{model}`: copies one model again, keeping
/// its rows with local changes; answers the pull-only sync's report.
pub(crate) async fn resync(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResyncBody>,
) -> ApiResult {
    let model = table(&state, &body.model)
        .map_err(|e| ApiError {
            status: StatusCode::BAD_REQUEST,
            ..e
        })?
        .name
        .clone();
    let report = state.node.resync(&model).await?;
    serde_json::to_value(report)
        .map(axum::Json)
        .map_err(|e| ApiError::internal(&e))
}
