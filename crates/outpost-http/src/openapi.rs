//! `GET /api/openapi.json`: an OpenAPI 3.1 document built from
//! [`crate::ROUTES`] and, when served by a node, from its schema.
//!
//! Every route has its request and response schemas, every error its
//! `Error` schema. With the node's models known, the model service's one
//! route `/api/models/{model}/{operation}` is written out as a concrete path
//! per model and operation (`/api/models/Post/findMany`), each with the
//! model's argument schema (`PostFindManyArgs`, `PostCreateInput`, …) and its
//! result (`Post`, `Post[]`, `BatchPayload`, …), so a client generated from
//! the document (`openapi-typescript`) is typed without casts.
//!
//! Records list their columns without `required`: a `select` returns only
//! the chosen fields, and the document holds for every answer. Precise
//! types per record, with `include` followed, come from `outpost generate
//! typescript`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use outpost_core::schema::{Column, RelationKind, Schema, Table};
use outpost_core::types::{ColumnType, ScalarType};
use outpost_engine::Operation;
use serde_json::{Map, Value as Json_, json};

use crate::{AppState, ROUTES};

/// The path of the model service's route, written out per model when the
/// models are known.
const MODEL_ROUTE: &str = "/api/models/{model}/{operation}";

/// Whether a concrete path matches a route pattern with `{param}` segments.
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
}

