//! The binary value codec: PostgreSQL's binary wire format to and from
//! outpost's [`Value`], exactly (see the mapping table in
//! [`outpost_core::types`]).
//!
//! * [`PgValue`] implements [`FromSql`]: read any supported column as a
//!   `Value` (`row.try_get::<_, PgValue>(i)`, or [`row_values`] for a whole
//!   row).
//! * [`Bind`] implements [`ToSql`]: send a `Value` as a parameter of the type
//!   the server expects (`&Bind(&value)`, or [`binds`] for a slice).
//!
//! Decoding goes by the type's OID for built-in scalars, by its kind for
//! enums, arrays, ranges and domains. The types kept as text beyond the
//! basic ones are written in the canonical forms of
//! [`outpost_core::forms`] and parsed back to the same binary value;
//! `tsvector` and `tsquery` (and arrays of them) are sent to the server in
//! text form ([`Bind`]'s `encode_format`), which its input function parses. `numeric` is converted between its binary form
//! (base-10000 digits) and the decimal text PostgreSQL prints, by
//! [`numeric_from_binary`] and [`numeric_to_binary`]; dates and times between
//! microsecond counts and outpost's canonical text by the helpers of
//! [`outpost_core::types`]. Nothing here panics on bad input: a malformed
//! buffer or a value that does not fit its type is a [`CodecError`] naming the
//! type and the problem.
//!
//! ```no_run
//! # async fn demo(client: &tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use outpost_core::Value;
//! use outpost_remote::codec::{Bind, PgValue};
//!
//! let price = Value::Text("12.50".into());
//! let row = client.query_one("SELECT $1::numeric(12,2)", &[&Bind(&price)]).await?;
//! let PgValue(back) = row.try_get(0)?;
//! assert_eq!(back, price);
//! # Ok(()) }
//! ```

use std::error::Error as StdError;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use outpost_core::Value;
use outpost_core::forms::{
    Geometry, Inet, Range, RangeBound, TsQuery, format_bits, format_geometry, format_mac,
    format_money, format_multirange, format_timetz, format_tsvector, parse_bits, parse_geometry,
    parse_mac, parse_money, parse_multirange, parse_timetz,
};
use outpost_core::types::{
    Interval, TIMESTAMP_TEXT_RANGE, USECS_PER_DAY, format_date, format_time, format_timestamp,
    format_timestamptz, normalise_numeric, parse_date, parse_interval, parse_time, parse_timestamp,
    parse_timestamptz,
};
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::error::RemoteError;

/// Type OIDs of the built-in types outpost replicates.
pub mod oid {
    /// `boolean`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `bigint`
    pub const INT8: u32 = 20;
    /// `smallint`
    pub const INT2: u32 = 21;
    /// `integer`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `json`
    pub const JSON: u32 = 114;
    /// `real`
    pub const FLOAT4: u32 = 700;
    /// `double precision`
    pub const FLOAT8: u32 = 701;
    /// `character` (blank-padded)
    pub const BPCHAR: u32 = 1042;
    /// `character varying`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time without time zone`
    pub const TIME: u32 = 1083;
    /// `timestamp without time zone`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamp with time zone`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
    /// `oid`
    pub const OID: u32 = 26;
    /// `xml`
    pub const XML: u32 = 142;
    /// `point`
    pub const POINT: u32 = 600;
    /// `lseg`
    pub const LSEG: u32 = 601;
    /// `path`
    pub const PATH: u32 = 602;
    /// `box`
    pub const BOX: u32 = 603;
    /// `polygon`
    pub const POLYGON: u32 = 604;
    /// `line`
    pub const LINE: u32 = 628;
    /// `cidr`
    pub const CIDR: u32 = 650;
    /// `circle`
    pub const CIRCLE: u32 = 718;
    /// `macaddr8`
    pub const MACADDR8: u32 = 774;
    /// `money`
    pub const MONEY: u32 = 790;
    /// `macaddr`
    pub const MACADDR: u32 = 829;
    /// `inet`
    pub const INET: u32 = 869;
    /// `time with time zone`
    pub const TIMETZ: u32 = 1266;
    /// `bit`
    pub const BIT: u32 = 1560;
    /// `bit varying`
    pub const VARBIT: u32 = 1562;
    /// `tsvector`
    pub const TSVECTOR: u32 = 3614;
    /// `tsquery`
    pub const TSQUERY: u32 = 3615;
    /// `int4range`
    pub const INT4RANGE: u32 = 3904;
    /// `numrange`
    pub const NUMRANGE: u32 = 3906;
    /// `tsrange`
    pub const TSRANGE: u32 = 3908;
    /// `tstzrange`
    pub const TSTZRANGE: u32 = 3910;
    /// `daterange`
    pub const DATERANGE: u32 = 3912;
    /// `int8range`
    pub const INT8RANGE: u32 = 3926;
    /// `int4multirange`
    pub const INT4MULTIRANGE: u32 = 4451;
    /// `nummultirange`
    pub const NUMMULTIRANGE: u32 = 4532;
    /// `tsmultirange`
    pub const TSMULTIRANGE: u32 = 4533;
    /// `tstzmultirange`
    pub const TSTZMULTIRANGE: u32 = 4534;
    /// `datemultirange`
    pub const DATEMULTIRANGE: u32 = 4535;
    /// `int8multirange`
    pub const INT8MULTIRANGE: u32 = 4536;

    /// Whether `oid` is one of the scalar types above.
    pub fn is_supported_scalar(oid: u32) -> bool {
        matches!(
            oid,
            BOOL | BYTEA
                | INT8
                | INT2
                | INT4
                | TEXT
                | JSON
                | FLOAT4
                | FLOAT8
                | BPCHAR
                | VARCHAR
                | DATE
                | TIME
                | TIMESTAMP
                | TIMESTAMPTZ
                | INTERVAL
                | NUMERIC
                | UUID
                | JSONB
                | OID
                | XML
                | POINT
                | LSEG
                | PATH
                | BOX
                | POLYGON
                | LINE
                | CIDR
                | CIRCLE
                | MACADDR8
                | MONEY
                | MACADDR
                | INET
                | TIMETZ
                | BIT
                | VARBIT
                | TSVECTOR
                | TSQUERY
        )
    }

    /// Whether `oid` is the element type of a built-in range: the ranges
    /// and multiranges outpost replicates.
    pub fn is_range_element(oid: u32) -> bool {
        matches!(oid, INT4 | INT8 | NUMERIC | DATE | TIMESTAMP | TIMESTAMPTZ)
    }
}

