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
use chrono::{DateTime, NaiveDateTime, NaiveTime, Timelike};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::forms;

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

/// Parses a float in the JSON or PostgreSQL spelling (`NaN`, `Infinity`,
/// `-Infinity`, `inf`, decimal).
pub fn parse_float(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse::<f64>().ok().filter(|f| f.is_finite()),
    }
}

/// Checks a `numeric` in decimal notation and returns it without a leading
/// `+` and with a lowercase-free exponent expanded into plain digits, so the
/// text is what PostgreSQL would print for an unconstrained numeric.
pub fn normalise_numeric(s: &str) -> Option<String> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Some("NaN".into()),
        "infinity" | "+infinity" | "inf" => return Some("Infinity".into()),
        "-infinity" | "-inf" => return Some("-Infinity".into()),
        _ => {}
    }
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || exp.unsigned_abs() > 1000
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp as i64; // position of the decimal point in `digits`
    let scale = (frac.len() as i64 - exp as i64).max(0) as usize;
    let (mut ip, fp) = if point <= 0 {
        (
            String::new(),
            format!("{}{}", "0".repeat((-point) as usize), digits),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let ip_trim = ip.trim_start_matches('0');
    ip = if ip_trim.is_empty() {
        "0".into()
    } else {
        ip_trim.into()
    };
    let mut fp = fp;
    fp.truncate(scale);
    while fp.len() < scale {
        fp.push('0');
    }
    let zero = ip == "0" && fp.bytes().all(|b| b == b'0');
    let sign = if neg && !zero { "-" } else { "" };
    Some(if fp.is_empty() {
        format!("{sign}{ip}")
    } else {
        format!("{sign}{ip}.{fp}")
    })
}

fn normalise_text(
    s: &str,
    ty: &ColumnType,
    enum_labels: Option<&[String]>,
) -> Result<String, ValueError> {
    match &ty.scalar {
        ScalarType::Text | ScalarType::Varchar | ScalarType::Char => {
            if s.contains('\0') {
                Err(bad(ty, "text cannot contain a NUL character"))
            } else {
                Ok(s.to_string())
            }
        }
        ScalarType::Uuid => uuid::Uuid::parse_str(s.trim())
            .map(|u| u.hyphenated().to_string())
            .map_err(|e| bad(ty, format!("{s:?} is not a UUID: {e}"))),
        ScalarType::Enum(name) => match enum_labels {
            Some(labels) if !labels.iter().any(|l| l == s) => Err(bad(
                ty,
                format!(
                    "{s:?} is not a label of enum {name} ({})",
                    labels.join(", ")
                ),
            )),
            _ => Ok(s.to_string()),
        },
        ScalarType::Date => parse_date(s)
            .map(format_date)
            .ok_or_else(|| bad(ty, format!("{s:?} is not a date (YYYY-MM-DD)"))),
        ScalarType::Time => parse_time(s)
            .map(format_time)
            .ok_or_else(|| bad(ty, format!("{s:?} is not a time (HH:MM:SS.ffffff)"))),
        ScalarType::Timestamp => parse_timestamp(s).map(format_timestamp).ok_or_else(|| {
            bad(
                ty,
                format!("{s:?} is not a timestamp (YYYY-MM-DDTHH:MM:SS.ffffff)"),
            )
        }),
        ScalarType::Timestamptz => parse_timestamptz(s).map(format_timestamptz).ok_or_else(|| {
            bad(
                ty,
                format!("{s:?} is not an RFC 3339 timestamp with a time zone"),
            )
        }),
        ScalarType::Interval => parse_interval(s).map(|i| i.to_string()).ok_or_else(|| {
            bad(
                ty,
                format!("{s:?} is not an interval (P<months>M<days>DT<seconds>S)"),
            )
        }),
        ScalarType::Citext | ScalarType::Xml | ScalarType::Tsvector | ScalarType::Tsquery => {
            // Checked by the server when pushed: outpost has no parser for
            // XML or text search syntax (docs/types.md).
            if s.contains('\0') {
                Err(bad(ty, "text cannot contain a NUL character"))
            } else {
                Ok(s.to_string())
            }
        }
        ScalarType::Inet | ScalarType::Cidr => {
            let cidr = ty.scalar == ScalarType::Cidr;
            forms::Inet::parse(s, cidr)
                .map(|i| i.to_text(cidr))
                .ok_or_else(|| {
                    bad(
                        ty,
                        format!(
                            "{s:?} is not an IPv4 or IPv6 address with an optional /prefix{}",
                            if cidr {
                                " and no bits set right of the prefix"
                            } else {
                                ""
                            }
                        ),
                    )
                })
        }
        ScalarType::Macaddr | ScalarType::Macaddr8 => {
            let len = if ty.scalar == ScalarType::Macaddr {
                6
            } else {
                8
            };
            forms::parse_mac(s, len)
                .map(|m| forms::format_mac(&m))
                .ok_or_else(|| bad(ty, format!("{s:?} is not a MAC address of {len} bytes")))
        }
        ScalarType::Timetz => forms::parse_timetz(s)
            .map(|(t, z)| forms::format_timetz(t, z))
            .ok_or_else(|| {
                bad(
                    ty,
                    format!("{s:?} is not a time with a zone (HH:MM:SS.ffffff+HH:MM)"),
                )
            }),
        ScalarType::Money => forms::parse_money(s)
            .map(forms::format_money)
            .ok_or_else(|| {
                bad(
                    ty,
                    format!(
                        "{s:?} is not an amount (a decimal with at most two fractional digits)"
                    ),
                )
            }),
        ScalarType::Bit | ScalarType::Varbit => {
            if s.bytes().all(|b| b == b'0' || b == b'1') {
                Ok(s.to_string())
            } else {
                Err(bad(ty, format!("{s:?} is not a bit string (0s and 1s)")))
            }
        }
        ScalarType::Range(elem) => normalise_range(s, elem)
            .map(|r| r.to_text())
            .ok_or_else(|| bad(ty, format!("{s:?} is not a range of {}", elem_name(elem)))),
        ScalarType::Multirange(elem) => forms::parse_multirange(s)
            .and_then(|rs| {
                rs.iter()
                    .map(|r| normalise_range(&r.to_text(), elem))
                    .collect::<Option<Vec<_>>>()
            })
            .map(|rs| forms::format_multirange(&rs))
            .ok_or_else(|| {
                bad(
                    ty,
                    format!("{s:?} is not a multirange of {}", elem_name(elem)),
                )
            }),
        other => match other.geometry() {
            Some(g) => forms::parse_geometry(g, s)
                .map(|(closed, nums)| forms::format_geometry(g, closed, &nums))
                .ok_or_else(|| bad(ty, format!("{s:?} is not a {}", ty.pg_name))),
            None => Err(bad(ty, "expected a value of another JSON type")),
        },
    }
}

fn elem_name(elem: &ScalarType) -> &'static str {
    elem.pg_type_name().unwrap_or("values")
}

