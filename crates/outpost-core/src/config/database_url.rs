//! The server's connection string: [`DatabaseUrl`] (URL or `key=value`
//! form) with its TLS parameters ([`SslMode`], [`TlsParams`]) taken out for
//! outpost to handle, and passwords redacted wherever the string is shown
//! ([`redact`]).

use std::fmt;

/// libpq's `sslmode`: whether and how the connection to the server is
/// encrypted. The default, as in libpq, is [`SslMode::Prefer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate
    /// is not checked (it protects against eavesdropping, not impersonation).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked unless
    /// `sslrootcert` is given, which makes it [`SslMode::VerifyCa`] (libpq).
    Require,
    /// TLS with a certificate signed by a trusted CA, any host name.
    VerifyCa,
    /// TLS with a certificate signed by a trusted CA for the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err("sslmode=allow is not supported: use disable or prefer".into()),
            other => Err(format!(
                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )),
        }
    }
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsParams {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted CA certificates, or `system`
    /// for the bundled Mozilla roots.
    pub root_cert: Option<String>,
}

/// Connection parameters the driver does not take and outpost handles
/// itself (they are removed from the string handed to the driver).
const TLS_KEYS: &[&str] = &["sslmode", "sslrootcert"];
/// libpq TLS parameters outpost does not implement: refused by name rather
/// than ignored.
const UNSUPPORTED_KEYS: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

/// A server connection string that never shows its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    driver: String,
    tls: TlsParams,
    /// The password as written and as the server sees it (decoded,
    /// unquoted), for [`DatabaseUrl::scrub`].
    secrets: Vec<String>,
}

impl DatabaseUrl {
    /// Checks the form of a connection string: a `postgres://` or
    /// `postgresql://` URL with a host, or libpq `key=value` pairs; reads
    /// its `sslmode` and `sslrootcert`.
    pub fn parse(raw: &str) -> Result<DatabaseUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("it is empty".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let mut url = url::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) && !raw.contains("host=") {
                return Err("the URL has no host".into());
            }
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            let mut secrets: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| is_password_key(k))
                .map(|(_, v)| v.clone())
                .collect();
            // As written too (percent-encoded), for messages that echo it.
            secrets.extend(
                url.query()
                    .unwrap_or_default()
                    .split('&')
                    .filter_map(|param| {
                        let (k, v) = param.split_once('=')?;
                        is_password_key(&percent_decode(k)).then(|| v.to_string())
                    }),
            );
            if let Some(p) = url.password() {
                secrets.push(p.to_string());
                secrets.push(percent_decode_userinfo(p));
            }
            let tls = tls_params(&pairs)?;
            let driver = if pairs.iter().any(|(k, _)| TLS_KEYS.contains(&k.as_str())) {
                let rest: Vec<(String, String)> = pairs
                    .into_iter()
                    .filter(|(k, _)| !TLS_KEYS.contains(&k.as_str()))
                    .chain(std::iter::once(("sslmode".into(), driver_mode(tls.mode))))
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(rest);
                url.to_string()
            } else {
                raw.to_string()
            };
            return Ok(DatabaseUrl {
                raw: raw.to_string(),
                driver,
                tls,
                secrets: clean_secrets(secrets),
            });
        }
        if raw.contains("://") {
            let scheme = raw.split("://").next().unwrap_or_default();
            return Err(format!(
                "scheme {scheme:?} is not PostgreSQL (use postgres:// or postgresql://)"
            ));
        }
        let pairs = parse_pairs(raw)
            .ok_or_else(|| "expected postgres://user@host/db or key=value pairs".to_string())?;
        let tls = tls_params(&pairs)?;
        let driver = if pairs.iter().any(|(k, _)| TLS_KEYS.contains(&k.as_str())) {
            pairs
                .iter()
                .filter(|(k, _)| !TLS_KEYS.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
                .chain(std::iter::once(format!(
                    "sslmode={}",
                    driver_mode(tls.mode)
                )))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            raw.to_string()
        };
        let secrets = pairs
            .iter()
            .filter(|(k, _)| is_password_key(k))
            .map(|(_, v)| v.clone())
            .collect();
        Ok(DatabaseUrl {
            raw: raw.to_string(),
            driver,
            tls,
            secrets: clean_secrets(secrets),
        })
    }

    /// The connection string itself, password included: hand it to a
    /// person's tools (psql), never to a log or a message.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The connection string for the driver (tokio-postgres): password
    /// included, `sslrootcert` removed and `sslmode=verify-*` given as
    /// `require` (TLS itself is set up from [`DatabaseUrl::tls`]).
    pub fn driver_conninfo(&self) -> &str {
        &self.driver
    }

    /// The TLS settings of the connection string.
    pub fn tls(&self) -> &TlsParams {
        &self.tls
    }

    /// The connection string with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
    }

    /// `text` with this connection string's password replaced by `***`
    /// wherever it appears: for messages built by others (the driver's
    /// errors) that might echo it.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

/// Longest first, so a password that contains another form of itself is
/// replaced whole; empty ones dropped.
fn clean_secrets(mut secrets: Vec<String>) -> Vec<String> {
    // Also as written inside libpq quotes, where `'` and `\` are escaped.
    let escaped: Vec<String> = secrets
        .iter()
        .map(|s| s.replace('\\', "\\\\").replace('\'', "\\'"))
        .collect();
    secrets.extend(escaped);
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// The driver knows only disable, prefer and require; verification is
/// outpost's (the TLS connector's) business.
fn driver_mode(mode: SslMode) -> String {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
    }
    .into()
}

