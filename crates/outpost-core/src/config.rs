//! Configuration: the seed's environment variables plus outpost's own, read
//! from one lookup function (the binary layers defaults < `.env` <
//! environment < flags and hands the result here), validated into one
//! [`Config`].
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | none | the PostgreSQL server (`postgres://…` or `key=value` form) |
//! | `ENABLE_LOCAL_DATABASE` | `true` | keep a local replica at all |
//! | `LOCAL_DATABASE_URL` | `file:./local.db` | the replica file, Prisma's `file:` form (a bare path works too) |
//! | `LOCAL_DATABASE_SYNC_INTERVAL` | `300000` | milliseconds between periodic syncs; `0` turns them off |
//! | `ENABLE_OFFLINE_MODE` | `true` | fall back to the replica when the server is unreachable |
//! | `OUTPOST_SCHEMA` | `public` | the PostgreSQL schema whose tables are synced |
//! | `OUTPOST_TABLES` | all with a primary key | comma-separated tables to sync |
//! | `OUTPOST_EXCLUDE_TABLES` | none | comma-separated tables not to sync (`_prisma_migrations` never is) |
//! | `OUTPOST_STATEMENT_TIMEOUT` | `30000` | ms: the server's `statement_timeout` for sync sessions |
//! | `OUTPOST_LOCK_TIMEOUT` | `30000` | ms: the server's `lock_timeout` for sync sessions |
//! | `OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT` | `10000` | ms: the server drops a sync session idle inside a transaction this long (a vanished node's locks) |
//! | `OUTPOST_REQUEST_TIMEOUT` | `10000` | ms: a model-service call's deadline on the server in `auto` mode (past it: outcome unknown, then the replica) |
//! | `OUTPOST_CHECK_INTERVAL` | `2000` | ms between the monitor's probes of the server |
//! | `OUTPOST_CHECK_TIMEOUT` | `2000` | ms a probe may take before the server counts as unreachable |
//! | `PRISMA_SCHEMA` | `./prisma/schema.prisma` when that file exists | the application's Prisma schema: model and field names, client-side defaults (`outpost_core::prisma`) |
//!
//! Timeouts are whole milliseconds, at least 1 and at most a day: every
//! round trip of the node has a bound (none can be turned off). The
//! connection's own `connect_timeout`, `keepalives_idle`, `keepalives_interval`,
//! `keepalives_count` and `tcp_user_timeout` are libpq parameters of
//! `DATABASE_URL` (outpost's defaults apply where the URL has none).
//!
//! Booleans accept `true/false`, `1/0`, `yes/no`, `on/off` in any case. A bad
//! value is refused with an error that names the variable and the value;
//! passwords in `DATABASE_URL` are shown as `***`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Which tables of the server are synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSelection {
    /// The PostgreSQL schema (`public`).
    pub pg_schema: String,
    /// Only these tables, when set.
    pub include: Option<Vec<String>>,
    /// Never these tables.
    pub exclude: Vec<String>,
}

/// Tables outpost never syncs whatever the selection says.
pub const ALWAYS_EXCLUDED: &[&str] = &["_prisma_migrations"];

impl Default for TableSelection {
    fn default() -> TableSelection {
        TableSelection {
            pg_schema: "public".into(),
            include: None,
            exclude: ALWAYS_EXCLUDED.iter().map(|s| s.to_string()).collect(),
        }
    }
}

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

/// The validated configuration of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The server, if configured (`DATABASE_URL`).
    pub database_url: Option<DatabaseUrl>,
    /// The gateway a node syncs through instead of the server
    /// (`OUTPOST_GATEWAY_URL` and `OUTPOST_GATEWAY_TOKEN`; docs/gateway.md).
    pub gateway: Option<GatewayTarget>,
    /// Keep a local replica (`ENABLE_LOCAL_DATABASE`).
    pub enable_local_database: bool,
    /// The replica file (`LOCAL_DATABASE_URL`).
    pub local_database_path: PathBuf,
    /// Periodic sync interval; `None` when turned off
    /// (`LOCAL_DATABASE_SYNC_INTERVAL=0`).
    pub sync_interval: Option<Duration>,
    /// Fall back to the replica while offline (`ENABLE_OFFLINE_MODE`).
    pub enable_offline_mode: bool,
    /// Which tables are synced.
    pub tables: TableSelection,
    /// The node's bounds on the server.
    pub timeouts: Timeouts,
    /// The application's Prisma schema (`PRISMA_SCHEMA`), when set; see
    /// [`Config::prisma_schema_file`] for the default.
    pub prisma_schema: Option<PathBuf>,
}

