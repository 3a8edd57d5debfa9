//! The model service's queries give the same results on the replica
//! (SQLite) and on the server (PostgreSQL): a property test of random
//! `findMany`/`count` requests over the same random data on both, and
//! every write operation run on both with the same results, the same table
//! contents after, the same `written` rows, and nothing changed by a write
//! that fails.

use std::collections::BTreeMap;

use outpost_core::schema::{Schema, Table};
use outpost_core::types::{Value, format_timestamptz};
use outpost_local::Replica;
use outpost_local::value::to_sqlite;
use outpost_query::{Operation, QueryOutput, plan};
use outpost_remote::codec::Bind;
use outpost_remote::tokio_postgres::Client;
use outpost_remote::tokio_postgres::types::ToSql;
use outpost_testkit::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value as Json, json};

const DDL: &str = r#"
CREATE TABLE "User" (
    id text PRIMARY KEY,
    email text UNIQUE NOT NULL,
    name text,
    age int,
    score numeric(10,2),
    "createdAt" timestamptz NOT NULL,
    active boolean NOT NULL
);
CREATE TABLE "Post" (
    id int PRIMARY KEY,
    title text NOT NULL,
    views int NOT NULL,
    "userId" text NOT NULL REFERENCES "User"(id),
    "publishedAt" timestamptz
);
"#;

/// Texts with ties, case and Unicode variants, SQL metacharacters.
const WORDS: &[&str] = &[
    "alice",
    "Alice",
    "ALICE",
    "Émile",
    "émile",
    "ÉMILE",
    "Zoë",
    "zoë",
    "Ωmega",
    "ωmega",
    "bob",
    "Bob",
    "straße",
    "STRASSE",
    "İstanbul",
    "istanbul",
    "",
    " ",
    "  padded ",
    "a%b_c",
    "x'y\"z",
    "日本語",
    "emoji 🎉",
    "Ab",
    "aB",
    "ab",
    "b",
    "B",
    "zz",
    "Ärger",
    "ärger",
    "ÿ",
    "Ÿ",
];

/// Needles for text filters.
const NEEDLES: &[&str] = &[
    "a", "A", "al", "AL", "é", "É", "ice", "ICE", "", " ", "ß", "ss", "SS", "İ", "i", "Ω", "ω",
    "日本", "🎉", "%", "_", "'", "\"", "u0", "U0", "ü", "x.io", "X.IO", "Bob", "bob", "ab", "Ab",
    "zz", "ä", "Ä", "ÿ", "e", "z",
];

const INTS: &[i64] = &[
    -5,
    0,
    17,
    18,
    30,
    65,
    100,
    -100,
    2_147_483_647,
    -2_147_483_648,
    7,
];

const SCORES: &[&str] = &[
    "0",
    "1.5",
    "-1.50",
    "100",
    "-99999999.99",
    "12345.67",
    "0.01",
    "99999999.99",
    "-0.5",
    "7",
];

const TIMES: &[&str] = &[
    "1969-07-20T20:17:40Z",
    "1970-01-01T00:00:00Z",
    "2000-01-01T00:00:00+02:00",
    "1950-06-15T12:00:00.5Z",
    "2030-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999999Z",
];

/// A small deterministic generator for the data (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }
}

const FIXED_TIMES: &[i64] = &[
    -1_000_000_000_000_000,
    -946_684_800_000_000, // 1970-01-01
    0,
    123_456_789_012,
    -1,
];

fn timestamp(rng: &mut Rng) -> String {
    if rng.chance(30) {
        format_timestamptz(*rng.pick(FIXED_TIMES))
    } else {
        // 1920 … 2047, before and after 1970.
        format_timestamptz(rng.range(-2_524_608_000_000_000, 1_500_000_000_000_000))
    }
}

fn score(rng: &mut Rng) -> String {
    if rng.chance(30) {
        return rng
            .pick(&[
                "0.00",
                "1.50",
                "-1.50",
                "99999999.99",
                "-99999999.99",
                "12.00",
            ])
            .to_string();
    }
    let int = match rng.below(3) {
        0 => rng.below(10),
        1 => rng.below(100_000),
        _ => rng.below(100_000_000),
    };
    let frac = rng.below(100);
    let neg = rng.chance(40) && (int > 0 || frac > 0);
    format!("{}{int}.{frac:02}", if neg { "-" } else { "" })
}

struct Data {
    users: Vec<Vec<Value>>,
    posts: Vec<Vec<Value>>,
}

fn data(seed: u64) -> Data {
    let mut rng = Rng(seed);
    let mut users = Vec::new();
    for i in 0..40 {
        let id = format!("{}{i:02}", rng.pick(&["u", "U", "ü", "Ü", "a", "Z"]));
        let email = format!(
            "{}{i}@{}",
            rng.pick(&["alice", "Alice", "BOB", "bob", "Émile", "zoë"]),
            rng.pick(&["x.io", "X.IO", "ü.de"])
        );
        let name = if rng.chance(20) {
            Value::Null
        } else {
            Value::Text(rng.pick(WORDS).to_string())
        };
        let age = if rng.chance(25) {
            Value::Null
        } else if rng.chance(50) {
            Value::Int(*rng.pick(INTS))
        } else {
            Value::Int(rng.range(-100, 100))
        };
        let score = if rng.chance(20) {
            Value::Null
        } else {
            Value::Text(score(&mut rng))
        };
        users.push(vec![
            Value::Text(id),
            Value::Text(email),
            name,
            age,
            score,
            Value::Text(timestamp(&mut rng)),
            Value::Bool(rng.chance(50)),
        ]);
    }
    let mut posts = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    while posts.len() < 120 {
        let id = rng.range(-1000, 100_000);
        if !ids.insert(id) {
            continue;
        }
        let title = if rng.chance(70) {
            rng.pick(WORDS).to_string()
        } else {
            format!("{} {}", rng.pick(WORDS), rng.pick(WORDS))
        };
        let views = if rng.chance(50) {
            *rng.pick(&[-1i64, 0, 0, 5, 100, 2_147_483_647])
        } else {
            rng.range(-10, 1000)
        };
        let user = rng.pick(&users)[0].clone();
        let published = if rng.chance(30) {
            Value::Null
        } else {
            Value::Text(timestamp(&mut rng))
        };
        posts.push(vec![
            Value::Int(id),
            Value::Text(title),
            Value::Int(views),
            user,
            published,
        ]);
    }
    Data { users, posts }
}

