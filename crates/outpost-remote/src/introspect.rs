//! Introspection: reads the tables selected for sync from `pg_catalog` into
//! outpost's [`Schema`] model.
//!
//! What is read, per selected table: its columns (name, type, nullability,
//! default, identity, generated), its primary key in key order, its foreign
//! keys (columns paired in order, `ON DELETE`/`ON UPDATE` actions), its unique
//! constraints and unique indexes (without a predicate or expression, the
//! primary key left out), and the labels of the enum types its columns use.
//! [`Schema::finish`] then sorts everything and derives the relations.
//!
//! # Selection
//!
//! The tables of `pg_schema` that are ordinary or partitioned tables
//! (partitions themselves are skipped: rows are tracked through their parent).
//! With `include`, exactly those (each must exist, names are case-sensitive);
//! otherwise all of them, except `_prisma_migrations` (Prisma's bookkeeping)
//! unless it is named in `include`. Names in `exclude` are always skipped.
//!
//! # Types
//!
//! Each column's type is resolved through domains (recursively; the
//! declared domain's name is kept in [`ColumnType::domain`]) and arrays (an
//! array of a domain, a domain over an array) to a [`ScalarType`]: the
//! built-in types of [`crate::codec::oid`], `citext`, enums, the built-in
//! ranges and multiranges. The server enforces a domain's checks when a push
//! writes a value; the replica does not.
//!
//! # Refusals
//!
//! A selected table without a primary key is refused, and so is a column
//! whose type outpost cannot replicate exactly (a composite type, another
//! extension's type, a range over another element type, `money` when the
//! server's `lc_monetary` does not have two fractional digits). All of them
//! are found in one run, together with included names that are not tables
//! ([`RemoteError::TableNotFound`]) and tables the replica cannot hold
//! ([`RemoteError::ReplicaLimit`]: a reserved name, names differing only in
//! case, too many columns): one refusal is returned as itself,
//! several as [`RemoteError::Unreplicable`] listing each one and the
//! exclusion that lets setup go on.
//!
//! A foreign key declared on a partition only (not on its partitioned
//! parent) is read as a key of the parent: the server enforces it on the
//! partition's rows, so the push must send the referenced rows first.
//!
//! Foreign keys to tables in another PostgreSQL schema are left out: the model
//! names tables without their schema, so such a key could be mistaken for one
//! to a synced table of the same name.
//!
//! For a consistent picture while DDL may run concurrently, pass a
//! `REPEATABLE READ` transaction as the client.

use std::collections::{BTreeMap, BTreeSet};

use outpost_core::schema::{Column, EnumType, FkAction, ForeignKey, Identity, Schema, Table};
use outpost_core::types::{ColumnType, ScalarType};
use tokio_postgres::GenericClient;

use crate::codec::oid;
use crate::error::RemoteError;

/// The table Prisma keeps its migration history in; never synced by default.
pub const PRISMA_MIGRATIONS: &str = "_prisma_migrations";

const TABLES_SQL: &str = "SELECT c.oid, c.relname::text \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
ORDER BY c.relname";

const COLUMNS_SQL: &str = "SELECT a.attrelid, a.attname::text, \
pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, \
pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
a.atttypid \
FROM pg_catalog.pg_attribute a \
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
ORDER BY a.attrelid, a.attnum";

/// Every type the columns use and the types they are made of: a domain's
/// base type, an array's element type, through any nesting.
const TYPES_SQL: &str = "WITH RECURSIVE ty(oid) AS ( \
  SELECT a.atttypid FROM pg_catalog.pg_attribute a \
  WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
  UNION \
  SELECT x.oid FROM ty JOIN pg_catalog.pg_type t ON t.oid = ty.oid \
  CROSS JOIN LATERAL (VALUES (t.typbasetype), \
    (CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0 END)) x(oid) \
  WHERE x.oid <> 0) \
SELECT t.oid, t.typname::text, t.typtype::text, t.typbasetype, \
CASE WHEN t.typcategory = 'A' AND e.typarray = t.oid THEN t.typelem ELSE 0 END::oid, \
pg_catalog.format_type(t.oid, NULL) \
FROM ty JOIN pg_catalog.pg_type t ON t.oid = ty.oid \
LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem";

