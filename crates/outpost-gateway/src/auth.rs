//! Bearer tokens: JWTs whose `sub` is the principal, `exp` enforced,
//! `aud` checked when the gateway is given one, verified with the keys the
//! gateway was configured with: an HS256 shared secret
//! (`OUTPOST_GATEWAY_SECRET`), public keys in PEM files (RS256 or EdDSA,
//! `OUTPOST_GATEWAY_PUBLIC_KEY`), and a JWKS (`OUTPOST_GATEWAY_JWKS`, a
//! file or a URL, keys chosen by the token's `kid`, read again while the
//! gateway runs: [`Keys::refresh_jwks`], [`Keys::verify_claims_fresh`]).
//! [`Keys::verify`] answers every refusal with its reason; [`Keys::create`]
//! is `outpost gateway token create`.
//!
//! Every key has its algorithm pinned when it is loaded: a token is only
//! ever checked with a key whose algorithm is the one in its header, so a
//! token cannot choose a weaker algorithm (the RS256-key-as-HMAC-secret
//! confusion, or `alg: none`), and an HS256 token is refused outright when
//! the gateway holds only public keys.

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;

/// Shortest secret accepted: HS256 with fewer than 256 bits of key is
/// weaker than the hash (RFC 7518 §3.2 requires at least the hash's size).
pub const MIN_SECRET_LEN: usize = 32;

/// Seconds of clock difference tolerated on `exp`.
pub const LEEWAY_SECS: u64 = 5;

/// The claims the gateway reads. `sub` and `exp` are optional here only so
/// that a token without them reaches the validation, which names the
/// missing claim (a required field would fail earlier as "cannot be read").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Every other claim (the sync rules read them: `$org`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A verified token's claims as the sync rules read them, by name, as
/// text: a string as it is, a number or boolean as its JSON text, an array
/// or object as JSON; `null` is left out (a claim it names is missing).
pub type ClaimValues = std::collections::BTreeMap<String, String>;

fn claim_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The principal a request was verified as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// One verification key with its algorithm pinned, and where it came from
/// (messages name the file, never the key).
#[derive(Clone)]
struct Verifier {
    /// The JWKS `kid`; `None` for the secret and PEM keys, which are tried
    /// for any token of their algorithm.
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The signing side of [`Keys`]: a key and its algorithm (and `kid`, put
/// in the header so a JWKS-configured gateway picks the key at once).
#[derive(Clone)]
struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

/// The gateway's verification keys (and the key `token create` signs
/// with, when it has one).
#[derive(Clone)]
pub struct Keys {
    signer: Option<Signer>,
    /// The secret's key: fixed for the process (an environment variable).
    verifiers: Arc<Vec<Verifier>>,
    /// The PEM files' keys, read again while the gateway runs
    /// ([`Keys::refresh_pem`]).
    pem: Option<Arc<PemKeys>>,
    /// The JWKS's keys, read again from their file or URL while the
    /// gateway runs ([`Keys::refresh_jwks`]).
    jwks: Option<Arc<Jwks>>,
    audience: Option<String>,
}

/// Where the JWKS comes from (`OUTPOST_GATEWAY_JWKS`): a file, or an
/// `https://` (or `http://`) URL such as an auth provider's
/// `/.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, read again at each refresh.
    File(std::path::PathBuf),
    /// A URL, fetched again at each refresh.
    Url(String),
}

impl JwksSource {
    /// A URL when the value starts with `https://` or `http://`, a file
    /// otherwise.
    pub fn parse(value: &str) -> JwksSource {
        let v = value.trim();
        if v.starts_with("https://") || v.starts_with("http://") {
            JwksSource::Url(v.to_string())
        } else {
            JwksSource::File(std::path::PathBuf::from(v))
        }
    }

