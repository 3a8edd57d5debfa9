//! [`EngineError`]: what can stop a sync run or a model request, and
//! [`ErrorKind`], its classification by cause. Callers (the node, the HTTP
//! API, the CLI) decide from the kind — go offline, answer 4xx or 5xx,
//! retry — and never from variants of the lower crates' errors or from
//! message text.

use outpost_local::LocalError;
use outpost_query::QueryError;
use outpost_remote::{Cause, RemoteError};

/// What caused an error, as far as a caller has to act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection itself failed: refused, reset, timed out, stalled
    /// past its deadline, TLS. The node goes offline; retrying later may
    /// succeed.
    Unreachable,
    /// The server refused the credentials. The node cannot use the server
    /// either, but retrying does not help until the configuration changes.
    Auth,
    /// The server answered but could not do it now (a lock or statement
    /// timeout, a serialization failure, shutting down): retry later; the
    /// node stays online.
    Transient,
    /// The request clashes with data (a unique or foreign key violation).
    Conflict,
    /// The server (or the replica) refused the request as it was asked,
    /// and would refuse it again (a limit exceeded, a check failed).
    Refused,
    /// The request's input is invalid (unknown field, value of the wrong
    /// type); the message names it.
    BadInput,
    /// What the request names does not exist (a record, a model).
    NotFound,
    /// A write reached the server but its outcome is unknown (the
    /// connection was lost or its deadline passed while it was in flight).
    /// It is never replayed automatically.
    OutcomeUnknown,
    /// The configuration does not allow the operation.
    Config,
    /// A bug or a broken replica: details are in the log.
    Internal,
}

impl ErrorKind {
    /// A stable name (`unreachable`, `bad_input`…).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Auth => "auth",
            ErrorKind::Transient => "transient",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Refused => "refused",
            ErrorKind::BadInput => "bad_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }

    /// The server cannot be used now (unreachable or refusing the
    /// credentials): operations in `auto` mode go to the replica.
    pub fn is_unreachable(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::Auth)
    }
}

/// An error of the sync engine. Messages name what was being done.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The replica failed.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// The server failed or could not be reached.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The configuration does not allow the operation.
    #[error("{0}")]
    Config(String),
    /// A model named in the request is not synced.
    #[error("unknown model {0:?}: not a synced table")]
    UnknownModel(String),
    /// A model-service request is invalid (unknown model, field, relation or
    /// operator, a value of the wrong type); the message names it.
    #[error("{0}")]
    Query(String),
    /// A request is refused as asked (a limit of the server or the replica
    /// is exceeded); the message names the limit.
    #[error("{0}")]
    Refused(String),
    /// The server cannot be reached and the operation cannot fall back to
    /// the replica.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// A write's outcome on the server is unknown (the connection was lost
    /// or the deadline passed while it was in flight). It is not retried
    /// automatically.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A blocking task died (a panic in SQLite code).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The error's cause ([`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Local(e) => local_kind(e),
            EngineError::Remote(e) => remote_kind(e),
            EngineError::Config(_) => ErrorKind::Config,
            EngineError::UnknownModel(_) | EngineError::Query(_) => ErrorKind::BadInput,
            EngineError::Refused(_) => ErrorKind::Refused,
            EngineError::Unreachable(_) => ErrorKind::Unreachable,
            EngineError::OutcomeUnknown(_) => ErrorKind::OutcomeUnknown,
            EngineError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether retrying later may succeed (the server was unreachable, the
    /// connection broke, or the server could not do it now).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unreachable | ErrorKind::Transient)
    }

    /// The server cannot be used now (see [`ErrorKind::is_unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        self.kind().is_unreachable()
    }
}

