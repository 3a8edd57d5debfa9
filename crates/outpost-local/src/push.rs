//! Pushing: the plan (the local changes to send, coalesced, in foreign-key
//! order, each with the version it expects) and the acknowledgement (the
//! server's answer taken into `_outpost_rows` in one silenced transaction).
//! What the server accepts is decided on the server (`outpost_remote`); a
//! row it answers with a conflict is settled here like a pulled one.

use std::collections::{BTreeMap, HashMap, HashSet};

use outpost_core::LocalSeq;
use outpost_core::settle::BaseVersion;
use outpost_core::sync::{Expected, PushOutcome, PushRow, parents_first_within};
use rusqlite::{Connection, params};

use crate::conflicts::{Policies, ServerSide, Settled, settle_row};
use crate::data::{read_row, table_of, write_row};
use crate::error::LocalError;
use crate::fold::fold;
use crate::keys::pk_values;
use crate::replica::Replica;
use crate::rows::{entry, mark_failed, mark_synced};
use crate::stored::Sql;
use crate::sync::Stats;
use crate::value::{row_from_json, row_to_json};
use outpost_core::schema::Table;
use outpost_core::types::Value;

/// The version a push of a row based on `base` expects to find on the
/// server.
fn expected(base: BaseVersion) -> Expected {
    match base {
        BaseVersion::AsOfCursor => Expected::AsOfCursor,
        BaseVersion::Known(v) => Expected::Version(v),
        BaseVersion::Unknown => Expected::Unknown,
    }
}

// The push's per-batch statements on `_outpost_rows`. Each is an index
// walk whose cost follows the batch, never the number of entries the
// replica holds (mostly `SYNCED` ones: one per row ever pushed or pulled);
// `crate::plans` pins their plans. `status <> 'SYNCED'` beside
// `status = 'PENDING'` is what lets SQLite use the partial indexes: it
// proves a partial index's condition only from a term of the same form.

/// The oldest pending entries: a walk of `_outpost_rows_dirty` in
/// `local_seq` order that stops at the limit.
pub(crate) const PENDING_BY_AGE: &str = "SELECT table_name, pk, local_seq, deleted, server_version, base_row, moved_from FROM \"_outpost_rows\" \
     WHERE status = 'PENDING' AND status <> 'SYNCED' ORDER BY local_seq LIMIT ?1";

/// The oldest pending entries of one table and kind: a seek into
/// `_outpost_rows_pending` and a walk in `local_seq` order.
pub(crate) const PENDING_OF_TABLE: &str = "SELECT pk, local_seq, deleted, server_version, base_row, moved_from FROM \"_outpost_rows\" \
     WHERE status = 'PENDING' AND status <> 'SYNCED' AND table_name = ?1 AND deleted = ?2 \
     ORDER BY local_seq LIMIT ?3";

/// The acknowledgement of landed rows: the batch's list drives, each entry
/// found by its primary key.
pub(crate) const MARK_PUSHED_SYNCED: &str = "UPDATE \"_outpost_rows\" SET status = 'SYNCED', server_version = a.v, base_row = NULL, \
     deleted = a.d, error = NULL, conflict_row = NULL, conflict_version = NULL \
     FROM (SELECT value ->> 0 AS t, value ->> 1 AS k, value ->> 2 AS s, \
                  value ->> 3 AS v, value ->> 4 AS d FROM json_each(?1)) AS a \
     WHERE table_name = a.t AND pk = a.k AND local_seq = a.s \
     RETURNING table_name, pk";