    fn label(&self) -> &Path {
        match self {
            JwksSource::File(p) => p,
            JwksSource::Url(u) => Path::new(u.as_str()),
        }
    }
}

/// How long a JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A token naming an unknown `kid` makes the gateway read the JWKS again
/// (a provider's new key, published before its first token), at most this
/// often: tokens with made-up `kid`s must not turn into a stream of
/// requests to the provider.
pub const JWKS_REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// The PEM files (`OUTPOST_GATEWAY_PUBLIC_KEY`) and the keys read from
/// them last.
struct PemKeys {
    paths: Vec<std::path::PathBuf>,
    keys: std::sync::RwLock<Arc<Vec<Verifier>>>,
}

impl PemKeys {
    fn current(&self) -> Arc<Vec<Verifier>> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The JWKS's source and the keys read from it last.
struct Jwks {
    source: JwksSource,
    keys: std::sync::RwLock<Arc<Vec<Verifier>>>,
    /// When a token's unknown `kid` last made the gateway read the JWKS
    /// again ([`JWKS_REFETCH_AT_MOST_EVERY`]).
    kid_refetch: std::sync::Mutex<Option<std::time::Instant>>,
    /// One read at a time.
    reading: tokio::sync::Mutex<()>,
}

impl Jwks {
    fn current(&self) -> Arc<Vec<Verifier>> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The JWKS's text from its source.
async fn read_jwks(source: &JwksSource) -> Result<String, String> {
    const WHAT: &str = "OUTPOST_GATEWAY_JWKS";
    match source {
        JwksSource::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_key_file(&path, WHAT))
                .await
                .map_err(|e| format!("{WHAT}: reading the file failed: {e}"))?
        }
        JwksSource::Url(url) => {
            let fail = |reason: String| file_error(Path::new(url.as_str()), WHAT, reason);
            let client = reqwest::Client::builder()
                .timeout(JWKS_FETCH_TIMEOUT)
                .build()
                .map_err(|e| fail(format!("no HTTP client: {e}")))?;
            let response = client
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| {
                    fail(format!(
                        "cannot be fetched: {}",
                        outpost_remote::error::with_causes(&e)
                    ))
                })?;
            let status = response.status();
            if !status.is_success() {
                return Err(fail(format!("answered {status}")));
            }
            // A JWKS is a few KB; anything near a megabyte is not one.
            const MAX_JWKS: usize = 1024 * 1024;
            if response
                .content_length()
                .is_some_and(|n| n > MAX_JWKS as u64)
            {
                return Err(fail("is larger than 1 MiB".into()));
            }
            // Read in chunks, so a body without a length stops at the
            // limit instead of being held whole.
            let mut response = response;
            let mut body: Vec<u8> = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                fail(format!(
                    "cannot be fetched: {}",
                    outpost_remote::error::with_causes(&e)
                ))
            })? {
                if body.len() + chunk.len() > MAX_JWKS {
                    return Err(fail("is larger than 1 MiB".into()));
                }
                body.extend_from_slice(&chunk);
            }
            String::from_utf8(body).map_err(|_| fail("is not UTF-8 text".into()))
        }
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

fn alg_name(a: Algorithm) -> String {
    format!("{a:?}")
}

/// An error for a key file: the file's path and the reason, never its
/// contents.
fn file_error(path: &Path, what: &str, reason: impl std::fmt::Display) -> String {
    format!("{what} {}: {reason}", path.display())
}

fn read_key_file(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| file_error(path, what, format!("cannot be read: {e}")))
}

/// The public key of a PEM file: RS256 for an RSA key (`BEGIN PUBLIC KEY`
/// or `BEGIN RSA PUBLIC KEY`), EdDSA for an Ed25519 one. Private keys are
/// refused (the gateway only verifies, and a private key in its config is
/// a key to leak).
fn public_pem(path: &Path) -> Result<Verifier, String> {
    const WHAT: &str = "OUTPOST_GATEWAY_PUBLIC_KEY";
    let text = read_key_file(path, WHAT)?;
    if text.contains("PRIVATE KEY") {
        return Err(file_error(
            path,
            WHAT,
            "is a private key: give the gateway the public key only \
             (`openssl pkey -in key.pem -pubout -out public.pem`)",
        ));
    }
    if !text.contains("-----BEGIN ") {
        return Err(file_error(
            path,
            WHAT,
            "is not a PEM file (no -----BEGIN line)",
        ));
    }
    // Ed25519 first: `from_rsa_pem` classifies by the key's OID and refuses
    // an Ed25519 key, and vice versa, so the order only decides the message.
    if let Ok(key) = DecodingKey::from_ed_pem(text.as_bytes()) {
        return Ok(Verifier {
            kid: None,
            alg: Algorithm::EdDSA,
            key,
        });
    }
    match DecodingKey::from_rsa_pem(text.as_bytes()) {
        Ok(key) => Ok(Verifier {
            kid: None,
            alg: Algorithm::RS256,
            key,
        }),
        Err(e) => Err(file_error(
            path,
            WHAT,
            format!(
                "is neither an RSA nor an Ed25519 public key ({e}); other algorithms (ES256, RS512, PS256, …) go in a JWKS file with their `alg`"
            ),
        )),
    }
}

