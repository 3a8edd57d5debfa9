//! [`RemoteError`]: everything that can go wrong talking to PostgreSQL, with
//! the table, column and operation in its fields and message, and its
//! [`ErrorClass`]: the connection failed ([`RemoteError::is_unreachable`]),
//! the login was refused ([`RemoteError::is_auth`]), the server rejected a
//! statement ([`RemoteError::is_refused`]), or outpost cannot use what it
//! got. [`RemoteError::is_transient`] drives retry and offline switching.
//!
//! The class comes from the driver's error, never from a message:
//! [`tokio_postgres::Error::as_db_error`]'s SQLSTATE, [`tokio_postgres::Error::is_closed`],
//! and the kind of an I/O error among its causes ([`classify`]).

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

    /// A selected table cannot live in the replica as it is (a reserved
    /// name, names SQLite cannot tell apart, too many columns).
    #[error("{reason}")]
    ReplicaLimit {
        /// The table.
        table: String,
        /// Why, with what lets setup go on.
        reason: String,
    },

    /// The server could not be reached, or refused the login.
    #[error("cannot reach the server at {server}: {reason}")]
    Unreachable {
        /// The server, password hidden.
        server: String,
        /// Why.
        reason: String,
        /// The server refused the login (SQLSTATE class 28: wrong password,
        /// unknown role, no `pg_hba.conf` entry), rather than the
        /// connection failing.
        auth: bool,
    },

    /// The server answered but refused the login: a wrong password or
    /// user (SQLSTATE class 28), or a database that does not exist (3D000).
    /// Not a network problem, so not worded as one.
    #[error(
        "the server at {server} refused the login: {reason} (check the user, password and \
         database name in DATABASE_URL)"
    )]
    LoginRefused {
        /// The server, password hidden.
        server: String,
        /// The server's message.
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
    /// A gateway (`outpost gateway`, docs/gateway.md) answered a request
    /// with an error: its own (a refused token, a node id of another
    /// principal) or the database's behind it, with the class the gateway
    /// read from it.
    #[error("{action}: the gateway at {gateway} answered {status}: {message}")]
    Gateway {
        /// What was being done.
        action: String,
        /// The gateway's base URL.
        gateway: String,
        /// The HTTP status.
        status: u16,
        /// The error's code (`token_expired`, `unreachable`, …).
        code: String,
        /// The gateway's message.
        message: String,
        /// Its class, as the gateway read it.
        class: ErrorClass,
        /// The server's SQLSTATE, when the database refused the request
        /// (remote mode through a gateway): read as a direct node reads its
        /// own server's.
        sqlstate: Option<Box<str>>,
    },

    /// A table's definition on the server no longer matches the replica's
    /// schema snapshot (a column dropped, renamed or retyped, the table
    /// dropped): statements built from the snapshot fail for this table
    /// only, until `outpost setup` migrates the replica.
    #[error(
        "the server's table {table:?} no longer matches this replica ({source}); run `outpost setup` to migrate the replica (its local edits are kept)"
    )]
    TableChanged {
        /// The table.
        table: String,
        /// The server's refusal.
        #[source]
        source: Box<RemoteError>,
    },

    /// A pushed row does not have the table's shape (its values or its
    /// changed-column mask have another length than the table's columns):
    /// it was planned under another schema snapshot than the one the push
    /// names. Nothing of the push is written; a missing value is never
    /// taken for NULL.
    #[error(
        "a pushed row of {table} has {got} values where the table has {columns} columns: the rows were planned under another schema snapshot; nothing was written"
    )]
    PushShape {
        /// The table.
        table: String,
        /// Values (or mask entries) the row carries.
        got: usize,
        /// The table's columns.
        columns: usize,
    },
}