fn r(name: &str) -> Json_ {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn nullable(schema: Json_) -> Json_ {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn object(props: Json_, required: &[&str]) -> Json_ {
    json!({ "type": "object", "required": required, "properties": props })
}

fn int() -> Json_ {
    json!({ "type": "integer" })
}

fn string() -> Json_ {
    json!({ "type": "string" })
}

/// The schemas every document has, whatever the node's models.
fn common_schemas(models: &[String]) -> Map<String, Json_> {
    let model = model_schema(models);
    let direction =
        json!({ "type": "string", "enum": ["BIDIRECTIONAL", "TO_SERVER", "FROM_SERVER"] });
    let mode = json!({ "type": "string", "enum": ["auto", "local", "remote"] });
    let key =
        json!({ "description": "The row's key: its value, or an array for a composite key." });
    let row = json!({ "type": "object", "description": "A row in JSON form, column by column (docs/types.md)." });
    let paged = |field: &str, item: Json_| {
        object(
            json!({
                field: { "type": "array", "items": item },
                "total": int(), "limit": int(), "offset": int()
            }),
            &[field, "total", "limit", "offset"],
        )
    };
    let mut s = Map::new();
    s.insert(
        "Error".into(),
        object(
            json!({ "error": object(json!({ "code": string(), "message": string() }), &["code", "message"]) }),
            &["error"],
        ),
    );
    s.insert(
        "SyncProgress".into(),
        object(
            json!({
                "direction": direction.clone(), "trigger": string(),
                "phase": { "type": "string", "enum": ["connecting", "bootstrap", "push", "pull"] },
                "rows": int(), "table": nullable(string()), "startedAt": string()
            }),
            &[
                "direction",
                "trigger",
                "phase",
                "rows",
                "table",
                "startedAt",
            ],
        ),
    );
    s.insert(
        "DatabaseStatus".into(),
        object(
            json!({
                "isOnline": { "type": "boolean" },
                "localDbConnected": { "type": "boolean" },
                "remoteDbConnected": { "type": "boolean" },
                "timestamp": string(),
                "mode": mode.clone(),
                "usingLocalDatabase": { "type": "boolean" },
                "pendingChanges": int(),
                "conflicts": int(),
                "failed": int(),
                "lastSyncAt": nullable(string()),
                "lastAttempt": nullable(object(
                    json!({
                        "at": string(), "status": string(), "direction": string(),
                        "trigger": string(), "error": nullable(string())
                    }),
                    &["at", "status", "direction", "trigger", "error"],
                )),
                "replicationLagSeconds": nullable(json!({ "type": "number", "minimum": 0 })),
                "syncing": nullable(r("SyncProgress"))
            }),
            &[
                "isOnline",
                "localDbConnected",
                "remoteDbConnected",
                "timestamp",
                "mode",
                "usingLocalDatabase",
                "pendingChanges",
                "conflicts",
                "failed",
                "lastSyncAt",
                "syncing",
            ],
        ),
    );
    s.insert(
        "SyncRequest".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                // null reads as absent: both directions, every model.
                "direction": { "type": ["string", "null"], "enum": ["BIDIRECTIONAL", "TO_SERVER", "FROM_SERVER", null] },
                "models": { "type": ["array", "null"], "items": model }
            }
        }),
    );
    s.insert(
        "ModelStats".into(),
        object(
            json!({ "recordsProcessed": int(), "recordsSucceeded": int(), "recordsFailed": int(), "conflicts": int() }),
            &["recordsProcessed", "recordsSucceeded", "recordsFailed", "conflicts"],
        ),
    );
    s.insert(
        "SyncReport".into(),
        object(
            json!({
                "success": { "type": "boolean" },
                "results": { "type": "object", "additionalProperties": r("ModelStats") },
                "errors": { "type": "object", "additionalProperties": string() },
                "timestamp": string(),
                "direction": direction.clone(),
                "bootstrapped": { "type": "boolean" },
                "heldBack": { "type": "boolean" }
            }),
            &[
                "success",
                "results",
                "errors",
                "timestamp",
                "direction",
                "bootstrapped",
                "heldBack",
            ],
        ),
    );
    s.insert(
        "ModeRequest".into(),
        json!({ "type": "object", "additionalProperties": false, "required": ["mode"], "properties": { "mode": mode.clone() } }),
    );
    s.insert(
        "ModeState".into(),
        object(
            json!({ "mode": mode, "usingLocalDatabase": { "type": "boolean" } }),
            &["mode", "usingLocalDatabase"],
        ),
    );
    s.insert(
        "LogEntry".into(),
        object(
            json!({
                "id": int(), "model": string(), "direction": string(), "trigger": string(),
                "status": { "type": "string", "enum": ["RUNNING", "SUCCESS", "FAILED", "INTERRUPTED"] },
                "startedAt": string(), "completedAt": nullable(string()),
                "recordsProcessed": int(), "recordsSucceeded": int(), "recordsFailed": int(),
                "conflicts": int(), "error": nullable(string())
            }),
            &[
                "id",
                "model",
                "direction",
                "trigger",
                "status",
                "startedAt",
                "completedAt",
                "recordsProcessed",
                "recordsSucceeded",
                "recordsFailed",
                "conflicts",
                "error",
            ],
        ),
    );
    s.insert(
        "ModelSummary".into(),
        object(
            json!({ "model": string(), "pending": int(), "conflicts": int(), "failed": int(), "lastSync": nullable(r("LogEntry")) }),
            &["model", "pending", "conflicts", "failed", "lastSync"],
        ),
    );
    s.insert(
        "ModelList".into(),
        object(
            json!({ "models": { "type": "array", "items": r("ModelSummary") } }),
            &["models"],
        ),
    );
    s.insert("Row".into(), row);
    s.insert("Key".into(), key);
    s.insert(
        "Conflict".into(),
        object(
            json!({
                "model": string(), "key": r("Key"),
                "serverVersion": nullable(int()), "changedAt": nullable(string()),
                "base": nullable(r("Row")), "local": nullable(r("Row")), "server": nullable(r("Row")),
                "localProblem": string()
            }),
            &["model", "key", "serverVersion", "changedAt"],
        ),
    );
    s.insert(
        "ConflictList".into(),
        object(
            json!({ "conflicts": { "type": "array", "items": r("Conflict") } }),
            &["conflicts"],
        ),
    );
    // Exactly one of `keep` and `merged`.
    s.insert(
        "ResolveRequest".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "keep": { "type": "string", "enum": ["local", "server"] },
                "merged": r("Row")
            }
        }),
    );
    s.insert(
        "Resolved".into(),
        object(
            json!({ "resolved": { "type": "boolean" }, "model": string(), "key": r("Key") }),
            &["resolved", "model", "key"],
        ),
    );
    // `outpost verify` over HTTP: the engine's `VerifyReport`.
    s.insert(
        "RowDifference".into(),
        object(
            json!({
                "key": r("Row"), "local": nullable(r("Row")), "server": nullable(r("Row")),
                "columns": { "type": "array", "items": string() }
            }),
            &["key", "local", "server", "columns"],
        ),
    );
    s.insert(
        "VerifyPendingRow".into(),
        object(
            json!({
                "key": r("Row"),
                "status": { "type": "string", "enum": ["PENDING", "FAILED", "CONFLICT"] },
                "deleted": { "type": "boolean" }
            }),
            &["key", "status", "deleted"],
        ),
    );
    s.insert(
        "ModelVerify".into(),
        object(
            json!({
                "model": string(), "localRows": int(), "serverRows": int(),
                "differences": { "type": "array", "items": r("RowDifference") },
                "pending": { "type": "array", "items": r("VerifyPendingRow") },
                "rowsCompared": int(), "rounds": int(), "unexaminedBuckets": int()
            }),
            &[
                "model",
                "localRows",
                "serverRows",
                "differences",
                "pending",
                "rowsCompared",
                "rounds",
                "unexaminedBuckets",
            ],
        ),
    );
    s.insert(
        "VerifyReport".into(),
        object(
            json!({
                "consistent": { "type": "boolean" }, "differences": int(), "pending": int(),
                "models": { "type": "array", "items": r("ModelVerify") }
            }),
            &["consistent", "differences", "pending", "models"],
        ),
    );
    s.insert(
        "ResyncRequest".into(),
        json!({ "type": "object", "additionalProperties": false, "required": ["model"], "properties": { "model": model.clone() } }),
    );
    s.insert(
        "Change".into(),
        object(
            json!({
                "model": string(), "key": r("Key"),
                "operation": { "type": "string", "enum": ["insert", "update", "delete"] },
                "values": nullable(r("Row")), "changedAt": nullable(string()), "localSeq": nullable(int()),
                "error": string()
            }),
            &["model", "key", "operation", "values", "changedAt", "localSeq"],
        ),
    );
    s.insert("LogPage".into(), paged("entries", r("LogEntry")));
    s.insert("PendingPage".into(), paged("changes", r("Change")));
    s.insert("FailedPage".into(), paged("failed", r("Change")));
    s.insert(
        "Retried".into(),
        object(
            json!({ "retried": { "type": "boolean" }, "model": string(), "key": r("Key") }),
            &["retried", "model", "key"],
        ),
    );
    s.insert(
        "Discarded".into(),
        object(
            json!({
                "discarded": { "type": "boolean" }, "model": string(), "key": r("Key"),
                "row": nullable(r("Row")), "serverVersion": nullable(int())
            }),
            &["discarded", "model", "key", "row", "serverVersion"],
        ),
    );
    s.insert(
        "BatchPayload".into(),
        object(json!({ "count": int() }), &["count"]),
    );
    s.insert(
        "SyncStatus".into(),
        json!({ "type": "string", "enum": ["SYNCED", "PENDING", "CONFLICT", "FAILED"] }),
    );
    s.insert(
        "OpenApiDocument".into(),
        json!({ "type": "object", "required": ["openapi", "info", "paths"], "properties": {
            "openapi": string(), "info": { "type": "object" }, "paths": { "type": "object" }
        } }),
    );
    s
}

