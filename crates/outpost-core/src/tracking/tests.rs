//! Exact-string tests of the tracking schema's SQL: each migration's text,
//! the trigger plan, the trigger statements and the key expression.

use super::migrations::{V1, V2, V3, V4, V5, V6, V7};
use super::*;
use crate::schema::Column;
use crate::types::{ColumnType, ScalarType};

fn col(name: &str, scalar: ScalarType, pg_name: &str) -> Column {
    Column {
        name: name.into(),
        ty: ColumnType::scalar(scalar, pg_name),
        nullable: false,
        default: None,
        identity: None,
        generated: false,
    }
}

fn post_tag() -> Table {
    Table {
        name: "PostTag".into(),
        columns: vec![
            col("postId", ScalarType::Text, "text"),
            col("tagId", ScalarType::Int4, "integer"),
        ],
        primary_key: vec!["postId".into(), "tagId".into()],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    }
}

fn schema(tables: Vec<Table>) -> Schema {
    Schema {
        pg_schema: "public".into(),
        tables,
        enums: vec![],
    }
}

#[test]
fn triggers_sql() {
    let tail = "DROP TRIGGER IF EXISTS \"outpost_notify\" ON \"public\".\"PostTag\";\n\
         CREATE TRIGGER \"outpost_notify\" AFTER INSERT OR UPDATE OR DELETE ON \"public\".\"PostTag\" \
         FOR EACH STATEMENT EXECUTE FUNCTION \"outpost\".\"notify\"('PostTag');\n\
         DROP TRIGGER IF EXISTS \"outpost_truncate\" ON \"public\".\"PostTag\";\n\
         CREATE TRIGGER \"outpost_truncate\" AFTER TRUNCATE ON \"public\".\"PostTag\" \
         FOR EACH STATEMENT EXECUTE FUNCTION \"outpost\".\"capture_truncate\"('PostTag');\n";
    assert_eq!(
        create_triggers_sql("public", &post_tag(), Capture::Statement),
        format!(
            "DROP TRIGGER IF EXISTS \"outpost_capture_del\" ON \"public\".\"PostTag\";\n\
             CREATE TRIGGER \"outpost_capture_del\" AFTER DELETE ON \"public\".\"PostTag\" \
             REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT \
             EXECUTE FUNCTION \"outpost\".\"capture_rows\"('PostTag', 'postId', 'tagId');\n\
             DROP TRIGGER IF EXISTS \"outpost_capture_ins\" ON \"public\".\"PostTag\";\n\
             CREATE TRIGGER \"outpost_capture_ins\" AFTER INSERT ON \"public\".\"PostTag\" \
             REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT \
             EXECUTE FUNCTION \"outpost\".\"capture_rows\"('PostTag', 'postId', 'tagId');\n\
             DROP TRIGGER IF EXISTS \"outpost_capture_upd\" ON \"public\".\"PostTag\";\n\
             CREATE TRIGGER \"outpost_capture_upd\" AFTER UPDATE ON \"public\".\"PostTag\" \
             REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT \
             EXECUTE FUNCTION \"outpost\".\"capture_rows\"('PostTag', 'postId', 'tagId');\n{tail}"
        )
    );
    assert_eq!(
        create_triggers_sql("public", &post_tag(), Capture::Row),
        format!(
            "DROP TRIGGER IF EXISTS \"outpost_capture\" ON \"public\".\"PostTag\";\n\
             CREATE TRIGGER \"outpost_capture\" AFTER INSERT OR UPDATE OR DELETE ON \"public\".\"PostTag\" \
             FOR EACH ROW EXECUTE FUNCTION \"outpost\".\"capture\"('PostTag', 'postId', 'tagId');\n{tail}"
        )
    );
}

#[test]
fn names_are_quoted() {
    let mut t = post_tag();
    t.name = "we\"ird's".into();
    t.primary_key = vec!["it's".into()];
    let sql = create_triggers_sql("my schema", &t, Capture::Row);
    assert!(sql.contains("ON \"my schema\".\"we\"\"ird's\" FOR EACH ROW"));
    assert!(sql.contains("\"capture\"('we\"ird''s', 'it''s')"));
    let sql = create_triggers_sql("my schema", &t, Capture::Statement);
    assert!(sql.contains("\"capture_rows\"('we\"ird''s', 'it''s')"));
    assert_eq!(
        drop_trigger_sql("s", "t\"", "outpost_notify"),
        "DROP TRIGGER IF EXISTS \"outpost_notify\" ON \"s\".\"t\"\"\";"
    );
}

#[test]
fn version_sql() {
    assert_eq!(
        set_version_sql(1),
        "INSERT INTO \"outpost\".\"meta\" (\"key\", \"value\") VALUES ('schema_version', '1') \
         ON CONFLICT (\"key\") DO UPDATE SET \"value\" = EXCLUDED.\"value\";"
    );
    let sql = migration_sql(&MIGRATIONS[0]);
    assert!(sql.starts_with("CREATE SCHEMA IF NOT EXISTS \"outpost\";\n"));
    assert!(sql.ends_with(&format!("FROM PUBLIC;\n{}", set_version_sql(1))));
}

