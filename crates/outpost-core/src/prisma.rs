//! The application's Prisma schema (`schema.prisma`): the names the
//! application's code uses and the values Prisma's client fills itself.
//!
//! PostgreSQL stays the source of truth for tables, columns and keys; the
//! Prisma schema adds what exists only in the application: model and field
//! names (`@@map`, `@map`), relation field names and which side holds the
//! foreign key (`@relation(fields, references)`), enum names, and the
//! client-side defaults `cuid()`, `uuid()`, `nanoid()`, `now()` and
//! `@updatedAt` that no database default carries.
//!
//! # Why a small winnow grammar
//!
//! Prisma's own parser (`psl`, in the prisma-engines repository) is not
//! published on crates.io; the crates there that carry a copy are one-off
//! forks or parse a different dialect. The language outpost needs is small
//! (blocks of fields with attributes whose arguments are strings, numbers,
//! lists, identifiers and function calls), so it is parsed here with
//! `winnow`, a well-kept parser-combinator crate already in the dependency
//! tree. The parse is checked against Prisma's own schema engine (its DMMF)
//! on a corpus of schemas: `scripts/prisma-check`.
//!
//! Only what outpost uses is kept; `datasource`, `generator`, `view` and
//! `type` blocks are parsed and skipped, comments are ignored.

use std::fmt;

use winnow::ascii::{digit1, multispace1};
use winnow::combinator::{alt, cut_err, delimited, opt, preceded, repeat, separated};
use winnow::error::{ContextError, ErrMode, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{any, none_of, take_till, take_while};

/// A parsed `schema.prisma`: its models and enums in declaration order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrismaSchema {
    /// `model` blocks.
    pub models: Vec<Model>,
    /// `enum` blocks.
    pub enums: Vec<Enum>,
}

/// A `model` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The name the application uses (`Post`).
    pub name: String,
    /// `@@map("posts")`: the table's name when it differs.
    pub db_name: Option<String>,
    /// Fields in declaration order.
    pub fields: Vec<Field>,
    /// Primary-key fields (`@id` or `@@id([a, b])`), in key order.
    pub primary_key: Vec<String>,
    /// `@@unique([a, b])` lists (a field's own `@unique` is [`Field::unique`]).
    pub uniques: Vec<Vec<String>>,
}

/// What kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A scalar (`String`, `DateTime`, …, `Unsupported(…)`).
    Scalar,
    /// One of the schema's enums.
    Enum,
    /// A relation field: another model.
    Object,
}

/// A field of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The name the application uses.
    pub name: String,
    /// `@map("col")`: the column's name when it differs.
    pub db_name: Option<String>,
    /// The type's name (`String`, `DateTime`, `Role`, `User`).
    pub ty: String,
    /// Scalar, enum or relation.
    pub kind: FieldKind,
    /// `Type?`.
    pub optional: bool,
    /// `Type[]`.
    pub list: bool,
    /// `@id` on the field.
    pub id: bool,
    /// `@unique` on the field.
    pub unique: bool,
    /// `@default(…)`.
    pub default: Option<Default>,
    /// `@updatedAt`.
    pub updated_at: bool,
    /// `@db.Timestamp(3)` gives `("Timestamp", ["3"])`.
    pub native_type: Option<(String, Vec<String>)>,
    /// `@relation(…)` on a relation field (also implied when absent).
    pub relation: Option<RelationAttr>,
}

impl Field {
    /// The column's name: `@map` or the field's own name.
    pub fn column(&self) -> &str {
        self.db_name.as_deref().unwrap_or(&self.name)
    }
}