fn tls_params(pairs: &[(String, String)]) -> Result<TlsParams, String> {
    let mut tls = TlsParams::default();
    for (k, v) in pairs {
        match k.as_str() {
            "sslmode" => tls.mode = SslMode::parse(v)?,
            "sslrootcert" if v.is_empty() => return Err("sslrootcert is empty".into()),
            "sslrootcert" => tls.root_cert = Some(v.clone()),
            k if UNSUPPORTED_KEYS.contains(&k) => {
                return Err(format!(
                    "{k} is not supported (client certificates are not implemented; \
                     use password authentication over sslmode=verify-full)"
                ));
            }
            _ => {}
        }
    }
    if tls.mode == SslMode::Require && tls.root_cert.is_some() {
        // libpq: with a root certificate, require verifies the chain.
        tls.mode = SslMode::VerifyCa;
    }
    Ok(tls)
}

/// Splits libpq `key=value` pairs (values unquoted, or in single quotes
/// with backslash escapes). `None` when the text is not of that form.
fn parse_pairs(raw: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    value.push(chars.next()?);
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
    (!out.is_empty()).then_some(out)
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces every password of a connection string by `***`, in every form
/// libpq accepts: `user:pass@` in a URL (multi-host too), a `password`
/// query parameter (any case, percent-encoded key), and `password=value` pairs
/// with spaces around `=`, single-quoted values with escapes, or a key in
/// upper case. It errs on the side of hiding: an unterminated quote hides
/// the rest of the text, and a `password` word not followed by `=` hides
/// the word after it (the string is malformed, and its message may be
/// shown).
pub fn redact(raw: &str) -> String {
    if let Some(scheme_end) = url_scheme_end(raw) {
        return redact_url(raw, scheme_end);
    }
    redact_pairs(raw)
}

/// The index just past `scheme://` when `raw` starts with a URL scheme.
fn url_scheme_end(raw: &str) -> Option<usize> {
    let start = raw.len() - raw.trim_start().len();
    let sep = raw.find("://")?;
    let scheme = &raw[start..sep];
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then_some(sep + 3)
}

/// Whether a parameter name is, or carries, a password (`password`,
/// `PASSWORD`, `sslpassword`).
fn is_password_key(key: &str) -> bool {
    key.trim().to_ascii_lowercase().contains("password")
}

fn redact_url(raw: &str, scheme_end: usize) -> String {
    let rest = &raw[scheme_end..];
    // The query starts at the first `?`; a password may hold `/` or `@`
    // unencoded, so the userinfo ends at the last `@` before the query.
    let query_start = rest.find('?').unwrap_or(rest.len());
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..scheme_end]);
    let before_query = &rest[..query_start];
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if query_start < rest.len() {
        out.push('?');
        let query = &rest[query_start + 1..];
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((k, _)) if is_password_key(&percent_decode(k)) => format!("{k}=***"),
                _ => param.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// Percent-decodes a URL's userinfo (no `+` for space there), lossily.
fn percent_decode_userinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-decodes a URL query key (lossily: it is only compared).
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("{s}=").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// libpq `key = value` pairs: keeps the text as written except the values
/// of password keys.
fn redact_pairs(raw: &str) -> String {
    let bytes: Vec<(usize, char)> = raw.char_indices().collect();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut hide_next_word = false;
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].1.is_whitespace() {
            i += 1;
        }
        i
    };
    let pos = |i: usize| bytes.get(i).map_or(raw.len(), |(p, _)| *p);
    while i < bytes.len() {
        let ws_end = skip_ws(i);
        out.push_str(&raw[pos(i)..pos(ws_end)]);
        i = ws_end;
        if i >= bytes.len() {
            break;
        }
        // The key (or a stray word).
        let key_start = i;
        while i < bytes.len() && bytes[i].1 != '=' && !bytes[i].1.is_whitespace() {
            i += 1;
        }
        let key = &raw[pos(key_start)..pos(i)];
        if hide_next_word && !key.is_empty() {
            out.push_str("***");
            hide_next_word = false;
            continue;
        }
        out.push_str(key);
        let eq = skip_ws(i);
        if bytes.get(eq).map(|b| b.1) != Some('=') {
            // Not `key=`: a malformed string whose message may echo it.
            hide_next_word = is_password_key(key);
            continue;
        }
        let value_start = skip_ws(eq + 1);
        out.push_str(&raw[pos(i)..pos(value_start)]);
        // The value: quoted (to the closing quote, or the end) or a word.
        let mut j = value_start;
        if bytes.get(j).map(|b| b.1) == Some('\'') {
            j += 1;
            while j < bytes.len() && bytes[j].1 != '\'' {
                if bytes[j].1 == '\\' {
                    j += 1;
                }
                j += 1;
            }
            j = (j + 1).min(bytes.len());
        } else {
            while j < bytes.len() && !bytes[j].1.is_whitespace() {
                if bytes[j].1 == '\\' {
                    j += 1;
                }
                j += 1;
            }
            j = j.min(bytes.len());
        }
        if is_password_key(key) {
            out.push_str("***");
        } else {
            out.push_str(&raw[pos(value_start)..pos(j)]);
        }
        i = j;
    }
    out
}
