//! SQL for a [`Plan`](crate::Plan)'s steps, built with sea-query for SQLite
//! (the replica) or PostgreSQL (the server): the `SELECT` of a model with
//! its filter, order, cursor and page, the `SELECT` of a relation for a set
//! of parent keys, `COUNT`, and `INSERT`/`UPDATE`/`DELETE … RETURNING`.
//!
//! Every identifier comes from the schema and is quoted by sea-query (the
//! same quoting as `outpost_core::ident::quote`); every value is a bound
//! parameter, returned in [`Statement::params`] as an outpost [`Value`]. The
//! crate doc lists where the dialects differ and why.

use outpost_core::ident::quote;
use outpost_core::schema::{Column, Schema, Table};
use outpost_core::sqlite::pk_json;
use outpost_core::types::{ColumnType, ScalarType, Value};
use sea_query::{
    Alias, Condition, Expr, ExprTrait as _, IntoIden as _, NullOrdering, OnConflict, Order,
    PostgresQueryBuilder, Query as Sql, QueryStatementBuilder as _, QueryStatementWriter,
    SchemaName, SelectStatement, SqliteQueryBuilder, TableName, TableRef,
};

use crate::Dialect;
use crate::error::QueryError;
use crate::plan::{Assignment, Class, Filter, Leaf, Op, OrderKey, Query, SetOp};
use crate::text::{LOWER_FUNCTION, NUMERIC_COLLATION};

/// Alias of the table in the subqueries that read the cursor row.
const CURSOR_ALIAS: &str = "_outpost_cursor";
/// Name of the extra result column carrying a replica row's sync status.
pub const STATUS_COLUMN: &str = "_outpost_status";
/// The replica's per-row sync metadata, read for the status.
const STATUS_TABLE: &str = "_outpost_rows";

/// One SQL statement with its parameters and the type of each result
/// column, ready for a driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL: `?` placeholders for SQLite, `$n` for PostgreSQL.
    pub sql: String,
    /// The parameters in placeholder order. `json`/`jsonb` and array values
    /// are given as their JSON text (the replica's storage form); a
    /// PostgreSQL driver turns them back by the parameter's type.
    pub params: Vec<Value>,
    /// The result columns (empty for statements without a result), each
    /// with the type its values are decoded as.
    pub columns: Vec<ResultColumn>,
}

/// A result column of a [`Statement`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResultColumn {
    /// Its name (a table column's, `count`, or [`STATUS_COLUMN`]).
    pub name: String,
    /// The type its values are read as.
    pub ty: ColumnType,
}

fn count_type() -> ColumnType {
    ColumnType::scalar(ScalarType::Int8, "bigint")
}

/// The sea-query value carrying `v` (a value of a column of type `ty`).
fn to_sea(v: &Value, ty: &ColumnType) -> sea_query::Value {
    use sea_query::Value as S;
    match v {
        Value::Null => S::String(None),
        Value::Bool(b) => S::Bool(Some(*b)),
        Value::Int(i) => S::BigInt(Some(*i)),
        Value::Float(f) => S::Double(Some(*f)),
        Value::Text(s) | Value::Json(s) => S::String(Some(s.clone())),
        Value::Bytes(b) => S::Bytes(Some(b.clone())),
        Value::Array(_) => S::String(Some(v.to_json(ty).to_string())),
    }
}

/// The outpost value of a parameter sea-query collected.
fn from_sea(v: sea_query::Value) -> Value {
    use sea_query::Value as S;
    match v {
        S::Bool(Some(b)) => Value::Bool(b),
        S::TinyInt(Some(i)) => Value::Int(i.into()),
        S::SmallInt(Some(i)) => Value::Int(i.into()),
        S::Int(Some(i)) => Value::Int(i.into()),
        S::BigInt(Some(i)) => Value::Int(i),
        S::TinyUnsigned(Some(i)) => Value::Int(i.into()),
        S::SmallUnsigned(Some(i)) => Value::Int(i.into()),
        S::Unsigned(Some(i)) => Value::Int(i.into()),
        S::BigUnsigned(Some(i)) => Value::Int(i64::try_from(i).unwrap_or(i64::MAX)),
        S::Float(Some(f)) => Value::Float(f.into()),
        S::Double(Some(f)) => Value::Float(f),
        S::String(Some(s)) => Value::Text(s),
        S::Char(Some(c)) => Value::Text(c.to_string()),
        S::Bytes(Some(b)) => Value::Bytes(b),
        _ => Value::Null,
    }
}