/// The number of fractional digits of `money` under the database's
/// `lc_monetary`.
const MONEY_SCALE_SQL: &str = "SELECT pg_catalog.scale((0::money)::numeric)";

const CONSTRAINTS_SQL: &str = "SELECT con.conrelid, con.conname::text, con.contype::text, \
ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, i) \
      JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n \
      ORDER BY k.i), \
ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, i) \
      JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n \
      ORDER BY k.i), \
rc.relname::text, rn.nspname::text, con.confdeltype::text, con.confupdtype::text \
FROM pg_catalog.pg_constraint con \
LEFT JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid \
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
WHERE con.conrelid = ANY($1) AND con.contype IN ('p', 'f') AND con.conparentid = 0 \
ORDER BY con.conrelid, con.conname";

/// Foreign keys declared on a partition (not cloned from its parent's):
/// PostgreSQL enforces them on that partition's rows, so the push must order
/// their parents first as for the parent table's own keys. Listed under the
/// partition tree's root; a referenced partition under its root too.
const PARTITION_FKS_SQL: &str = "SELECT pg_catalog.pg_partition_root(con.conrelid)::oid, \
con.conname::text, \
ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, i) \
      JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n \
      ORDER BY k.i), \
ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, i) \
      JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n \
      ORDER BY k.i), \
rc.relname::text, rn.nspname::text, con.confdeltype::text, con.confupdtype::text \
FROM pg_catalog.pg_constraint con \
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
LEFT JOIN pg_catalog.pg_class rc \
  ON rc.oid = coalesce(pg_catalog.pg_partition_root(con.confrelid)::oid, con.confrelid) \
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
WHERE c.relispartition AND con.contype = 'f' AND con.conparentid = 0 \
  AND pg_catalog.pg_partition_root(con.conrelid)::oid = ANY($1) \
ORDER BY 1, con.conname";

const UNIQUES_SQL: &str = "SELECT i.indrelid, \
ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o) \
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n \
      WHERE k.o <= i.indnkeyatts ORDER BY k.o), \
i.indnkeyatts::int4 \
FROM pg_catalog.pg_index i \
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
WHERE i.indrelid = ANY($1) AND i.indisunique AND NOT i.indisprimary AND i.indisvalid \
  AND i.indexprs IS NULL AND i.indpred IS NULL \
ORDER BY i.indrelid, ic.relname";

const ENUMS_SQL: &str = "SELECT t.typname::text, \
ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e \
      WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) \
FROM pg_catalog.pg_type t WHERE t.oid = ANY($1) ORDER BY t.typname";

