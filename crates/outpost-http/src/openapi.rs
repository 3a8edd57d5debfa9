//! `GET /api/openapi.json`: an OpenAPI 3.0 document built from
//! [`crate::ROUTES`].

use axum::Json;
use serde_json::{Map, Value as Json_, json};

use crate::ROUTES;

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

/// The OpenAPI 3.0 document of every route in [`ROUTES`].
pub fn openapi() -> Json_ {
    let mut paths = Map::new();
    for route in ROUTES {
        let method = route.method.to_ascii_lowercase();
        let params: Vec<Json_> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "operationId": format!("{method}{}", route.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": {
                "200": { "description": "OK", "content": if route.path == "/metrics" {
                    json!({ "text/plain": { "schema": { "type": "string" } } })
                } else {
                    json!({ "application/json": { "schema": { "type": "object" } } })
                }},
                "4XX": { "description": "A bad request", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "5XX": { "description": "A server-side failure", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        // The paged lists take the same query parameters.
        if matches!(
            route.path,
            "/api/database/log" | "/api/database/pending" | "/api/database/failed"
        ) && route.method == "GET"
            && let Some(p) = op["parameters"].as_array_mut()
        {
            for (name, ty) in [
                ("model", "string"),
                ("limit", "integer"),
                ("offset", "integer"),
            ] {
                p.push(json!({ "name": name, "in": "query", "required": false, "schema": { "type": ty } }));
            }
        }
        if matches!(route.method, "POST" | "PUT")
            && let Some(o) = op.as_object_mut()
        {
            o.insert(
                "requestBody".into(),
                json!({
                    "required": route.method == "PUT",
                    "content": { "application/json": { "schema": { "type": "object" } } }
                }),
            );
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

pub(crate) async fn handler() -> Json<Json_> {
    Json(openapi())
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