/// The keys of a JWKS file (`{"keys": [...]}`), each with its `kid` and
/// its algorithm: the JWK's `alg`, or, when it has none, the one its key
/// type allows (RS256 for RSA, EdDSA for Ed25519, ES256/ES384 for P-256/
/// P-384). Keys marked for encryption (`"use": "enc"`) are left out; `oct`
/// (shared-secret) keys are refused (the secret has its own variable), and
/// so are two keys with one `kid` (a token naming it would be ambiguous).
fn jwks_text(text: &str, path: &Path) -> Result<Vec<Verifier>, String> {
    const WHAT: &str = "OUTPOST_GATEWAY_JWKS";
    let set: JwkSet = serde_json::from_str(text).map_err(|e| {
        file_error(
            path,
            WHAT,
            format!("is not a JWKS (`{{\"keys\": [...]}}`): {e}"),
        )
    })?;
    let mut out: Vec<Verifier> = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let label = match &kid {
            Some(k) => format!("key {} (kid {k:?})", i + 1),
            None => format!("key {}", i + 1),
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            tracing::info!(file = %path.display(), key = %label, "JWKS key for encryption left out");
            continue;
        }
        let stated = match &jwk.common.key_algorithm {
            Some(a) => Some(Algorithm::from_str(&a.to_string()).map_err(|_| {
                file_error(
                    path,
                    WHAT,
                    format!("{label}: algorithm {a} cannot sign tokens"),
                )
            })?),
            None => None,
        };
        let (family_default, family): (Option<Algorithm>, &[Algorithm]) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (
                Some(Algorithm::RS256),
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            ),
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                (Some(Algorithm::EdDSA), &[Algorithm::EdDSA])
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                return Err(file_error(
                    path,
                    WHAT,
                    format!("{label}: curve {:?} is not supported (Ed25519 is)", p.curve),
                ));
            }
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => (Some(Algorithm::ES256), &[Algorithm::ES256]),
                EllipticCurve::P384 => (Some(Algorithm::ES384), &[Algorithm::ES384]),
                _ => {
                    return Err(file_error(
                        path,
                        WHAT,
                        format!(
                            "{label}: curve {:?} is not supported (P-256, P-384 are)",
                            p.curve
                        ),
                    ));
                }
            },
            AlgorithmParameters::OctetKey(_) => {
                return Err(file_error(
                    path,
                    WHAT,
                    format!(
                        "{label}: a shared-secret (`oct`) key: put an HS256 secret in OUTPOST_GATEWAY_SECRET, not in the JWKS"
                    ),
                ));
            }
        };
        let alg = match stated.or(family_default) {
            Some(a) if family.contains(&a) => a,
            Some(a) => {
                return Err(file_error(
                    path,
                    WHAT,
                    format!("{label}: `alg` {} does not fit its key type", alg_name(a)),
                ));
            }
            None => {
                return Err(file_error(path, WHAT, format!("{label}: no algorithm")));
            }
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| file_error(path, WHAT, format!("{label}: {e}")))?;
        if let Some(k) = &kid
            && out.iter().any(|v| v.kid.as_deref() == Some(k))
        {
            return Err(file_error(path, WHAT, format!("two keys have kid {k:?}")));
        }
        out.push(Verifier { kid, alg, key });
    }
    if out.is_empty() {
        return Err(file_error(path, WHAT, "has no signature keys"));
    }
    Ok(out)
}