fn model_schema(models: &[String]) -> Json_ {
    if models.is_empty() {
        json!({ "type": "string" })
    } else {
        json!({ "type": "string", "enum": models })
    }
}

/// A component name made from a model name (`[A-Za-z0-9._-]` only).
fn component(model: &str) -> String {
    model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The JSON form of a column's element type, as read (docs/types.md).
fn scalar(schema: &Schema, s: &ScalarType) -> Json_ {
    match s {
        ScalarType::Bool => json!({ "type": "boolean" }),
        ScalarType::Int2 | ScalarType::Int4 => int(),
        // Beyond 2^53 a bigint is a string, to stay exact.
        ScalarType::Int8 => json!({ "type": ["integer", "string"] }),
        // Non-finite values are the strings "NaN", "Infinity", "-Infinity".
        ScalarType::Float4 | ScalarType::Float8 => json!({ "type": ["number", "string"] }),
        ScalarType::Json | ScalarType::Jsonb => json!({}),
        ScalarType::Enum(name) => match schema.enum_type(name) {
            Some(e) => json!({ "type": "string", "enum": e.labels }),
            None => string(),
        },
        ScalarType::Bytea => json!({ "type": "string", "contentEncoding": "base64" }),
        _ => string(),
    }
}

fn column_type(schema: &Schema, ty: &ColumnType) -> Json_ {
    let s = scalar(schema, &ty.scalar);
    if ty.array {
        json!({ "type": "array", "items": nullable(s) })
    } else {
        s
    }
}

fn column(schema: &Schema, c: &Column) -> Json_ {
    let t = column_type(schema, &c.ty);
    let t = if c.nullable { nullable(t) } else { t };
    match &c.default {
        Some(d) => {
            let mut t = t;
            if let Some(o) = t.as_object_mut() {
                o.insert("description".into(), json!(format!("Default: {d}")));
            }
            t
        }
        None => t,
    }
}

/// Whether a create may leave the column out (see `outpost generate
/// typescript`, which follows the same rule).
fn optional_on_create(t: &Table, c: &Column) -> bool {
    c.nullable
        || c.default.is_some()
        || c.identity.is_some()
        || c.generated
        || (t.primary_key.len() == 1
            && t.primary_key[0] == c.name
            && matches!(
                c.ty.scalar,
                ScalarType::Text | ScalarType::Varchar | ScalarType::Uuid
            ))
}

/// The schemas of one model: its record and Prisma's arguments.
fn model_schemas(schema: &Schema, t: &Table, out: &mut Map<String, Json_>) {
    let n = component(&t.name);
    let mut record = Map::new();
    let mut filters = Map::new();
    let mut order = Map::new();
    let mut select = Map::new();
    let mut create = Map::new();
    let mut update = Map::new();
    let mut required = Vec::new();
    for c in &t.columns {
        record.insert(c.name.clone(), column(schema, c));
        // Any value or Prisma's filter object: the query layer checks which
        // operators a column takes.
        filters.insert(c.name.clone(), json!({}));
        order.insert(
            c.name.clone(),
            json!({ "type": "string", "enum": ["asc", "desc"] }),
        );
        // `null` reads as `false`, as the query layer takes it.
        select.insert(c.name.clone(), nullable(json!({ "type": "boolean" })));
        if !c.generated {
            create.insert(c.name.clone(), column(schema, c));
            update.insert(
                c.name.clone(),
                json!({ "anyOf": [column(schema, c), { "type": "object" }] }),
            );
            if !optional_on_create(t, c) {
                required.push(c.name.clone());
            }
        }
    }
    let mut include = Map::new();
    for rel in &t.relations {
        let target = component(&rel.target);
        record.insert(
            rel.name.clone(),
            match rel.kind {
                RelationKind::ToMany => json!({ "type": "array", "items": r(&target) }),
                RelationKind::ToOne => nullable(r(&target)),
            },
        );
        // `null` reads as `false`, as the query layer takes it.
        let arg = json!({ "anyOf": [{ "type": "boolean" }, { "type": "null" }, r(&format!("{target}RelationArgs"))] });
        include.insert(rel.name.clone(), arg.clone());
        select.insert(rel.name.clone(), arg);
    }
    record.insert("syncStatus".into(), r("SyncStatus"));
    out.insert(
        n.clone(),
        json!({ "type": "object", "description": format!("A {} record. Included relations appear as their fields; records read from the replica carry syncStatus.", t.name), "properties": record }),
    );
    let mut where_props = filters;
    for k in ["AND", "OR", "NOT"] {
        where_props.insert(
            k.into(),
            json!({ "anyOf": [r(&format!("{n}WhereInput")), { "type": "array", "items": r(&format!("{n}WhereInput")) }] }),
        );
    }
    out.insert(
        format!("{n}WhereInput"),
        json!({ "type": "object", "additionalProperties": false, "properties": where_props }),
    );
    out.insert(
        format!("{n}OrderByInput"),
        json!({ "type": "object", "additionalProperties": false, "properties": order }),
    );
    out.insert(
        format!("{n}Select"),
        json!({ "type": "object", "additionalProperties": false, "properties": select }),
    );
    out.insert(
        format!("{n}Include"),
        json!({ "type": "object", "additionalProperties": false, "properties": include }),
    );
    out.insert(
        format!("{n}CreateInput"),
        json!({ "type": "object", "additionalProperties": false, "required": required, "properties": create }),
    );
    out.insert(
        format!("{n}UpdateInput"),
        json!({ "type": "object", "additionalProperties": false, "properties": update }),
    );
    out.insert(
        format!("{n}RelationArgs"),
        json!({ "type": "object", "additionalProperties": false, "properties": {
            "select": r(&format!("{n}Select")), "include": r(&format!("{n}Include")),
            "where": r(&format!("{n}WhereInput")), "orderBy": order_by(&n),
            "take": int(), "skip": int()
        }}),
    );
    for op in Operation::NAMES {
        out.insert(args_name(&n, op), args_schema(&n, op));
    }
}

fn args_name(n: &str, op: &str) -> String {
    let mut cap = op.to_string();
    if let Some(first) = cap.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!("{n}{cap}Args")
}

fn order_by(n: &str) -> Json_ {
    json!({ "anyOf": [r(&format!("{n}OrderByInput")), { "type": "array", "items": r(&format!("{n}OrderByInput")) }] })
}

/// The argument object of `op` on model `n`: the keys the query layer takes
/// for that operation, and which of them are required.
fn args_schema(n: &str, op: &str) -> Json_ {
    let w = r(&format!("{n}WhereInput"));
    let data = r(&format!("{n}CreateInput"));
    let upd = r(&format!("{n}UpdateInput"));
    let sel = r(&format!("{n}Select"));
    let inc = r(&format!("{n}Include"));
    let fields = json!({ "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }] });
    let (props, required): (Json_, &[&str]) = match op {
        "findMany" | "findFirst" => (
            json!({ "where": w, "select": sel, "include": inc, "orderBy": order_by(n),
                     "take": int(), "skip": int(), "cursor": w, "distinct": fields }),
            &[],
        ),
        "findUnique" => (
            json!({ "where": w, "select": sel, "include": inc }),
            &["where"],
        ),
        "count" => (
            json!({ "where": w, "orderBy": order_by(n), "take": int(), "skip": int(), "cursor": w }),
            &[],
        ),
        "create" => (
            json!({ "data": data, "select": sel, "include": inc }),
            &["data"],
        ),
        "createMany" => (
            json!({ "data": { "anyOf": [data, { "type": "array", "items": data }] }, "skipDuplicates": { "type": "boolean" } }),
            &["data"],
        ),
        "update" => (
            json!({ "where": w, "data": upd, "select": sel, "include": inc }),
            &["where", "data"],
        ),
        "updateMany" => (json!({ "where": w, "data": upd }), &["data"]),
        "upsert" => (
            json!({ "where": w, "create": data, "update": upd, "select": sel, "include": inc }),
            &["where", "create", "update"],
        ),
        "delete" => (
            json!({ "where": w, "select": sel, "include": inc }),
            &["where"],
        ),
        _ => (json!({ "where": w }), &[]),
    };
    // The query layer reads an optional argument given as null as absent.
    let props = match props {
        Json_::Object(m) => Json_::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if required.contains(&k.as_str()) {
                        v
                    } else {
                        nullable(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    };
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": props })
}

/// What `op` answers on model `n`.
fn result_schema(n: &str, op: &str) -> Json_ {
    match op {
        "findMany" => json!({ "type": "array", "items": r(n) }),
        "findFirst" | "findUnique" => nullable(r(n)),
        "count" => int(),
        "createMany" | "updateMany" | "deleteMany" => r("BatchPayload"),
        _ => r(n),
    }
}

/// What a path parameter may hold: the node's model names, Prisma's
/// operations. Precise schemas let a fuzzer tell valid input from invalid.
fn path_param(name: &str, models: &[String]) -> Json_ {
    let schema = match name {
        "model" if !models.is_empty() => json!({ "type": "string", "enum": models }),
        "operation" => json!({ "type": "string", "enum": Operation::NAMES }),
        _ => json!({ "type": "string", "minLength": 1 }),
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

/// The query parameters of the paged lists (see `handlers::Paging`).
fn paging_params(models: &[String]) -> Vec<Json_> {
    vec![
        // An empty `model=` means every model, as no `model` does.
        json!({ "name": "model", "in": "query", "required": false, "schema": if models.is_empty() {
            json!({ "type": "string" })
        } else {
            json!({
                "type": "string",
                "enum": std::iter::once("").chain(models.iter().map(String::as_str)).collect::<Vec<_>>()
            })
        }}),
        json!({ "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 0, "maximum": 1000 } }),
        json!({ "name": "offset", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 0, "maximum": i64::MAX } }),
    ]
}

fn json_body(schema: Json_, required: bool) -> Json_ {
    json!({ "required": required, "content": { "application/json": { "schema": schema } } })
}

/// The request body of a route, when it takes one.
fn request_body(method: &str, path: &str) -> Option<Json_> {
    match (method, path) {
        ("POST", "/api/database/status") => Some(json_body(r("SyncRequest"), false)),
        ("PUT", "/api/database/mode") => Some(json_body(r("ModeRequest"), true)),
        ("POST", "/api/database/resync") => Some(json_body(r("ResyncRequest"), true)),
        ("POST", "/api/database/conflicts/{model}/{key}/resolve") => {
            Some(json_body(r("ResolveRequest"), false))
        }
        ("POST", MODEL_ROUTE) => Some(json_body(json!({ "type": "object" }), false)),
        // Actions without arguments: an empty body or `{}`, sent as JSON
        // like every write (the browser-safety rule).
        ("POST", _) => Some(json_body(
            json!({ "type": "object", "additionalProperties": false, "maxProperties": 0 }),
            false,
        )),
        _ => None,
    }
}

/// The 200 answer of a route.
fn ok_response(method: &str, path: &str) -> Json_ {
    let json_ok = |schema: Json_| json!({ "description": "OK", "content": { "application/json": { "schema": schema } } });
    match (method, path) {
        ("GET", "/metrics") => json!({ "description": "Prometheus text format 0.0.4",
            "content": { "text/plain": { "schema": { "type": "string" } } } }),
        ("GET", "/api/database/events") => json!({
            "description": "Server-Sent Events: `status` (a DatabaseStatus), `progress` (a SyncProgress or null), `sync` ({entries: LogEntry[]}) and `changed` ({models, source: write|sync}); the data of each is JSON.",
            "content": { "text/event-stream": { "schema": { "type": "string" } } }
        }),
        ("GET", "/api/database/status") => json_ok(r("DatabaseStatus")),
        ("POST", "/api/database/status") => json_ok(r("SyncReport")),
        (_, "/api/database/mode") => json_ok(r("ModeState")),
        ("GET", "/api/database/models") => json_ok(r("ModelList")),
        ("GET", "/api/database/conflicts") => json_ok(r("ConflictList")),
        ("GET", "/api/database/conflicts/{model}/{key}") => json_ok(r("Conflict")),
        ("POST", "/api/database/conflicts/{model}/{key}/resolve") => json_ok(r("Resolved")),
        ("GET", "/api/database/log") => json_ok(r("LogPage")),
        ("GET", "/api/database/verify") => json_ok(r("VerifyReport")),
        ("POST", "/api/database/resync") => json_ok(r("SyncReport")),
        ("GET", "/api/database/pending") => json_ok(r("PendingPage")),
        ("GET", "/api/database/failed") => json_ok(r("FailedPage")),
        ("POST", "/api/database/failed/{model}/{key}/retry") => json_ok(r("Retried")),
        ("POST", "/api/database/failed/{model}/{key}/discard") => json_ok(r("Discarded")),
        ("GET", "/api/openapi.json") => json_ok(r("OpenApiDocument")),
        // Without the models: a record, a list of records, a count or null.
        _ => json_ok(json!({})),
    }
}

fn operation(
    operation_id: String,
    summary: String,
    params: Vec<Json_>,
    ok: Json_,
    body: Option<Json_>,
) -> Json_ {
    let error =
        json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    let mut op = json!({
        "summary": summary,
        "operationId": operation_id,
        "parameters": params,
        "responses": {
            "200": ok,
            "4XX": { "description": "A bad request: the error names the problem", "content": error },
            "503": {
                "description": "Not now: the replica is locked by another writer past the busy timeout (`busy`), or the server cannot be reached; nothing was written, retry after `Retry-After` seconds",
                "headers": { "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": { "type": "integer", "minimum": 0 }
                } },
                "content": error
            },
            "5XX": { "description": "A server-side failure (the server or the replica)", "content": error }
        }
    });
    if let (Some(o), Some(body)) = (op.as_object_mut(), body) {
        o.insert("requestBody".into(), body);
    }
    op
}

/// The OpenAPI 3.1 document of every route in [`ROUTES`], without models
/// (they come from a node's schema: see [`openapi_for`]).
pub fn openapi() -> Json_ {
    document(&[], None, None)
}

/// The OpenAPI 3.1 document of every route in [`ROUTES`], with `models` as
/// the values a `{model}` parameter may take (the model service stays one
/// templated path: without the schema there are no per-model schemas).
pub fn openapi_for(models: &[String]) -> Json_ {
    document(models, None, None)
}

fn path_params(path: &str, models: &[String]) -> Vec<Json_> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| path_param(name, models))
        .collect()
}

/// The document; with a node's `schema`, the model service is written out
/// per model. `server` is the node's base URL as the client reached it.
fn document(models: &[String], schema: Option<&Schema>, server: Option<String>) -> Json_ {
    let mut schemas = common_schemas(models);
    let mut paths = Map::new();
    let mut insert = |path: String, method: String, op: Json_| {
        if let Some(entry) = paths
            .entry(path)
            .or_insert_with(|| Json_::Object(Map::new()))
            .as_object_mut()
        {
            entry.insert(method, op);
        }
    };
    for route in ROUTES {
        let method = route.method.to_ascii_lowercase();
        if route.path == MODEL_ROUTE
            && let Some(schema) = schema.filter(|s| !s.tables.is_empty())
        {
            for t in &schema.tables {
                let n = component(&t.name);
                model_schemas(schema, t, &mut schemas);
                for op in Operation::NAMES {
                    // Required where the arguments have a required key.
                    let required = !matches!(op, "findMany" | "findFirst" | "count" | "deleteMany");
                    let body = json_body(r(&args_name(&n, op)), required);
                    insert(
                        format!("/api/models/{}/{op}", t.name),
                        method.clone(),
                        operation(
                            format!("{n}_{op}"),
                            format!("{op} on {}, with Prisma's argument object.", t.name),
                            Vec::new(),
                            json!({ "description": "OK", "content": { "application/json": { "schema": result_schema(&n, op) } } }),
                            Some(body),
                        ),
                    );
                }
            }
            continue;
        }
        let mut params = path_params(route.path, models);
        if route.method == "GET"
            && matches!(
                route.path,
                "/api/database/log" | "/api/database/pending" | "/api/database/failed"
            )
        {
            params.extend(paging_params(models));
        }
        if route.method == "GET" && route.path == "/api/database/verify" {
            // Only the model filter of the paged lists.
            params.extend(paging_params(models).into_iter().take(1));
        }
        insert(
            route.path.to_string(),
            method.clone(),
            operation(
                format!("{method}{}", route.path.replace(['/', '{', '}', '.'], "_")),
                route.summary.to_string(),
                params,
                ok_response(route.method, route.path),
                request_body(route.method, route.path),
            ),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "outpost",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A local SQLite replica of a PostgreSQL database that syncs both ways: database status and sync, conflicts, failed rows, the sync log, live events and the model service.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "servers": [ { "url": server.unwrap_or_else(|| "http://127.0.0.1:3000".into()), "description": "This node" } ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "OUTPOST_ADMIN_TOKEN; needed off loopback." } }
        },
        "security": [ { "bearer": [] } ]
    })
}

/// The document of the node serving it, with its models and its address as
/// the client reached it (the `Host` header).
pub(crate) async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Json<Json_> {
    let server = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .map(|h| format!("http://{h}"));
    // Under the application's Prisma names when it has a Prisma schema.
    let schema = state.node.api_schema();
    let models: Vec<String> = schema.tables.iter().map(|t| t.name.clone()).collect();
    Json(document(&models, Some(&schema), server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = openapi();
        for r in ROUTES {
            let method = r.method.to_ascii_lowercase();
            assert!(
                doc["paths"][r.path][&method].is_object(),
                "{} {}",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn patterns_match() {
        assert!(matches(
            "/api/models/{model}/{operation}",
            "/api/models/Post/findMany"
        ));
        assert!(!matches(
            "/api/models/{model}/{operation}",
            "/api/models/Post"
        ));
        assert!(matches("/metrics", "/metrics"));
    }
}
