//! The value semantics the replica has to reproduce in Rust because SQLite
//! does not have them: exact comparison of decimal text ([`compare_numeric`],
//! registered by `outpost-local` as the collation [`NUMERIC_COLLATION`]),
//! PostgreSQL's `lower()` ([`lower`], registered as [`LOWER_FUNCTION`]), and
//! the type modifiers PostgreSQL applies when it stores a value
//! ([`apply_typmod`]: `numeric(p,s)` rounding, `varchar(n)`/`char(n)`
//! length and padding, `timestamp(p)` precision), so that a row written to
//! the replica holds what the server would hold.

use std::cmp::Ordering;

use outpost_core::types::{
    ColumnType, ScalarType, Value, format_time, format_timestamp, format_timestamptz, parse_time,
    parse_timestamp, parse_timestamptz,
};

/// Name of the SQLite collation that orders `numeric` text by value.
pub const NUMERIC_COLLATION: &str = "outpost_numeric";

/// Name of the SQLite function that lowercases as PostgreSQL's `lower()`.
pub const LOWER_FUNCTION: &str = "outpost_lower";

#[derive(Debug, PartialEq, Eq)]
enum Decimal<'a> {
    NegInfinity,
    Finite {
        negative: bool,
        /// Integer digits without leading zeros.
        int: &'a str,
        /// Fraction digits without trailing zeros.
        frac: &'a str,
    },
    Infinity,
    NaN,
}

fn parse_decimal(s: &str) -> Option<Decimal<'_>> {
    match s {
        "NaN" => return Some(Decimal::NaN),
        "Infinity" | "+Infinity" => return Some(Decimal::Infinity),
        "-Infinity" => return Some(Decimal::NegInfinity),
        _ => {}
    }
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(Decimal::Finite {
        negative,
        int: int.trim_start_matches('0'),
        frac: frac.trim_end_matches('0'),
    })
}

/// Compares two `numeric` values in PostgreSQL's decimal text by value, as
/// PostgreSQL orders them: `-Infinity` < numbers < `Infinity` < `NaN`, and
/// `1.5` equals `1.50`. Text that is no decimal sorts after `NaN`, bytewise.
///
/// ```
/// use std::cmp::Ordering;
/// use outpost_query::text::compare_numeric;
/// assert_eq!(compare_numeric("9.5", "10"), Ordering::Less);
/// assert_eq!(compare_numeric("-2", "-10.25"), Ordering::Greater);
/// assert_eq!(compare_numeric("1.50", "1.5"), Ordering::Equal);
/// assert_eq!(compare_numeric("NaN", "Infinity"), Ordering::Greater);
/// ```
pub fn compare_numeric(a: &str, b: &str) -> Ordering {
    fn rank(d: &Option<Decimal<'_>>) -> u8 {
        match d {
            Some(Decimal::NegInfinity) => 0,
            Some(Decimal::Finite { .. }) => 1,
            Some(Decimal::Infinity) => 2,
            Some(Decimal::NaN) => 3,
            None => 4,
        }
    }
    let (x, y) = (parse_decimal(a), parse_decimal(b));
    match (&x, &y) {
        (
            Some(Decimal::Finite {
                negative: na,
                int: ia,
                frac: fa,
            }),
            Some(Decimal::Finite {
                negative: nb,
                int: ib,
                frac: fb,
            }),
        ) => {
            let sign = |neg: bool, int: &str, frac: &str| -> i8 {
                if int.is_empty() && frac.is_empty() {
                    0
                } else if neg {
                    -1
                } else {
                    1
                }
            };
            let (sa, sb) = (sign(*na, ia, fa), sign(*nb, ib, fb));
            if sa != sb {
                return sa.cmp(&sb);
            }
            let magnitude = ia
                .len()
                .cmp(&ib.len())
                .then_with(|| ia.cmp(ib))
                .then_with(|| fa.cmp(fb));
            if sa < 0 {
                magnitude.reverse()
            } else {
                magnitude
            }
        }
        (None, None) => a.as_bytes().cmp(b.as_bytes()),
        _ => rank(&x).cmp(&rank(&y)),
    }
}

/// Lowercases as PostgreSQL's `lower()` does in a UTF-8 database (libc's
/// `towlower`, one code point at a time): Unicode's simple lowercase
/// mapping, so `İ` becomes `i` and `Σ` always `σ` (no final-sigma rule),
/// and the string's length in characters never changes.
///
/// ```
/// assert_eq!(outpost_query::text::lower("ÀÉ İSTANBUL ΣΑΣ"), "àé istanbul σασ");
/// ```
pub fn lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(one), None) => one,
                // Only U+0130 has a longer full mapping; its simple one is `i`.
                _ if c == '\u{130}' => 'i',
                _ => c,
            }
        })
        .collect()
}

/// The modifier of a type as PostgreSQL prints it: `numeric(10,2)` gives
/// `[10, 2]`, `timestamp(3) with time zone` gives `[3]`.
fn typmod(pg_name: &str) -> Option<Vec<i64>> {
    let open = pg_name.find('(')?;
    let close = open + pg_name[open..].find(')')?;
    pg_name[open + 1..close]
        .split(',')
        .map(|p| p.trim().parse::<i64>().ok())
        .collect()
}