/// Why a value could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The type is not one outpost replicates.
    #[error("type {pg_type} is not supported by outpost")]
    Unsupported {
        /// The type's name.
        pg_type: String,
    },
    /// The server sent bytes that are not a valid binary value of the type.
    #[error("malformed binary {pg_type} value: {message}")]
    Malformed {
        /// The type's name.
        pg_type: String,
        /// What is wrong.
        message: String,
    },
    /// A value of this variant cannot be sent as this type.
    #[error("a {variant} value cannot be sent as type {pg_type}")]
    Mismatch {
        /// The parameter's type.
        pg_type: String,
        /// The `Value` variant given (`Text`, `Int`…).
        variant: &'static str,
    },
    /// The value has the right variant but is not valid for the type.
    #[error("{value} is not a valid {pg_type}: {message}")]
    Invalid {
        /// The parameter's type.
        pg_type: String,
        /// The value, shortened for the message.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A multi-dimensional array value whose sub-arrays differ in length
    /// (PostgreSQL's arrays are rectangular).
    #[error("{pg_type} value is not rectangular: {message}")]
    Ragged {
        /// The array type's name.
        pg_type: String,
        /// Where the lengths differ.
        message: String,
    },
}

fn malformed(ty: &Type, message: impl Into<String>) -> CodecError {
    CodecError::Malformed {
        pg_type: ty.name().to_string(),
        message: message.into(),
    }
}

fn invalid(ty: &Type, value: &str, message: impl Into<String>) -> CodecError {
    let mut shown: String = value.chars().take(64).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    CodecError::Invalid {
        pg_type: ty.name().to_string(),
        value: format!("{shown:?}"),
        message: message.into(),
    }
}

fn mismatch(ty: &Type, value: &Value) -> CodecError {
    CodecError::Mismatch {
        pg_type: ty.name().to_string(),
        variant: variant_name(value),
    }
}

fn variant_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Bool",
        Value::Int(_) => "Int",
        Value::Float(_) => "Float",
        Value::Text(_) => "Text",
        Value::Bytes(_) => "Bytes",
        Value::Json(_) => "Json",
        Value::Array(_) => "Array",
    }
}

/// Whether the codec can read and write values of `ty`: the built-in
/// scalars of [`oid`], `citext`, enums, the built-in ranges and
/// multiranges, domains over those, and arrays of them (any number of
/// dimensions).
pub fn supports(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Simple => oid::is_supported_scalar(ty.oid()) || is_citext(ty),
        Kind::Enum(_) => true,
        Kind::Array(elem) => !matches!(elem.kind(), Kind::Array(_)) && supports(elem),
        Kind::Domain(base) => supports(base),
        Kind::Range(elem) | Kind::Multirange(elem) => oid::is_range_element(elem.oid()),
        _ => false,
    }
}

/// The `citext` extension's type: its OID differs per database, its binary
/// form is `text`'s.
fn is_citext(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Simple) && ty.name() == "citext"
}

/// Whether values of `ty` are sent to the server in text form: the text
/// search types, whose text outpost keeps but does not parse (the server's
/// input function does), and arrays of them.
pub(crate) fn sent_as_text(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Simple => matches!(ty.oid(), oid::TSVECTOR | oid::TSQUERY),
        Kind::Array(elem) | Kind::Domain(elem) => sent_as_text(elem),
        _ => false,
    }
}

// ---- decoding -------------------------------------------------------------

/// A cursor over a binary value that never reads past its end.
struct Reader<'a> {
    ty: &'a Type,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(malformed(
                self.ty,
                format!("needed {n} more bytes, {} left", self.buf.len()),
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, CodecError> {
        self.array().map(i16::from_be_bytes)
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        self.array().map(u16::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, CodecError> {
        self.array().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        self.array().map(i64::from_be_bytes)
    }

    fn finish(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed(
                self.ty,
                format!("{} unexpected trailing bytes", self.buf.len()),
            ))
        }
    }
}

/// Decodes one non-NULL binary value of type `ty`.
pub fn decode(ty: &Type, raw: &[u8]) -> Result<Value, CodecError> {
    match ty.kind() {
        Kind::Enum(_) => decode_text(ty, raw).map(Value::Text),
        Kind::Array(elem) => decode_array(ty, elem, raw),
        Kind::Domain(base) => decode(base, raw),
        Kind::Simple if is_citext(ty) => decode_text(ty, raw).map(Value::Text),
        Kind::Simple => decode_scalar(ty, raw),
        Kind::Range(elem) => decode_range(ty, elem, raw).map(|r| Value::Text(r.to_text())),
        Kind::Multirange(elem) => decode_multirange(ty, elem, raw).map(Value::Text),
        _ => Err(CodecError::Unsupported {
            pg_type: ty.name().to_string(),
        }),
    }
}

fn decode_text(ty: &Type, raw: &[u8]) -> Result<String, CodecError> {
    std::str::from_utf8(raw)
        .map(str::to_string)
        .map_err(|e| malformed(ty, format!("not UTF-8: {e}")))
}

