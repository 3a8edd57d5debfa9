//! `outpost generate typescript`: TypeScript types of the node's models in
//! the style of Prisma's generated client (`Post`, `PostWhereInput`,
//! `PostInclude`, `PostCreateInput`, …), for the `outpost-client` package.
//!
//! The file registers the models with the client (`declare module
//! 'outpost-client' { interface Register { models: Models } }`), so that
//! `useModelService('Post').findMany({ include: { user: true } })` returns
//! `(Post & { user: User | null })[]` with no type argument. Types follow the
//! JSON forms of docs/types.md: what the HTTP API really sends and takes.

use std::fmt::Write as _;

use outpost_core::schema::{Column, RelationKind, Schema, Table};
use outpost_core::types::{ColumnType, ScalarType};

/// Whether `s` can be written bare as a TypeScript identifier.
fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A property name: bare when it can be, else a string literal.
fn prop(s: &str) -> String {
    if is_ident(s) { s.to_string() } else { lit(s) }
}

/// A string literal (JSON's escaping is valid TypeScript).
fn lit(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A type name made from a model or enum name: invalid characters become `_`.
fn type_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The element type of a column's JSON form, as read.
fn scalar_ts(schema: &Schema, s: &ScalarType) -> String {
    match s {
        ScalarType::Bool => "boolean".into(),
        // Non-finite floats arrive as the strings "NaN", "Infinity" (docs/types.md).
        ScalarType::Int2 | ScalarType::Int4 | ScalarType::Float4 | ScalarType::Float8 => {
            "number".into()
        }
        // Beyond 2^53 a bigint is a string, to stay exact.
        ScalarType::Int8 => "number | string".into(),
        ScalarType::Json | ScalarType::Jsonb => "JsonValue".into(),
        ScalarType::Enum(name) => match schema.enum_type(name) {
            Some(_) => type_name(name),
            None => "string".into(),
        },
        _ => "string".into(),
    }
}

fn column_ts(schema: &Schema, ty: &ColumnType, input: bool) -> String {
    let mut t = scalar_ts(schema, &ty.scalar);
    if input && ty.scalar == ScalarType::Timestamptz {
        // `new Date()` serialises as ISO-8601 with `Z`, which the node takes.
        t = "string | Date".into();
    }
    if ty.array {
        format!("Array<{t} | null>")
    } else {
        t
    }
}

fn field_ts(schema: &Schema, c: &Column, input: bool) -> String {
    let t = column_ts(schema, &c.ty, input);
    if c.nullable { format!("{t} | null") } else { t }
}

/// The filter type of a column in `where`.
fn filter_ts(schema: &Schema, c: &Column) -> String {
    let t = column_ts(schema, &c.ty, true);
    let base = if c.ty.array || matches!(c.ty.scalar, ScalarType::Json | ScalarType::Jsonb) {
        // Only null tests (see the query layer's allowed operators).
        return "null | NullFilter".into();
    } else if matches!(
        c.ty.scalar,
        ScalarType::Text | ScalarType::Varchar | ScalarType::Char
    ) {
        format!("StringFilter<{t}>")
    } else {
        format!("Filter<{t}>")
    };
    if c.nullable {
        format!("{t} | null | {base}")
    } else {
        format!("{t} | {base}")
    }
}

/// Whether a create may leave the column out: the database or the node
/// fills it (a default, an identity or sequence, a generated column, a
/// text/uuid primary key, which the node fills with a UUIDv7), or it may be null.
fn optional_on_create(t: &Table, c: &Column) -> bool {
    c.nullable
        || c.default.is_some()
        || c.identity.is_some()
        || c.generated
        || (t.primary_key.len() == 1
            && t.primary_key[0] == c.name
            && matches!(
                c.ty.scalar,
                ScalarType::Text | ScalarType::Varchar | ScalarType::Uuid
            ))
}

fn numeric(ty: &ColumnType) -> bool {
    !ty.array
        && matches!(
            ty.scalar,
            ScalarType::Int2
                | ScalarType::Int4
                | ScalarType::Int8
                | ScalarType::Float4
                | ScalarType::Float8
                | ScalarType::Numeric
        )
}

const PRELUDE: &str = r#"import type { SyncStatus } from 'outpost-client';

export type { SyncStatus };

/** A JSON value, as `json`/`jsonb` columns hold it. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export type SortOrder = 'asc' | 'desc';
export type QueryMode = 'default' | 'insensitive';

/** Tests on a column that can only be tested for null. */
export interface NullFilter {
  equals?: null;
  not?: null;
}

/** Prisma's scalar filter. */
export interface Filter<T> {
  equals?: T | null;
  not?: T | null | Filter<T>;
  in?: T[];
  notIn?: T[];
  lt?: T;
  lte?: T;
  gt?: T;
  gte?: T;
}

/** Prisma's string filter. */
export interface StringFilter<T = string> extends Filter<T> {
  contains?: string;
  startsWith?: string;
  endsWith?: string;
  mode?: QueryMode;
  not?: T | null | StringFilter<T>;
}

/** An update of a number: a value, or Prisma's atomic operations. */
export type NumberUpdate<T> = T | { set?: T; increment?: T; decrement?: T; multiply?: T; divide?: T };
/** An update of any other column. */
export type FieldUpdate<T> = T | { set?: T };
"#;

/// The TypeScript file for `schema`.
pub fn typescript(schema: &Schema) -> String {
    let mut out = String::new();
    out.push_str(
        "// Generated by `outpost generate typescript` from the node's schema. Do not edit:\n\
         // run the command again after the server's schema changed.\n\n",
    );
    out.push_str(PRELUDE);
    for e in &schema.enums {
        let labels: Vec<String> = e.labels.iter().map(|l| lit(l)).collect();
        let _ = writeln!(
            out,
            "\nexport type {} = {};",
            type_name(&e.name),
            if labels.is_empty() {
                "never".into()
            } else {
                labels.join(" | ")
            }
        );
    }
    for t in &schema.tables {
        model(&mut out, schema, t);
    }
    out.push_str(
        "\n/** Every model's types, for the client's typing. */\nexport interface Models {\n",
    );
    for t in &schema.tables {
        let n = type_name(&t.name);
        let _ = writeln!(
            out,
            "  {}: {{\n    record: {n};\n    where: {n}WhereInput;\n    whereUnique: {n}WhereUniqueInput;\n    orderBy: {n}OrderByInput;\n    select: {n}Select;\n    include: {n}Include;\n    create: {n}CreateInput;\n    update: {n}UpdateInput;\n    scalarField: {n}ScalarField;\n    relations: {{",
            prop(&t.name)
        );
        for r in &t.relations {
            let nullable = match r.kind {
                RelationKind::ToMany => false,
                // The child's side is null when its foreign key columns may be.
                RelationKind::ToOne if r.owns_foreign_key => r
                    .local_columns
                    .iter()
                    .any(|c| t.column(c).is_none_or(|c| c.nullable)),
                RelationKind::ToOne => true,
            };
            let _ = writeln!(
                out,
                "      {}: {{ model: {}; list: {}; nullable: {} }};",
                prop(&r.name),
                lit(&r.target),
                r.kind == RelationKind::ToMany,
                nullable
            );
        }
        out.push_str("    };\n  };\n");
    }
    out.push_str("}\n\ndeclare module 'outpost-client' {\n  interface Register {\n    models: Models;\n  }\n}\n");
    out
}

fn model(out: &mut String, schema: &Schema, t: &Table) {
    let n = type_name(&t.name);
    let _ = writeln!(out, "\n// ---- {} ----\n", t.name);
    // The record.
    let _ = writeln!(
        out,
        "/** A `{}` record. */\nexport interface {n} {{",
        t.name
    );
    for c in &t.columns {
        let _ = writeln!(out, "  {}: {};", prop(&c.name), field_ts(schema, c, false));
    }
    out.push_str("  /** On records read from the replica: where the row stands in the sync. */\n  syncStatus?: SyncStatus;\n}\n");
    // Field names.
    let names: Vec<String> = t.columns.iter().map(|c| lit(&c.name)).collect();
    let _ = writeln!(
        out,
        "\nexport type {n}ScalarField = {};",
        if names.is_empty() {
            "never".into()
        } else {
            names.join(" | ")
        }
    );
    // where
    let _ = writeln!(out, "\nexport interface {n}WhereInput {{");
    let _ = writeln!(
        out,
        "  AND?: {n}WhereInput | {n}WhereInput[];\n  OR?: {n}WhereInput[];\n  NOT?: {n}WhereInput | {n}WhereInput[];"
    );
    for c in &t.columns {
        let _ = writeln!(out, "  {}?: {};", prop(&c.name), filter_ts(schema, c));
    }
    out.push_str("}\n");
    // where (unique): the primary key or one unique set, whole.
    let mut sets: Vec<&Vec<String>> = Vec::new();
    if !t.primary_key.is_empty() {
        sets.push(&t.primary_key);
    }
    sets.extend(t.uniques.iter().filter(|u| **u != t.primary_key));
    let alternatives: Vec<String> = sets
        .iter()
        .map(|set| {
            let fields: Vec<String> = set
                .iter()
                .filter_map(|name| t.column(name))
                .map(|c| format!("{}: {}", prop(&c.name), column_ts(schema, &c.ty, true)))
                .collect();
            format!("{{ {} }}", fields.join("; "))
        })
        .collect();
    let _ = writeln!(
        out,
        "\nexport type {n}WhereUniqueInput = ({}) & {n}WhereInput;",
        if alternatives.is_empty() {
            "never".into()
        } else {
            alternatives.join(" | ")
        }
    );
    // orderBy
    let _ = writeln!(out, "\nexport interface {n}OrderByInput {{");
    for c in &t.columns {
        let _ = writeln!(out, "  {}?: SortOrder;", prop(&c.name));
    }
    out.push_str("}\n");
    let _ = writeln!(
        out,
        "/** Prisma's name for the same type. */\nexport type {n}OrderByWithRelationInput = {n}OrderByInput;"
    );
    // The arguments of an included relation.
    let _ = writeln!(
        out,
        "\n/** What an `include` or `select` of a `{}` relation may say. */\nexport interface {n}Args {{\n  select?: {n}Select;\n  include?: {n}Include;\n  where?: {n}WhereInput;\n  orderBy?: {n}OrderByInput | {n}OrderByInput[];\n  take?: number;\n  skip?: number;\n}}",
        t.name
    );
    // select and include
    let _ = writeln!(out, "\nexport interface {n}Select {{");
    for c in &t.columns {
        let _ = writeln!(out, "  {}?: boolean;", prop(&c.name));
    }
    for r in &t.relations {
        let _ = writeln!(
            out,
            "  {}?: boolean | {}Args;",
            prop(&r.name),
            type_name(&r.target)
        );
    }
    out.push_str("}\n");
    let _ = writeln!(out, "\nexport interface {n}Include {{");
    for r in &t.relations {
        let _ = writeln!(
            out,
            "  {}?: boolean | {}Args;",
            prop(&r.name),
            type_name(&r.target)
        );
    }
    out.push_str("}\n");
    // create and update
    let _ = writeln!(out, "\nexport interface {n}CreateInput {{");
    for c in t.columns.iter().filter(|c| !c.generated) {
        let _ = writeln!(
            out,
            "  {}{}: {};",
            prop(&c.name),
            if optional_on_create(t, c) { "?" } else { "" },
            field_ts(schema, c, true)
        );
    }
    out.push_str("}\n");
    let _ = writeln!(out, "\nexport interface {n}UpdateInput {{");
    for c in t.columns.iter().filter(|c| !c.generated) {
        let v = field_ts(schema, c, true);
        let _ = writeln!(
            out,
            "  {}?: {}<{v}>;",
            prop(&c.name),
            if numeric(&c.ty) {
                "NumberUpdate"
            } else {
                "FieldUpdate"
            },
        );
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_typescript() {
        assert_eq!(prop("userId"), "userId");
        assert_eq!(prop("user id"), "\"user id\"");
        assert_eq!(prop("2fa"), "\"2fa\"");
        assert_eq!(type_name("order-line"), "order_line");
        assert_eq!(type_name("2fa"), "_2fa");
        assert_eq!(lit("a\"b"), "\"a\\\"b\"");
    }
}
