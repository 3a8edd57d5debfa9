//! Encoding: a [`Value`] to the binary form of the parameter type the server
//! expects (scalars by OID, enums, arrays, ranges and multiranges; the text
//! search types in text form).

use bytes::{BufMut, BytesMut};
use outpost_core::Value;
use outpost_core::forms::{
    Geometry, Inet, Range, parse_bits, parse_geometry, parse_mac, parse_money, parse_multirange,
    parse_timetz,
};
use outpost_core::types::{
    parse_date, parse_interval, parse_time, parse_timestamp, parse_timestamptz,
};
use postgres_types::{IsNull, Kind, Type};

use super::decode::{RANGE_EMPTY, RANGE_LB_INC, RANGE_LB_INF, RANGE_UB_INC, RANGE_UB_INF};
use super::numeric::numeric_to_binary;
use super::{CodecError, invalid, is_citext, mismatch, oid, sent_as_text};

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
