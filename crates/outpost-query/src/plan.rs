//! Parsing and checking a request's JSON arguments against the schema into
//! a [`Plan`]: every model, field, relation and operator name must be the
//! schema's (which is what keeps identifiers out of reach of injection),
//! every value is read with `Value::from_json` for its column's type, and
//! anything unsupported is refused with an error that names it.

use std::collections::BTreeSet;

use outpost_core::schema::{Column, Relation, RelationKind, Schema, Table};
use outpost_core::types::{ColumnType, ScalarType, Value};
use serde_json::{Map, Value as Json};

use crate::Operation;
use crate::error::QueryError;
use crate::text::apply_typmod;

/// How deep relations (`include` in `include`…) and filter combinators
/// (`AND` in `OR`…) may nest.
pub const MAX_NESTING: usize = 16;

/// How deep the argument JSON may nest at all (checked first, without
/// recursion, so no input can exhaust the stack).
const MAX_JSON_DEPTH: usize = 4 * MAX_NESTING + 8;

/// A parsed, checked request: what [`crate::exec::execute`] carries out.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) model: String,
    pub(crate) operation: Operation,
    pub(crate) body: Body,
}

impl Plan {
    /// The model (table) the request is about.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// Whether the request writes.
    pub fn is_write(&self) -> bool {
        self.operation.is_write()
    }
}

/// A row to insert: column index → value.
pub(crate) type Data = Vec<(usize, Value)>;

#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// `findMany`, or `findFirst`/`findUnique` (`single`: one record or null).
    Read {
        query: Query,
        single: bool,
    },
    Count(Query),
    Create {
        data: Data,
        shape: Shape,
    },
    CreateMany {
        rows: Vec<Data>,
        skip_duplicates: bool,
    },
    Update {
        unique: Unique,
        set: Vec<Assignment>,
        shape: Shape,
    },
    UpdateMany {
        filter: Filter,
        set: Vec<Assignment>,
    },
    Upsert {
        unique: Unique,
        create: Data,
        update: Vec<Assignment>,
        shape: Shape,
    },
    Delete {
        unique: Unique,
        shape: Shape,
    },
    DeleteMany {
        filter: Filter,
    },
}

/// A `where` that names one record, and its JSON for messages.
#[derive(Debug, Clone)]
pub(crate) struct Unique {
    pub filter: Filter,
    pub json: String,
}

/// A read of one model: the root of a request or a relation in it.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub table: Table,
    pub filter: Filter,
    pub order: Vec<OrderKey>,
    /// A unique filter naming the cursor row (columns of `table`).
    pub cursor: Option<Filter>,
    pub take: Option<u64>,
    pub skip: u64,
    pub shape: Shape,
}

impl Query {
    pub(crate) fn all(table: Table) -> Query {
        Query {
            shape: Shape::all(&table),
            table,
            filter: Filter::always(),
            order: Vec::new(),
            cursor: None,
            take: None,
            skip: 0,
        }
    }
}

/// What a record shows: scalar fields (column indexes, column order) and
/// relations (in the order asked).
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub fields: Vec<usize>,
    pub relations: Vec<Load>,
}

impl Shape {
    fn all(table: &Table) -> Shape {
        Shape {
            fields: (0..table.columns.len()).collect(),
            relations: Vec::new(),
        }
    }
}

/// A relation to load, with the read of its target model.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub relation: Relation,
    pub query: Query,
}

/// A boolean condition over one table's columns.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    /// All hold (true when empty).
    All(Vec<Filter>),
    /// Any holds (false when empty).
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Leaf(Leaf),
}

impl Filter {
    pub(crate) fn always() -> Filter {
        Filter::All(Vec::new())
    }

