//! The campaign's checker: a pure function from the final state (server
//! rows, the server's audit history, every replica with its unsettled rows,
//! and the harness's own log of acknowledged writes) to the anomalies found.
//! No database here, so it can be fed deliberately broken states.
//!
//! What is checked, precisely (keys are never reused by the workload and
//! every insert or update writes a token unique to that write):
//!
//! 1. **Convergence**: every replica equals the server row for row (under
//!    sync rules, the server's rows in its scope: a row outside it is
//!    `out-of-scope`), except rows that replica lists as `CONFLICT` or
//!    `FAILED`; nothing is left
//!    `PENDING` after the nodes synced until quiet; every `FAILED` row
//!    carries the server's reason.
//! 2. **No acknowledged write lost**: a write acknowledged to a caller
//!    (committed to the replica, or committed on the server through the
//!    model service or a server writer) either landed — its token is in the
//!    server's audit history of that row, or for a delete the row is absent
//!    from the server — or was superseded by a later write of the same
//!    writer to the same row (a push sends a row's final state), or that row
//!    is listed `CONFLICT`/`FAILED` on that node. Writes whose outcome is
//!    unknown (the connection died during the commit) need not have landed.
//!    Later overwrites by other writers are fine: the history shows the
//!    write landed. One exemption, precisely: a write the operator's
//!    restore of a backup threw away — made on that node after the backup
//!    was taken and not on the server when the backup was put back (the
//!    harness reads the server at that moment; a delete is on the server
//!    only if the server deleted the row, since a row that never reached
//!    it comes back with the restored file's pending insert) — is
//!    legitimately lost; it
//!    neither counts nor supersedes an earlier write of that node. And one
//!    allowance for a copied replica: when the copy carried a row as a
//!    local insert the server did not have yet, the copy is a second device
//!    holding that row, so a delete of it on the original may be followed
//!    by the copy's insert (the server never had the row to delete); such a
//!    delete need not leave the row absent.
//! 3. **No row twice**: no key appears twice in a table, and no token is
//!    carried by two rows of one database (one write landing under two keys).
//! 4. **No delete resurrected**: once a row's delete committed on the
//!    server, its key has no later event in the audit history.
//! 5. **Nothing pushed twice**: no update event rewrites a row with exactly
//!    the tokens it already carried (the workload never writes a token
//!    twice, so such an event is an edit applied a second time, as a
//!    restored or copied replica pushing again what the server has would).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

/// A row: column name → JSON value.
pub type Row = BTreeMap<String, Json>;

/// Rows of one database: table → list of (key, row), as read (duplicates
/// possible in a broken state, which is why this is not a map).
pub type Tables = BTreeMap<String, Vec<(String, Row)>>;

/// Who wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Actor {
    /// A node (its index).
    Node(usize),
    /// A direct server writer.
    Server,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new row.
    Insert,
    /// Changed columns of a row.
    Update,
    /// Removed a row.
    Delete,
}

/// Whether the caller was told the write happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Committed, as far as the caller knows.
    Acked,
    /// The connection died while committing: it may or may not have landed.
    Unknown,
}

/// One write in the harness's independent log.
#[derive(Debug, Clone)]
pub struct Write {
    /// Order of acknowledgement (increasing).
    pub id: u64,
    /// The writer.
    pub actor: Actor,
    /// The table.
    pub table: String,
    /// The row key (`["…"]`, as `_outpost_rows.pk`).
    pub pk: String,
    /// Insert, update or delete.
    pub kind: Kind,
    /// The token the write stored (inserts and updates).
    pub token: Option<String>,
    /// Acknowledged or unknown.
    pub ack: Ack,
    /// The path it took (`replica-sql`, `model-local`, `model-remote`, `server`).
    pub via: &'static str,
}

/// One event of the server's audit history (an `AFTER` row trigger).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Assigned in trigger order; for one key, row locks make it commit order.
    pub seq: i64,
    /// The table.
    pub table: String,
    /// The row key.
    pub pk: String,
    /// `I`, `U` or `D`.
    pub op: String,
    /// Tokens the row carried after the event (its token columns).
    pub tokens: Vec<String>,
}