fn decode_scalar(ty: &Type, raw: &[u8]) -> Result<Value, CodecError> {
    let mut r = Reader { ty, buf: raw };
    let value = match ty.oid() {
        oid::BOOL => match r.array::<1>()? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            [b] => return Err(malformed(ty, format!("boolean byte {b}"))),
        },
        oid::INT2 => Value::Int(r.i16()?.into()),
        oid::INT4 => Value::Int(r.i32()?.into()),
        oid::INT8 => Value::Int(r.i64()?),
        oid::FLOAT4 => Value::Float(f32::from_be_bytes(r.array()?).into()),
        oid::FLOAT8 => Value::Float(f64::from_be_bytes(r.array()?)),
        oid::NUMERIC => return numeric_from_binary(raw).map(Value::Text),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR => return decode_text(ty, raw).map(Value::Text),
        oid::JSON => return decode_text(ty, raw).map(Value::Json),
        oid::JSONB => {
            let [version] = r.array::<1>()?;
            if version != 1 {
                return Err(malformed(ty, format!("unknown jsonb version {version}")));
            }
            return decode_text(ty, r.buf).map(Value::Json);
        }
        oid::BYTEA => return Ok(Value::Bytes(raw.to_vec())),
        oid::UUID => Value::Text(uuid::Uuid::from_bytes(r.array()?).hyphenated().to_string()),
        oid::DATE => {
            let days = r.i32()?;
            let text = format_date(days);
            if parse_date(&text) != Some(days) {
                return Err(malformed(
                    ty,
                    format!("date {days} days from 2000-01-01 is out of range"),
                ));
            }
            Value::Text(text)
        }
        oid::TIME => {
            let us = r.i64()?;
            if !(0..=USECS_PER_DAY).contains(&us) {
                return Err(malformed(ty, format!("time of {us} microseconds")));
            }
            Value::Text(format_time(us))
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let us = r.i64()?;
            let known = TIMESTAMP_TEXT_RANGE.contains(&us);
            let (text, back) = if ty.oid() == oid::TIMESTAMP {
                let t = format_timestamp(us);
                let back = if known { Some(us) } else { parse_timestamp(&t) };
                (t, back)
            } else {
                let t = format_timestamptz(us);
                let back = if known {
                    Some(us)
                } else {
                    parse_timestamptz(&t)
                };
                (t, back)
            };
            if back != Some(us) {
                return Err(malformed(
                    ty,
                    format!("{us} microseconds from 2000-01-01 is out of range"),
                ));
            }
            Value::Text(text)
        }
        oid::INTERVAL => {
            let micros = r.i64()?;
            let days = r.i32()?;
            let months = r.i32()?;
            Value::Text(
                Interval {
                    months,
                    days,
                    micros,
                }
                .to_string(),
            )
        }
        oid::OID => Value::Int(r.u32()?.into()),
        oid::XML => return decode_text(ty, raw).map(Value::Text),
        oid::MONEY => Value::Text(format_money(r.i64()?)),
        oid::MACADDR | oid::MACADDR8 => {
            let n = if ty.oid() == oid::MACADDR { 6 } else { 8 };
            Value::Text(format_mac(r.take(n)?))
        }
        oid::INET | oid::CIDR => {
            let [_family, bits, _is_cidr, nb] = r.array::<4>()?;
            let bytes = r.take(nb.into())?;
            let inet = Inet::from_octets(bytes, bits)
                .ok_or_else(|| malformed(ty, format!("{nb}-byte address with /{bits}")))?;
            Value::Text(inet.to_text(ty.oid() == oid::CIDR))
        }
        oid::TIMETZ => {
            let us = r.i64()?;
            let zone = r.i32()?;
            if !(0..=USECS_PER_DAY).contains(&us) {
                return Err(malformed(ty, format!("time of {us} microseconds")));
            }
            Value::Text(format_timetz(us, zone))
        }
        oid::BIT | oid::VARBIT => {
            let len = r.i32()?;
            let len = usize::try_from(len).map_err(|_| malformed(ty, format!("{len} bits")))?;
            let bits = format_bits(len, r.buf)
                .ok_or_else(|| malformed(ty, format!("{len} bits in {} bytes", r.buf.len())))?;
            return Ok(Value::Text(bits));
        }
        oid::POINT | oid::LSEG | oid::BOX | oid::LINE | oid::CIRCLE => {
            let (kind, n) = match ty.oid() {
                oid::POINT => (Geometry::Point, 2),
                oid::LSEG => (Geometry::Lseg, 4),
                oid::BOX => (Geometry::Box, 4),
                oid::LINE => (Geometry::Line, 3),
                _ => (Geometry::Circle, 3),
            };
            let nums = (0..n)
                .map(|_| r.array().map(f64::from_be_bytes))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Text(format_geometry(kind, true, &nums))
        }
        oid::PATH | oid::POLYGON => {
            let (kind, closed) = if ty.oid() == oid::PATH {
                let [c] = r.array::<1>()?;
                (Geometry::Path, c != 0)
            } else {
                (Geometry::Polygon, true)
            };
            let n = r.i32()?;
            let n = usize::try_from(n).map_err(|_| malformed(ty, format!("{n} points")))?;
            if n > r.buf.len() / 16 {
                return Err(malformed(
                    ty,
                    format!("{n} points in {} bytes", r.buf.len()),
                ));
            }
            let nums = (0..2 * n)
                .map(|_| r.array().map(f64::from_be_bytes))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Text(format_geometry(kind, closed, &nums))
        }
        oid::TSVECTOR => {
            let n = r.i32()?;
            let n = usize::try_from(n).map_err(|_| malformed(ty, format!("{n} lexemes")))?;
            if n > r.buf.len() / 3 {
                return Err(malformed(
                    ty,
                    format!("{n} lexemes in {} bytes", r.buf.len()),
                ));
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let lexeme = cstring(&mut r)?;
                let npos = r.u16()?;
                let positions = (0..npos).map(|_| r.u16()).collect::<Result<Vec<_>, _>>()?;
                entries.push((lexeme, positions));
            }
            Value::Text(format_tsvector(&entries))
        }
        oid::TSQUERY => {
            let n = r.i32()?;
            let n = usize::try_from(n).map_err(|_| malformed(ty, format!("{n} items")))?;
            if n == 0 {
                r.finish()?;
                return Ok(Value::Text(String::new()));
            }
            let query = tsquery_node(&mut r, n.min(65_536), 0)?;
            Value::Text(query.to_text())
        }
        _ => {
            return Err(CodecError::Unsupported {
                pg_type: ty.name().to_string(),
            });
        }
    };
    r.finish()?;
    Ok(value)
}

/// A NUL-terminated UTF-8 string.
fn cstring(r: &mut Reader<'_>) -> Result<String, CodecError> {
    let end = r
        .buf
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| malformed(r.ty, "string without its NUL terminator"))?;
    let s = decode_text(r.ty, &r.buf[..end])?;
    r.buf = &r.buf[end + 1..];
    Ok(s)
}

/// One node of a binary `tsquery`: items in prefix order, an operator
/// followed by its right operand, then its left one (`tsquerysend`).
fn tsquery_node(r: &mut Reader<'_>, budget: usize, depth: usize) -> Result<TsQuery, CodecError> {
    if depth > 1000 || budget == 0 {
        return Err(malformed(r.ty, "tsquery nested too deep"));
    }
    let [kind] = r.array::<1>()?;
    match kind {
        1 => {
            let [weights, prefix] = r.array::<2>()?;
            let text = cstring(r)?;
            Ok(TsQuery::Lexeme {
                text,
                weights,
                prefix: prefix != 0,
            })
        }
        2 => {
            let [op] = r.array::<1>()?;
            let distance = if op == 4 { r.i16()? } else { 0 };
            let first = Box::new(tsquery_node(r, budget - 1, depth + 1)?);
            if op == 1 {
                return Ok(TsQuery::Not(first));
            }
            let left = Box::new(tsquery_node(r, budget - 1, depth + 1)?);
            match op {
                2 => Ok(TsQuery::And(left, first)),
                3 => Ok(TsQuery::Or(left, first)),
                4 => Ok(TsQuery::Phrase(left, first, distance)),
                o => Err(malformed(r.ty, format!("tsquery operator {o}"))),
            }
        }
        k => Err(malformed(r.ty, format!("tsquery item type {k}"))),
    }
}