#[test]
fn v1_pins_the_capture_rules() {
    // The decisions the rest of outpost relies on, spelled out.
    for needle in [
        "\"txid\" xid8 NOT NULL DEFAULT pg_current_xact_id()",
        "\"seq\" bigserial PRIMARY KEY",
        "CREATE INDEX \"changes_txid_seq\" ON \"outpost\".\"changes\" (\"txid\", \"seq\");",
        "PRIMARY KEY (\"table_name\", \"pk\")",
        "\"applied_local_seq\" bigint NOT NULL DEFAULT 0",
        "NULLIF(current_setting('outpost.origin', true), '')",
        "NULLIF(current_setting('outpost.local_seq', true), '')::bigint",
        "ELSIF v_old::text = v_new::text THEN",
        "PERFORM pg_notify('outpost_changes', TG_ARGV[0]);",
        "SET TimeZone = 'UTC'",
    ] {
        assert!(V1.contains(needle), "V1 lacks {needle}");
    }
    assert!(V1.contains(CHANNEL) && V1.contains(ORIGIN_SETTING) && V1.contains(LOCAL_SEQ_SETTING));
}

#[test]
fn v2_pins_the_statement_capture() {
    for needle in [
        "to_jsonb(n.%I)",
        "to_jsonb(o)::text AS r",
        "WHERE o.r IS DISTINCT FROM n.r ORDER BY (n.pk IS NULL) DESC",
        "NULLIF(current_setting('outpost.origin', true), '')",
        "NULLIF(current_setting('outpost.local_seq', true), '')::bigint",
        "SET TimeZone = 'UTC'",
        "SET extra_float_digits = 1",
    ] {
        assert!(V2.contains(needle), "V2 lacks {needle}");
    }
}

#[test]
fn lock_key_matches_constant() {
    assert_eq!(
        LOCK_SQL,
        format!("SELECT pg_catalog.pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
    );
}

#[test]
fn migrations_are_ordered_without_gaps() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version, i as i32 + 1);
    }
    assert_eq!(latest_version(), 7);
}

#[test]
fn v3_pins_the_key_index() {
    assert_eq!(
        V3.trim(),
        "CREATE INDEX IF NOT EXISTS \"row_versions_pk_hash\" ON \"outpost\".\"row_versions\" USING hash (\"pk\");"
    );
}

#[test]
fn v4_pins_the_incarnation_column() {
    assert_eq!(
        V4.trim(),
        "ALTER TABLE \"outpost\".\"nodes\" ADD COLUMN IF NOT EXISTS \"incarnation\" uuid;"
    );
}

#[test]
fn v5_compares_whole_rows_and_inserts_small_statements_statically() {
    for needle in [
        "CREATE OR REPLACE FUNCTION \"outpost\".\"capture_rows\"()",
        "v_small := (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 65) x) <= 64;",
        "(SELECT jsonb_agg(r.j -> k.c ORDER BY k.o) FROM unnest(v_keys) WITH ORDINALITY AS k(c, o))",
        "FROM (SELECT to_jsonb(n.*) AS j FROM new_rows n) r",
        "to_jsonb(o.*)::text AS r FROM old_rows o",
        "to_jsonb(n.*)::text AS r FROM new_rows n",
        "WHERE o.r IS DISTINCT FROM n.r ORDER BY (n.pk IS NULL) DESC",
        "ON CONFLICT (\"table_name\", \"pk\") DO UPDATE SET",
        "USING v_table, v_origin, v_local_seq;",
        "SECURITY DEFINER",
        "SET TimeZone = 'UTC'",
        "SET IntervalStyle = 'postgres'",
        "SET extra_float_digits = 1",
        "NULLIF(current_setting('outpost.origin', true), '')",
        "NULLIF(current_setting('outpost.local_seq', true), '')::bigint",
        "ALTER TABLE \"outpost\".\"row_versions\" SET (fillfactor = 80);",
    ] {
        assert!(V5.contains(needle), "V5 lacks {needle}");
    }
    assert!(!V5.contains("to_jsonb(o)") && !V5.contains("to_jsonb(n)"));
}

#[test]
fn v6_stamps_only_the_push_statements_rows() {
    let stamp = "v_local_seq bigint := CASE\n        WHEN pg_trigger_depth() = 1\n         AND current_setting('outpost.push_table', true) = TG_ARGV[0]\n        THEN NULLIF(current_setting('outpost.local_seq', true), '')::bigint END;";
    // Both captures (row and statement) decide the same way.
    assert_eq!(V6.matches(stamp).count(), 2);
    assert!(V6.contains("CREATE OR REPLACE FUNCTION \"outpost\".\"capture\"()"));
    assert!(V6.contains("CREATE OR REPLACE FUNCTION \"outpost\".\"capture_rows\"()"));
    assert!(!V6.contains("NULLIF(current_setting('outpost.local_seq', true), '')::bigint;"));
}

