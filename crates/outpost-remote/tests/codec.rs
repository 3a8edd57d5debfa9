//! The binary codec against a real server: every supported type, edge
//! values included, survives `Bind` → column → `PgValue` unchanged, and the
//! text forms that should match PostgreSQL's own output do.

use anyhow::Context as _;
use outpost_core::Value;
use outpost_remote::RemoteError;
use outpost_remote::codec::{Bind, PgValue, row_values};
use outpost_testkit::TestDb;
use tokio_postgres::Client;

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

/// Each case: the value sent, and the value expected back (the same unless
/// the column's type normalises it).
type Cases = Vec<(Value, Value)>;

fn same(values: Vec<Value>) -> Cases {
    values.into_iter().map(|v| (v.clone(), v)).collect()
}

async fn roundtrip(client: &Client, pg_type: &str, cases: Cases) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS rt; CREATE TABLE rt (id int PRIMARY KEY, v {pg_type})"
        ))
        .await
        .with_context(|| format!("creating a {pg_type} column"))?;
    for (i, (input, _)) in cases.iter().enumerate() {
        let id = i32::try_from(i)?;
        client
            .execute(
                "INSERT INTO rt (id, v) VALUES ($1, $2)",
                &[&id, &Bind(input)],
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", outpost_remote::error::describe(&e)))
            .with_context(|| format!("inserting {input:?} as {pg_type}"))?;
    }
    let rows = client.query("SELECT v FROM rt ORDER BY id", &[]).await?;
    assert_eq!(rows.len(), cases.len());
    for ((input, want), row) in cases.iter().zip(&rows) {
        let PgValue(got) = row
            .try_get(0)
            .with_context(|| format!("reading {input:?} back as {pg_type}"))?;
        assert_eq!(&got, want, "{pg_type}: sent {input:?}");
        if let (Value::Float(a), Value::Float(b)) = (&got, want)
            && !b.is_nan()
        {
            assert_eq!(a.is_sign_negative(), b.is_sign_negative(), "sign of {b}");
        }
    }
    // The same values as parameters of a plain SELECT, without a column.
    for (input, want) in &cases {
        let row = client
            .query_one(&format!("SELECT $1::{pg_type}"), &[&Bind(input)])
            .await?;
        let PgValue(got) = row.try_get(0)?;
        assert_eq!(&got, want, "SELECT $1::{pg_type} with {input:?}");
    }
    Ok(())
}