/// Reads the tables of `pg_schema` selected by `include`/`exclude` (module
/// doc) into a finished [`Schema`].
#[tracing::instrument(skip_all, fields(pg_schema = %pg_schema))]
pub async fn introspect<C>(
    client: &C,
    pg_schema: &str,
    include: Option<&[String]>,
    exclude: &[String],
) -> Result<Schema, RemoteError>
where
    C: GenericClient + Sync,
{
    let in_schema = |what: &str| format!("reading the {what} of schema {pg_schema:?}");

    let rows = client
        .query(TABLES_SQL, &[&pg_schema])
        .await
        .map_err(|e| RemoteError::db(in_schema("tables"), e))?;
    let mut all: BTreeMap<String, u32> = BTreeMap::new();
    for row in &rows {
        let oid: u32 = get(row, 0, &in_schema("tables"))?;
        let name: String = get(row, 1, &in_schema("tables"))?;
        all.insert(name, oid);
    }
    let (selected, missing) = select(&all, pg_schema, include, exclude);
    let mut refusals: Vec<(String, Option<String>, RemoteError)> = missing
        .into_iter()
        .map(|e| match &e {
            RemoteError::TableNotFound { table, .. } => (table.clone(), None, e),
            _ => (String::new(), None, e),
        })
        .collect();
    let oids: Vec<u32> = selected.iter().map(|(_, oid)| *oid).collect();
    let name_of: BTreeMap<u32, &str> = selected.iter().map(|(n, o)| (*o, n.as_str())).collect();

    // Columns.
    let what = in_schema("columns");
    let rows = client
        .query(COLUMNS_SQL, &[&oids])
        .await
        .map_err(|e| RemoteError::db(&what, e))?;
    let what_types = in_schema("column types");
    let type_rows = client
        .query(TYPES_SQL, &[&oids])
        .await
        .map_err(|e| RemoteError::db(&what_types, e))?;
    let mut types: BTreeMap<u32, PgTypeInfo> = BTreeMap::new();
    for row in &type_rows {
        let oid: u32 = get(row, 0, &what_types)?;
        types.insert(
            oid,
            PgTypeInfo {
                name: get(row, 1, &what_types)?,
                kind: get(row, 2, &what_types)?,
                base: get(row, 3, &what_types)?,
                elem: get(row, 4, &what_types)?,
                shown: get(row, 5, &what_types)?,
            },
        );
    }
    let mut money_columns: Vec<(String, String, String)> = Vec::new();
    let mut columns: BTreeMap<u32, Vec<Column>> = BTreeMap::new();
    let mut enum_names: BTreeSet<String> = BTreeSet::new();
    for row in &rows {
        let rel: u32 = get(row, 0, &what)?;
        let table = name_of.get(&rel).copied().unwrap_or_default();
        let name: String = get(row, 1, &what)?;
        let pg_name: String = get(row, 2, &what)?;
        let not_null: bool = get(row, 3, &what)?;
        let default: Option<String> = get(row, 4, &what)?;
        let identity: String = get(row, 5, &what)?;
        let generated: String = get(row, 6, &what)?;
        let type_oid: u32 = get(row, 7, &what)?;

        let resolved = match resolve(&types, type_oid, 0) {
            Ok(r) => r,
            Err(reason) => {
                refusals.push((
                    table.to_string(),
                    Some(name.clone()),
                    RemoteError::UnsupportedType {
                        table: table.to_string(),
                        column: name,
                        pg_type: pg_name,
                        reason,
                    },
                ));
                continue;
            }
        };
        if let ScalarType::Enum(e) = &resolved.scalar {
            enum_names.insert(e.clone());
        }
        if resolved.scalar == ScalarType::Money {
            money_columns.push((table.to_string(), name.clone(), pg_name.clone()));
        }
        let generated = generated == "s";
        columns.entry(rel).or_default().push(Column {
            name,
            ty: ColumnType {
                scalar: resolved.scalar,
                array: resolved.array,
                pg_name,
                domain: resolved.domain,
            },
            nullable: !not_null,
            // For a generated column pg_attrdef holds the expression, not a
            // default.
            default: if generated { None } else { default },
            identity: match identity.as_str() {
                "a" => Some(Identity::Always),
                "d" => Some(Identity::ByDefault),
                _ => None,
            },
            generated,
        });
    }
    if !money_columns.is_empty() {
        let what = in_schema("money format");
        let row = client
            .query_one(MONEY_SCALE_SQL, &[])
            .await
            .map_err(|e| RemoteError::db(&what, e))?;
        let scale: i32 = get(&row, 0, &what)?;
        if scale != 2 {
            // outpost keeps money as cents; another lc_monetary would make
            // every amount mean something else.
            for (table, column, pg_type) in money_columns {
                refusals.push((
                    table.clone(),
                    Some(column.clone()),
                    RemoteError::UnsupportedType {
                        table,
                        column,
                        pg_type,
                        reason: format!(
                            "the server's lc_monetary gives money {scale} fractional digits and \
                             outpost keeps amounts exact only with 2 (store it as numeric)"
                        ),
                    },
                ));
            }
        }
    }
    let enum_oids: Vec<u32> = types
        .iter()
        .filter(|(_, t)| t.kind == "e" && enum_names.contains(&t.name))
        .map(|(oid, _)| *oid)
        .collect();

    // Primary and foreign keys.
    let what = in_schema("constraints");
    let rows = client
        .query(CONSTRAINTS_SQL, &[&oids])
        .await
        .map_err(|e| RemoteError::db(&what, e))?;
    let mut primary: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut foreign: BTreeMap<u32, Vec<ForeignKey>> = BTreeMap::new();
    for row in &rows {
        let rel: u32 = get(row, 0, &what)?;
        let name: String = get(row, 1, &what)?;
        let kind: String = get(row, 2, &what)?;
        let cols: Vec<String> = get(row, 3, &what)?;
        if kind == "p" {
            primary.insert(rel, cols);
            continue;
        }
        let ref_cols: Vec<String> = get(row, 4, &what)?;
        let ref_table: Option<String> = get(row, 5, &what)?;
        let ref_schema: Option<String> = get(row, 6, &what)?;
        let on_delete: String = get(row, 7, &what)?;
        let on_update: String = get(row, 8, &what)?;
        let (Some(ref_table), Some(ref_schema)) = (ref_table, ref_schema) else {
            continue;
        };
        if ref_schema != pg_schema {
            continue;
        }
        foreign.entry(rel).or_default().push(ForeignKey {
            name,
            columns: cols,
            ref_table,
            ref_columns: ref_cols,
            on_delete: fk_action(&on_delete),
            on_update: fk_action(&on_update),
        });
    }

    // Foreign keys declared only on partitions, under their root; one per
    // distinct key (several partitions often declare the same one), none
    // that the root declares itself.
    let what = in_schema("partitions' foreign keys");
    let rows = client
        .query(PARTITION_FKS_SQL, &[&oids])
        .await
        .map_err(|e| RemoteError::db(&what, e))?;
    for row in &rows {
        let rel: u32 = get(row, 0, &what)?;
        let name: String = get(row, 1, &what)?;
        let cols: Vec<String> = get(row, 2, &what)?;
        let ref_cols: Vec<String> = get(row, 3, &what)?;
        let ref_table: Option<String> = get(row, 4, &what)?;
        let ref_schema: Option<String> = get(row, 5, &what)?;
        let on_delete: String = get(row, 6, &what)?;
        let on_update: String = get(row, 7, &what)?;
        let (Some(ref_table), Some(ref_schema)) = (ref_table, ref_schema) else {
            continue;
        };
        if ref_schema != pg_schema {
            continue;
        }
        let list = foreign.entry(rel).or_default();
        if list
            .iter()
            .any(|f| f.columns == cols && f.ref_table == ref_table && f.ref_columns == ref_cols)
        {
            continue;
        }
        list.push(ForeignKey {
            name,
            columns: cols,
            ref_table,
            ref_columns: ref_cols,
            on_delete: fk_action(&on_delete),
            on_update: fk_action(&on_update),
        });
    }

    // Unique constraints and indexes.
    let what = in_schema("unique indexes");
    let rows = client
        .query(UNIQUES_SQL, &[&oids])
        .await
        .map_err(|e| RemoteError::db(&what, e))?;
    let mut uniques: BTreeMap<u32, Vec<Vec<String>>> = BTreeMap::new();
    for row in &rows {
        let rel: u32 = get(row, 0, &what)?;
        let cols: Vec<String> = get(row, 1, &what)?;
        let nkeys: i32 = get(row, 2, &what)?;
        if cols.is_empty() || usize::try_from(nkeys).ok() != Some(cols.len()) {
            continue;
        }
        uniques.entry(rel).or_default().push(cols);
    }

    // Enums.
    let what = in_schema("enum types");
    let rows = client
        .query(ENUMS_SQL, &[&enum_oids])
        .await
        .map_err(|e| RemoteError::db(&what, e))?;
    let mut enums = Vec::with_capacity(rows.len());
    for row in &rows {
        enums.push(EnumType {
            name: get(row, 0, &what)?,
            labels: get(row, 1, &what)?,
        });
    }

    let mut tables = Vec::with_capacity(selected.len());
    for (name, rel) in &selected {
        let Some(primary_key) = primary.remove(rel) else {
            refusals.push((
                name.clone(),
                None,
                RemoteError::NoPrimaryKey {
                    table: name.clone(),
                },
            ));
            continue;
        };
        let pk_set: BTreeSet<&String> = primary_key.iter().collect();
        let mut table_uniques: Vec<Vec<String>> = Vec::new();
        for u in uniques.remove(rel).unwrap_or_default() {
            if u.iter().collect::<BTreeSet<_>>() != pk_set && !table_uniques.contains(&u) {
                table_uniques.push(u);
            }
        }
        tables.push(Table {
            name: name.clone(),
            columns: columns.remove(rel).unwrap_or_default(),
            primary_key,
            foreign_keys: foreign.remove(rel).unwrap_or_default(),
            uniques: table_uniques,
            relations: Vec::new(),
        });
    }
    // What the replica cannot hold (names, column count), found on the
    // tables that passed, reported with the rest.
    let partial = Schema {
        pg_schema: pg_schema.to_string(),
        tables: tables.clone(),
        enums: Vec::new(),
    };
    for (table, reason) in outpost_core::sqlite::schema_problems(&partial) {
        refusals.push((
            table.clone(),
            None,
            RemoteError::ReplicaLimit { table, reason },
        ));
    }
    // Every refusal of the run at once, so one setup names them all.
    refusals.sort_by(|a, b| (&a.0, a.1.is_some(), &a.1).cmp(&(&b.0, b.1.is_some(), &b.1)));
    let mut refusals: Vec<RemoteError> = refusals.into_iter().map(|(_, _, e)| e).collect();
    match refusals.len() {
        0 => {}
        1 => return Err(refusals.remove(0)),
        _ => return Err(RemoteError::Unreplicable { refusals }),
    }
    tracing::debug!(tables = tables.len(), enums = enums.len(), "introspected");
    Ok(Schema {
        pg_schema: pg_schema.to_string(),
        tables,
        enums,
    }
    .finish())
}