const RANGE_EMPTY: u8 = 0x01;
const RANGE_LB_INC: u8 = 0x02;
const RANGE_UB_INC: u8 = 0x04;
const RANGE_LB_INF: u8 = 0x08;
const RANGE_UB_INF: u8 = 0x10;

/// A binary range (`range_send`): a flags byte, then each finite bound as a
/// length-prefixed element.
fn decode_range(ty: &Type, elem: &Type, raw: &[u8]) -> Result<Range, CodecError> {
    let mut r = Reader { ty, buf: raw };
    let [flags] = r.array::<1>()?;
    if flags & RANGE_EMPTY != 0 {
        r.finish()?;
        return Ok(Range::Empty);
    }
    let mut bound = |inf: u8, inc: u8| -> Result<Option<RangeBound>, CodecError> {
        if flags & inf != 0 {
            return Ok(None);
        }
        let n = r.i32()?;
        let n = usize::try_from(n).map_err(|_| malformed(ty, format!("bound of {n} bytes")))?;
        let value = match decode(elem, r.take(n)?)? {
            Value::Int(i) => i.to_string(),
            Value::Text(t) => t,
            v => return Err(mismatch(elem, &v)),
        };
        Ok(Some(RangeBound {
            value,
            inclusive: flags & inc != 0,
        }))
    };
    let lower = bound(RANGE_LB_INF, RANGE_LB_INC)?;
    let upper = bound(RANGE_UB_INF, RANGE_UB_INC)?;
    r.finish()?;
    Ok(Range::Bounds { lower, upper })
}

/// A binary multirange: a count, then length-prefixed ranges.
fn decode_multirange(ty: &Type, elem: &Type, raw: &[u8]) -> Result<String, CodecError> {
    let mut r = Reader { ty, buf: raw };
    let n = r.i32()?;
    let n = usize::try_from(n).map_err(|_| malformed(ty, format!("{n} ranges")))?;
    if n > r.buf.len() / 5 {
        return Err(malformed(
            ty,
            format!("{n} ranges in {} bytes", r.buf.len()),
        ));
    }
    let mut ranges = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.i32()?;
        let len =
            usize::try_from(len).map_err(|_| malformed(ty, format!("range of {len} bytes")))?;
        ranges.push(decode_range(ty, elem, r.take(len)?)?);
    }
    r.finish()?;
    Ok(format_multirange(&ranges))
}

fn decode_array(ty: &Type, elem: &Type, raw: &[u8]) -> Result<Value, CodecError> {
    let mut r = Reader { ty, buf: raw };
    let dims = r.i32()?;
    let _has_nulls = r.i32()?;
    let elem_oid = r.u32()?;
    if elem_oid != elem.oid() {
        return Err(malformed(
            ty,
            format!("element type {elem_oid}, expected {}", elem.oid()),
        ));
    }
    // PostgreSQL allows at most 6 dimensions (MAXDIM).
    if !(0..=6).contains(&dims) {
        return Err(malformed(ty, format!("{dims} dimensions")));
    }
    if dims == 0 {
        r.finish()?;
        return Ok(Value::Array(Vec::new()));
    }
    let mut lens = Vec::with_capacity(dims as usize);
    let mut total: usize = 1;
    for _ in 0..dims {
        let len = r.i32()?;
        let _lower_bound = r.i32()?; // normalised to 1: Value::Array has none
        let len = usize::try_from(len).map_err(|_| malformed(ty, format!("length {len}")))?;
        total = total.saturating_mul(len);
        lens.push(len);
    }
    // Each element takes at least its 4-byte length: refuse absurd lengths
    // before allocating.
    if total > r.buf.len() / 4 {
        return Err(malformed(
            ty,
            format!("{total} elements in {} bytes", r.buf.len()),
        ));
    }
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let n = r.i32()?;
        if n < 0 {
            items.push(Value::Null);
        } else {
            let bytes = r.take(n as usize)?;
            items.push(decode(elem, bytes)?);
        }
    }
    r.finish()?;
    // A multi-dimensional array is an array of arrays, innermost last.
    for &len in lens[1..].iter().rev() {
        let mut it = items.into_iter();
        let groups = total / len.max(1);
        items = (0..groups)
            .map(|_| Value::Array(it.by_ref().take(len).collect()))
            .collect();
        total = groups;
    }
    Ok(Value::Array(items))
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
const NUMERIC_DSCALE_MAX: u16 = 0x3FFF;

