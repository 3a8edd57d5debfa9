//! Column types and values, and the exact mapping between PostgreSQL, the
//! SQLite replica and JSON.
//!
//! Every value crosses the boundary as a [`Value`], whose variant is fixed by
//! the column's [`ColumnType`]. The table below is the contract; nothing in it
//! loses information, with the single exception noted for `-0.0`.
//!
//! | PostgreSQL | `Value` | SQLite column / storage | JSON form |
//! |---|---|---|---|
//! | `bool` | `Bool` | `INTEGER` 0/1 | `true`/`false` |
//! | `int2`, `int4` | `Int` | `INTEGER` | number |
//! | `int8` | `Int` | `INTEGER` | number; a string when \|v\| > 2^53 |
//! | `float4`, `float8` | `Float` | `REAL`; NaN as the text `NaN` | number; `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `numeric` | `Text` (PostgreSQL's decimal text, `NaN`, `Infinity`) | `TEXT` | string |
//! | `text`, `varchar`, `char` | `Text` | `TEXT` | string |
//! | `uuid` | `Text`, lowercase hyphenated | `TEXT` | string |
//! | `date` | `Text` `YYYY-MM-DD` | `TEXT` | string |
//! | `time` | `Text` `HH:MM:SS.ffffff` (up to `24:00:00.000000`) | `TEXT` | string |
//! | `timestamp` | `Text` `YYYY-MM-DDTHH:MM:SS.ffffff` | `TEXT` | string |
//! | `timestamptz` | `Text` `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC) | `TEXT` | string |
//! | `interval` | `Text` `P<months>M<days>DT<seconds>S`, each part signed | `TEXT` | string |
//! | `json`, `jsonb` | `Json` (the exact JSON text) | `TEXT` | the JSON value |
//! | `bytea` | `Bytes` | `BLOB` | base64 string (standard alphabet, padded) |
//! | enum | `Text` (the label) | `TEXT` | string |
//! | domain | as its base type | as its base type | as its base type |
//! | `citext` | `Text` | `TEXT COLLATE NOCASE` | string |
//! | `oid` | `Int` | `INTEGER` | number |
//! | `inet`, `cidr`, `macaddr(8)`, `timetz`, `money`, `bit`, `varbit`, `xml`, ranges, multiranges, `tsvector`, `tsquery`, geometric types | `Text` in the canonical forms of [`crate::forms`] | `TEXT` | string |
//! | array of any of these, any number of dimensions | `Array` (elements may be `Null`; nested for more dimensions) | `TEXT` holding the JSON form | JSON array of the elements' JSON forms; `json`/`jsonb` elements as their JSON text in a string |
//!
//! Dates and timestamps always carry four-digit years between 0000 and 9999
//! and six fractional digits, so in SQLite text order is time order; years
//! outside that range are written with a sign (`+10000-01-01`, `-0044-03-15`,
//! astronomical numbering as in PostgreSQL's binary form), and `infinity` /
//! `-infinity` are kept as those words.
//!
//! SQLite's `REAL` storage does not keep the sign of zero, so a `-0.0` float
//! reads back from the replica as `0.0`; PostgreSQL compares the two equal.
//! Arrays are normalised to lower bound 1 (PostgreSQL's default).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The largest integer a JSON number carries exactly in every client (2^53).
pub const MAX_SAFE_JSON_INT: i64 = 1 << 53;

