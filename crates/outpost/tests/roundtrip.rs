//! The value mapping loses nothing: random values of every supported type go
//! PostgreSQL → SQLite replica → PostgreSQL and come back equal, compared both
//! as outpost values and as PostgreSQL's own text rendering of the rows.

use outpost_core::schema::Table;
use outpost_core::types::{
    Interval, USECS_PER_DAY, Value, format_date, format_time, format_timestamp, format_timestamptz,
};
use outpost_local::value::{from_sqlite, to_sqlite};
use outpost_remote::codec::{Bind, PgValue};
use outpost_remote::tokio_postgres::types::ToSql;
use outpost_testkit::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Every supported type, as (column, PostgreSQL type).
const COLUMNS: &[(&str, &str)] = &[
    ("b", "boolean"),
    ("i2", "smallint"),
    ("i4", "integer"),
    ("i8", "bigint"),
    ("f4", "real"),
    ("f8", "double precision"),
    ("num", "numeric"),
    ("num122", "numeric(12,2)"),
    ("txt", "text"),
    ("vc", "varchar(40)"),
    ("ch", "char(5)"),
    ("u", "uuid"),
    ("d", "date"),
    ("t", "time"),
    ("ts", "timestamp"),
    ("tstz", "timestamptz"),
    ("iv", "interval"),
    ("js", "json"),
    ("jsb", "jsonb"),
    ("by", "bytea"),
    ("mood", "\"Mood\""),
    ("a_txt", "text[]"),
    ("a_i8", "bigint[]"),
    ("a_f8", "double precision[]"),
    ("a_num", "numeric[]"),
    ("a_b", "boolean[]"),
    ("a_u", "uuid[]"),
    ("a_tstz", "timestamptz[]"),
    ("a_d", "date[]"),
    ("a_by", "bytea[]"),
    ("a_jsb", "jsonb[]"),
    ("a_mood", "\"Mood\"[]"),
];

const MOODS: &[&str] = &["happy", "sad", "so-so", "it's \"fine\"", "ünïcødé"];

fn text_strategy() -> BoxedStrategy<String> {
    // Any Unicode but NUL, which PostgreSQL text cannot hold.
    "[^\u{0}]{0,24}".boxed()
}

fn float8() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
    ]
    // -0.0 is the documented exception (see docs/types.md); tested below.
    .prop_map(|f| if f == 0.0 { 0.0 } else { f })
    .boxed()
}

fn float4() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(f32::MAX),
        proptest::num::f32::NORMAL | proptest::num::f32::SUBNORMAL,
    ]
    .prop_map(|f| f as f64)
    .boxed()
}

fn numeric(max_int: usize, max_frac: usize) -> BoxedStrategy<String> {
    let digits = prop::collection::vec(0u8..10, 1..=max_int);
    let frac = prop::collection::vec(0u8..10, 0..=max_frac);
    prop_oneof![
        1 => Just("NaN".to_string()),
        20 => (any::<bool>(), digits, frac).prop_map(|(neg, i, f)| {
            let text = |d: Vec<u8>| d.into_iter().map(|d| char::from(b'0' + d)).collect::<String>();
            let (i, f) = (text(i), text(f));
            let s = if f.is_empty() { i } else { format!("{i}.{f}") };
            if neg { format!("-{s}") } else { s }
        }),
    ]
    .boxed()
}

fn timestamp() -> BoxedStrategy<i64> {
    prop_oneof![
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        // 4713 BC … 294276 AD: PostgreSQL's whole range.
        10 => -211_813_488_000_000_000i64..9_223_371_331_200_000_000i64,
        // Around 1970 and after 2100, where bugs like to hide.
        5 => -1_000_000_000_000_000i64..4_000_000_000_000_000i64,
    ]
    .boxed()
}

fn date() -> BoxedStrategy<i32> {
    prop_oneof![1 => Just(i32::MAX), 1 => Just(i32::MIN), 10 => -2_451_545i32..100_000_000].boxed()
}

fn json_value() -> BoxedStrategy<serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(serde_json::Value::from),
        (-1e12f64..1e12).prop_map(serde_json::Value::from),
        text_strategy().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn nullable(s: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![1 => Just(Value::Null), 6 => s].boxed()
}

