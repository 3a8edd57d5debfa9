//! [`RemoteError`]: everything that can go wrong talking to PostgreSQL, with
//! the table, column and operation in its fields and message, and the
//! [`RemoteError::is_transient`] classifier that drives retry and offline
//! switching.

use std::error::Error as _;

use outpost_core::tracking::NewerSchemaVersion;

/// An error of the PostgreSQL side of outpost.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A statement failed or the connection broke while doing `action`.
    #[error("{action}: {}", describe(.source))]
    Db {
        /// What was being done (`reading the columns of schema "public"`).
        action: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A selected table has a column whose type outpost cannot replicate.
    #[error(
        "table {table:?}, column {column:?}: type {pg_type} cannot be replicated: {reason}; \
         exclude the table (OUTPOST_EXCLUDE_TABLES={table}) or change the column's type \
         (docs/types.md lists the types outpost replicates)"
    )]
    UnsupportedType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type as PostgreSQL prints it (`hstore`, a composite type).
        pg_type: String,
        /// Why it is refused.
        reason: String,
    },

    /// Several selected tables or columns cannot be replicated: every one
    /// of them, found in one run, each with its reason.
    #[error("{}", describe_refusals(.refusals))]
    Unreplicable {
        /// Each table without a primary key and each column of an
        /// unsupported type, in table and column order.
        refusals: Vec<RemoteError>,
    },

    /// The server could not be reached.
    #[error("cannot reach the server at {server}: {reason}")]
    Unreachable {
        /// The server, password hidden.
        server: String,
        /// Why.
        reason: String,
    },

    /// A selected table has no primary key.
    #[error(
        "table {table:?} has no primary key; outpost needs one to identify rows \
         (add a primary key or exclude the table from sync)"
    )]
    NoPrimaryKey {
        /// The table.
        table: String,
    },

    /// A table named in the selection's `include` list does not exist.
    #[error(
        "table {table:?} was selected for sync but schema {pg_schema:?} has no ordinary or \
         partitioned table of that name (names are case-sensitive)"
    )]
    TableNotFound {
        /// The name as given.
        table: String,
        /// The schema searched.
        pg_schema: String,
    },

    /// The server's tracking schema is newer than this build.
    #[error(transparent)]
    NewerTrackingSchema(#[from] NewerSchemaVersion),

    /// `outpost.meta` holds something unexpected.
    #[error("the outpost tracking schema is damaged: {message}")]
    TrackingCorrupt {
        /// What is wrong.
        message: String,
    },

    /// A value read from PostgreSQL could not be decoded, or one sent could
    /// not be encoded.
    #[error("{action}, column {column:?} (type {pg_type}): {}", describe(.source))]
    Value {
        /// What was being done (`reading a row`).
        action: String,
        /// The column (or parameter) concerned.
        column: String,
        /// Its PostgreSQL type.
        pg_type: String,
        /// The driver's error, whose source is a [`crate::codec::CodecError`].
        #[source]
        source: tokio_postgres::Error,
    },

    /// A model request that cannot be carried out (bad arguments, record
    /// not found…).
    #[error(transparent)]
    Query(#[from] outpost_query::QueryError),
}

impl RemoteError {
    /// Wraps a driver error with what was being done.
    pub fn db(action: impl Into<String>, source: tokio_postgres::Error) -> RemoteError {
        RemoteError::Db {
            action: action.into(),
            source,
        }
    }

    /// True for errors that say nothing about the request, only that the
    /// server could not be reached or the connection broke (I/O errors, a
    /// closed connection, a timeout, SQLSTATE class 08, server shutting down
    /// or starting, too many connections): retry later, or go offline.
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Db { source, .. } => is_connection_error(source),
            RemoteError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

impl RemoteError {
    /// True when a prepared statement no longer matches its tables (a
    /// column's type changed on the server since it was prepared:
    /// `cached plan must not change result type`); preparing it again
    /// fixes it.
    pub fn is_stale_statement(&self) -> bool {
        match self {
            RemoteError::Db { source, .. } => source.as_db_error().is_some_and(|e| {
                *e.code() == tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED
                    && e.message()
                        .contains("cached plan must not change result type")
            }),
            _ => false,
        }
    }
}

/// Whether a driver error is about the connection rather than the request.
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    // The driver's Timeout kind has no cause and no public accessor.
    if e.to_string() == "timeout waiting for server" {
        return true;
    }
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The driver's message followed by its causes: tokio-postgres prints only
/// `db error` for a server error, the server's message is in the cause.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            s.push_str(&format!(" (DETAIL: {detail})"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!(" (HINT: {hint})"));
        }
        s.push_str(&format!(" [SQLSTATE {}]", db.code().code()));
        return s;
    }
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The message of [`RemoteError::Unreplicable`]: one line per refusal, then
/// the exclusion that lets setup go on.
fn describe_refusals(refusals: &[RemoteError]) -> String {
    let mut tables: Vec<&str> = refusals
        .iter()
        .filter_map(|r| match r {
            RemoteError::UnsupportedType { table, .. } | RemoteError::NoPrimaryKey { table } => {
                Some(table.as_str())
            }
            _ => None,
        })
        .collect();
    tables.dedup();
    let mut out = format!(
        "{} problems in {} selected tables; outpost cannot replicate them as they are:",
        refusals.len(),
        tables.len()
    );
    for r in refusals {
        let line = match r {
            RemoteError::UnsupportedType {
                table,
                column,
                pg_type,
                reason,
            } => format!(
                "table {table:?}, column {column:?}: type {pg_type} cannot be replicated: {reason}"
            ),
            RemoteError::NoPrimaryKey { table } => {
                format!("table {table:?} has no primary key (add one)")
            }
            other => other.to_string(),
        };
        out.push_str("\n  - ");
        out.push_str(&line);
    }
    out.push_str(&format!(
        "\nexclude these tables (OUTPOST_EXCLUDE_TABLES={}) or change the columns named \
         (docs/types.md lists the types outpost replicates)",
        tables.join(",")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_they_are_about() {
        let e = RemoteError::UnsupportedType {
            table: "Log".into(),
            column: "tags".into(),
            pg_type: "hstore".into(),
            reason: "an extension's type outpost has no mapping for".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "table \"Log\", column \"tags\": type hstore cannot be replicated: an extension's"
            ),
            "{msg}"
        );
        assert!(msg.contains("OUTPOST_EXCLUDE_TABLES=Log"), "{msg}");
        let all = RemoteError::Unreplicable {
            refusals: vec![
                e,
                RemoteError::NoPrimaryKey {
                    table: "Note".into(),
                },
            ],
        };
        let msg = all.to_string();
        assert!(
            msg.contains("\n  - table \"Log\", column \"tags\""),
            "{msg}"
        );
        assert!(
            msg.contains("\n  - table \"Note\" has no primary key"),
            "{msg}"
        );
        assert!(msg.contains("OUTPOST_EXCLUDE_TABLES=Log,Note"), "{msg}");
        let e = RemoteError::NoPrimaryKey {
            table: "Log".into(),
        };
        assert!(
            e.to_string().starts_with(
                "table \"Log\" has no primary key; outpost needs one to identify rows"
            )
        );
        assert!(!e.is_transient());
        let e = RemoteError::from(NewerSchemaVersion {
            installed: 3,
            supported: 1,
        });
        assert!(e.to_string().contains("version 3"));
    }
}
