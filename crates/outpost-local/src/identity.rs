//! The replica's identity over time: which node it is, which lineage of the
//! file it is (incarnations), and which schema snapshot a long-lived
//! connection has loaded.
//!
//! A node id names one replica, but a file can be copied (to a second
//! machine) or put back from a backup; either way two histories of the file
//! share one node id, and the server's "already applied" rule, which trusts
//! a node's `local_seq` numbers, would skip the second history's edits. So
//! the file keeps a list of **incarnations** in `_outpost_meta.incarnations`
//! (random UUIDs, newest last): before each pushed batch the node adds a new
//! one, after reading the batch's rows, and the server's node registry
//! records it (`outpost.nodes.incarnation`). A file that knows the server's
//! incarnation is the file the server last heard from (or a later state of
//! it); one that does not is an older copy (a restored backup) or a sibling
//! (a copy running elsewhere): it becomes a new node
//! ([`Replica::become_new_node`]), keeping its pending edits, which are then
//! compared with the server's rows like any other writer's. The protocol is
//! in `docs/protocol.md`, "Node identity".
//!
//! The schema snapshot may likewise be changed by another process (an
//! `outpost setup` beside a running node): [`Replica::refresh`] reloads it,
//! and every write transaction of the engine checks it first
//! ([`Replica::check_schema`]).

use outpost_core::schema::Schema;
use rusqlite::{Connection, TransactionBehavior};
use uuid::Uuid;

use crate::error::LocalError;
use crate::meta::{meta_get, meta_set};
use crate::replica::Replica;

/// Incarnations a file remembers. Only the server's latest matters, and it
/// is at most a few rotations old (one per failed push attempt since the
/// last one that reached the server); older ones are dropped.
const KEPT_INCARNATIONS: usize = 256;

/// What [`Replica::refresh`] found changed in the file since it was
/// loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// The schema snapshot was reloaded.
    pub schema: bool,
    /// The node id changed (another process on the file made it a new
    /// node).
    pub node_id: bool,
}

/// The incarnations stored in the file, oldest first (empty when none was
/// recorded yet).
fn stored_incarnations(conn: &Connection) -> Result<Vec<Uuid>, LocalError> {
    let Some(text) = meta_get(conn, "incarnations")? else {
        return Ok(Vec::new());
    };
    let ids: Vec<String> = serde_json::from_str(&text).map_err(|_| LocalError::BadMetadata {
        key: "incarnations",
        value: Some(text.clone()),
        expected: "a JSON array of UUIDs",
    })?;
    ids.iter()
        .map(|s| {
            Uuid::parse_str(s).map_err(|_| LocalError::BadMetadata {
                key: "incarnations",
                value: Some(text.clone()),
                expected: "a JSON array of UUIDs",
            })
        })
        .collect()
}

fn store_incarnations(conn: &Connection, ids: &[Uuid]) -> Result<(), LocalError> {
    let start = ids.len().saturating_sub(KEPT_INCARNATIONS);
    let text: Vec<String> = ids[start..].iter().map(Uuid::to_string).collect();
    meta_set(conn, "incarnations", Some(&serde_json::to_string(&text)?))
}

/// [`Replica::has_local_edits`]: two index reads (`status <> 'SYNCED'` lets
/// the partial index serve the first; without it the search for an edit
/// walked every entry when there was none, on every run that pushed
/// nothing; `crate::plans` pins it).
pub(crate) const HAS_LOCAL_EDITS: &str = "SELECT EXISTS (SELECT 1 FROM \"_outpost_rows\" \
     WHERE status IN ('PENDING', 'FAILED') AND status <> 'SYNCED') \
     OR COALESCE((SELECT max(local_seq) FROM \"_outpost_changes\"), 0) \
        > (SELECT seq FROM \"_outpost_local_seq\" WHERE id = 1)";

impl Replica {
    /// The file's incarnations, oldest first; the last is the current one.
    /// A file made before incarnations existed gets its first one here.
    pub fn incarnations(&mut self) -> Result<Vec<Uuid>, LocalError> {
        let ids = stored_incarnations(self.connection())?;
        if !ids.is_empty() {
            return Ok(ids);
        }
        self.rotate_incarnation()
    }

    /// Starts a new incarnation (module doc) and returns every incarnation,
    /// the new one last. Called after the rows of a batch were read and
    /// before it is pushed: everything pushed under an incarnation was
    /// written to the file before the incarnation was, so a backup that
    /// knows it also holds every edit pushed under it.
    pub fn rotate_incarnation(&mut self) -> Result<Vec<Uuid>, LocalError> {
        let tx = self
            .connection_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(LocalError::sqlite("starting a new incarnation"))?;
        let mut ids = stored_incarnations(&tx)?;
        ids.push(Uuid::new_v4());
        store_incarnations(&tx, &ids)?;
        tx.commit()
            .map_err(LocalError::sqlite("starting a new incarnation"))?;
        Ok(ids)
    }

