//! Bearer tokens: JWTs whose `sub` is the principal, `exp` enforced,
//! `aud` checked when the gateway is given one, verified with the keys the
//! gateway was configured with: an HS256 shared secret
//! (`OUTPOST_GATEWAY_SECRET`, or `OUTPOST_GATEWAY_SECRET_FILE`, one per
//! line), public keys in PEM files (RS256, EdDSA, ES256 or ES384,
//! `OUTPOST_GATEWAY_PUBLIC_KEY`), and a JWKS (`OUTPOST_GATEWAY_JWKS`, a
//! file or a URL, keys chosen by the token's `kid`). Files and the JWKS are
//! read again while the gateway runs ([`Keys::refresh_files`],
//! [`Keys::refresh_jwks`], [`Keys::verify_claims_fresh`]); loading them is
//! `auth/keys.rs`.
//! [`Keys::verify`] answers every refusal with its reason; [`Keys::create`]
//! is `outpost gateway token create`.
//!
//! Every key has its algorithm pinned when it is loaded: a token is only
//! ever checked with a key whose algorithm is the one in its header, so a
//! token cannot choose a weaker algorithm (the RS256-key-as-HMAC-secret
//! confusion, or `alg: none`), and an HS256 token is refused outright when
//! the gateway holds only public keys.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;

mod keys;

pub use keys::{JWKS_FETCH_TIMEOUT, JWKS_REFETCH_AT_MOST_EVERY, JwksSource};
use keys::{
    Jwks, KeyFile, KeyFiles, KeySet, Signer, Verifier, alg_name, check_secret, jwks_text,
    read_jwks, read_key_file, secret_file,
};

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

/// The gateway's verification keys (and the key `token create` signs
/// with, when it has one).
#[derive(Clone)]
pub struct Keys {
    signer: Option<Signer>,
    /// The secret's key: fixed for the process (an environment variable).
    verifiers: Arc<Vec<Verifier>>,
    /// The PEM and secret files' keys, read again while the gateway runs
    /// ([`Keys::refresh_files`]).
    files: Option<Arc<KeyFiles>>,
    /// The JWKS's keys, read again from their file or URL while the
    /// gateway runs ([`Keys::refresh_jwks`]).
    jwks: Option<Arc<Jwks>>,
    audience: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
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
    /// A file of HS256 secrets, one per line (`OUTPOST_GATEWAY_SECRET_FILE`),
    /// read again while the gateway runs.
    pub secret_file: Option<&'a Path>,
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
            check_secret("OUTPOST_GATEWAY_SECRET", secret)?;
            verifiers.push(keys::secret_verifier(secret.as_bytes()));
            signer = Some(Signer {
                key: EncodingKey::from_secret(secret.as_bytes()),
                alg: Algorithm::HS256,
                kid: None,
            });
        }
        let mut files: Vec<KeyFile> = sources
            .public_keys
            .iter()
            .map(|p| KeyFile::Pem(p.to_path_buf()))
            .collect();
        if let Some(path) = sources.secret_file {
            files.push(KeyFile::Secrets(path.to_path_buf()));
            // `token create` signs with the file's first secret.
            if signer.is_none()
                && let Some(first) = secret_file(path)?.first()
            {
                signer = Some(Signer {
                    key: EncodingKey::from_secret(first.as_bytes()),
                    alg: Algorithm::HS256,
                    kid: None,
                });
            }
        }
        let files = if files.is_empty() {
            None
        } else {
            let keys = KeySet::new(KeyFiles::read(&files)?);
            Some(Arc::new(KeyFiles { files, keys }))
        };
        let jwks = match (sources.jwks, sources.jwks_url) {
            (Some(path), _) => {
                let text = read_key_file(path, "OUTPOST_GATEWAY_JWKS")?;
                Some(Jwks::new(
                    JwksSource::File(path.to_path_buf()),
                    jwks_text(&text, path)?,
                ))
            }
            (None, Some(url)) => Some(Jwks::new(JwksSource::Url(url.to_string()), Vec::new())),
            (None, None) => None,
        };
        if verifiers.is_empty() && files.is_none() && jwks.is_none() {
            return Err(
                "no token key: set OUTPOST_GATEWAY_SECRET or OUTPOST_GATEWAY_SECRET_FILE (HS256), \
                 OUTPOST_GATEWAY_PUBLIC_KEY (PEM files: RS256, EdDSA, ES256 or ES384) or \
                 OUTPOST_GATEWAY_JWKS (a JWKS file or URL) (docs/gateway.md)"
                    .to_string(),
            );
        }
        Ok(Keys {
            signer,
            verifiers: Arc::new(verifiers),
            files,
            jwks: jwks.map(Arc::new),
            audience: sources.audience.map(str::to_string),
        })
    }

    /// Whether the gateway verifies with key files (PEM public keys, a
    /// secret file), read again by [`Keys::refresh_files`].
    pub fn has_files(&self) -> bool {
        self.files.is_some()
    }

    /// Reads the key files again and, when every one holds usable keys,
    /// verifies with those from then on: a key file replaced in place (a
    /// rotation) verifies its tokens, the replaced key's are refused. A
    /// file that cannot be read or holds no usable key changes nothing: the
    /// keys read last stay, and the error names the file. The number of
    /// keys read; `Ok(0)` without key files.
    pub fn refresh_files(&self) -> Result<usize, String> {
        let Some(files) = &self.files else {
            return Ok(0);
        };
        let keys = KeyFiles::read(&files.files)?;
        let n = keys.len();
        files.keys.replace(keys);
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
        jwks.keys.replace(keys);
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
    /// EdDSA, P-256/P-384 in PKCS#8: ES256/ES384, RSA: RS256) and the `kid` to put in the header: `outpost
    /// gateway token create --key` for a gateway configured with the
    /// matching public key or JWKS.
    pub fn signing_pem(path: &Path, kid: Option<&str>) -> Result<Keys, String> {
        let (key, alg) = keys::private_pem(path, "--key")?;
        Ok(Keys {
            signer: Some(Signer {
                key,
                alg,
                kid: kid.map(str::to_string),
            }),
            verifiers: Arc::new(Vec::new()),
            files: None,
            jwks: None,
            audience: None,
        })
    }

    /// The keys read last from the key files and from the JWKS.
    fn read_keys(&self) -> (Arc<Vec<Verifier>>, Arc<Vec<Verifier>>) {
        (
            self.files
                .as_ref()
                .map(|f| f.keys.current())
                .unwrap_or_default(),
            self.jwks
                .as_ref()
                .map(|j| j.keys.current())
                .unwrap_or_default(),
        )
    }

    /// The algorithms the gateway verifies, for messages (`HS256, EdDSA`).
    pub fn algorithms(&self) -> String {
        let (from_files, from_jwks) = self.read_keys();
        let mut names: Vec<String> = self
            .verifiers
            .iter()
            .chain(from_files.iter())
            .chain(from_jwks.iter())
            .map(|v| alg_name(v.alg))
            .collect();
        names.sort();
        names.dedup();
        names.join(", ")
    }

    /// How many verification keys the gateway holds (logged at start).
    pub fn len(&self) -> usize {
        self.verifiers.len()
            + self.files.as_ref().map_or(0, |f| f.keys.current().len())
            + self.jwks_len()
    }

    /// How many keys of the JWKS verify now (0 without one).
    pub fn jwks_len(&self) -> usize {
        self.jwks.as_ref().map_or(0, |j| j.keys.current().len())
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
        let (from_files, from_jwks) = self.read_keys();
        let by_kid: Vec<&Verifier> = self
            .verifiers
            .iter()
            .chain(from_files.iter())
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
