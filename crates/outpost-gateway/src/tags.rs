//! Row tags: what a node is told of a deleted row in a filtered table.
//!
//! The gateway keeps no record of which rows a node holds, so a pull sends
//! every changed row of a filtered table that the node is not served now
//! as a deletion: one that just left its scope, and equally one it never
//! had. Sending the key would tell a node the keys of other principals'
//! rows. Instead every row a node is served carries a **tag**,
//! `HMAC-SHA256(secret, table ‖ 0 ‖ key)` cut to 128 bits, and a deletion
//! carries the tag alone: the node kept the tag of each row it was served
//! and finds the row by it, and a tag of a row it never held tells it
//! nothing (it cannot compute tags of guessed keys without the secret).
//!
//! The secret lives in `outpost.meta` (`gateway_tag_secret`), created by
//! the first gateway that starts with rules, so every gateway of one
//! database computes the same tags and none is kept on a node. The key is
//! hashed as its values' JSON (`outpost_core::types::Value`'s one spelling
//! per value), the same whichever path read the row: a copy, a pull, the
//! change log's key of a deleted row, a push's acknowledgement.

use outpost_core::types::Value;
use outpost_remote::RemoteError;

use crate::StartError;
use ring::hmac;

use crate::pool::Pool;

/// The `outpost.meta` key holding the secret (hex).
const SECRET_KEY: &str = "gateway_tag_secret";

/// The tag secret of one database.
pub(crate) struct TagKey(hmac::Key);

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(…)")
    }
}

impl TagKey {
    fn from_secret(secret: &[u8]) -> TagKey {
        TagKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The tag of `table`'s row with key `pk`.
    pub fn tag(&self, table: &str, pk: &[Value]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(table.as_bytes());
        ctx.update(&[0]);
        // A key always serialises (values are plain JSON); an empty
        // spelling would still be a deterministic tag.
        ctx.update(&serde_json::to_vec(pk).unwrap_or_default());
        hex::encode(&ctx.sign().as_ref()[..16])
    }

    /// Reads the database's tag secret, creating it first when no gateway
    /// has (two gateways starting together agree: the first insert wins).
    pub async fn load(pool: &Pool) -> Result<TagKey, StartError> {
        let mut fresh = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
            .map_err(|_| StartError::Rules("the system's random source failed".into()))?;
        let mut pooled = pool.get().await?;
        let conn = pooled.conn();
        conn.client
            .execute(
                "INSERT INTO \"outpost\".\"meta\" (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&SECRET_KEY, &hex::encode(fresh)],
            )
            .await
            .map_err(|e| RemoteError::db("creating the gateway's tag secret", e))?;
        let row = conn
            .client
            .query_one(
                "SELECT value FROM \"outpost\".\"meta\" WHERE key = $1",
                &[&SECRET_KEY],
            )
            .await
            .map_err(|e| RemoteError::db("reading the gateway's tag secret", e))?;
        let text: String = row.get(0);
        let secret = hex::decode(text.trim())
            .ok()
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| {
                StartError::Rules(format!(
                    "outpost.meta's {SECRET_KEY} is not at least 32 bytes of hex; delete the row and a gateway creates a new one (nodes then copy their filtered tables again)"
                ))
            })?;
        pooled.release();
        Ok(TagKey::from_secret(&secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_depends_on_the_secret_the_table_and_the_key() {
        let a = TagKey::from_secret(&[1; 32]);
        let b = TagKey::from_secret(&[2; 32]);
        let k = vec![Value::Text("p1".into())];
        assert_eq!(a.tag("Post", &k), a.tag("Post", &k));
        assert_eq!(a.tag("Post", &k).len(), 32);
        assert_ne!(a.tag("Post", &k), b.tag("Post", &k));
        assert_ne!(a.tag("Post", &k), a.tag("Comment", &k));
        assert_ne!(
            a.tag("Post", &k),
            a.tag("Post", &[Value::Text("p2".into())])
        );
        // The separator keeps table and key apart.
        assert_ne!(
            a.tag("Po", &[Value::Text("st".into())]),
            a.tag("Pos", &[Value::Text("t".into())])
        );
    }
}
