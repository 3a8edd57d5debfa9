//! Canonical text forms of the PostgreSQL types outpost keeps as text beyond
//! the basic ones: network addresses, bit strings, `money`, `timetz`, ranges
//! and multiranges, the geometric types and text search vectors and queries.
//!
//! Each form is what the replica stores and the JSON API shows (see
//! `docs/types.md`). The codec writes it from PostgreSQL's binary value and
//! parses it back to that binary value, so a value read from the server
//! round-trips bit for bit; the `parse_*` functions also accept the looser
//! spellings an application may write (upper-case MAC addresses, `-`
//! separators, spaces), and [`crate::types::Value::from_json`] stores their
//! canonical form, so equality in the replica agrees with the server's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::types::{format_time, parse_float, parse_time};

/// A float as text that parses back to the same bits (Rust's shortest
/// round-trip digits; an exponent outside 1e-4..1e16 so 1e300 stays short),
/// `NaN`, `Infinity`, `-Infinity` as PostgreSQL spells them.
pub fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f == 0.0 || (1e-4..1e16).contains(&f.abs()) {
        format!("{f}")
    } else {
        format!("{f:e}")
    }
}

// ---- network addresses ------------------------------------------------------

/// An `inet` or `cidr` value: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inet {
    /// The address (host bits kept for `inet`).
    pub addr: IpAddr,
    /// The prefix length (32 or 128 for a plain host address).
    pub bits: u8,
}

impl Inet {
    fn max_bits(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// The text: `addr/bits`, with `/bits` left out of an `inet` whose
    /// prefix covers the whole address (as PostgreSQL prints it).
    pub fn to_text(&self, cidr: bool) -> String {
        if !cidr && self.bits == self.max_bits() {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.bits)
        }
    }

    /// Parses `addr[/bits]`; for `cidr`, bits right of the prefix must be
    /// zero (PostgreSQL refuses them too).
    pub fn parse(s: &str, cidr: bool) -> Option<Inet> {
        let s = s.trim();
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return None;
        }
        let inet = Inet { addr, bits };
        if cidr
            && inet.octets().iter().enumerate().any(|(i, b)| {
                let kept = (bits as usize).saturating_sub(i * 8).min(8);
                let mask = if kept == 0 { 0 } else { 0xFFu8 << (8 - kept) };
                b & !mask != 0
            })
        {
            return None;
        }
        Some(inet)
    }

    /// The address's bytes (4 or 16).
    pub fn octets(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// From the address's bytes (4 or 16) and prefix length.
    pub fn from_octets(bytes: &[u8], bits: u8) -> Option<Inet> {
        let addr = match bytes.len() {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
            _ => return None,
        };
        let inet = Inet { addr, bits };
        (bits <= inet.max_bits()).then_some(inet)
    }
}

/// `08:00:2b:01:02:03`: lower-case hex pairs separated by colons.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses a MAC address of `len` bytes written as hex pairs separated by
/// `:`, `-` or `.`, or not separated; any case.
pub fn parse_mac(s: &str, len: usize) -> Option<Vec<u8>> {
    let hex: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != len * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

// ---- timetz, money, bit strings ---------------------------------------------

/// `HH:MM:SS.ffffff±HH:MM[:SS]` of a `timetz` given as microseconds since
/// midnight and PostgreSQL's zone (seconds *west* of UTC, so `+02:00` is
/// -7200).
pub fn format_timetz(us: i64, zone_west: i32) -> String {
    let offset = -i64::from(zone_west);
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    let mut out = format!(
        "{}{sign}{:02}:{:02}",
        format_time(us),
        a / 3600,
        a / 60 % 60
    );
    if a % 60 != 0 {
        out.push_str(&format!(":{:02}", a % 60));
    }
    out
}

/// Parses `HH:MM[:SS[.ffffff]]±HH[:MM[:SS]]` (or `Z`) into microseconds and
/// the zone in seconds west of UTC.
pub fn parse_timetz(s: &str) -> Option<(i64, i32)> {
    let s = s.trim();
    if let Some(time) = s.strip_suffix(['Z', 'z']) {
        return Some((parse_time(time)?, 0));
    }
    let i = s.rfind(['+', '-'])?;
    let (time, zone) = s.split_at(i);
    let neg = zone.starts_with('-');
    let mut parts = zone[1..].split(':');
    let mut secs: i64 = 0;
    for (n, unit) in [3600, 60, 1].into_iter().enumerate() {
        match parts.next() {
            Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                secs += p.parse::<i64>().ok()? * unit;
            }
            None if n > 0 => break,
            _ => return None,
        }
    }
    if parts.next().is_some() || secs > 15 * 3600 + 59 * 60 + 59 {
        return None;
    }
    let offset = if neg { -secs } else { secs };
    Some((parse_time(time)?, i32::try_from(-offset).ok()?))
}

