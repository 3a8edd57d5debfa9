//! Row scopes: the gateway's sync rules as the feed applies them
//! (docs/gateway.md, "Sync rules"). A [`Scope`] holds, per table, an SQL
//! condition over the table's columns that a node's rows must satisfy; the
//! table is its own alias in it (`"Post"."userId"` and `"userId"` both
//! work) and it reads the node's claims through `current_setting(…)`, set on
//! the session by the gateway with bound values. The condition text holds
//! no value of a request, so every statement built from it has one text
//! whatever the node (prepared once per connection).
//!
//! The feed applies it in three places:
//! * the bootstrap copies only the rows satisfying it ([`super::Bootstrap`]);
//! * a pull sends a changed row that does not satisfy it as a deletion, so
//!   a row that moved out of scope leaves the node's replica;
//! * a push refuses (`FAILED`, naming the rule) a row whose server state
//!   before the change, or whose state after it, does not satisfy it.
//!
//! [`in_scope`] answers, for a list of keys, which rows exist and which of
//! those satisfy the condition, in the caller's transaction.

use std::collections::{BTreeMap, HashMap};

use outpost_core::ident::quote;
use outpost_core::schema::Table;
use outpost_core::types::Value;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::sql;
use super::support::{Statements, db, params, statement};
use crate::codec::Bind;
use crate::error::RemoteError;

/// One table's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableScope {
    /// The rule it comes from, as messages name it (`rule 1 (Post)`).
    pub rule: String,
    /// SQL over the table's columns, claims already read through
    /// `current_setting`; wrapped in parentheses on lines of its own
    /// wherever it is used (a trailing `--` comment ends on its line).
    pub condition: String,
}

/// The conditions of a node's tables. A table without one is not
/// filtered (the gateway serves no table without a rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Conditions by table name.
    pub tables: BTreeMap<String, TableScope>,
}

impl Scope {
    /// The condition of `table`, if it has one.
    pub fn of(&self, table: &str) -> Option<&TableScope> {
        self.tables.get(table)
    }
}

/// `WHERE (cond)` for a table aliased as its own name.
pub(super) fn filter(scope: &TableScope) -> String {
    format!("(\n{}\n)", scope.condition)
}

/// `FROM "schema"."T" AS "T"`: the condition names the table by its own
/// name whatever schema it is in.
pub(super) fn aliased(pg_schema: &str, table: &Table) -> String {
    format!(
        "{} AS {}",
        sql::qualified(pg_schema, &table.name),
        quote(&table.name)
    )
}

/// The statement telling, for each key of a key source `k(i, k0…)`, whether
/// the row exists and whether it satisfies the condition: `(i, in_scope)`
/// for present rows only. The condition runs in a subquery whose only
/// table is the scoped one, so its column names cannot be taken for the
/// key source's.
pub(super) fn scope_states(
    pg_schema: &str,
    table: &Table,
    scope: &TableScope,
    src: &str,
) -> String {
    let alias = quote(&table.name);
    let kcols = sql::key_names(table);
    let join = |left: &str| {
        table
            .primary_key
            .iter()
            .zip(&kcols)
            .map(|(c, k)| format!("{left}.{} = \"_outpost_k\".{k}", quote(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    format!(
        "SELECT \"_outpost_k\".i, EXISTS (SELECT 1 FROM {from} WHERE {inner} AND {cond}) \
         FROM (SELECT * FROM {src}) \"_outpost_k\" \
         JOIN {qualified} \"_outpost_t\" ON {outer}",
        from = aliased(pg_schema, table),
        inner = join(&alias),
        cond = filter(scope),
        qualified = sql::qualified(pg_schema, &table.name),
        outer = join("\"_outpost_t\""),
    )
}

/// For each of `keys` (by index) whose row exists: whether it satisfies the
/// table's condition, in `tx`'s snapshot.
pub(super) async fn in_scope(
    tx: &Transaction<'_>,
    cache: &mut Statements,
    pg_schema: &str,
    table: &Table,
    scope: &TableScope,
    keys: Vec<Vec<Value>>,
) -> Result<HashMap<usize, bool>, RemoteError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let src = sql::key_values(table, keys);
    let text = scope_states(pg_schema, table, scope, &src.sql);
    let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
    let p: Vec<&(dyn ToSql + Sync)> = params(&binds);
    let what = || {
        db(format!(
            "checking rows of {} against {}",
            table.name, scope.rule
        ))
    };
    let s = statement(tx, cache, src.cacheable, &text)
        .await
        .map_err(what())?;
    let found = tx.query(&s, &p).await.map_err(what())?;
    Ok(found
        .iter()
        .map(|r| (r.get::<_, i32>(0) as usize, r.get::<_, bool>(1)))
        .collect())
}

/// A pushed row's refusal by the rules.
pub(super) fn refusal(table: &Table, local_pk: &str, scope: &TableScope, after: bool) -> String {
    format!(
        "{} {local_pk}: refused by the sync rules: the row is outside this node's scope {} the change ({})",
        table.name,
        if after { "after" } else { "before" },
        scope.rule
    )
}

/// The rows of a table satisfying its condition (a scoped bootstrap's
/// progress).
pub(super) fn count_rows(pg_schema: &str, table: &Table, scope: &TableScope) -> String {
    format!(
        "SELECT count(*) FROM {} WHERE {}",
        aliased(pg_schema, table),
        filter(scope)
    )
}

/// The rows of a table satisfying its condition, in key order, binary (a
/// scoped bootstrap's copy). `COPY (SELECT …)` takes no parameters: the
/// claims are read from the session's settings.
pub(super) fn copy_out(pg_schema: &str, table: &Table, scope: &TableScope) -> String {
    let alias = quote(&table.name);
    format!(
        "COPY (SELECT {} FROM {} WHERE {} ORDER BY {}) TO STDOUT (FORMAT binary)",
        sql::column_list(table, &format!("{alias}.")),
        aliased(pg_schema, table),
        filter(scope),
        table
            .primary_key
            .iter()
            .map(|c| format!("{alias}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