/// The type a filter value is cast to on PostgreSQL, so the server knows
/// each parameter's type (the base type: a filter value is not rounded to
/// the column's modifier).
fn pg_cast(ty: &ColumnType) -> String {
    match ty.scalar.pg_type_name() {
        // Integers widen to bigint and floats to double precision: a filter
        // value is not rounded to the column's size.
        Some(_) if matches!(ty.scalar, ScalarType::Int2 | ScalarType::Int4) => "bigint".into(),
        Some(_) if ty.scalar == ScalarType::Float4 => "double precision".into(),
        Some(_) if ty.scalar == ScalarType::Varchar => "text".into(),
        // `bit` is `bit(1)` in a cast: it would refuse a longer value.
        Some(_) if ty.scalar == ScalarType::Bit => "varbit".into(),
        Some(name) => name.into(),
        None => ty.element().pg_name,
    }
}

/// Key types matched with `= ANY($1::type[])` on PostgreSQL: integers,
/// text and uuids, whose array parameter round-trips exactly through its
/// JSON form. Other key types keep an `IN` list of typed parameters.
fn any_key(ty: &ColumnType) -> bool {
    !ty.array
        && matches!(
            ty.scalar,
            ScalarType::Int2
                | ScalarType::Int4
                | ScalarType::Int8
                | ScalarType::Text
                | ScalarType::Varchar
                | ScalarType::Uuid
        )
}

fn column_index(t: &Table, name: &str) -> Option<usize> {
    t.columns.iter().position(|c| c.name == name)
}

/// Builds the statements of one dialect.
pub(crate) struct Builder<'a> {
    pub dialect: Dialect,
    pub schema: &'a Schema,
    /// The server's row scopes ([`crate::Scopes`]), when the request runs
    /// under a gateway's sync rules; ignored for SQLite (a replica holds
    /// only its scope's rows already).
    pub scopes: Option<&'a crate::Scopes>,
}