/// A range's text with each bound in its element's canonical form, and the
/// bounds of the discrete types (`int4`, `int8`, `date`) in PostgreSQL's
/// canonical `[lower,upper)` form, so equality in the replica agrees with
/// the server's.
fn normalise_range(s: &str, elem: &ScalarType) -> Option<forms::Range> {
    use forms::{Range, RangeBound};
    let range = Range::parse(s)?;
    let Range::Bounds { lower, upper } = range else {
        return Some(Range::Empty);
    };
    let ety = ColumnType::scalar(elem.clone(), elem_name(elem));
    let norm = |b: Option<RangeBound>| -> Option<Option<RangeBound>> {
        match b {
            None => Some(None),
            Some(b) => {
                let v = Value::from_json(&Json::String(b.value.clone()), &ety, None).ok()?;
                let value = match v {
                    Value::Int(i) => i.to_string(),
                    Value::Text(t) => t,
                    _ => return None,
                };
                Some(Some(RangeBound {
                    value,
                    inclusive: b.inclusive,
                }))
            }
        }
    };
    let (mut lower, mut upper) = (norm(lower)?, norm(upper)?);
    // The discrete types' successor: the canonical form includes the lower
    // bound and excludes the upper one.
    let next = |v: &str| -> Option<String> {
        match elem {
            ScalarType::Int4 | ScalarType::Int8 => {
                let i: i64 = v.parse().ok()?;
                let n = i.checked_add(1)?;
                if *elem == ScalarType::Int4 && n > i32::MAX as i64 {
                    return None;
                }
                Some(n.to_string())
            }
            ScalarType::Date => Some(format_date(parse_date(v)?.checked_add(1)?)),
            _ => Some(v.to_string()),
        }
    };
    let discrete = matches!(elem, ScalarType::Int4 | ScalarType::Int8 | ScalarType::Date);
    // PostgreSQL leaves an infinite date bound as it is.
    let finite = |b: &RangeBound| {
        *elem != ScalarType::Date || !matches!(parse_date(&b.value), Some(i32::MAX | i32::MIN))
    };
    if discrete {
        if let Some(b) = lower.as_mut().filter(|b| !b.inclusive && finite(b)) {
            b.value = next(&b.value)?;
            b.inclusive = true;
        }
        if let Some(b) = upper.as_mut().filter(|b| b.inclusive && finite(b)) {
            b.value = next(&b.value)?;
            b.inclusive = false;
        }
        if let (Some(l), Some(u)) = (&lower, &upper) {
            let empty = match elem {
                ScalarType::Date => parse_date(&l.value)? >= parse_date(&u.value)?,
                _ => l.value.parse::<i64>().ok()? >= u.value.parse::<i64>().ok()?,
            };
            if empty {
                return Some(Range::Empty);
            }
        }
    } else if let (Some(l), Some(u)) = (&lower, &upper)
        && l.value == u.value
        && !(l.inclusive && u.inclusive)
    {
        return Some(Range::Empty);
    }
    Some(Range::Bounds { lower, upper })
}

