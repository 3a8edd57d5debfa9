//! Where the gateway's token keys come from, and reading them again: the
//! HS256 secret (a variable, or a file of secrets read again while the
//! gateway runs), public keys in PEM files (RSA, Ed25519, P-256, P-384),
//! and a JWKS (a file or a URL). Every key becomes a [`Verifier`] with its
//! algorithm pinned as it is read; a [`KeySet`] holds what one source gave
//! last, replaced whole by a read that succeeds and kept by one that fails.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use super::MIN_SECRET_LEN;

/// One verification key with its algorithm pinned, and where it came from
/// (messages name the file, never the key).
#[derive(Clone)]
pub(super) struct Verifier {
    /// The JWKS `kid`; `None` for the secret and PEM keys, which are tried
    /// for any token of their algorithm.
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    pub(super) key: DecodingKey,
}

/// The signing side of [`super::Keys`]: a key and its algorithm (and `kid`, put
/// in the header so a JWKS-configured gateway picks the key at once).
#[derive(Clone)]
pub(super) struct Signer {
    pub(super) key: EncodingKey,
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
}

/// The keys read last from one source, replaced whole by a read that
/// succeeds and kept by one that fails (a half-written file, a provider
/// down): verification never sees a mix, nor an empty set after a bad read.
pub(super) struct KeySet(RwLock<Arc<Vec<Verifier>>>);

impl KeySet {
    pub(super) fn new(keys: Vec<Verifier>) -> KeySet {
        KeySet(RwLock::new(Arc::new(keys)))
    }