/// The selected `(name, oid)` pairs, by name, and a refusal for every
/// included name that is not a table.
fn select(
    all: &BTreeMap<String, u32>,
    pg_schema: &str,
    include: Option<&[String]>,
    exclude: &[String],
) -> (Vec<(String, u32)>, Vec<RemoteError>) {
    let mut missing = Vec::new();
    let excluded = |name: &str| exclude.iter().any(|e| e == name);
    let mut selected: BTreeMap<String, u32> = BTreeMap::new();
    match include {
        Some(names) => {
            for name in names {
                if excluded(name) {
                    continue;
                }
                let Some(oid) = all.get(name) else {
                    missing.push(RemoteError::TableNotFound {
                        table: name.clone(),
                        pg_schema: pg_schema.to_string(),
                    });
                    continue;
                };
                selected.insert(name.clone(), *oid);
            }
        }
        None => {
            for (name, oid) in all {
                if name != PRISMA_MIGRATIONS && !excluded(name) {
                    selected.insert(name.clone(), *oid);
                }
            }
        }
    }
    (selected.into_iter().collect(), missing)
}

/// A row of `pg_type`, as [`resolve`] needs it.
struct PgTypeInfo {
    name: String,
    /// `typtype`: `b` base, `d` domain, `e` enum, `c` composite, `r` range,
    /// `m` multirange, `p` pseudo.
    kind: String,
    /// A domain's base type.
    base: u32,
    /// An array type's element type (0 for other types).
    elem: u32,
    /// The type as `format_type` prints it.
    shown: String,
}

