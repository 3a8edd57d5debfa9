//! `numeric` between its binary form (a header and base-10000 digit groups)
//! and the decimal text PostgreSQL prints and reads.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use outpost_core::types::normalise_numeric;
use postgres_types::Type;

use super::decode::Reader;
use super::{CodecError, invalid, malformed};

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