impl Model {
    /// The table's name: `@@map` or the model's own name.
    pub fn table(&self) -> &str {
        self.db_name.as_deref().unwrap_or(&self.name)
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// `@relation("Name", fields: [a], references: [b])`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelationAttr {
    /// The relation's name as written (`"Author"`), if any.
    pub name: Option<String>,
    /// Fields of this model holding the foreign key (the owning side).
    pub fields: Vec<String>,
    /// Fields of the other model they refer to.
    pub references: Vec<String>,
}

/// A field's `@default(…)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    /// `cuid()` (version 1) or `cuid(2)`: filled by the client.
    Cuid(u8),
    /// `uuid()` (version 4) or `uuid(7)`: filled by the client.
    Uuid(u8),
    /// `nanoid()` (21 characters, `None`) or `nanoid(n)`: filled by the
    /// client.
    Nanoid(Option<u32>),
    /// `now()`: the client's clock.
    Now,
    /// `autoincrement()`: the database's sequence.
    Autoincrement,
    /// `dbgenerated("…")`: the database's default expression.
    DbGenerated(Option<String>),
    /// `sequence()` (CockroachDB).
    Sequence,
    /// A constant: a string, number, boolean, enum value or list, as written
    /// in the schema (strings unquoted).
    Value(String),
}

impl Default {
    /// Whether Prisma's client computes the value (it exists nowhere in
    /// the database, so outpost must fill it for a create).
    pub fn client_side(&self) -> bool {
        matches!(
            self,
            Default::Cuid(_) | Default::Uuid(_) | Default::Nanoid(_) | Default::Now
        )
    }
}

/// An `enum` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Enum {
    /// The name the application uses.
    pub name: String,
    /// `@@map("role")`: the PostgreSQL type's name when it differs.
    pub db_name: Option<String>,
    /// Values in declaration order: the name and its `@map`.
    pub values: Vec<(String, Option<String>)>,
}

/// A schema that could not be read: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What was expected.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

// ---- the grammar ------------------------------------------------------------

/// An attribute argument's value.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Str(String),
    Num(String),
    Ident(String),
    List(Vec<Expr>),
    Call(String, Vec<Arg>),
}

#[derive(Debug, Clone, PartialEq)]
struct Arg {
    name: Option<String>,
    value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
struct Attribute {
    /// Without the `@`/`@@`; `db.Timestamp` keeps its dot.
    name: String,
    args: Vec<Arg>,
}

enum Line {
    Field {
        name: String,
        ty: String,
        optional: bool,
        list: bool,
        attributes: Vec<Attribute>,
    },
    BlockAttribute(Attribute),
}

type In<'a> = &'a str;

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

/// Whitespace and comments (`//`, `///`, `/* */` is not Prisma).
fn ws(input: &mut In<'_>) -> ModalResult<()> {
    repeat(
        0..,
        alt((multispace1.void(), ("//", take_till(0.., ['\n'])).void())),
    )
    .parse_next(input)
}

fn ident(input: &mut In<'_>) -> ModalResult<String> {
    (
        take_while(1, |c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '_' || c == '-'
        }),
    )
        .take()
        .map(str::to_string)
        .context(expected("a name"))
        .parse_next(input)
}

/// A dotted name (`db.Timestamp`).
fn path(input: &mut In<'_>) -> ModalResult<String> {
    separated(1.., ident, '.')
        .map(|parts: Vec<String>| parts.join("."))
        .parse_next(input)
}

fn string(input: &mut In<'_>) -> ModalResult<String> {
    let body = repeat(
        0..,
        alt((
            preceded('\\', any).map(|c: char| match c {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            }),
            none_of(['"', '\\', '\n']),
        )),
    )
    .fold(String::new, |mut s, c| {
        s.push(c);
        s
    });
    delimited('"', body, cut_err('"'))
        .context(expected("a string"))
        .parse_next(input)
}

fn number(input: &mut In<'_>) -> ModalResult<String> {
    (opt('-'), digit1, opt(('.', digit1)))
        .take()
        .map(str::to_string)
        .parse_next(input)
}