/// What kind of failure an error is, for callers that act on it (go
/// offline, tell the user to fix the login, mark a row failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The connection itself failed or broke: refused, reset, timed out,
    /// TLS, closed; the server shutting down or starting, too many
    /// connections (SQLSTATE class 08, 57P01–57P03, 53300). Says nothing
    /// about the request: retry later, or work offline.
    Unreachable,
    /// The server refused the login (SQLSTATE class 28, or the driver could
    /// not authenticate). Retrying with the same credentials fails again.
    Auth,
    /// The server rejected a statement (a constraint, a bad value, a column
    /// gone, a timeout on a lock…), or the driver could not send it (too
    /// many parameters, a value it cannot encode). The connection is fine;
    /// the same request fails again.
    Refused,
    /// What outpost itself cannot use: a schema it cannot replicate, a
    /// damaged or newer tracking schema, a value it cannot decode, a model
    /// request that cannot be carried out.
    Invalid,
}

impl RemoteError {
    /// Wraps a driver error with what was being done.
    pub fn db(action: impl Into<String>, source: tokio_postgres::Error) -> RemoteError {
        RemoteError::Db {
            action: action.into(),
            source,
        }
    }

    /// The error's class (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            RemoteError::Db { source, .. } => classify(source),
            RemoteError::Unreachable { auth: true, .. } => ErrorClass::Auth,
            RemoteError::Unreachable { auth: false, .. } => ErrorClass::Unreachable,
            RemoteError::LoginRefused { .. } => ErrorClass::Auth,
            // A value that does not decode is outpost's to fix, unless the
            // connection broke while reading it.
            RemoteError::Value { source, .. } => match classify(source) {
                ErrorClass::Unreachable => ErrorClass::Unreachable,
                _ => ErrorClass::Invalid,
            },
            RemoteError::UnsupportedType { .. }
            | RemoteError::Unreplicable { .. }
            | RemoteError::NoPrimaryKey { .. }
            | RemoteError::TableNotFound { .. }
            | RemoteError::ReplicaLimit { .. }
            | RemoteError::NewerTrackingSchema(_)
            | RemoteError::TrackingCorrupt { .. }
            | RemoteError::Query(_) => ErrorClass::Invalid,
            RemoteError::Gateway { class, .. } => *class,
            RemoteError::TableChanged { .. } | RemoteError::PushShape { .. } => ErrorClass::Refused,
        }
    }

    /// The server refused a statement because a table or column it names
    /// is gone or has another type: SQLSTATE 42703 (undefined column),
    /// 42P01 (undefined table), 42804 (datatype mismatch), 42883
    /// (undefined function, an operator on a retyped column).
    pub fn is_schema_drift(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            RemoteError::Db { source, .. } => source.as_db_error().is_some_and(|e| {
                [
                    SqlState::UNDEFINED_COLUMN,
                    SqlState::UNDEFINED_TABLE,
                    SqlState::DATATYPE_MISMATCH,
                    SqlState::UNDEFINED_FUNCTION,
                ]
                .contains(e.code())
            }),
            _ => false,
        }
    }

    /// This error, said of `table` when it is schema drift
    /// ([`Self::is_schema_drift`]).
    pub fn in_table(self, table: &str) -> RemoteError {
        if self.is_schema_drift() {
            RemoteError::TableChanged {
                table: table.to_string(),
                source: Box::new(self),
            }
        } else {
            self
        }
    }

    /// The table whose definition changed, for [`RemoteError::TableChanged`].
    pub fn changed_table(&self) -> Option<&str> {
        match self {
            RemoteError::TableChanged { table, .. } => Some(table),
            _ => None,
        }
    }

    /// The connection itself failed or broke ([`ErrorClass::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        self.class() == ErrorClass::Unreachable
    }

    /// The server refused the login ([`ErrorClass::Auth`]).
    pub fn is_auth(&self) -> bool {
        self.class() == ErrorClass::Auth
    }

    /// The server rejected a statement, or it could not be sent
    /// ([`ErrorClass::Refused`]); the connection is fine.
    pub fn is_refused(&self) -> bool {
        self.class() == ErrorClass::Refused
    }

    /// True for errors that say nothing about the request, only that the
    /// server could not be used right now: the connection failed or broke
    /// ([`Self::is_unreachable`]), or connecting failed in any way,
    /// a refused login included (the node works offline until it can
    /// connect again). Retry later, or go offline. Never true for a
    /// statement the server rejected.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. } | RemoteError::LoginRefused { .. }
        ) || self.is_unreachable()
            // A gateway that refuses the token is, for the node, a server
            // it cannot log in to: it works offline and says why.
            || matches!(
                self,
                RemoteError::Gateway {
                    class: ErrorClass::Auth,
                    ..
                }
            )
    }
}