/// The scalar part of a column type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalarType {
    /// `boolean`
    Bool,
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric`, any precision and scale
    Numeric,
    /// `text`
    Text,
    /// `character varying`
    Varchar,
    /// `character` (blank-padded)
    Char,
    /// `uuid`
    Uuid,
    /// `date`
    Date,
    /// `time without time zone`
    Time,
    /// `timestamp without time zone`
    Timestamp,
    /// `timestamp with time zone`
    Timestamptz,
    /// `interval`
    Interval,
    /// `json`
    Json,
    /// `jsonb`
    Jsonb,
    /// `bytea`
    Bytea,
    /// A user enum type, by name.
    Enum(String),
    /// `citext` (the extension's case-insensitive text)
    Citext,
    /// `inet`
    Inet,
    /// `cidr`
    Cidr,
    /// `macaddr`
    Macaddr,
    /// `macaddr8`
    Macaddr8,
    /// `time with time zone`
    Timetz,
    /// `money`, in cents (the server's `lc_monetary` has two fractional
    /// digits; setup checks)
    Money,
    /// `bit(n)`
    Bit,
    /// `bit varying`
    Varbit,
    /// `xml`
    Xml,
    /// `oid`
    Oid,
    /// `tsvector`
    Tsvector,
    /// `tsquery`
    Tsquery,
    /// `point`
    Point,
    /// `line`
    Line,
    /// `lseg`
    Lseg,
    /// `box`
    Box,
    /// `path`
    Path,
    /// `polygon`
    Polygon,
    /// `circle`
    Circle,
    /// A built-in range type, by its element type (`int4range` is
    /// `Range(Int4)`).
    Range(std::boxed::Box<ScalarType>),
    /// A built-in multirange type, by its element type.
    Multirange(std::boxed::Box<ScalarType>),
}

impl ScalarType {
    /// The built-in type's name as PostgreSQL resolves it in a cast (`inet`,
    /// `int4range`), for the types that have one fixed name; `None` for
    /// enums.
    pub fn pg_type_name(&self) -> Option<&'static str> {
        use ScalarType as S;
        Some(match self {
            S::Bool => "boolean",
            S::Int2 => "smallint",
            S::Int4 => "integer",
            S::Int8 => "bigint",
            S::Float4 => "real",
            S::Float8 => "double precision",
            S::Numeric => "numeric",
            S::Text => "text",
            S::Varchar => "varchar",
            S::Char => "bpchar",
            S::Uuid => "uuid",
            S::Date => "date",
            S::Time => "time",
            S::Timestamp => "timestamp",
            S::Timestamptz => "timestamptz",
            S::Interval => "interval",
            S::Json => "json",
            S::Jsonb => "jsonb",
            S::Bytea => "bytea",
            S::Enum(_) => return None,
            S::Citext => "citext",
            S::Inet => "inet",
            S::Cidr => "cidr",
            S::Macaddr => "macaddr",
            S::Macaddr8 => "macaddr8",
            S::Timetz => "timetz",
            S::Money => "money",
            S::Bit => "bit",
            S::Varbit => "varbit",
            S::Xml => "xml",
            S::Oid => "oid",
            S::Tsvector => "tsvector",
            S::Tsquery => "tsquery",
            S::Point => "point",
            S::Line => "line",
            S::Lseg => "lseg",
            S::Box => "box",
            S::Path => "path",
            S::Polygon => "polygon",
            S::Circle => "circle",
            S::Range(e) => match **e {
                S::Int4 => "int4range",
                S::Int8 => "int8range",
                S::Numeric => "numrange",
                S::Date => "daterange",
                S::Timestamp => "tsrange",
                _ => "tstzrange",
            },
            S::Multirange(e) => match **e {
                S::Int4 => "int4multirange",
                S::Int8 => "int8multirange",
                S::Numeric => "nummultirange",
                S::Date => "datemultirange",
                S::Timestamp => "tsmultirange",
                _ => "tstzmultirange",
            },
        })
    }

    /// The geometric kind of a geometric type.
    pub fn geometry(&self) -> Option<crate::forms::Geometry> {
        use crate::forms::Geometry as G;
        Some(match self {
            ScalarType::Point => G::Point,
            ScalarType::Line => G::Line,
            ScalarType::Lseg => G::Lseg,
            ScalarType::Box => G::Box,
            ScalarType::Path => G::Path,
            ScalarType::Polygon => G::Polygon,
            ScalarType::Circle => G::Circle,
            _ => return None,
        })
    }
}

/// A column's type: a scalar, or an array of it (of any number of
/// dimensions: PostgreSQL does not tell `int[]` from `int[][]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnType {
    /// The element type (a domain's base type, resolved through nested
    /// domains).
    pub scalar: ScalarType,
    /// True for `scalar[]` (and for an array of a domain, or a domain over
    /// an array).
    pub array: bool,
    /// The type as PostgreSQL prints it (`numeric(12,2)`, `text[]`, `"Role"`,
    /// a domain's name), used in casts and messages.
    pub pg_name: String,
    /// The domain the column is declared with (the element's domain for an
    /// array of a domain), if any: replicated as its base type, its checks
    /// enforced by the server when a push writes the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl ColumnType {
    /// A scalar column type.
    pub fn scalar(scalar: ScalarType, pg_name: impl Into<String>) -> ColumnType {
        ColumnType {
            scalar,
            array: false,
            pg_name: pg_name.into(),
            domain: None,
        }
    }

    /// The declared type of the column in the SQLite replica. The affinity
    /// it implies is what keeps values exact (see the module doc).
    pub fn sqlite_decl(&self) -> &'static str {
        if self.array {
            return "TEXT";
        }
        match self.scalar {
            ScalarType::Bool
            | ScalarType::Int2
            | ScalarType::Int4
            | ScalarType::Int8
            | ScalarType::Oid => "INTEGER",
            // SQLite's case-insensitive collation is what `citext`'s `=`
            // and order come to for ASCII (docs/types.md).
            ScalarType::Citext => "TEXT COLLATE NOCASE",
            ScalarType::Float4 | ScalarType::Float8 => "REAL",
            ScalarType::Bytea => "BLOB",
            _ => "TEXT",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pg_name)
    }
}