/// Applies a column's type modifier to a value about to be written, as
/// PostgreSQL does on assignment: rounds `numeric(p,s)` half away from zero
/// to `s` digits and refuses values with more than `p - s` integer digits,
/// refuses `varchar(n)`/`char(n)` text longer than `n` characters (unless
/// the excess is spaces, which are cut) and pads `char(n)`, rounds
/// `timestamp(p)`/`timestamptz(p)`/`time(p)` to `p` fractional digits.
/// Array elements are treated alike. The error says what is wrong.
pub fn apply_typmod(value: Value, ty: &ColumnType) -> Result<Value, String> {
    let Some(modifier) = typmod(&ty.pg_name) else {
        return Ok(value);
    };
    match value {
        Value::Array(items) => {
            let elem = ty.element();
            items
                .into_iter()
                .map(|v| apply_scalar(v, &elem.scalar, &modifier, &ty.pg_name))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        v => apply_scalar(v, &ty.scalar, &modifier, &ty.pg_name),
    }
}

fn apply_scalar(
    value: Value,
    scalar: &ScalarType,
    modifier: &[i64],
    pg_name: &str,
) -> Result<Value, String> {
    let Value::Text(s) = value else {
        return Ok(value);
    };
    let out = match (scalar, modifier) {
        (ScalarType::Numeric, [p, rest @ ..]) => {
            let scale = rest.first().copied().unwrap_or(0);
            round_numeric(&s, *p, scale)?
        }
        (ScalarType::Varchar, [n]) => fit_length(&s, *n, false, pg_name)?,
        (ScalarType::Char, [n]) => fit_length(&s, *n, true, pg_name)?,
        (ScalarType::Timestamp, [p]) => match parse_timestamp(&s) {
            Some(us) if us != i64::MAX && us != i64::MIN => format_timestamp(round_micros(us, *p)),
            _ => s,
        },
        (ScalarType::Timestamptz, [p]) => match parse_timestamptz(&s) {
            Some(us) if us != i64::MAX && us != i64::MIN => {
                format_timestamptz(round_micros(us, *p))
            }
            _ => s,
        },
        (ScalarType::Time, [p]) => match parse_time(&s) {
            Some(us) => format_time(round_micros(us, *p)),
            None => s,
        },
        _ => s,
    };
    Ok(Value::Text(out))
}

/// PostgreSQL's `AdjustTimestampForTypmod`: half away from zero.
fn round_micros(us: i64, precision: i64) -> i64 {
    if !(0..6).contains(&precision) {
        return us;
    }
    let scale = 10i64.pow((6 - precision) as u32);
    let offset = scale / 2;
    if us >= 0 {
        us.saturating_add(offset) / scale * scale
    } else {
        -(us.saturating_neg().saturating_add(offset) / scale * scale)
    }
}

fn fit_length(s: &str, n: i64, pad: bool, pg_name: &str) -> Result<String, String> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let len = s.chars().count();
    if len > n {
        let cut: String = s.chars().take(n).collect();
        if s.chars().skip(n).all(|c| c == ' ') {
            return Ok(cut);
        }
        return Err(format!("value too long for type {pg_name}"));
    }
    if pad && len < n {
        let mut out = s.to_string();
        out.extend(std::iter::repeat_n(' ', n - len));
        return Ok(out);
    }
    Ok(s.to_string())
}

fn round_numeric(s: &str, precision: i64, scale: i64) -> Result<String, String> {
    if scale < 0 {
        return Ok(s.to_string());
    }
    let Some(d) = parse_decimal(s) else {
        return Ok(s.to_string());
    };
    let (negative, int, frac) = match d {
        Decimal::NaN => return Ok(s.to_string()),
        Decimal::Infinity | Decimal::NegInfinity => {
            return Err(format!(
                "numeric({precision},{scale}) cannot hold an infinite value"
            ));
        }
        Decimal::Finite {
            negative,
            int,
            frac,
        } => (negative, int, frac),
    };
    let scale_u = scale as usize;
    let mut digits: Vec<u8> = int.bytes().map(|b| b - b'0').collect();
    let mut frac_digits: Vec<u8> = frac.bytes().map(|b| b - b'0').collect();
    let round_up = frac_digits.len() > scale_u && frac_digits[scale_u] >= 5;
    frac_digits.resize(scale_u, 0);
    digits.extend(frac_digits);
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let int_digits = digits.len() - scale_u;
    let int_part: String = digits[..int_digits]
        .iter()
        .map(|d| char::from(b'0' + d))
        .collect::<String>()
        .trim_start_matches('0')
        .to_string();
    let max_int = precision - scale;
    if int_part.len() as i64 > max_int.max(0) {
        return Err(format!(
            "numeric field overflow: a field with precision {precision}, scale {scale} must round to an absolute value less than 10^{max_int}"
        ));
    }
    let frac_part: String = digits[int_digits..]
        .iter()
        .map(|d| char::from(b'0' + d))
        .collect();
    let is_zero = int_part.is_empty() && frac_part.bytes().all(|b| b == b'0');
    let mut out = String::new();
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(if int_part.is_empty() { "0" } else { &int_part });
    if scale_u > 0 {
        out.push('.');
        out.push_str(&frac_part);
    }
    Ok(out)
}