/// A row a replica lists as unsettled.
#[derive(Debug, Clone)]
pub struct Unsettled {
    /// `CONFLICT`, `FAILED` or `PENDING`.
    pub status: String,
    /// The server's message for a `FAILED` row.
    pub reason: Option<String>,
}

/// One replica at the end.
#[derive(Debug, Clone, Default)]
pub struct ReplicaState {
    /// Its rows.
    pub tables: Tables,
    /// `(table, pk)` → unsettled entry (status other than `SYNCED`).
    pub unsettled: BTreeMap<(String, String), Unsettled>,
    /// The server rows this replica may hold under the gateway's sync
    /// rules (its scope); `None`: every server row.
    pub scope: Option<Tables>,
}

/// Everything the checker looks at.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    /// Server rows.
    pub server: Tables,
    /// Replicas, by node index.
    pub replicas: Vec<ReplicaState>,
    /// The server's audit history.
    pub audit: Vec<AuditEvent>,
    /// The harness's log of writes.
    pub log: Vec<Write>,
    /// Columns that carry tokens.
    pub token_columns: Vec<String>,
    /// Writes a restore of a backup legitimately threw away (ids in `log`):
    /// made on the restored node after the backup, never on the server
    /// before the restore.
    pub restore_lost: BTreeSet<u64>,
    /// Rows a copied replica carried as a local insert not yet on the
    /// server: (table, key, the node copied).
    pub copy_carried: BTreeSet<(String, String, usize)>,
}

/// One anomaly, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Anomaly {
    /// `diverged`, `pending`, `no-reason`, `lost-write`, `duplicate`,
    /// `resurrected`, `pushed-twice`; the harness adds `stall-hang`,
    /// `idle-in-transaction` and `erased`.
    pub class: &'static str,
    /// The details.
    pub detail: String,
}

fn anomaly(class: &'static str, detail: String) -> Anomaly {
    Anomaly { class, detail }
}

fn tokens_of(row: &Row, cols: &[String]) -> Vec<String> {
    cols.iter()
        .filter_map(|c| row.get(c).and_then(Json::as_str))
        .filter(|t| t.starts_with('t'))
        .map(str::to_string)
        .collect()
}