fn check_secret(secret: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "OUTPOST_GATEWAY_SECRET is too short: HS256 needs at least {MIN_SECRET_LEN} bytes \
             (for example `openssl rand -base64 48`)"
        ));
    }
    Ok(())
}

/// The `alg` of a token's header read by hand, for the one case the
/// library cannot name: an algorithm it does not know (`none` among them).
fn raw_alg(token: &str) -> Option<String> {
    let head = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_string)
}

/// Where the gateway's keys come from (all optional; at least one).
#[derive(Debug, Default, Clone)]
pub struct KeySources<'a> {
    /// The HS256 secret (`OUTPOST_GATEWAY_SECRET`).
    pub secret: Option<&'a str>,
    /// PEM public keys (`OUTPOST_GATEWAY_PUBLIC_KEY`, comma-separated).
    pub public_keys: Vec<&'a Path>,
    /// A JWKS file (`OUTPOST_GATEWAY_JWKS`). A file given here is read
    /// at once; see [`KeySources::jwks_url`] for a URL.
    pub jwks: Option<&'a Path>,
    /// A JWKS URL (`OUTPOST_GATEWAY_JWKS=https://…`): fetched by
    /// [`Keys::refresh_jwks`], which the gateway runs before it serves.
    pub jwks_url: Option<&'a str>,
    /// The audience tokens must name (`OUTPOST_GATEWAY_AUDIENCE`).
    pub audience: Option<&'a str>,
}

impl Keys {
    /// Keys from the shared secret (`OUTPOST_GATEWAY_SECRET`) and the
    /// audience tokens must name, if any.
    pub fn hs256(secret: &str, audience: Option<&str>) -> Result<Keys, String> {
        Keys::load(&KeySources {
            secret: Some(secret),
            audience,
            ..KeySources::default()
        })
    }

