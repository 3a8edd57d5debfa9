//! [`ApiError`]: every error answer, as `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outpost_engine::{EngineError, ErrorKind};
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
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is "not now": the replica's lock or the server may
            // be free again soon. A lock waits out the busy timeout before
            // answering, so a second is enough; the server, a little more.
            let secs = if self.code == "busy" { "1" } else { "5" };
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(secs),
            );
        }
        response
    }
}

impl From<EngineError> for ApiError {
    /// The status from the error's [`ErrorKind`], the code from
    /// [`EngineError::code`], the message from
    /// [`EngineError::public_message`]: the engine classifies, this maps.
    fn from(e: EngineError) -> ApiError {
        let code = e.code();
        let status = match e.kind() {
            _ if code == "internal" => return ApiError::internal(&e),
            ErrorKind::Internal => return ApiError::internal(&e),
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::OutcomeUnknown => StatusCode::BAD_GATEWAY,
            ErrorKind::Unreachable | ErrorKind::Auth | ErrorKind::Transient => {
                tracing::warn!(error = %e, "the server could not serve a request");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Config => {
                tracing::error!(error = %e, "configuration does not allow a request");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        if matches!(
            status,
            StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
        ) {
            tracing::info!(error = %e, "a request was refused");
        }
        ApiError::new(status, code, e.public_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_local::LocalError;
    use outpost_query::QueryError;

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
                EngineError::Refused("too many values".into()),
                422,
                "refused",
            ),
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
