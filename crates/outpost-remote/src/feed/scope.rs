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
//! [`children_of`] adds to a pull the unchanged rows of child tables whose
//! condition reads a parent that changed and is in scope, so a parent
//! moving into a node's scope brings its children. [`outside_scope`]
//! answers a node asking which of the rows it holds have left its scope
//! without a change of their own (a parent moved out): the node removes
//! those.

use std::collections::{BTreeMap, HashMap, HashSet};

use outpost_core::ident::quote;
use outpost_core::schema::{ForeignKey, Schema, Table};
use outpost_core::sync::ServerRow;
use outpost_core::types::Value;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::sql::{self, Source};
use super::support::{Statements, db, params, server_row, statement};
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

/// Which of `keys` of `table` (by index) a node with `scope` would not be
/// served now: rows that no longer exist, or that do not satisfy the
/// table's condition. Read in one read-only snapshot. A table without a
/// condition is served whole: none of its rows are outside (a row that is
/// gone reaches the node as a pulled deletion anyway).
pub async fn outside_scope(
    client: &mut tokio_postgres::Client,
    schema: &Schema,
    table: &Table,
    keys: Vec<Vec<Value>>,
    cache: &mut super::PullStatements,
    scope: Option<&Scope>,
) -> Result<Vec<usize>, RemoteError> {
    let Some(cs) = scope.and_then(|s| s.of(&table.name)) else {
        return Ok(Vec::new());
    };
    // A key of the wrong length names no row (the gateway refuses such a
    // request before it gets here).
    let total = keys.len();
    let width = table.primary_key.len();
    let (asked, index): (Vec<Vec<Value>>, Vec<usize>) = keys
        .into_iter()
        .enumerate()
        .filter(|(_, k)| k.len() == width)
        .map(|(i, k)| (k, i))
        .unzip();
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db("starting a scope check"))?;
    let found = in_scope(&tx, cache.cache(), &schema.pg_schema, table, cs, asked).await?;
    tx.commit().await.map_err(db("ending a scope check"))?;
    let kept: HashSet<usize> = found
        .into_iter()
        .filter(|&(_, inside)| inside)
        .filter_map(|(j, _)| index.get(j).copied())
        .collect();
    Ok((0..total).filter(|i| !kept.contains(i)).collect())
}