fn expr(input: &mut In<'_>) -> ModalResult<Expr> {
    alt((
        string.map(Expr::Str),
        number.map(Expr::Num),
        delimited(
            ('[', ws),
            separated(0.., terminated_ws(expr), (',', ws)),
            (opt((',', ws)), cut_err(']')),
        )
        .map(Expr::List),
        (path, opt(args)).map(|(name, args)| match args {
            Some(args) => Expr::Call(name, args),
            None => Expr::Ident(name),
        }),
    ))
    .context(expected("a value"))
    .parse_next(input)
}

fn terminated_ws<'a, O>(
    mut p: impl Parser<In<'a>, O, ErrMode<ContextError>>,
) -> impl Parser<In<'a>, O, ErrMode<ContextError>> {
    move |input: &mut In<'a>| {
        let o = p.parse_next(input)?;
        ws.parse_next(input)?;
        Ok(o)
    }
}

fn arg(input: &mut In<'_>) -> ModalResult<Arg> {
    let name = opt(winnow::combinator::terminated(ident, (ws, ':', ws))).parse_next(input)?;
    let value = expr.parse_next(input)?;
    ws.parse_next(input)?;
    Ok(Arg { name, value })
}

/// `(a, name: b)`.
fn args(input: &mut In<'_>) -> ModalResult<Vec<Arg>> {
    delimited(
        ('(', ws),
        separated(0.., arg, (',', ws)),
        (opt((',', ws)), cut_err(')')),
    )
    .parse_next(input)
}

fn attribute(input: &mut In<'_>) -> ModalResult<Attribute> {
    let name = path.parse_next(input)?;
    let args = opt(args).parse_next(input)?.unwrap_or_default();
    Ok(Attribute { name, args })
}

/// One line of a model or enum body.
fn line(input: &mut In<'_>) -> ModalResult<Line> {
    if let Some(a) = opt(preceded("@@", cut_err(attribute))).parse_next(input)? {
        return Ok(Line::BlockAttribute(a));
    }
    let name = ident.parse_next(input)?;
    // Enum values have no type; fields have one after spaces (not a newline).
    let _ = take_while(0.., [' ', '\t']).parse_next(input)?;
    let ty = opt(alt((
        ("Unsupported", '(', string, ')').take().map(str::to_string),
        path,
    )))
    .parse_next(input)?
    .unwrap_or_default();
    let list = opt("[]").parse_next(input)?.is_some();
    let optional = opt('?').parse_next(input)?.is_some();
    let mut attributes = Vec::new();
    loop {
        let _ = take_while(0.., [' ', '\t']).parse_next(input)?;
        if input.starts_with("@@") || !input.starts_with('@') {
            break;
        }
        '@'.parse_next(input)?;
        attributes.push(cut_err(attribute).parse_next(input)?);
    }
    Ok(Line::Field {
        name,
        ty,
        optional,
        list,
        attributes,
    })
}

/// `keyword Name { lines }`.
fn block(input: &mut In<'_>) -> ModalResult<(String, String, Vec<Line>)> {
    let keyword = ident
        .verify(|k: &String| {
            matches!(
                k.as_str(),
                "model" | "enum" | "datasource" | "generator" | "view" | "type"
            )
        })
        .parse_next(input)?;
    ws.parse_next(input)?;
    let name = cut_err(ident).parse_next(input)?;
    ws.parse_next(input)?;
    cut_err('{').context(expected("`{`")).parse_next(input)?;
    ws.parse_next(input)?;
    let mut lines = Vec::new();
    if matches!(keyword.as_str(), "datasource" | "generator") {
        // `key = value` settings: skipped.
        loop {
            if opt('}').parse_next(input)?.is_some() {
                return Ok((keyword, name, lines));
            }
            cut_err((ident, ws, '=', ws, expr, ws))
                .context(expected("`key = value` or `}`"))
                .parse_next(input)?;
        }
    }
    loop {
        if opt('}').parse_next(input)?.is_some() {
            return Ok((keyword, name, lines));
        }
        lines.push(
            cut_err(line)
                .context(expected("a field, `@@attribute` or `}`"))
                .parse_next(input)?,
        );
        ws.parse_next(input)?;
    }
}