// ---- dates and times, as PostgreSQL's binary form counts them -------------

/// Microseconds in a day.
pub const USECS_PER_DAY: i64 = 86_400_000_000;

/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Proleptic Gregorian civil date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm; exact over PostgreSQL's whole range, unlike chrono).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day count since 1970-01-01 of a civil date; `None` if the date does not exist.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let leap = y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d == 0 || d > month_days[(m - 1) as usize] {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// A `date` as days since 2000-01-01; `i32::MAX`/`MIN` are ±infinity.
pub type PgDate = i32;
/// A `time` as microseconds since midnight (0 ..= 86 400 000 000).
pub type PgTime = i64;
/// A `timestamp`/`timestamptz` as microseconds since 2000-01-01 00:00 (UTC);
/// `i64::MAX`/`MIN` are ±infinity.
pub type PgTimestamp = i64;

/// Timestamps whose text parses back to the same value: PostgreSQL's own
/// range (4713 BC to 294276 AD), checked by a property test. A decoder
/// needs to parse its text back only for values outside it.
pub const TIMESTAMP_TEXT_RANGE: std::ops::Range<PgTimestamp> =
    -211_813_488_000_000_000..9_223_371_331_200_000_000;

/// Canonical text of a `date`.
pub fn format_date(days: PgDate) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => format_ymd(d as i64),
    }
}

fn format_ymd(pg_days: i64) -> String {
    let mut out = String::with_capacity(10);
    push_ymd(&mut out, pg_days);
    out
}