impl EngineError {
    /// A stable, finer code for answers (`unique_violation`,
    /// `constraint_violation`, `invalid_value`, `invalid_query`,
    /// `unknown_model`…), within the error's [`ErrorKind`].
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::UnknownModel(_) => "unknown_model",
            EngineError::Query(_) => "invalid_query",
            EngineError::Config(_) => "not_configured",
            EngineError::Refused(_) => "refused",
            EngineError::Unreachable(_) => "unreachable",
            EngineError::OutcomeUnknown(_) => "outcome_unknown",
            EngineError::Internal(_) => "internal",
            EngineError::Local(LocalError::Query(q))
            | EngineError::Remote(RemoteError::Query(q)) => query_code(q),
            EngineError::Local(e) => match local_kind(e) {
                ErrorKind::NotFound => "not_found",
                ErrorKind::Conflict if e.violated_constraint() == Some(true) => "unique_violation",
                ErrorKind::Conflict => "constraint_violation",
                ErrorKind::Transient => "busy",
                ErrorKind::Config => "not_configured",
                _ => "internal",
            },
            EngineError::Remote(e) => match (remote_kind(e), server_code(e)) {
                (ErrorKind::Unreachable, _) => "unreachable",
                (ErrorKind::Auth, _) => "auth",
                (ErrorKind::Conflict, Some("23505")) => "unique_violation",
                (ErrorKind::Conflict, _) => "constraint_violation",
                (ErrorKind::BadInput, Some(c)) if c.starts_with("22") => "invalid_value",
                (ErrorKind::BadInput, _) => "invalid_query",
                (ErrorKind::Transient, _) => "busy",
                (ErrorKind::Config, _) => "not_configured",
                _ => "internal",
            },
        }
    }

    /// The message to show a client: this error's own text, except that a
    /// server's refusal is given as the server's message alone (the action
    /// and the connection details go to the log) and a lost server as
    /// "the server cannot be reached".
    pub fn public_message(&self) -> String {
        match self {
            // The gateway's message says why (an expired token, a node id
            // of another principal); it never holds the database's URL.
            EngineError::Remote(RemoteError::Gateway { message, class, .. })
                if *class != outpost_remote::ErrorClass::Unreachable =>
            {
                message.clone()
            }
            EngineError::Remote(e) => match remote_kind(e) {
                ErrorKind::Unreachable => "the server cannot be reached".into(),
                ErrorKind::Auth => "the server refused the node's credentials".into(),
                _ => match e {
                    RemoteError::Db { source, .. } | RemoteError::Value { source, .. } => source
                        .as_db_error()
                        .map(|db| db.message().to_string())
                        .unwrap_or_else(|| e.to_string()),
                    _ => e.to_string(),
                },
            },
            _ => self.to_string(),
        }
    }
}

fn query_code(q: &QueryError) -> &'static str {
    match query_kind(q) {
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "unique_violation",
        ErrorKind::BadInput => "invalid_query",
        ErrorKind::Refused => "refused",
        _ => "internal",
    }
}

/// The server's SQLSTATE, when the server answered.
fn server_code(e: &RemoteError) -> Option<&str> {
    match e {
        RemoteError::Db { source, .. } | RemoteError::Value { source, .. } => {
            source.as_db_error().map(|db| db.code().code())
        }
        // The server's code a gateway passed on (remote mode).
        RemoteError::Gateway {
            sqlstate: Some(c), ..
        } => Some(c),
        _ => None,
    }
}

/// The kind of a query error (shared by both databases).
pub(crate) fn query_kind(e: &QueryError) -> ErrorKind {
    if e.is_not_found() {
        ErrorKind::NotFound
    } else if e.is_conflict() {
        ErrorKind::Conflict
    } else if e.is_invalid_request() {
        ErrorKind::BadInput
    } else if let QueryError::Refused { .. } = e {
        ErrorKind::Refused
    } else {
        ErrorKind::Internal
    }
}

fn local_kind(e: &LocalError) -> ErrorKind {
    match e {
        LocalError::Query(q) => query_kind(q),
        l if l.is_not_found() => ErrorKind::NotFound,
        // A write the replica's own constraints refuse (a duplicate key in
        // local mode): the request's fault, as on the server.
        l if l.violated_constraint().is_some() => ErrorKind::Conflict,
        // A merged row that does not fit: the caller's input.
        l if l.is_refused() => ErrorKind::BadInput,
        LocalError::Locked { .. } | LocalError::SchemaChanged => ErrorKind::Transient,
        LocalError::NotSetUp { .. } | LocalError::TooNew { .. } => ErrorKind::Config,
        _ => ErrorKind::Internal,
    }
}