/// A server database and a replica holding the same rows.
struct Env {
    _db: TestDb,
    client: Client,
    schema: Schema,
    replica: Replica,
}

fn no_fill(_: &Table, _: &mut BTreeMap<String, Value>) -> Result<(), String> {
    Ok(())
}

impl Env {
    async fn new(data: &Data) -> Env {
        let mut env = Env::with_ddl(DDL).await;
        env.insert("User", &data.users).await;
        env.insert("Post", &data.posts).await;
        env
    }

    /// Empty tables made by `ddl` on the server and in the replica.
    async fn with_ddl(ddl: &str) -> Env {
        let db = TestDb::new().await.expect("test db");
        let client = db.client().await.expect("client");
        client.batch_execute(ddl).await.expect("schema");
        let schema = outpost_remote::introspect(&client, "public", None, &[])
            .await
            .expect("introspect");
        let (replica, _) = Replica::setup(&db.sqlite_path, &schema).expect("replica");
        outpost_local::query::register_functions(replica.connection()).expect("functions");
        Env {
            _db: db,
            client,
            schema,
            replica,
        }
    }

    /// Inserts rows on the server and, with capture silenced, in the
    /// replica (as a pull would).
    async fn insert(&mut self, table: &str, rows: &[Vec<Value>]) {
        let t = self.schema.table(table).expect("table").clone();
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let pg = format!(
            "INSERT INTO \"{table}\" ({}) VALUES ({})",
            cols.join(", "),
            (1..=cols.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for row in rows {
            let binds: Vec<Bind<'_>> = row.iter().map(Bind).collect();
            let params: Vec<&(dyn ToSql + Sync)> =
                binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
            self.client
                .execute(&pg, &params)
                .await
                .expect("server insert");
        }
        let lite = format!(
            "INSERT INTO \"{table}\" ({}) VALUES ({})",
            cols.join(", "),
            vec!["?"; cols.len()].join(", ")
        );
        self.replica
            .apply_silenced(|tx| {
                for row in rows {
                    let values = row.iter().zip(&t.columns).map(|(v, c)| to_sqlite(v, &c.ty));
                    tx.execute(&lite, rusqlite::params_from_iter(values))
                        .map_err(outpost_local::LocalError::sqlite("test insert"))?;
                }
                Ok(())
            })
            .expect("replica insert");
    }

    fn local(
        &self,
        model: &str,
        op: &str,
        args: &Json,
        sync_status: bool,
    ) -> Result<QueryOutput, String> {
        let op: Operation = op.parse().map_err(|e| format!("{e}"))?;
        let plan = plan(&self.schema, model, op, args).map_err(|e| format!("plan: {e}"))?;
        outpost_local::query::run(
            self.replica.connection(),
            &self.schema,
            &plan,
            sync_status,
            &mut no_fill,
        )
        .map_err(|e| e.to_string())
    }

    async fn remote(&mut self, model: &str, op: &str, args: &Json) -> Result<QueryOutput, String> {
        let op: Operation = op.parse().map_err(|e| format!("{e}"))?;
        let plan = plan(&self.schema, model, op, args).map_err(|e| format!("plan: {e}"))?;
        if plan.is_write() {
            let tx = self.client.transaction().await.map_err(|e| e.to_string())?;
            let out = outpost_remote::query::run(&tx, &self.schema, &plan)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(out)
        } else {
            outpost_remote::query::run(&self.client, &self.schema, &plan)
                .await
                .map_err(|e| e.to_string())
        }
    }

    /// Runs a request on both sides and checks they agree; returns
    /// (local, remote).
    async fn both(&mut self, model: &str, op: &str, args: Json) -> (QueryOutput, QueryOutput) {
        let local = self.local(model, op, &args, false);
        let remote = self.remote(model, op, &args).await;
        let (local, remote) = match (local, remote) {
            (Ok(l), Ok(r)) => (l, r),
            (l, r) => panic!("{model}.{op} {args}: local {l:?}, remote {r:?}"),
        };
        assert_eq!(
            local.result, remote.result,
            "{model}.{op} {args}: results differ"
        );
        assert_eq!(
            local.written, remote.written,
            "{model}.{op} {args}: written rows differ"
        );
        (local, remote)
    }

    async fn server_rows(&self, table: &str) -> Vec<Vec<Value>> {
        let mut rows = outpost_remote::feed::all_rows(&self.client, &self.schema, table)
            .await
            .expect("server rows");
        rows.sort_by_key(|r| format!("{:?}", r[0]));
        rows
    }

    fn replica_rows(&self, table: &str) -> Vec<Vec<Value>> {
        let mut rows = self.replica.all_rows(table).expect("replica rows");
        rows.sort_by_key(|r| format!("{:?}", r[0]));
        rows
    }

    async fn tables_agree(&self) {
        self.tables_agree_for(&["User", "Post"]).await;
    }

    async fn tables_agree_for(&self, tables: &[&str]) {
        for t in tables.iter().copied() {
            assert_eq!(
                self.replica_rows(t),
                self.server_rows(t).await,
                "table {t} differs between replica and server"
            );
        }
    }
}

// ---- random requests ------------------------------------------------------

fn text_value() -> BoxedStrategy<Json> {
    prop_oneof![
        3 => prop::sample::select(NEEDLES).prop_map(|s| json!(s)),
        2 => prop::sample::select(WORDS).prop_map(|s| json!(s)),
    ]
    .boxed()
}

fn text_filter(nullable: bool) -> BoxedStrategy<Json> {
    let ops = prop::sample::select(vec![
        "equals",
        "not",
        "lt",
        "lte",
        "gt",
        "gte",
        "contains",
        "startsWith",
        "endsWith",
        "in",
        "notIn",
    ]);
    let one = (
        ops,
        text_value(),
        prop::collection::vec(text_value(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(op, v, list, insensitive)| {
            let mut m = serde_json::Map::new();
            let value = if op == "in" || op == "notIn" {
                json!(list)
            } else {
                v
            };
            m.insert(op.to_string(), value);
            if insensitive {
                m.insert("mode".into(), json!("insensitive"));
            }
            Json::Object(m)
        });
    let nested_not = (
        prop::sample::select(vec!["contains", "startsWith", "endsWith", "equals"]),
        text_value(),
        any::<bool>(),
    )
        .prop_map(|(op, v, insensitive)| {
            let mut inner = serde_json::Map::new();
            inner.insert(op.to_string(), v);
            if insensitive {
                json!({"not": Json::Object(inner), "mode": "insensitive"})
            } else {
                json!({"not": Json::Object(inner)})
            }
        });
    let mut options = vec![
        one.boxed(),
        nested_not.boxed(),
        text_value().boxed(),
        (text_value(), text_value())
            .prop_map(|(a, b)| json!({"gte": a, "lt": b}))
            .boxed(),
    ];
    if nullable {
        options.push(Just(Json::Null).boxed());
        options.push(Just(json!({"equals": null})).boxed());
        options.push(Just(json!({"not": null})).boxed());
    }
    prop::strategy::Union::new(options).boxed()
}

fn ordered_filter(values: Vec<Json>, nullable: bool) -> BoxedStrategy<Json> {
    let v = prop::sample::select(values);
    let ops = prop::sample::select(vec![
        "equals", "not", "lt", "lte", "gt", "gte", "in", "notIn",
    ]);
    let one = (ops, v.clone(), prop::collection::vec(v.clone(), 0..4)).prop_map(|(op, v, list)| {
        let value = if op == "in" || op == "notIn" {
            json!(list)
        } else {
            v
        };
        let mut m = serde_json::Map::new();
        m.insert(op.to_string(), value);
        Json::Object(m)
    });
    let mut options = vec![
        one.boxed(),
        v.clone().boxed(),
        (v.clone(), v.clone())
            .prop_map(|(a, b)| json!({"gt": a, "lte": b}))
            .boxed(),
        v.prop_map(|a| json!({"not": {"lt": a}})).boxed(),
    ];
    if nullable {
        options.push(Just(Json::Null).boxed());
        options.push(Just(json!({"not": null})).boxed());
    }
    prop::strategy::Union::new(options).boxed()
}

fn ints() -> Vec<Json> {
    INTS.iter().map(|i| json!(i)).collect()
}

fn scores() -> Vec<Json> {
    let mut v: Vec<Json> = SCORES.iter().map(|s| json!(s)).collect();
    v.push(json!(1.5));
    v.push(json!(-3));
    v
}

fn times() -> Vec<Json> {
    TIMES.iter().map(|s| json!(s)).collect()
}

fn user_leaf(ids: Vec<String>) -> BoxedStrategy<Json> {
    let ids: Vec<Json> = ids.into_iter().map(Json::String).collect();
    prop_oneof![
        text_filter(true).prop_map(|f| json!({"name": f})),
        text_filter(false).prop_map(|f| json!({"email": f})),
        ordered_filter(ids, false).prop_map(|f| json!({"id": f})),
        text_filter(false).prop_map(|f| json!({"id": f})),
        ordered_filter(ints(), true).prop_map(|f| json!({"age": f})),
        ordered_filter(scores(), true).prop_map(|f| json!({"score": f})),
        ordered_filter(times(), false).prop_map(|f| json!({"createdAt": f})),
        ordered_filter(vec![json!(true), json!(false)], false).prop_map(|f| json!({"active": f})),
    ]
    .boxed()
}

fn post_leaf(ids: Vec<i64>, user_ids: Vec<String>) -> BoxedStrategy<Json> {
    let ids: Vec<Json> = ids.into_iter().map(|i| json!(i)).collect();
    let user_ids: Vec<Json> = user_ids.into_iter().map(Json::String).collect();
    prop_oneof![
        text_filter(false).prop_map(|f| json!({"title": f})),
        ordered_filter(ids, false).prop_map(|f| json!({"id": f})),
        ordered_filter(ints(), false).prop_map(|f| json!({"views": f})),
        ordered_filter(user_ids, false).prop_map(|f| json!({"userId": f})),
        ordered_filter(times(), true).prop_map(|f| json!({"publishedAt": f})),
    ]
    .boxed()
}

fn combine(leaf: BoxedStrategy<Json>) -> BoxedStrategy<Json> {
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"AND": v})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"OR": v})),
            inner.clone().prop_map(|v| json!({"NOT": v})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"NOT": v})),
            (inner.clone(), inner).prop_map(|(a, b)| {
                // Two conditions in one object (AND), merged when the keys differ.
                let mut m = a.as_object().cloned().unwrap_or_default();
                for (k, v) in b.as_object().cloned().unwrap_or_default() {
                    m.entry(k).or_insert(v);
                }
                Json::Object(m)
            }),
        ]
    })
    .boxed()
}

