//! `GET /api/openapi.json`: an OpenAPI 3.0 document built from
//! [`crate::ROUTES`].

use axum::Json;
use axum::extract::State;
use outpost_engine::Operation;
use serde_json::{Map, Value as Json_, json};

use crate::{AppState, ROUTES};

/// Whether a concrete path matches a route pattern with `{param}` segments.
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
}

fn error_schema() -> Json_ {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": { "code": { "type": "string" }, "message": { "type": "string" } }
        }}
    })
}

/// What a path parameter, query parameter or body may hold, as far as the
/// document can say it: the node's model names, Prisma's operations, the
/// directions and modes. Precise schemas let a fuzzer tell valid input from
/// invalid and check that the API accepts the one and refuses the other.
fn path_param(name: &str, models: &[String]) -> Json_ {
    let schema = match name {
        "model" if !models.is_empty() => json!({ "type": "string", "enum": models }),
        "operation" => json!({ "type": "string", "enum": Operation::NAMES }),
        _ => json!({ "type": "string", "minLength": 1 }),
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

fn model_schema(models: &[String]) -> Json_ {
    if models.is_empty() {
        json!({ "type": "string" })
    } else {
        json!({ "type": "string", "enum": models })
    }
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

/// The request body of a route, when it takes one.
fn request_body(method: &str, path: &str, models: &[String]) -> Option<Json_> {
    let schema = match (method, path) {
        ("POST", "/api/database/status") => json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                // null reads as absent: both directions, every model.
                "direction": { "type": "string", "nullable": true, "enum": ["BIDIRECTIONAL", "TO_SERVER", "FROM_SERVER", null] },
                "models": { "type": "array", "nullable": true, "items": model_schema(models) }
            }
        }),
        ("PUT", "/api/database/mode") => json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["mode"],
            "properties": { "mode": { "type": "string", "enum": ["auto", "local", "remote"] } }
        }),
        // Exactly one of `keep` and `merged`.
        ("POST", "/api/database/conflicts/{model}/{key}/resolve") => json!({
            "type": "object",
            "additionalProperties": false,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "keep": { "type": "string", "enum": ["local", "server"] },
                "merged": { "type": "object" }
            }
        }),
        ("POST", "/api/models/{model}/{operation}") => json!({ "type": "object" }),
        // Actions without arguments: an empty body or `{}`, sent as JSON
        // like every write (the browser-safety rule).
        ("POST", _) => {
            json!({ "type": "object", "additionalProperties": false, "maxProperties": 0 })
        }
        _ => return None,
    };
    Some(json!({
        "required": method == "PUT",
        "content": { "application/json": { "schema": schema } }
    }))
}

/// The OpenAPI 3.0 document of every route in [`ROUTES`], without model
/// names (they come from a node's schema: see [`openapi_for`]).
pub fn openapi() -> Json_ {
    openapi_for(&[])
}

/// The OpenAPI 3.0 document of every route in [`ROUTES`], with `models` as
/// the values a `{model}` parameter may take.
pub fn openapi_for(models: &[String]) -> Json_ {
    let error =
        json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    let mut paths = Map::new();
    for route in ROUTES {
        let method = route.method.to_ascii_lowercase();
        let mut params: Vec<Json_> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| path_param(name, models))
            .collect();
        if route.method == "GET"
            && matches!(
                route.path,
                "/api/database/log" | "/api/database/pending" | "/api/database/failed"
            )
        {
            params.extend(paging_params(models));
        }
        let mut op = json!({
            "summary": route.summary,
            "operationId": format!("{method}{}", route.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": {
                "200": { "description": "OK", "content": if route.path == "/metrics" {
                    json!({ "text/plain": { "schema": { "type": "string" } } })
                } else if route.path == "/api/models/{model}/{operation}" {
                    // A record, a list of records, `{count}` or null.
                    json!({ "application/json": { "schema": {} } })
                } else {
                    json!({ "application/json": { "schema": { "type": "object" } } })
                }},
                "4XX": { "description": "A bad request: the error names the problem", "content": error },
                "5XX": { "description": "A server-side failure (the server or the replica)", "content": error }
            }
        });
        if let Some(body) = request_body(route.method, route.path, models)
            && let Some(o) = op.as_object_mut()
        {
            o.insert("requestBody".into(), body);
        }
        if let Some(entry) = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Json_::Object(Map::new()))
            .as_object_mut()
        {
            entry.insert(method, op);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "outpost",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A local SQLite replica of a PostgreSQL database that syncs both ways."
        },
        "paths": paths,
        "components": {
            "schemas": { "Error": error_schema() },
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "security": [ { "bearer": [] } ]
    })
}

pub(crate) async fn handler(State(state): State<AppState>) -> Json<Json_> {
    let models: Vec<String> = state
        .node
        .engine()
        .schema()
        .tables
        .iter()
        .map(|t| t.name.clone())
        .collect();
    Json(openapi_for(&models))
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
