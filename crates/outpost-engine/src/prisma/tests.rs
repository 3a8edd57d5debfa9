//! Unit tests of the Prisma binding: generated ids have Prisma's shapes,
//! Prisma's JSON-protocol wrappers are unwrapped, `DateTime`s in and out.

use super::ids::BASE36;
use super::*;

#[test]
fn generated_ids_have_prismas_shapes() {
    let c = cuid();
    assert_eq!(c.len(), 25, "{c}");
    assert!(
        c.starts_with('c') && c.bytes().all(|b| BASE36.contains(&b)),
        "{c}"
    );
    assert_ne!(cuid(), cuid());
    let c2 = cuid2();
    assert_eq!(c2.len(), 24);
    assert!(c2.as_bytes()[0].is_ascii_lowercase() && c2.bytes().all(|b| BASE36.contains(&b)));
    let n = nanoid(21);
    assert_eq!(n.len(), 21);
    assert!(
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    assert_eq!(nanoid(8).len(), 8);
}

#[test]
fn json_protocol_wrappers_are_unwrapped() {
    let f = BoundField {
        name: "x".into(),
        column: "x".into(),
        default: None,
        updated_at: false,
        datetime: false,
        naive: false,
        date: false,
        labels: Vec::new(),
    };
    let w = |t: &str, v: Json| serde_json::json!({"$type": t, "value": v});
    assert_eq!(
        value_in(&f, w("Decimal", "12.50".into())),
        Json::from("12.50")
    );
    assert_eq!(
        value_in(&f, w("BigInt", "9007199254740993".into())),
        Json::from("9007199254740993")
    );
    assert_eq!(value_in(&f, w("Bytes", "AQID".into())), Json::from("AQID"));
    assert_eq!(
        value_in(&f, w("Json", r#"{"a":[1,null]}"#.into())),
        serde_json::json!({"a": [1, null]})
    );
    // An object that merely has a `$type` key is a value of its own.
    let doc = serde_json::json!({"$type": "Decimal", "value": "1", "other": true});
    assert_eq!(value_in(&f, doc.clone()), doc);
}

#[test]
fn datetimes_in_and_out() {
    let f = BoundField {
        name: "at".into(),
        column: "at".into(),
        default: None,
        updated_at: false,
        datetime: true,
        naive: true,
        date: false,
        labels: Vec::new(),
    };
    assert_eq!(
        value_in(&f, Json::String("2024-03-01T10:00:00.123+02:00".into())),
        Json::String("2024-03-01T08:00:00.123000".into())
    );
    assert_eq!(
        datetime_out(&Json::String("2024-03-01T08:00:00.123000".into())),
        Json::String("2024-03-01T08:00:00.123Z".into())
    );
    assert_eq!(
        datetime_out(&Json::String("2024-03-01T08:00:00.123456".into())),
        Json::String("2024-03-01T08:00:00.123456Z".into())
    );
    assert_eq!(
        datetime_out(&Json::String("2024-03-01".into())),
        Json::String("2024-03-01T00:00:00.000Z".into()),
        "a @db.Date as Prisma reads it"
    );
    let day = BoundField {
        date: true,
        naive: false,
        ..f.clone()
    };
    assert_eq!(
        value_in(&day, Json::String("2024-03-01T00:00:00.000Z".into())),
        Json::String("2024-03-01".into())
    );
    let wrapped = serde_json::json!({"$type": "DateTime", "value": "2024-03-01T10:00:00.000Z"});
    assert_eq!(
        value_in(&f, wrapped),
        Json::String("2024-03-01T10:00:00.000000".into())
    );
}
