//! The ids Prisma's client generates for `@default(cuid())`, `cuid(2)` and
//! `nanoid(n)`, in the same shapes, for creates on either database.

use rand::Rng;

pub(super) const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn base36(mut n: u64, width: usize) -> String {
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(BASE36[(n % 36) as usize]);
        n /= 36;
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    let s = String::from_utf8(digits).unwrap_or_default();
    s[s.len() - width..].to_string()
}

/// A CUID (version 1, as Prisma's `cuid()`): `c`, the time in ms, a
/// counter, a host fingerprint and random blocks, 25 characters of base 36.
pub(super) fn cuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let block = 36u64.pow(4);
    let mut rng = rand::rng();
    let ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) % block;
    let pid = u64::from(std::process::id());
    let host: u64 = std::env::var("HOSTNAME")
        .unwrap_or_default()
        .bytes()
        .fold(0u64, |a, b| a.wrapping_add(u64::from(b)))
        + 36;
    format!(
        "c{}{}{}{}{}{}",
        base36(ms, 8),
        base36(count, 4),
        base36(pid, 2),
        base36(host, 2),
        base36(rng.random_range(0..block), 4),
        base36(rng.random_range(0..block), 4)
    )
}

/// A CUID2 (Prisma's `cuid(2)`): 24 characters of base 36 starting with a
/// letter.
pub(super) fn cuid2() -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(24);
    s.push(BASE36[rng.random_range(10..36)] as char);
    for _ in 1..24 {
        s.push(BASE36[rng.random_range(0..36)] as char);
    }
    s
}

/// A nanoid (Prisma's `nanoid(n)`): `n` characters of the URL-safe
/// alphabet.
pub(super) fn nanoid(n: usize) -> String {
    const ALPHABET: &[u8] = b"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