/// Where a node in gateway topology syncs: the gateway's base URL and the
/// bearer token it presents. The token is a credential: its `Debug` form is
/// `***`, and it is shown nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayTarget {
    /// `http://…` or `https://…`, without a trailing `/`.
    pub url: String,
    token: String,
    /// Certificates (PEM) trusted for an `https://` gateway besides the
    /// usual roots (`OUTPOST_GATEWAY_CA`): a private CA or a self-signed
    /// gateway certificate.
    pub ca: Option<PathBuf>,
}

impl GatewayTarget {
    /// A target from a URL and a token (both checked).
    pub fn new(url: &str, token: &str) -> Result<GatewayTarget, ConfigError> {
        let parsed = url::Url::parse(url.trim())
            .map_err(|e| invalid("OUTPOST_GATEWAY_URL", url, format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(
                "OUTPOST_GATEWAY_URL",
                url,
                "expected http://host:port or https://host",
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "OUTPOST_GATEWAY_URL",
                "***",
                "credentials go in OUTPOST_GATEWAY_TOKEN, not in the URL",
            ));
        }
        let token = token.trim();
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "OUTPOST_GATEWAY_TOKEN",
                "***",
                "expected a bearer token (no spaces)",
            ));
        }
        Ok(GatewayTarget {
            url: parsed.as_str().trim_end_matches('/').to_string(),
            token: token.to_string(),
            ca: None,
        })
    }

    /// The same target, trusting the certificates in the PEM file `ca`
    /// too (`OUTPOST_GATEWAY_CA`; the file must exist).
    pub fn with_ca(mut self, ca: &str) -> Result<GatewayTarget, ConfigError> {
        let path = PathBuf::from(ca.trim());
        if !path.is_file() {
            return Err(invalid(
                "OUTPOST_GATEWAY_CA",
                ca,
                "expected a PEM file of certificates to trust for the gateway",
            ));
        }
        self.ca = Some(path);
        Ok(self)
    }

    /// The token, for the `Authorization` header only.
    pub fn expose_token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for GatewayTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayTarget")
            .field("url", &self.url)
            .field("token", &"***")
            .field("ca", &self.ca)
            .finish()
    }
}

