//! # outpost-query
//!
//! The model service's query language: Prisma-like requests
//! (`findMany`, `findFirst`, `findUnique`, `count`, `create`, `createMany`,
//! `update`, `updateMany`, `upsert`, `delete`, `deleteMany` with Prisma's
//! argument shapes as JSON) parsed and checked against the synced
//! [`Schema`] into a [`Plan`], turned into SQL for SQLite and PostgreSQL
//! with sea-query, and carried out by [`exec::execute`] over a database
//! [`exec::Driver`] that `outpost-local` (the replica) and `outpost-remote`
//! (the server) implement. Pure: no database driver here.
//!
//! ```
//! use outpost_query::{Operation, plan};
//! # fn demo(schema: &outpost_core::Schema) -> Result<(), outpost_query::QueryError> {
//! let args = serde_json::json!({
//!     "where": {"title": {"contains": "rust", "mode": "insensitive"}},
//!     "include": {"user": true},
//!     "orderBy": [{"views": "desc"}],
//!     "take": 10,
//! });
//! let plan = plan(schema, "Post", "findMany".parse::<Operation>()?, &args)?;
//! assert!(!plan.is_write());
//! # Ok(()) }
//! ```
//!
//! ## Identical results on both databases
//!
//! A request gives the same JSON from the replica and from the server. The
//! replica stores values as `outpost_core::types` documents (decimal text,
//! canonical timestamps, 0/1 booleans…), so the SQL differs by dialect
//! where the storage differs:
//!
//! * text is compared and ordered bytewise: `COLLATE "C"` on PostgreSQL,
//!   SQLite's `BINARY` (`char(n)` ignores trailing spaces on both: `rtrim`
//!   in SQLite);
//! * `numeric` text in SQLite is compared and ordered by value through the
//!   collation [`text::NUMERIC_COLLATION`]; enums in declaration order
//!   (a `CASE` over the labels in SQLite);
//! * every `ORDER BY` says `NULLS LAST` (ascending) or `NULLS FIRST`
//!   (descending) unless the request chose, and ends with the primary key
//!   ascending, so ties and pagination are deterministic;
//! * `contains`/`startsWith`/`endsWith` are case-sensitive: `instr`/`substr`
//!   in SQLite (its `LIKE` ignores ASCII case), `strpos`/`right` in
//!   PostgreSQL; `mode: "insensitive"` compares `lower()` of both sides,
//!   PostgreSQL's own and [`text::LOWER_FUNCTION`] in SQLite (Unicode simple
//!   case mapping, as `lower()` in a UTF-8 database);
//! * values written get the column's type modifier applied first
//!   ([`text::apply_typmod`]), so `numeric(10,2)`, `varchar(n)`, `char(n)`
//!   and `timestamp(3)` hold in the replica what the server would store;
//! * the replica declares no unique constraints, so a local write checks
//!   them itself (inside the write's savepoint) and fails as the server
//!   would.
//!
//! ## Where this departs from sea-query
//!
//! Statements (`SELECT`/`INSERT`/`UPDATE`/`DELETE`, `RETURNING`,
//! `ON CONFLICT`), identifiers, conditions, `ORDER BY … NULLS …`, `LIMIT`
//! and placeholders come from sea-query. Custom expressions
//! (`Expr::cust_with_exprs`) carry what it has no builder for: `COLLATE`,
//! PostgreSQL casts (`$1::timestamptz`, so the server knows each parameter's
//! type), `instr`/`strpos`/`right`/`substr`, `lower`/`outpost_lower`,
//! `rtrim`, and the key of the replica's `LEFT JOIN "_outpost_rows"` for
//! `syncStatus` (written by `outpost_core::sqlite::pk_json`, exactly as the
//! capture triggers compute it; the join is left out, every row `SYNCED`,
//! when a probe finds no entry for the table). The values sea-query collects are mapped back
//! to outpost [`Value`]s ([`sql::Statement::params`]):
//! integers stay `i64`, decimals and timestamps stay text; `json` and array
//! values travel as their JSON text, which is the replica's storage form
//! and which `outpost-remote` turns back into typed values by the
//! parameter types the server reports.
//!
//! ## Limitations (rejected with a clear error)
//!
//! Relation filters (`where: {user: {…}}`), nested writes
//! (`data: {user: {connect: …}}`), ordering by relation fields, `distinct`,
//! negative `take`, `cursor` inside `include`, `_count`; filters and
//! ordering on `json`/`jsonb`, `interval` and array columns (except
//! `equals: null`/`not: null`); `increment`/`decrement`/`multiply`/`divide`
//! on `numeric` and `real` columns. Dates and timestamps order correctly
//! for years 0000–9999 (the canonical text's range). On PostgreSQL a write
//! of several statements (`upsert`, `update` with a changed key, a
//! `createMany` split over several `INSERT`s) is atomic only inside the
//! caller's transaction.