/// A column type resolved through domains and arrays.
#[derive(Debug, Clone, PartialEq)]
struct Resolved {
    scalar: ScalarType,
    array: bool,
    domain: Option<String>,
}

/// Resolves the type `oid` to what outpost replicates, or says why it
/// cannot.
fn resolve(types: &BTreeMap<u32, PgTypeInfo>, oid: u32, depth: usize) -> Result<Resolved, String> {
    let Some(t) = types.get(&oid) else {
        return Err(format!("its type (OID {oid}) was not found in pg_type"));
    };
    if depth > 32 {
        return Err(format!("domain {} nests too deeply", t.shown));
    }
    match t.kind.as_str() {
        "d" => {
            let mut r = resolve(types, t.base, depth + 1).map_err(|why| {
                format!("it is a domain over {}, and {why}", shown(types, t.base))
            })?;
            // The declared domain: the outermost one.
            r.domain = Some(t.name.clone());
            Ok(r)
        }
        _ if t.elem != 0 => {
            let r = resolve(types, t.elem, depth + 1)?;
            if r.array {
                return Err(format!(
                    "it is an array of {}, itself an array type (a domain over an array)",
                    shown(types, t.elem)
                ));
            }
            Ok(Resolved { array: true, ..r })
        }
        kind => scalar_type(oid, kind, &t.name)
            .map(|scalar| Resolved {
                scalar,
                array: false,
                domain: None,
            })
            .ok_or_else(|| unsupported_reason(kind, &t.shown)),
    }
}

