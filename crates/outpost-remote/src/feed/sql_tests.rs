//! Exact text of every generated statement, for a table with a two-column
//! key, an identity column and a generated column (rows as typed arrays),
//! and for one with an array column (rows as a `VALUES` list).

use outpost_core::schema::{Column, Identity, Table};
use outpost_core::sync::{Expected, PushRow};
use outpost_core::types::{ColumnType, ScalarType, Value};

use super::*;

fn col(name: &str, scalar: ScalarType, pg_name: &str) -> Column {
    Column {
        name: name.into(),
        ty: ColumnType::scalar(scalar, pg_name),
        nullable: true,
        default: None,
        identity: None,
        generated: false,
    }
}

/// `"Order Line"("orderId" uuid, "n" int4 identity always, "qty" int8,
/// "total" numeric generated)`, key `("orderId", "n")`.
fn lines() -> Table {
    let mut n = col("n", ScalarType::Int4, "integer");
    n.identity = Some(Identity::Always);
    let mut total = col("total", ScalarType::Numeric, "numeric");
    total.generated = true;
    Table {
        name: "Order Line".into(),
        primary_key: vec!["orderId".into(), "n".into()],
        columns: vec![
            col("orderId", ScalarType::Uuid, "uuid"),
            n,
            col("qty", ScalarType::Int8, "bigint"),
            total,
        ],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    }
}

/// `"Post"("id" int8, "tags" text[])`, key `("id")`.
fn posts() -> Table {
    let mut tags = col("tags", ScalarType::Text, "text[]");
    tags.ty.array = true;
    Table {
        name: "Post".into(),
        primary_key: vec!["id".into()],
        columns: vec![col("id", ScalarType::Int8, "bigint"), tags],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    }
}

fn row(pk: Vec<Value>) -> PushRow {
    PushRow {
        table: String::new(),
        local_pk: String::new(),
        pk,
        values: None,
        changed: None,
        local_seq: outpost_core::LocalSeq(1),
        expected: Expected::AsOfCursor,
        moved_from: None,
    }
}

const LINES: &str = "\"public\".\"Order Line\"";

fn line_keys() -> Source {
    let a = row(vec![Value::Text("x".into()), Value::Int(1)]);
    let b = row(vec![Value::Text("y".into())]);
    key_source(&lines(), &[&a, &b])
}

#[test]
fn typed_array_sources_have_one_text_for_any_group() {
    let keys = line_keys();
    assert_eq!(
        keys.sql,
        "(SELECT (u.o - 1)::int4 AS i, k0, k1 FROM unnest($1::uuid[], $2::integer[]) \
         WITH ORDINALITY u(k0, k1, o)) v"
    );
    assert!(keys.cacheable);
    // One array per key column; a short key is padded with null.
    assert_eq!(
        keys.params,
        vec![
            Value::Array(vec![Value::Text("x".into()), Value::Text("y".into())]),
            Value::Array(vec![Value::Int(1), Value::Null]),
        ]
    );
}

#[test]
fn values_sources_number_their_parameters() {
    let names = value_names(&[0, 1]);
    let types = vec!["bigint".to_string(), "text[]".to_string()];
    let cells = vec![
        vec![Value::Int(1), Value::Array(vec![])],
        vec![Value::Int(2), Value::Null],
    ];
    let src = source(unnestable(&posts()), &names, &types, cells, 1);
    assert_eq!(
        src.sql,
        "(VALUES (0, $1::bigint, $2::text[]), (1, $3::bigint, $4::text[])) v(i, c0, c1)"
    );
    assert!(!src.cacheable);
    assert_eq!(src.params.len(), 4);
}

#[test]
fn bootstrap_statements() {
    let t = posts();
    assert_eq!(count_rows(&t), "SELECT count(*) FROM \"Post\"");
    assert_eq!(
        copy_probe("app", &t),
        "SELECT \"id\", \"tags\" FROM \"app\".\"Post\" LIMIT 0"
    );
    assert_eq!(
        copy_out("app", &lines()),
        "COPY (SELECT \"orderId\", \"n\", \"qty\", \"total\" FROM \"app\".\"Order Line\" \
         ORDER BY \"orderId\", \"n\") TO STDOUT (FORMAT binary)"
    );
}

