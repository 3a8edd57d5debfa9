//! Parsing and checking a request's JSON arguments against the schema into
//! a [`Plan`]: every model, field, relation and operator name must be the
//! schema's (which is what keeps identifiers out of reach of injection),
//! every value is read with `Value::from_json` for its column's type, and
//! anything unsupported is refused with an error that names it.

use outpost_core::schema::{Column, Relation, Schema, Table};
use outpost_core::types::{ColumnType, ScalarType, Value};
use serde_json::{Map, Value as Json};

use crate::Operation;
use crate::error::QueryError;
use crate::text::apply_typmod;

// The parser's methods by concern; `Parser` and the plan's types are here.
mod filter;
mod read;
mod write;

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