/// The rows a remote-mode write left (`(table, key)`, in `tx`) that the
/// node's scope does not cover, each with its refusal: a write must not
/// hand a row to another node's scope (docs/gateway.md, "Remote mode").
/// Rows no longer present are not checked (a scoped write deletes only
/// rows in scope).
pub async fn written_outside(
    tx: &Transaction<'_>,
    schema: &Schema,
    scope: &Scope,
    rows: &[(&str, &[Value])],
) -> Result<Vec<String>, RemoteError> {
    let mut by_table: BTreeMap<&str, Vec<Vec<Value>>> = BTreeMap::new();
    for (table, key) in rows {
        by_table.entry(table).or_default().push(key.to_vec());
    }
    let mut cache = Statements::new();
    let mut out = Vec::new();
    for (name, keys) in by_table {
        let Some(table) = schema.table(name) else {
            continue;
        };
        let Some(cs) = scope.of(name) else {
            out.push(format!(
                "{name}: refused by the sync rules: no rule serves this table"
            ));
            continue;
        };
        let found = in_scope(tx, &mut cache, &schema.pg_schema, table, cs, keys.clone()).await?;
        let mut outside: Vec<usize> = found
            .into_iter()
            .filter(|&(_, inside)| !inside)
            .map(|(i, _)| i)
            .collect();
        outside.sort_unstable();
        for i in outside {
            let key: Vec<serde_json::Value> = table
                .pk_columns()
                .zip(keys.get(i).map(Vec::as_slice).unwrap_or_default())
                .map(|(c, v)| v.to_json(&c.ty))
                .collect();
            let key = serde_json::Value::Array(key).to_string();
            out.push(refusal(table, &key, cs, true));
        }
    }
    Ok(out)
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
/// claims are read from the session's settings. With `after`, only the
/// rows after a key (a resumed copy's [`sql::after_key`]).
pub(super) fn copy_out(
    pg_schema: &str,
    table: &Table,
    scope: &TableScope,
    after: Option<&str>,
) -> String {
    let alias = quote(&table.name);
    format!(
        "COPY (SELECT {} FROM {} WHERE {}{} ORDER BY {}) TO STDOUT (FORMAT binary)",
        sql::column_list(table, &format!("{alias}.")),
        aliased(pg_schema, table),
        filter(scope),
        after.map_or_else(String::new, |a| format!(" AND {a}")),
        table
            .primary_key
            .iter()
            .map(|c| format!("{alias}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Whether `scope`'s condition reads table `parent`: its name appears as
/// a quoted identifier (`"Post"`) or as a bare word (`post`, compared as
/// PostgreSQL folds unquoted names). A text match, on purpose: it can only
/// make a pull send more rows of the child (each still checked), never
/// fewer.
pub(super) fn reads(scope: &TableScope, parent: &str) -> bool {
    let c = &scope.condition;
    if c.contains(&quote(parent)) {
        return true;
    }
    let lower = parent.to_lowercase();
    c.split(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '$'))
        .any(|w| w.to_lowercase() == lower && parent == lower)
}

/// The rows of `child` that reference, through `fk`, the parent rows of a
/// source `v(i, k0…)` of referenced values, and satisfy the child's
/// condition; the columns [`super::support::server_row`] reads. The
/// condition runs in a derived table whose only table is the child's, so
/// `row_versions`' columns cannot be taken for the child's. The table name
/// is the parameter after the source's.
pub(super) fn children_rows(
    pg_schema: &str,
    child: &Table,
    fk: &ForeignKey,
    scope: &TableScope,
    src: &Source,
) -> String {
    let alias = quote(&child.name);
    let fk_cols: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("{alias}.{}", quote(c)))
        .collect();
    let knames: Vec<String> = (0..fk.columns.len()).map(|i| format!("k{i}")).collect();
    let pk: Vec<String> = child
        .primary_key
        .iter()
        .map(|c| format!("\"_outpost_c\".{}", quote(c)))
        .collect();
    format!(
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, true, {pk}, {cols} \
         FROM (SELECT {alias}.* FROM {from} WHERE ({fk_cols}) IN (SELECT {knames} FROM {src}) AND {cond}) \"_outpost_c\" \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = jsonb_build_array({pk})",
        pk = pk.join(", "),
        cols = sql::column_list(child, "\"_outpost_c\"."),
        from = aliased(pg_schema, child),
        fk_cols = fk_cols.join(", "),
        knames = knames.join(", "),
        src = src.sql,
        cond = filter(scope),
        tn = src.params.len() + 1,
    )
}

/// The rows of scoped child tables that reference the changed parent rows
/// of `batch` still in the node's scope, or those of `outside` (changed
/// rows outside it, with their values, never sent), and are in scope
/// themselves, with their current versions: a parent moving into a node's
/// scope brings its unchanged children (a child whose condition reads its
/// parent, `"postId" IN (SELECT id FROM "Post" WHERE …)`), and so does a
/// parent that stays outside but now lets the child rule serve them (a
/// post of another user, published). Rows the batch names already are
/// left out; the node takes a row at a version it already has as a no-op.
pub(super) async fn children_of(
    tx: &Transaction<'_>,
    cache: &mut Statements,
    schema: &Schema,
    scope: &Scope,
    tables: Option<&[String]>,
    batch: &[ServerRow],
    outside: &[ServerRow],
) -> Result<Vec<ServerRow>, RemoteError> {
    let mut out: Vec<ServerRow> = Vec::new();
    let mut named: HashSet<(String, String)> = batch
        .iter()
        .map(|r| (r.table.clone(), format!("{:?}", r.pk)))
        .collect();
    for child in &schema.tables {
        let Some(cs) = scope.of(&child.name) else {
            continue;
        };
        if tables.is_some_and(|t| !t.contains(&child.name)) {
            continue;
        }
        for fk in &child.foreign_keys {
            if fk.ref_table == child.name || !reads(cs, &fk.ref_table) {
                continue;
            }
            let Some(parent) = schema.table(&fk.ref_table) else {
                continue;
            };
            let Some(idx) = fk
                .ref_columns
                .iter()
                .map(|c| parent.columns.iter().position(|p| &p.name == c))
                .collect::<Option<Vec<usize>>>()
            else {
                continue;
            };
            let cells: Vec<Vec<Value>> = batch
                .iter()
                .chain(outside)
                .filter(|r| r.table == parent.name)
                .filter_map(|r| r.values.as_ref())
                .map(|v| idx.iter().map(|&i| v[i].clone()).collect())
                .collect();
            if cells.is_empty() {
                continue;
            }
            let types: Vec<String> = idx
                .iter()
                .map(|&i| parent.columns[i].ty.pg_name.clone())
                .collect();
            let names: Vec<String> = (0..idx.len()).map(|i| format!("k{i}")).collect();
            let array = idx.iter().any(|&i| parent.columns[i].ty.array);
            let src = sql::source(!array, &names, &types, cells, 1);
            let text = children_rows(&schema.pg_schema, child, fk, cs, &src);
            let binds: Vec<Bind<'_>> = src.params.iter().map(Bind).collect();
            let mut p: Vec<&(dyn ToSql + Sync)> = params(&binds);
            p.push(&child.name);
            let what = || {
                db(format!(
                    "reading rows of {} under changed rows of {} ({})",
                    child.name, parent.name, cs.rule
                ))
            };
            let s = statement(tx, cache, src.cacheable, &text)
                .await
                .map_err(what())?;
            for r in tx.query(&s, &p).await.map_err(what())? {
                let row = server_row(&r, child, 0)?;
                if named.insert((row.table.clone(), format!("{:?}", row.pk))) {
                    out.push(row);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Exact text of the scoped statements (as `sql_tests` pins the
    //! feed's others), and which conditions read a parent.

    use outpost_core::schema::{Column, FkAction};
    use outpost_core::types::{ColumnType, ScalarType};

    use super::*;

    fn col(name: &str, scalar: ScalarType, pg_name: &str) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType::scalar(scalar, pg_name),
            nullable: false,
            default: None,
            identity: None,
            generated: false,
        }
    }

    /// `"Comment"("id" text, "postId" text → "Post"."id")`.
    fn comments() -> Table {
        Table {
            name: "Comment".into(),
            primary_key: vec!["id".into()],
            columns: vec![
                col("id", ScalarType::Text, "text"),
                col("postId", ScalarType::Text, "text"),
            ],
            foreign_keys: vec![ForeignKey {
                name: "Comment_postId_fkey".into(),
                columns: vec!["postId".into()],
                ref_table: "Post".into(),
                ref_columns: vec!["id".into()],
                on_delete: FkAction::Cascade,
                on_update: FkAction::NoAction,
            }],
            uniques: vec![],
            relations: vec![],
        }
    }

    fn rule() -> TableScope {
        TableScope {
            rule: "rule 3 (table \"Comment\")".into(),
            condition: "\"postId\" IN (SELECT id FROM \"Post\" WHERE \"userId\" = current_setting('outpost.claim.sub'))".into(),
        }
    }

    const COND: &str = "(\n\"postId\" IN (SELECT id FROM \"Post\" WHERE \"userId\" = current_setting('outpost.claim.sub'))\n)";

    #[test]
    fn scoped_statements_have_one_text_whatever_the_node() {
        let t = comments();
        let s = rule();
        assert_eq!(
            count_rows("public", &t, &s),
            format!("SELECT count(*) FROM \"public\".\"Comment\" AS \"Comment\" WHERE {COND}")
        );
        assert_eq!(
            copy_out("public", &t, &s, None),
            format!(
                "COPY (SELECT \"Comment\".\"id\", \"Comment\".\"postId\" FROM \"public\".\"Comment\" AS \"Comment\" \
                 WHERE {COND} ORDER BY \"Comment\".\"id\") TO STDOUT (FORMAT binary)"
            )
        );
        let keys = sql::key_values(&t, vec![vec![Value::Text("c1".into())]]);
        assert_eq!(
            scope_states("public", &t, &s, &keys.sql),
            format!(
                "SELECT \"_outpost_k\".i, EXISTS (SELECT 1 FROM \"public\".\"Comment\" AS \"Comment\" \
                 WHERE \"Comment\".\"id\" = \"_outpost_k\".k0 AND {COND}) \
                 FROM (SELECT * FROM (SELECT (u.o - 1)::int4 AS i, k0 FROM unnest($1::text[]) WITH ORDINALITY u(k0, o)) v) \"_outpost_k\" \
                 JOIN \"public\".\"Comment\" \"_outpost_t\" ON \"_outpost_t\".\"id\" = \"_outpost_k\".k0"
            )
        );
        let parents = sql::source(true, &["k0".into()], &["text".into()], vec![], 1);
        assert_eq!(
            children_rows("public", &t, &t.foreign_keys[0], &s, &parents),
            format!(
                "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, true, \"_outpost_c\".\"id\", \
                 \"_outpost_c\".\"id\", \"_outpost_c\".\"postId\" \
                 FROM (SELECT \"Comment\".* FROM \"public\".\"Comment\" AS \"Comment\" WHERE (\"Comment\".\"postId\") IN \
                 (SELECT k0 FROM (SELECT (u.o - 1)::int4 AS i, k0 FROM unnest($1::text[]) WITH ORDINALITY u(k0, o)) v) \
                 AND {COND}) \"_outpost_c\" \
                 LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $2 AND rv.pk = jsonb_build_array(\"_outpost_c\".\"id\")"
            )
        );
    }

    #[test]
    fn a_condition_reads_a_parent_named_as_postgres_resolves_it() {
        let s = rule();
        assert!(reads(&s, "Post"));
        assert!(!reads(&s, "User"));
        let bare = TableScope {
            rule: String::new(),
            condition: "post_id IN (SELECT id FROM posts)".into(),
        };
        assert!(reads(&bare, "posts"));
        // An unquoted name folds to lower case: `posts` is not `"Posts"`.
        assert!(!reads(&bare, "Posts"));
    }
}
