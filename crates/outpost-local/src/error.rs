//! The replica's error type.

use std::path::PathBuf;

/// What can go wrong with the local replica. Messages name the file, table
/// or column involved.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// SQLite refused an operation.
    #[error("SQLite error while {context}: {source}")]
    Sqlite {
        /// What outpost was doing.
        context: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Another connection (another outpost, or any program writing to the
    /// file) held a write transaction longer than the busy timeout.
    #[error(
        "the replica is locked by another process while {context}: another outpost or a program \
         writing to the file holds a write transaction (waited {waited_secs}s); let it finish, or stop it, and retry"
    )]
    Locked {
        /// What outpost was doing.
        context: String,
        /// How long outpost waited.
        waited_secs: u64,
    },
    /// The replica file could not be opened or created.
    #[error("cannot open the replica {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The replica has no schema snapshot yet: `outpost setup` has not run
    /// against a reachable server.
    #[error(
        "the replica {path} has no schema snapshot; run `outpost setup` while the server is reachable"
    )]
    NotSetUp {
        /// The file.
        path: PathBuf,
    },
    /// The replica was written by a newer outpost.
    #[error(
        "the replica {path} has metadata version {found}, newer than this outpost understands ({supported}); upgrade outpost"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Highest version this build understands.
        supported: i64,
    },
    /// A stored value does not fit its column's type (written by hand?).
    #[error("column {column}: stored value does not fit type {ty}: {message}")]
    BadStoredValue {
        /// The column.
        column: String,
        /// Its type.
        ty: String,
        /// What was found.
        message: String,
    },
    /// What was asked for is not there (a conflict, a row).
    #[error("{0}")]
    NotFound(String),
    /// The stored schema snapshot cannot be read.
    #[error("the replica's schema snapshot is unreadable: {0}")]
    BadSnapshot(String),
    /// A model request that cannot be carried out (bad arguments, record
    /// not found, unique constraint violated…).
    #[error(transparent)]
    Query(#[from] outpost_query::QueryError),
}

impl LocalError {
    /// Wraps a SQLite error with what was being done.
    pub fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> LocalError {
        let context = context.into();
        move |source| {
            // Busy after the busy timeout: name the cause plainly.
            if let rusqlite::Error::SqliteFailure(e, _) = &source
                && matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            {
                return LocalError::Locked {
                    context,
                    waited_secs: crate::replica::BUSY_TIMEOUT.as_secs(),
                };
            }
            LocalError::Sqlite { context, source }
        }
    }
}