/// A value of a synced column. Which variant a column holds is fixed by its
/// type (module doc).
#[derive(Debug, Clone)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// `bool`.
    Bool(bool),
    /// Every integer type.
    Int(i64),
    /// `float4` (widened exactly) and `float8`.
    Float(f64),
    /// Every type whose canonical form is text.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `json`/`jsonb`: the JSON text exactly as PostgreSQL returned it.
    Json(String),
    /// An array; a multi-dimensional one is an array of (equally long)
    /// arrays.
    Array(Vec<Value>),
}

impl PartialEq for Value {
    /// Equality as PostgreSQL's `=` sees it for the same type: NaN equals
    /// NaN, and `-0.0` equals `0.0`. `Json` compares the parsed documents.
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => (a.is_nan() && b.is_nan()) || a == b,
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Json(a), Value::Json(b)) => {
                a == b
                    || matches!(
                        (serde_json::from_str::<Json>(a), serde_json::from_str::<Json>(b)),
                        (Ok(x), Ok(y)) if x == y
                    )
            }
            (Value::Array(a), Value::Array(b)) => a == b,
            _ => false,
        }
    }
}

/// A value that does not fit its column type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (type {ty})")]
pub struct ValueError {
    /// The column type the value was meant for.
    pub ty: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(ty: &ColumnType, message: impl Into<String>) -> ValueError {
    ValueError {
        ty: ty.pg_name.clone(),
        message: message.into(),
    }
}

impl Value {
    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The JSON form of a value of type `ty` (module doc).
    pub fn to_json(&self, ty: &ColumnType) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) if i.unsigned_abs() > MAX_SAFE_JSON_INT as u64 => {
                Json::String(i.to_string())
            }
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => float_to_json(*f),
            Value::Text(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::String(BASE64.encode(b)),
            Value::Json(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()))
            }
            Value::Array(items) => {
                let elem = ty.element();
                Json::Array(
                    items
                        .iter()
                        .map(|v| match v {
                            // A JSON document inside an array is written as its
                            // text, so the document `null` and SQL NULL differ.
                            Value::Json(text) => Json::String(text.clone()),
                            v => v.to_json(&elem),
                        })
                        .collect(),
                )
            }
        }
    }

    /// Reads the JSON form of a value of type `ty`, checking and normalising
    /// it (UUIDs lowercased, timestamps converted to UTC with microseconds).
    /// `enum_labels` are the labels allowed for an enum column (`None`: do
    /// not check, for values read back from outpost's own storage).
    pub fn from_json(
        json: &Json,
        ty: &ColumnType,
        enum_labels: Option<&[String]>,
    ) -> Result<Value, ValueError> {
        if json.is_null() {
            return Ok(Value::Null);
        }
        if ty.array {
            let Json::Array(items) = json else {
                return Err(bad(
                    ty,
                    format!("expected a JSON array, got {}", kind(json)),
                ));
            };
            let elem = ty.element();
            let json_elements = matches!(elem.scalar, ScalarType::Json | ScalarType::Jsonb);
            return items
                .iter()
                .map(|j| match j {
                    // A multi-dimensional array: arrays of arrays.
                    Json::Array(_) => Value::from_json(j, ty, enum_labels),
                    Json::String(text) if json_elements => serde_json::from_str::<Json>(text)
                        .map(|_| Value::Json(text.clone()))
                        .map_err(|e| bad(ty, format!("element {text:?} is not JSON text: {e}"))),
                    j => Value::from_json(j, &elem, enum_labels),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
        match &ty.scalar {
            ScalarType::Bool => match json {
                Json::Bool(b) => Ok(Value::Bool(*b)),
                _ => Err(bad(
                    ty,
                    format!("expected true or false, got {}", kind(json)),
                )),
            },
            ScalarType::Int2 | ScalarType::Int4 | ScalarType::Int8 | ScalarType::Oid => {
                let i = match json {
                    Json::Number(n) => n
                        .as_i64()
                        .ok_or_else(|| bad(ty, format!("{n} is not an integer")))?,
                    Json::String(s) => s
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| bad(ty, format!("{s:?} is not an integer")))?,
                    _ => return Err(bad(ty, format!("expected an integer, got {}", kind(json)))),
                };
                let (lo, hi) = match ty.scalar {
                    ScalarType::Int2 => (i16::MIN as i64, i16::MAX as i64),
                    ScalarType::Int4 => (i32::MIN as i64, i32::MAX as i64),
                    ScalarType::Oid => (0, u32::MAX as i64),
                    _ => (i64::MIN, i64::MAX),
                };
                if i < lo || i > hi {
                    return Err(bad(ty, format!("{i} is out of range")));
                }
                Ok(Value::Int(i))
            }
            ScalarType::Float4 | ScalarType::Float8 => {
                let f = match json {
                    Json::Number(n) => n
                        .as_f64()
                        .ok_or_else(|| bad(ty, format!("{n} is not a number")))?,
                    Json::String(s) => {
                        parse_float(s).ok_or_else(|| bad(ty, format!("{s:?} is not a number")))?
                    }
                    _ => return Err(bad(ty, format!("expected a number, got {}", kind(json)))),
                };
                if ty.scalar == ScalarType::Float4 && f.is_finite() && (f as f32).is_infinite() {
                    return Err(bad(ty, format!("{f} is out of range")));
                }
                let f = if ty.scalar == ScalarType::Float4 {
                    f as f32 as f64
                } else {
                    f
                };
                Ok(Value::Float(f))
            }
            ScalarType::Json | ScalarType::Jsonb => Ok(Value::Json(json.to_string())),
            ScalarType::Bytea => match json {
                Json::String(s) => BASE64
                    .decode(s.as_bytes())
                    .map(Value::Bytes)
                    .map_err(|e| bad(ty, format!("not base64: {e}"))),
                _ => Err(bad(
                    ty,
                    format!("expected a base64 string, got {}", kind(json)),
                )),
            },
            ScalarType::Numeric => {
                let s = match json {
                    Json::Number(n) => n.to_string(),
                    Json::String(s) => s.trim().to_string(),
                    _ => {
                        return Err(bad(
                            ty,
                            format!("expected a decimal string, got {}", kind(json)),
                        ));
                    }
                };
                normalise_numeric(&s)
                    .map(Value::Text)
                    .ok_or_else(|| bad(ty, format!("{s:?} is not a decimal number")))
            }
            _ => {
                let Json::String(s) = json else {
                    return Err(bad(ty, format!("expected a string, got {}", kind(json))));
                };
                normalise_text(s, ty, enum_labels).map(Value::Text)
            }
        }
    }
}

impl ColumnType {
    /// The element type of an array type (itself for a scalar).
    pub fn element(&self) -> ColumnType {
        ColumnType {
            scalar: self.scalar.clone(),
            array: false,
            pg_name: self.pg_name.trim_end_matches("[]").to_string(),
            domain: self.domain.clone(),
        }
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

fn float_to_json(f: f64) -> Json {
    if f.is_nan() {
        Json::String("NaN".into())
    } else if f == f64::INFINITY {
        Json::String("Infinity".into())
    } else if f == f64::NEG_INFINITY {
        Json::String("-Infinity".into())
    } else {
        serde_json::Number::from_f64(f)
            .map(Json::Number)
            .unwrap_or(Json::Null)
    }
}

mod datetime;
mod text;
pub use datetime::*;
use text::normalise_text;
pub use text::{normalise_numeric, parse_float};

#[cfg(test)]
mod tests;
