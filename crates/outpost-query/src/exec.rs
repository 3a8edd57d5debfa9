//! Carrying out a [`Plan`] over a database [`Driver`]: the statements of
//! each operation in order, relations loaded level by level (one statement
//! per relation per level, `WHERE key IN (parent keys)`, whatever the number
//! of parent rows), records assembled in Prisma's shape (`assemble`), and
//! every written row reported. The same code runs against the replica and
//! the server, so both give the same results for the same data; only the
//! SQL dialect and the replica-only duties ([`ExecOptions::check_uniques`],
//! `syncStatus`, the `fill` callback) differ.
//!
//! The driver is async so that the server's driver can await the network;
//! the replica's driver completes every call at once and runs
//! [`execute`]'s future with a no-op waker (`outpost-local`).

use std::collections::{BTreeMap, HashSet};

use outpost_core::schema::{Schema, Table};
use outpost_core::types::{ScalarType, Value};
use serde_json::{Map, Value as Json};

use crate::assemble::{self, Level, Row, indexes, key};
use crate::error::QueryError;
use crate::plan::{Assignment, Body, Class, Data, Filter, Query, Shape, Unique};
use crate::records::Records;
use crate::sql::{Builder, Statement};
use crate::text::numeric_key;
use crate::{Dialect, Plan, QueryOutput, WrittenRow};

/// Most key values one relation statement binds; more parents are loaded
/// in several statements.
const MAX_KEY_PARAMS: usize = 10_000;

/// Most values one `INSERT` binds.
const MAX_INSERT_PARAMS: usize = 10_000;

/// A database that runs statements for [`execute`].
///
/// `async fn` without a `Send` bound on purpose: the replica's driver
/// borrows a SQLite connection, which is not `Sync`; the server's driver
/// is `Send` where its client is.
#[allow(async_fn_in_trait)]
pub trait Driver {
    /// The driver's error; query errors convert into it.
    type Error: From<QueryError>;

    /// Runs `statement` and returns its rows, each value decoded as the
    /// statement's result column says (`statement.columns`).
    async fn query(&mut self, statement: &Statement) -> Result<Vec<Vec<Value>>, Self::Error>;

    /// Called for every row about to be inserted, with the values given so
    /// far (column name → value), to fill defaults and ids; may add
    /// entries, or refuse the row.
    fn fill(&mut self, table: &Table, row: &mut BTreeMap<String, Value>)
    -> Result<(), Self::Error>;
}

/// How [`execute`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOptions {
    /// The driver's SQL dialect.
    pub dialect: Dialect,
    /// Add each record's `syncStatus` (the replica only).
    pub sync_status: bool,
    /// Check unique constraints after each write, and find duplicates for
    /// `skipDuplicates`, with queries: the replica declares no unique
    /// constraints, the server enforces its own.
    pub check_uniques: bool,
}

impl ExecOptions {
    /// The replica's options: SQLite, unique constraints checked.
    pub fn replica(sync_status: bool) -> ExecOptions {
        ExecOptions {
            dialect: Dialect::Sqlite,
            sync_status,
            check_uniques: true,
        }
    }

    /// The server's options: PostgreSQL.
    pub fn server() -> ExecOptions {
        ExecOptions {
            dialect: Dialect::Postgres,
            sync_status: false,
            check_uniques: false,
        }
    }
}

impl<'a, D: Driver> Exec<'a, D> {
    fn new(
        driver: &'a mut D,
        schema: &'a Schema,
        plan: &Plan,
        options: &ExecOptions,
        scopes: Option<&'a crate::Scopes>,
    ) -> Self {
        Exec {
            driver,
            sql: Builder {
                dialect: options.dialect,
                schema,
                scopes,
            },
            options: *options,
            model: plan.model.clone(),
            operation: plan.operation.name(),
            written: Vec::new(),
        }
    }
}

