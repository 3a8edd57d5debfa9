//! Dates and times as PostgreSQL's binary form counts them (days and
//! microseconds since 2000-01-01) and their canonical texts, both ways, exact
//! over PostgreSQL's whole range.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, NaiveTime, Timelike};

/// Microseconds in a day.
pub const USECS_PER_DAY: i64 = 86_400_000_000;

/// Days from 1970-01-01 to 2000-01-01.
pub(super) const PG_EPOCH_DAYS: i64 = 10_957;

/// Proleptic Gregorian civil date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm; exact over PostgreSQL's whole range, unlike chrono).
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