/// The node's bounds on the server (module doc: `OUTPOST_*_TIMEOUT`,
/// `OUTPOST_CHECK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `statement_timeout` of sync sessions.
    pub statement: Duration,
    /// `lock_timeout` of sync sessions.
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout` of sync sessions.
    pub idle_in_transaction: Duration,
    /// A model-service call's deadline on the server (`auto` mode).
    pub request: Duration,
    /// Between the monitor's probes.
    pub check_interval: Duration,
    /// How long a probe may take.
    pub check_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            statement: Duration::from_secs(30),
            lock: Duration::from_secs(30),
            idle_in_transaction: Duration::from_secs(10),
            request: Duration::from_secs(10),
            check_interval: Duration::from_secs(2),
            check_timeout: Duration::from_secs(2),
        }
    }
}

impl Timeouts {
    /// The timeouts from a variable lookup; unset ones keep their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Timeouts, ConfigError> {
        let mut t = Timeouts::default();
        for (variable, field) in [
            ("OUTPOST_STATEMENT_TIMEOUT", &mut t.statement),
            ("OUTPOST_LOCK_TIMEOUT", &mut t.lock),
            (
                "OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT",
                &mut t.idle_in_transaction,
            ),
            ("OUTPOST_REQUEST_TIMEOUT", &mut t.request),
            ("OUTPOST_CHECK_INTERVAL", &mut t.check_interval),
            ("OUTPOST_CHECK_TIMEOUT", &mut t.check_timeout),
        ] {
            if let Some(v) = get(variable) {
                *field = parse_timeout(variable, &v)?;
            }
        }
        Ok(t)
    }
}

/// The longest timeout accepted: a day.
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

fn parse_timeout(variable: &str, value: &str) -> Result<Duration, ConfigError> {
    let ms: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, "expected a whole number of milliseconds"))?;
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(invalid(
            variable,
            value,
            format!("expected 1 to {MAX_TIMEOUT_MS} milliseconds (every round trip has a bound)"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// Where the Prisma schema is looked for when `PRISMA_SCHEMA` is not set.
pub const DEFAULT_PRISMA_SCHEMA: &str = "./prisma/schema.prisma";

/// A configuration value that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable has a value outpost cannot use.
    #[error("{variable}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        variable: String,
        /// The value as given (passwords redacted).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A variable needed by the command is not set.
    #[error("{variable} is not set: {why}")]
    Missing {
        /// The variable's name.
        variable: String,
        /// What needs it.
        why: String,
    },
}

fn invalid(variable: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        variable: variable.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Parses a boolean the way `.env` files spell them.
pub fn parse_bool(variable: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, "expected true or false")),
    }
}

/// Reads `LOCAL_DATABASE_URL`: `file:./local.db` (Prisma), `file:/abs.db`,
/// or a bare path. Query parameters after `?` (Prisma's
/// `?connection_limit=1`) are ignored.
pub fn parse_local_url(variable: &str, value: &str) -> Result<PathBuf, ConfigError> {
    let v = value.trim();
    let path = if let Some(rest) = v.strip_prefix("file://") {
        rest
    } else if let Some(rest) = v.strip_prefix("file:") {
        rest
    } else if v.contains("://") {
        return Err(invalid(
            variable,
            value,
            "the local database must be a SQLite file, written file:./local.db",
        ));
    } else {
        v
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(invalid(variable, value, "no file path after file:"));
    }
    if path == ":memory:" {
        return Err(invalid(
            variable,
            value,
            "an in-memory database cannot hold a replica",
        ));
    }
    if path.contains('\0') {
        return Err(invalid(variable, value, "the path contains a NUL byte"));
    }
    Ok(PathBuf::from(path))
}

fn parse_tables(variable: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let names: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = names.iter().find(|n| n.contains('\0') || n.len() > 63) {
        return Err(invalid(
            variable,
            value,
            format!("{bad:?} is not a PostgreSQL table name"),
        ));
    }
    Ok(names)
}

impl Config {
    /// Builds the configuration from a variable lookup (environment, `.env`
    /// and flags already layered by the caller). Unset variables take their
    /// defaults (module doc).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let database_url = match get("DATABASE_URL") {
            Some(v) => Some(
                DatabaseUrl::parse(&v)
                    .map_err(|reason| invalid("DATABASE_URL", &redact(&v), reason))?,
            ),
            None => None,
        };
        let gateway = match (get("OUTPOST_GATEWAY_URL"), get("OUTPOST_GATEWAY_TOKEN")) {
            (Some(url), Some(token)) => {
                let target = GatewayTarget::new(&url, &token)?;
                Some(match get("OUTPOST_GATEWAY_CA") {
                    Some(ca) => target.with_ca(&ca)?,
                    None => target,
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    variable: "OUTPOST_GATEWAY_TOKEN".into(),
                    why: "a node syncing through OUTPOST_GATEWAY_URL presents a token".into(),
                });
            }
            (None, _) => None,
        };
        if gateway.is_some() && database_url.is_some() {
            // Two ways to the same data would make "which one did this
            // write go to" a question; a node has one.
            return Err(invalid(
                "OUTPOST_GATEWAY_URL",
                &gateway.as_ref().map(|g| g.url.clone()).unwrap_or_default(),
                "set either DATABASE_URL (direct) or OUTPOST_GATEWAY_URL (through a gateway), not both",
            ));
        }
        let flag = |k: &str, default: bool| match get(k) {
            Some(v) => parse_bool(k, &v),
            None => Ok(default),
        };
        let local_database_path = match get("LOCAL_DATABASE_URL") {
            Some(v) => parse_local_url("LOCAL_DATABASE_URL", &v)?,
            None => PathBuf::from("./local.db"),
        };
        let sync_interval = match get("LOCAL_DATABASE_SYNC_INTERVAL") {
            Some(v) => {
                let ms: u64 = v.trim().parse().map_err(|_| {
                    invalid(
                        "LOCAL_DATABASE_SYNC_INTERVAL",
                        &v,
                        "expected a whole number of milliseconds",
                    )
                })?;
                (ms > 0).then(|| Duration::from_millis(ms))
            }
            None => Some(Duration::from_millis(300_000)),
        };
        let mut tables = TableSelection::default();
        if let Some(v) = get("OUTPOST_SCHEMA") {
            if v.contains('\0') || v.trim().is_empty() {
                return Err(invalid("OUTPOST_SCHEMA", &v, "not a schema name"));
            }
            tables.pg_schema = v.trim().to_string();
        }
        if let Some(v) = get("OUTPOST_TABLES") {
            let names = parse_tables("OUTPOST_TABLES", &v)?;
            if names.is_empty() {
                return Err(invalid("OUTPOST_TABLES", &v, "names no table"));
            }
            tables.include = Some(names);
        }
        if let Some(v) = get("OUTPOST_EXCLUDE_TABLES") {
            tables
                .exclude
                .extend(parse_tables("OUTPOST_EXCLUDE_TABLES", &v)?);
        }
        Ok(Config {
            database_url,
            gateway,
            enable_local_database: flag("ENABLE_LOCAL_DATABASE", true)?,
            local_database_path,
            sync_interval,
            enable_offline_mode: flag("ENABLE_OFFLINE_MODE", true)?,
            tables,
            timeouts: Timeouts::from_lookup(get)?,
            prisma_schema: get("PRISMA_SCHEMA").map(|v| PathBuf::from(v.trim())),
        })
    }

    /// The Prisma schema file to read and whether it must exist: the one
    /// `PRISMA_SCHEMA` names (it must), else [`DEFAULT_PRISMA_SCHEMA`] (read
    /// only when present, so an application without Prisma needs nothing).
    pub fn prisma_schema_file(&self) -> (PathBuf, bool) {
        match &self.prisma_schema {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_PRISMA_SCHEMA), false),
        }
    }

    /// The server's connection string, or an error saying what needs it
    /// (and, for a node in gateway topology, that it has none by design).
    pub fn require_database_url(&self, why: &str) -> Result<&DatabaseUrl, ConfigError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| ConfigError::Missing {
                variable: "DATABASE_URL".into(),
                why: if self.gateway.is_some() {
                    format!("{why}; this node syncs through OUTPOST_GATEWAY_URL and has no database connection (docs/gateway.md)")
                } else {
                    why.into()
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn timeouts_default_and_are_configurable_in_milliseconds() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.timeouts.statement, Duration::from_secs(30));
        assert_eq!(c.timeouts.check_interval, Duration::from_secs(2));
        let c = config(&[
            ("OUTPOST_STATEMENT_TIMEOUT", "1500"),
            ("OUTPOST_LOCK_TIMEOUT", " 250 "),
            ("OUTPOST_IDLE_IN_TRANSACTION_TIMEOUT", "4000"),
            ("OUTPOST_REQUEST_TIMEOUT", "7000"),
            ("OUTPOST_CHECK_INTERVAL", "500"),
            ("OUTPOST_CHECK_TIMEOUT", "800"),
        ])
        .expect("valid");
        assert_eq!(
            c.timeouts,
            Timeouts {
                statement: Duration::from_millis(1500),
                lock: Duration::from_millis(250),
                idle_in_transaction: Duration::from_millis(4000),
                request: Duration::from_millis(7000),
                check_interval: Duration::from_millis(500),
                check_timeout: Duration::from_millis(800),
            }
        );
        for bad in ["0", "-5", "1.5", "soon", "86400001"] {
            let e = config(&[("OUTPOST_CHECK_TIMEOUT", bad)]).expect_err(bad);
            assert!(
                e.to_string()
                    .starts_with(&format!("OUTPOST_CHECK_TIMEOUT={bad:?} is invalid")),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = config(&[]).expect("defaults");
        assert!(c.enable_local_database && c.enable_offline_mode);
        assert_eq!(c.local_database_path, PathBuf::from("./local.db"));
        assert_eq!(c.sync_interval, Some(Duration::from_millis(300_000)));
        assert_eq!(c.tables, TableSelection::default());
        assert!(c.database_url.is_none());
    }

    #[test]
    fn seed_values_are_read() {
        let c = config(&[
            ("ENABLE_LOCAL_DATABASE", "TRUE"),
            (
                "LOCAL_DATABASE_URL",
                "file:./data/dev.db?connection_limit=1",
            ),
            ("LOCAL_DATABASE_SYNC_INTERVAL", "1500"),
            ("ENABLE_OFFLINE_MODE", "off"),
            ("DATABASE_URL", "postgresql://app:s3cret@db.local:5432/app"),
            ("OUTPOST_TABLES", "User, Post"),
            ("OUTPOST_EXCLUDE_TABLES", "Audit"),
        ])
        .expect("valid");
        assert_eq!(c.local_database_path, PathBuf::from("./data/dev.db"));
        assert_eq!(c.sync_interval, Some(Duration::from_millis(1500)));
        assert!(!c.enable_offline_mode);
        assert_eq!(
            c.tables.include,
            Some(vec!["User".to_string(), "Post".to_string()])
        );
        assert_eq!(c.tables.exclude, vec!["_prisma_migrations", "Audit"]);
        let url = c.database_url.expect("url");
        assert_eq!(url.to_string(), "postgresql://app:***@db.local:5432/app");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "0")]).map(|c| c.sync_interval),
            Ok(None)
        );
    }

    #[test]
    fn bad_values_name_variable_and_value() {
        let e = config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "5 minutes")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LOCAL_DATABASE_SYNC_INTERVAL=\"5 minutes\" is invalid: expected a whole number of milliseconds"
        );
        let e = config(&[("ENABLE_OFFLINE_MODE", "maybe")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ENABLE_OFFLINE_MODE=\"maybe\" is invalid: expected true or false"
        );
        let e = config(&[("LOCAL_DATABASE_URL", "postgres://x/y")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("LOCAL_DATABASE_URL=\"postgres://x/y\"")
        );
        let e = config(&[("LOCAL_DATABASE_URL", "file:")]).unwrap_err();
        assert!(e.to_string().contains("no file path"));
        let e = config(&[("DATABASE_URL", "mysql://root:hunter2@h/db")]).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("DATABASE_URL="), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let e = config(&[("DATABASE_URL", "postgres://u:pw@[bad/db")]).unwrap_err();
        assert!(!e.to_string().contains("pw@"), "{e}");
        let e = config(&[("LOCAL_DATABASE_SYNC_INTERVAL", "-1")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("LOCAL_DATABASE_SYNC_INTERVAL=\"-1\"")
        );
    }

    #[test]
    fn sslmode_and_sslrootcert_are_read_and_kept_from_the_driver() {
        let u = DatabaseUrl::parse("postgres://u:p@h/db").expect("plain");
        assert_eq!(u.tls(), &TlsParams::default());
        assert_eq!(u.driver_conninfo(), "postgres://u:p@h/db");
        let u = DatabaseUrl::parse(
            "postgres://u:p@h:5433/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .expect("url");
        assert_eq!(u.tls().mode, SslMode::VerifyFull);
        assert_eq!(u.tls().root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            u.driver_conninfo(),
            "postgres://u:p@h:5433/db?application_name=x&sslmode=require"
        );
        let u = DatabaseUrl::parse(
            "host=h user=u password='a b\\'c' sslmode=require sslrootcert=/ca.pem",
        )
        .expect("pairs");
        assert_eq!(
            u.tls().mode,
            SslMode::VerifyCa,
            "require + root cert = verify-ca"
        );
        assert_eq!(
            u.driver_conninfo(),
            "host='h' user='u' password='a b\\'c' sslmode=require"
        );
        assert_eq!(
            DatabaseUrl::parse("host=h sslmode=disable").map(|u| u.tls().mode),
            Ok(SslMode::Disable)
        );
        let e = DatabaseUrl::parse("host=h sslmode=verify").unwrap_err();
        assert!(e.contains("not one of disable, prefer"), "{e}");
        let e = DatabaseUrl::parse("postgres://h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert is not supported"), "{e}");
        assert!(DatabaseUrl::parse("host=h password='unterminated").is_err());
        assert!(DatabaseUrl::parse("just words").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:p@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("postgres://h/db?user=u&password=secret&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn every_libpq_password_form_is_redacted() {
        let cases = [
            (
                "host=127.0.0.1 port=5498 user=postgres password = S3cretPW! dbname=app",
                "host=127.0.0.1 port=5498 user=postgres password = *** dbname=app",
            ),
            ("host=h password= S3cret", "host=h password= ***"),
            (
                "host=h PASSWORD=S3cret user=u",
                "host=h PASSWORD=*** user=u",
            ),
            (
                "host=h password='a b\\'c' user=u",
                "host=h password=*** user=u",
            ),
            ("host=h password='unterminated rest", "host=h password=***"),
            (
                "host=h password S3cret user=u",
                "host=h password *** user=u",
            ),
            ("sslpassword=S3cret host=h", "sslpassword=*** host=h"),
            (
                "postgres://u:p%40ss/w@h1:5432,h2:5433/db",
                "postgres://u:***@h1:5432,h2:5433/db",
            ),
            (
                "postgresql://h/db?user=u&PASSWORD=S3cret",
                "postgresql://h/db?user=u&PASSWORD=***",
            ),
            (
                "postgres://h/db?pass%77ord=S3cret&x=1",
                "postgres://h/db?pass%77ord=***&x=1",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(redact(raw), want, "{raw}");
        }
    }

    #[test]
    fn scrub_hides_the_password_in_any_text() {
        let u = DatabaseUrl::parse("host=h user=u password = 'S3 cret'").expect("pairs");
        assert_eq!(
            u.scrub("password authentication failed: S3 cret"),
            "password authentication failed: ***"
        );
        let u = DatabaseUrl::parse("postgres://u:S3%2Fcret@h/db").expect("url");
        assert_eq!(u.scrub("x S3/cret y S3%2Fcret"), "x *** y ***");
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        /// A password with a prefix no other part of the string has, so a
        /// match is the password and nothing else.
        fn password() -> impl Strategy<Value = String> {
            "[A-Za-z0-9!#%&()*+,./:;<>?@^_{|}~ '\\=-]{1,12}".prop_map(|s| format!("Zq{s}"))
        }

        fn quote(p: &str) -> String {
            format!("'{}'", p.replace('\\', "\\\\").replace('\'', "\\'"))
        }

        /// For a query value (`+` is a space there).
        fn encode(p: &str) -> String {
            url::form_urlencoded::byte_serialize(p.as_bytes()).collect()
        }

        /// For a URL's userinfo: every byte but letters and digits escaped.
        fn encode_userinfo(p: &str) -> String {
            p.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        }

        /// Connection strings in every form libpq takes, some malformed.
        fn conninfo() -> impl Strategy<Value = (String, String)> {
            (
                password(),
                0usize..8,
                prop::sample::select(vec!["password", "PASSWORD", "Password"]),
                prop::sample::select(vec!["=", " = ", "= ", " ="]),
                prop::sample::select(vec!["", " junk", " 'open", " =", " host"]),
            )
                .prop_map(|(pw, form, key, eq, tail)| {
                    let s = match form {
                        0 => format!("host=127.0.0.1 user=app {key}{eq}{} dbname=app", quote(&pw)),
                        1 if !pw.contains([' ', '\'', '\\']) => {
                            format!("host=h {key}{eq}{pw} port=5432")
                        }
                        1 => format!("{key}{eq}{} host=h", quote(&pw)),
                        2 => format!(
                            "postgres://app:{}@db.example:5432/app",
                            encode_userinfo(&pw)
                        ),
                        3 => format!(
                            "postgresql://app:{}@h1:5432,h2:5433/app",
                            encode_userinfo(&pw)
                        ),
                        4 => format!(
                            "postgres://h/app?user=u&{key}={}&sslmode=disable",
                            encode(&pw)
                        ),
                        5 => format!("host=h {key} {}", quote(&pw)),
                        6 => format!("mysql://root:{}@h/db", encode_userinfo(&pw)),
                        _ => format!("user=u {key}{eq}{}", quote(&pw)),
                    };
                    (format!("{s}{tail}"), pw)
                })
        }

        fn leaks(text: &str, pw: &str) -> bool {
            text.contains(pw)
                || text.contains(&encode(pw))
                || text.contains(&encode_userinfo(pw))
                || text.contains(&quote(pw))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn no_form_and_no_error_shows_the_password((raw, pw) in conninfo()) {
                prop_assert!(!leaks(&redact(&raw), &pw), "redact({raw:?}) = {:?}", redact(&raw));
                match config(&[("DATABASE_URL", raw.as_str())]) {
                    Ok(c) => {
                        let url = c.database_url.clone().expect("set");
                        for shown in [url.to_string(), format!("{url:?}"), format!("{c:?}"), url.redacted()] {
                            prop_assert!(!leaks(&shown, &pw), "{raw:?} shown as {shown:?}");
                        }
                        let echoed = format!("connection refused for {raw} ({pw})");
                        prop_assert!(!leaks(&url.scrub(&echoed), &pw), "scrub kept it: {raw:?}");
                    }
                    Err(e) => {
                        for shown in [e.to_string(), format!("{e:?}")] {
                            prop_assert!(!leaks(&shown, &pw), "{raw:?} refused as {shown:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_gateway_node_has_a_url_and_a_token_and_no_database_url() {
        let c = config(&[
            ("OUTPOST_GATEWAY_URL", "https://gw.example.com/"),
            ("OUTPOST_GATEWAY_TOKEN", "abc.def.ghi"),
        ])
        .expect("valid");
        let g = c.gateway.as_ref().expect("a gateway");
        assert_eq!(g.url, "https://gw.example.com");
        assert_eq!(g.expose_token(), "abc.def.ghi");
        assert!(
            !format!("{c:?}").contains("abc.def.ghi"),
            "the token is never shown"
        );
        let missing = c.require_database_url("remote mode").expect_err("no url");
        assert!(
            missing.to_string().contains("OUTPOST_GATEWAY_URL"),
            "{missing}"
        );

        let both = config(&[
            ("OUTPOST_GATEWAY_URL", "http://gw:4100"),
            ("OUTPOST_GATEWAY_TOKEN", "t"),
            ("DATABASE_URL", "postgres://u:secret@h/db"),
        ])
        .expect_err("both");
        assert!(both.to_string().contains("not both"), "{both}");
        let no_token = config(&[("OUTPOST_GATEWAY_URL", "http://gw:4100")]).expect_err("no token");
        assert!(
            no_token.to_string().contains("OUTPOST_GATEWAY_TOKEN"),
            "{no_token}"
        );
        let creds = config(&[
            ("OUTPOST_GATEWAY_URL", "http://u:secret@gw:4100"),
            ("OUTPOST_GATEWAY_TOKEN", "t"),
        ])
        .expect_err("credentials in the URL");
        assert!(!creds.to_string().contains("secret"), "{creds}");
        assert!(
            config(&[
                ("OUTPOST_GATEWAY_URL", "ftp://gw"),
                ("OUTPOST_GATEWAY_TOKEN", "t")
            ])
            .is_err()
        );
        assert!(
            config(&[
                ("OUTPOST_GATEWAY_URL", "http://gw"),
                ("OUTPOST_GATEWAY_TOKEN", "a b")
            ])
            .is_err()
        );
    }
}
