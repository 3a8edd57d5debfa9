//! Decoding: PostgreSQL's binary form of a supported type to a [`Value`],
//! never reading past the buffer (a short or malformed buffer is a
//! [`CodecError`]).

use outpost_core::Value;
use outpost_core::forms::{
    Geometry, Inet, Range, RangeBound, TsQuery, format_bits, format_geometry, format_mac,
    format_money, format_multirange, format_timetz, format_tsvector,
};
use outpost_core::types::{
    Interval, TIMESTAMP_TEXT_RANGE, USECS_PER_DAY, format_date, format_time, format_timestamp,
    format_timestamptz, parse_date, parse_timestamp, parse_timestamptz,
};
use postgres_types::{Kind, Type};

use super::numeric::numeric_from_binary;
use super::{CodecError, is_citext, malformed, mismatch, oid};

/// A cursor over a binary value that never reads past its end.
pub(super) struct Reader<'a> {
    pub(super) ty: &'a Type,
    pub(super) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
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

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn i16(&mut self) -> Result<i16, CodecError> {
        self.array().map(i16::from_be_bytes)
    }

    pub(super) fn u16(&mut self) -> Result<u16, CodecError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(super) fn i32(&mut self) -> Result<i32, CodecError> {
        self.array().map(i32::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(super) fn i64(&mut self) -> Result<i64, CodecError> {
        self.array().map(i64::from_be_bytes)
    }

    pub(super) fn finish(&self) -> Result<(), CodecError> {
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

pub(super) const RANGE_EMPTY: u8 = 0x01;
pub(super) const RANGE_LB_INC: u8 = 0x02;
pub(super) const RANGE_UB_INC: u8 = 0x04;
pub(super) const RANGE_LB_INF: u8 = 0x08;
pub(super) const RANGE_UB_INF: u8 = 0x10;

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
