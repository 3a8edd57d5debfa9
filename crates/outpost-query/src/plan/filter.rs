//! `where` filters: `AND`/`OR`/`NOT` and the per-field operators, each
//! checked against the column's type class (a relation named in a filter is
//! refused with a hint at its foreign-key field).

use outpost_core::schema::{Column, Table};
use outpost_core::types::Value;
use serde_json::Value as Json;

use super::{
    Class, Filter, Leaf, MAX_NESTING, Op, Parser, fk_hint, kind, shown, unknown_field, unsupported,
};
use crate::error::QueryError;

impl Parser<'_> {
    pub(super) fn filter_arg(
        &self,
        t: &Table,
        j: Option<&Json>,
        ctx: &str,
    ) -> Result<Filter, QueryError> {
        match j {
            None | Some(Json::Null) => Ok(Filter::always()),
            Some(j) => self.filter(t, j, 0, &format!("{ctx} where")),
        }
    }

    pub(super) fn filter(
        &self,
        t: &Table,
        j: &Json,
        depth: usize,
        ctx: &str,
    ) -> Result<Filter, QueryError> {
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
    pub(super) fn field_filter(
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
    pub(super) fn filter_value(
        &self,
        t: &Table,
        c: &Column,
        j: &Json,
    ) -> Result<Value, QueryError> {
        let v = self.value(t, c, j)?;
        Ok(match (Class::of(&c.ty), v) {
            (Class::Char, Value::Text(s)) => Value::Text(s.trim_end_matches(' ').to_string()),
            (_, v) => v,
        })
    }
}
