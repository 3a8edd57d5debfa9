//! Typed reads: `find_many::<T>` (and `find_first`, `find_unique`) with a
//! user struct gives what `serde_json::from_value::<T>` gives for the JSON
//! records, on the replica and on the server, and a value of the wrong type
//! is an error, not a panic; reads serialized from their rows
//! (`run_output`, the HTTP API's path) give the records' JSON text.

mod common;

use common::*;
use outpost_core::sync::Direction;
use outpost_engine::{EngineError, Mode, ModelService, NodeOptions, Operation, Outpost};
use outpost_testkit::TestDb;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

const DDL: &str = r#"
CREATE TYPE "Mood" AS ENUM ('happy', 'sad');
CREATE TABLE "User" (
    id text PRIMARY KEY,
    email text NOT NULL,
    name text,
    big bigint,
    small bigint,
    score numeric(10,2),
    "createdAt" timestamptz,
    avatar bytea,
    meta jsonb,
    mood "Mood",
    tags text[],
    ratio double precision
);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, views int NOT NULL,
  "userId" text NOT NULL REFERENCES "User"(id));
INSERT INTO "User" VALUES
  ('u1', 'u1@x', 'One', 9007199254740993, -5, 12.5, '2024-02-03 04:05:06.789+00', '\x00ff10',
   '{"a": [1, null, 2.5], "b": "x"}', 'happy', '{x,NULL,"y z"}', 'NaN'),
  ('u2', 'u2@x', NULL, NULL, 7, NULL, NULL, NULL, 'null', 'sad', '{}', -0.5),
  ('u3', 'u3@x', 'Three', -9007199254740993, NULL, -0.01, '1969-07-20 20:17:40+00', '\x', '[1, "two"]',
   NULL, NULL, 'Infinity');
INSERT INTO "Post" VALUES ('p1', 'first', 10, 'u1'), ('p2', 'second', 0, 'u1'), ('p3', 'third', 3, 'u2');
"#;

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mood {
    Happy,
    Sad,
}