fn array(s: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop::collection::vec(nullable(s), 0..5)
        .prop_map(Value::Array)
        .boxed()
}

fn uuid() -> BoxedStrategy<Value> {
    any::<[u8; 16]>()
        .prop_map(|b| Value::Text(uuid::Uuid::from_bytes(b).hyphenated().to_string()))
        .boxed()
}

fn row() -> impl Strategy<Value = Vec<Value>> {
    let tstz = timestamp()
        .prop_map(|us| Value::Text(format_timestamptz(us)))
        .boxed();
    let d = date().prop_map(|d| Value::Text(format_date(d))).boxed();
    let bytes = prop::collection::vec(any::<u8>(), 0..32)
        .prop_map(Value::Bytes)
        .boxed();
    let jsonb = json_value()
        .prop_map(|j| Value::Json(j.to_string()))
        .boxed();
    let mood = prop::sample::select(MOODS)
        .prop_map(|m| Value::Text(m.to_string()))
        .boxed();
    let num = numeric(30, 12).prop_map(Value::Text).boxed();
    let scalars =
        (
            (
                nullable(any::<bool>().prop_map(Value::Bool)),
                nullable(any::<i16>().prop_map(|i| Value::Int(i as i64))),
                nullable(any::<i32>().prop_map(|i| Value::Int(i as i64))),
                nullable(
                    prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()].prop_map(Value::Int),
                ),
                nullable(float4().prop_map(Value::Float)),
                nullable(float8().prop_map(Value::Float)),
                nullable(num.clone()),
                nullable(numeric(10, 2).prop_map(Value::Text)),
            ),
            (
                nullable(text_strategy().prop_map(Value::Text)),
                nullable("[^\u{0}]{0,40}".prop_map(Value::Text)),
                nullable("[a-zé ]{0,5}".prop_map(Value::Text)),
                nullable(uuid()),
                nullable(d.clone()),
                nullable((0..=USECS_PER_DAY).prop_map(|t| Value::Text(format_time(t)))),
                nullable(timestamp().prop_map(|us| Value::Text(format_timestamp(us)))),
                nullable(tstz.clone()),
            ),
            (
                nullable(
                    (
                        any::<i32>(),
                        any::<i32>(),
                        -9_000_000_000_000_000_000i64..9_000_000_000_000_000_000,
                    )
                        .prop_map(|(months, days, micros)| {
                            Value::Text(
                                Interval {
                                    months,
                                    days,
                                    micros,
                                }
                                .to_string(),
                            )
                        }),
                ),
                nullable(json_value().prop_map(|j| {
                    Value::Json(serde_json::to_string_pretty(&j).unwrap_or_default())
                })),
                nullable(jsonb.clone()),
                nullable(bytes.clone()),
                nullable(mood.clone()),
            ),
        );
    let arrays = (
        nullable(array(text_strategy().prop_map(Value::Text))),
        nullable(array(any::<i64>().prop_map(Value::Int))),
        nullable(array(float8().prop_map(Value::Float))),
        nullable(array(num)),
        nullable(array(any::<bool>().prop_map(Value::Bool))),
        nullable(array(uuid())),
        nullable(array(tstz)),
        nullable(array(d)),
        nullable(array(bytes)),
        nullable(array(jsonb)),
        nullable(array(mood)),
    );
    (scalars, arrays).prop_map(|((a, b, c), arr)| {
        let mut v = vec![a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7];
        v.extend([b.0, b.1, b.2, b.3, b.4, b.5, b.6, b.7]);
        v.extend([c.0, c.1, c.2, c.3, c.4]);
        v.extend([
            arr.0, arr.1, arr.2, arr.3, arr.4, arr.5, arr.6, arr.7, arr.8, arr.9, arr.10,
        ]);
        v
    })
}

fn create_sql(table: &str, columns: &[(&str, &str)]) -> String {
    let cols: Vec<String> = columns.iter().map(|(c, t)| format!("{c} {t}")).collect();
    format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, {})",
        cols.join(", ")
    )
}

struct Harness {
    columns: &'static [(&'static str, &'static str)],
    client: outpost_remote::tokio_postgres::Client,
    table: Table,
    sqlite: rusqlite::Connection,
    insert_src: outpost_remote::tokio_postgres::Statement,
    insert_back: outpost_remote::tokio_postgres::Statement,
}