/// The decimal text PostgreSQL prints for a binary `numeric` (`-12.50`,
/// `0.000`, `NaN`, `Infinity`, `-Infinity`).
pub fn numeric_from_binary(raw: &[u8]) -> Result<String, CodecError> {
    let ty = Type::NUMERIC;
    let mut r = Reader { ty: &ty, buf: raw };
    let ndigits = r.i16()?;
    let weight = i64::from(r.i16()?);
    let sign = r.u16()?;
    let dscale = r.u16()?;
    let ndigits =
        usize::try_from(ndigits).map_err(|_| malformed(&ty, format!("{ndigits} digits")))?;
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        let d = r.i16()?;
        if !(0..10_000).contains(&d) {
            return Err(malformed(&ty, format!("base-10000 digit {d}")));
        }
        digits.push(d);
    }
    r.finish()?;
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        NUMERIC_POS | NUMERIC_NEG => {}
        s => return Err(malformed(&ty, format!("sign {s:#06x}"))),
    }
    if dscale > NUMERIC_DSCALE_MAX {
        return Err(malformed(&ty, format!("display scale {dscale}")));
    }
    let digit = |i: i64| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut s = String::new();
    if sign == NUMERIC_NEG {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            // The first group without leading zeros, as PostgreSQL prints it.
            let _ = if i == 0 {
                write!(s, "{}", digit(i))
            } else {
                write!(s, "{:04}", digit(i))
            };
        }
    }
    if dscale > 0 {
        let dscale = usize::from(dscale);
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// Encodes a decimal (`-12.50`, `1.5e3`, `NaN`, `Infinity`) as a binary
/// `numeric` whose display scale is the number of fractional digits written,
/// as PostgreSQL's `numeric_in` would read it.
pub fn numeric_to_binary(text: &str, out: &mut BytesMut) -> Result<(), CodecError> {
    let ty = Type::NUMERIC;
    let norm = normalise_numeric(text).ok_or_else(|| invalid(&ty, text, "not a decimal number"))?;
    let header = |out: &mut BytesMut, ndigits: i16, weight: i16, sign: u16, dscale: u16| {
        out.put_i16(ndigits);
        out.put_i16(weight);
        out.put_u16(sign);
        out.put_u16(dscale);
    };
    match norm.as_str() {
        "NaN" => {
            header(out, 0, 0, NUMERIC_NAN, 0);
            return Ok(());
        }
        "Infinity" => {
            header(out, 0, 0, NUMERIC_PINF, 0);
            return Ok(());
        }
        "-Infinity" => {
            header(out, 0, 0, NUMERIC_NINF, 0);
            return Ok(());
        }
        _ => {}
    }
    let (neg, body) = match norm.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, norm.as_str()),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let dscale = u16::try_from(frac.len())
        .ok()
        .filter(|d| *d <= NUMERIC_DSCALE_MAX)
        .ok_or_else(|| invalid(&ty, text, "too many fractional digits"))?;
    let int = int.trim_start_matches('0');
    // Align on base-10000 groups around the decimal point.
    let mut aligned = "0".repeat((4 - int.len() % 4) % 4);
    aligned.push_str(int);
    let int_groups = aligned.len() / 4;
    aligned.push_str(frac);
    aligned.push_str(&"0".repeat((4 - frac.len() % 4) % 4));
    let mut groups: Vec<i16> = aligned
        .as_bytes()
        .chunks(4)
        .map(|c| {
            c.iter()
                .fold(0i16, |acc, b| acc * 10 + i16::from(b.wrapping_sub(b'0')))
        })
        .collect();
    let mut weight = int_groups as i64 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i64;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let (weight, sign) = if groups.is_empty() {
        (0, NUMERIC_POS)
    } else {
        (weight, if neg { NUMERIC_NEG } else { NUMERIC_POS })
    };
    let weight = i16::try_from(weight).map_err(|_| invalid(&ty, text, "out of range"))?;
    let ndigits = i16::try_from(groups.len()).map_err(|_| invalid(&ty, text, "too many digits"))?;
    header(out, ndigits, weight, sign, dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

// ---- encoding -------------------------------------------------------------

/// Encodes `value` as a binary value of type `ty`. `Null` gives
/// [`IsNull::Yes`] and writes nothing.
pub fn encode(value: &Value, ty: &Type, out: &mut BytesMut) -> Result<IsNull, CodecError> {
    if value.is_null() {
        return Ok(IsNull::Yes);
    }
    match ty.kind() {
        // Before the array arm: an array of them is an array literal.
        _ if sent_as_text(ty) => encode_as_text(value, ty, out),
        Kind::Enum(_) => match value {
            Value::Text(s) => encode_text(ty, s, out),
            v => Err(mismatch(ty, v)),
        },
        Kind::Array(elem) => match value {
            Value::Array(items) => encode_array(ty, elem, items, out),
            v => Err(mismatch(ty, v)),
        },
        Kind::Domain(base) => return encode(value, base, out),
        Kind::Simple if is_citext(ty) => match value {
            Value::Text(s) => encode_text(ty, s, out),
            v => Err(mismatch(ty, v)),
        },
        Kind::Simple => encode_scalar(value, ty, out),
        Kind::Range(elem) => match value {
            Value::Text(s) => {
                let range = Range::parse(s).ok_or_else(|| invalid(ty, s, "expected a range"))?;
                encode_range(&range, ty, elem, out)
            }
            v => Err(mismatch(ty, v)),
        },
        Kind::Multirange(elem) => match value {
            Value::Text(s) => {
                let ranges = parse_multirange(s)
                    .ok_or_else(|| invalid(ty, s, "expected {range, range…}"))?;
                let n =
                    i32::try_from(ranges.len()).map_err(|_| invalid(ty, s, "too many ranges"))?;
                out.put_i32(n);
                for range in &ranges {
                    let at = out.len();
                    out.put_i32(0);
                    encode_range(range, ty, elem, out)?;
                    let n = i32::try_from(out.len() - at - 4)
                        .map_err(|_| invalid(ty, s, "range too large"))?;
                    out[at..at + 4].copy_from_slice(&n.to_be_bytes());
                }
                Ok(())
            }
            v => Err(mismatch(ty, v)),
        },
        _ => Err(CodecError::Unsupported {
            pg_type: ty.name().to_string(),
        }),
    }?;
    Ok(IsNull::No)
}

/// The text form of a value sent as text ([`sent_as_text`]): the value's
/// own text, or an array literal `{"…","…",NULL}` of them (nested for a
/// multi-dimensional array).
fn encode_as_text(value: &Value, ty: &Type, out: &mut BytesMut) -> Result<(), CodecError> {
    match value {
        Value::Text(s) => encode_text(ty, s, out),
        Value::Array(items) => {
            out.put_u8(b'{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                match item {
                    Value::Null => out.put_slice(b"NULL"),
                    Value::Array(_) => encode_as_text(item, ty, out)?,
                    Value::Text(s) => {
                        if s.contains('\0') {
                            return Err(invalid(ty, s, "text cannot contain a NUL character"));
                        }
                        out.put_u8(b'"');
                        for c in s.chars() {
                            if c == '"' || c == '\\' {
                                out.put_u8(b'\\');
                            }
                            let mut buf = [0u8; 4];
                            out.put_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        out.put_u8(b'"');
                    }
                    v => return Err(mismatch(ty, v)),
                }
            }
            out.put_u8(b'}');
            Ok(())
        }
        v => Err(mismatch(ty, v)),
    }
}

/// A range in binary form (see [`decode_range`]).
fn encode_range(
    range: &Range,
    ty: &Type,
    elem: &Type,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let (lower, upper) = match range {
        Range::Empty => {
            out.put_u8(RANGE_EMPTY);
            return Ok(());
        }
        Range::Bounds { lower, upper } => (lower, upper),
    };
    let mut flags = 0u8;
    match lower {
        None => flags |= RANGE_LB_INF,
        Some(b) if b.inclusive => flags |= RANGE_LB_INC,
        Some(_) => {}
    }
    match upper {
        None => flags |= RANGE_UB_INF,
        Some(b) if b.inclusive => flags |= RANGE_UB_INC,
        Some(_) => {}
    }
    out.put_u8(flags);
    for b in [lower, upper].into_iter().flatten() {
        let v = if matches!(elem.oid(), oid::INT4 | oid::INT8) {
            Value::Int(
                b.value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(ty, &b.value, "bound is not an integer"))?,
            )
        } else {
            Value::Text(b.value.clone())
        };
        let at = out.len();
        out.put_i32(0);
        encode(&v, elem, out)?;
        let n =
            i32::try_from(out.len() - at - 4).map_err(|_| invalid(ty, &b.value, "too large"))?;
        out[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }
    Ok(())
}

fn encode_text(ty: &Type, s: &str, out: &mut BytesMut) -> Result<(), CodecError> {
    if s.contains('\0') {
        return Err(invalid(ty, s, "text cannot contain a NUL character"));
    }
    out.put_slice(s.as_bytes());
    Ok(())
}

fn int_in(ty: &Type, i: i64, lo: i64, hi: i64) -> Result<i64, CodecError> {
    if (lo..=hi).contains(&i) {
        Ok(i)
    } else {
        Err(invalid(ty, &i.to_string(), "out of range"))
    }
}

fn encode_scalar(value: &Value, ty: &Type, out: &mut BytesMut) -> Result<(), CodecError> {
    match (ty.oid(), value) {
        (oid::BOOL, Value::Bool(b)) => out.put_u8(u8::from(*b)),
        (oid::INT2, Value::Int(i)) => {
            out.put_i16(int_in(ty, *i, i16::MIN.into(), i16::MAX.into())? as i16)
        }
        (oid::INT4, Value::Int(i)) => {
            out.put_i32(int_in(ty, *i, i32::MIN.into(), i32::MAX.into())? as i32)
        }
        (oid::INT8, Value::Int(i)) => out.put_i64(*i),
        (oid::FLOAT4, Value::Float(f)) => {
            let narrow = *f as f32;
            if f.is_finite() && narrow.is_infinite() {
                return Err(invalid(ty, &f.to_string(), "out of range"));
            }
            out.put_f32(narrow);
        }
        (oid::FLOAT4, Value::Int(i)) => {
            let f = *i as f32;
            if f as i128 != i128::from(*i) {
                return Err(invalid(ty, &i.to_string(), "not exactly representable"));
            }
            out.put_f32(f);
        }
        (oid::FLOAT8, Value::Float(f)) => out.put_f64(*f),
        (oid::FLOAT8, Value::Int(i)) => {
            let f = *i as f64;
            if f as i128 != i128::from(*i) {
                return Err(invalid(ty, &i.to_string(), "not exactly representable"));
            }
            out.put_f64(f);
        }
        (oid::NUMERIC, Value::Text(s)) => numeric_to_binary(s, out)?,
        (oid::NUMERIC, Value::Int(i)) => numeric_to_binary(&i.to_string(), out)?,
        (oid::NUMERIC, Value::Float(f)) => {
            let text = if f.is_nan() {
                "NaN".to_string()
            } else if f.is_infinite() {
                if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
            } else {
                format!("{f:e}")
            };
            numeric_to_binary(&text, out)?
        }
        (oid::TEXT | oid::VARCHAR | oid::BPCHAR, Value::Text(s)) => encode_text(ty, s, out)?,
        (oid::JSON, Value::Json(s)) => encode_text(ty, s, out)?,
        (oid::JSONB, Value::Json(s)) => {
            out.put_u8(1);
            encode_text(ty, s, out)?
        }
        (oid::BYTEA, Value::Bytes(b)) => out.put_slice(b),
        (oid::UUID, Value::Text(s)) => {
            let u = uuid::Uuid::parse_str(s.trim()).map_err(|e| invalid(ty, s, e.to_string()))?;
            out.put_slice(u.as_bytes());
        }
        (oid::DATE, Value::Text(s)) => {
            out.put_i32(parse_date(s).ok_or_else(|| invalid(ty, s, "expected YYYY-MM-DD"))?)
        }
        (oid::TIME, Value::Text(s)) => {
            out.put_i64(parse_time(s).ok_or_else(|| invalid(ty, s, "expected HH:MM:SS.ffffff"))?)
        }
        (oid::TIMESTAMP, Value::Text(s)) => out.put_i64(
            parse_timestamp(s)
                .ok_or_else(|| invalid(ty, s, "expected YYYY-MM-DDTHH:MM:SS.ffffff"))?,
        ),
        (oid::TIMESTAMPTZ, Value::Text(s)) => out.put_i64(
            parse_timestamptz(s)
                .ok_or_else(|| invalid(ty, s, "expected an RFC 3339 timestamp with a zone"))?,
        ),
        (oid::INTERVAL, Value::Text(s)) => {
            let i = parse_interval(s)
                .ok_or_else(|| invalid(ty, s, "expected P<months>M<days>DT<seconds>S"))?;
            out.put_i64(i.micros);
            out.put_i32(i.days);
            out.put_i32(i.months);
        }
        (oid::OID, Value::Int(i)) => out.put_u32(int_in(ty, *i, 0, u32::MAX.into())? as u32),
        (oid::XML, Value::Text(s)) => encode_text(ty, s, out)?,
        (oid::MONEY, Value::Text(s)) => out.put_i64(parse_money(s).ok_or_else(|| {
            invalid(
                ty,
                s,
                "expected a decimal with at most two fractional digits",
            )
        })?),
        (oid::MACADDR | oid::MACADDR8, Value::Text(s)) => {
            let n = if ty.oid() == oid::MACADDR { 6 } else { 8 };
            out.put_slice(&parse_mac(s, n).ok_or_else(|| invalid(ty, s, "expected a MAC address"))?)
        }
        (oid::INET | oid::CIDR, Value::Text(s)) => {
            let cidr = ty.oid() == oid::CIDR;
            let inet = Inet::parse(s, cidr).ok_or_else(|| invalid(ty, s, "expected an address"))?;
            let bytes = inet.octets();
            // PGSQL_AF_INET is AF_INET (2), PGSQL_AF_INET6 one more.
            out.put_u8(if bytes.len() == 4 { 2 } else { 3 });
            out.put_u8(inet.bits);
            out.put_u8(u8::from(cidr));
            out.put_u8(bytes.len() as u8);
            out.put_slice(&bytes);
        }
        (oid::TIMETZ, Value::Text(s)) => {
            let (us, zone) =
                parse_timetz(s).ok_or_else(|| invalid(ty, s, "expected HH:MM:SS.ffffff+HH:MM"))?;
            out.put_i64(us);
            out.put_i32(zone);
        }
        (oid::BIT | oid::VARBIT, Value::Text(s)) => {
            let bytes = parse_bits(s).ok_or_else(|| invalid(ty, s, "expected 0s and 1s"))?;
            out.put_i32(i32::try_from(s.len()).map_err(|_| invalid(ty, s, "too long"))?);
            out.put_slice(&bytes);
        }
        (
            oid::POINT | oid::LSEG | oid::BOX | oid::LINE | oid::CIRCLE | oid::PATH | oid::POLYGON,
            Value::Text(s),
        ) => {
            let kind = match ty.oid() {
                oid::POINT => Geometry::Point,
                oid::LSEG => Geometry::Lseg,
                oid::BOX => Geometry::Box,
                oid::LINE => Geometry::Line,
                oid::CIRCLE => Geometry::Circle,
                oid::PATH => Geometry::Path,
                _ => Geometry::Polygon,
            };
            let (closed, nums) = parse_geometry(kind, s)
                .ok_or_else(|| invalid(ty, s, format!("expected a {}", ty.name())))?;
            if kind == Geometry::Path {
                out.put_u8(u8::from(closed));
            }
            if matches!(kind, Geometry::Path | Geometry::Polygon) {
                out.put_i32(
                    i32::try_from(nums.len() / 2).map_err(|_| invalid(ty, s, "too many points"))?,
                );
            }
            for f in nums {
                out.put_f64(f);
            }
        }
        (o, v) if oid::is_supported_scalar(o) => return Err(mismatch(ty, v)),
        _ => {
            return Err(CodecError::Unsupported {
                pg_type: ty.name().to_string(),
            });
        }
    }
    Ok(())
}

fn encode_array(
    ty: &Type,
    elem: &Type,
    items: &[Value],
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    if items.is_empty() {
        out.put_i32(0);
        out.put_i32(0);
        out.put_u32(elem.oid());
        return Ok(());
    }
    // A multi-dimensional array: its shape from the nesting, which must be
    // rectangular, then the elements in row-major order.
    let mut lens = vec![items.len()];
    let mut level: Vec<&Value> = items.iter().collect();
    while let Some(Value::Array(first)) = level.first() {
        let n = first.len();
        let mut next = Vec::with_capacity(level.len() * n);
        for v in &level {
            match v {
                Value::Array(sub) if sub.len() == n => next.extend(sub.iter()),
                _ => {
                    return Err(CodecError::Ragged {
                        pg_type: ty.name().to_string(),
                        message: format!(
                            "dimension {} mixes sub-arrays of {n} elements with other values",
                            lens.len() + 1
                        ),
                    });
                }
            }
        }
        lens.push(n);
        level = next;
    }
    if level.iter().any(|v| matches!(v, Value::Array(_))) {
        return Err(CodecError::Ragged {
            pg_type: ty.name().to_string(),
            message: format!("dimension {} mixes arrays and values", lens.len()),
        });
    }
    if lens.len() > 6 {
        return Err(invalid(
            ty,
            &format!("{} dimensions", lens.len()),
            "at most 6",
        ));
    }
    if lens.contains(&0) {
        // `{{}}` is the empty array to PostgreSQL.
        out.put_i32(0);
        out.put_i32(0);
        out.put_u32(elem.oid());
        return Ok(());
    }
    out.put_i32(lens.len() as i32);
    out.put_i32(i32::from(level.iter().any(|v| v.is_null())));
    out.put_u32(elem.oid());
    for &n in &lens {
        out.put_i32(
            i32::try_from(n).map_err(|_| invalid(ty, &format!("{n} elements"), "too long"))?,
        );
        out.put_i32(1);
    }
    for item in level {
        let at = out.len();
        out.put_i32(0);
        match encode(item, elem, out)? {
            IsNull::Yes => out[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes()),
            IsNull::No => {
                let n = out.len() - at - 4;
                let n = i32::try_from(n).map_err(|_| invalid(elem, "element", "too large"))?;
                out[at..at + 4].copy_from_slice(&n.to_be_bytes());
            }
        }
    }
    Ok(())
}

// ---- the driver's traits --------------------------------------------------

/// A [`Value`] read from PostgreSQL: `row.try_get::<_, PgValue>(i)`. NULL
/// reads as `Value::Null`.
#[derive(Debug, Clone, PartialEq)]
pub struct PgValue(pub Value);

impl<'a> FromSql<'a> for PgValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(PgValue(decode(ty, raw)?))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        supports(ty)
    }
}

