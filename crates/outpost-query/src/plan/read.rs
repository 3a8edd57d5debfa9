//! The read arguments: `where`, `orderBy`, `cursor`, `take`, `skip`, and the
//! `select`/`include` shape with the relations it loads.

use std::collections::BTreeSet;

use outpost_core::schema::{Relation, RelationKind, Table};
use serde_json::{Map, Value as Json};

use super::{
    Class, Load, MAX_NESTING, OrderKey, Parser, Query, Shape, check_keys, kind, shown,
    unknown_field, unsupported,
};
use crate::error::QueryError;

impl Parser<'_> {
    /// `where`, `orderBy`, `cursor`, `take`, `skip`, `select`/`include` of a
    /// read (`window`: `findMany`-style paging allowed).
    pub(super) fn query(
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

    pub(super) fn order(
        &self,
        t: &Table,
        j: &Json,
        ctx: &str,
    ) -> Result<Vec<OrderKey>, QueryError> {
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
    pub(super) fn shape(
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
    pub(super) fn load(
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
}
