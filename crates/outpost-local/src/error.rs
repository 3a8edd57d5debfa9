//! The replica's error type.

use std::path::PathBuf;

use crate::settings::BUSY_TIMEOUT;

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
    /// A file beside the replica could not be written.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, with the file.
        action: String,
        /// The error.
        #[source]
        source: std::io::Error,
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
    /// A conflict was to be resolved on a row that is not in conflict.
    #[error("no conflict on {table} {pk}")]
    NoConflict {
        /// The table.
        table: String,
        /// The row key (JSON array).
        pk: String,
    },
    /// A merged row given to resolve a conflict does not fit the table.
    #[error("a merged row of {table} {problem}")]
    BadMergedRow {
        /// The table.
        table: String,
        /// What is wrong with it ("needs 3 values, got 2").
        problem: String,
    },
    /// A table named in a call is not in the replica's schema snapshot.
    #[error(
        "the replica's schema snapshot is unreadable: table {table:?} is not in the replica's schema"
    )]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// `setup` would drop or rebuild a table that still has local changes
    /// not yet on the server (they would be lost).
    #[error(
        "the replica's schema snapshot is unreadable: table {table:?} {}; sync them first",
        if *.dropped { "is no longer synced but has local changes not yet on the server" }
        else { "changed on the server but has local changes not yet pushed" }
    )]
    TableHasLocalChanges {
        /// The table.
        table: String,
        /// It is no longer synced (else: its definition changed).
        dropped: bool,
    },
    /// Metadata stored as JSON (the schema snapshot, bootstrap progress) or
    /// a statement's JSON parameter could not be read or written.
    #[error("the replica's schema snapshot is unreadable: {source}")]
    Json {
        /// The JSON error.
        #[from]
        source: serde_json::Error,
    },
    /// A metadata value (`_outpost_meta`) is missing or does not parse.
    #[error(
        "the replica's schema snapshot is unreadable: {}",
        match .value {
            Some(v) => format!("{key} {v:?} is not {expected}"),
            None => format!("{key} missing or not {expected}"),
        }
    )]
    BadMetadata {
        /// The `_outpost_meta` key.
        key: &'static str,
        /// What is stored (`None`: nothing usable).
        value: Option<String>,
        /// What it should be ("a number", "a UUID").
        expected: &'static str,
    },
    /// Another process (an `outpost setup`, a migration) changed the
    /// replica's schema snapshot since this connection loaded it: nothing
    /// was written; reload the snapshot ([`crate::Replica::refresh`]) and
    /// retry.
    #[error(
        "the replica's schema snapshot was changed by another process (an `outpost setup`?) since this node loaded it; nothing was written, the node reloads it before the next operation"
    )]
    SchemaChanged,
    /// The schema snapshot cannot be used (the message says why).
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
                    waited_secs: BUSY_TIMEOUT.as_secs(),
                };
            }
            LocalError::Sqlite { context, source }
        }
    }

    /// Whether retrying later may succeed: another connection held the
    /// replica's write lock past the busy timeout.
    pub fn is_transient(&self) -> bool {
        matches!(self, LocalError::Locked { .. } | LocalError::SchemaChanged)
    }

    /// The replica's own constraint the write broke, if that is what
    /// failed: `Some(true)` for a duplicate key (`UNIQUE` or
    /// `PRIMARY KEY`), `Some(false)` for another constraint. A write the
    /// request asked for, refused as the server would refuse it.
    pub fn violated_constraint(&self) -> Option<bool> {
        match self {
            // SQLite's extended code tells the kind of constraint, not its
            // message's wording.
            LocalError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if e.code == rusqlite::ErrorCode::ConstraintViolation => Some(matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            )),
            _ => None,
        }
    }

    /// Whether what the call named is not there (a conflict to resolve).
    pub fn is_not_found(&self) -> bool {
        matches!(self, LocalError::NoConflict { .. })
    }

    /// Whether the call's own input was refused and nothing was written: a
    /// merged row that does not fit, a model request that cannot be carried
    /// out. The replica is as it was; the same call fails again.
    pub fn is_refused(&self) -> bool {
        matches!(self, LocalError::BadMergedRow { .. } | LocalError::Query(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_classes() {
        let no = LocalError::NoConflict {
            table: "Post".into(),
            pk: "[\"p1\"]".into(),
        };
        assert_eq!(no.to_string(), "no conflict on Post [\"p1\"]");
        assert!(no.is_not_found() && !no.is_refused() && !no.is_transient());
        let merged = LocalError::BadMergedRow {
            table: "Post".into(),
            problem: "cannot change its key".into(),
        };
        assert_eq!(
            merged.to_string(),
            "a merged row of Post cannot change its key"
        );
        assert!(merged.is_refused() && !merged.is_not_found());
        let kept = LocalError::TableHasLocalChanges {
            table: "Post".into(),
            dropped: true,
        };
        assert_eq!(
            kept.to_string(),
            "the replica's schema snapshot is unreadable: table \"Post\" is no longer synced but has \
             local changes not yet on the server; sync them first"
        );
        let meta = LocalError::BadMetadata {
            key: "meta_version",
            value: Some("x".into()),
            expected: "a number",
        };
        assert_eq!(
            meta.to_string(),
            "the replica's schema snapshot is unreadable: meta_version \"x\" is not a number"
        );
        let busy = LocalError::sqlite("writing")(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(busy.is_transient(), "{busy}");
        assert!(busy.to_string().contains("waited 5s"), "{busy}");
        let other = LocalError::sqlite("writing")(rusqlite::Error::InvalidQuery);
        assert!(!other.is_transient());
    }
}
