//! Values kept as text, brought to their canonical form: floats and
//! numerics in any spelling PostgreSQL reads, and each text-typed column's
//! input (uuids, dates and times, network, bit-string, range and the other
//! forms of [`crate::forms`]) normalised to the text the replica stores.

use serde_json::Value as Json;

use super::datetime::{
    format_date, format_time, format_timestamp, format_timestamptz, parse_date, parse_interval,
    parse_time, parse_timestamp, parse_timestamptz,
};
use super::{ColumnType, ScalarType, Value, ValueError, bad};
use crate::forms;

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

pub(super) fn normalise_text(
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