impl Harness {
    async fn new(db: &TestDb) -> anyhow::Result<Harness> {
        Harness::with(db, COLUMNS, "").await
    }

    /// A harness over `columns`, after the DDL `prelude` (types, domains,
    /// extensions they need).
    async fn with(
        db: &TestDb,
        columns: &'static [(&'static str, &'static str)],
        prelude: &str,
    ) -> anyhow::Result<Harness> {
        let client = db.client().await?;
        client.batch_execute(prelude).await?;
        let labels: Vec<String> = MOODS
            .iter()
            .map(|m| format!("'{}'", m.replace('\'', "''")))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE TYPE \"Mood\" AS ENUM ({}); {}; {};",
                labels.join(", "),
                create_sql("src", columns),
                create_sql("back", columns)
            ))
            .await?;
        let schema =
            outpost_remote::introspect(&client, "public", Some(&["src".to_string()]), &[]).await?;
        let table = schema
            .table("src")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("src not introspected"))?;
        let sqlite = rusqlite::Connection::open(&db.sqlite_path)?;
        sqlite.execute_batch(&outpost_core::sqlite::create_table(&table))?;
        let placeholders: Vec<String> = (1..=columns.len() + 1).map(|i| format!("${i}")).collect();
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let insert = |t: &str| {
            format!(
                "INSERT INTO {t} (id, {}) VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            )
        };
        let insert_src = client.prepare(&insert("src")).await?;
        let insert_back = client.prepare(&insert("back")).await?;
        Ok(Harness {
            columns,
            client,
            table,
            sqlite,
            insert_src,
            insert_back,
        })
    }

    async fn read(&self, table: &str, id: i32) -> anyhow::Result<Vec<Value>> {
        let names: Vec<&str> = self.columns.iter().map(|(c, _)| *c).collect();
        let row = self
            .client
            .query_one(
                &format!("SELECT id, {} FROM {table} WHERE id = $1", names.join(", ")),
                &[&id],
            )
            .await?;
        (1..row.len())
            .map(|i| {
                row.try_get::<_, PgValue>(i)
                    .map(|v| v.0)
                    .map_err(anyhow::Error::from)
            })
            .collect()
    }

    /// One value set through the whole trip; returns what came back.
    async fn trip(&self, id: i32, values: &[Value]) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
        let id_val = Value::Int(id as i64);
        let binds: Vec<Bind<'_>> = std::iter::once(&id_val).chain(values).map(Bind).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        self.client.execute(&self.insert_src, &params).await?;
        let from_pg = self.read("src", id).await?;

        // Into the replica, in the storage form the replica uses, and back.
        let cols = &self.table.columns[1..];
        let stored: Vec<rusqlite::types::Value> =
            std::iter::once(rusqlite::types::Value::Integer(id as i64))
                .chain(from_pg.iter().zip(cols).map(|(v, c)| to_sqlite(v, &c.ty)))
                .collect();
        let qs: Vec<&str> = stored.iter().map(|_| "?").collect();
        self.sqlite.execute(
            &format!("INSERT INTO src VALUES ({})", qs.join(", ")),
            rusqlite::params_from_iter(stored.iter()),
        )?;
        let from_sqlite: Vec<Value> =
            self.sqlite
                .query_row("SELECT * FROM src WHERE id = ?1", [id], |r| {
                    cols.iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let raw = r.get_ref(i + 1)?;
                            from_sqlite(raw, &c.ty, &c.name)
                                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
                        })
                        .collect::<rusqlite::Result<Vec<Value>>>()
                })?;

        let binds: Vec<Bind<'_>> = std::iter::once(&id_val)
            .chain(&from_sqlite)
            .map(Bind)
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        self.client.execute(&self.insert_back, &params).await?;
        let back = self.read("back", id).await?;
        Ok((from_pg, back))
    }

    /// PostgreSQL's own rendering of both rows must agree.
    async fn same_in_postgres(&self, id: i32) -> anyhow::Result<bool> {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|(c, _)| format!("{c}::text"))
            .collect();
        let sql = format!(
            "SELECT (SELECT ROW({cols})::text FROM src WHERE id = $1) = (SELECT ROW({cols})::text FROM back WHERE id = $1)",
            cols = names.join(", ")
        );
        Ok(self.client.query_one(&sql, &[&id]).await?.get(0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_postgres_sqlite_postgres() {
    let db = TestDb::new().await.expect("test db");
    let h = Harness::new(&db).await.expect("harness");
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    let next_id = std::sync::atomic::AtomicI32::new(0);
    let result = tokio::task::block_in_place(|| {
        runner.run(&row(), |values| {
            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let (from_pg, back) = handle
                .block_on(h.trip(id, &values))
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            prop_assert_eq!(&back, &from_pg, "outpost values differ after the trip");
            let same = handle
                .block_on(h.same_in_postgres(id))
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            prop_assert!(
                same,
                "PostgreSQL renders row {} differently after the trip",
                id
            );
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test]
async fn edge_values_round_trip() {
    let db = TestDb::new().await.expect("test db");
    let h = Harness::new(&db).await.expect("harness");
    let n = COLUMNS.len();
    let col = |name: &str| {
        COLUMNS
            .iter()
            .position(|(c, _)| *c == name)
            .unwrap_or(usize::MAX)
    };
    let cases: Vec<Vec<(&str, Value)>> = vec![
        vec![
            ("f8", Value::Float(f64::NAN)),
            ("f4", Value::Float(f64::INFINITY)),
            ("num", Value::Text("NaN".into())),
        ],
        vec![
            ("f8", Value::Float(f64::NEG_INFINITY)),
            (
                "num",
                Value::Text("123456789012345678901234567890.123456789".into()),
            ),
        ],
        vec![
            ("i8", Value::Int(i64::MIN)),
            ("i2", Value::Int(i16::MIN as i64)),
            ("num122", Value::Text("-9999999999.99".into())),
        ],
        vec![
            ("i8", Value::Int(i64::MAX)),
            ("i4", Value::Int(i32::MAX as i64)),
        ],
        vec![
            ("tstz", Value::Text("1969-12-31T23:59:59.999999Z".into())),
            ("d", Value::Text("1900-02-28".into())),
        ],
        vec![
            ("tstz", Value::Text("2262-04-11T23:47:16.854775Z".into())),
            ("ts", Value::Text("infinity".into())),
        ],
        vec![
            ("tstz", Value::Text("-infinity".into())),
            ("d", Value::Text("-4713-11-24".into())),
        ],
        vec![
            ("t", Value::Text("24:00:00.000000".into())),
            ("iv", Value::Text("P-14M3DT-3723.000005S".into())),
        ],
        vec![
            ("a_txt", Value::Array(vec![])),
            (
                "a_i8",
                Value::Array(vec![Value::Null, Value::Int(1), Value::Null]),
            ),
        ],
        vec![
            (
                "txt",
                Value::Text("日本語 🎉 \"quoted\" 'single' \\ back".into()),
            ),
            ("by", Value::Bytes(vec![0, 1, 2, 255])),
        ],
        vec![
            (
                "jsb",
                Value::Json("{\"a\": [1, 2.5, null, \"x\"], \"b\": {\"c\": true}}".into()),
            ),
            ("js", Value::Json(" [1,  {\"k\":\"v\", \"k\": 2}] ".into())),
        ],
        vec![(
            "a_txt",
            Value::Array(vec![
                Value::Text("".into()),
                Value::Text("NULL".into()),
                Value::Text("a,b{c}\"".into()),
            ]),
        )],
        // Found by the property test: the JSON document `null` inside an
        // array is not SQL NULL.
        vec![
            (
                "a_jsb",
                Value::Array(vec![Value::Json("null".into()), Value::Null]),
            ),
            ("jsb", Value::Json("null".into())),
        ],
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let mut values = vec![Value::Null; n];
        for (name, v) in case {
            values[col(name)] = v;
        }
        let id = 1000 + i as i32;
        let (from_pg, back) = h.trip(id, &values).await.expect("trip");
        assert_eq!(back, from_pg, "case {i}");
        assert!(h.same_in_postgres(id).await.expect("compare"), "case {i}");
        // What went in is what PostgreSQL holds (canonical forms in, canonical out).
        for (j, v) in values.iter().enumerate() {
            if !v.is_null() {
                assert_eq!(&from_pg[j], v, "case {i}, column {}", COLUMNS[j].0);
            }
        }
    }
    // The documented exception: the sign of a float zero.
    let mut values = vec![Value::Null; n];
    values[col("f8")] = Value::Float(-0.0);
    let (_, back) = h.trip(2000, &values).await.expect("trip");
    match back[col("f8")] {
        Value::Float(f) => assert!(f == 0.0, "{f}"),
        ref other => panic!("{other:?}"),
    }
    // The `json` type keeps its exact text through the trip.
    let js: String = h
        .client
        .query_one("SELECT js::text FROM back WHERE id = 1010", &[])
        .await
        .expect("json text")
        .get(0);
    assert_eq!(js, " [1,  {\"k\":\"v\", \"k\": 2}] ");
}

// ---- the types beyond the basic ones --------------------------------------

/// Domains (nested, arrays of them), `citext`, network, `timetz`, `money`,
/// bit strings, `xml`, `oid`, ranges and multiranges, text search, the
/// geometric types and multi-dimensional arrays.
const MORE_COLUMNS: &[(&str, &str)] = &[
    ("yr", "year"),
    ("recent", "recent_year"),
    ("a_yr", "year[]"),
    ("mail", "email"),
    ("ci", "citext"),
    ("ip", "inet"),
    ("net", "cidr"),
    ("mac", "macaddr"),
    ("mac8", "macaddr8"),
    ("ttz", "timetz"),
    ("cash", "money"),
    ("b8", "bit(8)"),
    ("vb", "varbit"),
    ("doc", "xml"),
    ("o", "oid"),
    ("r4", "int4range"),
    ("r8", "int8range"),
    ("rn", "numrange"),
    ("rd", "daterange"),
    ("rts", "tsrange"),
    ("rtz", "tstzrange"),
    ("mr4", "int4multirange"),
    ("mrtz", "tstzmultirange"),
    ("tsv", "tsvector"),
    ("tsq", "tsquery"),
    ("pt", "point"),
    ("ln", "line"),
    ("seg", "lseg"),
    ("bx", "box"),
    ("pth", "path"),
    ("pg", "polygon"),
    ("ci_", "circle"),
    ("m_i4", "integer[][]"),
    ("m_txt", "text[][][]"),
    ("a_ip", "inet[]"),
    ("a_tsv", "tsvector[]"),
    ("a_r4", "int4range[]"),
];

const MORE_PRELUDE: &str = "CREATE EXTENSION IF NOT EXISTS citext; \
    CREATE DOMAIN year AS integer CHECK (VALUE BETWEEN 1901 AND 2155); \
    CREATE DOMAIN recent_year AS year CHECK (VALUE >= 2000); \
    CREATE DOMAIN email AS citext CHECK (VALUE LIKE '%@%');";

fn finite() -> BoxedStrategy<f64> {
    prop_oneof![
        proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
        (-1000i32..1000).prop_map(|i| i as f64 / 4.0),
    ]
    .boxed()
}

fn geo(kind: outpost_core::forms::Geometry, n: std::ops::Range<usize>) -> BoxedStrategy<Value> {
    use outpost_core::forms::{Geometry, format_geometry};
    (prop::collection::vec(finite(), n), any::<bool>())
        .prop_map(move |(mut nums, closed)| {
            match kind {
                // A line needs a or b non-zero; a circle a radius >= 0.
                // (PostgreSQL takes |x| < 1e-6 for zero.)
                Geometry::Line if nums[0].abs() < 1e-5 => nums[0] = 1.0,
                Geometry::Circle => nums[2] = nums[2].abs(),
                Geometry::Path | Geometry::Polygon if !nums.len().is_multiple_of(2) => {
                    nums.pop();
                }
                _ => {}
            }
            if matches!(kind, Geometry::Path | Geometry::Polygon) && nums.is_empty() {
                nums = vec![0.0, 0.0];
            }
            Value::Text(format_geometry(kind, closed, &nums))
        })
        .boxed()
}

/// A range text over sorted `bounds` formatted by `fmt`.
fn range_of<T: std::fmt::Debug + Ord + Clone + 'static>(
    bounds: impl Strategy<Value = T> + Clone + 'static,
    fmt: fn(T) -> String,
) -> BoxedStrategy<String> {
    use outpost_core::forms::{Range, RangeBound};
    prop_oneof![
        1 => Just(Range::Empty.to_text()),
        8 => (bounds.clone(), bounds, any::<[bool; 4]>()).prop_map(move |(a, b, [li, ui, lu, uu])| {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let bound = |v: T, inclusive: bool, unbounded: bool| {
                (!unbounded).then(|| RangeBound { value: fmt(v), inclusive })
            };
            Range::Bounds {
                lower: bound(lo, li, lu),
                upper: bound(hi, ui, uu),
            }
            .to_text()
        }),
    ]
    .boxed()
}

fn ts_lexeme() -> BoxedStrategy<String> {
    "[a-zé'\\\\]{1,6}".boxed()
}

fn tsquery() -> BoxedStrategy<outpost_core::forms::TsQuery> {
    use outpost_core::forms::TsQuery;
    let leaf =
        (ts_lexeme(), 0u8..16, any::<bool>()).prop_map(|(text, weights, prefix)| TsQuery::Lexeme {
            text,
            weights,
            prefix,
        });
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|q| TsQuery::Not(Box::new(q))),
            (inner.clone(), inner.clone())
                .prop_map(|(l, r)| TsQuery::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| TsQuery::Or(Box::new(l), Box::new(r))),
            (inner.clone(), inner, 0i16..20).prop_map(|(l, r, d)| TsQuery::Phrase(
                Box::new(l),
                Box::new(r),
                d
            )),
        ]
    })
    .boxed()
}

fn tsvector() -> BoxedStrategy<Value> {
    prop::collection::vec(
        (ts_lexeme(), prop::collection::vec(1u16..0xFFFF, 0..4)),
        0..5,
    )
    .prop_map(|entries| {
        // Position 0 is not a position: PostgreSQL refuses it.
        let entries: Vec<(String, Vec<u16>)> = entries
            .into_iter()
            .map(|(l, ps)| (l, ps.into_iter().filter(|p| p & 0x3FFF != 0).collect()))
            .collect();
        Value::Text(outpost_core::forms::format_tsvector(&entries))
    })
    .boxed()
}

fn grid(s: impl Strategy<Value = Value> + Clone + 'static, dims: usize) -> BoxedStrategy<Value> {
    // Rectangular: every sub-array of a level has the same length.
    (
        prop::collection::vec(1usize..3, dims),
        prop::collection::vec(nullable(s), 64),
    )
        .prop_map(|(lens, pool)| {
            let mut it = pool.into_iter().cycle();
            fn build(lens: &[usize], it: &mut impl Iterator<Item = Value>) -> Value {
                match lens {
                    [] => it.next().unwrap_or(Value::Null),
                    [n, rest @ ..] => Value::Array((0..*n).map(|_| build(rest, it)).collect()),
                }
            }
            build(&lens, &mut it)
        })
        .boxed()
}

fn more_row() -> impl Strategy<Value = Vec<Value>> {
    use outpost_core::forms::{
        Geometry, Inet, format_mac, format_money, format_multirange, format_timetz,
    };
    let inet = (any::<bool>(), any::<[u8; 16]>(), any::<u8>())
        .prop_map(|(v4, bytes, bits)| {
            let (octets, max) = if v4 {
                (&bytes[..4], 32)
            } else {
                (&bytes[..], 128)
            };
            let bits = bits % (max + 1);
            Inet::from_octets(octets, bits)
                .map(|i| i.to_text(false))
                .unwrap_or_default()
        })
        .boxed();
    let cidr = (any::<bool>(), any::<[u8; 16]>(), any::<u8>())
        .prop_map(|(v4, mut bytes, bits)| {
            let max = if v4 { 32u8 } else { 128 };
            let bits = bits % (max + 1);
            for (i, b) in bytes.iter_mut().enumerate() {
                let kept = (bits as usize).saturating_sub(i * 8).min(8);
                *b &= if kept == 0 { 0 } else { 0xFFu8 << (8 - kept) };
            }
            let octets = if v4 { &bytes[..4] } else { &bytes[..] };
            Inet::from_octets(octets, bits)
                .map(|i| i.to_text(true))
                .unwrap_or_default()
        })
        .boxed();
    let r4 = range_of(any::<i32>(), |i| i.to_string());
    let rtz = range_of(
        -211_813_488_000_000_000i64..9_223_371_331_200_000_000i64,
        format_timestamptz,
    );
    let bits = |n: std::ops::Range<usize>| {
        prop::collection::vec(any::<bool>(), n)
            .prop_map(|b| {
                b.into_iter()
                    .map(|x| if x { '1' } else { '0' })
                    .collect::<String>()
            })
            .boxed()
    };
    let t = |s: BoxedStrategy<String>| nullable(s.prop_map(Value::Text));
    (
        (
            nullable((1901i64..=2155).prop_map(Value::Int)),
            nullable((2000i64..=2155).prop_map(Value::Int)),
            nullable(array((1901i64..=2155).prop_map(Value::Int))),
            t("[a-zA-Z]{1,8}@[a-zA-Zé]{1,8}".boxed()),
            t(text_strategy()),
            t(inet.clone()),
            t(cidr),
            t(any::<[u8; 6]>().prop_map(|m| format_mac(&m)).boxed()),
            t(any::<[u8; 8]>().prop_map(|m| format_mac(&m)).boxed()),
            t((0..=USECS_PER_DAY, -57_599i32..=57_599)
                .prop_map(|(us, z)| format_timetz(us, z))
                .boxed()),
            t(any::<i64>().prop_map(format_money).boxed()),
            t(bits(8..9)),
        ),
        (
            t(bits(0..20)),
            t("[a-zA-Z0-9 ]{0,12}"
                .prop_map(|s| format!("<a x=\"1\">{s}<b/></a>"))
                .boxed()),
            nullable(any::<u32>().prop_map(|o| Value::Int(o.into()))),
            t(r4.clone()),
            t(range_of(any::<i64>(), |i| i.to_string())),
            t(range_of(any::<i64>(), format_money)),
            t(range_of(-2_451_545i32..100_000_000, format_date)),
            t(range_of(
                -211_813_488_000_000_000i64..9_223_371_331_200_000_000i64,
                format_timestamp,
            )),
            t(rtz.clone()),
            t(
                prop::collection::vec(range_of(any::<i32>(), |i| i.to_string()), 0..4)
                    .prop_map(|rs| {
                        let parsed: Vec<_> = rs
                            .iter()
                            .filter_map(|r| outpost_core::forms::Range::parse(r))
                            .collect();
                        format_multirange(&parsed)
                    })
                    .boxed(),
            ),
            t(prop::collection::vec(rtz, 0..3)
                .prop_map(|rs| {
                    let parsed: Vec<_> = rs
                        .iter()
                        .filter_map(|r| outpost_core::forms::Range::parse(r))
                        .collect();
                    format_multirange(&parsed)
                })
                .boxed()),
            nullable(tsvector()),
        ),
        (
            t(tsquery().prop_map(|q| q.to_text()).boxed()),
            nullable(geo(Geometry::Point, 2..3)),
            nullable(geo(Geometry::Line, 3..4)),
            nullable(geo(Geometry::Lseg, 4..5)),
            nullable(geo(Geometry::Box, 4..5)),
            nullable(geo(Geometry::Path, 2..9)),
            nullable(geo(Geometry::Polygon, 2..9)),
            nullable(geo(Geometry::Circle, 3..4)),
            nullable(grid(any::<i32>().prop_map(|i| Value::Int(i.into())), 2)),
            nullable(grid(text_strategy().prop_map(Value::Text), 3)),
            nullable(array(inet.prop_map(Value::Text))),
            nullable(array(tsvector())),
        ),
        nullable(array(r4.prop_map(Value::Text))),
    )
        .prop_map(|(a, b, c, d)| {
            let mut v = vec![a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7, a.8, a.9, a.10, a.11];
            v.extend([b.0, b.1, b.2, b.3, b.4, b.5, b.6, b.7, b.8, b.9, b.10, b.11]);
            v.extend([c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8, c.9, c.10, c.11]);
            v.push(d);
            v
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_types_round_trip_postgres_sqlite_postgres() {
    let db = TestDb::new().await.expect("test db");
    let h = Harness::with(&db, MORE_COLUMNS, MORE_PRELUDE)
        .await
        .expect("harness");
    // Domains keep their name in the model and replicate as their base.
    let col = |n: &str| h.table.column(n).expect("column").ty.clone();
    assert_eq!(col("recent").domain.as_deref(), Some("recent_year"));
    assert_eq!(col("recent").scalar, outpost_core::ScalarType::Int4);
    assert_eq!(col("a_yr").domain.as_deref(), Some("year"));
    assert!(col("a_yr").array);
    assert_eq!(col("mail").scalar, outpost_core::ScalarType::Citext);
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let next_id = std::sync::atomic::AtomicI32::new(0);
    let result = tokio::task::block_in_place(|| {
        runner.run(&more_row(), |values| {
            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let (from_pg, back) = handle
                .block_on(h.trip(id, &values))
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            prop_assert_eq!(&back, &from_pg, "outpost values differ after the trip");
            let same = handle
                .block_on(h.same_in_postgres(id))
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            prop_assert!(
                same,
                "PostgreSQL renders row {} differently after the trip",
                id
            );
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test]
async fn more_types_hold_their_canonical_forms() {
    let db = TestDb::new().await.expect("test db");
    let h = Harness::with(&db, MORE_COLUMNS, MORE_PRELUDE)
        .await
        .expect("harness");
    let n = MORE_COLUMNS.len();
    let col = |name: &str| {
        MORE_COLUMNS
            .iter()
            .position(|(c, _)| *c == name)
            .unwrap_or(usize::MAX)
    };
    let text = |s: &str| Value::Text(s.to_string());
    let cases: Vec<Vec<(&str, Value)>> = vec![
        vec![
            ("ip", text("192.168.1.5/24")),
            ("net", text("10.0.0.0/8")),
            ("mac", text("08:00:2b:01:02:03")),
            ("ttz", text("12:34:56.789000+05:30")),
            ("cash", text("-92233720368547758.08")),
            ("b8", text("10100101")),
            ("vb", text("")),
            ("o", Value::Int(u32::MAX.into())),
        ],
        vec![
            ("ip", text("2001:db8::1")),
            ("r4", text("[1,5)")),
            ("rtz", text("(,2020-01-01T00:00:00.000000Z]")),
            ("mr4", text("{[1,3),[5,7)}")),
            ("rd", text("empty")),
            ("tsv", text("'cat':1A,4 'it''s'")),
            ("tsq", text("'a':*AB & !( 'b' | 'c' )")),
        ],
        vec![
            ("pt", text("(1.5,-2)")),
            ("bx", text("(1,1),(0,0)")),
            ("pth", text("[(0,0),(1,1),(2,0)]")),
            ("pg", text("((0,0),(1,1),(2,0))")),
            ("ci_", text("<(1,2),3>")),
            ("ln", text("{1,-1,0}")),
            ("seg", text("[(0,0),(1e300,-1e-300)]")),
        ],
        vec![
            (
                "m_i4",
                Value::Array(vec![
                    Value::Array(vec![Value::Int(1), Value::Null]),
                    Value::Array(vec![Value::Int(3), Value::Int(4)]),
                ]),
            ),
            (
                "a_tsv",
                Value::Array(vec![text("'a' 'b':2"), Value::Null, text("")]),
            ),
            ("a_r4", Value::Array(vec![text("[1,2)"), text("empty")])),
            ("yr", Value::Int(1999)),
            ("mail", text("Someone@Example.org")),
        ],
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let mut values = vec![Value::Null; n];
        for (name, v) in case {
            values[col(name)] = v;
        }
        let id = 1000 + i as i32;
        let (from_pg, back) = h.trip(id, &values).await.expect("trip");
        assert_eq!(back, from_pg, "case {i}");
        assert!(h.same_in_postgres(id).await.expect("compare"), "case {i}");
        for (j, v) in values.iter().enumerate() {
            if !v.is_null() {
                assert_eq!(&from_pg[j], v, "case {i}, column {}", MORE_COLUMNS[j].0);
            }
        }
    }
    // The server enforces the domains' checks.
    let mut values = vec![Value::Null; n];
    values[col("recent")] = Value::Int(1950);
    let err = h.trip(2000, &values).await.expect_err("domain check");
    assert!(format!("{err:#}").contains("recent_year"), "{err:#}");
}
