//! The text of the feed's statements, generated from the table and pinned
//! by exact-string tests (as the replica's and the tracking schema's SQL
//! in `outpost-core`). Values never appear in it: they are bound, as one
//! typed array per column ([`source`]) or a `VALUES` list of parameters.
//!
//! `from` is always a schema-qualified, quoted table name ([`qualified`]);
//! `src` a derived table `v(i, …)` made by [`source`] or [`key_source`].

use outpost_core::ident::quote;
use outpost_core::schema::{Identity, Table};
use outpost_core::sync::PushRow;
use outpost_core::types::{ColumnType, ScalarType, Value};

/// The change feed after a cursor, up to the snapshot's xmin (the cursor
/// rule, docs/protocol.md).
pub(super) const PULL_FEED: &str = "SELECT c.txid::text::int8, c.seq, c.table_name, c.pk::text, c.op FROM \"outpost\".\"changes\" c \
     WHERE (c.txid, c.seq) > ($1::text::xid8, $2::int8) AND c.txid < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY c.txid, c.seq LIMIT $3";

/// Whether a change after the cursor is held back by a transaction still
/// open in the snapshot: `(txid, seq) > cursor AND txid >= xmin`, written so
/// that the index walk starts at the larger of the two txids. With the row
/// comparison as an index condition, the walk started at the cursor and
/// stepped over every change after it (the whole backlog, at every batch).
pub(super) const PULL_HELD_BACK: &str = "SELECT EXISTS (SELECT 1 FROM \"outpost\".\"changes\" \
     WHERE txid >= greatest(pg_snapshot_xmin(pg_current_snapshot()), $1::text::xid8) \
     AND (txid <> $1::text::xid8 OR seq > $2::int8)), \
     (SELECT value FROM \"outpost\".\"meta\" WHERE key = 'pruned_through')";

/// `"schema"."table"`.
pub(super) fn qualified(pg_schema: &str, table: &str) -> String {
    format!("{}.{}", quote(pg_schema), quote(table))
}

