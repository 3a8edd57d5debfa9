//! outpost's Prisma schema parser against Prisma's own schema engine: for
//! every schema of `scripts/prisma-check/corpus`, the digest of outpost's
//! parse equals the digest of Prisma's DMMF in
//! `scripts/prisma-check/expected.json`, which `scripts/check-prisma.sh`
//! (run by CI) regenerates with `@prisma/prisma-schema-wasm` and compares
//! with the committed file, so the expectation is Prisma's, not ours.

use std::path::PathBuf;

use outpost_core::prisma::{self, Default, FieldKind};
use serde_json::{Value, json};

fn check_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/prisma-check")
}

fn default_text(d: &Default) -> String {
    match d {
        Default::Cuid(v) => format!("cuid({v})"),
        Default::Uuid(v) => format!("uuid({v})"),
        Default::Nanoid(n) => format!("nanoid({})", n.map(|n| n.to_string()).unwrap_or_default()),
        Default::Now => "now()".into(),
        Default::Autoincrement => "autoincrement()".into(),
        Default::Sequence => "sequence()".into(),
        Default::DbGenerated(e) => format!("dbgenerated({})", e.clone().unwrap_or_default()),
        Default::Value(v) => v.clone(),
    }
}

/// The same digest `scripts/prisma-check/dmmf.mjs` prints.
fn digest(text: &str) -> Value {
    let schema = prisma::parse(text).expect("the corpus parses");
    let models: Vec<Value> = schema
        .models
        .iter()
        .map(|m| {
            let fields: Vec<Value> = m
                .fields
                .iter()
                .map(|f| {
                    let object = f.kind == FieldKind::Object;
                    let rel = f.relation.as_ref();
                    json!({
                        "name": f.name,
                        "dbName": f.db_name,
                        "kind": match f.kind {
                            FieldKind::Scalar => "scalar",
                            FieldKind::Enum => "enum",
                            FieldKind::Object => "object",
                        },
                        "type": f.ty,
                        "isList": f.list,
                        "isRequired": !f.optional,
                        "isId": f.id,
                        "isUnique": f.unique,
                        "isUpdatedAt": f.updated_at,
                        "default": f.default.as_ref().map(default_text),
                        "nativeType": f.native_type.as_ref().map(|(n, a)| json!([n, a])),
                        "relationName": object.then(|| schema.relation_name(m, f)),
                        "relationFromFields": rel.filter(|_| object).map(|r| r.fields.clone()),
                        "relationToFields": rel.filter(|_| object).map(|r| r.references.clone()),
                    })
                })
                .collect();
            json!({
                "name": m.name,
                "dbName": m.db_name,
                "primaryKey": m.primary_key,
                "uniques": m.uniques,
                "fields": fields,
            })
        })
        .collect();
    let enums: Vec<Value> = schema
        .enums
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "dbName": e.db_name,
                "values": e.values.iter().map(|(n, d)| json!({"name": n, "dbName": d})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"models": models, "enums": enums})
}

#[test]
fn the_parse_matches_prismas_dmmf_on_the_corpus() {
    let dir = check_dir();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    let expected = expected.as_object().expect("an object per file");
    let mut files: Vec<String> = std::fs::read_dir(dir.join("corpus"))
        .expect("the corpus")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prisma"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the corpus has its schemas: {files:?}");
    assert_eq!(
        files,
        expected.keys().cloned().collect::<Vec<_>>(),
        "expected.json covers exactly the corpus (run scripts/check-prisma.sh --update)"
    );
    for file in files {
        let text = std::fs::read_to_string(dir.join("corpus").join(&file)).expect("read");
        let ours = digest(&text);
        let theirs = &expected[&file];
        // Model by model, field by field, so a failure names the difference.
        let (om, tm) = (
            ours["models"].as_array().unwrap(),
            theirs["models"].as_array().unwrap(),
        );
        assert_eq!(om.len(), tm.len(), "{file}: number of models");
        for (o, t) in om.iter().zip(tm) {
            let (of, tf) = (
                o["fields"].as_array().unwrap(),
                t["fields"].as_array().unwrap(),
            );
            assert_eq!(of.len(), tf.len(), "{file}: fields of {}", t["name"]);
            for (a, b) in of.iter().zip(tf) {
                assert_eq!(a, b, "{file}: model {} field {}", t["name"], b["name"]);
            }
            assert_eq!(o, t, "{file}: model {}", t["name"]);
        }
        assert_eq!(ours["enums"], theirs["enums"], "{file}: enums");
    }
}