/// Runs every check; an empty list means the state is sound.
pub fn check(state: &FinalState) -> Vec<Anomaly> {
    let mut out = Vec::new();
    // 3. No row twice (server and replicas), keys and tokens.
    let mut dbs: Vec<(String, &Tables)> = vec![("server".into(), &state.server)];
    for (i, r) in state.replicas.iter().enumerate() {
        dbs.push((format!("node {i}"), &r.tables));
    }
    for (who, tables) in &dbs {
        for (table, rows) in tables.iter() {
            let mut keys = BTreeSet::new();
            let mut tokens: BTreeMap<String, String> = BTreeMap::new();
            for (pk, row) in rows {
                if !keys.insert(pk.clone()) {
                    out.push(anomaly("duplicate", format!("{who}: {table} {pk} twice")));
                }
                for t in tokens_of(row, &state.token_columns) {
                    if let Some(other) = tokens.insert(t.clone(), pk.clone())
                        && &other != pk
                    {
                        out.push(anomaly(
                            "duplicate",
                            format!("{who}: write {t} is in {table} {other} and {pk}"),
                        ));
                    }
                }
            }
        }
    }
    // 1. Convergence.
    let as_map =
        |rows: &Vec<(String, Row)>| -> BTreeMap<String, Row> { rows.iter().cloned().collect() };
    for (i, replica) in state.replicas.iter().enumerate() {
        for ((table, pk), u) in &replica.unsettled {
            match u.status.as_str() {
                "PENDING" => out.push(anomaly(
                    "pending",
                    format!("node {i}: {table} {pk} still PENDING after syncing until quiet"),
                )),
                "FAILED" if u.reason.as_deref().is_none_or(str::is_empty) => out.push(anomaly(
                    "no-reason",
                    format!("node {i}: {table} {pk} FAILED without the server's reason"),
                )),
                _ => {}
            }
        }
        let expected = replica.scope.as_ref().unwrap_or(&state.server);
        let names: BTreeSet<&String> = state.server.keys().chain(replica.tables.keys()).collect();
        for table in names {
            let empty = Vec::new();
            let server = as_map(expected.get(table).unwrap_or(&empty));
            let anywhere = as_map(state.server.get(table).unwrap_or(&empty));
            let local = as_map(replica.tables.get(table).unwrap_or(&empty));
            let keys: BTreeSet<&String> = server.keys().chain(local.keys()).collect();
            for pk in keys {
                if replica
                    .unsettled
                    .get(&(table.clone(), pk.clone()))
                    .is_some_and(|u| u.status == "CONFLICT" || u.status == "FAILED")
                {
                    continue;
                }
                let (s, l) = (server.get(pk), local.get(pk));
                if s.is_none() && l.is_some() && anywhere.contains_key(pk) {
                    out.push(anomaly(
                        "out-of-scope",
                        format!(
                            "node {i}: {table} {pk}: the replica holds a row outside its sync rules"
                        ),
                    ));
                    continue;
                }
                if s != l {
                    let what = match (s, l) {
                        (Some(_), None) => "a server row is missing from the replica",
                        (None, Some(_)) => "the replica has a row the server does not",
                        _ => "the replica's row differs from the server's",
                    };
                    out.push(anomaly(
                        "diverged",
                        format!("node {i}: {table} {pk}: {what}: server {s:?}, replica {l:?}"),
                    ));
                }
            }
        }
    }
    // 4. No delete resurrected.
    let mut by_key: BTreeMap<(&str, &str), Vec<&AuditEvent>> = BTreeMap::new();
    for e in &state.audit {
        by_key.entry((&e.table, &e.pk)).or_default().push(e);
    }
    let mut landed: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for ((table, pk), events) in by_key.iter_mut() {
        events.sort_by_key(|e| e.seq);
        if let Some(d) = events.iter().position(|e| e.op == "D")
            && let Some(after) = events.get(d + 1)
        {
            out.push(anomaly(
                "resurrected",
                format!(
                    "{table} {pk}: deleted on the server (event {}), then {} again (event {})",
                    events[d].seq, after.op, after.seq
                ),
            ));
        }
        // 5. Nothing pushed twice.
        for pair in events.windows(2) {
            if pair[1].op == "U" && !pair[1].tokens.is_empty() && pair[0].tokens == pair[1].tokens {
                out.push(anomaly(
                    "pushed-twice",
                    format!(
                        "{table} {pk}: event {} rewrote the row with the tokens it had ({:?})",
                        pair[1].seq, pair[1].tokens
                    ),
                ));
            }
        }
        let set = landed.entry((table, pk)).or_default();
        for e in events.iter() {
            set.extend(e.tokens.iter().map(String::as_str));
        }
    }
    // 2. No acknowledged write lost.
    let server_has = |table: &str, pk: &str| {
        state
            .server
            .get(table)
            .is_some_and(|rows| rows.iter().any(|(k, _)| k == pk))
    };
    for w in &state.log {
        if w.ack != Ack::Acked || state.restore_lost.contains(&w.id) {
            continue;
        }
        let superseded = state.log.iter().any(|o| {
            o.id > w.id
                && o.actor == w.actor
                && o.table == w.table
                && o.pk == w.pk
                && !state.restore_lost.contains(&o.id)
        });
        if superseded {
            continue;
        }
        if let Actor::Node(n) = w.actor
            && state.replicas.get(n).is_some_and(|r| {
                r.unsettled
                    .get(&(w.table.clone(), w.pk.clone()))
                    .is_some_and(|u| u.status == "CONFLICT" || u.status == "FAILED")
            })
        {
            continue;
        }
        let carried = |w: &Write| match w.actor {
            Actor::Node(n) => state
                .copy_carried
                .contains(&(w.table.clone(), w.pk.clone(), n)),
            Actor::Server => false,
        };
        let ok = match (w.kind, &w.token) {
            (Kind::Delete, _) => !server_has(&w.table, &w.pk) || carried(w),
            (_, Some(token)) => landed
                .get(&(w.table.as_str(), w.pk.as_str()))
                .is_some_and(|s| s.contains(token.as_str())),
            (_, None) => true,
        };
        if !ok {
            out.push(anomaly(
                "lost-write",
                format!(
                    "{:?} acknowledged write #{} ({:?} {} {} token {:?} via {}) is neither on the server nor listed as CONFLICT/FAILED",
                    w.actor, w.id, w.kind, w.table, w.pk, w.token, w.via
                ),
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}