impl RemoteError {
    /// True when the statement was more than the wire protocol carries:
    /// more bind parameters than its 16-bit count (a very long `in` list).
    /// Read from the driver's error, never from its text: the server's
    /// refusal of the message (SQLSTATE 08P01, protocol violation), or the
    /// driver's, which either could not parse the server's description of
    /// the statement (the count wrapped: `Parse`, see [`cause`]) or found a
    /// parameter count other than the statement's (`Parameters`).
    pub fn exceeds_protocol_limits(&self) -> bool {
        match self {
            RemoteError::Db { source, .. } => match source.as_db_error() {
                Some(db) => *db.code() == tokio_postgres::error::SqlState::PROTOCOL_VIOLATION,
                None => matches!(driver_kind(source).as_str(), "Parse" | "Parameters"),
            },
            _ => false,
        }
    }

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

/// What a failed request should be answered as, from the caller's side: the
/// finer reading of a driver error that the node's answers need (an HTTP
/// status, whether to go offline, whether to retry). Unlike [`ErrorClass`],
/// which says whether the *connection* survived, this says whose doing the
/// failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The path to the server failed (refused, reset, timed out, closed;
    /// the server shutting down, starting or full).
    Unreachable,
    /// The server refused the login.
    Auth,
    /// A statement or lock timeout, a serialization failure, a deadlock:
    /// the same request may succeed later.
    Transient,
    /// A constraint refused the write (SQLSTATE class 23).
    Constraint,
    /// The request's data or SQL is wrong for the server (classes 22, 42).
    BadInput,
    /// Anything else the server or the driver refused about the request.
    Refused,
}

impl RemoteError {
    /// Whether the error is a refusal met by the request's own statements
    /// (the model service's error, or the server's SQLSTATE, also when a
    /// gateway passed them on), not a failure to get the request carried
    /// out (a path, a login, a configuration, outpost's own checks).
    pub fn is_request_refusal(&self) -> bool {
        match self {
            RemoteError::Query(_) => true,
            RemoteError::Db { source, .. } => source.as_db_error().is_some(),
            RemoteError::Gateway { sqlstate, .. } => sqlstate.is_some(),
            _ => false,
        }
    }

    /// The [`Cause`] of a driver error (`None` for errors that are not the
    /// driver's: connecting, outpost's own checks).
    pub fn cause(&self) -> Option<Cause> {
        match self {
            RemoteError::Db { source, .. } => Some(cause(source)),
            _ => None,
        }
    }
}

/// The [`Cause`] of a server error by its SQLSTATE (also for an error a
/// gateway passed on with the server's code).
pub fn cause_of_sqlstate(code: &str) -> Cause {
    match code {
        // The server shutting down, starting or full.
        "57P01" | "57P02" | "57P03" | "53300" => Cause::Unreachable,
        // A protocol violation is caused by what was sent (too many bind
        // parameters for one message, say), not by the path to it.
        "08P01" => Cause::Refused,
        // Statement or lock timeout, serialization failure, deadlock.
        "57014" | "55P03" | "40001" | "40P01" => Cause::Transient,
        c if c.starts_with("08") => Cause::Unreachable,
        c if c.starts_with("28") => Cause::Auth,
        c if c.starts_with("23") => Cause::Constraint,
        c if c.starts_with("22") || c.starts_with("42") => Cause::BadInput,
        _ => Cause::Refused,
    }
}