    fn all(mut parts: Vec<Filter>) -> Filter {
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::All(parts)
        }
    }

    /// Equality on each of the columns.
    pub(crate) fn key(columns: &[usize], values: &[Value]) -> Filter {
        Filter::all(
            columns
                .iter()
                .zip(values)
                .map(|(c, v)| {
                    Filter::Leaf(Leaf {
                        column: *c,
                        op: if v.is_null() {
                            Op::IsNull
                        } else {
                            Op::Eq(v.clone())
                        },
                        insensitive: false,
                    })
                })
                .collect(),
        )
    }

    pub(crate) fn is_always(&self) -> bool {
        matches!(self, Filter::All(v) if v.is_empty())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub column: usize,
    pub op: Op,
    pub insensitive: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    IsNull,
    NotNull,
    Eq(Value),
    In(Vec<Value>),
    Lt(Value),
    Lte(Value),
    Gt(Value),
    Gte(Value),
    Contains(Value),
    StartsWith(Value),
    EndsWith(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrderKey {
    pub column: usize,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    pub column: usize,
    pub op: SetOp,
}

#[derive(Debug, Clone)]
pub(crate) enum SetOp {
    Set(Value),
    Increment(Value),
    Decrement(Value),
    Multiply(Value),
    Divide(Value),
}

impl SetOp {
    pub(crate) fn is_arithmetic(&self) -> bool {
        !matches!(self, SetOp::Set(_))
    }
}

/// What a column's values can do in filters and ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Bool,
    Int,
    Float,
    Numeric,
    Text,
    Char,
    Uuid,
    Temporal,
    Interval,
    Json,
    Bytes,
    Enum,
    Array,
    /// `citext`: compared and ordered ASCII-case-insensitively on both
    /// databases (`COLLATE "C"` on the server, the replica column's
    /// `NOCASE`).
    Citext,
    /// Types whose stored text the replica cannot order like the server
    /// (network addresses, `timetz`, bit strings, ranges, geometry, text
    /// search, `xml`): equality only, on the canonical form.
    Opaque,
}

impl Class {
    pub(crate) fn of(ty: &ColumnType) -> Class {
        if ty.array {
            return Class::Array;
        }
        match ty.scalar {
            ScalarType::Bool => Class::Bool,
            ScalarType::Int2 | ScalarType::Int4 | ScalarType::Int8 => Class::Int,
            ScalarType::Float4 | ScalarType::Float8 => Class::Float,
            ScalarType::Numeric => Class::Numeric,
            ScalarType::Text | ScalarType::Varchar => Class::Text,
            ScalarType::Char => Class::Char,
            ScalarType::Uuid => Class::Uuid,
            ScalarType::Date
            | ScalarType::Time
            | ScalarType::Timestamp
            | ScalarType::Timestamptz => Class::Temporal,
            ScalarType::Interval => Class::Interval,
            ScalarType::Json | ScalarType::Jsonb => Class::Json,
            ScalarType::Bytea => Class::Bytes,
            ScalarType::Enum(_) => Class::Enum,
            ScalarType::Oid => Class::Int,
            // A decimal text with two fractional digits: ordered by the
            // replica's numeric collation like `numeric`.
            ScalarType::Money => Class::Numeric,
            // Fixed-width lower-case hex, byte order: text order and text
            // matching agree with the server's, as for uuids.
            ScalarType::Macaddr | ScalarType::Macaddr8 => Class::Uuid,
            ScalarType::Citext => Class::Citext,
            _ => Class::Opaque,
        }
    }

    /// `equals`, `in`, `notIn`, `not` and unique lookups.
    pub(crate) fn equatable(self) -> bool {
        self.comparable() || self == Class::Opaque
    }

    /// `equals`, `in`, `lt`…, `orderBy`, `cursor`.
    pub(crate) fn comparable(self) -> bool {
        !matches!(
            self,
            Class::Interval | Class::Json | Class::Array | Class::Opaque
        )
    }

    /// `contains`, `startsWith`, `endsWith`, `mode`.
    pub(crate) fn textual(self) -> bool {
        matches!(self, Class::Text | Class::Char | Class::Uuid)
    }
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn too_deep(v: &Json, limit: usize) -> bool {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        if d > limit {
            return true;
        }
        match v {
            Json::Array(items) => stack.extend(items.iter().map(|x| (x, d + 1))),
            Json::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    false
}

/// Parses and checks a request: `args` in Prisma's shape for `op` on
/// `model`. Every name must be the schema's; every value must fit its
/// column.
pub fn plan(schema: &Schema, model: &str, op: Operation, args: &Json) -> Result<Plan, QueryError> {
    let table = schema
        .table(model)
        .ok_or_else(|| QueryError::UnknownModel {
            model: model.to_string(),
            models: schema.tables.iter().map(|t| t.name.clone()).collect(),
        })?;
    let ctx = format!("{model}.{op}");
    if too_deep(args, MAX_JSON_DEPTH) {
        return Err(QueryError::TooDeep {
            context: ctx,
            limit: MAX_JSON_DEPTH,
        });
    }
    let empty = Map::new();
    let args = match args {
        Json::Null => &empty,
        Json::Object(m) => m,
        other => {
            return Err(QueryError::BadArgument {
                context: ctx,
                message: format!("arguments must be an object, got {}", kind(other)),
            });
        }
    };
    let p = Parser { schema };
    let allowed: &[&str] = match op {
        Operation::FindMany | Operation::FindFirst => &[
            "where", "select", "include", "orderBy", "take", "skip", "cursor", "distinct",
        ],
        Operation::FindUnique => &["where", "select", "include"],
        Operation::Count => &["where", "orderBy", "take", "skip", "cursor"],
        Operation::Create => &["data", "select", "include"],
        Operation::CreateMany => &["data", "skipDuplicates"],
        Operation::Update => &["where", "data", "select", "include"],
        Operation::UpdateMany => &["where", "data"],
        Operation::Upsert => &["where", "create", "update", "select", "include"],
        Operation::Delete => &["where", "select", "include"],
        Operation::DeleteMany => &["where"],
    };
    check_keys(args, allowed, &ctx)?;
    let required = |key: &str| -> Result<&Json, QueryError> {
        args.get(key).ok_or_else(|| QueryError::BadArgument {
            context: ctx.clone(),
            message: format!("the argument {key:?} is required"),
        })
    };
    let body = match op {
        Operation::FindMany | Operation::FindFirst => {
            let mut query = p.query(table, args, 0, &ctx, true)?;
            if op == Operation::FindFirst {
                query.take = Some(query.take.map_or(1, |t| t.min(1)));
            }
            Body::Read {
                query,
                single: op == Operation::FindFirst,
            }
        }
        Operation::FindUnique => {
            let unique = p.unique(table, required("where")?, &ctx, op.name())?;
            let mut query = Query::all(table.clone());
            query.filter = unique.filter;
            query.shape = p.shape(table, args, 0, &ctx)?;
            Body::Read {
                query,
                single: true,
            }
        }
        Operation::Count => Body::Count(p.query(table, args, 0, &ctx, false)?),
        Operation::Create => Body::Create {
            data: p.create_data(table, required("data")?, &format!("{ctx} data"))?,
            shape: p.shape(table, args, 0, &ctx)?,
        },
        Operation::CreateMany => {
            let rows = match required("data")? {
                Json::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, j)| p.create_data(table, j, &format!("{ctx} data[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
                one @ Json::Object(_) => vec![p.create_data(table, one, &format!("{ctx} data"))?],
                other => {
                    return Err(QueryError::BadArgument {
                        context: format!("{ctx} data"),
                        message: format!("expected an array of objects, got {}", kind(other)),
                    });
                }
            };
            let skip_duplicates = match args.get("skipDuplicates") {
                None | Some(Json::Null) => false,
                Some(Json::Bool(b)) => *b,
                Some(other) => {
                    return Err(QueryError::BadArgument {
                        context: format!("{ctx} skipDuplicates"),
                        message: format!("expected true or false, got {}", kind(other)),
                    });
                }
            };
            Body::CreateMany {
                rows,
                skip_duplicates,
            }
        }
        Operation::Update => Body::Update {
            unique: p.unique(table, required("where")?, &ctx, op.name())?,
            set: p.update_data(table, required("data")?, &format!("{ctx} data"))?,
            shape: p.shape(table, args, 0, &ctx)?,
        },
        Operation::UpdateMany => Body::UpdateMany {
            filter: p.filter_arg(table, args.get("where"), &ctx)?,
            set: p.update_data(table, required("data")?, &format!("{ctx} data"))?,
        },
        Operation::Upsert => Body::Upsert {
            unique: p.unique(table, required("where")?, &ctx, op.name())?,
            create: p.create_data(table, required("create")?, &format!("{ctx} create"))?,
            update: p.update_data(table, required("update")?, &format!("{ctx} update"))?,
            shape: p.shape(table, args, 0, &ctx)?,
        },
        Operation::Delete => Body::Delete {
            unique: p.unique(table, required("where")?, &ctx, op.name())?,
            shape: p.shape(table, args, 0, &ctx)?,
        },
        Operation::DeleteMany => Body::DeleteMany {
            filter: p.filter_arg(table, args.get("where"), &ctx)?,
        },
    };
    Ok(Plan {
        model: table.name.clone(),
        operation: op,
        body,
    })
}

fn check_keys(args: &Map<String, Json>, allowed: &[&str], ctx: &str) -> Result<(), QueryError> {
    for k in args.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(QueryError::UnknownArgument {
                context: ctx.to_string(),
                argument: k.clone(),
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    Ok(())
}

fn field_names(t: &Table) -> Vec<String> {
    t.columns
        .iter()
        .map(|c| c.name.clone())
        .chain(t.relations.iter().map(|r| r.name.clone()))
        .collect()
}

fn unknown_field(t: &Table, name: &str) -> QueryError {
    QueryError::UnknownField {
        model: t.name.clone(),
        field: name.to_string(),
        fields: field_names(t),
    }
}

fn unsupported(what: &str, plural: bool, detail: String) -> QueryError {
    QueryError::Unsupported {
        what: what.to_string(),
        plural,
        detail,
    }
}

fn fk_hint(t: &Table, r: &Relation) -> String {
    if r.owns_foreign_key {
        format!(
            "; set or filter the foreign-key field(s) {} of {} instead",
            r.local_columns.join(", "),
            t.name
        )
    } else {
        String::new()
    }
}

struct Parser<'s> {
    schema: &'s Schema,
}

impl Parser<'_> {
    fn enum_labels(&self, ty: &ColumnType) -> Option<&[String]> {
        match &ty.scalar {
            ScalarType::Enum(name) => self.schema.enum_type(name).map(|e| e.labels.as_slice()),
            _ => None,
        }
    }

    /// A filter or key value for `c`.
    fn value(&self, t: &Table, c: &Column, json: &Json) -> Result<Value, QueryError> {
        Value::from_json(json, &c.ty, self.enum_labels(&c.ty)).map_err(|e| QueryError::BadValue {
            model: t.name.clone(),
            field: c.name.clone(),
            ty: c.ty.pg_name.clone(),
            message: e.message,
        })
    }

    /// A value to write into `c`: checked, NOT NULL enforced, type modifier
    /// applied.
    fn write_value(&self, t: &Table, c: &Column, json: &Json) -> Result<Value, QueryError> {
        let v = self.value(t, c, json)?;
        if v.is_null() && !c.nullable {
            return Err(QueryError::BadValue {
                model: t.name.clone(),
                field: c.name.clone(),
                ty: c.ty.pg_name.clone(),
                message: "cannot be null (the field is required)".into(),
            });
        }
        apply_typmod(v, &c.ty).map_err(|message| QueryError::BadValue {
            model: t.name.clone(),
            field: c.name.clone(),
            ty: c.ty.pg_name.clone(),
            message,
        })
    }

    fn column<'t>(&self, t: &'t Table, name: &str) -> Option<(usize, &'t Column)> {
        t.columns.iter().enumerate().find(|(_, c)| c.name == name)
    }

    /// `where`, `orderBy`, `cursor`, `take`, `skip`, `select`/`include` of a
    /// read (`window`: `findMany`-style paging allowed).
    fn query(
        &self,
        t: &Table,
        args: &Map<String, Json>,
        depth: usize,
        ctx: &str,
        with_shape: bool,
    ) -> Result<Query, QueryError> {
        if args.contains_key("distinct") {
            return Err(unsupported(
                "distinct",
                false,
                format!("{ctx}: sort with orderBy and remove duplicates in the application"),
            ));
        }
        let filter = self.filter_arg(t, args.get("where"), ctx)?;
        let order = match args.get("orderBy") {
            None | Some(Json::Null) => Vec::new(),
            Some(j) => self.order(t, j, &format!("{ctx} orderBy"))?,
        };
        let take = match args.get("take") {
            None | Some(Json::Null) => None,
            Some(j) => match j.as_i64() {
                Some(n) if n >= 0 => Some(n as u64),
                Some(n) => {
                    return Err(unsupported(
                        "negative take",
                        false,
                        format!("{ctx} take: {n}; reverse orderBy and use a positive take"),
                    ));
                }
                None => {
                    return Err(QueryError::BadArgument {
                        context: format!("{ctx} take"),
                        message: format!("expected an integer, got {}", shown(j)),
                    });
                }
            },
        };
        let skip = match args.get("skip") {
            None | Some(Json::Null) => 0,
            Some(j) => match j.as_u64() {
                Some(n) => n,
                None => {
                    return Err(QueryError::BadArgument {
                        context: format!("{ctx} skip"),
                        message: format!("expected a non-negative integer, got {}", shown(j)),
                    });
                }
            },
        };
        let cursor = match args.get("cursor") {
            None | Some(Json::Null) => None,
            Some(j) if depth > 0 => {
                let _ = j;
                return Err(unsupported(
                    "cursor",
                    false,
                    format!("{ctx}: cursor inside include/select; use skip and take"),
                ));
            }
            Some(j) => Some(
                self.unique(t, j, &format!("{ctx} cursor"), "cursor")?
                    .filter,
            ),
        };
        let shape = if with_shape {
            self.shape(t, args, depth, ctx)?
        } else {
            Shape::all(t)
        };
        Ok(Query {
            table: t.clone(),
            filter,
            order,
            cursor,
            take,
            skip,
            shape,
        })
    }

    fn filter_arg(&self, t: &Table, j: Option<&Json>, ctx: &str) -> Result<Filter, QueryError> {
        match j {
            None | Some(Json::Null) => Ok(Filter::always()),
            Some(j) => self.filter(t, j, 0, &format!("{ctx} where")),
        }
    }

    fn filter(&self, t: &Table, j: &Json, depth: usize, ctx: &str) -> Result<Filter, QueryError> {
        if depth > MAX_NESTING {
            return Err(QueryError::TooDeep {
                context: ctx.to_string(),
                limit: MAX_NESTING,
            });
        }
        let Json::Object(m) = j else {
            return Err(QueryError::BadArgument {
                context: ctx.to_string(),
                message: format!("expected an object, got {}", kind(j)),
            });
        };
        let mut parts = Vec::with_capacity(m.len());
        for (k, v) in m {
            let sub = |j: &Json| self.filter(t, j, depth + 1, &format!("{ctx}.{k}"));
            let list = |v: &Json| -> Result<Vec<Filter>, QueryError> {
                match v {
                    Json::Array(items) => items.iter().map(sub).collect(),
                    Json::Object(_) => Ok(vec![sub(v)?]),
                    other => Err(QueryError::BadArgument {
                        context: format!("{ctx}.{k}"),
                        message: format!(
                            "expected an object or an array of objects, got {}",
                            kind(other)
                        ),
                    }),
                }
            };
            match k.as_str() {
                "AND" => parts.push(Filter::All(list(v)?)),
                "OR" => parts.push(Filter::Any(list(v)?)),
                "NOT" => parts.push(Filter::All(
                    list(v)?
                        .into_iter()
                        .map(|f| Filter::Not(Box::new(f)))
                        .collect(),
                )),
                name => {
                    if let Some((i, c)) = self.column(t, name) {
                        parts.push(self.field_filter(t, i, c, v, depth + 1, false, ctx)?);
                    } else if let Some(r) = t.relation(name) {
                        return Err(unsupported(
                            "relation filters",
                            true,
                            format!("{}.{} in {ctx}{}", t.name, r.name, fk_hint(t, r)),
                        ));
                    } else {
                        return Err(unknown_field(t, name));
                    }
                }
            }
        }
        Ok(Filter::all(parts))
    }

    #[allow(clippy::too_many_arguments)]
    fn field_filter(
        &self,
        t: &Table,
        i: usize,
        c: &Column,
        v: &Json,
        depth: usize,
        inherited_insensitive: bool,
        ctx: &str,
    ) -> Result<Filter, QueryError> {
        if depth > MAX_NESTING {
            return Err(QueryError::TooDeep {
                context: ctx.to_string(),
                limit: MAX_NESTING,
            });
        }
        let class = Class::of(&c.ty);
        let leaf = |op: Op, insensitive: bool| {
            Filter::Leaf(Leaf {
                column: i,
                op,
                insensitive,
            })
        };
        let op_err = |operator: &str, hint: String| QueryError::UnknownOperator {
            model: t.name.clone(),
            field: c.name.clone(),
            operator: operator.to_string(),
            hint: Some(hint),
        };
        let allowed_ops = || -> String {
            let mut ops = vec!["equals", "not", "in", "notIn", "lt", "lte", "gt", "gte"];
            if class.textual() {
                ops.extend(["contains", "startsWith", "endsWith", "mode"]);
            }
            if !class.equatable() {
                return format!(
                    "{} fields can only be tested for null: equals: null, not: null",
                    c.ty.pg_name
                );
            }
            if !class.comparable() {
                return format!(
                    "{} fields have no common order in the replica and the server: equals, not, in, notIn",
                    c.ty.pg_name
                );
            }
            format!("operators: {}", ops.join(", "))
        };
        let comparable = |operator: &str| -> Result<(), QueryError> {
            let equality = matches!(operator, "equals" | "not" | "in" | "notIn");
            if class.comparable() || (equality && class.equatable()) {
                Ok(())
            } else {
                Err(op_err(operator, allowed_ops()))
            }
        };
        let Json::Object(m) = v else {
            // `{field: value}`: equals.
            if v.is_null() {
                return Ok(leaf(Op::IsNull, false));
            }
            comparable("equals")?;
            return Ok(leaf(Op::Eq(self.filter_value(t, c, v)?), false));
        };
        let insensitive = match m.get("mode") {
            None => inherited_insensitive,
            Some(Json::String(s)) if s == "insensitive" => true,
            Some(Json::String(s)) if s == "default" => false,
            Some(other) => {
                return Err(QueryError::BadArgument {
                    context: format!("{ctx}.{}.mode", c.name),
                    message: format!(
                        "expected \"default\" or \"insensitive\", got {}",
                        shown(other)
                    ),
                });
            }
        };
        if insensitive && !class.textual() {
            return Err(op_err("mode", allowed_ops()));
        }
        let mut parts = Vec::with_capacity(m.len());
        for (op, val) in m {
            let scalar = |this: &Self| -> Result<Value, QueryError> {
                if val.is_null() {
                    return Err(QueryError::BadValue {
                        model: t.name.clone(),
                        field: c.name.clone(),
                        ty: c.ty.pg_name.clone(),
                        message: format!("{op} cannot compare with null"),
                    });
                }
                comparable(op)?;
                this.filter_value(t, c, val)
            };
            let text = || -> Result<Value, QueryError> {
                if !class.textual() {
                    return Err(op_err(op, allowed_ops()));
                }
                match val {
                    Json::String(s) => Ok(Value::Text(s.clone())),
                    other => Err(QueryError::BadValue {
                        model: t.name.clone(),
                        field: c.name.clone(),
                        ty: c.ty.pg_name.clone(),
                        message: format!("{op} expects a string, got {}", kind(other)),
                    }),
                }
            };
            let list = |this: &Self| -> Result<Vec<Value>, QueryError> {
                comparable(op)?;
                match val {
                    Json::Array(items) => items
                        .iter()
                        .map(|j| {
                            if j.is_null() {
                                Ok(Value::Null)
                            } else {
                                this.filter_value(t, c, j)
                            }
                        })
                        .collect(),
                    other => Err(QueryError::BadValue {
                        model: t.name.clone(),
                        field: c.name.clone(),
                        ty: c.ty.pg_name.clone(),
                        message: format!("{op} expects an array, got {}", kind(other)),
                    }),
                }
            };
            let f = match op.as_str() {
                "mode" => continue,
                "equals" if val.is_null() => leaf(Op::IsNull, false),
                "equals" => leaf(Op::Eq(scalar(self)?), insensitive),
                "not" => match val {
                    Json::Null => leaf(Op::NotNull, false),
                    Json::Object(_) => Filter::Not(Box::new(self.field_filter(
                        t,
                        i,
                        c,
                        val,
                        depth + 1,
                        insensitive,
                        ctx,
                    )?)),
                    _ => Filter::Not(Box::new(leaf(Op::Eq(scalar(self)?), insensitive))),
                },
                "in" => leaf(Op::In(list(self)?), insensitive),
                "notIn" => Filter::Not(Box::new(leaf(Op::In(list(self)?), insensitive))),
                "lt" => leaf(Op::Lt(scalar(self)?), insensitive),
                "lte" => leaf(Op::Lte(scalar(self)?), insensitive),
                "gt" => leaf(Op::Gt(scalar(self)?), insensitive),
                "gte" => leaf(Op::Gte(scalar(self)?), insensitive),
                "contains" => leaf(Op::Contains(text()?), insensitive),
                "startsWith" => leaf(Op::StartsWith(text()?), insensitive),
                "endsWith" => leaf(Op::EndsWith(text()?), insensitive),
                other => return Err(op_err(other, allowed_ops())),
            };
            parts.push(f);
        }
        Ok(Filter::all(parts))
    }

    /// A value compared with `c`: as stored, except `char(n)` text, which
    /// compares without trailing spaces on both databases.
    fn filter_value(&self, t: &Table, c: &Column, j: &Json) -> Result<Value, QueryError> {
        let v = self.value(t, c, j)?;
        Ok(match (Class::of(&c.ty), v) {
            (Class::Char, Value::Text(s)) => Value::Text(s.trim_end_matches(' ').to_string()),
            (_, v) => v,
        })
    }

    fn order(&self, t: &Table, j: &Json, ctx: &str) -> Result<Vec<OrderKey>, QueryError> {
        let items: Vec<&Json> = match j {
            Json::Array(items) => items.iter().collect(),
            Json::Object(_) => vec![j],
            other => {
                return Err(QueryError::BadArgument {
                    context: ctx.to_string(),
                    message: format!(
                        "expected an object or an array of objects, got {}",
                        kind(other)
                    ),
                });
            }
        };
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            let Json::Object(m) = item else {
                return Err(QueryError::BadArgument {
                    context: ctx.to_string(),
                    message: format!(
                        "expected an object like {{\"field\": \"asc\"}}, got {}",
                        kind(item)
                    ),
                });
            };
            let mut it = m.iter();
            let (Some((name, dir)), None) = (it.next(), it.next()) else {
                return Err(QueryError::BadArgument {
                    context: ctx.to_string(),
                    message: format!(
                        "each orderBy object names exactly one field (got {}); use an array for several: [{{\"a\": \"asc\"}}, {{\"b\": \"desc\"}}]",
                        m.len()
                    ),
                });
            };
            let Some((i, c)) = self.column(t, name) else {
                if let Some(r) = t.relation(name) {
                    return Err(unsupported(
                        "ordering by relation fields",
                        false,
                        format!("{}.{} in {ctx}", t.name, r.name),
                    ));
                }
                if name.starts_with('_') {
                    return Err(unsupported(name, false, ctx.to_string()));
                }
                return Err(unknown_field(t, name));
            };
            if !Class::of(&c.ty).comparable() {
                return Err(QueryError::BadArgument {
                    context: ctx.to_string(),
                    message: format!(
                        "cannot order by {}.{} (type {}): values of this type have no common order in the replica and the server",
                        t.name, c.name, c.ty.pg_name
                    ),
                });
            }
            let direction = |s: &Json| -> Result<bool, QueryError> {
                match s.as_str() {
                    Some("asc") => Ok(false),
                    Some("desc") => Ok(true),
                    _ => Err(QueryError::BadArgument {
                        context: format!("{ctx}.{name}"),
                        message: format!("expected \"asc\" or \"desc\", got {}", shown(s)),
                    }),
                }
            };
            let (desc, nulls_first) = match dir {
                Json::Object(o) => {
                    check_keys(o, &["sort", "nulls"], &format!("{ctx}.{name}"))?;
                    let desc = direction(o.get("sort").unwrap_or(&Json::Null))?;
                    let nulls_first = match o.get("nulls") {
                        None | Some(Json::Null) => desc,
                        Some(Json::String(s)) if s == "first" => true,
                        Some(Json::String(s)) if s == "last" => false,
                        Some(other) => {
                            return Err(QueryError::BadArgument {
                                context: format!("{ctx}.{name}.nulls"),
                                message: format!(
                                    "expected \"first\" or \"last\", got {}",
                                    shown(other)
                                ),
                            });
                        }
                    };
                    (desc, nulls_first)
                }
                other => {
                    let desc = direction(other)?;
                    (desc, desc)
                }
            };
            keys.push(OrderKey {
                column: i,
                desc,
                nulls_first,
            });
        }
        Ok(keys)
    }

    /// `select` or `include` of a record of `t`.
    fn shape(
        &self,
        t: &Table,
        args: &Map<String, Json>,
        depth: usize,
        ctx: &str,
    ) -> Result<Shape, QueryError> {
        let select = args.get("select").filter(|j| !j.is_null());
        let include = args.get("include").filter(|j| !j.is_null());
        if select.is_some() && include.is_some() {
            return Err(QueryError::BadArgument {
                context: ctx.to_string(),
                message: "use either select or include, not both".into(),
            });
        }
        let (j, is_select) = match (select, include) {
            (Some(j), _) => (j, true),
            (None, Some(j)) => (j, false),
            (None, None) => return Ok(Shape::all(t)),
        };
        let what = if is_select { "select" } else { "include" };
        let Json::Object(m) = j else {
            return Err(QueryError::BadArgument {
                context: format!("{ctx} {what}"),
                message: format!("expected an object, got {}", kind(j)),
            });
        };
        let mut fields: BTreeSet<usize> = BTreeSet::new();
        let mut relations = Vec::new();
        for (name, v) in m {
            let here = format!("{ctx} {what}.{name}");
            if let Some((i, _)) = self.column(t, name) {
                if !is_select {
                    return Err(QueryError::BadArgument {
                        context: here,
                        message: format!(
                            "{}.{name} is a field, not a relation; include takes relations ({}), select takes fields",
                            t.name,
                            t.relations
                                .iter()
                                .map(|r| r.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                match v {
                    Json::Bool(true) => {
                        fields.insert(i);
                    }
                    Json::Bool(false) | Json::Null => {}
                    other => {
                        return Err(QueryError::BadArgument {
                            context: here,
                            message: format!("expected true or false, got {}", kind(other)),
                        });
                    }
                }
            } else if let Some(r) = t.relation(name) {
                if let Some(load) = self.load(t, r, v, depth + 1, &here)? {
                    relations.push(load);
                }
            } else if name == "_count" {
                return Err(unsupported("_count", false, here));
            } else if is_select {
                return Err(unknown_field(t, name));
            } else {
                return Err(QueryError::UnknownRelation {
                    model: t.name.clone(),
                    relation: name.clone(),
                    relations: t.relations.iter().map(|r| r.name.clone()).collect(),
                });
            }
        }
        let fields: Vec<usize> = if is_select {
            fields.into_iter().collect()
        } else {
            (0..t.columns.len()).collect()
        };
        if fields.is_empty() && relations.is_empty() {
            return Err(QueryError::BadArgument {
                context: format!("{ctx} select"),
                message: "select must choose at least one field".into(),
            });
        }
        Ok(Shape { fields, relations })
    }

    /// A relation in `select`/`include`: `true`, `false` or nested
    /// arguments.
    fn load(
        &self,
        t: &Table,
        r: &Relation,
        v: &Json,
        depth: usize,
        ctx: &str,
    ) -> Result<Option<Load>, QueryError> {
        if depth > MAX_NESTING {
            return Err(QueryError::TooDeep {
                context: ctx.to_string(),
                limit: MAX_NESTING,
            });
        }
        let target = self
            .schema
            .table(&r.target)
            .ok_or_else(|| QueryError::Internal {
                model: t.name.clone(),
                message: format!("relation {} leads to unknown model {}", r.name, r.target),
            })?;
        let query = match v {
            Json::Bool(false) | Json::Null => return Ok(None),
            Json::Bool(true) => Query::all(target.clone()),
            Json::Object(m) => {
                let allowed: &[&str] = match r.kind {
                    RelationKind::ToMany => &[
                        "select", "include", "where", "orderBy", "take", "skip", "cursor",
                        "distinct",
                    ],
                    RelationKind::ToOne => &["select", "include"],
                };
                check_keys(m, allowed, ctx)?;
                self.query(target, m, depth, ctx, true)?
            }
            other => {
                return Err(QueryError::BadArgument {
                    context: ctx.to_string(),
                    message: format!("expected true, false or an object, got {}", kind(other)),
                });
            }
        };
        Ok(Some(Load {
            relation: r.clone(),
            query,
        }))
    }

    /// A `where` that names one record: exactly the primary key or a unique
    /// constraint, as `{col: value}` (or `{col: {equals: value}}`), or
    /// Prisma's compound form `{a_b: {a: …, b: …}}`.
    fn unique(
        &self,
        t: &Table,
        j: &Json,
        ctx: &str,
        operation: &str,
    ) -> Result<Unique, QueryError> {
        let Json::Object(m) = j else {
            return Err(QueryError::BadArgument {
                context: ctx.to_string(),
                message: format!("expected an object naming a unique key, got {}", kind(j)),
            });
        };
        let keys: Vec<Vec<String>> = std::iter::once(t.primary_key.clone())
            .chain(t.uniques.iter().cloned())
            .collect();
        let mut pairs: Vec<(usize, Value)> = Vec::new();
        let mut push = |this: &Self, name: &str, v: &Json| -> Result<(), QueryError> {
            let Some((i, c)) = this.column(t, name) else {
                if let Some(r) = t.relation(name) {
                    return Err(unsupported(
                        "relation filters",
                        true,
                        format!("{}.{} in {ctx}{}", t.name, r.name, fk_hint(t, r)),
                    ));
                }
                return Err(unknown_field(t, name));
            };
            let v = match v {
                Json::Object(o) if o.len() == 1 && o.contains_key("equals") => &o["equals"],
                Json::Object(_) if Class::of(&c.ty) != Class::Json => {
                    return Err(QueryError::BadArgument {
                        context: format!("{ctx}.{name}"),
                        message: "a unique where takes plain values (or {\"equals\": value})"
                            .into(),
                    });
                }
                v => v,
            };
            if v.is_null() {
                return Err(QueryError::BadValue {
                    model: t.name.clone(),
                    field: c.name.clone(),
                    ty: c.ty.pg_name.clone(),
                    message: "a unique where cannot match null".into(),
                });
            }
            if !Class::of(&c.ty).equatable() {
                return Err(QueryError::BadArgument {
                    context: format!("{ctx}.{name}"),
                    message: format!("cannot look records up by a {} field", c.ty.pg_name),
                });
            }
            let v = this.filter_value(t, c, v)?;
            pairs.retain(|(j, _)| *j != i);
            pairs.push((i, v));
            Ok(())
        };
        for (k, v) in m {
            if self.column(t, k).is_none()
                && let Some(compound) = keys.iter().find(|key| key.len() > 1 && key.join("_") == *k)
            {
                let Json::Object(parts) = v else {
                    return Err(QueryError::BadArgument {
                        context: format!("{ctx}.{k}"),
                        message: format!(
                            "expected an object with the fields {}, got {}",
                            compound.join(", "),
                            kind(v)
                        ),
                    });
                };
                for (pk, pv) in parts {
                    if !compound.contains(pk) {
                        return Err(QueryError::BadArgument {
                            context: format!("{ctx}.{k}"),
                            message: format!(
                                "{pk:?} is not part of the unique key ({})",
                                compound.join(", ")
                            ),
                        });
                    }
                    push(self, pk, pv)?;
                }
                continue;
            }
            push(self, k, v)?;
        }
        let given: BTreeSet<&str> = pairs
            .iter()
            .map(|(i, _)| t.columns[*i].name.as_str())
            .collect();
        let matches = keys
            .iter()
            .any(|key| key.iter().map(String::as_str).collect::<BTreeSet<_>>() == given);
        if !matches {
            return Err(QueryError::NotUnique {
                model: t.name.clone(),
                operation: operation.to_string(),
                fields: m.keys().cloned().collect(),
                keys,
            });
        }
        pairs.sort_by_key(|(i, _)| *i);
        let (cols, values): (Vec<usize>, Vec<Value>) = pairs.into_iter().unzip();
        Ok(Unique {
            filter: Filter::key(&cols, &values),
            json: j.to_string(),
        })
    }

    fn writable<'t>(
        &self,
        t: &'t Table,
        name: &str,
        ctx: &str,
    ) -> Result<(usize, &'t Column), QueryError> {
        let Some((i, c)) = self.column(t, name) else {
            if let Some(r) = t.relation(name) {
                return Err(unsupported(
                    "nested writes",
                    true,
                    format!("{}.{} in {ctx}{}", t.name, r.name, fk_hint(t, r)),
                ));
            }
            return Err(unknown_field(t, name));
        };
        if c.generated {
            return Err(QueryError::BadArgument {
                context: ctx.to_string(),
                message: format!(
                    "{}.{name} is a generated column and cannot be written",
                    t.name
                ),
            });
        }
        if c.identity == Some(outpost_core::schema::Identity::Always) {
            return Err(QueryError::BadArgument {
                context: ctx.to_string(),
                message: format!(
                    "{}.{name} is GENERATED ALWAYS AS IDENTITY and cannot be written",
                    t.name
                ),
            });
        }
        Ok((i, c))
    }

    fn create_data(&self, t: &Table, j: &Json, ctx: &str) -> Result<Data, QueryError> {
        let Json::Object(m) = j else {
            return Err(QueryError::BadArgument {
                context: ctx.to_string(),
                message: format!("expected an object, got {}", kind(j)),
            });
        };
        let mut data = Vec::with_capacity(m.len());
        for (k, v) in m {
            let (i, c) = self.writable(t, k, ctx)?;
            data.push((i, self.write_value(t, c, v)?));
        }
        data.sort_by_key(|(i, _)| *i);
        Ok(data)
    }

    fn update_data(&self, t: &Table, j: &Json, ctx: &str) -> Result<Vec<Assignment>, QueryError> {
        let Json::Object(m) = j else {
            return Err(QueryError::BadArgument {
                context: ctx.to_string(),
                message: format!("expected an object, got {}", kind(j)),
            });
        };
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            let (i, c) = self.writable(t, k, ctx)?;
            let class = Class::of(&c.ty);
            let op = match v {
                Json::Object(o) if class != Class::Json => {
                    let mut it = o.iter();
                    let (Some((op, arg)), None) = (it.next(), it.next()) else {
                        return Err(QueryError::BadArgument {
                            context: format!("{ctx}.{k}"),
                            message: "expected a value or one operation like {\"set\": value} or {\"increment\": 1}".into(),
                        });
                    };
                    let arithmetic = |this: &Self| -> Result<Value, QueryError> {
                        let fits = matches!(
                            c.ty.scalar,
                            ScalarType::Int2
                                | ScalarType::Int4
                                | ScalarType::Int8
                                | ScalarType::Float8
                        ) && !c.ty.array;
                        if !fits {
                            return Err(
                                if class == Class::Numeric || c.ty.scalar == ScalarType::Float4 {
                                    unsupported(
                                        op,
                                        false,
                                        format!(
                                            "on {} field {}.{k}; read the value and use set",
                                            c.ty.pg_name, t.name
                                        ),
                                    )
                                } else {
                                    QueryError::UnknownOperator {
                                        model: t.name.clone(),
                                        field: k.clone(),
                                        operator: op.clone(),
                                        hint: Some(
                                            "arithmetic applies to number fields; use set".into(),
                                        ),
                                    }
                                },
                            );
                        }
                        if arg.is_null() {
                            return Err(QueryError::BadValue {
                                model: t.name.clone(),
                                field: k.clone(),
                                ty: c.ty.pg_name.clone(),
                                message: format!("{op} needs a number, got null"),
                            });
                        }
                        this.value(t, c, arg)
                    };
                    match op.as_str() {
                        "set" => SetOp::Set(self.write_value(t, c, arg)?),
                        "increment" => SetOp::Increment(arithmetic(self)?),
                        "decrement" => SetOp::Decrement(arithmetic(self)?),
                        "multiply" => SetOp::Multiply(arithmetic(self)?),
                        "divide" => {
                            let v = arithmetic(self)?;
                            if matches!(v, Value::Int(0))
                                || matches!(v, Value::Float(f) if f == 0.0)
                            {
                                return Err(QueryError::BadValue {
                                    model: t.name.clone(),
                                    field: k.clone(),
                                    ty: c.ty.pg_name.clone(),
                                    message: "division by zero".into(),
                                });
                            }
                            SetOp::Divide(v)
                        }
                        other => {
                            return Err(QueryError::UnknownOperator {
                                model: t.name.clone(),
                                field: k.clone(),
                                operator: other.to_string(),
                                hint: Some("update operations: set, increment, decrement, multiply, divide".into()),
                            });
                        }
                    }
                }
                v => SetOp::Set(self.write_value(t, c, v)?),
            };
            out.push(Assignment { column: i, op });
        }
        out.sort_by_key(|a| a.column);
        Ok(out)
    }
}

fn shown(j: &Json) -> String {
    let mut s = j.to_string();
    if s.len() > 60 {
        let mut end = 60;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    format!("{} {s}", kind(j))
}