/// A [`Value`] bound as a parameter, encoded for the type the server
/// expects: `client.query(sql, &[&Bind(&v)])`.
#[derive(Debug, Clone, Copy)]
pub struct Bind<'a>(pub &'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        Ok(encode(self.0, ty, out)?)
    }

    fn accepts(ty: &Type) -> bool {
        supports(ty)
    }

    fn encode_format(&self, ty: &Type) -> postgres_types::Format {
        if sent_as_text(ty) {
            postgres_types::Format::Text
        } else {
            postgres_types::Format::Binary
        }
    }

    to_sql_checked!();
}

/// Binds a slice of values, for `query(sql, &refs)` where `refs` is
/// `binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect::<Vec<_>>()`.
pub fn binds(values: &[Value]) -> Vec<Bind<'_>> {
    values.iter().map(Bind).collect()
}

/// Every column of `row` as a [`Value`]; the error names the column and its
/// type.
pub fn row_values(row: &tokio_postgres::Row) -> Result<Vec<Value>, RemoteError> {
    (0..row.len())
        .map(|i| {
            row.try_get::<_, PgValue>(i).map(|v| v.0).map_err(|source| {
                let col = &row.columns()[i];
                RemoteError::Value {
                    action: "reading a row".into(),
                    column: col.name().to_string(),
                    pg_type: col.type_().name().to_string(),
                    source,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(text: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        numeric_to_binary(text, &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
        out.to_vec()
    }

    fn roundtrip(text: &str) -> String {
        numeric_from_binary(&enc(text)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn numeric_binary_layout() {
        // 12345.678 = 1|2345|6780, weight 1, dscale 3 (what numeric_send gives).
        assert_eq!(
            enc("12345.678"),
            vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1A, 0x7C]
        );
        // Zero keeps its scale, no digits, positive.
        assert_eq!(enc("-0.00"), vec![0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(enc("NaN"), vec![0, 0, 0, 0, 0xC0, 0, 0, 0]);
        assert_eq!(enc("-Infinity"), vec![0, 0, 0, 0, 0xF0, 0, 0, 0]);
        // 0.0001: one digit at weight -1.
        assert_eq!(enc("0.0001"), vec![0, 1, 0xFF, 0xFF, 0, 0, 0, 4, 0, 1]);
        // 10000 = one digit at weight 1; trailing zero groups dropped.
        assert_eq!(enc("10000"), vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn numeric_text() {
        for (input, out) in [
            ("0", "0"),
            ("1.50", "1.50"),
            ("-1.50", "-1.50"),
            ("0.00", "0.00"),
            ("100000000", "100000000"),
            ("0.000000001", "0.000000001"),
            ("1e3", "1000"),
            (
                "-12345678901234567890.123456789",
                "-12345678901234567890.123456789",
            ),
            ("Infinity", "Infinity"),
            ("nan", "NaN"),
        ] {
            assert_eq!(roundtrip(input), out);
        }
    }

    #[test]
    fn numeric_refuses_garbage() {
        let mut out = BytesMut::new();
        assert!(matches!(
            numeric_to_binary("12a", &mut out),
            Err(CodecError::Invalid { .. })
        ));
        assert!(numeric_from_binary(&[0, 1, 0, 0]).is_err());
        assert!(numeric_from_binary(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err()); // digit missing
        assert!(numeric_from_binary(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_err()); // 10000
        assert!(numeric_from_binary(&[0, 0, 0, 0, 0x12, 0x34, 0, 0]).is_err()); // sign
        assert!(numeric_from_binary(&[0xFF, 0xFF, 0, 0, 0, 0, 0, 0]).is_err()); // ndigits < 0
    }

    #[test]
    fn malformed_buffers_are_errors_not_panics() {
        for ty in [
            Type::BOOL,
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::UUID,
            Type::DATE,
            Type::TIME,
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::INTERVAL,
            Type::INT4_ARRAY,
            Type::TEXT_ARRAY,
        ] {
            for raw in [&[][..], &[1, 2, 3][..], &[0xFF; 40][..]] {
                assert!(decode(&ty, raw).is_err(), "{ty} {raw:?}");
            }
        }
        assert!(decode(&Type::TEXT, &[0xFF]).is_err());
        assert!(decode(&Type::JSONB, &[2, b'{', b'}']).is_err());
        assert!(decode(&Type::JSONB, &[]).is_err());
        assert!(decode(&Type::TIME, &(USECS_PER_DAY + 1).to_be_bytes()).is_err());
        assert!(decode(&Type::INET, &[0; 8]).is_err());
        for ty in [
            Type::INET,
            Type::MACADDR,
            Type::TIMETZ,
            Type::MONEY,
            Type::VARBIT,
            Type::POINT,
            Type::PATH,
            Type::POLYGON,
            Type::TS_VECTOR,
            Type::TSQUERY,
            Type::INT4_RANGE,
            Type::TSTZ_RANGE,
            Type::INT4MULTI_RANGE,
        ] {
            for raw in [&[1, 2, 3][..], &[0xFF; 40][..]] {
                assert!(decode(&ty, raw).is_err(), "{ty} {raw:?}");
            }
        }
    }

    #[test]
    fn arrays_roundtrip_without_a_server() {
        let v = Value::Array(vec![Value::Int(1), Value::Null, Value::Int(-3)]);
        let mut out = BytesMut::new();
        assert!(matches!(
            encode(&v, &Type::INT4_ARRAY, &mut out),
            Ok(IsNull::No)
        ));
        assert_eq!(decode(&Type::INT4_ARRAY, &out), Ok(v));
        let empty = Value::Array(vec![]);
        let mut out = BytesMut::new();
        let _ = encode(&empty, &Type::TEXT_ARRAY, &mut out);
        assert_eq!(out.to_vec(), vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]);
        assert_eq!(decode(&Type::TEXT_ARRAY, &out), Ok(empty));
        // Multi-dimensional: arrays of arrays, rectangular.
        let grid = Value::Array(vec![
            Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)]),
            Value::Array(vec![Value::Int(4), Value::Int(5), Value::Int(6)]),
        ]);
        let mut out = BytesMut::new();
        assert!(encode(&grid, &Type::INT4_ARRAY, &mut out).is_ok());
        assert_eq!(&out[..12], &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 23]);
        assert_eq!(decode(&Type::INT4_ARRAY, &out), Ok(grid));
        let ragged = Value::Array(vec![
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
        ]);
        assert!(matches!(
            encode(&ragged, &Type::INT4_ARRAY, &mut BytesMut::new()),
            Err(CodecError::Ragged { .. })
        ));
        let mixed = Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Int(1)])]);
        assert!(matches!(
            encode(&mixed, &Type::INT4_ARRAY, &mut BytesMut::new()),
            Err(CodecError::Ragged { .. })
        ));
        let nested_empty = Value::Array(vec![Value::Array(vec![])]);
        let mut out = BytesMut::new();
        assert!(encode(&nested_empty, &Type::INT4_ARRAY, &mut out).is_ok());
        assert_eq!(decode(&Type::INT4_ARRAY, &out), Ok(Value::Array(vec![])));
    }

    #[test]
    fn mismatches_are_clear() {
        let err = encode(&Value::Text("x".into()), &Type::INT4, &mut BytesMut::new());
        assert_eq!(
            err.err().map(|e| e.to_string()),
            Some("a Text value cannot be sent as type int4".to_string())
        );
        let err = encode(&Value::Int(70_000), &Type::INT2, &mut BytesMut::new());
        assert_eq!(
            err.err().map(|e| e.to_string()),
            Some("\"70000\" is not a valid int2: out of range".to_string())
        );
        let err = encode(
            &Value::Text("nope".into()),
            &Type::UUID,
            &mut BytesMut::new(),
        );
        assert!(err.is_err());
        assert!(encode(&Value::Int(i64::MAX), &Type::FLOAT8, &mut BytesMut::new()).is_err());
        assert!(encode(&Value::Float(1e300), &Type::FLOAT4, &mut BytesMut::new()).is_err());
        assert!(matches!(
            encode(&Value::Null, &Type::INT4, &mut BytesMut::new()),
            Ok(IsNull::Yes)
        ));
    }

    proptest! {
        #[test]
        fn numeric_roundtrips(int in "[0-9]{0,40}", frac in "[0-9]{0,40}", neg: bool, point: bool) {
            prop_assume!(!int.is_empty() || (point && !frac.is_empty()));
            let text = format!(
                "{}{}{}{}",
                if neg { "-" } else { "" },
                int,
                if point { "." } else { "" },
                if point { frac.as_str() } else { "" },
            );
            let Some(norm) = normalise_numeric(&text) else {
                return Err(TestCaseError::fail(format!("{text} did not normalise")));
            };
            let bytes = enc(&norm);
            prop_assert_eq!(numeric_from_binary(&bytes), Ok(norm.clone()));
            // Canonical binary: encoding the decoded text gives the same bytes.
            prop_assert_eq!(enc(&roundtrip(&norm)), bytes);
        }

        #[test]
        fn numeric_decoder_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = numeric_from_binary(&raw);
        }
    }
}
