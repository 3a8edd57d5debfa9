//! [`GatewayError`]: what a request to the gateway can fail with, and its
//! answer: a status and `{"error": {"code", "message", "class"}}`, the
//! body the node's client (`outpost_remote::gateway`) reads back into a
//! `RemoteError` of the same class.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outpost_remote::gateway::body::{ErrorBody, ErrorDetail};
use outpost_remote::gateway::class_name;
use outpost_remote::{ErrorClass, RemoteError};

/// An error of a gateway request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No token, or one the gateway does not accept (bad signature,
    /// expired, wrong audience, malformed): 401.
    #[error("{message}")]
    Unauthorized {
        /// `token_missing`, `token_expired`, `bad_signature`, …
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The token is valid but does not allow this request (a node id bound
    /// to another principal): 403.
    #[error("{message}")]
    Forbidden {
        /// `node_of_another_principal`.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The request is malformed (400) or names what does not exist (404).
    #[error("{message}")]
    BadRequest {
        /// The status (400, 404, 409).
        status: StatusCode,
        /// `bad_request`, `unknown_table`, `schema_mismatch`, …
        code: &'static str,
        /// Why.
        message: String,
    },
    /// A table the request needs has another shape in the node's snapshot
    /// than on the server (409 `table_changed`): the node goes on without
    /// it until `outpost setup` migrates its replica.
    #[error(
        "the server's table {table:?} no longer matches the node's schema snapshot: run `outpost setup` on the node (its local edits are kept)"
    )]
    TableChanged {
        /// The table.
        table: String,
    },
    /// A table the gateway's sync rules do not serve (409
    /// `table_not_served`, with `error.table`): no rule names it, so no
    /// node is given its rows or may write them. A node set up before the
    /// rules goes on without it, as with `table_changed`.
    #[error(
        "table {table:?} is not synced to nodes: the gateway's sync rules have no rule for it (run `outpost setup` on the node to lay its replica out from the served tables)"
    )]
    NotServed {
        /// The table.
        table: String,
    },
    /// A claim a sync rule reads is not in the token (403
    /// `claim_missing`).
    #[error(
        "the token has no `{claim}` claim, which {rule} reads: get a token with it, or change the rule"
    )]
    ClaimMissing {
        /// The claim.
        claim: String,
        /// The rule, as messages name it.
        rule: String,
    },
    /// The token's principal made more requests than
    /// `OUTPOST_GATEWAY_RATE` allows (429 `rate_limited`, with
    /// `Retry-After`). Its class is `unreachable`: for the node the gateway
    /// is out of reach for a moment, so it works offline and syncs again
    /// later, as for any unreachable server.
    #[error(
        "too many requests for this token's principal (at most {per_second} per second, bursts of {burst}): retry after {} s",
        retry_secs(*retry_after)
    )]
    RateLimited {
        /// How long until the next request is allowed.
        retry_after: std::time::Duration,
        /// The sustained rate.
        per_second: f64,
        /// The burst.
        burst: u32,
    },
    /// A remote-mode request that cannot be carried out as asked (a
    /// record not found, a duplicate key, a value the server refuses):
    /// the request's own fault, answered as a direct node's session would
    /// have it (404, 409, 400 or 422, with the model service's error or the
    /// server's SQLSTATE), never a reason for the node to go offline.
    #[error("{message}")]
    Request {
        /// The status.
        status: StatusCode,
        /// `not_found`, `unique_violation`, `invalid_query`, `refused`, …
        code: &'static str,
        /// Why (the model service's message, or the server's).
        message: String,
        /// The model service's own error.
        query: Option<Box<outpost_query::QueryError>>,
        /// The server's SQLSTATE.
        sqlstate: Option<String>,
    },
    /// A remote-mode write whose commit's answer the gateway lost: it may
    /// or may not have been applied (502 `outcome_unknown`).
    #[error("{message}")]
    OutcomeUnknown {
        /// Why.
        message: String,
    },
    /// The database behind the gateway failed; its class is passed on.
    #[error("{message}")]
    Database {
        /// The error's class.
        class: ErrorClass,
        /// The message, scrubbed of the database's address and password.
        message: String,
    },
}