    /// The keys now (a cheap clone of the `Arc`).
    pub(super) fn current(&self) -> Arc<Vec<Verifier>> {
        match self.0.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(super) fn replace(&self, keys: Vec<Verifier>) {
        match self.0.write() {
            Ok(mut k) => *k = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
    }
}

/// A key file the gateway reads again while it runs.
#[derive(Debug, Clone)]
pub(super) enum KeyFile {
    /// A public key (`OUTPOST_GATEWAY_PUBLIC_KEY`).
    Pem(PathBuf),
    /// HS256 secrets, one per line (`OUTPOST_GATEWAY_SECRET_FILE`).
    Secrets(PathBuf),
}

/// The key files and the keys read from them last.
pub(super) struct KeyFiles {
    pub(super) files: Vec<KeyFile>,
    pub(super) keys: KeySet,
}

impl KeyFiles {
    /// Every file's keys, or the first file's error.
    pub(super) fn read(files: &[KeyFile]) -> Result<Vec<Verifier>, String> {
        let mut out = Vec::new();
        for f in files {
            match f {
                KeyFile::Pem(p) => out.push(public_pem(p)?),
                KeyFile::Secrets(p) => out.extend(
                    secret_file(p)?
                        .iter()
                        .map(|s| secret_verifier(s.as_bytes())),
                ),
            }
        }
        Ok(out)
    }
}

/// The JWKS's source and the keys read from it last.
pub(super) struct Jwks {
    pub(super) source: JwksSource,
    pub(super) keys: KeySet,
    /// When a token's unknown `kid` last made the gateway read the JWKS
    /// again ([`JWKS_REFETCH_AT_MOST_EVERY`]).
    pub(super) kid_refetch: std::sync::Mutex<Option<std::time::Instant>>,
    /// One read at a time.
    pub(super) reading: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub(super) fn new(source: JwksSource, keys: Vec<Verifier>) -> Jwks {
        Jwks {
            source,
            keys: KeySet::new(keys),
            kid_refetch: std::sync::Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }
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

    pub(super) fn label(&self) -> &Path {
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

/// The JWKS's text from its source.
pub(super) async fn read_jwks(source: &JwksSource) -> Result<String, String> {
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

pub(super) fn alg_name(a: Algorithm) -> String {
    format!("{a:?}")
}

/// An error for a key file: the file's path and the reason, never its
/// contents.
pub(super) fn file_error(path: &Path, what: &str, reason: impl std::fmt::Display) -> String {
    format!("{what} {}: {reason}", path.display())
}

pub(super) fn read_key_file(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| file_error(path, what, format!("cannot be read: {e}")))
}

/// The public key of a PEM file: RS256 for an RSA key (`BEGIN PUBLIC KEY`
/// or `BEGIN RSA PUBLIC KEY`), EdDSA for an Ed25519 one, ES256/ES384 for a
/// P-256/P-384 one. Private keys are
/// refused (the gateway only verifies, and a private key in its config is
/// a key to leak).
pub(super) fn public_pem(path: &Path) -> Result<Verifier, String> {
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
    if let Ok(key) = DecodingKey::from_ec_pem(text.as_bytes()) {
        return Ok(Verifier {
            kid: None,
            alg: ec_algorithm(&text).map_err(|e| file_error(path, WHAT, e))?,
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
                "is not an RSA, Ed25519, P-256 or P-384 public key ({e}); other algorithms (RS512, PS256, …) go in a JWKS file with their `alg`"
            ),
        )),
    }
}

/// ES256 or ES384 by the curve a PEM key (public, or PKCS#8 private) names
/// in its algorithm identifier: `from_ec_pem` takes either curve and does
/// not say which, and the algorithm must be pinned when the key is read.
fn ec_algorithm(text: &str) -> Result<Algorithm, String> {
    // The curves' object identifiers as DER (tag, length, value).
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let der = pem::parse(text).map_err(|e| format!("is not a PEM file: {e}"))?;
    let names = |oid: &[u8]| der.contents().windows(oid.len()).any(|w| w == oid);
    if names(P256) {
        Ok(Algorithm::ES256)
    } else if names(P384) {
        Ok(Algorithm::ES384)
    } else {
        Err("is an elliptic-curve key on a curve other than P-256 or P-384 (ES512 and others are not supported)".into())
    }
}

/// The signing key of a private PEM file and its algorithm: EdDSA for
/// Ed25519, ES256/ES384 for a P-256/P-384 key in PKCS#8, RS256 for RSA.
pub(super) fn private_pem(path: &Path, what: &str) -> Result<(EncodingKey, Algorithm), String> {
    let text = read_key_file(path, what)?;
    if !text.contains("PRIVATE KEY") {
        return Err(file_error(path, what, "is not a private key (PEM)"));
    }
    if text.contains("BEGIN EC PRIVATE KEY") {
        return Err(file_error(
            path,
            what,
            "is an EC key in SEC1 form: convert it to PKCS#8 (`openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.p8.pem`)",
        ));
    }
    if let Ok(k) = EncodingKey::from_ed_pem(text.as_bytes()) {
        return Ok((k, Algorithm::EdDSA));
    }
    if let Ok(k) = EncodingKey::from_ec_pem(text.as_bytes()) {
        return Ok((
            k,
            ec_algorithm(&text).map_err(|e| file_error(path, what, e))?,
        ));
    }
    match EncodingKey::from_rsa_pem(text.as_bytes()) {
        Ok(k) => Ok((k, Algorithm::RS256)),
        Err(e) => Err(file_error(
            path,
            what,
            format!("is not an Ed25519, P-256, P-384 or RSA private key ({e})"),
        )),
    }
}

/// The HS256 verifier of a secret.
pub(super) fn secret_verifier(secret: &[u8]) -> Verifier {
    Verifier {
        kid: None,
        alg: Algorithm::HS256,
        key: DecodingKey::from_secret(secret),
    }
}

/// The secrets of a secret file (`OUTPOST_GATEWAY_SECRET_FILE`): one per
/// line, blank lines and `#` comments left out, each at least
/// [`MIN_SECRET_LEN`](super::MIN_SECRET_LEN) bytes; the first signs
/// (`outpost gateway token create`), every one verifies, so a new secret
/// goes first and the old one stays below it until its tokens expire.
pub(super) fn secret_file(path: &Path) -> Result<Vec<String>, String> {
    const WHAT: &str = "OUTPOST_GATEWAY_SECRET_FILE";
    let text = read_key_file(path, WHAT)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_secret(&format!("line {}", i + 1), line).map_err(|e| file_error(path, WHAT, e))?;
        out.push(line.to_string());
    }
    if out.is_empty() {
        return Err(file_error(path, WHAT, "holds no secret"));
    }
    Ok(out)
}

/// The keys of a JWKS file (`{"keys": [...]}`), each with its `kid` and
/// its algorithm: the JWK's `alg`, or, when it has none, the one its key
/// type allows (RS256 for RSA, EdDSA for Ed25519, ES256/ES384 for P-256/
/// P-384). Keys marked for encryption (`"use": "enc"`) are left out; `oct`
/// (shared-secret) keys are refused (the secret has its own variable), and
/// so are two keys with one `kid` (a token naming it would be ambiguous).
pub(super) fn jwks_text(text: &str, path: &Path) -> Result<Vec<Verifier>, String> {
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

/// `what` (`OUTPOST_GATEWAY_SECRET`, `line 3`) names the secret.
pub(super) fn check_secret(what: &str, secret: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{what} is too short: HS256 needs at least {MIN_SECRET_LEN} bytes \
             (for example `openssl rand -base64 48`)"
        ));
    }
    Ok(())
}