/// A canonical text for a `numeric` value, equal for equal values
/// (`1.50` and `1.5` give `1.5`), for matching keys in Rust.
pub fn numeric_key(s: &str) -> String {
    match parse_decimal(s) {
        Some(Decimal::Finite {
            negative,
            int,
            frac,
        }) => {
            let zero = int.is_empty() && frac.is_empty();
            let mut out = String::new();
            if negative && !zero {
                out.push('-');
            }
            out.push_str(if int.is_empty() { "0" } else { int });
            if !frac.is_empty() {
                out.push('.');
                out.push_str(frac);
            }
            out
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numeric_order() {
        let sorted = [
            "-Infinity",
            "-100.5",
            "-99.99",
            "-1",
            "-0.5",
            "0",
            "0.001",
            "0.01",
            "1",
            "1.05",
            "1.5",
            "10",
            "99999999.99",
            "Infinity",
            "NaN",
            "garbage",
        ];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                assert_eq!(compare_numeric(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(compare_numeric("-0.00", "0"), Ordering::Equal);
        assert_eq!(compare_numeric("007.10", "7.1"), Ordering::Equal);
        assert_eq!(numeric_key("-0.00"), "0");
        assert_eq!(numeric_key("12.50"), "12.5");
    }

    #[test]
    fn typmods() {
        let ty = |s: ScalarType, n: &str| ColumnType::scalar(s, n);
        let num = ty(ScalarType::Numeric, "numeric(10,2)");
        let t = |s: &str| Value::Text(s.into());
        assert_eq!(apply_typmod(t("1.005"), &num), Ok(t("1.01")));
        assert_eq!(apply_typmod(t("-1.005"), &num), Ok(t("-1.01")));
        assert_eq!(apply_typmod(t("-0.001"), &num), Ok(t("0.00")));
        assert_eq!(apply_typmod(t("99999999.994"), &num), Ok(t("99999999.99")));
        assert!(apply_typmod(t("99999999.995"), &num).is_err());
        assert_eq!(apply_typmod(t("7"), &num), Ok(t("7.00")));
        assert_eq!(apply_typmod(t("NaN"), &num), Ok(t("NaN")));
        let vc = ty(ScalarType::Varchar, "character varying(3)");
        assert_eq!(apply_typmod(t("abc  "), &vc), Ok(t("abc")));
        assert_eq!(
            apply_typmod(t("abcd"), &vc),
            Err("value too long for type character varying(3)".into())
        );
        let ch = ty(ScalarType::Char, "character(4)");
        assert_eq!(apply_typmod(t("é"), &ch), Ok(t("é   ")));
        let ts = ty(ScalarType::Timestamptz, "timestamp(3) with time zone");
        // As PostgreSQL: half away from zero, counted from 2000-01-01.
        assert_eq!(
            apply_typmod(t("1969-12-31T23:59:59.999500Z"), &ts),
            Ok(t("1969-12-31T23:59:59.999000Z"))
        );
        assert_eq!(
            apply_typmod(t("2024-01-01T00:00:00.123500Z"), &ts),
            Ok(t("2024-01-01T00:00:00.124000Z"))
        );
        assert_eq!(
            apply_typmod(t("2024-01-01T00:00:00.123449Z"), &ts),
            Ok(t("2024-01-01T00:00:00.123000Z"))
        );
        assert_eq!(
            apply_typmod(Value::Int(5), &ty(ScalarType::Int4, "integer")),
            Ok(Value::Int(5))
        );
    }

    #[test]
    fn lowercase_is_simple() {
        assert_eq!(lower("ÀB"), "àb");
        assert_eq!(lower("İ"), "i");
        assert_eq!(lower("ΣΑΣ"), "σασ");
        assert_eq!(lower("ẞ"), "ß");
    }

    proptest! {
        #[test]
        fn numeric_order_matches_f64(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, sa in 0u32..4, sb in 0u32..4) {
            let text = |v: i64, s: u32| {
                let scale = 10i64.pow(s);
                let sign = if v < 0 { "-" } else { "" };
                let abs = v.unsigned_abs() as i64;
                if s == 0 { format!("{sign}{abs}") } else { format!("{sign}{}.{:0w$}", abs / scale, abs % scale, w = s as usize) }
            };
            let (x, y) = (text(a, sa), text(b, sb));
            let (fx, fy) = (a as f64 / 10f64.powi(sa as i32), b as f64 / 10f64.powi(sb as i32));
            prop_assert_eq!(compare_numeric(&x, &y), fx.partial_cmp(&fy).unwrap_or(Ordering::Equal), "{} vs {}", x, y);
        }
    }
}
