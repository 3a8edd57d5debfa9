//! Bearer tokens: HS256 JWTs whose `sub` is the principal, `exp` enforced,
//! `aud` checked when the gateway is given one. [`Keys::verify`] answers
//! every refusal with its reason; [`Keys::create`] is `outpost gateway
//! token create`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
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

/// The gateway's verification (and signing) keys.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl Keys {
    /// Keys from the shared secret (`OUTPOST_GATEWAY_SECRET`) and the
    /// audience tokens must name, if any.
    pub fn hs256(secret: &str, audience: Option<&str>) -> Result<Keys, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "OUTPOST_GATEWAY_SECRET is too short: HS256 needs at least {MIN_SECRET_LEN} bytes \
                 (for example `openssl rand -base64 48`)"
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        Ok(Keys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        })
    }

    /// A token for `sub`, valid for `ttl`, naming `aud` if given.
    pub fn create(&self, sub: &str, ttl: Duration, aud: Option<&str>) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?
            .as_secs();
        let claims = Claims {
            sub: Some(sub.to_string()),
            exp: Some(now.saturating_add(ttl.as_secs())),
            iat: Some(now),
            aud: aud.map(str::to_string),
            extra: serde_json::Map::new(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| format!("signing the token: {e}"))
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?
            .as_secs();
        let claims = Claims {
            sub: Some(sub.to_string()),
            exp: Some(now.saturating_add(ttl.as_secs())),
            iat: Some(now),
            aud: None,
            extra,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| format!("signing the token: {e}"))
    }

    /// The principal and the claims (for the sync rules) of an
    /// `Authorization` header's value, or why not.
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
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => {
                unauthorized("token_expired", "the token has expired: get a new one")
            }
            ErrorKind::InvalidSignature => unauthorized(
                "bad_signature",
                "the token's signature does not verify with the gateway's key",
            ),
            ErrorKind::InvalidAudience => unauthorized(
                "wrong_audience",
                "the token is not for this gateway (its audience differs)",
            ),
            ErrorKind::MissingRequiredClaim(c) => GatewayError::Unauthorized {
                code: "missing_claim",
                message: format!("the token has no `{c}` claim"),
            },
            ErrorKind::InvalidAlgorithm => {
                unauthorized("bad_algorithm", "the token is not signed with HS256")
            }
            _ => GatewayError::Unauthorized {
                code: "bad_token",
                message: format!("the token cannot be read: {e}"),
            },
        })?;
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