/// A `money` amount in cents as a decimal with two fractional digits
/// (`-12.34`): no currency symbol, no grouping, whatever `lc_monetary` says.
pub fn format_money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Parses a decimal with at most two fractional digits into cents.
pub fn parse_money(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty()
        || frac.len() > 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut cents = int.parse::<i128>().ok()? * 100;
    if !frac.is_empty() {
        let f = frac.parse::<i128>().ok()?;
        cents += if frac.len() == 1 { f * 10 } else { f };
    }
    i64::try_from(if neg { -cents } else { cents }).ok()
}

/// The `0`/`1` text of a bit string of `len` bits packed high bit first.
pub fn format_bits(len: usize, bytes: &[u8]) -> Option<String> {
    if bytes.len() != len.div_ceil(8) {
        return None;
    }
    Some(
        (0..len)
            .map(|i| {
                if bytes[i / 8] & (0x80 >> (i % 8)) != 0 {
                    '1'
                } else {
                    '0'
                }
            })
            .collect(),
    )
}

/// Packs a `0`/`1` text into bytes, high bit first.
pub fn parse_bits(s: &str) -> Option<Vec<u8>> {
    let mut out = vec![0u8; s.len().div_ceil(8)];
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'0' => {}
            b'1' => out[i / 8] |= 0x80 >> (i % 8),
            _ => return None,
        }
    }
    Some(out)
}

// ---- ranges -----------------------------------------------------------------

/// One bound of a range: the element's canonical text, and whether it is
/// included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeBound {
    /// The element's canonical text.
    pub value: String,
    /// `[`/`]` rather than `(`/`)`.
    pub inclusive: bool,
}

/// A range value: empty, or two optional bounds (`None`: unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    /// `empty`.
    Empty,
    /// `[lower,upper)` and the like.
    Bounds {
        /// The lower bound; `None` is unbounded.
        lower: Option<RangeBound>,
        /// The upper bound; `None` is unbounded.
        upper: Option<RangeBound>,
    },
}

impl Range {
    /// `empty`, `[1,5)`, `(,2020-01-01]`, as PostgreSQL writes ranges (the
    /// elements in outpost's canonical forms, which hold no `,` `(` `)` `[`
    /// `]` or quote, so they are never quoted).
    pub fn to_text(&self) -> String {
        match self {
            Range::Empty => "empty".into(),
            Range::Bounds { lower, upper } => {
                let mut out = String::new();
                match lower {
                    Some(b) => {
                        out.push(if b.inclusive { '[' } else { '(' });
                        out.push_str(&b.value);
                    }
                    None => out.push('('),
                }
                out.push(',');
                match upper {
                    Some(b) => {
                        out.push_str(&b.value);
                        out.push(if b.inclusive { ']' } else { ')' });
                    }
                    None => out.push(')'),
                }
                out
            }
        }
    }

    /// Parses the form [`Range::to_text`] writes (elements not yet
    /// normalised; optional double quotes around an element are removed).
    pub fn parse(s: &str) -> Option<Range> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("empty") {
            return Some(Range::Empty);
        }
        let lower_inc = match s.as_bytes().first()? {
            b'[' => true,
            b'(' => false,
            _ => return None,
        };
        let upper_inc = match s.as_bytes().last()? {
            b']' => true,
            b')' => false,
            _ => return None,
        };
        let inner = s.get(1..s.len().checked_sub(1)?)?;
        let (lo, hi) = inner.split_once(',')?;
        let bound = |v: &str, inclusive: bool| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (!v.is_empty()).then(|| RangeBound {
                value: v.to_string(),
                inclusive,
            })
        };
        Some(Range::Bounds {
            lower: bound(lo, lower_inc),
            upper: bound(hi, upper_inc),
        })
    }
}