    /// Makes this file a new node (module doc): a new node id and a new
    /// first incarnation; the old id is kept in `_outpost_meta.former_node_ids`.
    /// Pending, failed and conflicting rows stay as they are. Ids reserved
    /// from the server's sequences are forgotten: the other copy of the file
    /// holds the same reservations. Returns the new node id.
    pub fn become_new_node(&mut self) -> Result<Uuid, LocalError> {
        let old = self.node_id();
        let new = Uuid::new_v4();
        let tx = self
            .connection_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(LocalError::sqlite("making the replica a new node"))?;
        let stored = meta_get(&tx, "node_id")?;
        if stored.as_deref() != Some(old.to_string().as_str()) {
            // Another process on this file did it already: take its id.
            drop(tx);
            self.refresh()?;
            return Ok(self.node_id());
        }
        let mut former: Vec<String> = match meta_get(&tx, "former_node_ids")? {
            Some(j) => serde_json::from_str(&j).unwrap_or_default(),
            None => Vec::new(),
        };
        former.push(old.to_string());
        meta_set(
            &tx,
            "former_node_ids",
            Some(&serde_json::to_string(&former)?),
        )?;
        meta_set(&tx, "node_id", Some(&new.to_string()))?;
        store_incarnations(&tx, &[Uuid::new_v4()])?;
        tx.execute("DELETE FROM \"_outpost_ids\"", [])
            .map_err(LocalError::sqlite("forgetting reserved ids"))?;
        tx.commit()
            .map_err(LocalError::sqlite("making the replica a new node"))?;
        self.set_node_id(new);
        Ok(new)
    }

    /// Whether the file holds local edits not yet on the server: `PENDING`
    /// or `FAILED` entries, or captured changes not folded yet. Only these
    /// can be mistaken for the node's own pushes by another history of the
    /// file, so a run without them skips the identity check until it
    /// pushes. Two indexed reads; writes nothing.
    pub fn has_local_edits(&self) -> Result<bool, LocalError> {
        self.connection()
            .prepare_cached(HAS_LOCAL_EDITS)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(LocalError::sqlite("looking for local edits"))
    }

    /// The principal (a gateway token's `sub`) the node last registered
    /// under, when it syncs through a gateway.
    pub fn principal(&self) -> Result<Option<String>, LocalError> {
        meta_get(self.connection(), "gateway_principal")
    }

    /// Records the principal the node registered under.
    pub fn set_principal(&mut self, principal: &str) -> Result<(), LocalError> {
        meta_set(self.connection(), "gateway_principal", Some(principal))
    }

    /// A shared device's next user (docs/gateway.md, "A shared device"):
    /// when the file was registered under another principal than
    /// `principal` and holds no local edits, it becomes a new node now,
    /// before its new user edits anything, and records `principal`. Returns
    /// the new node id, or `None` when nothing changed (the same principal,
    /// none recorded, or edits made under the former one, which the next
    /// sync refuses saying so).
    pub fn switch_principal(&mut self, principal: &str) -> Result<Option<Uuid>, LocalError> {
        match self.principal()? {
            Some(p) if p != principal => {}
            _ => return Ok(None),
        }
        if !self.held_edits()?.is_empty() {
            return Ok(None);
        }
        let new = self.become_new_node()?;
        self.set_principal(principal)?;
        Ok(Some(new))
    }

    /// The local edits the replica holds, counted by status (`PENDING`,
    /// `FAILED`, `CONFLICT`; captured changes not yet folded count as
    /// `PENDING`): what keeps it from continuing under another principal.
    /// Empty when there are none.
    pub fn held_edits(&self) -> Result<std::collections::BTreeMap<String, i64>, LocalError> {
        let mut held = std::collections::BTreeMap::new();
        // Two index reads spare the fold in the common case (nothing held).
        if !self.has_local_edits()? {
            return Ok(held);
        }
        for ((_, status), n) in self.status_counts()? {
            *held.entry(status).or_default() += n;
        }
        Ok(held)
    }

    /// Node ids this file had before it became a new node, oldest first.
    pub fn former_node_ids(&self) -> Result<Vec<Uuid>, LocalError> {
        let ids: Vec<String> = match meta_get(self.connection(), "former_node_ids")? {
            Some(j) => serde_json::from_str(&j).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect())
    }

    /// Reloads what another process may have changed in the file: the
    /// schema snapshot (an `outpost setup`, a migration) and the node id.
    /// Costs one indexed read when nothing changed.
    pub fn refresh(&mut self) -> Result<Refreshed, LocalError> {
        let mut out = Refreshed::default();
        if let Some(id) = meta_get(self.connection(), "node_id")? {
            let id = Uuid::parse_str(&id).map_err(|_| LocalError::BadMetadata {
                key: "node_id",
                value: Some(id.clone()),
                expected: "a UUID",
            })?;
            if id != self.node_id() {
                tracing::warn!(old = %self.node_id(), new = %id, "another process made the replica a new node");
                self.set_node_id(id);
                out.node_id = true;
            }
        }
        let stored = meta_get(self.connection(), "schema_hash")?;
        if stored.is_some() && stored.as_deref() != Some(self.loaded_schema_hash()) {
            let Some(json) = meta_get(self.connection(), "schema")? else {
                return Err(LocalError::BadMetadata {
                    key: "schema",
                    value: None,
                    expected: "a schema snapshot",
                });
            };
            let schema: Schema = serde_json::from_str(&json)?;
            tracing::warn!(
                tables = schema.tables.len(),
                "the replica's schema snapshot was changed by another process; reloaded"
            );
            self.set_schema(schema, stored.unwrap_or_default());
            out.schema = true;
        }
        Ok(out)
    }

    /// Fails with [`LocalError::SchemaChanged`] when the stored schema
    /// snapshot is not the one this connection loaded. Run inside a write
    /// transaction, it guarantees the transaction writes with the file's
    /// schema.
    pub fn check_schema(&self) -> Result<(), LocalError> {
        check_schema_on(self.connection(), self.loaded_schema_hash())
    }
}

/// [`Replica::check_schema`] on a connection or transaction.
pub(crate) fn check_schema_on(conn: &Connection, loaded: &str) -> Result<(), LocalError> {
    match meta_get(conn, "schema_hash")? {
        Some(stored) if stored != loaded => Err(LocalError::SchemaChanged),
        _ => Ok(()),
    }
}