/// Carries out `plan` over `driver`. For a write, the caller provides the
/// transaction (a SQLite savepoint, the server's transaction) that makes it
/// all-or-nothing.
pub async fn execute<D: Driver>(
    driver: &mut D,
    schema: &Schema,
    plan: &Plan,
    options: &ExecOptions,
) -> Result<QueryOutput, D::Error> {
    execute_scoped(driver, schema, plan, options, None).await
}

/// [`execute`] under row scopes ([`crate::Scopes`], the server only): the
/// request reads, updates and deletes only rows in scope.
pub async fn execute_scoped<D: Driver>(
    driver: &mut D,
    schema: &Schema,
    plan: &Plan,
    options: &ExecOptions,
    scopes: Option<&crate::Scopes>,
) -> Result<QueryOutput, D::Error> {
    let mut ex = Exec::new(driver, schema, plan, options, scopes);
    let result = ex.run(&plan.body).await?;
    Ok(QueryOutput {
        result,
        written: ex.written,
    })
}

/// Carries out a read plan (`findMany`, `findFirst`, `findUnique`) and
/// returns its rows unassembled, for the caller to deserialize into its own
/// types ([`Records::deserialize`]) without building JSON records. A
/// `findFirst`/`findUnique` gives at most one record. Any other plan is
/// refused.
pub async fn execute_read<D: Driver>(
    driver: &mut D,
    schema: &Schema,
    plan: &Plan,
    options: &ExecOptions,
) -> Result<Records, D::Error> {
    let mut ex = Exec::new(driver, schema, plan, options, None);
    let Body::Read { query, single } = &plan.body else {
        return Err(ex.internal(format!("{} is not a read", plan.operation)));
    };
    let (mut levels, status) = ex.levels(query).await?;
    if *single {
        levels[0].rows.truncate(1);
    }
    Ok(Records::new(levels, status, *single))
}

struct Exec<'a, D: Driver> {
    driver: &'a mut D,
    sql: Builder<'a>,
    options: ExecOptions,
    model: String,
    operation: &'static str,
    written: Vec<WrittenRow>,
}

fn pk_of(t: &Table, values: &[Value]) -> Vec<Value> {
    indexes(t, &t.primary_key)
        .into_iter()
        .map(|i| values[i].clone())
        .collect()
}

/// A key to match rows by in Rust: equal for values the databases compare
/// equal (`numeric` by value, `char(n)` without trailing spaces); `None`
/// when a part is NULL (which matches nothing).
pub(crate) fn key_string(t: &Table, cols: &[usize], values: &[Value]) -> Option<String> {
    let mut out = String::new();
    for i in cols {
        let c = &t.columns[*i];
        let part = match (&values[*i], Class::of(&c.ty)) {
            (Value::Null, _) => return None,
            (Value::Text(s), Class::Numeric) => Json::String(numeric_key(s)),
            (Value::Text(s), Class::Char) => Json::String(s.trim_end_matches(' ').to_string()),
            (v, _) => v.to_json(&c.ty),
        };
        out.push_str(&part.to_string());
        out.push(',');
    }
    Some(out)
}

/// Rows a statement changed, in primary-key order: `RETURNING` gives them
/// in each database's physical order, and `written` must not depend on it.
fn sort_by_key(t: &Table, rows: &mut [Row]) {
    let pk = indexes(t, &t.primary_key);
    rows.sort_by_cached_key(|r| key_string(t, &pk, &r.values));
}

fn count_json(n: usize) -> Json {
    let mut m = Map::new();
    m.insert("count".into(), Json::from(n as u64));
    Json::Object(m)
}