/// The [`Cause`] of a driver error: by SQLSTATE when the server answered,
/// else by the driver's kind of error.
pub fn cause(e: &tokio_postgres::Error) -> Cause {
    if let Some(db) = e.as_db_error() {
        return cause_of_sqlstate(db.code().code());
    }
    match classify(e) {
        // The driver could not parse the server's answer to this request (a
        // statement with more parameters than the protocol's 16-bit count:
        // `invalid message length: parameters is not drained`). TCP and TLS
        // deliver bytes intact, so this is the request's doing, not the
        // path's, although the connection is lost with it.
        ErrorClass::Unreachable if driver_kind(e) == "Parse" => Cause::Refused,
        ErrorClass::Unreachable => Cause::Unreachable,
        ErrorClass::Auth => Cause::Auth,
        // The driver refused to send it (a value it cannot encode, too many
        // parameters), or could not read what came back: the request's.
        ErrorClass::Refused | ErrorClass::Invalid => Cause::Refused,
    }
}

/// The class of a driver error:
///
/// * a server error by its SQLSTATE: class 28 is [`ErrorClass::Auth`];
///   class 08, `57P01`–`57P03` (shutting down, starting) and `53300` (too
///   many connections) are [`ErrorClass::Unreachable`]; any other is
///   [`ErrorClass::Refused`];
/// * otherwise by the driver's kind of error: a closed connection, an I/O
///   or TLS failure, a failed connect, a timeout, a garbled answer are
///   unreachable; a failed authentication is auth; a request the driver
///   could not encode (more than 65,535 parameters, a NUL in the text, a
///   value its type refuses) or with the wrong number of parameters is
///   refused (nothing was sent; the connection is untouched); a result it
///   could not decode, and a bad configuration, are invalid.
pub fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    if e.is_closed() {
        return ErrorClass::Unreachable;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return if code.starts_with("28") {
            ErrorClass::Auth
        } else if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") {
            ErrorClass::Unreachable
        } else {
            ErrorClass::Refused
        };
    }
    match driver_kind(e).as_str() {
        "Io" | "Tls" | "Connect" | "Timeout" | "Closed" | "UnexpectedMessage" | "Parse" => {
            ErrorClass::Unreachable
        }
        "Authentication" => ErrorClass::Auth,
        "Encode" | "ToSql" | "Parameters" | "Db" => ErrorClass::Refused,
        "FromSql" | "Column" | "ColumnCount" | "RowCount" | "Config" | "ConfigParse" => {
            ErrorClass::Invalid
        }
        // A kind a later driver adds: an I/O failure among its causes is
        // the connection's.
        _ => {
            let mut cause = e.source();
            while let Some(c) = cause {
                if c.is::<std::io::Error>() {
                    return ErrorClass::Unreachable;
                }
                cause = c.source();
            }
            ErrorClass::Refused
        }
    }
}

/// The driver's kind of error (`Io`, `Encode`, `ToSql`…). tokio-postgres
/// keeps it private and names it only in its `Debug` form
/// (`Error { kind: Encode, cause: … }`), whose variant names are the
/// enum's own: the name is read from there, never from a message.
fn driver_kind(e: &tokio_postgres::Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split_once("kind: ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a driver error is about the connection rather than the request
/// ([`classify`] says [`ErrorClass::Unreachable`]).
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    classify(e) == ErrorClass::Unreachable
}

/// Whether the server gave up on a statement for a reason of the moment,
/// not of the statement: a statement or lock timeout, a deadlock, a
/// serialization failure (SQLSTATE 57014, 55P03, 40P01, 40001). The same
/// write may succeed later, so a push never blames its rows for it: the run
/// fails and the rows stay pending for the next one.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code(), "57014" | "55P03" | "40P01" | "40001"))
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
    with_causes(e)
}

/// An error and its causes, `: `-separated: the text of many errors
/// (tokio-postgres', reqwest's) leaves out why (refused, timed out, a
/// certificate).
pub fn with_causes(e: &dyn std::error::Error) -> String {
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
            RemoteError::UnsupportedType { table, .. }
            | RemoteError::NoPrimaryKey { table }
            | RemoteError::TableNotFound { table, .. }
            | RemoteError::ReplicaLimit { table, .. } => Some(table.as_str()),
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