fn order_by(fields: &'static [&'static str]) -> BoxedStrategy<Option<Json>> {
    let key = (
        prop::sample::select(fields),
        any::<bool>(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(f, desc, nulls)| {
            let dir = if desc { "desc" } else { "asc" };
            let mut m = serde_json::Map::new();
            match nulls {
                None => m.insert(f.to_string(), json!(dir)),
                Some(first) => m.insert(
                    f.to_string(),
                    json!({"sort": dir, "nulls": if first { "first" } else { "last" }}),
                ),
            };
            Json::Object(m)
        });
    prop_oneof![
        Just(None),
        key.clone().prop_map(Some),
        prop::collection::vec(key, 1..4).prop_map(|v| Some(json!(v))),
    ]
    .boxed()
}

const USER_ORDER: &[&str] = &["id", "email", "name", "age", "score", "createdAt", "active"];
const POST_ORDER: &[&str] = &["id", "title", "views", "userId", "publishedAt"];

fn page() -> BoxedStrategy<(Option<u64>, Option<u64>)> {
    (prop::option::of(0u64..12), prop::option::of(0u64..6)).boxed()
}

fn put(m: &mut serde_json::Map<String, Json>, key: &str, v: Option<Json>) {
    if let Some(v) = v {
        m.insert(key.into(), v);
    }
}

/// Nested `posts` arguments (for a user).
fn posts_arg(post_where: BoxedStrategy<Json>) -> BoxedStrategy<Json> {
    (
        prop::option::of(post_where),
        order_by(POST_ORDER),
        page(),
        any::<bool>(),
    )
        .prop_map(|(w, o, (take, skip), with_user)| {
            let mut m = serde_json::Map::new();
            put(&mut m, "where", w);
            put(&mut m, "orderBy", o);
            put(&mut m, "take", take.map(|t| json!(t)));
            put(&mut m, "skip", skip.map(|s| json!(s)));
            if with_user {
                m.insert("include".into(), json!({"user": true}));
            }
            if m.is_empty() {
                json!(true)
            } else {
                Json::Object(m)
            }
        })
        .boxed()
}

#[derive(Debug, Clone)]
struct Request {
    model: &'static str,
    args: Json,
}

fn user_request(
    user_ids: Vec<String>,
    emails: Vec<String>,
    post_where: BoxedStrategy<Json>,
) -> BoxedStrategy<Request> {
    let shape = prop_oneof![
        Just(None),
        Just(Some(("include", json!({"posts": true})))),
        posts_arg(post_where.clone()).prop_map(|p| Some(("include", json!({"posts": p})))),
        posts_arg(post_where).prop_map(|p| Some((
            "select",
            json!({"name": true, "score": true, "createdAt": true, "posts": p})
        ))),
        Just(Some(("select", json!({"id": true, "age": true})))),
    ];
    let cursor = prop_oneof![
        4 => Just(None),
        1 => prop::sample::select(user_ids.clone()).prop_map(|id| Some(json!({"id": id}))),
        1 => prop::sample::select(emails).prop_map(|e| Some(json!({"email": e}))),
        1 => Just(Some(json!({"id": "nobody"}))),
    ];
    (
        prop::option::of(combine(user_leaf(user_ids))),
        order_by(USER_ORDER),
        page(),
        cursor,
        shape,
    )
        .prop_map(|(w, o, (take, skip), cursor, shape)| {
            let mut m = serde_json::Map::new();
            put(&mut m, "where", w);
            put(&mut m, "orderBy", o);
            put(&mut m, "take", take.map(|t| json!(t)));
            put(&mut m, "skip", skip.map(|s| json!(s)));
            put(&mut m, "cursor", cursor);
            if let Some((k, v)) = shape {
                m.insert(k.into(), v);
            }
            Request {
                model: "User",
                args: Json::Object(m),
            }
        })
        .boxed()
}

fn post_request(post_ids: Vec<i64>, post_where: BoxedStrategy<Json>) -> BoxedStrategy<Request> {
    let shape = prop_oneof![
        Just(None),
        Just(Some(("include", json!({"user": true})))),
        Just(Some((
            "select",
            json!({"id": true, "title": true, "user": {"select": {"name": true, "email": true}}})
        ))),
        posts_arg(post_where.clone())
            .prop_map(|p| Some(("include", json!({"user": {"include": {"posts": p}}})))),
    ];
    let cursor = prop_oneof![
        4 => Just(None),
        2 => prop::sample::select(post_ids).prop_map(|id| Some(json!({"id": id}))),
        1 => Just(Some(json!({"id": 123_456_789}))),
    ];
    (
        prop::option::of(post_where),
        order_by(POST_ORDER),
        page(),
        cursor,
        shape,
    )
        .prop_map(|(w, o, (take, skip), cursor, shape)| {
            let mut m = serde_json::Map::new();
            put(&mut m, "where", w);
            put(&mut m, "orderBy", o);
            put(&mut m, "take", take.map(|t| json!(t)));
            put(&mut m, "skip", skip.map(|s| json!(s)));
            put(&mut m, "cursor", cursor);
            if let Some((k, v)) = shape {
                m.insert(k.into(), v);
            }
            Request {
                model: "Post",
                args: Json::Object(m),
            }
        })
        .boxed()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reads_agree() {
    // Fixed by default; OUTPOST_TEST_SEED=<n> explores other data and requests.
    let seed: u64 = std::env::var("OUTPOST_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let data = data(seed);
    let mut env = Env::new(&data).await;
    env.tables_agree().await;
    let user_ids: Vec<String> = data.users.iter().map(|u| text_of(&u[0])).collect();
    let emails: Vec<String> = data.users.iter().map(|u| text_of(&u[1])).collect();
    let post_ids: Vec<i64> = data
        .posts
        .iter()
        .map(|p| match p[0] {
            Value::Int(i) => i,
            _ => 0,
        })
        .collect();
    let post_where = combine(post_leaf(post_ids.clone(), user_ids.clone()));
    let requests = prop_oneof![
        user_request(user_ids, emails, post_where.clone()),
        post_request(post_ids, post_where),
    ];
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed.to_le_bytes(); 4].concat()),
    );
    let handle = tokio::runtime::Handle::current();
    let env = std::sync::Mutex::new(&mut env);
    let result = tokio::task::block_in_place(|| {
        runner.run(&requests, |req| {
            let mut env = env.lock().map_err(|e| TestCaseError::fail(e.to_string()))?;
            for op in ["findMany", "count", "findFirst"] {
                let args = if op == "count" {
                    // count takes where, orderBy and the page, not select/include.
                    let mut a = req.args.as_object().cloned().unwrap_or_default();
                    a.remove("select");
                    a.remove("include");
                    Json::Object(a)
                } else {
                    req.args.clone()
                };
                let local = env
                    .local(req.model, op, &args, false)
                    .map_err(|e| TestCaseError::fail(format!("local {op} {args}: {e}")))?;
                let remote = handle
                    .block_on(env.remote(req.model, op, &args))
                    .map_err(|e| TestCaseError::fail(format!("remote {op} {args}: {e}")))?;
                prop_assert_eq!(
                    &local.result,
                    &remote.result,
                    "{}.{} {} differs",
                    req.model,
                    op,
                    args
                );
                prop_assert!(local.written.is_empty() && remote.written.is_empty());
                if std::env::var_os("OUTPOST_TEST_SHOW").is_some() {
                    eprintln!("{}.{op} {args}\n  => {}", req.model, local.result);
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---- fixed requests -------------------------------------------------------

fn small_data() -> Data {
    let t = |s: &str| Value::Text(s.into());
    let users = vec![
        vec![
            t("u1"),
            t("ann@x.io"),
            t("Ann"),
            Value::Int(31),
            t("10.50"),
            t("1969-07-20T20:17:40.000000Z"),
            Value::Bool(true),
        ],
        vec![
            t("u2"),
            t("bob@x.io"),
            Value::Null,
            Value::Null,
            t("-2.25"),
            t("2024-01-01T00:00:00.000000Z"),
            Value::Bool(false),
        ],
        vec![
            t("u3"),
            t("émile@x.io"),
            t("Émile"),
            Value::Int(31),
            Value::Null,
            t("1999-12-31T23:59:59.999999Z"),
            Value::Bool(true),
        ],
    ];
    let post = |id: i64, title: &str, views: i64, user: &str, published: Option<&str>| {
        vec![
            Value::Int(id),
            t(title),
            Value::Int(views),
            t(user),
            published.map_or(Value::Null, t),
        ]
    };
    let posts = vec![
        post(1, "Hello", 10, "u1", Some("2020-05-05T05:05:05.000000Z")),
        post(2, "hello again", 3, "u1", None),
        post(3, "Mars", 0, "u2", Some("1960-01-01T00:00:00.000000Z")),
        post(4, "Moon", 7, "u2", None),
        post(5, "Über", 7, "u3", None),
    ];
    Data { users, posts }
}

#[tokio::test]
async fn count_and_find_unique() {
    let mut env = Env::new(&small_data()).await;
    let (out, _) = env.both("Post", "count", json!({})).await;
    assert_eq!(out.result, json!(5));
    let (out, _) = env
        .both("Post", "count", json!({"where": {"views": {"gte": 7}}}))
        .await;
    assert_eq!(out.result, json!(3));
    let (out, _) = env
        .both(
            "Post",
            "count",
            json!({"where": {"views": {"gte": 7}}, "take": 2}),
        )
        .await;
    assert_eq!(out.result, json!(2));

    let (out, _) = env
        .both(
            "User",
            "findUnique",
            json!({"where": {"email": "émile@x.io"}, "include": {"posts": true}}),
        )
        .await;
    assert_eq!(out.result["id"], json!("u3"));
    assert_eq!(out.result["posts"][0]["title"], json!("Über"));
    let (out, _) = env
        .both("User", "findUnique", json!({"where": {"id": "nobody"}}))
        .await;
    assert_eq!(out.result, Json::Null);
    let (out, _) = env
        .both(
            "Post",
            "findUnique",
            json!({"where": {"id": {"equals": 3}}, "select": {"title": true, "user": {"select": {"email": true}}}}),
        )
        .await;
    assert_eq!(
        out.result,
        json!({"title": "Mars", "user": {"email": "bob@x.io"}})
    );

    // Numeric filters and order by value, not text.
    let (out, _) = env
        .both(
            "User",
            "findMany",
            json!({"where": {"score": {"lt": "10.5"}}, "orderBy": {"score": "desc"}, "select": {"id": true, "score": true}}),
        )
        .await;
    assert_eq!(out.result, json!([{"id": "u2", "score": "-2.25"}]));
    let (out, _) = env
        .both(
            "User",
            "findMany",
            json!({"orderBy": [{"score": "asc"}], "select": {"id": true}}),
        )
        .await;
    assert_eq!(
        out.result,
        json!([{"id": "u2"}, {"id": "u1"}, {"id": "u3"}])
    );

    // Case-sensitive by default, insensitive on request (Unicode too).
    let (out, _) = env
        .both(
            "Post",
            "count",
            json!({"where": {"title": {"startsWith": "hello"}}}),
        )
        .await;
    assert_eq!(out.result, json!(1));
    let (out, _) = env
        .both(
            "Post",
            "count",
            json!({"where": {"title": {"startsWith": "HELLO", "mode": "insensitive"}}}),
        )
        .await;
    assert_eq!(out.result, json!(2));
    let (out, _) = env
        .both(
            "Post",
            "findMany",
            json!({"where": {"title": {"contains": "ÜB", "mode": "insensitive"}}, "select": {"id": true}}),
        )
        .await;
    assert_eq!(out.result, json!([{"id": 5}]));

    // A where that names no unique key is refused, naming model and fields.
    let err = env
        .local(
            "User",
            "findUnique",
            &json!({"where": {"name": "Ann"}}),
            false,
        )
        .unwrap_err();
    assert_eq!(
        err,
        "plan: User.findUnique: where must name exactly the primary key or a unique constraint of User (id | email); got {name}"
    );
    let err = env
        .local("Post", "findMany", &json!({"where": {"titel": "x"}}), false)
        .unwrap_err();
    assert!(
        err.starts_with("plan: unknown field \"titel\" on model Post (fields: id, title, views, userId, publishedAt, user)"),
        "{err}"
    );
}

#[tokio::test]
async fn writes_agree() {
    let mut env = Env::new(&small_data()).await;
    // create, with a relation included, and a value rounded to numeric(10,2).
    let (out, _) = env
        .both(
            "Post",
            "create",
            json!({"data": {"id": 10, "title": "Créé", "views": 1, "userId": "u2", "publishedAt": "2024-02-29T12:00:00+01:00"}, "include": {"user": true}}),
        )
        .await;
    assert_eq!(
        out.result["publishedAt"],
        json!("2024-02-29T11:00:00.000000Z")
    );
    assert_eq!(out.result["user"]["email"], json!("bob@x.io"));
    assert_eq!(out.written.len(), 1);
    assert_eq!(out.written[0].pk, vec![Value::Int(10)]);
    assert!(out.written[0].values.is_some());
    env.tables_agree().await;

    let (out, _) = env
        .both(
            "User",
            "create",
            json!({"data": {"id": "u9", "email": "new@x.io", "score": "12.345", "createdAt": "1901-01-01T00:00:00Z", "active": true}, "select": {"id": true, "score": true, "posts": true}}),
        )
        .await;
    assert_eq!(
        out.result,
        json!({"id": "u9", "score": "12.35", "posts": []})
    );
    env.tables_agree().await;

    // createMany, then again with duplicates skipped.
    let (out, _) = env
        .both(
            "Post",
            "createMany",
            json!({"data": [
                {"id": 11, "title": "M1", "views": 0, "userId": "u9"},
                {"id": 12, "title": "M2", "views": 4, "userId": "u9"},
                {"id": 13, "title": "N3", "views": 8, "userId": "u1"}
            ]}),
        )
        .await;
    assert_eq!(out.result, json!({"count": 3}));
    assert_eq!(out.written.len(), 3);
    let (out, _) = env
        .both(
            "Post",
            "createMany",
            json!({"data": [{"id": 11, "title": "dup", "views": 0, "userId": "u9"}, {"id": 14, "title": "M4", "views": 2, "userId": "u3"}], "skipDuplicates": true}),
        )
        .await;
    assert_eq!(out.result, json!({"count": 1}));
    let (out, _) = env
        .both(
            "User",
            "createMany",
            json!({"data": [{"id": "u10", "email": "ann@x.io", "createdAt": "2001-01-01T00:00:00Z", "active": false}, {"id": "u11", "email": "u11@x.io", "createdAt": "2001-01-01T00:00:00Z", "active": false}], "skipDuplicates": true}),
        )
        .await;
    assert_eq!(
        out.result,
        json!({"count": 1}),
        "the duplicate email is skipped"
    );
    env.tables_agree().await;

    // update with arithmetic and set.
    let (out, _) = env
        .both(
            "Post",
            "update",
            json!({"where": {"id": 10}, "data": {"views": {"increment": 5}, "title": {"set": "Éditée"}}, "include": {"user": {"select": {"id": true}}}}),
        )
        .await;
    assert_eq!(out.result["views"], json!(6));
    assert_eq!(out.result["user"], json!({"id": "u2"}));
    let (out, _) = env
        .both(
            "User",
            "update",
            json!({"where": {"email": "bob@x.io"}, "data": {"score": "-1.005", "name": "Bob"}}),
        )
        .await;
    assert_eq!(out.result["score"], json!("-1.01"));
    env.tables_agree().await;

    // updateMany, including an empty one.
    let (out, _) = env
        .both(
            "Post",
            "updateMany",
            json!({"where": {"views": {"lt": 5}}, "data": {"views": {"multiply": 2}}}),
        )
        .await;
    assert_eq!(out.result, json!({"count": 5}));
    let (out, _) = env
        .both(
            "Post",
            "updateMany",
            json!({"where": {"title": {"startsWith": "M"}}, "data": {}}),
        )
        .await;
    assert_eq!(out.result, json!({"count": 5}));
    assert!(out.written.is_empty());
    env.tables_agree().await;

    // A key change reports the old key as gone.
    let (out, _) = env
        .both(
            "Post",
            "update",
            json!({"where": {"id": 13}, "data": {"id": 130}}),
        )
        .await;
    assert_eq!(out.written.len(), 2);
    assert_eq!(out.written[0].pk, vec![Value::Int(13)]);
    assert_eq!(out.written[0].values, None);
    assert_eq!(out.written[1].pk, vec![Value::Int(130)]);
    env.tables_agree().await;

    // upsert: creates, then updates.
    let upsert = json!({
        "where": {"id": "u20"},
        "create": {"id": "u20", "email": "u20@x.io", "age": 5, "createdAt": "2010-10-10T10:10:10Z", "active": true},
        "update": {"age": {"increment": 1}},
        "include": {"posts": true}
    });
    let (out, _) = env.both("User", "upsert", upsert.clone()).await;
    assert_eq!(out.result["age"], json!(5));
    let (out, _) = env.both("User", "upsert", upsert).await;
    assert_eq!(out.result["age"], json!(6));
    env.tables_agree().await;

    // delete returns the record as it was; deleteMany counts.
    let (out, _) = env
        .both(
            "Post",
            "delete",
            json!({"where": {"id": 10}, "include": {"user": true}}),
        )
        .await;
    assert_eq!(out.result["title"], json!("Éditée"));
    assert_eq!(out.written.len(), 1);
    assert_eq!(out.written[0].values, None);
    let (out, _) = env
        .both(
            "Post",
            "deleteMany",
            json!({"where": {"OR": [{"title": {"startsWith": "M"}}, {"userId": "u9"}]}}),
        )
        .await;
    assert_eq!(out.result, json!({"count": 5}));
    assert_eq!(out.written.len(), 5);
    env.tables_agree().await;

    // Missing records are errors naming model and key, on both sides.
    let local = env
        .local(
            "Post",
            "update",
            &json!({"where": {"id": 999}, "data": {"views": 1}}),
            false,
        )
        .unwrap_err();
    let remote = env
        .remote(
            "Post",
            "update",
            &json!({"where": {"id": 999}, "data": {"views": 1}}),
        )
        .await
        .unwrap_err();
    assert_eq!(local, "record to update not found: Post where {\"id\":999}");
    assert_eq!(remote, local);
    let local = env
        .local("Post", "delete", &json!({"where": {"id": 999}}), false)
        .unwrap_err();
    assert_eq!(local, "record to delete not found: Post where {\"id\":999}");
    env.tables_agree().await;
}

#[tokio::test]
async fn failing_writes_change_nothing() {
    let mut env = Env::new(&small_data()).await;
    let before_users = env.server_rows("User").await;
    let before_posts = env.server_rows("Post").await;
    let pending_before = env.replica.dirty_rows().expect("dirty").len();

    // The second row's email is taken: a unique violation.
    let args = json!({"data": [
        {"id": "u7", "email": "u7@x.io", "createdAt": "2001-01-01T00:00:00Z", "active": true},
        {"id": "u8", "email": "bob@x.io", "createdAt": "2001-01-01T00:00:00Z", "active": true}
    ]});
    let local = env.local("User", "createMany", &args, false).unwrap_err();
    assert_eq!(
        local,
        "unique constraint failed on User(email): [\"bob@x.io\"] already exists"
    );
    let remote = env.remote("User", "createMany", &args).await.unwrap_err();
    assert!(remote.contains("23505"), "{remote}");

    // A duplicate key inside one batch.
    let args = json!({"data": [
        {"id": 20, "title": "a", "views": 0, "userId": "u1"},
        {"id": 20, "title": "b", "views": 0, "userId": "u1"}
    ]});
    assert!(env.local("Post", "createMany", &args, false).is_err());
    assert!(env.remote("Post", "createMany", &args).await.is_err());

    // An update that would duplicate an email.
    let args = json!({"where": {"id": "u1"}, "data": {"email": "bob@x.io"}});
    assert!(env.local("User", "update", &args, false).is_err());
    assert!(env.remote("User", "update", &args).await.is_err());

    // Arithmetic beyond int4.
    let args = json!({"where": {"id": 1}, "data": {"views": {"increment": 2147483647}}});
    assert!(env.local("Post", "update", &args, false).is_err());
    assert!(env.remote("Post", "update", &args).await.is_err());

    assert_eq!(env.server_rows("User").await, before_users);
    assert_eq!(env.server_rows("Post").await, before_posts);
    assert_eq!(env.replica_rows("User"), before_users);
    assert_eq!(env.replica_rows("Post"), before_posts);
    assert_eq!(
        env.replica.dirty_rows().expect("dirty").len(),
        pending_before,
        "no local change was recorded"
    );
}

#[tokio::test]
async fn records_carry_their_sync_status() {
    let env = Env::new(&small_data()).await;
    let out = env
        .local(
            "User",
            "findMany",
            &json!({"where": {"id": "u1"}, "include": {"posts": {"orderBy": {"id": "asc"}}}}),
            true,
        )
        .expect("read");
    assert_eq!(out.result[0]["syncStatus"], json!("SYNCED"));
    assert_eq!(out.result[0]["posts"][0]["syncStatus"], json!("SYNCED"));

    let created = env
        .local(
            "Post",
            "create",
            &json!({"data": {"id": 50, "title": "local", "views": 0, "userId": "u1"}, "include": {"user": true}}),
            true,
        )
        .expect("create");
    assert_eq!(created.result["syncStatus"], json!("PENDING"));
    assert_eq!(created.result["user"]["syncStatus"], json!("SYNCED"));
    // The key order: columns, then syncStatus, then relations.
    let keys: Vec<&String> = created.result.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "title",
            "views",
            "userId",
            "publishedAt",
            "syncStatus",
            "user"
        ]
    );

    env.local(
        "User",
        "update",
        &json!({"where": {"id": "u1"}, "data": {"name": "Ann B."}}),
        false,
    )
    .expect("update");
    let out = env
        .local(
            "User",
            "findMany",
            &json!({"where": {"id": "u1"}, "include": {"posts": {"orderBy": {"id": "asc"}}}}),
            true,
        )
        .expect("read");
    assert_eq!(out.result[0]["syncStatus"], json!("PENDING"));
    let statuses: Vec<&Json> = out.result[0]["posts"]
        .as_array()
        .expect("posts")
        .iter()
        .map(|p| &p["syncStatus"])
        .collect();
    assert_eq!(
        statuses,
        [&json!("SYNCED"), &json!("SYNCED"), &json!("PENDING")]
    );
    // Without sync_status, no such field.
    let out = env
        .local("Post", "findFirst", &json!({"where": {"id": 50}}), false)
        .expect("read");
    assert!(out.result.get("syncStatus").is_none());
    let dirty = env.replica.dirty_rows().expect("dirty");
    assert_eq!(dirty.len(), 2, "the create and the update were captured");
}

// ---- the types beyond the basic ones --------------------------------------

const TYPES_DDL: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE DOMAIN year AS integer CHECK (VALUE BETWEEN 1901 AND 2155);
CREATE TABLE "Thing" (
    id int PRIMARY KEY,
    yr year, ci citext, ip inet, net cidr, mac macaddr, mac8 macaddr8,
    ttz timetz, cash money, b4 bit(4), vb varbit, doc xml, o oid,
    r4 int4range, rd daterange, rtz tstzrange, mr4 int4multirange,
    tsv tsvector, tsq tsquery, pt point, ln line, seg lseg, bx box,
    pth path, pg polygon, circ circle, grid int[][]
);
"#;

/// Each new type through the model service on both databases: created from
/// its JSON form (in a looser spelling the replica normalises like the
/// server), read back the same on both, and found by equality on both.
#[tokio::test]
async fn new_types_create_read_and_filter_alike() {
    let mut env = Env::with_ddl(TYPES_DDL).await;
    // (column, value as written, value as read back: the canonical form)
    let cases: Vec<(&str, Json, Json)> = vec![
        ("yr", json!(1999), json!(1999)),
        ("ci", json!("Alice"), json!("Alice")),
        ("ip", json!("2001:DB8:0::1/64"), json!("2001:db8::1/64")),
        ("net", json!("10.0.0.0/8"), json!("10.0.0.0/8")),
        (
            "mac",
            json!("08-00-2B-01-02-03"),
            json!("08:00:2b:01:02:03"),
        ),
        (
            "mac8",
            json!("08:00:2b:01:02:03:04:05"),
            json!("08:00:2b:01:02:03:04:05"),
        ),
        ("ttz", json!("12:30+02"), json!("12:30:00.000000+02:00")),
        ("cash", json!("12.5"), json!("12.50")),
        ("b4", json!("1010"), json!("1010")),
        ("vb", json!("101"), json!("101")),
        ("doc", json!("<a>x</a>"), json!("<a>x</a>")),
        ("o", json!(4_000_000_000u32), json!(4_000_000_000u32)),
        ("r4", json!("[1,5]"), json!("[1,6)")),
        (
            "rd",
            json!("(2024-01-01,2024-02-01]"),
            json!("[2024-01-02,2024-02-02)"),
        ),
        (
            "rtz",
            json!("[2024-01-01T00:00:00+02:00,)"),
            json!("[2023-12-31T22:00:00.000000Z,)"),
        ),
        ("mr4", json!("{[1,3),[5,7)}"), json!("{[1,3),[5,7)}")),
        ("tsv", json!("'cat':1A 'hat':2"), json!("'cat':1A 'hat':2")),
        ("tsq", json!("'cat' & 'hat'"), json!("'cat' & 'hat'")),
        ("pt", json!("(1, 2.5)"), json!("(1,2.5)")),
        ("ln", json!("{1,-1,0}"), json!("{1,-1,0}")),
        ("seg", json!("[(0,0),(1,1)]"), json!("[(0,0),(1,1)]")),
        ("bx", json!("(0,0),(2,2)"), json!("(2,2),(0,0)")),
        (
            "pth",
            json!("[(0,0),(1,1),(2,0)]"),
            json!("[(0,0),(1,1),(2,0)]"),
        ),
        (
            "pg",
            json!("((0,0),(1,1),(2,0))"),
            json!("((0,0),(1,1),(2,0))"),
        ),
        ("circ", json!("<(1,2),3>"), json!("<(1,2),3>")),
        (
            "grid",
            json!([[1, 2], [3, null]]),
            json!([[1, 2], [3, null]]),
        ),
    ];
    for (i, (col, written, _)) in cases.iter().enumerate() {
        let id = i as i64 + 1;
        let (local, remote) = env
            .both(
                "Thing",
                "create",
                json!({"data": {"id": id, *col: written}}),
            )
            .await;
        let _ = (local, remote);
    }
    env.tables_agree_for(&["Thing"]).await;
    for (i, (col, _, read)) in cases.iter().enumerate() {
        let id = i as i64 + 1;
        let (local, _) = env
            .both("Thing", "findUnique", json!({"where": {"id": id}}))
            .await;
        assert_eq!(local.result[*col], *read, "{col} read back");
        // Equality finds the row on both databases, from either spelling.
        if *col == "grid" {
            continue; // arrays have no equality filter
        }
        for probe in [&cases[i].1, read] {
            let (local, _) = env
                .both(
                    "Thing",
                    "findMany",
                    json!({"where": {*col: probe}, "select": {"id": true}}),
                )
                .await;
            assert_eq!(local.result, json!([{"id": id}]), "{col} = {probe}");
        }
        let (local, _) = env
            .both(
                "Thing",
                "count",
                json!({"where": {*col: {"in": [read], "not": read}}}),
            )
            .await;
        assert_eq!(local.result, json!(0), "{col} in/not");
    }
    // citext compares ASCII case-insensitively on both; ordering is refused
    // for a type the replica cannot order like the server.
    let (local, _) = env
        .both(
            "Thing",
            "findMany",
            json!({"where": {"ci": "ALICE"}, "select": {"id": true}}),
        )
        .await;
    assert_eq!(local.result, json!([{"id": 2}]));
    let err = env.local(
        "Thing",
        "findMany",
        &json!({"where": {"ip": {"gt": "10.0.0.1"}}}),
        false,
    );
    assert!(
        err.as_ref().is_err_and(|e| e.contains("no common order")),
        "{err:?}"
    );
    // A value the type does not accept is refused before either database.
    let err = env.local(
        "Thing",
        "create",
        &json!({"data": {"id": 99, "mac": "nope"}}),
        false,
    );
    assert!(
        err.as_ref().is_err_and(|e| e.contains("not a MAC address")),
        "{err:?}"
    );
}