/// Appends `n` as exactly `width` decimal digits (`n < 10^width`).
///
/// The text of dates and times is written digit by digit into one buffer:
/// `format!` with padding cost four allocations and most of the time of a
/// decoded timestamp, two of which every pulled row carries (B3).
fn push_digits(out: &mut String, n: u64, width: u32) {
    for i in (0..width).rev() {
        let digit = (n / 10u64.pow(i)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Appends `YYYY-MM-DD` (a signed year of at least four digits outside
/// 0000..=9999).
fn push_ymd(out: &mut String, pg_days: i64) {
    let (y, m, d) = civil_from_days(pg_days + PG_EPOCH_DAYS);
    if (0..=9999).contains(&y) {
        push_digits(out, y as u64, 4);
    } else {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(out, "{y:+05}");
    }
    out.push('-');
    push_digits(out, u64::from(m), 2);
    out.push('-');
    push_digits(out, u64::from(d), 2);
}

/// Appends `HH:MM:SS.ffffff` of `0 ..= 24:00:00`.
fn push_time(out: &mut String, us: PgTime) {
    let us = us.clamp(0, USECS_PER_DAY) as u64;
    push_digits(out, us / 3_600_000_000, 2);
    out.push(':');
    push_digits(out, us / 60_000_000 % 60, 2);
    out.push(':');
    push_digits(out, us / 1_000_000 % 60, 2);
    out.push('.');
    push_digits(out, us % 1_000_000, 6);
}

/// Parses a date in canonical form (or `YYYY-MM-DD` with a signed year).
pub fn parse_date(s: &str) -> Option<PgDate> {
    let s = s.trim();
    match s {
        "infinity" | "+infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        _ => {}
    }
    i32::try_from(parse_ymd(s)?)
        .ok()
        .filter(|d| *d != i32::MAX && *d != i32::MIN)
}

/// Days since 2000-01-01 of `[+-]Y-MM-DD`.
fn parse_ymd(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let mut parts = body.splitn(3, '-');
    let y = parse_digits(parts.next()?)?;
    let m = parse_digits(parts.next()?)?;
    let d = parse_digits(parts.next()?)?;
    if y > 10_000_000 || m > 12 || d > 31 {
        return None;
    }
    Some(days_from_civil(if neg { -y } else { y }, m as u32, d as u32)? - PG_EPOCH_DAYS)
}

/// Canonical text of a `time`.
pub fn format_time(us: PgTime) -> String {
    let mut out = String::with_capacity(15);
    push_time(&mut out, us);
    out
}

/// Parses `HH:MM[:SS[.ffffff]]`, up to `24:00:00`.
pub fn parse_time(s: &str) -> Option<PgTime> {
    let s = s.trim();
    let mut parts = s.splitn(3, ':');
    let h: i64 = parse_digits(parts.next()?)?;
    let m: i64 = parse_digits(parts.next()?)?;
    let (sec, micros) = match parts.next() {
        Some(sec) => parse_seconds(sec)?,
        None => (0, 0),
    };
    if m > 59 || sec > 59 {
        return None;
    }
    let us = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    (0..=USECS_PER_DAY).contains(&us).then_some(us)
}

fn parse_digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `SS[.ffffff]` with at most six fractional digits; more are rounded half up
/// as PostgreSQL does.
fn parse_seconds(s: &str) -> Option<(i64, i64)> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec = parse_digits(whole)?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros: i64 = 0;
    for (i, b) in frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(7)
        .enumerate()
    {
        let d = (b - b'0') as i64;
        if i < 6 {
            micros = micros * 10 + d;
        } else if d >= 5 {
            micros += 1;
        }
    }
    Some((sec, micros))
}

/// Canonical text of a `timestamp` (no zone).
pub fn format_timestamp(us: PgTimestamp) -> String {
    match us {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        us => {
            let mut out = String::with_capacity(27);
            push_timestamp(&mut out, us);
            out
        }
    }
}

/// Appends the text of a finite timestamp.
fn push_timestamp(out: &mut String, us: PgTimestamp) {
    push_ymd(out, us.div_euclid(USECS_PER_DAY));
    out.push('T');
    push_time(out, us.rem_euclid(USECS_PER_DAY));
}

/// Canonical text of a `timestamptz`: UTC with a `Z`.
pub fn format_timestamptz(us: PgTimestamp) -> String {
    match us {
        i64::MAX | i64::MIN => format_timestamp(us),
        us => {
            let mut out = String::with_capacity(28);
            push_timestamp(&mut out, us);
            out.push('Z');
            out
        }
    }
}

/// Parses `YYYY-MM-DD[T| ]HH:MM[:SS[.ffffff]]` without a zone.
pub fn parse_timestamp(s: &str) -> Option<PgTimestamp> {
    let s = s.trim();
    match s {
        "infinity" | "+infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let split = s.get(1..)?.find(['T', ' '])? + 1;
    let days = parse_ymd(&s[..split])?;
    let tod = parse_time(&s[split + 1..])?;
    if tod == USECS_PER_DAY {
        return None;
    }
    days.checked_mul(USECS_PER_DAY)?.checked_add(tod)
}

/// Parses an RFC 3339 timestamp with a zone (`Z` or `±HH:MM`) into UTC.
pub fn parse_timestamptz(s: &str) -> Option<PgTimestamp> {
    let s = s.trim();
    match s {
        "infinity" | "+infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (local, offset_secs) = if let Some(rest) = s.strip_suffix(['Z', 'z']) {
        (rest, 0i64)
    } else {
        let i = s.rfind(['+', '-'])?;
        let (local, zone) = s.split_at(i);
        if !local.contains(['T', ' ']) {
            return None;
        }
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let zone = &zone[1..];
        let (h, m) = match zone.split_once(':') {
            Some((h, m)) => (parse_digits(h)?, parse_digits(m)?),
            None if zone.len() == 4 => (parse_digits(&zone[..2])?, parse_digits(&zone[2..])?),
            None => (parse_digits(zone)?, 0),
        };
        if h > 15 || m > 59 {
            return None;
        }
        (local, sign * (h * 3600 + m * 60))
    };
    parse_timestamp(local)?.checked_sub(offset_secs * 1_000_000)
}

/// Converts between chrono and the microsecond form, for callers holding
/// chrono values.
pub fn timestamp_from_chrono(t: NaiveDateTime) -> Option<PgTimestamp> {
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)?.and_hms_opt(0, 0, 0)?;
    (t - epoch).num_microseconds()
}

/// A UTC instant as a canonical `timestamptz` text.
pub fn timestamptz_from_chrono(t: DateTime<chrono::Utc>) -> String {
    timestamp_from_chrono(t.naive_utc())
        .map(format_timestamptz)
        .unwrap_or_default()
}

/// Microseconds of a time of day.
pub fn time_from_chrono(t: NaiveTime) -> PgTime {
    t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() as i64 / 1000)
}

/// An `interval` as PostgreSQL stores it: months, days and microseconds, each
/// signed and independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Months (years are twelve of them).
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

impl fmt::Display for Interval {
    /// `P<months>M<days>DT<seconds>S`, seconds with six fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.micros < 0 { "-" } else { "" };
        let abs = self.micros.unsigned_abs();
        write!(
            f,
            "P{}M{}DT{sign}{}.{:06}S",
            self.months,
            self.days,
            abs / 1_000_000,
            abs % 1_000_000
        )
    }
}

/// Parses the canonical interval form.
pub fn parse_interval(s: &str) -> Option<Interval> {
    let rest = s.trim().strip_prefix('P')?;
    let (months, rest) = rest.split_once('M')?;
    let (days, rest) = rest.split_once("DT")?;
    let secs = rest.strip_suffix('S')?;
    let (neg, secs) = match secs.strip_prefix('-') {
        Some(s) => (true, s),
        None => (false, secs),
    };
    let (whole, micros) = parse_seconds(secs)?;
    let abs = whole as i128 * 1_000_000 + micros as i128;
    Some(Interval {
        months: months.parse().ok()?,
        days: days.parse().ok()?,
        micros: i64::try_from(if neg { -abs } else { abs }).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ty(s: ScalarType) -> ColumnType {
        ColumnType::scalar(s, "t")
    }

    #[test]
    fn numerics_normalise() {
        assert_eq!(normalise_numeric("1.50").as_deref(), Some("1.50"));
        assert_eq!(normalise_numeric("+001.5").as_deref(), Some("1.5"));
        assert_eq!(normalise_numeric("-0.00").as_deref(), Some("0.00"));
        assert_eq!(normalise_numeric("1.5e3").as_deref(), Some("1500"));
        assert_eq!(normalise_numeric("15e-3").as_deref(), Some("0.015"));
        assert_eq!(normalise_numeric(".5").as_deref(), Some("0.5"));
        assert_eq!(normalise_numeric("nan").as_deref(), Some("NaN"));
        assert_eq!(normalise_numeric("1.2.3"), None);
        assert_eq!(normalise_numeric("abc"), None);
        assert_eq!(normalise_numeric(""), None);
        assert_eq!(normalise_numeric("-"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamptz(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(parse_timestamptz("2000-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_timestamptz("1999-12-31 23:00:00.5-01:00"),
            Some(500_000)
        );
        assert_eq!(format_timestamp(-1), "1999-12-31T23:59:59.999999");
        for us in [TIMESTAMP_TEXT_RANGE.start, TIMESTAMP_TEXT_RANGE.end - 1] {
            assert_eq!(parse_timestamptz(&format_timestamptz(us)), Some(us));
            assert_eq!(parse_timestamp(&format_timestamp(us)), Some(us));
        }
        assert_eq!(
            format_timestamptz(TIMESTAMP_TEXT_RANGE.start),
            "-4713-11-24T00:00:00.000000Z"
        );
        assert_eq!(format_date(-730_485), "0000-01-01");
        assert_eq!(
            parse_date("-0044-03-15").map(format_date).as_deref(),
            Some("-0044-03-15")
        );
        assert_eq!(format_time(USECS_PER_DAY), "24:00:00.000000");
        assert_eq!(parse_time("24:00:00"), Some(USECS_PER_DAY));
        assert_eq!(parse_time("24:00:01"), None);
        assert_eq!(parse_timestamptz("2024-01-01"), None);
        assert_eq!(parse_time("12:00:00.0000005"), Some(43_200_000_001));
    }

    #[test]
    fn intervals() {
        let i = Interval {
            months: -14,
            days: 3,
            micros: -3_723_000_005,
        };
        assert_eq!(i.to_string(), "P-14M3DT-3723.000005S");
        assert_eq!(parse_interval(&i.to_string()), Some(i));
    }

    #[test]
    fn json_forms() {
        let int8 = ty(ScalarType::Int8);
        assert_eq!(
            Value::Int(i64::MAX).to_json(&int8),
            Json::String(i64::MAX.to_string())
        );
        assert_eq!(Value::Int(42).to_json(&int8), Json::from(42));
        assert_eq!(
            Value::from_json(&Json::String(i64::MIN.to_string()), &int8, None),
            Ok(Value::Int(i64::MIN))
        );
        let int2 = ty(ScalarType::Int2);
        assert!(Value::from_json(&Json::from(40_000), &int2, None).is_err());
        let f = ty(ScalarType::Float8);
        assert_eq!(
            Value::Float(f64::NAN).to_json(&f),
            Json::String("NaN".into())
        );
        assert_eq!(
            Value::from_json(&Json::String("-Infinity".into()), &f, None),
            Ok(Value::Float(f64::NEG_INFINITY))
        );
        let u = ty(ScalarType::Uuid);
        assert_eq!(
            Value::from_json(
                &Json::String("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".into()),
                &u,
                None
            ),
            Ok(Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()))
        );
        let e = ty(ScalarType::Enum("Role".into()));
        let labels = vec!["USER".to_string(), "ADMIN".to_string()];
        assert!(Value::from_json(&Json::String("ROOT".into()), &e, Some(&labels)).is_err());
        let b = ty(ScalarType::Bytea);
        assert_eq!(
            Value::Bytes(vec![0, 255]).to_json(&b),
            Json::String("AP8=".into())
        );
        let arr = ColumnType {
            scalar: ScalarType::Text,
            array: true,
            pg_name: "text[]".into(),
            domain: None,
        };
        let v = Value::from_json(&serde_json::json!(["a", null]), &arr, None);
        assert_eq!(
            v,
            Ok(Value::Array(vec![Value::Text("a".into()), Value::Null]))
        );
        let err =
            Value::from_json(&serde_json::json!("x"), &ty(ScalarType::Bool), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected true or false, got a string (type t)"
        );
    }

    proptest! {
        #[test]
        fn timestamp_text_roundtrips(us in TIMESTAMP_TEXT_RANGE) {
            prop_assert_eq!(parse_timestamptz(&format_timestamptz(us)), Some(us));
            prop_assert_eq!(parse_timestamp(&format_timestamp(us)), Some(us));
        }

        #[test]
        fn timestamp_text_order_is_time_order(a in -63_000_000_000_000_000i64..250_000_000_000_000_000i64,
                                              b in -63_000_000_000_000_000i64..250_000_000_000_000_000i64) {
            // Years 0000..=9999.
            prop_assert_eq!(a.cmp(&b), format_timestamptz(a).cmp(&format_timestamptz(b)));
        }

        #[test]
        fn timestamp_text_is_the_padded_fields(us in TIMESTAMP_TEXT_RANGE) {
            // The digit-by-digit writer against the obvious `format!`.
            let (days, tod) = (us.div_euclid(USECS_PER_DAY), us.rem_euclid(USECS_PER_DAY));
            let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
            let date = if (0..=9999).contains(&y) {
                format!("{y:04}-{m:02}-{d:02}")
            } else {
                format!("{y:+05}-{m:02}-{d:02}")
            };
            let time = format!(
                "{:02}:{:02}:{:02}.{:06}",
                tod / 3_600_000_000,
                tod / 60_000_000 % 60,
                tod / 1_000_000 % 60,
                tod % 1_000_000
            );
            prop_assert_eq!(format_timestamptz(us), format!("{date}T{time}Z"));
            prop_assert_eq!(format_timestamp(us), format!("{date}T{time}"));
            prop_assert_eq!(format_time(tod), time);
        }

        #[test]
        fn date_and_time_roundtrip(d in -2_451_545i32..2_147_483_494, t in 0i64..=USECS_PER_DAY) {
            prop_assert_eq!(parse_date(&format_date(d)), Some(d));
            prop_assert_eq!(parse_time(&format_time(t)), Some(t));
        }

        #[test]
        fn interval_roundtrips(months: i32, days: i32, micros: i64) {
            let i = Interval { months, days, micros };
            prop_assert_eq!(parse_interval(&i.to_string()), Some(i));
        }

        #[test]
        fn numeric_normalisation_is_idempotent(int in "[0-9]{1,30}", frac in "[0-9]{0,20}", neg: bool) {
            let s = format!("{}{}.{}", if neg { "-" } else { "" }, int, frac);
            let once = normalise_numeric(&s).unwrap_or_default();
            prop_assert_eq!(normalise_numeric(&once), Some(once.clone()));
        }
    }
}