/// Whole seconds to wait, rounded up and at least one (`Retry-After` has
/// no fractions, and 0 would invite an immediate retry).
pub fn retry_secs(d: std::time::Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl GatewayError {
    /// The answer for a database error, with a message that names neither
    /// the database's address nor its password (`scrub` redacts the URL
    /// wherever it appears; a connection failure is said in words only,
    /// the details go to the gateway's log).
    pub fn database(e: &RemoteError, scrub: impl Fn(&str) -> String) -> GatewayError {
        let class = e.class();
        let message = match class {
            ErrorClass::Unreachable | ErrorClass::Auth => {
                tracing::warn!(error = %scrub(&e.to_string()), "the database cannot be used");
                "the database behind the gateway cannot be reached".to_string()
            }
            _ => scrub(&e.to_string()),
        };
        // The gateway's own login failing is the gateway's problem, not
        // the node's token: the node sees the database as unreachable.
        let class = if class == ErrorClass::Auth {
            ErrorClass::Unreachable
        } else {
            class
        };
        GatewayError::Database { class, message }
    }

    fn parts(&self) -> (StatusCode, &str, ErrorClass) {
        match self {
            GatewayError::Unauthorized { code, .. } => {
                (StatusCode::UNAUTHORIZED, code, ErrorClass::Auth)
            }
            GatewayError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code, ErrorClass::Auth),
            GatewayError::BadRequest { status, code, .. } => (*status, code, ErrorClass::Invalid),
            GatewayError::TableChanged { .. } => {
                (StatusCode::CONFLICT, "table_changed", ErrorClass::Refused)
            }
            GatewayError::NotServed { .. } => (
                StatusCode::CONFLICT,
                "table_not_served",
                ErrorClass::Refused,
            ),
            GatewayError::ClaimMissing { .. } => {
                (StatusCode::FORBIDDEN, "claim_missing", ErrorClass::Auth)
            }
            GatewayError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                ErrorClass::Unreachable,
            ),
            GatewayError::Request { status, code, .. } => (*status, code, ErrorClass::Refused),
            GatewayError::OutcomeUnknown { .. } => (
                StatusCode::BAD_GATEWAY,
                "outcome_unknown",
                ErrorClass::Unreachable,
            ),
            GatewayError::Database { class, .. } => match class {
                ErrorClass::Unreachable | ErrorClass::Auth => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unreachable", *class)
                }
                ErrorClass::Refused => (StatusCode::UNPROCESSABLE_ENTITY, "refused", *class),
                ErrorClass::Invalid => (StatusCode::INTERNAL_SERVER_ERROR, "invalid", *class),
            },
        }
    }

    /// The error body.
    pub fn body(&self) -> ErrorBody {
        let (_, code, class) = self.parts();
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
                class: class_name(class).to_string(),
                table: match self {
                    GatewayError::TableChanged { table } | GatewayError::NotServed { table } => {
                        Some(table.clone())
                    }
                    _ => None,
                },
                sqlstate: match self {
                    GatewayError::Request { sqlstate, .. } => sqlstate.clone(),
                    _ => None,
                },
                query: match self {
                    GatewayError::Request { query, .. } => query.as_deref().cloned(),
                    _ => None,
                },
            },
        }
    }

    /// A failure of the gateway itself (500).
    pub fn internal(message: impl Into<String>) -> GatewayError {
        GatewayError::BadRequest {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
        }
    }

    /// A bad request (400).
    pub fn bad(code: &'static str, message: impl Into<String>) -> GatewayError {
        GatewayError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        let mut resp = (status, Json(self.body())).into_response();
        if let GatewayError::RateLimited { retry_after, .. } = &self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_secs(*retry_after)),
            );
        }
        resp
    }
}