#[test]
fn v7_captures_small_updates_and_deletes_statically() {
    assert!(V7.contains("CREATE OR REPLACE FUNCTION \"outpost\".\"capture_rows\"()"));
    // One static statement per operation, each behind its own size check
    // (a statement naming `new_rows` fails in a DELETE's call).
    assert_eq!(
        V7.matches("v_small := (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 65) x) <= 64;")
            .count(),
        2
    );
    assert!(
        V7.contains("v_small := (SELECT count(*) FROM (SELECT FROM old_rows LIMIT 65) x) <= 64;")
    );
    assert!(V7.contains("FROM (SELECT to_jsonb(o.*) AS j FROM old_rows o) r"));
    assert!(V7.contains("FROM (SELECT to_jsonb(o.*) AS j, ROW(o.*)::text AS t FROM old_rows o) r"));
    assert!(V7.contains("FROM (SELECT to_jsonb(n.*) AS j, ROW(n.*)::text AS t FROM new_rows n) r"));
    assert!(V7.contains("WHERE o.t IS DISTINCT FROM n.t"));
    // The planned way compares rows by their text as well.
    assert!(V7.contains("ROW(o.*)::text AS r FROM old_rows o"));
    assert!(V7.contains("ROW(n.*)::text AS r FROM new_rows n"));
    assert!(!V7.contains("to_jsonb(o.*)::text") && !V7.contains("to_jsonb(n.*)::text"));
    assert!(!V7.contains("to_jsonb(o)") && !V7.contains("to_jsonb(n)"));
    // Version 6's stamping rule is kept.
    assert!(V7.contains(
        "v_local_seq bigint := CASE\n        WHEN pg_trigger_depth() = 1\n         AND current_setting('outpost.push_table', true) = TG_ARGV[0]"
    ));
}

#[test]
fn pending() {
    assert_eq!(pending_migrations(None).map(<[_]>::len), Ok(7));
    for installed in 0..=7 {
        assert_eq!(
            pending_migrations(Some(installed)).map(<[_]>::len),
            Ok(7 - installed as usize)
        );
    }
    let err = pending_migrations(Some(8)).expect_err("newer than known");
    assert_eq!(
        err,
        NewerSchemaVersion {
            installed: 8,
            supported: 7
        }
    );
    assert!(
        err.to_string()
            .contains("version 8, newer than the version 7")
    );
}

#[test]
fn tgargs() {
    assert_eq!(
        parse_tgargs(b"PostTag\0postId\0tagId\0", 3),
        vec!["PostTag", "postId", "tagId"]
    );
    assert_eq!(parse_tgargs(b"", 0), Vec::<String>::new());
}

#[test]
fn plan() {
    let s = schema(vec![post_tag()]);
    let none = BTreeSet::new();
    // Nothing installed: create.
    let p = plan_triggers(&[], &s, &none);
    assert_eq!(p.recreate, vec!["PostTag".to_string()]);
    assert!(p.drop.is_empty());
    // All as wanted: nothing to do.
    let want = expected_triggers("public", &s.tables[0], Capture::Statement);
    assert!(plan_triggers(&want, &s, &none).is_empty());
    // A version-1 row trigger is replaced by statement capture, except on
    // a partitioned table.
    let v1 = expected_triggers("public", &s.tables[0], Capture::Row);
    let p = plan_triggers(&v1, &s, &none);
    assert_eq!(p.recreate, vec!["PostTag".to_string()]);
    assert_eq!(
        p.drop,
        vec![("public".into(), "PostTag".into(), "outpost_capture".into())]
    );
    let partitioned: BTreeSet<String> = ["PostTag".to_string()].into();
    assert!(plan_triggers(&v1, &s, &partitioned).is_empty());
    // A disabled trigger or changed key: recreate.
    let mut changed = want.clone();
    changed[0].enabled = false;
    assert_eq!(plan_triggers(&changed, &s, &none).recreate.len(), 1);
    let mut changed = want.clone();
    changed[0].args.pop();
    assert_eq!(plan_triggers(&changed, &s, &none).recreate.len(), 1);
    // A stray trigger on a synced table and triggers on an unsynced one.
    let mut extra = want.clone();
    let mut stray = want[1].clone();
    stray.name = "mine".into();
    extra.push(stray);
    let mut gone = want[0].clone();
    gone.table = "Old".into();
    extra.push(gone);
    let p = plan_triggers(&extra, &s, &none);
    assert_eq!(p.recreate, vec!["PostTag".to_string()]);
    assert_eq!(
        p.drop,
        vec![
            ("public".into(), "Old".into(), "outpost_capture_del".into()),
            ("public".into(), "PostTag".into(), "mine".into()),
        ]
    );
}

#[test]
fn key_expression() {
    assert_eq!(
        pk_key_expr(&post_tag(), 3),
        "jsonb_build_array($3::text, $4::integer)"
    );
}