/// The common case of a push acknowledgement, set-wise: every row that
/// landed (applied, or already applied) and whose entry was not edited since
/// it was read (same `local_seq`) becomes `SYNCED` with its new version, in
/// one statement (per row, an entry read and an upsert cost more than the
/// push's server work for plain inserts). Returns the indexes of the rows so
/// settled; the others (no entry, edited since, refused, conflicts) are left
/// for the row-by-row path.
fn mark_pushed_synced(
    conn: &Connection,
    rows: &[PushRow],
    outcomes: &[PushOutcome],
) -> Result<HashSet<usize>, LocalError> {
    let mut landed = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (row, outcome)) in rows.iter().zip(outcomes).enumerate() {
        if let PushOutcome::Applied { version, .. } | PushOutcome::AlreadyApplied { version, .. } =
            outcome
        {
            landed.push(serde_json::json!([
                row.table,
                row.local_pk,
                row.local_seq,
                version,
                i64::from(row.values.is_none())
            ]));
            index.insert((row.table.as_str(), row.local_pk.as_str()), i);
        }
    }
    let mut done = HashSet::new();
    if landed.is_empty() {
        return Ok(done);
    }
    let list = serde_json::Value::Array(landed).to_string();
    let mut stmt = conn
        .prepare_cached(MARK_PUSHED_SYNCED)
        .map_err(LocalError::sqlite("marking pushed rows synced"))?;
    let mut found = stmt
        .query([&list])
        .map_err(LocalError::sqlite("marking pushed rows synced"))?;
    while let Some(r) = found
        .next()
        .map_err(LocalError::sqlite("marking pushed rows synced"))?
    {
        let table: String = r
            .get(0)
            .map_err(LocalError::sqlite("marking pushed rows synced"))?;
        let pk: String = r
            .get(1)
            .map_err(LocalError::sqlite("marking pushed rows synced"))?;
        if let Some(&i) = index.get(&(table.as_str(), pk.as_str())) {
            done.insert(i);
        }
    }
    Ok(done)
}

/// The rows of batches sent and not yet acknowledged, by table and local
/// key: their entries are still `PENDING`, and a plan made meanwhile (the
/// push plans its next batch while the server applies the current one)
/// leaves them out, so no row is ever in two batches at once.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    keys: HashMap<String, HashSet<String>>,
    len: usize,
}

impl InFlight {
    /// The rows of `batch`.
    pub fn of(batch: &[PushRow]) -> InFlight {
        let mut out = InFlight::default();
        for r in batch {
            if out
                .keys
                .entry(r.table.clone())
                .or_default()
                .insert(r.local_pk.clone())
            {
                out.len += 1;
            }
        }
        out
    }

    /// Whether the row `pk` of `table` is in flight.
    pub fn contains(&self, table: &str, pk: &str) -> bool {
        self.keys.get(table).is_some_and(|k| k.contains(pk))
    }