#[tokio::test]
async fn every_supported_type_roundtrips() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client
        .batch_execute(r#"CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN', 'ÉDITEUR')"#)
        .await?;

    roundtrip(
        &client,
        "boolean",
        same(vec![Value::Bool(true), Value::Bool(false), Value::Null]),
    )
    .await?;
    roundtrip(
        &client,
        "smallint",
        same(vec![
            Value::Int(i16::MIN.into()),
            Value::Int(i16::MAX.into()),
            Value::Int(0),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "integer",
        same(vec![
            Value::Int(i32::MIN.into()),
            Value::Int(i32::MAX.into()),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "bigint",
        same(vec![
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Int((1 << 53) + 1),
            Value::Null,
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "real",
        vec![
            (Value::Float(1.5), Value::Float(1.5)),
            (Value::Float(0.1), Value::Float(f64::from(0.1f32))),
            (
                Value::Float(f64::from(f32::MAX)),
                Value::Float(f64::from(f32::MAX)),
            ),
            (Value::Float(f64::NAN), Value::Float(f64::NAN)),
            (Value::Float(f64::INFINITY), Value::Float(f64::INFINITY)),
            (
                Value::Float(f64::NEG_INFINITY),
                Value::Float(f64::NEG_INFINITY),
            ),
            (Value::Float(-0.0), Value::Float(-0.0)),
            (Value::Int(16_777_216), Value::Float(16_777_216.0)),
        ],
    )
    .await?;
    roundtrip(
        &client,
        "double precision",
        same(vec![
            Value::Float(0.1),
            Value::Float(1e308),
            Value::Float(5e-324),
            Value::Float(-0.0),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "numeric",
        vec![
            (t("0"), t("0")),
            (t("1.50"), t("1.50")),
            (t("-1.50"), t("-1.50")),
            (t("-0.00"), t("0.00")),
            (
                t("123456789012345678901234567890"),
                t("123456789012345678901234567890"),
            ),
            (
                t("-12345678901234567890.1234567890"),
                t("-12345678901234567890.1234567890"),
            ),
            (
                t("0.000000000000000000000000000001"),
                t("0.000000000000000000000000000001"),
            ),
            (t("1e20"), t("100000000000000000000")),
            (t("NaN"), t("NaN")),
            (t("Infinity"), t("Infinity")),
            (t("-Infinity"), t("-Infinity")),
            (Value::Int(i64::MIN), t("-9223372036854775808")),
            (Value::Float(2.5), t("2.5")),
        ],
    )
    .await?;
    roundtrip(
        &client,
        "numeric(12,2)",
        vec![
            (t("1234567890.12"), t("1234567890.12")),
            (t("1.5"), t("1.50")),
            (t("0.005"), t("0.01")),
            (t("0"), t("0.00")),
        ],
    )
    .await?;
    roundtrip(
        &client,
        "text",
        same(vec![
            t(""),
            t("héllo wörld 🚀 日本語"),
            t("with 'quotes', \"double\" and \\ backslash"),
            t("line\nbreak\ttab"),
        ]),
    )
    .await?;
    roundtrip(&client, "varchar(10)", same(vec![t("abc"), t("ünïcødé")])).await?;
    roundtrip(
        &client,
        "char(5)",
        vec![(t("ab"), t("ab   ")), (t("abcde"), t("abcde"))],
    )
    .await?;
    roundtrip(
        &client,
        "uuid",
        vec![
            (
                t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            ),
            (
                t("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
                t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            ),
        ],
    )
    .await?;
    roundtrip(
        &client,
        "date",
        same(vec![
            t("2000-01-01"),
            t("1969-07-20"),
            t("1900-02-28"),
            t("2150-12-31"),
            t("0001-01-01"),
            t("-0043-03-15"),
            t("9999-12-31"),
            t("+10000-01-01"),
            t("infinity"),
            t("-infinity"),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "time",
        same(vec![
            t("00:00:00.000000"),
            t("12:34:56.789000"),
            t("23:59:59.999999"),
            t("24:00:00.000000"),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "timestamp",
        same(vec![
            t("1900-01-01T00:00:00.000000"),
            t("1969-12-31T23:59:59.999999"),
            t("1970-01-01T00:00:00.000000"),
            t("2100-06-15T12:00:00.000001"),
            t("2500-01-01T00:00:00.000000"),
            t("9999-12-31T23:59:59.999999"),
            t("infinity"),
            t("-infinity"),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "timestamptz",
        vec![
            (
                t("1900-01-01T00:00:00.000000Z"),
                t("1900-01-01T00:00:00.000000Z"),
            ),
            (
                t("1955-11-05T06:15:00.123456Z"),
                t("1955-11-05T06:15:00.123456Z"),
            ),
            (
                t("2100-06-15T12:00:00.000001Z"),
                t("2100-06-15T12:00:00.000001Z"),
            ),
            (
                t("2024-05-01T12:00:00+02:00"),
                t("2024-05-01T10:00:00.000000Z"),
            ),
            (t("infinity"), t("infinity")),
            (t("-infinity"), t("-infinity")),
        ],
    )
    .await?;
    roundtrip(
        &client,
        "timestamptz(3)",
        vec![(
            t("2024-05-01T10:00:00.123456Z"),
            t("2024-05-01T10:00:00.123000Z"),
        )],
    )
    .await?;
    roundtrip(
        &client,
        "interval",
        same(vec![
            t("P0M0DT0.000000S"),
            t("P-14M3DT-3723.000005S"),
            t("P1M-1DT1.500000S"),
            t("P0M0DT-0.000001S"),
            t("P2147483647M-2147483648DT9223372036854.775807S"),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "json",
        same(vec![
            Value::Json(r#"{"b": [1, 2, {"c": null}],   "a": "x", "a": "dup"}"#.into()),
            Value::Json("\"just a string\"".into()),
            Value::Json("[]".into()),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "jsonb",
        same(vec![
            Value::Json(
                r#"{"nested": {"arr": [1, 2.5, "three", null, true, 12345678901234567890]}, "u": "ü🚀"}"#
                    .into(),
            ),
            Value::Json("null".into()),
            Value::Json("1.50".into()),
        ]),
    )
    .await?;
    let many: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 256) as u8).collect();
    roundtrip(
        &client,
        "bytea",
        same(vec![
            Value::Bytes(vec![]),
            Value::Bytes(vec![0, 1, 255, 0, b'\\', b'\'']),
            Value::Bytes(many),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "\"Role\"",
        same(vec![t("USER"), t("ADMIN"), t("ÉDITEUR"), Value::Null]),
    )
    .await?;

    // Arrays, NULL elements and empty arrays included.
    roundtrip(
        &client,
        "text[]",
        same(vec![
            arr(vec![]),
            arr(vec![t("a"), Value::Null, t("ü, \"quoted\" {braces}")]),
            arr(vec![Value::Null]),
        ]),
    )
    .await?;
    roundtrip(
        &client,
        "integer[]",
        same(vec![arr(vec![Value::Int(1), Value::Null, Value::Int(-3)])]),
    )
    .await?;
    roundtrip(
        &client,
        "bigint[]",
        same(vec![arr(vec![Value::Int(i64::MIN), Value::Int(i64::MAX)])]),
    )
    .await?;
    roundtrip(
        &client,
        "double precision[]",
        same(vec![arr(vec![Value::Float(f64::NAN), Value::Float(-1.25)])]),
    )
    .await?;
    roundtrip(
        &client,
        "numeric[]",
        same(vec![arr(vec![
            t("1.5"),
            t("NaN"),
            Value::Null,
            t("-0.001"),
        ])]),
    )
    .await?;
    roundtrip(
        &client,
        "\"Role\"[]",
        same(vec![arr(vec![t("ADMIN"), t("USER")]), arr(vec![])]),
    )
    .await?;
    roundtrip(
        &client,
        "timestamptz[]",
        same(vec![arr(vec![
            t("1969-12-31T23:59:59.999999Z"),
            t("infinity"),
        ])]),
    )
    .await?;
    roundtrip(
        &client,
        "uuid[]",
        same(vec![arr(vec![t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")])]),
    )
    .await?;
    roundtrip(
        &client,
        "jsonb[]",
        same(vec![arr(vec![
            Value::Json(r#"{"a": [1]}"#.into()),
            Value::Null,
        ])]),
    )
    .await?;
    roundtrip(
        &client,
        "bytea[]",
        same(vec![arr(vec![
            Value::Bytes(vec![0, 255]),
            Value::Bytes(vec![]),
        ])]),
    )
    .await?;
    roundtrip(
        &client,
        "date[]",
        same(vec![arr(vec![t("2024-02-29"), t("-infinity")])]),
    )
    .await?;
    roundtrip(
        &client,
        "boolean[]",
        same(vec![arr(vec![Value::Bool(true), Value::Null])]),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn text_forms_match_postgresql() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client.batch_execute("SET DateStyle = 'ISO, YMD'").await?;
    let rows = client
        .query(
            "SELECT v, v::text FROM (VALUES
                ('0'::numeric), ('1.50'), ('-1.50'), ('0.00'), ('NaN'), ('Infinity'), ('-Infinity'),
                ('123456789012345678901234567890.123456789'), ('-0.000000000000000000001'),
                ('10000'), ('99990000.00010000'), ('1e-30'), ('1e30'), (NULL)
             ) AS x(v)",
            &[],
        )
        .await?;
    let rows2 = client
        .query(
            "SELECT v, v::text FROM (VALUES
                ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid),
                ('00000000-0000-0000-0000-000000000000'),
                ('FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF')
             ) AS x(v)",
            &[],
        )
        .await?;
    let rows3 = client
        .query(
            "SELECT v, v::text FROM (VALUES
                ('2000-01-01'::date), ('1969-07-20'), ('0001-01-01'), ('2150-12-31'),
                ('9999-12-31'), ('infinity'), ('-infinity')
             ) AS x(v)",
            &[],
        )
        .await?;
    let mut checked = 0;
    for row in rows.iter().chain(&rows2).chain(&rows3) {
        let PgValue(v) = row.try_get(0)?;
        let text: Option<String> = row.try_get(1)?;
        match (v, text) {
            (Value::Text(got), Some(want)) => assert_eq!(got, want),
            (Value::Null, None) => {}
            other => panic!("unexpected {other:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 24);
    Ok(())
}

#[tokio::test]
async fn bad_values_and_types_are_clear_errors() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let client = db.client().await?;

    // A Value that does not fit the parameter's type.
    let text = t("seven");
    let err = client
        .query_one("SELECT $1::integer", &[&Bind(&text)])
        .await
        .expect_err("text as integer");
    let msg = outpost_remote::error::describe(&err);
    assert!(
        msg.contains("a Text value cannot be sent as type int4"),
        "{msg}"
    );
    let bad_date = t("31/12/2024");
    let err = client
        .query_one("SELECT $1::date", &[&Bind(&bad_date)])
        .await
        .expect_err("bad date");
    let msg = outpost_remote::error::describe(&err);
    assert!(msg.contains("\"31/12/2024\" is not a valid date"), "{msg}");

    // Multi-dimensional arrays read as arrays of arrays; other lower
    // bounds are normalised to 1.
    let row = client
        .query_one("SELECT '{{1,2},{3,4}}'::int[], '[0:2]={7,8,9}'::int[]", &[])
        .await?;
    let PgValue(grid) = row.try_get(0)?;
    assert_eq!(
        grid,
        arr(vec![
            arr(vec![Value::Int(1), Value::Int(2)]),
            arr(vec![Value::Int(3), Value::Int(4)])
        ])
    );
    // A ragged one is refused before it reaches the server, naming why.
    let ragged = arr(vec![arr(vec![Value::Int(1)]), arr(vec![])]);
    let err = client
        .query_one("SELECT $1::int[]", &[&Bind(&ragged)])
        .await
        .expect_err("ragged array");
    let msg = outpost_remote::error::describe(&err);
    assert!(msg.contains("not rectangular"), "{msg}");
    let PgValue(v) = row.try_get(1)?;
    assert_eq!(v, arr(vec![Value::Int(7), Value::Int(8), Value::Int(9)]));

    // row_values names the column it could not read.
    let row = client
        .query_one("SELECT 1::int AS n, '0/16B6C50'::pg_lsn AS lsn", &[])
        .await?;
    let err = row_values(&row).expect_err("pg_lsn");
    assert!(matches!(&err, RemoteError::Value { column, .. } if column == "lsn"));
    assert!(
        err.to_string().contains("column \"lsn\" (type pg_lsn)"),
        "{err}"
    );
    let row = client
        .query_one(
            "SELECT 1::int AS n, NULL::text AS s, 'x'::varchar AS v",
            &[],
        )
        .await?;
    assert_eq!(row_values(&row)?, vec![Value::Int(1), Value::Null, t("x")]);
    Ok(())
}