#[test]
fn pull_statements() {
    assert_eq!(
        rows_by_typed_keys("public", &lines()),
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.\"orderId\" IS NOT NULL, \
         v.k0, v.k1, t.\"orderId\", t.\"n\", t.\"qty\", t.\"total\" \
         FROM unnest($1::text[], $2::uuid[], $3::integer[]) v(key, k0, k1) \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $4 AND rv.pk = v.key::jsonb \
         LEFT JOIN \"public\".\"Order Line\" t ON t.\"orderId\" = v.k0 AND t.\"n\" = v.k1"
    );
    assert_eq!(
        rows_by_jsonb_keys("public", &lines()),
        "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.\"orderId\" IS NOT NULL, \
         (k.key ->> 0)::uuid AS \"_k0\", (k.key ->> 1)::integer AS \"_k1\", \
         t.\"orderId\", t.\"n\", t.\"qty\", t.\"total\" \
         FROM (SELECT unnest($1::text[])::jsonb AS key) k \
         LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $2 AND rv.pk = k.key \
         LEFT JOIN \"public\".\"Order Line\" t ON t.\"orderId\" = (k.key ->> 0)::uuid \
         AND t.\"n\" = (k.key ->> 1)::integer"
    );
    assert!(PULL_FEED.contains("c.txid < pg_snapshot_xmin(pg_current_snapshot())"));
    assert!(PULL_HELD_BACK.starts_with("SELECT EXISTS"));
}

#[test]
fn push_reads() {
    let t = lines();
    let keys = line_keys();
    let src = &keys.sql;
    assert_eq!(
        lock_rows(LINES, &t, &keys),
        format!(
            "SELECT 1 FROM \"public\".\"Order Line\" t WHERE (t.\"orderId\", t.\"n\") IN \
             (SELECT k0, k1 FROM {src}) ORDER BY t.\"orderId\", t.\"n\" FOR UPDATE"
        )
    );
    assert_eq!(
        row_decisions(LINES, &t, &keys),
        format!(
            "SELECT v.i, c.txid::text::int8, c.seq, rv.version, rv.origin, rv.origin_local_seq, \
             t.\"orderId\" IS NOT NULL \
             FROM {src} \
             LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $3 AND rv.pk = jsonb_build_array(v.k0, v.k1) \
             LEFT JOIN \"outpost\".\"changes\" c ON c.seq = rv.version \
             LEFT JOIN \"public\".\"Order Line\" t ON t.\"orderId\" = v.k0 AND t.\"n\" = v.k1"
        )
    );
    assert_eq!(
        current_rows(LINES, &t, &keys),
        format!(
            "SELECT rv.version, rv.origin, rv.origin_local_seq, rv.updated_at, t.\"orderId\" IS NOT NULL, \
             v.k0, v.k1, t.\"orderId\", t.\"n\", t.\"qty\", t.\"total\" \
             FROM {src} \
             LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $3 AND rv.pk = jsonb_build_array(v.k0, v.k1) \
             LEFT JOIN \"public\".\"Order Line\" t ON t.\"orderId\" = v.k0 AND t.\"n\" = v.k1 ORDER BY v.i"
        )
    );
    assert_eq!(
        written_versions(LINES, &t, &keys),
        format!(
            "SELECT v.i, COALESCE(r.version, 0), t.\"orderId\" IS NOT NULL, \
             t.\"orderId\", t.\"n\", t.\"qty\", t.\"total\" FROM {src} \
             LEFT JOIN LATERAL (SELECT x.version FROM \"outpost\".\"row_versions\" x \
               WHERE x.table_name = $3 AND x.pk = jsonb_build_array(v.k0, v.k1)) r ON true \
             LEFT JOIN \"public\".\"Order Line\" t ON t.\"orderId\" = v.k0 AND t.\"n\" = v.k1"
        )
    );
    assert_eq!(
        versions_by_key(&t, &keys),
        format!(
            "SELECT v.i, COALESCE(rv.version, 0) FROM {src} \
             LEFT JOIN \"outpost\".\"row_versions\" rv ON rv.table_name = $3 \
             AND rv.pk = jsonb_build_array(v.k0, v.k1) ORDER BY v.i"
        )
    );
}

#[test]
fn push_writes() {
    let t = lines();
    let keys = line_keys();
    assert_eq!(
        delete_rows(LINES, &t, &keys),
        format!(
            "DELETE FROM \"public\".\"Order Line\" t USING {} \
             WHERE t.\"orderId\" = v.k0 AND t.\"n\" = v.k1 RETURNING v.i",
            keys.sql
        )
    );
    // The generated column is not written.
    let cols = [0, 1, 2];
    let types: Vec<String> = vec!["uuid".into(), "integer".into(), "bigint".into()];
    let src = source(true, &value_names(&cols), &types, vec![], 1);
    assert_eq!(
        src.sql,
        "(SELECT (u.o - 1)::int4 AS i, c0, c1, c2 FROM unnest($1::uuid[], $2::integer[], $3::bigint[]) \
         WITH ORDINALITY u(c0, c1, c2, o)) v"
    );
    assert_eq!(
        update_rows(LINES, &t, &cols, &src),
        Some(format!(
            "UPDATE \"public\".\"Order Line\" t SET \"qty\" = v.c2 FROM {} \
             WHERE t.\"orderId\" = v.c0 AND t.\"n\" = v.c1 RETURNING v.i",
            src.sql
        ))
    );
    assert_eq!(
        insert_rows(LINES, &t, &cols, &src),
        format!(
            "INSERT INTO \"public\".\"Order Line\" (\"orderId\", \"n\", \"qty\") OVERRIDING SYSTEM VALUE \
             SELECT v.c0, v.c1, v.c2 FROM {} ORDER BY v.i \
             ON CONFLICT (\"orderId\", \"n\") DO NOTHING RETURNING \"orderId\", \"n\"",
            src.sql
        )
    );
    // A key-only table has nothing to update; no identity, no OVERRIDING.
    let mut key_only = posts();
    key_only.columns.truncate(1);
    let src = source(true, &value_names(&[0]), &["bigint".into()], vec![], 1);
    assert_eq!(update_rows("\"Post\"", &key_only, &[0], &src), None);
    assert_eq!(
        insert_rows("\"Post\"", &key_only, &[0], &src),
        format!(
            "INSERT INTO \"Post\" (\"id\") SELECT v.c0 FROM {} ORDER BY v.i \
             ON CONFLICT (\"id\") DO NOTHING RETURNING \"id\"",
            src.sql
        )
    );
}

