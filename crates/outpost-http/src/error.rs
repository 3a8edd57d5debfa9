//! [`ApiError`]: every error answer, as `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outpost_engine::EngineError;
use outpost_local::LocalError;
use outpost_query::QueryError;
use outpost_remote::RemoteError;
use serde_json::json;

/// An error answer: an HTTP status, a stable machine-readable code and a
/// message for people. Internal details go to the log, not the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code (`bad_request`, `unknown_model`, `unreachable`…).
    pub code: &'static str,
    /// What went wrong, naming the offending input.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such thing.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 401: the bearer token is missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 500 with a generic message; `detail` goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error answering a request");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (details are in the server log)",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

fn from_query(e: &QueryError) -> ApiError {
    if e.is_not_found() {
        ApiError::not_found("not_found", e.to_string())
    } else if e.is_conflict() {
        ApiError::new(StatusCode::CONFLICT, "unique_violation", e.to_string())
    } else if e.is_invalid_request() {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
    } else if let QueryError::Refused { .. } = e {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", e.to_string())
    } else {
        ApiError::internal(e)
    }
}

fn from_remote(e: &RemoteError) -> ApiError {
    if let RemoteError::Query(q) = e {
        return from_query(q);
    }
    if e.is_transient() {
        tracing::warn!(error = %e, "server unreachable");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unreachable",
            "the server cannot be reached",
        );
    }
    let db = match e {
        RemoteError::Db { source, .. } | RemoteError::Value { source, .. } => source.as_db_error(),
        _ => None,
    };
    if let Some(db) = db {
        let code = db.code().code();
        let message = db.message().to_string();
        tracing::info!(error = %e, "the server refused a request");
        if code == "23505" {
            return ApiError::new(StatusCode::CONFLICT, "unique_violation", message);
        }
        if code.starts_with("23") {
            return ApiError::new(StatusCode::CONFLICT, "constraint_violation", message);
        }
        if code.starts_with("22") {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message);
        }
    }
    ApiError::internal(e)
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match &e {
            EngineError::Query(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m),
            EngineError::UnknownModel(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_model", e.to_string())
            }
            EngineError::Unreachable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unreachable",
                e.to_string(),
            ),
            EngineError::OutcomeUnknown(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "outcome_unknown", e.to_string())
            }
            EngineError::Config(m) => {
                tracing::error!(error = %m, "configuration does not allow a request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_configured",
                    m.to_string(),
                )
            }
            EngineError::Local(LocalError::Query(q)) => from_query(q),
            EngineError::Local(LocalError::NotFound(m)) => ApiError::not_found("not_found", m),
            // A write the replica's own constraints refuse (a duplicate key
            // in local mode): the request's fault, as on the server.
            EngineError::Local(LocalError::Sqlite { source, .. })
                if source.sqlite_error_code()
                    == Some(outpost_local::rusqlite::ErrorCode::ConstraintViolation) =>
            {
                tracing::info!(error = %e, "the replica refused a write");
                let message = source.to_string();
                if message.contains("UNIQUE") || message.contains("PRIMARY KEY") {
                    ApiError::new(StatusCode::CONFLICT, "unique_violation", message)
                } else {
                    ApiError::new(StatusCode::CONFLICT, "constraint_violation", message)
                }
            }
            EngineError::Remote(r) => from_remote(r),
            EngineError::Local(_) | EngineError::Internal(_) => ApiError::internal(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_statuses() {
        let cases = [
            (EngineError::Unreachable("gone".into()), 503, "unreachable"),
            (
                EngineError::OutcomeUnknown("lost".into()),
                502,
                "outcome_unknown",
            ),
            (
                EngineError::Query("unknown field".into()),
                400,
                "invalid_query",
            ),
            (EngineError::UnknownModel("X".into()), 400, "unknown_model"),
            (
                EngineError::Internal("secret detail".into()),
                500,
                "internal",
            ),
            (
                EngineError::Local(LocalError::Query(QueryError::UniqueViolation {
                    model: "User".into(),
                    fields: vec!["email".into()],
                    values: "[\"a@x\"]".into(),
                })),
                409,
                "unique_violation",
            ),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code));
            assert!(!a.message.contains("secret detail"), "{a}");
        }
    }

    #[test]
    fn replica_constraint_violations_are_conflicts() -> Result<(), outpost_local::rusqlite::Error> {
        let conn = outpost_local::rusqlite::Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INT CHECK (n > 0)); INSERT INTO t VALUES ('a', 1);")?;
        for (sql, code) in [
            ("INSERT INTO t VALUES ('a', 2)", "unique_violation"),
            ("INSERT INTO t VALUES ('b', -1)", "constraint_violation"),
        ] {
            let source = conn
                .execute(sql, [])
                .err()
                .ok_or(outpost_local::rusqlite::Error::QueryReturnedNoRows)?;
            let a = ApiError::from(EngineError::Local(LocalError::Sqlite {
                context: "running a query on t".into(),
                source,
            }));
            assert_eq!(a.status.as_u16(), 409, "{sql}: {a}");
            assert_eq!(a.code, code, "{sql}");
        }
        // Anything else from SQLite stays an internal error.
        let source = conn
            .execute("SELECT * FROM missing", [])
            .err()
            .ok_or(outpost_local::rusqlite::Error::QueryReturnedNoRows)?;
        let a = ApiError::from(EngineError::Local(LocalError::Sqlite {
            context: "x".into(),
            source,
        }));
        assert_eq!(a.status.as_u16(), 500);
        Ok(())
    }
}
