//! The write arguments: a `where` that names one record (primary key or a
//! unique constraint), the writable fields, and `data` for a create or an
//! update (with the arithmetic set operations).

use std::collections::BTreeSet;

use outpost_core::schema::{Column, Table};
use outpost_core::types::{ScalarType, Value};
use serde_json::Value as Json;

use super::{
    Assignment, Class, Data, Filter, Parser, SetOp, Unique, fk_hint, kind, unknown_field,
    unsupported,
};
use crate::error::QueryError;

impl Parser<'_> {
    /// A `where` that names one record: exactly the primary key or a unique
    /// constraint, as `{col: value}` (or `{col: {equals: value}}`), or
    /// Prisma's compound form `{a_b: {a: …, b: …}}`.
    pub(super) fn unique(
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

    pub(super) fn writable<'t>(
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

    pub(super) fn create_data(&self, t: &Table, j: &Json, ctx: &str) -> Result<Data, QueryError> {
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

    pub(super) fn update_data(
        &self,
        t: &Table,
        j: &Json,
        ctx: &str,
    ) -> Result<Vec<Assignment>, QueryError> {
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