impl Builder<'_> {
    fn pg(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    fn finish<S: QueryStatementWriter>(&self, s: &S, columns: Vec<ResultColumn>) -> Statement {
        let (sql, values) = match self.dialect {
            Dialect::Sqlite => s.build(SqliteQueryBuilder),
            Dialect::Postgres => s.build(PostgresQueryBuilder),
        };
        Statement {
            sql,
            params: values.0.into_iter().map(from_sea).collect(),
            columns,
        }
    }

    fn table_ref(&self, t: &Table) -> TableRef {
        let name: sea_query::DynIden = Alias::new(t.name.as_str()).into();
        if self.pg() {
            let schema: sea_query::DynIden = Alias::new(self.schema.pg_schema.as_str()).into();
            TableRef::Table(TableName(Some(SchemaName(None, schema)), name), None)
        } else {
            TableRef::Table(TableName(None, name), None)
        }
    }

    fn aliased(&self, t: &Table, alias: &str) -> TableRef {
        self.table_ref(t).alias(Alias::new(alias))
    }

    /// `t`'s scope condition on the server, parenthesized on lines of its
    /// own (a trailing `--` comment ends on its line); `false` for a table
    /// the scopes do not name (served to nobody); `None` when the request
    /// is not scoped.
    fn scope(&self, t: &Table) -> Option<String> {
        if !self.pg() {
            return None;
        }
        let scopes = self.scopes?;
        Some(
            scopes
                .get(&t.name)
                .map_or_else(|| "false".to_string(), |c| format!("(\n{c}\n)")),
        )
    }

    /// Where a read takes `t`'s rows from, named `alias`: the table itself,
    /// or, scoped, `(SELECT * FROM t AS t WHERE condition) AS alias`, so
    /// every filter, order, page, count and relation sees only the rows in
    /// scope (the condition runs where its table is the only one and is
    /// its own alias, as the feed runs it).
    fn source(&self, t: &Table, alias: &str) -> TableRef {
        match self.scope(t) {
            None if alias == t.name => self.table_ref(t),
            None => self.aliased(t, alias),
            Some(cond) => {
                let mut inner = Sql::select();
                inner
                    .column(sea_query::Asterisk)
                    .from(self.aliased(t, &t.name))
                    .and_where(Expr::cust(cond));
                TableRef::SubQuery(Box::new(inner), Alias::new(alias).into_iden())
            }
        }
    }

    /// The scope condition added to an `UPDATE`'s or `DELETE`'s filter: a
    /// scoped write touches only rows in scope (one outside it is "not
    /// found", as in the replica that does not hold it).
    fn scoped_filter(&self, t: &Table, filter: &Filter) -> Result<Option<Condition>, QueryError> {
        let mut cond = Condition::all();
        if !filter.is_always() {
            cond = cond.add(self.filter(t, &t.name, filter)?);
        }
        if let Some(scope) = self.scope(t) {
            cond = cond.add(Expr::cust(scope));
        }
        Ok((!cond.is_empty()).then_some(cond))
    }

    fn col(&self, alias: &str, c: &Column) -> Expr {
        Expr::col((Alias::new(alias), Alias::new(c.name.as_str())))
    }

    /// A custom expression: `{i}` in `pattern` stands for `args[i]`
    /// (numbered `$i` for PostgreSQL, positional `?` for SQLite, where an
    /// argument used twice is passed twice).
    fn tmpl(&self, pattern: &str, args: &[Expr]) -> Expr {
        let mut out = String::with_capacity(pattern.len() + 8);
        let mut used: Vec<Expr> = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                out.push_str(&rest[open..]);
                rest = "";
                break;
            };
            match after[..close]
                .parse::<usize>()
                .ok()
                .filter(|i| *i < args.len())
            {
                Some(i) if self.pg() => out.push_str(&format!("${}", i + 1)),
                Some(i) => {
                    out.push('?');
                    used.push(args[i].clone());
                }
                None => out.push_str(&rest[open..open + close + 2]),
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        if self.pg() {
            Expr::cust_with_exprs(out, args.to_vec())
        } else {
            Expr::cust_with_exprs(out, used)
        }
    }

    fn raw(&self, v: &Value, ty: &ColumnType) -> Expr {
        Expr::val(to_sea(v, ty))
    }

    /// A value compared with column `c`, cast to its base type on
    /// PostgreSQL.
    fn typed(&self, c: &Column, v: &Value) -> Expr {
        let e = self.raw(v, &c.ty);
        if self.pg() {
            self.tmpl(&format!("{{0}}::{}", pg_cast(&c.ty)), &[e])
        } else {
            e
        }
    }

    /// The enum labels of `c` (SQLite orders enums by declaration order
    /// through a `CASE` over them).
    fn labels(&self, c: &Column) -> Option<&[String]> {
        match &c.ty.scalar {
            ScalarType::Enum(name) if !c.ty.array => {
                self.schema.enum_type(name).map(|e| e.labels.as_slice())
            }
            _ => None,
        }
    }

    /// `CASE x WHEN 'a' THEN 0 … END` for SQLite enum order.
    fn enum_rank(&self, x: Expr, labels: &[String]) -> Expr {
        let mut pattern = String::from("(CASE {0}");
        let mut args = vec![x];
        for (i, label) in labels.iter().enumerate() {
            pattern.push_str(&format!(" WHEN {{{}}} THEN {i}", i + 1));
            args.push(Expr::val(label.as_str()));
        }
        pattern.push_str(" END)");
        self.tmpl(&pattern, &args)
    }

    /// The expression a column is ordered and range-compared by.
    fn ord(&self, alias: &str, c: &Column) -> Expr {
        let x = self.col(alias, c);
        let class = Class::of(&c.ty);
        match (self.dialect, class) {
            (Dialect::Postgres, Class::Text | Class::Char | Class::Citext) => {
                self.tmpl("{0} COLLATE \"C\"", &[x])
            }
            (Dialect::Sqlite, Class::Numeric) => {
                self.tmpl(&format!("{{0}} COLLATE {}", quote(NUMERIC_COLLATION)), &[x])
            }
            (Dialect::Sqlite, Class::Char) => self.tmpl("rtrim({0})", &[x]),
            (Dialect::Sqlite, Class::Enum) => match self.labels(c) {
                Some(labels) => self.enum_rank(x, labels),
                None => x,
            },
            _ => x,
        }
    }

    /// A value range-compared with `ord(c)`.
    fn ord_value(&self, c: &Column, v: &Value) -> Expr {
        if !self.pg()
            && let (Some(labels), Value::Text(s)) = (self.labels(c), v)
        {
            let rank = labels.iter().position(|l| l == s).map_or(-1, |i| i as i64);
            return Expr::val(rank);
        }
        self.typed(c, v)
    }

    /// The server's binary send function of a type whose `=` is not
    /// exact equality (the geometric types compare areas or within an
    /// epsilon, `xml` has none): equality compares the binary values.
    fn send_fn(c: &Column) -> Option<String> {
        let exact = c.ty.scalar.geometry().is_some() || c.ty.scalar == ScalarType::Xml;
        (exact && !c.ty.array)
            .then(|| c.ty.scalar.pg_type_name())
            .flatten()
            // `polygon`'s is named after its internal name.
            .map(|n| format!("{}_send", if n == "polygon" { "poly" } else { n }))
    }

    /// The expression a column is tested for equality by.
    fn eq_lhs(&self, alias: &str, c: &Column) -> Expr {
        let x = self.col(alias, c);
        if let (Dialect::Postgres, Some(f)) = (self.dialect, Self::send_fn(c)) {
            return self.tmpl(&format!("{f}({{0}})"), &[x]);
        }
        match (self.dialect, Class::of(&c.ty)) {
            (Dialect::Postgres, Class::Citext) => self.tmpl("{0} COLLATE \"C\"", &[x]),
            (Dialect::Sqlite, Class::Numeric) => {
                self.tmpl(&format!("{{0}} COLLATE {}", quote(NUMERIC_COLLATION)), &[x])
            }
            (Dialect::Sqlite, Class::Char) => self.tmpl("rtrim({0})", &[x]),
            _ => x,
        }
    }

    /// A value tested for equality with `eq_lhs(c)`.
    fn eq_value(&self, c: &Column, v: &Value) -> Expr {
        if let (Dialect::Postgres, Some(f)) = (self.dialect, Self::send_fn(c)) {
            return self.tmpl(&format!("{f}({{0}})"), &[self.typed(c, v)]);
        }
        match (self.dialect, Class::of(&c.ty)) {
            (Dialect::Sqlite, Class::Char) => self.tmpl("rtrim({0})", &[self.raw(v, &c.ty)]),
            _ => self.typed(c, v),
        }
    }

    /// A textual column as text (lowercased for `mode: "insensitive"`).
    fn text_lhs(&self, alias: &str, c: &Column, insensitive: bool) -> Expr {
        let x = self.col(alias, c);
        let class = Class::of(&c.ty);
        let x = match (self.dialect, class) {
            (Dialect::Postgres, Class::Char | Class::Uuid) => self.tmpl("{0}::text", &[x]),
            (Dialect::Sqlite, Class::Char) => self.tmpl("rtrim({0})", &[x]),
            _ => x,
        };
        if insensitive { self.lower(x) } else { x }
    }

    fn text_value(&self, v: &Value, insensitive: bool) -> Expr {
        // Text filters only ever hold text (the planner checks).
        let e = Expr::val(match v {
            Value::Text(s) => s.clone(),
            other => format!("{other:?}"),
        });
        let e = if self.pg() {
            self.tmpl("{0}::text", &[e])
        } else {
            e
        };
        if insensitive { self.lower(e) } else { e }
    }

    fn lower(&self, e: Expr) -> Expr {
        if self.pg() {
            self.tmpl("lower({0})", &[e])
        } else {
            self.tmpl(&format!("{LOWER_FUNCTION}({{0}})"), &[e])
        }
    }

    fn constant(&self, value: bool) -> Expr {
        Expr::cust(if value { "1 = 1" } else { "1 = 0" })
    }

    /// The condition of a filter on table `t` referred to as `alias`.
    pub(crate) fn filter(
        &self,
        t: &Table,
        alias: &str,
        f: &Filter,
    ) -> Result<Condition, QueryError> {
        Ok(match f {
            Filter::All(parts) if parts.is_empty() => Condition::all().add(self.constant(true)),
            Filter::Any(parts) if parts.is_empty() => Condition::all().add(self.constant(false)),
            Filter::All(parts) => {
                let mut c = Condition::all();
                for p in parts {
                    c = c.add(self.filter(t, alias, p)?);
                }
                c
            }
            Filter::Any(parts) => {
                let mut c = Condition::any();
                for p in parts {
                    c = c.add(self.filter(t, alias, p)?);
                }
                c
            }
            Filter::Not(inner) => Condition::all().add(self.filter(t, alias, inner)?).not(),
            Filter::Leaf(leaf) => Condition::all().add(self.leaf(t, alias, leaf)?),
        })
    }

    fn leaf(&self, t: &Table, alias: &str, leaf: &Leaf) -> Result<Expr, QueryError> {
        let c = t
            .columns
            .get(leaf.column)
            .ok_or_else(|| QueryError::Internal {
                model: t.name.clone(),
                message: format!("column #{} out of range", leaf.column),
            })?;
        let ins = leaf.insensitive;
        let range = |v: &Value, op: &str| -> Expr {
            if ins {
                let lhs = self.text_lhs(alias, c, true);
                let lhs = if self.pg() {
                    self.tmpl("{0} COLLATE \"C\"", &[lhs])
                } else {
                    lhs
                };
                self.tmpl(
                    &format!("({{0}} {op} {{1}})"),
                    &[lhs, self.text_value(v, true)],
                )
            } else {
                self.tmpl(
                    &format!("({{0}} {op} {{1}})"),
                    &[self.ord(alias, c), self.ord_value(c, v)],
                )
            }
        };
        Ok(match &leaf.op {
            Op::IsNull => self.col(alias, c).is_null(),
            Op::NotNull => self.col(alias, c).is_not_null(),
            Op::Eq(v) if ins => self.text_lhs(alias, c, true).eq(self.text_value(v, true)),
            Op::Eq(v) => self.eq_lhs(alias, c).eq(self.eq_value(c, v)),
            Op::In(vs) if vs.is_empty() => self.constant(false),
            Op::In(vs) if ins => self
                .text_lhs(alias, c, true)
                .is_in(vs.iter().map(|v| self.text_value(v, true))),
            Op::In(vs) => self
                .eq_lhs(alias, c)
                .is_in(vs.iter().map(|v| self.eq_value(c, v))),
            Op::Lt(v) => range(v, "<"),
            Op::Lte(v) => range(v, "<="),
            Op::Gt(v) => range(v, ">"),
            Op::Gte(v) => range(v, ">="),
            Op::Contains(v) => {
                let args = [self.text_lhs(alias, c, ins), self.text_value(v, ins)];
                if self.pg() {
                    self.tmpl("(strpos({0}, {1}) > 0)", &args)
                } else {
                    self.tmpl("(instr({0}, {1}) > 0)", &args)
                }
            }
            Op::StartsWith(v) => {
                let args = [self.text_lhs(alias, c, ins), self.text_value(v, ins)];
                if self.pg() {
                    self.tmpl("(strpos({0}, {1}) = 1)", &args)
                } else {
                    self.tmpl("(instr({0}, {1}) = 1)", &args)
                }
            }
            Op::EndsWith(v) => {
                let args = [self.text_lhs(alias, c, ins), self.text_value(v, ins)];
                if self.pg() {
                    self.tmpl("(right({0}, length({1})) = {1})", &args)
                } else {
                    self.tmpl("(substr({0}, length({0}) - length({1}) + 1) = {1})", &args)
                }
            }
        })
    }

    /// The order keys of a read: the request's, then the primary key
    /// ascending (columns the request did not order by), so every order is
    /// total and the same on both databases.
    pub(crate) fn order_keys(&self, q: &Query) -> Vec<OrderKey> {
        let mut keys = q.order.clone();
        for pk in &q.table.primary_key {
            if let Some(i) = column_index(&q.table, pk)
                && !keys.iter().any(|k| k.column == i)
            {
                keys.push(OrderKey {
                    column: i,
                    desc: false,
                    nulls_first: false,
                });
            }
        }
        keys
    }

    /// `x` comes after `c` in the order of `key` (`c` is the cursor row's
    /// value, possibly NULL).
    fn after(&self, x: Expr, c: Expr, key: &OrderKey) -> Condition {
        let beyond = if key.desc {
            x.clone().lt(c.clone())
        } else {
            x.clone().gt(c.clone())
        };
        let nulls = if key.nulls_first {
            Condition::all().add(x.is_not_null()).add(c.is_null())
        } else {
            Condition::all().add(x.is_null()).add(c.is_not_null())
        };
        Condition::any().add(beyond).add(nulls)
    }

    fn same(&self, x: Expr, c: Expr) -> Condition {
        Condition::any()
            .add(x.clone().eq(c.clone()))
            .add(Condition::all().add(x.is_null()).add(c.is_null()))
    }

    /// Rows at or after the cursor row in the read's order (Prisma's
    /// inclusive cursor); nothing when the cursor row does not exist.
    fn cursor(&self, q: &Query, cursor: &Filter) -> Result<Condition, QueryError> {
        let t = &q.table;
        let here = t.name.as_str();
        let row_filter = self.filter(t, CURSOR_ALIAS, cursor)?;
        let keys = self.order_keys(q);
        let value_of = |key: &OrderKey| -> Result<Expr, QueryError> {
            let c = &t.columns[key.column];
            let mut s = Sql::select();
            s.expr(self.ord(CURSOR_ALIAS, c))
                .from(self.source(t, CURSOR_ALIAS))
                .cond_where(row_filter.clone());
            Ok(Expr::SubQuery(None, Box::new(s.into_sub_query_statement())))
        };
        let mut any = Condition::any();
        let mut equal_so_far = Condition::all();
        for key in &keys {
            let c = &t.columns[key.column];
            let x = self.ord(here, c);
            let v = value_of(key)?;
            any = any.add(
                equal_so_far
                    .clone()
                    .add(self.after(x.clone(), v.clone(), key)),
            );
            equal_so_far = equal_so_far.add(self.same(x, v));
        }
        any = any.add(equal_so_far);
        let mut exists = Sql::select();
        exists
            .expr(Expr::cust("1"))
            .from(self.source(t, CURSOR_ALIAS))
            .cond_where(row_filter);
        Ok(Condition::all().add(Expr::exists(exists)).add(any))
    }

    /// `key columns IN (key tuples)` on the relation's target side.
    fn keys_filter(&self, t: &Table, cols: &[usize], keys: &[Vec<Value>]) -> Condition {
        let here = t.name.as_str();
        if let [i] = cols {
            let c = &t.columns[*i];
            if self.pg() && any_key(&c.ty) {
                // One array parameter, not one parameter per key: the
                // server parses, binds and plans one value instead of up
                // to `MAX_KEY_PARAMS` (B8's 1,000 keys: 0.45 against
                // 0.9 ms on the server), and the client encodes one.
                let array = ColumnType {
                    array: true,
                    ..c.ty.clone()
                };
                let keys = Value::Array(keys.iter().map(|k| k[0].clone()).collect());
                return Condition::all().add(self.tmpl(
                    &format!("{{0}} = ANY({{1}}::{}[])", pg_cast(&c.ty)),
                    &[self.col(here, c), self.raw(&keys, &array)],
                ));
            }
            return Condition::all().add(
                self.eq_lhs(here, c)
                    .is_in(keys.iter().map(|k| self.eq_value(c, &k[0]))),
            );
        }
        let mut any = Condition::any();
        for k in keys {
            let mut all = Condition::all();
            for (i, v) in cols.iter().zip(k) {
                let c = &t.columns[*i];
                all = all.add(self.eq_lhs(here, c).eq(self.eq_value(c, v)));
            }
            any = any.add(all);
        }
        any
    }

    /// `LEFT JOIN "_outpost_rows"` on the row's entry: its primary key
    /// (`table_name`, `pk`) with `pk` computed as the capture triggers do
    /// (`outpost_core::sqlite::pk_json`), so at most one entry per row.
    fn status_join(&self, s: &mut SelectStatement, t: &Table) {
        let rows = Alias::new(STATUS_TABLE);
        s.left_join(
            rows.clone(),
            Condition::all()
                .add(Expr::col((rows.clone(), Alias::new("table_name"))).eq(t.name.as_str()))
                .add(
                    Expr::col((rows, Alias::new("pk"))).eq(Expr::cust(pk_json(t, &quote(&t.name)))),
                ),
        );
    }

    /// Whether `t` has any `_outpost_rows` entry (a primary-key prefix
    /// lookup): `1` or `0` as `count`.
    pub(crate) fn status_probe(&self, t: &Table) -> Statement {
        let mut inner = Sql::select();
        inner
            .expr(Expr::cust("1"))
            .from(Alias::new(STATUS_TABLE))
            .and_where(Expr::col(Alias::new("table_name")).eq(t.name.as_str()));
        let mut s = Sql::select();
        s.expr(Expr::exists(inner));
        self.finish(
            &s,
            vec![ResultColumn {
                name: "count".into(),
                ty: count_type(),
            }],
        )
    }

    fn table_columns(t: &Table) -> Vec<ResultColumn> {
        t.columns
            .iter()
            .map(|c| ResultColumn {
                name: c.name.clone(),
                ty: c.ty.clone(),
            })
            .collect()
    }

    /// The filtered, ordered rows of a read: every column of the table
    /// (plus the sync status, with `status`, on SQLite), restricted to `keys` (a
    /// relation's target columns and the parents' key tuples) when given,
    /// paged by take/skip/cursor when `window`.
    pub(crate) fn select(
        &self,
        q: &Query,
        keys: Option<(&[usize], &[Vec<Value>])>,
        window: bool,
        status: bool,
    ) -> Result<Statement, QueryError> {
        let t = &q.table;
        let here = t.name.as_str();
        let mut s = Sql::select();
        for c in &t.columns {
            s.expr(self.col(here, c));
        }
        let mut columns = Self::table_columns(t);
        let status = status && !self.pg();
        if status {
            s.expr_as(
                Expr::col((Alias::new(STATUS_TABLE), Alias::new("status"))),
                Alias::new(STATUS_COLUMN),
            );
            columns.push(ResultColumn {
                name: STATUS_COLUMN.into(),
                ty: ColumnType::scalar(ScalarType::Text, "text"),
            });
        }
        s.from(self.source(t, here));
        if status {
            self.status_join(&mut s, t);
        }
        self.restrict(&mut s, q, keys, window)?;
        for key in self.order_keys(q) {
            let c = &t.columns[key.column];
            s.order_by_expr_with_nulls(
                self.ord(here, c),
                if key.desc { Order::Desc } else { Order::Asc },
                if key.nulls_first {
                    NullOrdering::First
                } else {
                    NullOrdering::Last
                },
            );
        }
        if window {
            self.page(&mut s, q);
        }
        Ok(self.finish(&s, columns))
    }

    fn restrict(
        &self,
        s: &mut SelectStatement,
        q: &Query,
        keys: Option<(&[usize], &[Vec<Value>])>,
        window: bool,
    ) -> Result<(), QueryError> {
        let t = &q.table;
        let mut cond = Condition::all();
        if let Some((cols, keys)) = keys {
            cond = cond.add(self.keys_filter(t, cols, keys));
        }
        if !q.filter.is_always() {
            cond = cond.add(self.filter(t, &t.name, &q.filter)?);
        }
        if window && let Some(cursor) = &q.cursor {
            cond = cond.add(self.cursor(q, cursor)?);
        }
        if !cond.is_empty() {
            s.cond_where(cond);
        }
        Ok(())
    }

    fn page(&self, s: &mut SelectStatement, q: &Query) {
        match (q.take, q.skip) {
            (Some(take), skip) => {
                s.limit(take);
                if skip > 0 {
                    s.offset(skip);
                }
            }
            (None, 0) => {}
            (None, skip) => {
                // SQLite has no OFFSET without LIMIT.
                s.limit(i64::MAX as u64);
                s.offset(skip);
            }
        }
    }

    /// `COUNT(*)` of a read's rows (in its page, when it has one).
    pub(crate) fn count(&self, q: &Query) -> Result<Statement, QueryError> {
        let t = &q.table;
        let columns = vec![ResultColumn {
            name: "count".into(),
            ty: count_type(),
        }];
        let mut s = Sql::select();
        s.expr(Expr::cust("COUNT(*)"));
        if q.take.is_none() && q.skip == 0 && q.cursor.is_none() {
            s.from(self.source(t, &t.name));
            self.restrict(&mut s, q, None, false)?;
            return Ok(self.finish(&s, columns));
        }
        let mut inner = Sql::select();
        inner.expr(Expr::cust("1")).from(self.source(t, &t.name));
        self.restrict(&mut inner, q, None, true)?;
        for key in self.order_keys(q) {
            let c = &t.columns[key.column];
            inner.order_by_expr_with_nulls(
                self.ord(&t.name, c),
                if key.desc { Order::Desc } else { Order::Asc },
                if key.nulls_first {
                    NullOrdering::First
                } else {
                    NullOrdering::Last
                },
            );
        }
        self.page(&mut inner, q);
        s.from_subquery(inner, Alias::new("_outpost_count"));
        Ok(self.finish(&s, columns))
    }

    /// `INSERT … RETURNING` every column, one row per entry of `rows`
    /// (values of the columns `cols`); `do_nothing` adds
    /// `ON CONFLICT DO NOTHING`.
    pub(crate) fn insert(
        &self,
        t: &Table,
        cols: &[usize],
        rows: &[Vec<Value>],
        do_nothing: bool,
    ) -> Result<Statement, QueryError> {
        let mut s = Sql::insert();
        s.into_table(self.table_ref(t));
        s.columns(cols.iter().map(|i| Alias::new(t.columns[*i].name.as_str())));
        if cols.is_empty() {
            s.or_default_values();
        }
        for row in rows.iter().filter(|_| !cols.is_empty()) {
            let exprs: Vec<Expr> = cols
                .iter()
                .zip(row)
                .map(|(i, v)| self.raw(v, &t.columns[*i].ty))
                .collect();
            s.values(exprs).map_err(|e| QueryError::Internal {
                model: t.name.clone(),
                message: e.to_string(),
            })?;
        }
        if do_nothing {
            s.on_conflict(OnConflict::new().do_nothing().to_owned());
        }
        s.returning(
            Sql::returning().columns(t.columns.iter().map(|c| Alias::new(c.name.as_str()))),
        );
        Ok(self.finish(&s, Self::table_columns(t)))
    }

    /// `UPDATE … SET … WHERE filter RETURNING` every column.
    pub(crate) fn update(
        &self,
        t: &Table,
        set: &[Assignment],
        filter: &Filter,
    ) -> Result<Statement, QueryError> {
        let mut s = Sql::update();
        s.table(self.table_ref(t));
        for a in set {
            let c = &t.columns[a.column];
            let me = Expr::col(Alias::new(c.name.as_str()));
            let e = match &a.op {
                SetOp::Set(v) => self.raw(v, &c.ty),
                SetOp::Increment(v) => me.add(self.raw(v, &c.ty)),
                SetOp::Decrement(v) => me.sub(self.raw(v, &c.ty)),
                SetOp::Multiply(v) => me.mul(self.raw(v, &c.ty)),
                SetOp::Divide(v) => me.div(self.raw(v, &c.ty)),
            };
            s.value(Alias::new(c.name.as_str()), e);
        }
        if let Some(cond) = self.scoped_filter(t, filter)? {
            s.cond_where(cond);
        }
        s.returning(
            Sql::returning().columns(t.columns.iter().map(|c| Alias::new(c.name.as_str()))),
        );
        Ok(self.finish(&s, Self::table_columns(t)))
    }

    /// `DELETE … WHERE filter RETURNING` every column.
    pub(crate) fn delete(&self, t: &Table, filter: &Filter) -> Result<Statement, QueryError> {
        let mut s = Sql::delete();
        s.from_table(self.table_ref(t));
        if let Some(cond) = self.scoped_filter(t, filter)? {
            s.cond_where(cond);
        }
        s.returning(
            Sql::returning().columns(t.columns.iter().map(|c| Alias::new(c.name.as_str()))),
        );
        Ok(self.finish(&s, Self::table_columns(t)))
    }
}