    /// Every configured key, loaded and checked: a file that cannot be read
    /// or holds no usable key is the error, naming the file.
    pub fn load(sources: &KeySources<'_>) -> Result<Keys, String> {
        let mut verifiers = Vec::new();
        let mut signer = None;
        if let Some(secret) = sources.secret {
            check_secret(secret)?;
            verifiers.push(Verifier {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
            signer = Some(Signer {
                key: EncodingKey::from_secret(secret.as_bytes()),
                alg: Algorithm::HS256,
                kid: None,
            });
        }
        let pem = if sources.public_keys.is_empty() {
            None
        } else {
            let keys = sources
                .public_keys
                .iter()
                .map(|p| public_pem(p))
                .collect::<Result<Vec<_>, _>>()?;
            Some(Arc::new(PemKeys {
                paths: sources
                    .public_keys
                    .iter()
                    .map(|p| p.to_path_buf())
                    .collect(),
                keys: std::sync::RwLock::new(Arc::new(keys)),
            }))
        };
        let jwks = match (sources.jwks, sources.jwks_url) {
            (Some(path), _) => {
                let text = read_key_file(path, "OUTPOST_GATEWAY_JWKS")?;
                Some(Jwks {
                    source: JwksSource::File(path.to_path_buf()),
                    keys: std::sync::RwLock::new(Arc::new(jwks_text(&text, path)?)),
                    kid_refetch: std::sync::Mutex::new(None),
                    reading: tokio::sync::Mutex::new(()),
                })
            }
            (None, Some(url)) => Some(Jwks {
                source: JwksSource::Url(url.to_string()),
                keys: std::sync::RwLock::new(Arc::new(Vec::new())),
                kid_refetch: std::sync::Mutex::new(None),
                reading: tokio::sync::Mutex::new(()),
            }),
            (None, None) => None,
        };
        if verifiers.is_empty() && pem.is_none() && jwks.is_none() {
            return Err("no token key: set OUTPOST_GATEWAY_SECRET (HS256), OUTPOST_GATEWAY_PUBLIC_KEY \
                 (PEM files: RS256 or EdDSA) or OUTPOST_GATEWAY_JWKS (a JWKS file or URL) (docs/gateway.md)"
                .to_string());
        }
        Ok(Keys {
            signer,
            verifiers: Arc::new(verifiers),
            pem,
            jwks: jwks.map(Arc::new),
            audience: sources.audience.map(str::to_string),
        })
    }

    /// Whether the gateway verifies with PEM files (read again by
    /// [`Keys::refresh_pem`]).
    pub fn has_pem(&self) -> bool {
        self.pem.is_some()
    }

    /// Reads the PEM files again and, when every one holds a usable public
    /// key, verifies with those from then on: a key file replaced in place
    /// (a rotation) verifies its tokens, the replaced key's are refused. A
    /// file that cannot be read or holds no usable key changes nothing: the
    /// keys read last stay, and the error names the file. The number of
    /// keys read; `Ok(0)` without PEM files.
    pub fn refresh_pem(&self) -> Result<usize, String> {
        let Some(pem) = &self.pem else {
            return Ok(0);
        };
        let keys = pem
            .paths
            .iter()
            .map(|p| public_pem(p))
            .collect::<Result<Vec<_>, _>>()?;
        let n = keys.len();
        match pem.keys.write() {
            Ok(mut k) => *k = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        Ok(n)
    }

    /// Where the JWKS comes from, when the gateway has one.
    pub fn jwks_source(&self) -> Option<&JwksSource> {
        self.jwks.as_ref().map(|j| &j.source)
    }

    /// Reads the JWKS again from its file or URL and, when it holds usable
    /// keys, verifies with those from then on (a key the provider removed
    /// stops verifying, a key it added starts). A JWKS that cannot be read
    /// or holds no usable key changes nothing: the keys read last stay, and
    /// the error names the source. The number of keys read; `Ok(0)`
    /// without a JWKS.
    pub async fn refresh_jwks(&self) -> Result<usize, String> {
        let Some(jwks) = &self.jwks else {
            return Ok(0);
        };
        let _one = jwks.reading.lock().await;
        let text = read_jwks(&jwks.source).await?;
        let keys = jwks_text(&text, jwks.source.label())?;
        let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        tracing::debug!(source = %jwks.source.label().display(), keys = keys.len(), kids = ?kids, "JWKS read");
        let n = keys.len();
        match jwks.keys.write() {
            Ok(mut k) => *k = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        Ok(n)
    }

    /// [`Keys::verify_claims`], reading the JWKS again first when the
    /// token names a `kid` the gateway does not know and the JWKS was not
    /// read in the last [`JWKS_REFETCH_AT_MOST_EVERY`] (a key the provider
    /// has just published verifies without waiting for the next refresh).
    /// `on_read` is told the read's outcome when there was one.
    pub async fn verify_claims_fresh(
        &self,
        header: Option<&str>,
        on_read: impl FnOnce(&Result<usize, String>),
    ) -> Result<(Principal, ClaimValues), GatewayError> {
        match self.verify_claims(header) {
            Err(GatewayError::Unauthorized {
                code: "unknown_key",
                message,
            }) => {
                // Claimed under the lock, so concurrent tokens read it once.
                let due = self.jwks.as_ref().is_some_and(|j| {
                    j.kid_refetch.lock().is_ok_and(|mut last| {
                        let due = last.is_none_or(|at| at.elapsed() >= JWKS_REFETCH_AT_MOST_EVERY);
                        if due {
                            *last = Some(std::time::Instant::now());
                        }
                        due
                    })
                });
                if !due {
                    return Err(GatewayError::Unauthorized {
                        code: "unknown_key",
                        message,
                    });
                }
                let read = self.refresh_jwks().await;
                if let Err(e) = &read {
                    tracing::warn!(error = %e, "reading the JWKS again for an unknown kid failed; the keys read last stay");
                }
                on_read(&read);
                self.verify_claims(header)
            }
            other => other,
        }
    }

    /// Keys that only sign, with the private key of a PEM file (Ed25519:
    /// EdDSA, RSA: RS256) and the `kid` to put in the header: `outpost
    /// gateway token create --key` for a gateway configured with the
    /// matching public key or JWKS.
    pub fn signing_pem(path: &Path, kid: Option<&str>) -> Result<Keys, String> {
        const WHAT: &str = "--key";
        let text = read_key_file(path, WHAT)?;
        if !text.contains("PRIVATE KEY") {
            return Err(file_error(path, WHAT, "is not a private key (PEM)"));
        }
        let (key, alg) = match EncodingKey::from_ed_pem(text.as_bytes()) {
            Ok(k) => (k, Algorithm::EdDSA),
            Err(_) => match EncodingKey::from_rsa_pem(text.as_bytes()) {
                Ok(k) => (k, Algorithm::RS256),
                Err(e) => {
                    return Err(file_error(
                        path,
                        WHAT,
                        format!("is neither an Ed25519 nor an RSA private key ({e})"),
                    ));
                }
            },
        };
        Ok(Keys {
            signer: Some(Signer {
                key,
                alg,
                kid: kid.map(str::to_string),
            }),
            verifiers: Arc::new(Vec::new()),
            pem: None,
            jwks: None,
            audience: None,
        })
    }

    /// The algorithms the gateway verifies, for messages (`HS256, EdDSA`).
    pub fn algorithms(&self) -> String {
        let from_jwks = self.jwks.as_ref().map(|j| j.current()).unwrap_or_default();
        let from_pem = self.pem.as_ref().map(|p| p.current()).unwrap_or_default();
        let mut names: Vec<String> = self
            .verifiers
            .iter()
            .chain(from_pem.iter())
            .chain(from_jwks.iter())
            .map(|v| alg_name(v.alg))
            .collect();
        names.sort();
        names.dedup();
        names.join(", ")
    }

    /// How many verification keys the gateway holds (logged at start).
    pub fn len(&self) -> usize {
        self.verifiers.len() + self.pem.as_ref().map_or(0, |p| p.current().len()) + self.jwks_len()
    }

    /// How many keys of the JWKS verify now (0 without one).
    pub fn jwks_len(&self) -> usize {
        self.jwks.as_ref().map_or(0, |j| j.current().len())
    }

    /// Whether it holds none (only a signing key).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sign(&self, claims: &Claims) -> Result<String, String> {
        let signer = self
            .signer
            .as_ref()
            .ok_or("no signing key: tokens are signed with OUTPOST_GATEWAY_SECRET or --key")?;
        let mut header = Header::new(signer.alg);
        header.kid = signer.kid.clone();
        jsonwebtoken::encode(&header, claims, &signer.key)
            .map_err(|e| format!("signing the token: {e}"))
    }

    /// A token for `sub`, valid for `ttl`, naming `aud` if given.
    pub fn create(&self, sub: &str, ttl: Duration, aud: Option<&str>) -> Result<String, String> {
        self.create_claims(sub, ttl, aud, serde_json::Map::new())
    }

    fn create_claims(
        &self,
        sub: &str,
        ttl: Duration,
        aud: Option<&str>,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?
            .as_secs();
        self.sign(&Claims {
            sub: Some(sub.to_string()),
            exp: Some(now.saturating_add(ttl.as_secs())),
            iat: Some(now),
            aud: aud.map(str::to_string),
            extra,
        })
    }

    /// The principal of an `Authorization` header's value, or why not.
    pub fn verify(&self, header: Option<&str>) -> Result<Principal, GatewayError> {
        self.verify_claims(header).map(|(p, _)| p)
    }

    /// A token signed with the gateway's key carrying `extra` claims
    /// besides `sub`, `exp` and `iat` (tests and tools; an auth provider's
    /// tokens carry their own).
    pub fn create_with(
        &self,
        sub: &str,
        ttl: Duration,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        self.create_claims(sub, ttl, None, extra)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        validation
    }

    /// The principal and the claims (for the sync rules) of an
    /// `Authorization` header's value, or why not.
    ///
    /// The key is chosen by the token's header: its `kid` names a JWKS key
    /// (keys without a `kid`, the secret and PEM keys, are candidates for
    /// any token), and only keys whose pinned algorithm is the header's
    /// `alg` are tried. A token whose `kid` names no key was signed by a
    /// key that is not (or no longer) the gateway's: `unknown_key`.
    pub fn verify_claims(
        &self,
        header: Option<&str>,
    ) -> Result<(Principal, ClaimValues), GatewayError> {
        let unauthorized = |code, message: &str| GatewayError::Unauthorized {
            code,
            message: message.to_string(),
        };
        let Some(header) = header else {
            return Err(unauthorized(
                "token_missing",
                "no bearer token: send `Authorization: Bearer <token>` (outpost gateway token create)",
            ));
        };
        let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        else {
            return Err(unauthorized(
                "token_missing",
                "the Authorization header is not `Bearer <token>`",
            ));
        };
        let token = token.trim();
        let head = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(e) => {
                return Err(match raw_alg(token) {
                    Some(alg) if alg.eq_ignore_ascii_case("none") => unauthorized(
                        "bad_algorithm",
                        "the token is unsigned (alg `none`): refused",
                    ),
                    Some(alg) => GatewayError::Unauthorized {
                        code: "bad_algorithm",
                        message: format!(
                            "the token's algorithm {alg:?} is not one this gateway verifies ({})",
                            self.algorithms()
                        ),
                    },
                    None => GatewayError::Unauthorized {
                        code: "bad_token",
                        message: format!("the token cannot be read: {e}"),
                    },
                });
            }
        };
        let kid = head.kid.as_deref();
        let from_jwks = self.jwks.as_ref().map(|j| j.current()).unwrap_or_default();
        let from_pem = self.pem.as_ref().map(|p| p.current()).unwrap_or_default();
        let by_kid: Vec<&Verifier> = self
            .verifiers
            .iter()
            .chain(from_pem.iter())
            .chain(from_jwks.iter())
            .filter(|v| v.kid.is_none() || kid.is_none() || v.kid.as_deref() == kid)
            .collect();
        if by_kid.is_empty() {
            return Err(GatewayError::Unauthorized {
                code: "unknown_key",
                message: format!(
                    "the token's key (kid {:?}) is not one of this gateway's keys: it was rotated out, or the token is from another issuer",
                    kid.unwrap_or_default()
                ),
            });
        }
        let candidates: Vec<&Verifier> = by_kid.into_iter().filter(|v| v.alg == head.alg).collect();
        if candidates.is_empty() {
            return Err(GatewayError::Unauthorized {
                code: "bad_algorithm",
                message: format!(
                    "the token is signed with {}; this gateway's keys verify {}",
                    alg_name(head.alg),
                    self.algorithms()
                ),
            });
        }
        let mut outcome = None;
        for v in candidates {
            match jsonwebtoken::decode::<Claims>(token, &v.key, &self.validation(v.alg)) {
                Ok(data) => {
                    outcome = Some(Ok(data));
                    break;
                }
                // Another key of the same algorithm may be the one.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    outcome = Some(Err(e));
                }
                Err(e) => {
                    outcome = Some(Err(e));
                    break;
                }
            }
        }
        let data = match outcome {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(refusal(&e)),
            None => return Err(unauthorized("bad_signature", "no key verifies the token")),
        };
        let mut values: ClaimValues = data
            .claims
            .extra
            .iter()
            .filter_map(|(k, v)| claim_text(v).map(|t| (k.clone(), t)))
            .collect();
        if let Some(aud) = &data.claims.aud {
            values.insert("aud".into(), aud.clone());
        }
        match data.claims.sub {
            Some(sub) if !sub.trim().is_empty() => {
                values.insert("sub".into(), sub.clone());
                Ok((Principal(sub), values))
            }
            _ => Err(unauthorized("missing_claim", "the token's `sub` is empty")),
        }
    }
}

/// A verification failure's answer.
fn refusal(e: &jsonwebtoken::errors::Error) -> GatewayError {
    let unauthorized = |code, message: &str| GatewayError::Unauthorized {
        code,
        message: message.to_string(),
    };
    match e.kind() {
        ErrorKind::ExpiredSignature => {
            unauthorized("token_expired", "the token has expired: get a new one")
        }
        ErrorKind::InvalidSignature => unauthorized(
            "bad_signature",
            "the token's signature does not verify with the gateway's keys",
        ),
        ErrorKind::InvalidAudience => unauthorized(
            "wrong_audience",
            "the token is not for this gateway (its audience differs)",
        ),
        ErrorKind::MissingRequiredClaim(c) => GatewayError::Unauthorized {
            code: "missing_claim",
            message: format!("the token has no `{c}` claim"),
        },
        ErrorKind::InvalidAlgorithm => unauthorized(
            "bad_algorithm",
            "the token's algorithm does not match its key",
        ),
        _ => GatewayError::Unauthorized {
            code: "bad_token",
            message: format!("the token cannot be read: {e}"),
        },
    }
}

/// Parses a duration like `90s`, `15m`, `12h`, `30d` (a bare number is
/// seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: expected e.g. 90s, 15m, 12h, 30d"))?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("{text:?}: unknown unit {other:?} (s, m, h, d)")),
    };
    if n == 0 {
        return Err(format!("{text:?}: a token must be valid for some time"));
    }
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    #[test]
    fn a_token_created_verifies_as_its_subject() {
        let keys = Keys::hs256(SECRET, None).expect("keys");
        let t = keys
            .create("clinic-7", Duration::from_secs(60), None)
            .expect("token");
        let p = keys.verify(Some(&format!("Bearer {t}"))).expect("verified");
        assert_eq!(p, Principal("clinic-7".into()));
    }

    #[test]
    fn refusals_say_why() {
        let keys = Keys::hs256(SECRET, Some("gw")).expect("keys");
        let code = |r: Result<Principal, GatewayError>| match r {
            Err(GatewayError::Unauthorized { code, .. }) => code,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(code(keys.verify(None)), "token_missing");
        assert_eq!(code(keys.verify(Some("Basic abc"))), "token_missing");
        let other = Keys::hs256("another-secret-that-is-long-enough-x", None).expect("keys");
        let forged = other
            .create("a", Duration::from_secs(60), Some("gw"))
            .expect("token");
        assert_eq!(
            code(keys.verify(Some(&format!("Bearer {forged}")))),
            "bad_signature"
        );
        let wrong_aud = keys
            .create("a", Duration::from_secs(60), Some("elsewhere"))
            .expect("token");
        assert_eq!(
            code(keys.verify(Some(&format!("Bearer {wrong_aud}")))),
            "wrong_audience"
        );
        // Expired beyond the leeway: signed by hand with an old `exp`.
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: Some("a".into()),
                exp: Some(1_000_000),
                iat: None,
                aud: Some("gw".into()),
                extra: serde_json::Map::new(),
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("token");
        assert_eq!(
            code(keys.verify(Some(&format!("Bearer {old}")))),
            "token_expired"
        );
        assert_eq!(code(keys.verify(Some("Bearer not.a.jwt"))), "bad_token");
        // Signed, but without `exp`, or without `sub`.
        let sign = |c: &Claims| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                c,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .expect("token")
        };
        let no_exp = sign(&Claims {
            sub: Some("a".into()),
            exp: None,
            iat: None,
            aud: Some("gw".into()),
            extra: serde_json::Map::new(),
        });
        assert_eq!(
            code(keys.verify(Some(&format!("Bearer {no_exp}")))),
            "missing_claim"
        );
        let no_sub = sign(&Claims {
            sub: None,
            exp: Some(u64::MAX / 2),
            iat: None,
            aud: Some("gw".into()),
            extra: serde_json::Map::new(),
        });
        assert_eq!(
            code(keys.verify(Some(&format!("Bearer {no_sub}")))),
            "missing_claim"
        );
    }

    #[test]
    fn short_secrets_and_bad_durations_are_refused() {
        assert!(Keys::hs256("short", None).is_err());
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m").ok(), Some(Duration::from_secs(900)));
        assert_eq!(
            parse_duration("2d").ok(),
            Some(Duration::from_secs(172_800))
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