#[derive(Debug, PartialEq, Deserialize)]
struct User {
    id: String,
    email: String,
    name: Option<String>,
    big: Option<Json>,
    small: Option<i64>,
    score: Option<String>,
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
    avatar: Option<String>,
    meta: Option<Json>,
    mood: Option<Mood>,
    tags: Option<Vec<Option<String>>>,
    ratio: Option<Json>,
    #[serde(rename = "syncStatus")]
    sync_status: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Post {
    id: String,
    title: String,
    views: i64,
    #[serde(rename = "userId")]
    user_id: String,
    user: User,
    #[serde(rename = "syncStatus")]
    sync_status: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct PostTitle {
    title: String,
}

#[derive(Debug, PartialEq, Deserialize)]
struct UserPosts {
    id: String,
    big: Option<Json>,
    posts: Vec<PostTitle>,
}

/// Any JSON, but not `serde_json::Value` itself: read through the rows.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(transparent)]
struct AnyJson(Json);

/// `find_many::<T>` against `from_value` of `find_many::<Json>`.
async fn same_many<T: DeserializeOwned + PartialEq + std::fmt::Debug + 'static>(
    model: &ModelService,
    args: Json,
) -> anyhow::Result<Vec<T>> {
    let json: Vec<Json> = model.find_many(args.clone()).await?;
    let expected: Vec<T> = json
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?;
    let typed: Vec<T> = model.find_many(args.clone()).await?;
    assert_eq!(typed, expected, "{args}");
    Ok(typed)
}

async fn same_one<T: DeserializeOwned + PartialEq + std::fmt::Debug + 'static>(
    model: &ModelService,
    args: Json,
) -> anyhow::Result<Option<T>> {
    let first: Option<Json> = model.find_first(args.clone()).await?;
    let expected: Option<T> = first.map(serde_json::from_value).transpose()?;
    let typed: Option<T> = model.find_first(args.clone()).await?;
    assert_eq!(typed, expected, "findFirst {args}");
    Ok(typed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_reads_equal_the_json_records_on_both_databases() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema) = server(&db, DDL).await?;
    let node = Outpost::open_with(
        runtime_config(&db, "typed", sync_addr(&db)?, &[])?,
        NodeOptions {
            monitor: false,
            ..NodeOptions::default()
        },
    )
    .await?;
    node.sync(Direction::Bidirectional).await?;
    let posts = node.model("Post")?;
    let users = node.model("User")?;
    for mode in [Mode::Local, Mode::Remote] {
        node.set_mode(mode).await;
        if mode == Mode::Local {
            // A row with local changes: its syncStatus is PENDING.
            let _: Json = posts
                .create(json!({"data": {"id": "p4", "title": "local", "views": 1, "userId": "u3"}}))
                .await?;
        }
        let found: Vec<Post> = same_many(
            &posts,
            json!({"include": {"user": true}, "orderBy": {"id": "asc"}}),
        )
        .await?;
        assert!(found.len() >= 3, "{mode:?}");
        let u1 = &found[0].user;
        assert_eq!(u1.big, Some(json!("9007199254740993")));
        assert_eq!(u1.small, Some(-5));
        assert_eq!(u1.score.as_deref(), Some("12.50"));
        assert_eq!(
            u1.created_at.as_deref(),
            Some("2024-02-03T04:05:06.789000Z")
        );
        assert_eq!(u1.avatar.as_deref(), Some("AP8Q"));
        assert_eq!(u1.meta, Some(json!({"a": [1, null, 2.5], "b": "x"})));
        assert_eq!(u1.mood, Some(Mood::Happy));
        assert_eq!(
            u1.tags,
            Some(vec![Some("x".into()), None, Some("y z".into())])
        );
        assert_eq!(u1.ratio, Some(json!("NaN")));
        assert_eq!(found[2].user.meta, None, "jsonb null reads as None");
        if mode == Mode::Local {
            assert_eq!(found[0].sync_status.as_deref(), Some("SYNCED"));
            assert_eq!(found[3].sync_status.as_deref(), Some("PENDING"));
        } else {
            assert_eq!(found[0].sync_status, None);
        }

        // To-many with select, a select of a few fields, filters.
        let with_posts: Vec<UserPosts> = same_many(
            &users,
            json!({"select": {"id": true, "big": true, "posts": {"select": {"title": true}, "orderBy": {"id": "desc"}}},
                   "orderBy": {"id": "asc"}}),
        )
        .await?;
        assert_eq!(with_posts[0].posts.len(), 2);
        assert_eq!(with_posts[2].big, Some(json!("-9007199254740993")));
        same_many::<PostTitle>(
            &posts,
            json!({"select": {"title": true}, "where": {"views": {"gt": 1}}}),
        )
        .await?;
        same_many::<User>(&users, json!({"where": {"id": "nobody"}})).await?;

        // Whatever the JSON records hold, in the same order.
        for args in [
            json!({"include": {"user": true}, "orderBy": {"id": "asc"}}),
            json!({"include": {"posts": {"include": {"user": true}}}}),
        ] {
            let model = if args["include"]["user"].is_boolean() {
                &posts
            } else {
                &users
            };
            let json: Vec<Json> = model.find_many(args.clone()).await?;
            let any: Vec<AnyJson> = model.find_many(args.clone()).await?;
            assert_eq!(any.len(), json.len());
            for (a, j) in any.iter().zip(&json) {
                assert_eq!(a.0.to_string(), j.to_string(), "{mode:?} {args}");
            }
        }

        // Serialized from the rows (the HTTP API's path): the same text.
        for (model, op, args) in [
            (
                &posts,
                Operation::FindMany,
                json!({"include": {"user": true}, "orderBy": {"id": "asc"}}),
            ),
            (
                &users,
                Operation::FindMany,
                json!({"include": {"posts": {"include": {"user": true}}}}),
            ),
            (
                &posts,
                Operation::FindFirst,
                json!({"where": {"id": "p3"}, "include": {"user": true}}),
            ),
            (
                &users,
                Operation::FindUnique,
                json!({"where": {"id": "nobody"}}),
            ),
            (&users, Operation::Count, json!({})),
        ] {
            let json = model.run(op, args.clone()).await?;
            let written = serde_json::to_string(&model.run_output(op, args.clone()).await?)?;
            assert_eq!(written, json.to_string(), "{mode:?} {op} {args}");
        }

        // One record, or none.
        let one: Option<Post> = same_one(
            &posts,
            json!({"where": {"id": "p2"}, "include": {"user": true}}),
        )
        .await?;
        assert_eq!(one.map(|p| p.user.id), Some("u1".into()));
        let none: Option<Post> = same_one(&posts, json!({"where": {"id": "zz"}})).await?;
        assert_eq!(none, None);
        let unique: Option<UserPosts> = users
            .find_unique(
                json!({"where": {"id": "u2"}, "select": {"id": true, "big": true, "posts": true}}),
            )
            .await?;
        assert_eq!(unique.map(|u| u.posts.len()), Some(1));

        // The wrong type: an error saying where, not a panic.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            id: String,
            views: String,
        }
        let err = posts
            .find_many::<Wrong>(json!({"orderBy": {"id": "asc"}}))
            .await
            .expect_err("views is a number");
        assert!(matches!(err, EngineError::Query(_)), "{err}");
        assert!(
            err.to_string()
                .contains("[0].views: invalid type: integer `10`, expected a string"),
            "{err}"
        );
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct NeedsName {
            name: String,
        }
        let err = users
            .find_many::<NeedsName>(json!({"orderBy": {"id": "asc"}}))
            .await
            .expect_err("u2 has no name");
        assert!(
            err.to_string()
                .contains("[1].name: invalid type: null, expected a string"),
            "{err}"
        );
    }
    node.shutdown().await;
    Ok(())
}