/// The kind of a server error. The driver's error (SQLSTATE classes, I/O
/// causes) is read in one place, `outpost_remote::error::cause`.
pub(crate) fn remote_kind(e: &RemoteError) -> ErrorKind {
    match e {
        RemoteError::Query(q) => query_kind(q),
        // Connecting failed; the reason carries the server's SQLSTATE when
        // the server answered (class 28: invalid authorization).
        RemoteError::Unreachable { .. } | RemoteError::LoginRefused { .. } => {
            if e.is_auth() {
                ErrorKind::Auth
            } else {
                ErrorKind::Unreachable
            }
        }
        RemoteError::Db { .. } => e.cause().map_or(ErrorKind::Refused, cause_kind),
        // The server refused a remote-mode request: read as a direct
        // node reads its own server's refusal.
        RemoteError::Gateway {
            sqlstate: Some(c), ..
        } => cause_kind(outpost_remote::error::cause_of_sqlstate(c)),
        RemoteError::Gateway { class, .. } => match class {
            outpost_remote::ErrorClass::Unreachable => ErrorKind::Unreachable,
            outpost_remote::ErrorClass::Auth => ErrorKind::Auth,
            outpost_remote::ErrorClass::Refused => ErrorKind::Refused,
            outpost_remote::ErrorClass::Invalid => ErrorKind::Config,
        },
        RemoteError::Value { .. } => ErrorKind::BadInput,
        // The node's own plan was stale: the next run plans again.
        RemoteError::PushShape { .. } => ErrorKind::Transient,
        RemoteError::UnsupportedType { .. }
        | RemoteError::NoPrimaryKey { .. }
        | RemoteError::TableNotFound { .. }
        | RemoteError::ReplicaLimit { .. }
        | RemoteError::NewerTrackingSchema(_)
        | RemoteError::TrackingCorrupt { .. }
        | RemoteError::Unreplicable { .. }
        | RemoteError::TableChanged { .. } => ErrorKind::Config,
    }
}

/// Only failures of the connection itself are `Unreachable`; whatever the
/// server answers about the statement is an error of that request.
fn cause_kind(cause: Cause) -> ErrorKind {
    match cause {
        Cause::Unreachable => ErrorKind::Unreachable,
        Cause::Auth => ErrorKind::Auth,
        Cause::Transient => ErrorKind::Transient,
        Cause::Constraint => ErrorKind::Conflict,
        Cause::BadInput => ErrorKind::BadInput,
        Cause::Refused => ErrorKind::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_cause() {
        let unreachable = RemoteError::Unreachable {
            auth: false,
            server: "host=h".into(),
            reason: "error connecting to server: Connection refused (os error 111)".into(),
        };
        assert_eq!(remote_kind(&unreachable), ErrorKind::Unreachable);
        let auth = RemoteError::LoginRefused {
            server: "host=h".into(),
            reason: "FATAL: password authentication failed for user \"u\" [SQLSTATE 28P01]".into(),
        };
        assert_eq!(remote_kind(&auth), ErrorKind::Auth);
        assert!(ErrorKind::Auth.is_unreachable());
        assert!(!ErrorKind::Refused.is_unreachable());
        assert_eq!(
            EngineError::Unreachable("x".into()).kind(),
            ErrorKind::Unreachable
        );
        assert_eq!(
            EngineError::OutcomeUnknown("x".into()).kind(),
            ErrorKind::OutcomeUnknown
        );
        assert_eq!(EngineError::Query("x".into()).kind(), ErrorKind::BadInput);
        assert_eq!(EngineError::Refused("x".into()).kind(), ErrorKind::Refused);
        assert!(!EngineError::Refused("x".into()).is_transient());
        assert_eq!(
            EngineError::Local(LocalError::NoConflict {
                table: "Post".into(),
                pk: "[1]".into()
            })
            .kind(),
            ErrorKind::NotFound
        );
    }
}