    /// How many rows are in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is in flight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Per table: (pk, local_seq, deleted, base version, base row, the key an
/// update of the key moved it from) of a pending entry.
type Dirty = (
    String,
    LocalSeq,
    bool,
    BaseVersion,
    Option<String>,
    Option<String>,
);

fn dirty_row(r: &rusqlite::Row<'_>, from: usize) -> rusqlite::Result<Dirty> {
    Ok((
        r.get(from)?,
        r.get::<_, Option<Sql<LocalSeq>>>(from + 1)?
            .map_or(LocalSeq(0), |s| s.0),
        r.get(from + 2)?,
        r.get::<_, Sql<BaseVersion>>(from + 3)?.0,
        r.get(from + 4)?,
        r.get(from + 5)?,
    ))
}

/// The oldest `limit` pending entries not `in_flight`, those of the tables
/// `wanted` by table, and how many were read (wanted or not). Rows in
/// flight are the oldest pending ones (a batch takes the oldest): the walk
/// reads past them, O(batch) still.
fn pending_by_age(
    conn: &Connection,
    limit: usize,
    wanted: &dyn Fn(&str) -> bool,
    in_flight: &InFlight,
) -> Result<(HashMap<String, Vec<Dirty>>, usize), LocalError> {
    let err = || LocalError::sqlite("reading local changes");
    let mut by_table: HashMap<String, Vec<Dirty>> = HashMap::new();
    let mut stmt = conn.prepare_cached(PENDING_BY_AGE).map_err(err())?;
    let walk = limit.saturating_add(in_flight.len());
    let rows = stmt
        .query_map([i64::try_from(walk).unwrap_or(i64::MAX)], |r| {
            Ok((r.get::<_, String>(0)?, dirty_row(r, 1)?))
        })
        .map_err(err())?;
    let mut read = 0;
    for row in rows {
        let (table, dirty) = row.map_err(err())?;
        if in_flight.contains(&table, &dirty.0) {
            continue;
        }
        if read == limit {
            break;
        }
        read += 1;
        if wanted(&table) {
            by_table.entry(table).or_default().push(dirty);
        }
    }
    Ok((by_table, read))
}

/// Up to `limit` pending entries of the tables `wanted`, taken in push
/// order over the whole pending set: upserts table by table parents first,
/// then deletes children first; within one table and kind, oldest first.
fn pending_in_push_order(
    conn: &Connection,
    schema: &outpost_core::schema::Schema,
    limit: usize,
    wanted: &dyn Fn(&str) -> bool,
    in_flight: &InFlight,
) -> Result<HashMap<String, Vec<Dirty>>, LocalError> {
    let err = || LocalError::sqlite("reading local changes");
    // Every (table, kind) is asked, in order: an empty one costs one seek
    // into the index (listing the kinds present first walked every pending
    // entry, at every batch).
    let order = schema.parents_first();
    let phases = order
        .iter()
        .map(|t| (t, false))
        .chain(order.iter().rev().map(|t| (t, true)));
    let mut by_table: HashMap<String, Vec<Dirty>> = HashMap::new();
    let mut left = limit;
    let mut stmt = conn.prepare_cached(PENDING_OF_TABLE).map_err(err())?;
    for (t, deleted) in phases {
        if left == 0 {
            break;
        }
        if !wanted(&t.name) {
            continue;
        }
        let walk = left.saturating_add(in_flight.len());
        let rows = stmt
            .query_map(
                params![t.name, deleted, i64::try_from(walk).unwrap_or(i64::MAX)],
                |r| dirty_row(r, 0),
            )
            .map_err(err())?;
        for row in rows {
            let row = row.map_err(err())?;
            if in_flight.contains(&t.name, &row.0) {
                continue;
            }
            if left == 0 {
                break;
            }
            by_table.entry(t.name.clone()).or_default().push(row);
            left -= 1;
        }
    }
    Ok(by_table)
}

/// `upserts` (one batch of a larger pending set, in table order) with the
/// pending upserts of rows they reference through a foreign key of their
/// own table to its primary key (a tree's parents), which the batch left
/// for later, added in front of their table's rows, recursively. Batches
/// are taken table by table, so a parent in another table is never later
/// than its child's batch; within one table they go oldest first, and a
/// parent edited after more than a batch of its table's changes would
/// come after its children.
fn with_pending_self_parents(
    conn: &Connection,
    schema: &outpost_core::schema::Schema,
    upserts: Vec<PushRow>,
    in_flight: &InFlight,
) -> Result<Vec<PushRow>, LocalError> {
    let mut seen: HashSet<(String, String)> = upserts
        .iter()
        .map(|r| (r.table.clone(), r.local_pk.clone()))
        .collect();
    // Parents found, per table, in the order found (children before
    // their parents: reversed when placed).
    let mut found: HashMap<String, Vec<PushRow>> = HashMap::new();
    let mut queue: Vec<(String, Vec<outpost_core::types::Value>)> = Vec::new();
    let refs = |table: &str, values: &[outpost_core::types::Value]| {
        let mut out = Vec::new();
        let Some(t) = schema.table(table) else {
            return out;
        };
        for fk in t.foreign_keys.iter().filter(|fk| fk.ref_table == t.name) {
            // Only references to the primary key name an entry directly.
            if fk.ref_columns != t.primary_key {
                continue;
            }
            let key: Option<Vec<outpost_core::types::Value>> = fk
                .columns
                .iter()
                .map(|c| {
                    t.columns
                        .iter()
                        .position(|x| &x.name == c)
                        .and_then(|i| values.get(i))
                        .filter(|v| !v.is_null())
                        .cloned()
                })
                .collect();
            if let Some(key) = key {
                out.push(key);
            }
        }
        out
    };
    for r in &upserts {
        if let Some(values) = &r.values {
            for key in refs(&r.table, values) {
                queue.push((r.table.clone(), key));
            }
        }
    }
    while let Some((table, key)) = queue.pop() {
        let t = table_of(schema, &table)?;
        let pk = crate::keys::local_pk(conn, t, &key)?;
        // A parent in flight goes first anyway: its batch is applied before.
        if in_flight.contains(&table, &pk) || !seen.insert((table.clone(), pk.clone())) {
            continue;
        }
        let Some(e) = entry(conn, &table, &pk)? else {
            continue;
        };
        if e.status != outpost_core::RowStatus::Pending || e.deleted {
            continue;
        }
        let Some(values) = read_row(conn, t, &key)? else {
            continue;
        };
        for k in refs(&table, &values) {
            queue.push((table.clone(), k));
        }
        // The key as the row itself has it (the referencing columns may be
        // of another, compatible type).
        let own_key: Vec<outpost_core::types::Value> = t
            .primary_key
            .iter()
            .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
            .filter_map(|i| values.get(i).cloned())
            .collect();
        found.entry(table.clone()).or_default().push(PushRow {
            table: table.clone(),
            local_pk: pk,
            pk: if own_key.len() == key.len() {
                own_key
            } else {
                key
            },
            local_seq: e.local_seq.unwrap_or_default(),
            expected: expected(e.server_version),
            changed: changed_columns(t, &values, e.base_row.as_deref()),
            values: Some(values),
            moved_from: None,
        });
    }
    if found.is_empty() {
        return Ok(upserts);
    }
    let mut out = Vec::with_capacity(upserts.len() + found.values().map(Vec::len).sum::<usize>());
    for r in upserts {
        if let Some(mut parents) = found.remove(&r.table) {
            parents.reverse();
            out.extend(parents);
        }
        out.push(r);
    }
    Ok(out)
}

/// `upserts` (in runs of one table) with each run of a table that
/// references itself reordered parents first: the push writes a table's
/// rows in groups of at most a few thousand, and a child in an earlier
/// group than its parent would fail for want of it.
fn self_parents_first(
    schema: &outpost_core::schema::Schema,
    upserts: Vec<PushRow>,
) -> Vec<PushRow> {
    let mut order = Vec::with_capacity(upserts.len());
    let mut start = 0;
    while start < upserts.len() {
        let mut end = start + 1;
        while end < upserts.len() && upserts[end].table == upserts[start].table {
            end += 1;
        }
        let run: Vec<usize> = (start..end).collect();
        match schema.table(&upserts[start].table) {
            Some(t) => order.extend(parents_first_within(t, &upserts, &run)),
            None => order.extend(run),
        }
        start = end;
    }
    let mut slots: Vec<Option<PushRow>> = upserts.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Links each insert an update of the key made (`moved`: table and new key
/// to old key) to the old key's pending delete, so the server can apply
/// the pair as one update of the key (docs/protocol.md, "Key changes"):
/// the insert gets [`PushRow::moved_from`] and the columns it changes
/// relative to the old row, and the delete joins the batch when it was
/// not in it. The old key must be pending and a row the server had (its
/// entry has a base row): deleted, or written again after the change (a
/// row inserted under the freed key, which then goes after the move). A
/// key changed twice while offline (`a → b → c`) links `c` to `a`, and
/// `b`, a row the server never had, is pushed as the delete it is.
/// Anything else (the old row in `CONFLICT`, or in flight) leaves the
/// insert and the delete as they are.
fn link_key_moves(
    conn: &Connection,
    schema: &outpost_core::schema::Schema,
    upserts: &mut Vec<PushRow>,
    deletes: &mut Vec<PushRow>,
    moved: &HashMap<(String, String), String>,
    in_flight: &InFlight,
) -> Result<(), LocalError> {
    /// Most keys one row may have moved through while offline that are
    /// followed back; a longer chain is pushed as inserts and deletes.
    const MAX_CHAIN: usize = 16;
    let mut batched: HashSet<(String, String)> = deletes
        .iter()
        .map(|d| (d.table.clone(), d.local_pk.clone()))
        .collect();
    // (table, old key written again, the key it moved to)
    let mut recreated: Vec<(String, String, String)> = Vec::new();
    for row in upserts.iter_mut() {
        let Some(mut old) = moved
            .get(&(row.table.clone(), row.local_pk.clone()))
            .cloned()
        else {
            continue;
        };
        let t = table_of(schema, &row.table)?;
        let mut found = None;
        for _ in 0..MAX_CHAIN {
            if in_flight.contains(&row.table, &old) {
                break;
            }
            let Some(e) = entry(conn, &row.table, &old)? else {
                break;
            };
            let pending = e.status == outpost_core::RowStatus::Pending;
            match (&e.base_row, &e.moved_from) {
                (Some(_), _) if pending => {
                    found = Some(e);
                    break;
                }
                // A key the row had only locally: follow it back, also
                // when its delete has already been pushed (an earlier
                // round sent it while the pair itself came back as a
                // conflict to settle).
                (None, Some(earlier)) if e.deleted => old = earlier.clone(),
                _ => break,
            }
        }
        let Some(e) = found else {
            continue;
        };
        let old_pk = pk_values(t, &e.pk)?;
        if let Some(values) = &row.values {
            row.changed = changed_columns(t, values, e.base_row.as_deref());
        }
        row.moved_from = Some(old_pk.clone());
        if !e.deleted {
            recreated.push((row.table.clone(), e.pk.clone(), row.local_pk.clone()));
            continue;
        }
        if batched.insert((row.table.clone(), e.pk.clone())) {
            deletes.push(PushRow {
                table: row.table.clone(),
                local_pk: e.pk.clone(),
                pk: old_pk,
                values: None,
                changed: None,
                local_seq: e.local_seq.unwrap_or_default(),
                expected: expected(e.server_version),
                moved_from: None,
            });
        }
    }
    // A re-created old key goes right after its move: the server moves
    // the old row away first, then inserts the new one under its key.
    for (table, old, new) in recreated {
        let at = |k: &str| {
            upserts
                .iter()
                .position(|r| r.table == table && r.local_pk == k)
        };
        if let (Some(o), Some(n)) = (at(&old), at(&new))
            && o < n
        {
            let row = upserts.remove(o);
            upserts.insert(n, row);
        }
    }
    Ok(())
}

/// Which columns (in table order) differ from the row's base, when the
/// base row is known: an update writes only those.
fn changed_columns(t: &Table, values: &[Value], base: Option<&str>) -> Option<Vec<bool>> {
    let base = row_from_json(t, base?).ok()?;
    Some(values.iter().zip(&base).map(|(a, b)| a != b).collect())
}

/// The server's stored row with the replica's spelling of its key: the
/// row is written over the local one it answers, never beside it (a key the
/// server stored in another spelling, an upper-case uuid say, would
/// otherwise make two rows of one).
fn keyed_as_local(table: &Table, pk: &[Value], stored: &[Value]) -> Vec<Value> {
    let mut row = stored.to_vec();
    for (k, v) in table.primary_key.iter().zip(pk) {
        if let Some(i) = table.columns.iter().position(|c| &c.name == k)
            && let Some(slot) = row.get_mut(i)
        {
            *slot = v.clone();
        }
    }
    row
}

impl Replica {
    /// The local changes to push, coalesced (one per row: its final state),
    /// in foreign-key order: upserts parents first, then deletes children
    /// first. Rows in `CONFLICT` or `FAILED` are not pushed.
    ///
    /// When more than `limit` rows are pending, the batch is chosen in that
    /// order over the whole pending set, not by age: every pending upsert
    /// of a parent table goes before any of its children's, and every
    /// pending delete of a child table before its parents'. A parent edited
    /// after many other changes therefore lands no later than its children
    /// (by `local_seq` alone, it would come in a later batch, and its new
    /// children would fail on the server for want of it).
    ///
    /// A row with a
    /// local value that cannot be sent for its column becomes `FAILED` here
    /// (docs/protocol.md, "What a push writes"); when a whole batch was such
    /// rows, the next one is read, so they never hide the rows behind them.
    /// Those rows are counted (processed and failed, per table) in the
    /// returned stats, for the run's counts and its `SyncLog` rows.
    ///
    /// Rows `in_flight` (sent, not yet acknowledged) are left out: the
    /// batch is the one that follows them.
    pub fn pending_push(
        &self,
        tables: Option<&[String]>,
        limit: usize,
        in_flight: &InFlight,
    ) -> Result<(Vec<PushRow>, Stats), LocalError> {
        let mut refused_all = Stats::new();
        loop {
            let (rows, refused) = self.plan_push(tables, limit, in_flight)?;
            let none_refused = refused.is_empty();
            for (table, n) in refused {
                let s = refused_all.entry(table).or_default();
                s.records_processed += n;
                s.records_failed += n;
            }
            // Refused rows are `FAILED` now: the next read does not see them.
            if !rows.is_empty() || none_refused {
                return Ok((rows, refused_all));
            }
        }
    }

    /// One read of [`Replica::pending_push`]: the rows to push, and how many
    /// of each table were refused locally.
    fn plan_push(
        &self,
        tables: Option<&[String]>,
        limit: usize,
        in_flight: &InFlight,
    ) -> Result<(Vec<PushRow>, BTreeMap<String, u64>), LocalError> {
        fold(self.connection())?;
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        let schema = self.schema();
        let conn = self.connection();
        let wanted = |table: &str| {
            tables.is_none_or(|ts| ts.iter().any(|t| t == table)) && schema.table(table).is_some()
        };
        // The common case, everything pending fits: one read by age.
        let (mut by_table, read) =
            pending_by_age(conn, limit.saturating_add(1), &wanted, in_flight)?;
        let truncated = read > limit;
        if truncated {
            by_table = pending_in_push_order(conn, schema, limit, &wanted, in_flight)?;
        }
        let order = schema.parents_first();
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        // Inserts an update of the key made: (table, new key) → old key.
        let mut moved: HashMap<(String, String), String> = HashMap::new();
        for t in &order {
            let Some(list) = by_table.get(&t.name) else {
                continue;
            };
            for (pk, seq, deleted, version, base, moved_from) in list {
                if let (false, None, Some(old)) = (deleted, base, moved_from) {
                    moved.insert((t.name.clone(), pk.clone()), old.clone());
                }
                let pk_vals = pk_values(t, pk)?;
                let values = if *deleted {
                    None
                } else {
                    match read_row(conn, t, &pk_vals) {
                        Ok(values) => values,
                        // A value that cannot be sent for its column fails
                        // its own row; the push goes on without it.
                        Err(LocalError::BadStoredValue {
                            column,
                            ty,
                            message,
                        }) => {
                            let reason = format!(
                                "{} {pk}, column {column}: the local value cannot be sent as {ty}: {message}",
                                t.name
                            );
                            tracing::warn!(table = %t.name, %pk, %column, "{reason}");
                            mark_failed(conn, &t.name, pk, &reason)?;
                            *refused.entry(t.name.clone()).or_default() += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                };
                let changed = values
                    .as_deref()
                    .and_then(|values| changed_columns(t, values, base.as_deref()));
                let row = PushRow {
                    table: t.name.clone(),
                    local_pk: pk.clone(),
                    pk: pk_vals,
                    local_seq: *seq,
                    expected: expected(*version),
                    values,
                    changed,
                    moved_from: None,
                };
                if row.values.is_some() {
                    upserts.push(row);
                } else {
                    deletes.push(row);
                }
            }
        }
        if truncated {
            upserts = with_pending_self_parents(conn, schema, upserts, in_flight)?;
        }
        let mut upserts = self_parents_first(schema, upserts);
        if !moved.is_empty() {
            link_key_moves(conn, schema, &mut upserts, &mut deletes, &moved, in_flight)?;
        }
        // Children first for deletes: reverse table order.
        deletes.sort_by_key(|r| std::cmp::Reverse(order.iter().position(|t| t.name == r.table)));
        upserts.extend(deletes);
        // A table listed for a copy holds rows of an older copy while the
        // cursor moves on with the other tables: "as of the cursor" is no
        // base for an edit made there after the listing (the listing marks
        // the edits made before it, `bootstrap::list_for_copy`). Unknown:
        // the push compares it with the server's row (a row deleted
        // meanwhile is a conflict, never inserted again).
        let awaiting: Vec<String> = crate::meta::meta_json(conn, "rebootstrap_tables")?;
        if !awaiting.is_empty() {
            for r in &mut upserts {
                if r.expected == Expected::AsOfCursor && awaiting.contains(&r.table) {
                    r.expected = Expected::Unknown;
                }
            }
        }
        Ok((upserts, refused))
    }

    /// Takes the server's answer to a push in one transaction: landed rows
    /// become `SYNCED` (or stay `PENDING`, re-based, when edited again
    /// meanwhile); refused rows `FAILED` with the server's message; rows
    /// whose server version moved on go through `resolve`.
    pub fn ack_push(
        &mut self,
        rows: &[PushRow],
        outcomes: &[PushOutcome],
        policies: &Policies,
    ) -> Result<Stats, LocalError> {
        let schema = self.schema().clone();
        self.apply_silenced(|tx| {
            let mut stats = Stats::new();
            let synced = mark_pushed_synced(tx, rows, outcomes)?;
            for (row, outcome) in rows.iter().zip(outcomes) {
                let tag = match outcome {
                    PushOutcome::Applied { tag, .. } | PushOutcome::AlreadyApplied { tag, .. } => {
                        tag.as_deref()
                    }
                    PushOutcome::Conflict(server) => server.tag.as_deref(),
                    PushOutcome::Failed { .. } => None,
                };
                if let Some(tag) = tag {
                    crate::tags::record(tx, &row.table, &row.local_pk, tag)?;
                }
            }
            for (i, (row, outcome)) in rows.iter().zip(outcomes).enumerate() {
                let t = table_of(&schema, &row.table)?;
                let s = stats.entry(row.table.clone()).or_default();
                s.records_processed += 1;
                if synced.contains(&i) {
                    // The server's row is the truth: what it stored (its
                    // triggers, defaults, rounding) replaces what was sent.
                    if let PushOutcome::Applied { row: Some(stored), .. }
                    | PushOutcome::AlreadyApplied { row: Some(stored), .. } = outcome
                        && row.values.as_ref() != Some(stored)
                    {
                        write_row(tx, t, &row.pk, Some(&keyed_as_local(t, &row.pk, stored)))?;
                    }
                    s.records_succeeded += 1;
                    continue;
                }
                let Some(state) = entry(tx, &row.table, &row.local_pk)? else {
                    continue;
                };
                let edited_since = state.local_seq != Some(row.local_seq);
                match outcome {
                    PushOutcome::Applied {
                        version,
                        row: stored,
                        ..
                    }
                    | PushOutcome::AlreadyApplied {
                        version,
                        row: stored,
                        ..
                    } => {
                        s.records_succeeded += 1;
                        if edited_since {
                            // Edited again during the push: the server's
                            // row becomes the base, and the columns not
                            // edited since take its values (a trigger's
                            // stamp is not later sent back stale).
                            let stored = match (stored, &row.values) {
                                (Some(v), _) => Some(keyed_as_local(t, &row.pk, v)),
                                (None, pushed) => pushed.clone(),
                            };
                            if let (Some(stored), Some(pushed)) = (&stored, &row.values)
                                && !state.deleted
                                && let Ok(Some(now)) = read_row(tx, t, &row.pk)
                            {
                                let merged: Vec<Value> = now
                                    .iter()
                                    .zip(pushed)
                                    .zip(stored)
                                    .map(|((n, p), s)| if n == p { s.clone() } else { n.clone() })
                                    .collect();
                                if merged != now {
                                    write_row(tx, t, &row.pk, Some(&merged))?;
                                }
                            }
                            let base = stored.as_deref().map(|v| row_to_json(t, v));
                            tx.execute(
                                "UPDATE \"_outpost_rows\" SET server_version = ?3, base_row = ?4 WHERE table_name = ?1 AND pk = ?2",
                                params![row.table, row.local_pk, Sql(*version), base],
                            )
                            .map_err(LocalError::sqlite("recording a pushed version"))?;
                        } else {
                            if let (Some(stored), Some(pushed)) = (stored, &row.values)
                                && pushed != stored
                            {
                                write_row(tx, t, &row.pk, Some(&keyed_as_local(t, &row.pk, stored)))?;
                            }
                            mark_synced(
                                tx,
                                &row.table,
                                &row.local_pk,
                                BaseVersion::Known(*version),
                                row.values.is_none(),
                            )?;
                        }
                    }
                    PushOutcome::Failed { message } => {
                        s.records_failed += 1;
                        if !edited_since {
                            mark_failed(tx, &row.table, &row.local_pk, message)?;
                        }
                    }
                    PushOutcome::Conflict(server) => {
                        let side = ServerSide {
                            pk: &server.pk,
                            values: server.values.as_deref(),
                            version: BaseVersion::Known(server.version),
                            changed_at: server.changed_at.as_deref(),
                        };
                        match settle_row(tx, t, &row.local_pk, &state, &side, policies.of(&row.table))? {
                        Settled::Conflict => s.conflicts += 1,
                        Settled::Server => s.records_succeeded += 1,
                        // Queued again: the next push round sends it and
                        // counts it then, so a run counts each row once.
                        Settled::Local => s.records_processed -= 1,
                        Settled::Failed => s.records_failed += 1,
                        }
                    }
                }
            }
            report_lost_values(tx, rows, &mut stats)?;
            Ok(stats)
        })
    }
}

/// Rows pushed without the values of columns the server no longer has
/// (kept by the `setup` that carried their table into its new definition)
/// become `FAILED` once the rest landed, the message showing those values.
/// Only while `setup` recorded such rows (`_outpost_meta.lost_values`), so
/// the usual acknowledgement pays one key lookup.
fn report_lost_values(
    tx: &Connection,
    rows: &[PushRow],
    stats: &mut Stats,
) -> Result<(), LocalError> {
    if crate::meta::meta_if_present(tx, "lost_values")?.is_none() {
        return Ok(());
    }
    let err = || LocalError::sqlite("reporting values of dropped columns");
    let keys = serde_json::Value::Array(
        rows.iter()
            .map(|r| serde_json::json!([r.table, r.local_pk]))
            .collect(),
    )
    .to_string();
    let mut stmt = tx
        .prepare_cached(
            "UPDATE \"_outpost_rows\" SET status = 'FAILED', error = \
             'pushed without the local values of columns the server no longer has (dropped or renamed there): ' \
             || lost_values || '; retry to mark it synced, or edit the row' \
             FROM (SELECT value ->> 0 AS t, value ->> 1 AS k FROM json_each(?1)) AS a \
             WHERE table_name = a.t AND pk = a.k AND status = 'SYNCED' AND lost_values IS NOT NULL \
             RETURNING table_name",
        )
        .map_err(err())?;
    let tables: Vec<String> = stmt
        .query_map([&keys], |r| r.get(0))
        .map_err(err())?
        .collect::<Result<_, _>>()
        .map_err(err())?;
    for t in tables {
        let s = stats.entry(t).or_default();
        s.records_succeeded = s.records_succeeded.saturating_sub(1);
        s.records_failed += 1;
    }
    let left: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM \"_outpost_rows\" WHERE lost_values IS NOT NULL AND status <> 'FAILED')",
            [],
            |r| r.get(0),
        )
        .map_err(err())?;
    if !left {
        crate::meta::meta_set(tx, "lost_values", None)?;
    }
    Ok(())
}