/// `"a", "b"` of every column, each prefixed (`t.`).
pub(super) fn column_list(table: &Table, prefix: &str) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("{prefix}{}", quote(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The PostgreSQL type of the `i`-th key column.
pub(super) fn pk_type(table: &Table, i: usize) -> String {
    table
        .column(&table.primary_key[i])
        .map_or_else(|| "text".to_string(), |c| c.ty.pg_name.clone())
}

/// The type a pushed value is bound as before it is assigned to its
/// column: the column's type without its modifier (`varchar`, not
/// `varchar(10)`; a domain's base type). An explicit cast to
/// `varchar(10)` would cut an 11-character value silently and one to
/// `bit(3)` pad or cut a bit string; left to the assignment, PostgreSQL
/// applies its own rules as for any `INSERT` (it refuses a value too long,
/// rounds a `numeric` to its scale, checks a domain's constraints). `bit` is
/// bound as `varbit`: a bare `bit` means `bit(1)` in a cast.
pub(super) fn assign_type(ty: &ColumnType) -> String {
    let base = match ty.scalar {
        ScalarType::Bit => Some("varbit"),
        ref s => s.pg_type_name(),
    };
    match base {
        Some(b) if ty.domain.is_some() || ty.pg_name.contains('(') => {
            format!("{b}{}", if ty.array { "[]" } else { "" })
        }
        _ => ty.pg_name.clone(),
    }
}

/// `k0, k1, …`: the key columns of a `v(i, k0, k1…)` source.
pub(super) fn key_names(table: &Table) -> Vec<String> {
    (0..table.primary_key.len())
        .map(|i| format!("k{i}"))
        .collect()
}

/// `v.k0, v.k1, …`: the key columns of a `v(i, k0, k1…)` source.
pub(super) fn qualified_keys(kcols: &[String]) -> String {
    kcols
        .iter()
        .map(|k| format!("v.{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"a", "b"`: the key columns, quoted, in key order.
fn key_order(table: &Table) -> String {
    table
        .primary_key
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `t."a" = v.k0 AND …`
fn key_join(table: &Table, kcols: &[String]) -> String {
    table
        .primary_key
        .iter()
        .zip(kcols)
        .map(|(c, k)| format!("t.{} = v.{k}", quote(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

// ---- sources ------------------------------------------------------------------

/// The rows of one statement as a derived table `v(i, n0, n1…)`, `i` being
/// the row's index in the list (from 0).
pub(super) struct Source {
    pub(super) sql: String,
    pub(super) params: Vec<Value>,
    /// The text is the same for every group (typed arrays): worth keeping
    /// prepared for the rest of the push.
    pub(super) cacheable: bool,
}

/// Whether a table's rows can travel as `unnest` arrays: not with array
/// columns (`int[][]` is `int[]` to PostgreSQL, so an array of arrays would
/// not `unnest` one level).
pub(super) fn unnestable(table: &Table) -> bool {
    !table.columns.iter().any(|c| c.ty.array)
}

/// `v(i, names…)` of `cells[row][column]`, typed `types[column]`, bound from
/// parameter `first_param`: one typed array per column expanded by
/// `unnest … WITH ORDINALITY` (the statement is parsed and planned like a
/// small one, whatever the group size; a `VALUES` list of 6,000 parameters
/// cost more to parse and plan than to run), or a `VALUES` list when the
/// table has array columns.
pub(super) fn source(
    unnest: bool,
    names: &[String],
    types: &[String],
    cells: Vec<Vec<Value>>,
    first_param: usize,
) -> Source {
    if unnest {
        let mut columns: Vec<Vec<Value>> = vec![Vec::with_capacity(cells.len()); names.len()];
        for row in cells {
            for (column, v) in columns.iter_mut().zip(row) {
                column.push(v);
            }
        }
        let arrays: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(j, t)| format!("${}::{t}[]", first_param + j))
            .collect();
        Source {
            sql: format!(
                "(SELECT (u.o - 1)::int4 AS i, {n} FROM unnest({a}) WITH ORDINALITY u({n}, o)) v",
                n = names.join(", "),
                a = arrays.join(", "),
            ),
            params: columns.into_iter().map(Value::Array).collect(),
            cacheable: true,
        }
    } else {
        let mut params = Vec::new();
        let tuples: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let mut c = vec![i.to_string()];
                for (v, t) in row.into_iter().zip(types) {
                    params.push(v);
                    c.push(format!("${}::{t}", first_param + params.len() - 1));
                }
                format!("({})", c.join(", "))
            })
            .collect();
        Source {
            sql: format!("(VALUES {}) v(i, {})", tuples.join(", "), names.join(", ")),
            params,
            cacheable: false,
        }
    }
}

/// `v(i, k0, k1…)` of the rows' keys.
pub(super) fn key_source(table: &Table, rows: &[&PushRow]) -> Source {
    key_values(table, rows.iter().map(|r| r.pk.clone()).collect())
}

/// `v(i, k0, k1…)` of keys given as values (a key short of the table's key
/// columns is padded with nulls, one too long cut).
pub(super) fn key_values(table: &Table, keys: Vec<Vec<Value>>) -> Source {
    let names = key_names(table);
    let types: Vec<String> = (0..names.len()).map(|i| pk_type(table, i)).collect();
    let cells = keys
        .into_iter()
        .map(|mut key| {
            key.resize(names.len(), Value::Null);
            key
        })
        .collect();
    source(unnestable(table), &names, &types, cells, 1)
}

// ---- bootstrap ------------------------------------------------------------------

/// The rows of a table (for a bootstrap's progress). The name is not
/// schema-qualified: it runs in the bootstrap's session, whose search path
/// finds the synced schema.
pub(super) fn count_rows(table: &Table) -> String {
    format!("SELECT count(*) FROM {}", quote(&table.name))
}

/// A statement that only describes the table's columns (their types, for
/// the binary `COPY`).
pub(super) fn copy_probe(pg_schema: &str, table: &Table) -> String {
    format!(
        "SELECT {} FROM {} LIMIT 0",
        column_list(table, ""),
        qualified(pg_schema, &table.name)
    )
}

/// Every row in key order, binary.
pub(super) fn copy_out(pg_schema: &str, table: &Table) -> String {
    format!(
        "COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT binary)",
        column_list(table, ""),
        qualified(pg_schema, &table.name),
        key_order(table)
    )
}

/// The session setting a resumed copy reads the last key its node holds
/// from, a JSON array of the key's values set with bound `set_config`
/// (`COPY` takes no parameters).
pub(super) const RESUME_SETTING: &str = "outpost.bootstrap_after";

/// The cast a key column's value is read back with from its JSON text, for
/// the types whose JSON form the server reads as the same value and whose
/// order a row comparison shares with `ORDER BY`; `None` for the others
/// (a copy of such a table restarts from its first row).
fn resume_cast(ty: &outpost_core::types::ColumnType) -> Option<&'static str> {
    use outpost_core::types::ScalarType as S;
    if ty.array || ty.domain.is_some() {
        return None;
    }
    Some(match ty.scalar {
        S::Bool => "bool",
        S::Int2 => "int2",
        S::Int4 => "int4",
        S::Int8 => "int8",
        S::Numeric => "numeric",
        // A text cast has the default collation, which yields to the
        // column's own in the comparison, as in its `ORDER BY`.
        S::Text | S::Varchar => "text",
        S::Uuid => "uuid",
        S::Date => "date",
        S::Timestamp => "timestamp",
        S::Timestamptz => "timestamptz",
        _ => return None,
    })
}

/// Whether a copy of `table` can resume after the last key a node holds.
pub fn resumable(table: &Table) -> bool {
    table.primary_key.iter().all(|k| {
        table
            .column(k)
            .is_some_and(|c| resume_cast(&c.ty).is_some())
    })
}

/// `(p"k1", …) > ((setting->>0)::type, …)`: the rows after the key in
/// [`RESUME_SETTING`], in the copy's key order; `None` when the table is
/// not [`resumable`].
pub(super) fn after_key(table: &Table, prefix: &str) -> Option<String> {
    let mut left = Vec::new();
    let mut right = Vec::new();
    for (i, k) in table.primary_key.iter().enumerate() {
        let cast = resume_cast(&table.column(k)?.ty)?;
        left.push(format!("{prefix}{}", quote(k)));
        right.push(format!(
            "(current_setting('{RESUME_SETTING}')::json->>{i})::{cast}"
        ));
    }
    Some(format!("({}) > ({})", left.join(", "), right.join(", ")))
}

// ---- pull ------------------------------------------------------------------------

/// The current rows (or their absence) and versions for keys given as one
/// typed array per key column (`$2…`), next to the feed's `jsonb` key texts
/// (`$1`); the table name is the last parameter.
pub(super) fn rows_by_typed_keys(pg_schema: &str, table: &Table) -> String {
    let npk = table.primary_key.len();
    let names = key_names(table);
    let arrays: Vec<String> = (0..npk)
        .map(|i| format!("${}::{}[]", i + 2, pk_type(table, i)))
        .collect();
    format!(
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.{first} IS NOT NULL, {vk}, {cols} \
         FROM unnest($1::text[], {arrays}) v(key, {names}) \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = v.key::jsonb \
         LEFT JOIN {from} t ON {join}",
        first = quote(&table.primary_key[0]),
        vk = qualified_keys(&names),
        arrays = arrays.join(", "),
        names = names.join(", "),
        cols = column_list(table, "t."),
        tn = npk + 2,
        from = qualified(pg_schema, &table.name),
        join = key_join(table, &names),
    )
}

/// The current rows (or their absence) and versions for `jsonb` keys (`$1`,
/// texts), cast to the key types on the server; `$2` the table name.
pub(super) fn rows_by_jsonb_keys(pg_schema: &str, table: &Table) -> String {
    let key_cols: Vec<String> = (0..table.primary_key.len())
        .map(|i| format!("(k.key ->> {i})::{} AS \"_k{i}\"", pk_type(table, i)))
        .collect();
    let join: Vec<String> = table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{} = (k.key ->> {i})::{}", quote(c), pk_type(table, i)))
        .collect();
    format!(
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.{present} IS NOT NULL, {keys}, {cols} \
         FROM (SELECT unnest($1::text[])::jsonb AS key) k \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $2 AND rv.pk = k.key \
         LEFT JOIN {from} t ON {join}",
        present = quote(&table.primary_key[0]),
        keys = key_cols.join(", "),
        cols = column_list(table, "t."),
        from = qualified(pg_schema, &table.name),
        join = join.join(" AND "),
    )
}

// ---- push ------------------------------------------------------------------------

/// Locks the existing rows of a key source, in key order (no deadlock
/// between pushes).
pub(super) fn lock_rows(from: &str, table: &Table, src: &Source) -> String {
    format!(
        "SELECT 1 FROM {from} t WHERE ({pk}) IN (SELECT {k} FROM {src}) ORDER BY {pk} FOR UPDATE",
        pk = table
            .primary_key
            .iter()
            .map(|c| format!("t.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", "),
        k = key_names(table).join(", "),
        src = src.sql,
    )
}

/// For each row of a key source, what a push group's decision reads
/// ([`outpost_core::accept::decide`]): its index, the `(txid, seq)` of the
/// change that wrote its version, the version, origin and
/// `origin_local_seq`, and whether the row exists. No column values: only
/// rows answered "conflict" or "already applied" need them, and those are
/// read afterwards ([`current_rows`]). The table name is the parameter
/// after the source's.
pub(super) fn row_decisions(from: &str, table: &Table, src: &Source) -> String {
    let kcols = key_names(table);
    format!(
        "SELECT v.i, c.txid::text::int8, c.seq, rv.version, rv.origin, rv.origin_local_seq, \
         t.{first} IS NOT NULL \
         FROM {src} \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = jsonb_build_array({vk}) \
         LEFT JOIN \"outpost\".\"changes\" c ON c.seq = rv.version \
         LEFT JOIN {from} t ON {join}",
        first = quote(&table.primary_key[0]),
        vk = qualified_keys(&kcols),
        src = src.sql,
        tn = src.params.len() + 1,
        join = key_join(table, &kcols),
    )
}

/// The current rows of a key source, in its order (the columns
/// [`super::support::server_row`] reads).
pub(super) fn current_rows(from: &str, table: &Table, src: &Source) -> String {
    let kcols = key_names(table);
    format!(
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.{first} IS NOT NULL, {vk}, {cols} \
         FROM {src} \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = jsonb_build_array({vk}) \
         LEFT JOIN {from} t ON {join} ORDER BY v.i",
        first = quote(&table.primary_key[0]),
        vk = qualified_keys(&kcols),
        src = src.sql,
        cols = column_list(table, "t."),
        tn = src.params.len() + 1,
        join = key_join(table, &kcols),
    )
}

/// The versions of the rows of a key source just written, with the rows as
/// the server stored them (after its triggers, defaults and rounding):
/// entries by key through the index (left to itself the planner hashed
/// every entry of the table). Columns: the index, the version, whether the
/// row exists, then every column.
pub(super) fn written_versions(from: &str, table: &Table, src: &Source) -> String {
    let kcols = key_names(table);
    format!(
        "SELECT v.i, COALESCE(r.version, 0), t.{first} IS NOT NULL, {cols} FROM {src} \
         LEFT JOIN LATERAL (SELECT x.version FROM \"outpost\".\"row_versions\" x \
           WHERE x.table_name = ${tn} AND x.pk = jsonb_build_array({vk})) r ON true \
         LEFT JOIN {from} t ON {join}",
        first = quote(&table.primary_key[0]),
        cols = column_list(table, "t."),
        vk = qualified_keys(&kcols),
        src = src.sql,
        tn = src.params.len() + 1,
        join = key_join(table, &kcols),
    )
}

/// The newest change this transaction recorded (0 before its first).
pub(super) const NEWEST_CHANGE_OF_TRANSACTION: &str = "SELECT COALESCE(max(seq), 0) FROM \"outpost\".\"changes\" \
     WHERE txid = pg_current_xact_id()";

/// Clears `origin_local_seq` on the versions of table `$n+1` this
/// transaction wrote after change `$n+2` whose keys are not in the key
/// source (the push's `unstamp`). The changes are found through their
/// `(txid, seq)` index, the versions through their key.
pub(super) fn unstamp_others(table: &Table, src: &Source) -> String {
    format!(
        "UPDATE \"outpost\".\"row_versions\" rv SET origin_local_seq = NULL \
         FROM \"outpost\".\"changes\" c \
         WHERE c.txid = pg_current_xact_id() AND c.seq > ${after} AND c.table_name = ${tn} \
           AND rv.table_name = ${tn} AND rv.pk = c.pk AND rv.version = c.seq \
           AND rv.origin_local_seq IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM {src} WHERE jsonb_build_array({vk}) = c.pk)",
        src = src.sql,
        vk = qualified_keys(&key_names(table)),
        tn = src.params.len() + 1,
        after = src.params.len() + 2,
    )
}

/// The versions of the rows of a key source, in its order (0 for a row
/// never changed since tracking began).
pub(super) fn versions_by_key(table: &Table, src: &Source) -> String {
    format!(
        "SELECT v.i, COALESCE(rv.version, 0) FROM {src} \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = ${tn} AND rv.pk = jsonb_build_array({vk}) ORDER BY v.i",
        src = src.sql,
        vk = qualified_keys(&key_names(table)),
        tn = src.params.len() + 1,
    )
}

/// Deletes the rows of a key source, returning the indexes of those found.
pub(super) fn delete_rows(from: &str, table: &Table, src: &Source) -> String {
    format!(
        "DELETE FROM {from} t USING {src} WHERE {cond} RETURNING v.i",
        src = src.sql,
        cond = key_join(table, &key_names(table)),
    )
}

/// The names of a row source's columns (`c0, c1…`) for the table's columns
/// `cols`.
pub(super) fn value_names(cols: &[usize]) -> Vec<String> {
    (0..cols.len()).map(|j| format!("c{j}")).collect()
}

/// Updates rows from a row source of columns `cols` (the source's `c0…`),
/// returning the indexes of those found. `None` for a key-only table:
/// nothing to update.
pub(super) fn update_rows(
    from: &str,
    table: &Table,
    cols: &[usize],
    src: &Source,
) -> Option<String> {
    let vnames = value_names(cols);
    let names: Vec<String> = cols
        .iter()
        .map(|&c| quote(&table.columns[c].name))
        .collect();
    let pk_quoted: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
    let set_list: Vec<String> = names
        .iter()
        .zip(&vnames)
        .filter(|(n, _)| !pk_quoted.contains(n))
        .map(|(n, v)| format!("{n} = v.{v}"))
        .collect();
    if set_list.is_empty() {
        return None;
    }
    let cond: Vec<String> = pk_quoted
        .iter()
        .map(|c| {
            let pos = names.iter().position(|n| n == c).unwrap_or(0);
            format!("t.{c} = v.{}", vnames[pos])
        })
        .collect();
    Some(format!(
        "UPDATE {from} t SET {sets} FROM {src} WHERE {cond} RETURNING v.i",
        sets = set_list.join(", "),
        src = src.sql,
        cond = cond.join(" AND "),
    ))
}

/// Moves one row to a new key (a primary-key change pushed as one update:
/// docs/protocol.md, "Key changes"): sets the columns `cols` (the new key
/// among them) from a source `v(i, k0…, c0…)` whose `k…` are the old key,
/// returning the index when the row was found.
pub(super) fn move_row(from: &str, table: &Table, cols: &[usize], src: &Source) -> String {
    let sets: Vec<String> = cols
        .iter()
        .zip(value_names(cols))
        .map(|(&c, v)| format!("{} = v.{v}", quote(&table.columns[c].name)))
        .collect();
    format!(
        "UPDATE {from} t SET {sets} FROM {src} WHERE {cond} RETURNING v.i",
        sets = sets.join(", "),
        src = src.sql,
        cond = key_join(table, &key_names(table)),
    )
}

/// Inserts rows from a row source of columns `cols` in its order, skipping
/// keys that exist (`ON CONFLICT DO NOTHING`), returning the keys inserted.
pub(super) fn insert_rows(from: &str, table: &Table, cols: &[usize], src: &Source) -> String {
    let vnames = value_names(cols);
    let names: Vec<String> = cols
        .iter()
        .map(|&c| quote(&table.columns[c].name))
        .collect();
    let overriding = if table
        .columns
        .iter()
        .any(|c| c.identity == Some(Identity::Always))
    {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let keys = key_order(table);
    format!(
        "INSERT INTO {from} ({names}){overriding} SELECT {vn} FROM {src} ORDER BY v.i \
         ON CONFLICT ({pk}) DO NOTHING RETURNING {ret}",
        names = names.join(", "),
        vn = cols
            .iter()
            .zip(&vnames)
            .map(|(&c, v)| match server_default(table, c) {
                Some(d) => format!("COALESCE(v.{v}, {d})"),
                None => format!("v.{v}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        src = src.sql,
        pk = keys,
        ret = keys,
    )
}

/// The server's default for a nullable non-key column whose default the
/// replica cannot compute (a sequence, a function). A local insert leaves
/// such a column NULL, and the insert then takes the server's default for
/// it, as the application's `INSERT` without the column would on the server
/// (an explicit NULL cannot be told apart in the replica). A `NOT NULL`
/// column is required locally already: the replica refuses the insert.
fn server_default(table: &Table, c: usize) -> Option<String> {
    let col = &table.columns[c];
    if table.primary_key.contains(&col.name) || !col.nullable || col.identity.is_some() {
        return None;
    }
    let default = col.default.as_deref()?;
    outpost_core::sqlite::sqlite_default(col)
        .is_none()
        .then(|| format!("({default})"))
}

// ---- inspection ------------------------------------------------------------------

/// The number of rows of a table.
pub(super) fn count_all(pg_schema: &str, table: &Table) -> String {
    format!("SELECT count(*) FROM {}", qualified(pg_schema, &table.name))
}

/// Every row of a table, in key order.
pub(super) fn select_all(pg_schema: &str, table: &Table) -> String {
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        column_list(table, ""),
        qualified(pg_schema, &table.name),
        key_order(table)
    )
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