mod assemble;
pub mod error;
pub mod exec;
mod plan;
pub mod records;
pub mod sql;
pub mod text;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use error::QueryError;
pub use exec::{Driver, ExecOptions, execute, execute_read, execute_scoped};

/// Row scopes for a request run on the server under a gateway's sync
/// rules: per table, an SQL condition over its columns (the table its own
/// alias; claims already read through `current_setting`). A scoped read
/// sees only the rows satisfying their table's condition (a table the
/// scopes do not name has none), and a scoped `UPDATE` or `DELETE` touches
/// only those; what a write leaves is the caller's to check (the gateway
/// checks every written row before it commits).
pub type Scopes = std::collections::BTreeMap<String, String>;
pub use outpost_core::{Schema, Table, Value};
pub use plan::{MAX_NESTING, Plan, plan};
pub use records::{ReadError, Records};
pub use sql::Statement;

/// A model operation, spelled as Prisma spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `findMany`: the records matching `where`, ordered and paginated.
    FindMany,
    /// `findFirst`: the first record `findMany` would give, or `null`.
    FindFirst,
    /// `findUnique`: the record a unique `where` names, or `null`.
    FindUnique,
    /// `count`: how many records match `where`.
    Count,
    /// `create`: inserts one record and returns it.
    Create,
    /// `createMany`: inserts records, returns `{count}`.
    CreateMany,
    /// `update`: changes the record a unique `where` names and returns it.
    Update,
    /// `updateMany`: changes every matching record, returns `{count}`.
    UpdateMany,
    /// `upsert`: updates the record a unique `where` names, or creates it.
    Upsert,
    /// `delete`: deletes the record a unique `where` names and returns it.
    Delete,
    /// `deleteMany`: deletes every matching record, returns `{count}`.
    DeleteMany,
}

impl Operation {
    /// Every operation's name, in declaration order.
    pub const NAMES: [&'static str; 11] = [
        "findMany",
        "findFirst",
        "findUnique",
        "count",
        "create",
        "createMany",
        "update",
        "updateMany",
        "upsert",
        "delete",
        "deleteMany",
    ];

    const ALL: [Operation; 11] = [
        Operation::FindMany,
        Operation::FindFirst,
        Operation::FindUnique,
        Operation::Count,
        Operation::Create,
        Operation::CreateMany,
        Operation::Update,
        Operation::UpdateMany,
        Operation::Upsert,
        Operation::Delete,
        Operation::DeleteMany,
    ];

    /// The Prisma spelling (`findMany`).
    pub fn name(self) -> &'static str {
        let i = Operation::ALL.iter().position(|o| *o == self).unwrap_or(0);
        Operation::NAMES[i]
    }

    /// Whether the operation writes.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Operation::FindMany | Operation::FindFirst | Operation::FindUnique | Operation::Count
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Operation {
    type Err = QueryError;

    /// Parses Prisma's spelling; the error names the operation and lists
    /// the valid ones.
    fn from_str(s: &str) -> Result<Operation, QueryError> {
        Operation::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Operation::ALL[i])
            .ok_or_else(|| QueryError::UnknownOperation {
                operation: s.to_string(),
            })
    }
}

/// The SQL dialect a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The replica.
    Sqlite,
    /// The server.
    Postgres,
}

/// What an operation gives back.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    /// The result in Prisma's shape: a record object (or `null`), an array
    /// of records, a number (`count`) or `{"count": n}`.
    pub result: serde_json::Value,
    /// Every row the operation created, changed or deleted, in the order
    /// written; empty for reads.
    pub written: Vec<WrittenRow>,
}

/// One row a write created, changed or deleted: what the node mirrors into
/// the replica after a write on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenRow {
    /// The table.
    pub table: String,
    /// The row's primary-key values, in key order.
    pub pk: Vec<Value>,
    /// The whole row after the write, in table column order; `None` when
    /// the row was deleted (or its key changed away from `pk`).
    pub values: Option<Vec<Value>>,
}