fn blocks(input: &mut In<'_>) -> ModalResult<Vec<(String, String, Vec<Line>)>> {
    ws.parse_next(input)?;
    let blocks = repeat(0.., terminated_ws(block)).parse_next(input)?;
    winnow::combinator::eof
        .context(expected(
            "`model`, `enum`, `view`, `type`, `datasource` or `generator`",
        ))
        .parse_next(input)?;
    Ok(blocks)
}

// ---- from the grammar to the schema ------------------------------------------

fn str_arg(args: &[Arg], name: Option<&str>) -> Option<String> {
    let a = match name {
        Some(n) => args.iter().find(|a| a.name.as_deref() == Some(n)),
        None => args.iter().find(|a| a.name.is_none()),
    }?;
    match &a.value {
        Expr::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn names(e: &Expr) -> Vec<String> {
    match e {
        Expr::List(items) => items
            .iter()
            .filter_map(|i| match i {
                Expr::Ident(n) => Some(n.clone()),
                // `@@id([a(sort: Desc)])`.
                Expr::Call(n, _) => Some(n.clone()),
                _ => None,
            })
            .collect(),
        Expr::Ident(n) => vec![n.clone()],
        _ => Vec::new(),
    }
}

fn list_arg(args: &[Arg], name: &str) -> Vec<String> {
    args.iter()
        .find(|a| a.name.as_deref() == Some(name))
        .or_else(|| args.iter().find(|a| a.name.is_none()))
        .map(|a| names(&a.value))
        .unwrap_or_default()
}

fn render(e: &Expr) -> String {
    match e {
        Expr::Str(s) | Expr::Num(s) | Expr::Ident(s) => s.clone(),
        Expr::List(items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        Expr::Call(n, args) => format!(
            "{n}({})",
            args.iter()
                .map(|a| render(&a.value))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn default_of(args: &[Arg]) -> Result<Default, String> {
    let Some(first) = args.first() else {
        return Err("@default needs a value".into());
    };
    let int = |args: &[Arg]| match args.first().map(|a| &a.value) {
        Some(Expr::Num(n)) => n.parse::<u32>().ok(),
        _ => None,
    };
    Ok(match &first.value {
        Expr::Call(name, a) => match name.as_str() {
            "cuid" => Default::Cuid(int(a).unwrap_or(1) as u8),
            "uuid" => Default::Uuid(int(a).unwrap_or(4) as u8),
            "nanoid" => Default::Nanoid(int(a)),
            "now" => Default::Now,
            "autoincrement" => Default::Autoincrement,
            "sequence" => Default::Sequence,
            "dbgenerated" => Default::DbGenerated(str_arg(a, None)),
            other => {
                return Err(format!(
                    "@default({other}()) is not a Prisma default function"
                ));
            }
        },
        other => Default::Value(render(other)),
    })
}

/// Reads a `schema.prisma`.
pub fn parse(text: &str) -> Result<PrismaSchema, ParseError> {
    let mut input = text;
    let blocks = blocks.parse_next(&mut input).map_err(|e| {
        let consumed = text.len() - input.len();
        let before = &text[..consumed];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let message = match e {
            ErrMode::Backtrack(c) | ErrMode::Cut(c) => {
                let s = c.to_string();
                if s.is_empty() {
                    "unexpected text".to_string()
                } else {
                    s
                }
            }
            ErrMode::Incomplete(_) => "unexpected end".to_string(),
        };
        ParseError {
            line,
            column,
            message,
        }
    })?;
    let at = |message: String| ParseError {
        line: 0,
        column: 0,
        message,
    };
    let mut schema = PrismaSchema::default();
    for (keyword, name, lines) in blocks {
        match keyword.as_str() {
            "model" => {
                let mut model = Model {
                    name,
                    db_name: None,
                    fields: Vec::new(),
                    primary_key: Vec::new(),
                    uniques: Vec::new(),
                };
                for l in lines {
                    match l {
                        Line::BlockAttribute(a) => match a.name.as_str() {
                            "map" => model.db_name = str_arg(&a.args, None),
                            "id" => model.primary_key = list_arg(&a.args, "fields"),
                            "unique" => model.uniques.push(list_arg(&a.args, "fields")),
                            _ => {}
                        },
                        Line::Field {
                            name,
                            ty,
                            optional,
                            list,
                            attributes,
                        } => {
                            if ty.is_empty() {
                                return Err(at(format!("field {}.{name} has no type", model.name)));
                            }
                            let mut field = Field {
                                name,
                                db_name: None,
                                ty,
                                kind: FieldKind::Scalar,
                                optional,
                                list,
                                id: false,
                                unique: false,
                                default: None,
                                updated_at: false,
                                native_type: None,
                                relation: None,
                            };
                            for a in attributes {
                                match a.name.as_str() {
                                    "map" => field.db_name = str_arg(&a.args, None),
                                    "id" => field.id = true,
                                    "unique" => field.unique = true,
                                    "updatedAt" => field.updated_at = true,
                                    "default" => {
                                        field.default = Some(default_of(&a.args).map_err(|e| {
                                            at(format!("{}.{}: {e}", model.name, field.name))
                                        })?)
                                    }
                                    "relation" => {
                                        field.relation = Some(RelationAttr {
                                            name: str_arg(&a.args, None)
                                                .or_else(|| str_arg(&a.args, Some("name"))),
                                            fields: a
                                                .args
                                                .iter()
                                                .find(|x| x.name.as_deref() == Some("fields"))
                                                .map(|x| names(&x.value))
                                                .unwrap_or_default(),
                                            references: a
                                                .args
                                                .iter()
                                                .find(|x| x.name.as_deref() == Some("references"))
                                                .map(|x| names(&x.value))
                                                .unwrap_or_default(),
                                        })
                                    }
                                    n if n.starts_with("db.") => {
                                        field.native_type = Some((
                                            n["db.".len()..].to_string(),
                                            a.args.iter().map(|x| render(&x.value)).collect(),
                                        ))
                                    }
                                    _ => {}
                                }
                            }
                            if field.id {
                                model.primary_key = vec![field.name.clone()];
                            }
                            model.fields.push(field);
                        }
                    }
                }
                schema.models.push(model);
            }
            "enum" => {
                let mut e = Enum {
                    name,
                    db_name: None,
                    values: Vec::new(),
                };
                for l in lines {
                    match l {
                        Line::BlockAttribute(a) if a.name == "map" => {
                            e.db_name = str_arg(&a.args, None)
                        }
                        Line::BlockAttribute(_) => {}
                        Line::Field {
                            name, attributes, ..
                        } => {
                            let mapped = attributes
                                .iter()
                                .find(|a| a.name == "map")
                                .and_then(|a| str_arg(&a.args, None));
                            e.values.push((name, mapped));
                        }
                    }
                }
                schema.enums.push(e);
            }
            // Settings, views and composite types: nothing outpost uses.
            _ => {}
        }
    }
    // Field kinds need every block's name.
    let models: Vec<String> = schema.models.iter().map(|m| m.name.clone()).collect();
    let enums: Vec<String> = schema.enums.iter().map(|e| e.name.clone()).collect();
    for m in &mut schema.models {
        for f in &mut m.fields {
            if models.contains(&f.ty) {
                f.kind = FieldKind::Object;
                f.relation.get_or_insert_with(RelationAttr::default);
            } else if enums.contains(&f.ty) {
                f.kind = FieldKind::Enum;
            }
        }
    }
    Ok(schema)
}

impl PrismaSchema {
    /// The model named `name`.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The relation's name as Prisma names it: the `@relation` name, or
    /// the two models' names in sorted order joined with `To`
    /// (`PostToUser`).
    pub fn relation_name(&self, model: &Model, field: &Field) -> String {
        if let Some(n) = field.relation.as_ref().and_then(|r| r.name.clone()) {
            return n;
        }
        let mut pair = [model.name.as_str(), field.ty.as_str()];
        pair.sort();
        format!("{}To{}", pair[0], pair[1])
    }

    /// The relation field on the other side of `field` (a relation field of
    /// `model`): the field of the other model with the same relation name.
    pub fn opposite<'a>(&'a self, model: &Model, field: &Field) -> Option<(&'a Model, &'a Field)> {
        let name = self.relation_name(model, field);
        let other = self.model(&field.ty)?;
        other
            .fields
            .iter()
            .find(|f| {
                f.kind == FieldKind::Object
                    && f.ty == model.name
                    && !(other.name == model.name && f.name == field.name)
                    && self.relation_name(other, f) == name
            })
            .map(|f| (other, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_prisma_6_schema_with_settings_comments_and_other_blocks() {
        let s = parse(
            r#"
// comment
datasource db {
  provider  = "postgresql"
  url       = env("DATABASE_URL")
  directUrl = env("DIRECT_URL")
  extensions = [pgcrypto, citext(schema: "public")]
}
generator client {
  provider        = "prisma-client-js"
  previewFeatures = ["views", "postgresqlExtensions"]
  binaryTargets   = ["native", "debian-openssl-3.0.x"]
}
/// A user.
model User {
  id    String  @id @default(dbgenerated("gen_random_uuid()")) @db.Uuid
  geo   Unsupported("geometry")?
  tags  String[] @default(["a", "b"])
  kind  Kind    @default(A)
  posts Post[]  @relation(name: "UserPosts")
  @@index([tags], type: Gin)
  @@schema("public")
}
model Post {
  id     Int  @id @default(autoincrement())
  userId String @db.Uuid
  user   User @relation(name: "UserPosts", fields: [userId], references: [id], onDelete: Cascade)
}
view Active {
  id String @unique
}
type Address {
  street String
}
enum Kind {
  A
  B @map("b")
}
"#,
        )
        .expect("parses");
        assert_eq!(s.models.len(), 2, "views and composite types are skipped");
        let user = s.model("User").expect("User");
        assert_eq!(
            user.field("id").and_then(|f| f.default.clone()),
            Some(Default::DbGenerated(Some("gen_random_uuid()".into())))
        );
        assert_eq!(user.field("geo").map(|f| f.optional), Some(true));
        assert_eq!(
            user.field("tags").and_then(|f| f.default.clone()),
            Some(Default::Value("[a, b]".into()))
        );
        assert_eq!(user.field("kind").map(|f| f.kind), Some(FieldKind::Enum));
        let post = s.model("Post").expect("Post");
        let field = post.field("user").expect("user");
        assert_eq!(s.relation_name(post, field), "UserPosts");
        let (m, f) = s.opposite(post, field).expect("the other side");
        assert_eq!((m.name.as_str(), f.name.as_str()), ("User", "posts"));
        assert_eq!(
            s.enums[0].values[1],
            ("B".to_string(), Some("b".to_string()))
        );
    }

    #[test]
    fn a_bad_schema_is_refused_with_its_line_and_column() {
        let e = parse("model User {\n  id String @id\n  name ??\n}\n").expect_err("refused");
        assert_eq!(e.line, 3, "{e}");
        let e = parse("model User {\n  id String @id\n").expect_err("unclosed");
        assert!(e.line >= 2, "{e}");
        let e = parse("model A {\n  id Int @id\n}\nmodle User {}\n").expect_err("unknown block");
        assert_eq!((e.line, e.column), (4, 1), "{e}");
        assert!(e.message.contains("`model`"), "{e}");
        let e = parse("model A {\n  id String @default(random())\n}").expect_err("bad default");
        assert!(e.message.contains("random"), "{e}");
        assert!(parse("").is_ok_and(|s| s.models.is_empty()));
    }
}