fn shown(types: &BTreeMap<u32, PgTypeInfo>, oid: u32) -> String {
    types
        .get(&oid)
        .map_or_else(|| format!("OID {oid}"), |t| t.shown.clone())
}

/// Why a type of kind `typtype` is not replicated, and what to do instead.
fn unsupported_reason(typtype: &str, shown: &str) -> String {
    match typtype {
        "c" => format!(
            "{shown} is a composite type, which outpost does not replicate (its fields could \
             not be checked or compared in the replica; a jsonb column carries the same data)"
        ),
        "r" | "m" => format!(
            "{shown} is not one of the built-in ranges outpost replicates (int4, int8, num, \
             date, ts, tstz ranges and multiranges)"
        ),
        "p" => format!("{shown} is a pseudo-type"),
        _ => format!(
            "outpost has no exact mapping for {shown} (docs/types.md lists the types it has)"
        ),
    }
}

/// The scalar type of a type given its OID, `typtype` and name, or `None`
/// when outpost cannot replicate it.
pub fn scalar_type(type_oid: u32, typtype: &str, typname: &str) -> Option<ScalarType> {
    if typtype == "e" {
        return Some(ScalarType::Enum(typname.to_string()));
    }
    let range_elem = |o: u32| -> Option<ScalarType> {
        Some(match o {
            oid::INT4RANGE | oid::INT4MULTIRANGE => ScalarType::Int4,
            oid::INT8RANGE | oid::INT8MULTIRANGE => ScalarType::Int8,
            oid::NUMRANGE | oid::NUMMULTIRANGE => ScalarType::Numeric,
            oid::DATERANGE | oid::DATEMULTIRANGE => ScalarType::Date,
            oid::TSRANGE | oid::TSMULTIRANGE => ScalarType::Timestamp,
            oid::TSTZRANGE | oid::TSTZMULTIRANGE => ScalarType::Timestamptz,
            _ => return None,
        })
    };
    match typtype {
        "r" => return range_elem(type_oid).map(|e| ScalarType::Range(Box::new(e))),
        "m" => return range_elem(type_oid).map(|e| ScalarType::Multirange(Box::new(e))),
        "b" => {}
        _ => return None,
    }
    Some(match type_oid {
        oid::BOOL => ScalarType::Bool,
        oid::INT2 => ScalarType::Int2,
        oid::INT4 => ScalarType::Int4,
        oid::INT8 => ScalarType::Int8,
        oid::FLOAT4 => ScalarType::Float4,
        oid::FLOAT8 => ScalarType::Float8,
        oid::NUMERIC => ScalarType::Numeric,
        oid::TEXT => ScalarType::Text,
        oid::VARCHAR => ScalarType::Varchar,
        oid::BPCHAR => ScalarType::Char,
        oid::UUID => ScalarType::Uuid,
        oid::DATE => ScalarType::Date,
        oid::TIME => ScalarType::Time,
        oid::TIMESTAMP => ScalarType::Timestamp,
        oid::TIMESTAMPTZ => ScalarType::Timestamptz,
        oid::INTERVAL => ScalarType::Interval,
        oid::JSON => ScalarType::Json,
        oid::JSONB => ScalarType::Jsonb,
        oid::BYTEA => ScalarType::Bytea,
        oid::OID => ScalarType::Oid,
        oid::XML => ScalarType::Xml,
        oid::POINT => ScalarType::Point,
        oid::LSEG => ScalarType::Lseg,
        oid::PATH => ScalarType::Path,
        oid::BOX => ScalarType::Box,
        oid::POLYGON => ScalarType::Polygon,
        oid::LINE => ScalarType::Line,
        oid::CIDR => ScalarType::Cidr,
        oid::CIRCLE => ScalarType::Circle,
        oid::MACADDR8 => ScalarType::Macaddr8,
        oid::MONEY => ScalarType::Money,
        oid::MACADDR => ScalarType::Macaddr,
        oid::INET => ScalarType::Inet,
        oid::TIMETZ => ScalarType::Timetz,
        oid::BIT => ScalarType::Bit,
        oid::VARBIT => ScalarType::Varbit,
        oid::TSVECTOR => ScalarType::Tsvector,
        oid::TSQUERY => ScalarType::Tsquery,
        // An extension's type: its OID differs per database.
        _ if typname == "citext" => ScalarType::Citext,
        _ => return None,
    })
}