#[test]
fn a_key_change_is_one_update_found_by_the_old_key() {
    let t = lines();
    let mut names = key_names(&t);
    names.extend(value_names(&[0, 2]));
    let src = source(
        false,
        &names,
        &["text".into(), "int4".into(), "text".into(), "int4".into()],
        vec![vec![
            Value::Text("o1".into()),
            Value::Int(1),
            Value::Text("o2".into()),
            Value::Int(5),
        ]],
        1,
    );
    assert_eq!(
        src.sql,
        "(VALUES (0, $1::text, $2::int4, $3::text, $4::int4)) v(i, k0, k1, c0, c1)"
    );
    assert_eq!(
        move_row(LINES, &t, &[0, 2], &src),
        format!(
            "UPDATE \"public\".\"Order Line\" t SET \"orderId\" = v.c0, \"qty\" = v.c1 FROM {} \
             WHERE t.\"orderId\" = v.k0 AND t.\"n\" = v.k1 RETURNING v.i",
            src.sql
        )
    );
}

#[test]
fn inspection_statements() {
    assert_eq!(
        count_all("app", &posts()),
        "SELECT count(*) FROM \"app\".\"Post\""
    );
    assert_eq!(
        select_all("app", &lines()),
        "SELECT \"orderId\", \"n\", \"qty\", \"total\" FROM \"app\".\"Order Line\" ORDER BY \"orderId\", \"n\""
    );
    assert_eq!(qualified("a\"b", "T"), "\"a\"\"b\".\"T\"");
}

#[test]
fn pushed_values_are_bound_without_type_modifiers() {
    let ty = |scalar: ScalarType, pg: &str| ColumnType::scalar(scalar, pg);
    assert_eq!(
        assign_type(&ty(ScalarType::Varchar, "character varying(10)")),
        "varchar"
    );
    assert_eq!(assign_type(&ty(ScalarType::Char, "character(5)")), "bpchar");
    assert_eq!(
        assign_type(&ty(ScalarType::Numeric, "numeric(6,2)")),
        "numeric"
    );
    assert_eq!(assign_type(&ty(ScalarType::Bit, "bit(4)")), "varbit");
    assert_eq!(
        assign_type(&ty(ScalarType::Timestamptz, "timestamp(3) with time zone")),
        "timestamptz"
    );
    let mut arr = ty(ScalarType::Varchar, "character varying(3)[]");
    arr.array = true;
    assert_eq!(assign_type(&arr), "varchar[]");
    // A domain: its base type, so the assignment checks the domain.
    let mut year = ty(ScalarType::Int4, "year");
    year.domain = Some("year".into());
    assert_eq!(assign_type(&year), "integer");
    // Unmodified names stay as they are (enums, text, extension types).
    assert_eq!(assign_type(&ty(ScalarType::Text, "text")), "text");
    assert_eq!(
        assign_type(&ty(ScalarType::Enum("Role".into()), "\"Role\"")),
        "\"Role\""
    );
}

#[test]
fn an_insert_takes_the_server_default_the_replica_cannot_compute() {
    let mut t = posts();
    t.columns.truncate(1);
    let mut seq = col("seq", ScalarType::Int8, "bigint");
    seq.default = Some("nextval('s'::regclass)".into());
    let mut status = col("status", ScalarType::Text, "text");
    status.default = Some("'open'::text".into());
    t.columns.extend([seq, status]);
    let src = source(
        true,
        &value_names(&[0, 1, 2]),
        &["bigint".into(), "bigint".into(), "text".into()],
        vec![],
        1,
    );
    assert_eq!(
        insert_rows("\"Post\"", &t, &[0, 1, 2], &src),
        format!(
            "INSERT INTO \"Post\" (\"id\", \"seq\", \"status\") \
             SELECT v.c0, COALESCE(v.c1, (nextval('s'::regclass))), v.c2 FROM {} ORDER BY v.i \
             ON CONFLICT (\"id\") DO NOTHING RETURNING \"id\"",
            src.sql
        )
    );
}