impl<D: Driver> Exec<'_, D> {
    fn internal(&self, message: impl Into<String>) -> D::Error {
        QueryError::Internal {
            model: self.model.clone(),
            message: message.into(),
        }
        .into()
    }

    fn table(&self, name: &str) -> Result<Table, D::Error> {
        self.sql
            .schema
            .table(name)
            .cloned()
            .ok_or_else(|| self.internal(format!("model {name} is not in the schema")))
    }

    /// Runs a statement whose rows are table rows, plus the status column
    /// when `status` was asked of [`Builder::select`] (which adds it on
    /// SQLite only).
    async fn rows(&mut self, stmt: &Statement, status: bool) -> Result<Vec<Row>, D::Error> {
        let raw = self.driver.query(stmt).await?;
        let want = stmt.columns.len();
        let status = status && self.options.dialect == Dialect::Sqlite;
        raw.into_iter()
            .map(|mut values| {
                if values.len() != want {
                    return Err(self.internal(format!(
                        "a statement returned {} columns, expected {want}",
                        values.len()
                    )));
                }
                let status = if status {
                    match values.pop() {
                        Some(Value::Text(s)) => Some(s),
                        _ => Some("SYNCED".to_string()),
                    }
                } else {
                    None
                };
                Ok(Row { values, status })
            })
            .collect()
    }

    async fn count_of(&mut self, stmt: &Statement) -> Result<i64, D::Error> {
        let rows = self.driver.query(stmt).await?;
        match rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => Ok(*n),
            other => Err(self.internal(format!("COUNT(*) gave {other:?}"))),
        }
    }

    async fn run(&mut self, body: &Body) -> Result<Json, D::Error> {
        match body {
            Body::Read { query, single } => {
                let (_, records) = self.read(query, false).await?;
                Ok(if *single {
                    records.into_iter().next().unwrap_or(Json::Null)
                } else {
                    Json::Array(records)
                })
            }
            Body::Count(query) => {
                let stmt = self.sql.count(query)?;
                Ok(Json::from(self.count_of(&stmt).await?))
            }
            Body::Create { data, shape } => {
                let t = self.table(&self.model)?;
                let row = self.create_one(&t, data).await?;
                self.read_key(&t, shape, &pk_of(&t, &row)).await
            }
            Body::CreateMany {
                rows,
                skip_duplicates,
            } => {
                let t = self.table(&self.model)?;
                let n = self.create_many(&t, rows, *skip_duplicates).await?;
                Ok(count_json(n))
            }
            Body::Update { unique, set, shape } => {
                let t = self.table(&self.model)?;
                let old = self.find_unique(&t, unique, "update").await?;
                let new = self.update_one(&t, &old, set).await?;
                self.read_key(&t, shape, &pk_of(&t, &new)).await
            }
            Body::UpdateMany { filter, set } => {
                let t = self.table(&self.model)?;
                let n = self.update_many(&t, filter, set).await?;
                Ok(count_json(n))
            }
            Body::Upsert {
                unique,
                create,
                update,
                shape,
            } => {
                let t = self.table(&self.model)?;
                let mut q = Query::all(t.clone());
                q.filter = unique.filter.clone();
                let stmt = self.sql.select(&q, None, false, false)?;
                let found = self.rows(&stmt, false).await?.into_iter().next();
                let row = match found {
                    Some(old) => self.update_one(&t, &old.values, update).await?,
                    None => self.create_one(&t, create).await?,
                };
                self.read_key(&t, shape, &pk_of(&t, &row)).await
            }
            Body::Delete { unique, shape } => {
                let t = self.table(&self.model)?;
                let mut q = Query::all(t.clone());
                q.filter = unique.filter.clone();
                q.shape = shape.clone();
                let (rows, records) = self.read(&q, true).await?;
                let (Some(row), Some(record)) =
                    (rows.into_iter().next(), records.into_iter().next())
                else {
                    return Err(QueryError::NotFound {
                        action: "delete".into(),
                        model: t.name.clone(),
                        key: unique.json.clone(),
                    }
                    .into());
                };
                let pk_cols = indexes(&t, &t.primary_key);
                let stmt = self
                    .sql
                    .delete(&t, &Filter::key(&pk_cols, &pk_of(&t, &row)))?;
                for gone in self.rows(&stmt, false).await? {
                    self.written.push(WrittenRow {
                        table: t.name.clone(),
                        pk: pk_of(&t, &gone.values),
                        values: None,
                    });
                }
                Ok(record)
            }
            Body::DeleteMany { filter } => {
                let t = self.table(&self.model)?;
                let stmt = self.sql.delete(&t, filter)?;
                let mut gone = self.rows(&stmt, false).await?;
                sort_by_key(&t, &mut gone);
                for row in &gone {
                    self.written.push(WrittenRow {
                        table: t.name.clone(),
                        pk: pk_of(&t, &row.values),
                        values: None,
                    });
                }
                Ok(count_json(gone.len()))
            }
        }
    }

    /// The row a unique `where` names, or "record to … not found".
    async fn find_unique(
        &mut self,
        t: &Table,
        unique: &Unique,
        action: &str,
    ) -> Result<Vec<Value>, D::Error> {
        let mut q = Query::all(t.clone());
        q.filter = unique.filter.clone();
        let stmt = self.sql.select(&q, None, false, false)?;
        match self.rows(&stmt, false).await?.into_iter().next() {
            Some(row) => Ok(row.values),
            None => Err(QueryError::NotFound {
                action: action.into(),
                model: t.name.clone(),
                key: unique.json.clone(),
            }
            .into()),
        }
    }

    /// The record with primary key `pk`, in `shape`.
    async fn read_key(&mut self, t: &Table, shape: &Shape, pk: &[Value]) -> Result<Json, D::Error> {
        let mut q = Query::all(t.clone());
        q.filter = Filter::key(&indexes(t, &t.primary_key), pk);
        q.shape = shape.clone();
        let (_, records) = self.read(&q, false).await?;
        Ok(records.into_iter().next().unwrap_or(Json::Null))
    }

    /// Whether any row of `t` has a `_outpost_rows` entry: when none has,
    /// every row is `SYNCED` and the read skips the per-row lookup.
    async fn has_status_entries(&mut self, t: &Table) -> Result<bool, D::Error> {
        let stmt = self.sql.status_probe(t);
        Ok(self.count_of(&stmt).await? > 0)
    }

    /// The records of a read with every relation loaded, and the root rows'
    /// values when `keep` (for a delete).
    async fn read(
        &mut self,
        q: &Query,
        keep: bool,
    ) -> Result<(Vec<Vec<Value>>, Vec<Json>), D::Error> {
        let (levels, status) = self.levels(q).await?;
        let kept = if keep {
            levels[0].rows.iter().map(|r| r.values.clone()).collect()
        } else {
            Vec::new()
        };
        Ok((kept, assemble::records(levels, status)))
    }

    /// The rows of a read: the root level's, then each relation level's
    /// (parents before children); and whether they carry `syncStatus`.
    async fn levels<'q>(&mut self, q: &'q Query) -> Result<(Vec<Level<'q>>, bool), D::Error> {
        let status = self.options.sync_status && self.options.dialect == Dialect::Sqlite;
        let joined = status && self.has_status_entries(&q.table).await?;
        let stmt = self.sql.select(q, None, true, joined)?;
        let rows = self.rows(&stmt, joined).await?;
        let mut levels = vec![Level {
            query: q,
            rows,
            children: Vec::new(),
        }];
        let mut i = 0;
        while i < levels.len() {
            let query = levels[i].query;
            for load in &query.shape.relations {
                let local = indexes(&query.table, &load.relation.local_columns);
                let target = indexes(&load.query.table, &load.relation.target_columns);
                if local.len() != load.relation.local_columns.len()
                    || target.len() != load.relation.target_columns.len()
                    || local.len() != target.len()
                {
                    return Err(self.internal(format!(
                        "relation {} has columns missing from the schema",
                        load.relation.name
                    )));
                }
                // The parents' distinct keys, in the order first seen.
                let keys: Vec<Vec<Value>> = {
                    let mut seen = HashSet::new();
                    let mut keys = Vec::new();
                    for row in &levels[i].rows {
                        if let Some(k) = key(&query.table, &local, &row.values)
                            && seen.insert(k)
                        {
                            keys.push(local.iter().map(|c| row.values[*c].clone()).collect());
                        }
                    }
                    keys
                };
                let mut child_rows = Vec::new();
                if !keys.is_empty() {
                    let joined = status && self.has_status_entries(&load.query.table).await?;
                    let per = (MAX_KEY_PARAMS / target.len().max(1)).max(1);
                    for chunk in keys.chunks(per) {
                        let stmt =
                            self.sql
                                .select(&load.query, Some((&target, chunk)), false, joined)?;
                        child_rows.extend(self.rows(&stmt, joined).await?);
                    }
                }
                levels.push(Level {
                    query: &load.query,
                    rows: child_rows,
                    children: Vec::new(),
                });
                let id = levels.len() - 1;
                levels[i].children.push(id);
            }
            i += 1;
        }
        Ok((levels, status))
    }

    /// Names → indexes of a row to insert, checked for unknown names (from
    /// `fill`) and missing required fields.
    fn checked_row(
        &self,
        t: &Table,
        map: BTreeMap<String, Value>,
    ) -> Result<(Vec<usize>, Vec<Value>), D::Error> {
        let mut pairs: Vec<(usize, Value)> = Vec::with_capacity(map.len());
        for (name, v) in map {
            let Some(i) = t.columns.iter().position(|c| c.name == name) else {
                return Err(QueryError::Refused {
                    model: t.name.clone(),
                    message: format!("fill added {name:?}, which is not a field of {}", t.name),
                }
                .into());
            };
            pairs.push((i, v));
        }
        pairs.sort_by_key(|(i, _)| *i);
        let missing: Vec<String> = t
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                !c.nullable
                    && c.default.is_none()
                    && c.identity.is_none()
                    && !c.generated
                    && !pairs.iter().any(|(j, v)| j == i && !v.is_null())
            })
            .map(|(_, c)| c.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(QueryError::MissingFields {
                model: t.name.clone(),
                operation: self.operation.to_string(),
                fields: missing,
            }
            .into());
        }
        Ok(pairs.into_iter().unzip())
    }

    fn filled(&mut self, t: &Table, data: &Data) -> Result<(Vec<usize>, Vec<Value>), D::Error> {
        let mut map: BTreeMap<String, Value> = data
            .iter()
            .map(|(i, v)| (t.columns[*i].name.clone(), v.clone()))
            .collect();
        self.driver.fill(t, &mut map)?;
        self.checked_row(t, map)
    }

    async fn create_one(&mut self, t: &Table, data: &Data) -> Result<Vec<Value>, D::Error> {
        let (cols, values) = self.filled(t, data)?;
        let stmt = self.sql.insert(t, &cols, &[values], false)?;
        let row = self
            .rows(&stmt, false)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| self.internal("INSERT … RETURNING gave no row"))?;
        if self.options.check_uniques {
            self.check_unique(t, &row.values, None).await?;
        }
        self.written.push(WrittenRow {
            table: t.name.clone(),
            pk: pk_of(t, &row.values),
            values: Some(row.values.clone()),
        });
        Ok(row.values)
    }

    /// The key sets a row must be unique in: the primary key, then each
    /// unique constraint.
    fn key_sets(t: &Table) -> Vec<(Vec<String>, Vec<usize>)> {
        std::iter::once(&t.primary_key)
            .chain(&t.uniques)
            .map(|k| (k.clone(), indexes(t, k)))
            .filter(|(names, idx)| names.len() == idx.len())
            .collect()
    }

    async fn create_many(
        &mut self,
        t: &Table,
        rows: &[Data],
        skip_duplicates: bool,
    ) -> Result<usize, D::Error> {
        let mut prepared = Vec::with_capacity(rows.len());
        for data in rows {
            prepared.push(self.filled(t, data)?);
        }
        if skip_duplicates && self.options.check_uniques {
            // The replica cannot say ON CONFLICT for constraints it does not
            // declare: drop rows that duplicate a stored row or an earlier
            // one, as the server's ON CONFLICT DO NOTHING would.
            let sets = Self::key_sets(t);
            let mut seen: Vec<HashSet<String>> = vec![HashSet::new(); sets.len()];
            let mut kept = Vec::with_capacity(prepared.len());
            'rows: for (cols, values) in prepared {
                let mut full = vec![Value::Null; t.columns.len()];
                for (i, v) in cols.iter().zip(&values) {
                    full[*i] = v.clone();
                }
                let mut keys = Vec::with_capacity(sets.len());
                for (s, (_, idx)) in sets.iter().enumerate() {
                    let Some(k) = key_string(t, idx, &full) else {
                        keys.push(None);
                        continue;
                    };
                    if seen[s].contains(&k) {
                        continue 'rows;
                    }
                    let key_values: Vec<Value> = idx.iter().map(|i| full[*i].clone()).collect();
                    let mut q = Query::all(t.clone());
                    q.filter = Filter::key(idx, &key_values);
                    let stmt = self.sql.count(&q)?;
                    if self.count_of(&stmt).await? > 0 {
                        continue 'rows;
                    }
                    keys.push(Some(k));
                }
                for (s, k) in keys.into_iter().enumerate() {
                    if let Some(k) = k {
                        seen[s].insert(k);
                    }
                }
                kept.push((cols, values));
            }
            prepared = kept;
        }
        // One INSERT per set of columns given, in chunks.
        let mut groups: Vec<(Vec<usize>, Vec<Vec<Value>>)> = Vec::new();
        for (cols, values) in prepared {
            match groups.iter_mut().find(|(c, _)| *c == cols) {
                Some((_, rows)) => rows.push(values),
                None => groups.push((cols, vec![values])),
            }
        }
        let mut inserted = Vec::new();
        for (cols, rows) in &groups {
            let per = if cols.is_empty() {
                1
            } else {
                (MAX_INSERT_PARAMS / cols.len()).max(1)
            };
            for chunk in rows.chunks(per) {
                let stmt = self.sql.insert(t, cols, chunk, skip_duplicates)?;
                inserted.extend(self.rows(&stmt, false).await?);
            }
        }
        sort_by_key(t, &mut inserted);
        if self.options.check_uniques && !skip_duplicates {
            for row in &inserted {
                self.check_unique(t, &row.values, None).await?;
            }
        }
        for row in &inserted {
            self.written.push(WrittenRow {
                table: t.name.clone(),
                pk: pk_of(t, &row.values),
                values: Some(row.values.clone()),
            });
        }
        Ok(inserted.len())
    }

    /// After a write on the replica: no other row shares `values`' unique
    /// constraint values (only the constraints among `only`, when given).
    async fn check_unique(
        &mut self,
        t: &Table,
        values: &[Value],
        only: Option<&[usize]>,
    ) -> Result<(), D::Error> {
        for (names, idx) in Self::key_sets(t).into_iter().skip(1) {
            if let Some(only) = only
                && !idx.iter().any(|i| only.contains(i))
            {
                continue;
            }
            if idx.iter().any(|i| values[*i].is_null()) {
                continue;
            }
            let key_values: Vec<Value> = idx.iter().map(|i| values[*i].clone()).collect();
            let mut q = Query::all(t.clone());
            q.filter = Filter::key(&idx, &key_values);
            let stmt = self.sql.count(&q)?;
            if self.count_of(&stmt).await? > 1 {
                let shown: Vec<Json> = idx
                    .iter()
                    .map(|i| values[*i].to_json(&t.columns[*i].ty))
                    .collect();
                return Err(QueryError::UniqueViolation {
                    model: t.name.clone(),
                    fields: names,
                    values: Json::Array(shown).to_string(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// After arithmetic on the replica: the result still fits the column
    /// (SQLite's integers are 64-bit whatever the column's type).
    fn check_ranges(
        &self,
        t: &Table,
        set: &[Assignment],
        values: &[Value],
    ) -> Result<(), D::Error> {
        if !self.options.check_uniques {
            return Ok(());
        }
        for a in set.iter().filter(|a| a.op.is_arithmetic()) {
            let c = &t.columns[a.column];
            let (lo, hi) = match c.ty.scalar {
                ScalarType::Int2 => (i16::MIN as i64, i16::MAX as i64),
                ScalarType::Int4 => (i32::MIN as i64, i32::MAX as i64),
                _ => continue,
            };
            if let Value::Int(v) = values[a.column]
                && (v < lo || v > hi)
            {
                return Err(QueryError::BadValue {
                    model: t.name.clone(),
                    field: c.name.clone(),
                    ty: c.ty.pg_name.clone(),
                    message: format!("{v} is out of range"),
                }
                .into());
            }
        }
        Ok(())
    }

    async fn update_one(
        &mut self,
        t: &Table,
        old: &[Value],
        set: &[Assignment],
    ) -> Result<Vec<Value>, D::Error> {
        if set.is_empty() {
            return Ok(old.to_vec());
        }
        let pk_cols = indexes(t, &t.primary_key);
        let old_pk = pk_of(t, old);
        let stmt = self.sql.update(t, set, &Filter::key(&pk_cols, &old_pk))?;
        let Some(new) = self.rows(&stmt, false).await?.into_iter().next() else {
            return Err(QueryError::NotFound {
                action: "update".into(),
                model: t.name.clone(),
                key: Json::Array(
                    old_pk
                        .iter()
                        .zip(&pk_cols)
                        .map(|(v, i)| v.to_json(&t.columns[*i].ty))
                        .collect(),
                )
                .to_string(),
            }
            .into());
        };
        self.check_ranges(t, set, &new.values)?;
        if self.options.check_uniques {
            let touched: Vec<usize> = set.iter().map(|a| a.column).collect();
            self.check_unique(t, &new.values, Some(&touched)).await?;
        }
        let new_pk = pk_of(t, &new.values);
        if key_string(t, &pk_cols, old) != key_string(t, &pk_cols, &new.values) {
            self.written.push(WrittenRow {
                table: t.name.clone(),
                pk: old_pk,
                values: None,
            });
        }
        self.written.push(WrittenRow {
            table: t.name.clone(),
            pk: new_pk,
            values: Some(new.values.clone()),
        });
        Ok(new.values)
    }

    async fn update_many(
        &mut self,
        t: &Table,
        filter: &Filter,
        set: &[Assignment],
    ) -> Result<usize, D::Error> {
        let mut q = Query::all(t.clone());
        q.filter = filter.clone();
        if set.is_empty() {
            let stmt = self.sql.count(&q)?;
            return Ok(self.count_of(&stmt).await?.max(0) as usize);
        }
        let pk_cols = indexes(t, &t.primary_key);
        let touches_key = set.iter().any(|a| pk_cols.contains(&a.column));
        let before: Vec<Vec<Value>> = if touches_key {
            let stmt = self.sql.select(&q, None, false, false)?;
            self.rows(&stmt, false)
                .await?
                .into_iter()
                .map(|r| pk_of(t, &r.values))
                .collect()
        } else {
            Vec::new()
        };
        let stmt = self.sql.update(t, set, filter)?;
        let mut rows = self.rows(&stmt, false).await?;
        sort_by_key(t, &mut rows);
        for row in &rows {
            self.check_ranges(t, set, &row.values)?;
        }
        if self.options.check_uniques {
            let touched: Vec<usize> = set.iter().map(|a| a.column).collect();
            for row in &rows {
                self.check_unique(t, &row.values, Some(&touched)).await?;
            }
        }
        if touches_key {
            let after: HashSet<String> = rows
                .iter()
                .filter_map(|r| key_string(t, &pk_cols, &r.values))
                .collect();
            for pk in before {
                let mut full = vec![Value::Null; t.columns.len()];
                for (i, v) in pk_cols.iter().zip(&pk) {
                    full[*i] = v.clone();
                }
                if key_string(t, &pk_cols, &full).is_some_and(|k| !after.contains(&k)) {
                    self.written.push(WrittenRow {
                        table: t.name.clone(),
                        pk,
                        values: None,
                    });
                }
            }
        }
        for row in &rows {
            self.written.push(WrittenRow {
                table: t.name.clone(),
                pk: pk_of(t, &row.values),
                values: Some(row.values.clone()),
            });
        }
        Ok(rows.len())
    }
}