/// `{[1,3),[5,7)}`: a multirange's ranges in order.
pub fn format_multirange(ranges: &[Range]) -> String {
    let parts: Vec<String> = ranges.iter().map(Range::to_text).collect();
    format!("{{{}}}", parts.join(","))
}

/// Parses `{range, range…}`.
pub fn parse_multirange(s: &str) -> Option<Vec<Range>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let end = if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case("empty") {
            5
        } else {
            rest.find([']', ')'])? + 1
        };
        out.push(Range::parse(&rest[..end])?);
        rest = rest[end..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(out)
}

// ---- geometry ---------------------------------------------------------------

/// The geometric types, for [`format_geometry`] and [`parse_geometry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// `(x,y)`
    Point,
    /// `{a,b,c}`: the line ax + by + c = 0
    Line,
    /// `[(x1,y1),(x2,y2)]`
    Lseg,
    /// `(x1,y1),(x2,y2)`: upper-right corner first
    Box,
    /// `((x1,y1),…)` closed, `[(x1,y1),…]` open
    Path,
    /// `((x1,y1),…)`
    Polygon,
    /// `<(x,y),r>`
    Circle,
}

fn points(nums: &[f64]) -> String {
    nums.chunks(2)
        .map(|p| {
            format!(
                "({},{})",
                float_text(p[0]),
                float_text(p.get(1).copied().unwrap_or(0.0))
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The text of a geometric value from its coordinates in PostgreSQL's
/// binary order; `closed` matters for paths only.
pub fn format_geometry(kind: Geometry, closed: bool, nums: &[f64]) -> String {
    match kind {
        Geometry::Point | Geometry::Box => points(nums),
        Geometry::Line => format!(
            "{{{}}}",
            nums.iter()
                .map(|f| float_text(*f))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Geometry::Lseg => format!("[{}]", points(nums)),
        Geometry::Path if !closed => format!("[{}]", points(nums)),
        Geometry::Path | Geometry::Polygon => format!("({})", points(nums)),
        Geometry::Circle => format!(
            "<{},{}>",
            points(&nums[..nums.len().min(2)]),
            float_text(nums.get(2).copied().unwrap_or(0.0))
        ),
    }
}

/// The coordinates of a geometric value's text and, for a path, whether it
/// is closed. A box's corners are put in PostgreSQL's order (upper right,
/// then lower left), as the server does on input.
pub fn parse_geometry(kind: Geometry, s: &str) -> Option<(bool, Vec<f64>)> {
    let s = s.trim();
    let nums: Vec<f64> = s
        .split(['(', ')', '[', ']', '{', '}', '<', '>', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_float_any)
        .collect::<Option<_>>()?;
    let ok = match kind {
        Geometry::Point => nums.len() == 2,
        Geometry::Line | Geometry::Circle => nums.len() == 3,
        Geometry::Lseg | Geometry::Box => nums.len() == 4,
        Geometry::Path | Geometry::Polygon => !nums.is_empty() && nums.len().is_multiple_of(2),
    };
    if !ok {
        return None;
    }
    let closed = kind != Geometry::Path || !s.starts_with('[');
    let nums = if kind == Geometry::Box {
        vec![
            nums[0].max(nums[2]),
            nums[1].max(nums[3]),
            nums[0].min(nums[2]),
            nums[1].min(nums[3]),
        ]
    } else {
        nums
    };
    Some((closed, nums))
}

/// [`parse_float`], but keeping `-0` (a coordinate's sign survives in text).
fn parse_float_any(s: &str) -> Option<f64> {
    if s == "-0" {
        return Some(-0.0);
    }
    parse_float(s)
}

// ---- text search ------------------------------------------------------------

/// `'lexeme'` with `'` and `\` doubled, as PostgreSQL quotes lexemes.
pub fn quote_lexeme(lexeme: &str) -> String {
    let mut out = String::with_capacity(lexeme.len() + 2);
    out.push('\'');
    for c in lexeme.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A `tsvector`'s text from its lexemes and their positions (weight in the
/// top two bits, as PostgreSQL stores them): `'cat':1A,4 'hat'`.
pub fn format_tsvector(entries: &[(String, Vec<u16>)]) -> String {
    entries
        .iter()
        .map(|(lexeme, positions)| {
            let mut out = quote_lexeme(lexeme);
            for (i, p) in positions.iter().enumerate() {
                out.push(if i == 0 { ':' } else { ',' });
                out.push_str(&(p & 0x3FFF).to_string());
                match p >> 14 {
                    3 => out.push('A'),
                    2 => out.push('B'),
                    1 => out.push('C'),
                    _ => {}
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A node of a `tsquery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsQuery {
    /// A lexeme, its weight mask (A = 8, B = 4, C = 2, D = 1; 0 = any) and
    /// whether it is a prefix (`:*`).
    Lexeme {
        /// The lexeme.
        text: String,
        /// The weight mask.
        weights: u8,
        /// `:*`.
        prefix: bool,
    },
    /// `!q`
    Not(Box<TsQuery>),
    /// `l & r`
    And(Box<TsQuery>, Box<TsQuery>),
    /// `l | r`
    Or(Box<TsQuery>, Box<TsQuery>),
    /// `l <n> r` (`<->` for 1)
    Phrase(Box<TsQuery>, Box<TsQuery>, i16),
}

impl TsQuery {
    /// The text, every operand of a binary operator that is itself a binary
    /// operator in parentheses, so PostgreSQL parses back the same tree.
    pub fn to_text(&self) -> String {
        let operand = |q: &TsQuery| match q {
            TsQuery::And(..) | TsQuery::Or(..) | TsQuery::Phrase(..) => {
                format!("( {} )", q.to_text())
            }
            _ => q.to_text(),
        };
        match self {
            TsQuery::Lexeme {
                text,
                weights,
                prefix,
            } => {
                let mut out = quote_lexeme(text);
                if *prefix || *weights != 0 {
                    out.push(':');
                    if *prefix {
                        out.push('*');
                    }
                    for (bit, c) in [(8, 'A'), (4, 'B'), (2, 'C'), (1, 'D')] {
                        if weights & bit != 0 {
                            out.push(c);
                        }
                    }
                }
                out
            }
            TsQuery::Not(q) => format!("!{}", operand(q)),
            TsQuery::And(l, r) => format!("{} & {}", operand(l), operand(r)),
            TsQuery::Or(l, r) => format!("{} | {}", operand(l), operand(r)),
            TsQuery::Phrase(l, r, 1) => format!("{} <-> {}", operand(l), operand(r)),
            TsQuery::Phrase(l, r, d) => format!("{} <{d}> {}", operand(l), operand(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn network() {
        let i = Inet::parse("192.168.1.5/24", false);
        assert_eq!(
            i.map(|i| i.to_text(false)).as_deref(),
            Some("192.168.1.5/24")
        );
        assert_eq!(
            Inet::parse("10.0.0.1", false)
                .map(|i| i.to_text(false))
                .as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            Inet::parse("10.0.0.0/8", true)
                .map(|i| i.to_text(true))
                .as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(Inet::parse("10.0.0.1/8", true), None);
        assert_eq!(
            Inet::parse("2001:DB8::1", false)
                .map(|i| i.to_text(false))
                .as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            parse_mac("08-00-2B-01-02-03", 6)
                .map(|m| format_mac(&m))
                .as_deref(),
            Some("08:00:2b:01:02:03")
        );
        assert_eq!(
            parse_mac("0800.2b01.0203", 6)
                .map(|m| format_mac(&m))
                .as_deref(),
            Some("08:00:2b:01:02:03")
        );
        assert_eq!(parse_mac("08:00:2b", 6), None);
    }

    #[test]
    fn timetz_money_bits() {
        assert_eq!(format_timetz(0, -7200), "00:00:00.000000+02:00");
        assert_eq!(format_timetz(1, 19_800 + 15), "00:00:00.000001-05:30:15");
        assert_eq!(parse_timetz("00:00:00.000001-05:30:15"), Some((1, 19_815)));
        assert_eq!(parse_timetz("12:00+02"), Some((43_200_000_000, -7200)));
        assert_eq!(parse_timetz("12:00Z"), Some((43_200_000_000, 0)));
        assert_eq!(parse_timetz("12:00"), None);
        assert_eq!(format_money(-1234), "-12.34");
        assert_eq!(format_money(5), "0.05");
        assert_eq!(parse_money("-12.3"), Some(-1230));
        assert_eq!(parse_money("1.234"), None);
        assert_eq!(parse_money("$1"), None);
        assert_eq!(format_bits(3, &[0b1010_0000]).as_deref(), Some("101"));
        assert_eq!(parse_bits("101"), Some(vec![0b1010_0000]));
        assert_eq!(parse_bits("12"), None);
    }

    #[test]
    fn ranges() {
        for s in [
            "empty",
            "[1,5)",
            "(,5]",
            "[1,)",
            "(,)",
            "[2020-01-01T00:00:00.000000Z,infinity)",
        ] {
            assert_eq!(Range::parse(s).map(|r| r.to_text()).as_deref(), Some(s));
        }
        let m = "{[1,3),[5,7)}";
        assert_eq!(
            parse_multirange(m)
                .map(|r| format_multirange(&r))
                .as_deref(),
            Some(m)
        );
        assert_eq!(parse_multirange("{}").map(|r| r.len()), Some(0));
        assert_eq!(Range::parse("1,5"), None);
    }

    #[test]
    fn geometry() {
        let t = |k, s: &str| parse_geometry(k, s).map(|(c, n)| format_geometry(k, c, &n));
        assert_eq!(t(Geometry::Point, "(1, 2.5)").as_deref(), Some("(1,2.5)"));
        assert_eq!(
            t(Geometry::Box, "(0,0),(1,1)").as_deref(),
            Some("(1,1),(0,0)")
        );
        assert_eq!(
            t(Geometry::Path, "[(0,0),(1,1)]").as_deref(),
            Some("[(0,0),(1,1)]")
        );
        assert_eq!(
            t(Geometry::Path, "((0,0),(1,1))").as_deref(),
            Some("((0,0),(1,1))")
        );
        assert_eq!(
            t(Geometry::Circle, "<(1,2),3>").as_deref(),
            Some("<(1,2),3>")
        );
        assert_eq!(t(Geometry::Line, "{1,-1,0}").as_deref(), Some("{1,-1,0}"));
        assert_eq!(t(Geometry::Point, "(1,2,3)"), None);
        assert_eq!(float_text(1e300), "1e300");
        assert_eq!(float_text(-0.0), "-0");
    }

    #[test]
    fn text_search() {
        let v = vec![
            ("cat".to_string(), vec![1 | (3 << 14), 4]),
            ("it's".to_string(), vec![]),
        ];
        assert_eq!(format_tsvector(&v), "'cat':1A,4 'it''s'");
        let q = TsQuery::And(
            Box::new(TsQuery::Lexeme {
                text: "a".into(),
                weights: 8 | 4,
                prefix: true,
            }),
            Box::new(TsQuery::Not(Box::new(TsQuery::Or(
                Box::new(TsQuery::Lexeme {
                    text: "b".into(),
                    weights: 0,
                    prefix: false,
                }),
                Box::new(TsQuery::Lexeme {
                    text: "c".into(),
                    weights: 0,
                    prefix: false,
                }),
            )))),
        );
        assert_eq!(q.to_text(), "'a':*AB & !( 'b' | 'c' )");
    }

    proptest! {
        #[test]
        fn float_text_roundtrips(f: f64) {
            let back = parse_float_any(&float_text(f));
            prop_assert!(back.is_some_and(|b| b.to_bits() == f.to_bits() || (b.is_nan() && f.is_nan())));
        }

        #[test]
        fn money_roundtrips(c: i64) {
            prop_assert_eq!(parse_money(&format_money(c)), Some(c));
        }

        #[test]
        fn timetz_roundtrips(us in 0i64..=86_400_000_000, zone in -57_599i32..=57_599) {
            prop_assert_eq!(parse_timetz(&format_timetz(us, zone)), Some((us, zone)));
        }
    }
}
