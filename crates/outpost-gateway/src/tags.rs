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

impl crate::Gateway {
    /// The digest of the rows of `table` a node with `claims` is served
    /// ([`crate::rules::Rules::digest`]); `None` without rules. For a node
    /// that keeps tags (`tagged`), a table whose rows carry them is marked
    /// so: a replica copied before tags (its rows untagged) differs, and
    /// copies the table again, with tags.
    pub(crate) fn digest(
        &self,
        table: &str,
        claims: &crate::auth::ClaimValues,
        tagged: bool,
    ) -> Option<String> {
        let digest = self.inner.options.rules.as_ref()?.digest(table, claims)?;
        Some(match tagged && self.tags_for(table).is_some() {
            true => format!("tagged:{digest}"),
            false => digest,
        })
    }

    /// The tag secret when rows of `table` carry tags: a table a rule
    /// filters (`crate::tags`). A rule of `true` serves the table whole,
    /// and its deletions tell a node nothing it is not served anyway.
    pub(crate) fn tags_for(&self, table: &str) -> Option<&crate::tags::TagKey> {
        let condition = &self.inner.scope.as_deref()?.of(table)?.condition;
        if condition.trim().eq_ignore_ascii_case("true") {
            return None;
        }
        self.inner.tags.as_ref()
    }

    /// The tag of `table`'s row `pk`, when rows of `table` carry tags.
    pub(crate) fn tag_of(&self, table: &str, pk: &[outpost_core::types::Value]) -> Option<String> {
        self.tags_for(table).map(|k| k.tag(table, pk))
    }

    /// Tags the rows of a pull for a node that keeps tags: each row of a
    /// filtered table gets its tag, and a deletion there loses its key
    /// (whether the row was deleted or is outside the node's scope).
    pub(crate) fn tag_pull(&self, batch: &mut outpost_core::sync::PullBatch) {
        for row in &mut batch.rows {
            row.tag = self.tag_of(&row.table, &row.pk);
            if row.tag.is_some() && row.values.is_none() {
                row.pk.clear();
            }
        }
    }

    /// Tags the outcomes of a push of `rows` for a node that keeps tags.
    pub(crate) fn tag_outcomes(
        &self,
        rows: &[outpost_core::sync::PushRow],
        outcomes: &mut [outpost_core::sync::PushOutcome],
    ) {
        use outpost_core::sync::PushOutcome;
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                PushOutcome::Applied { tag, .. } | PushOutcome::AlreadyApplied { tag, .. } => {
                    *tag = self.tag_of(&row.table, &row.pk);
                }
                PushOutcome::Conflict(server) => {
                    server.tag = self.tag_of(&server.table, &server.pk)
                }
                PushOutcome::Failed { .. } => {}
            }
        }
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