fn fk_action(code: &str) -> FkAction {
    match code {
        "r" => FkAction::Restrict,
        "c" => FkAction::Cascade,
        "n" => FkAction::SetNull,
        "d" => FkAction::SetDefault,
        _ => FkAction::NoAction,
    }
}

/// Reads column `idx` of a catalogue row, naming what was being read when
/// it has an unexpected type.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
    what: &str,
) -> Result<T, RemoteError> {
    row.try_get(idx).map_err(|e| RemoteError::db(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_mapping() {
        assert_eq!(scalar_type(23, "b", "int4"), Some(ScalarType::Int4));
        assert_eq!(scalar_type(1043, "b", "varchar"), Some(ScalarType::Varchar));
        assert_eq!(
            scalar_type(99999, "e", "Role"),
            Some(ScalarType::Enum("Role".into()))
        );
        assert_eq!(scalar_type(869, "b", "inet"), Some(ScalarType::Inet));
        assert_eq!(scalar_type(790, "b", "money"), Some(ScalarType::Money));
        assert_eq!(scalar_type(1266, "b", "timetz"), Some(ScalarType::Timetz));
        assert_eq!(scalar_type(99999, "b", "citext"), Some(ScalarType::Citext));
        assert_eq!(scalar_type(99998, "b", "hstore"), None);
        assert_eq!(scalar_type(99998, "d", "email"), None);
        assert_eq!(scalar_type(99997, "c", "address"), None);
        assert_eq!(
            scalar_type(3904, "r", "int4range"),
            Some(ScalarType::Range(Box::new(ScalarType::Int4)))
        );
        assert_eq!(
            scalar_type(4534, "m", "tstzmultirange"),
            Some(ScalarType::Multirange(Box::new(ScalarType::Timestamptz)))
        );
        assert_eq!(scalar_type(99996, "r", "floatrange"), None);
    }

    #[test]
    fn selection() {
        let all: BTreeMap<String, u32> = [("User", 1), ("Post", 2), ("_prisma_migrations", 3)]
            .into_iter()
            .map(|(n, o)| (n.to_string(), o))
            .collect();
        let names = |(v, missing): (Vec<(String, u32)>, Vec<RemoteError>)| {
            assert!(missing.is_empty(), "{missing:?}");
            v.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
        };
        let got = names(select(&all, "public", None, &[]));
        assert_eq!(got, vec!["Post".to_string(), "User".to_string()]);
        let got = names(select(&all, "public", None, &["Post".to_string()]));
        assert_eq!(got, vec!["User".to_string()]);
        let inc = vec!["_prisma_migrations".to_string(), "User".to_string()];
        let got = names(select(&all, "public", Some(&inc), &[]));
        assert_eq!(
            got,
            vec!["User".to_string(), "_prisma_migrations".to_string()]
        );
        // Every missing name is reported, the rest still selected.
        let inc = vec!["user".to_string(), "Post".to_string(), "gone".to_string()];
        let (got, missing) = select(&all, "public", Some(&inc), &[]);
        assert_eq!(got, vec![("Post".to_string(), 2)]);
        let missing: Vec<String> = missing
            .into_iter()
            .filter_map(|e| match e {
                RemoteError::TableNotFound { table, .. } => Some(table),
                _ => None,
            })
            .collect();
        assert_eq!(missing, ["user", "gone"]);
    }
}
