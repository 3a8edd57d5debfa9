//! [`EngineError`]: what can stop a sync run.

use outpost_local::LocalError;
use outpost_remote::RemoteError;

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
    /// The server cannot be reached and the operation cannot fall back to
    /// the replica.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// A write's outcome on the server is unknown (the connection was lost
    /// while committing). It is not retried automatically.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A blocking task died (a panic in SQLite code).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Whether retrying later may succeed (the server was unreachable or the
    /// connection broke).
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Remote(e) => e.is_transient(),
            EngineError::Unreachable(_) => true,
            _ => false,
        }
    }
}
