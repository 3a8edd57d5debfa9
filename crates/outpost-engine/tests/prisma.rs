//! The application's Prisma schema: a database migrated the way `prisma
//! migrate` writes it (quoted snake_case tables and columns, `TIMESTAMP(3)`,
//! `TEXT` ids, a mapped enum), used through Prisma's names with the values
//! Prisma's client would fill, on the server and offline on the replica.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use outpost_core::sync::Direction;
use outpost_engine::{Mode, NodeOptions, Outpost};
use outpost_testkit::TestDb;
use serde_json::{Value as Json, json};

/// What `prisma migrate dev` writes for `SCHEMA` (its migration.sql, as
/// Prisma 5–7 generate it).
const MIGRATION: &str = r#"
CREATE TYPE "role" AS ENUM ('USER', 'admin');
CREATE TABLE "users" (
    "id" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT,
    "role" "role" NOT NULL DEFAULT 'USER',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "posts" (
    "id" TEXT NOT NULL,
    "title" TEXT NOT NULL,
    "published" BOOLEAN NOT NULL DEFAULT false,
    "author_id" TEXT NOT NULL,
    "editor_id" TEXT,
    "published_at" TIMESTAMP(3),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "posts_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Tag" (
    "id" SERIAL NOT NULL,
    "label" TEXT NOT NULL,
    CONSTRAINT "Tag_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "tokens" (
    "id" TEXT NOT NULL,
    "ref" UUID NOT NULL,
    "code" TEXT NOT NULL,
    "short" TEXT NOT NULL,
    "day" DATE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "tokens_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "users_email_key" ON "users"("email");
CREATE UNIQUE INDEX "Tag_label_key" ON "Tag"("label");
CREATE INDEX "posts_author_id_idx" ON "posts"("author_id");
ALTER TABLE "posts" ADD CONSTRAINT "posts_author_id_fkey" FOREIGN KEY ("author_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "posts" ADD CONSTRAINT "posts_editor_id_fkey" FOREIGN KEY ("editor_id") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;
"#;

const SCHEMA: &str = r#"
generator client {
  provider = "prisma-client-js"
}

datasource db {
  provider = "postgresql"
}

enum Role {
  USER
  ADMIN @map("admin")

  @@map("role")
}

model User {
  id        String   @id @default(cuid())
  email     String   @unique
  name      String?
  role      Role     @default(USER)
  createdAt DateTime @default(now()) @map("created_at")
  updatedAt DateTime @updatedAt @map("updated_at")
  articles  Post[]   @relation("Authored")
  edits     Post[]   @relation("Edited")

  @@map("users")
}

model Post {
  id          String    @id @default(uuid())
  title       String
  published   Boolean   @default(false)
  authorId    String    @map("author_id")
  writtenBy   User      @relation("Authored", fields: [authorId], references: [id], onDelete: Cascade)
  editorId    String?   @map("editor_id")
  editedBy    User?     @relation("Edited", fields: [editorId], references: [id])
  publishedAt DateTime? @map("published_at")
  createdAt   DateTime  @default(now()) @map("created_at")
  updatedAt   DateTime  @updatedAt @map("updated_at")

  @@index([authorId])
  @@map("posts")
}

model Tag {
  id    Int    @id @default(autoincrement())
  label String @unique
}

model Token {
  id    String   @id @default(cuid(2))
  ref   String   @default(uuid(7)) @db.Uuid
  code  String   @default(nanoid(8))
  short String   @default(nanoid())
  day   DateTime @default(now()) @db.Date

  @@map("tokens")
}
"#;

fn options() -> NodeOptions {
    NodeOptions {
        monitor: false,
        check_timeout: Duration::from_secs(5),
        ..NodeOptions::default()
    }
}

async fn open(db: &TestDb, name: &str, schema_text: &str) -> anyhow::Result<Outpost> {
    let path = db.dir().join(format!("{name}.prisma"));
    std::fs::write(&path, schema_text)?;
    let prisma = path.display().to_string();
    let config = runtime_config(db, name, sync_addr(db)?, &[("PRISMA_SCHEMA", &prisma)])?;
    Ok(Outpost::open_with(config, options()).await?)
}

fn is_cuid(s: &str) -> bool {
    s.len() == 25
        && s.starts_with('c')
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

fn uuid_v4(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4) && s == s.to_lowercase()
}

/// A `DateTime` as Prisma returns it: ISO-8601, UTC, `Z`, milliseconds.
fn prisma_time(v: &Json) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("a DateTime string, got {v}"));
    assert!(s.ends_with('Z') && s.len() == 24, "Prisma's form: {s}");
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn within(t: DateTime<Utc>, before: DateTime<Utc>, after: DateTime<Utc>) -> bool {
    // Prisma's now() has millisecond precision: `before` rounded down.
    let before = before - chrono::Duration::milliseconds(1);
    t >= before && t <= after
}

/// Creates a user and a post without ids or timestamps on `node` in `mode`,
/// checks what Prisma would have produced, returns the post.
async fn create_pair(node: &Outpost, mode: Mode, tag: &str) -> anyhow::Result<(Json, Json)> {
    node.set_mode(mode).await;
    let before = Utc::now();
    let user: Json = node
        .model("User")?
        .create(
            json!({"data": {"email": format!("{tag}@example.com"), "name": tag, "role": "ADMIN"}}),
        )
        .await?;
    let after = Utc::now();
    let id = user["id"].as_str().unwrap_or_default();
    assert!(is_cuid(id), "{mode:?}: cuid shape: {user}");
    assert_eq!(
        user["role"], "ADMIN",
        "the enum value under its Prisma name"
    );
    let created = prisma_time(&user["createdAt"]);
    assert!(
        within(created, before, after),
        "{mode:?}: now() {created} in [{before}, {after}]"
    );
    assert_eq!(
        user["updatedAt"], user["createdAt"],
        "@updatedAt on create is the same now()"
    );
    assert!(user.get("created_at").is_none(), "no column names: {user}");

    let post: Json = node
        .model("Post")?
        .create(
            json!({"data": {"title": format!("by {tag}"), "authorId": id,
                                "publishedAt": "2024-03-01T10:00:00.123+02:00"},
                       "include": {"writtenBy": true}}),
        )
        .await?;
    assert!(
        uuid_v4(post["id"].as_str().unwrap_or_default()),
        "{mode:?}: uuid v4: {post}"
    );
    assert_eq!(
        post["publishedAt"], "2024-03-01T08:00:00.123Z",
        "UTC with Z"
    );
    assert_eq!(post["writtenBy"]["email"], format!("{tag}@example.com"));
    assert!(within(prisma_time(&post["createdAt"]), before, Utc::now()));
    Ok((user, post))
}

async fn server_post(
    client: &outpost_remote::tokio_postgres::Client,
    id: &str,
) -> anyhow::Result<Option<(String, chrono::NaiveDateTime, chrono::NaiveDateTime)>> {
    let rows = client
        .query(
            r#"SELECT p.title, p.published_at, p.updated_at FROM posts p WHERE p.id = $1"#,
            &[&id],
        )
        .await?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1), r.get(2))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_without_client_side_fields_get_prismas_values_on_either_database()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, MIGRATION).await?;
    let node = open(&db, "n", SCHEMA).await?;
    node.sync(Direction::Bidirectional).await?; // bootstrap, id blocks

    // Online: on the server.
    let (user, post) = create_pair(&node, Mode::Remote, "online").await?;
    let pid = post["id"].as_str().unwrap_or_default();
    let (title, published, _) = server_post(&client, pid).await?.expect("on the server");
    assert_eq!(title, "by online");
    assert_eq!(
        published.to_string(),
        "2024-03-01 08:00:00.123",
        "UTC wall time in timestamp(3)"
    );
    let role: String = client
        .query_one(
            r#"SELECT role::text FROM users WHERE id = $1"#,
            &[&user["id"].as_str()],
        )
        .await?
        .get(0);
    assert_eq!(role, "admin", "@map of the enum value");

    // Offline: on the replica, pushed by the next sync with the same ids.
    let (luser, lpost) = create_pair(&node, Mode::Local, "offline").await?;
    assert_eq!(lpost["syncStatus"], "PENDING");
    let lpid = lpost["id"].as_str().unwrap_or_default().to_string();
    let mut arrived = None;
    for _ in 0..20 {
        node.sync(Direction::Bidirectional).await?;
        arrived = server_post(&client, &lpid).await?;
        if arrived.is_some() {
            break;
        }
    }
    let (_, published, updated) = arrived.expect("the offline post reached the server");
    assert_eq!(published.to_string(), "2024-03-01 08:00:00.123");
    assert_eq!(
        format!("{}Z", updated.format("%Y-%m-%dT%H:%M:%S%.3f")),
        lpost["updatedAt"].as_str().unwrap_or_default(),
        "the server keeps the time the replica gave"
    );

    // Relation fields under the Prisma schema's names, both sides, and
    // filters on DateTime with Z.
    for mode in [Mode::Remote, Mode::Local] {
        node.set_mode(mode).await;
        let users: Vec<Json> = node
            .model("User")?
            .find_many(json!({"where": {"email": {"in": ["online@example.com", "offline@example.com"]}},
                              "include": {"articles": {"select": {"title": true, "publishedAt": true}}},
                              "orderBy": {"createdAt": "asc"}}))
            .await?;
        assert_eq!(users.len(), 2, "{mode:?}: {users:?}");
        assert_eq!(users[0]["id"], user["id"]);
        assert_eq!(users[1]["id"], luser["id"]);
        let articles = users[1]["articles"].as_array().cloned().unwrap_or_default();
        assert_eq!(articles.len(), 1, "{mode:?}: {users:?}");
        assert_eq!(articles[0]["title"], "by offline", "{mode:?}");
        assert_eq!(
            articles[0]["publishedAt"], "2024-03-01T08:00:00.123Z",
            "{mode:?}"
        );
        let found: Vec<Json> = node
            .model("Post")?
            .find_many(json!({"where": {"publishedAt": {"gte": "2024-03-01T10:00:00.123+02:00",
                                                         "lt": {"$type": "DateTime", "value": "2024-03-01T08:00:00.124Z"}}},
                              "select": {"id": true}, "orderBy": [{"createdAt": "asc"}]}))
            .await?;
        let ids: Vec<&Json> = found.iter().map(|r| &r["id"]).collect();
        assert_eq!(ids, vec![&json!(pid), &json!(lpid)], "{mode:?}");
        let by_unique: Option<Json> = node
            .model("User")?
            .find_unique(
                json!({"where": {"email": "offline@example.com"}, "select": {"role": true}}),
            )
            .await?;
        assert_eq!(
            by_unique.map(|u| u["role"].clone()),
            Some(json!("ADMIN")),
            "{mode:?}"
        );
    }
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_at_moves_on_every_update_in_both_modes() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, MIGRATION).await?;
    let node = open(&db, "n", SCHEMA).await?;
    node.sync(Direction::Bidirectional).await?;
    for (mode, tag) in [(Mode::Remote, "r"), (Mode::Local, "l")] {
        let (user, post) = create_pair(&node, mode, tag).await?;
        tokio::time::sleep(Duration::from_millis(15)).await;
        let updated: Json = node
            .model("Post")?
            .update(json!({"where": {"id": post["id"]}, "data": {"title": {"set": "renamed"}}}))
            .await?;
        assert_eq!(updated["title"], "renamed");
        assert_eq!(
            updated["createdAt"], post["createdAt"],
            "{mode:?}: createdAt stays"
        );
        assert!(
            prisma_time(&updated["updatedAt"]) > prisma_time(&post["updatedAt"]),
            "{mode:?}: @updatedAt moved: {} -> {}",
            post["updatedAt"],
            updated["updatedAt"]
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
        let n = node
            .model("User")?
            .update_many(json!({"where": {"id": user["id"]}, "data": {"name": "again"}}))
            .await?;
        assert_eq!(n, 1);
        let again: Option<Json> = node
            .model("User")?
            .find_unique(json!({"where": {"id": user["id"]}}))
            .await?;
        let again = again.expect("the user");
        assert!(
            prisma_time(&again["updatedAt"]) > prisma_time(&user["updatedAt"]),
            "{mode:?}"
        );
        // An explicit value is kept.
        let set: Json = node
            .model("User")?
            .update(json!({"where": {"id": user["id"]}, "data": {"updatedAt": "2020-01-01T00:00:00.000Z"}}))
            .await?;
        assert_eq!(set["updatedAt"], "2020-01-01T00:00:00.000Z", "{mode:?}");
    }
    // upsert: the create side gets Prisma's values, the update side moves
    // @updatedAt; a value that is no time is refused and nothing is written.
    for mode in [Mode::Remote, Mode::Local] {
        node.set_mode(mode).await;
        let email = format!("{mode:?}-upsert@example.com");
        let args = json!({"where": {"email": email}, "create": {"email": email}, "update": {"name": "up"}});
        let created: Json = node.model("User")?.upsert(args.clone()).await?;
        assert!(
            is_cuid(created["id"].as_str().unwrap_or_default()),
            "{mode:?}: {created}"
        );
        assert_eq!(created["updatedAt"], created["createdAt"], "{mode:?}");
        tokio::time::sleep(Duration::from_millis(15)).await;
        let updated: Json = node.model("User")?.upsert(args).await?;
        assert_eq!(
            (updated["id"].clone(), updated["name"].clone()),
            (created["id"].clone(), json!("up"))
        );
        assert!(
            prisma_time(&updated["updatedAt"]) > prisma_time(&created["updatedAt"]),
            "{mode:?}"
        );
        let bad = node
            .model("Post")?
            .create::<Json>(json!({"data": {"title": "bad", "authorId": created["id"], "publishedAt": "yesterday"}}))
            .await;
        let Err(e) = bad else {
            panic!("{mode:?}: a publishedAt that is no time was accepted")
        };
        assert!(
            e.to_string().contains("yesterday"),
            "{mode:?}: the error names the value: {e}"
        );
        let n = node
            .model("Post")?
            .count(json!({"where": {"title": "bad"}}))
            .await?;
        assert_eq!(n, 0, "{mode:?}: nothing written");
    }
    // The offline updates reach the server.
    let mut seen = false;
    for _ in 0..20 {
        node.sync(Direction::Bidirectional).await?;
        let rows = client
            .query(r#"SELECT 1 FROM users WHERE email = 'l@example.com' AND updated_at = '2020-01-01 00:00:00'"#, &[])
            .await?;
        if !rows.is_empty() {
            seen = true;
            break;
        }
    }
    assert!(seen, "the offline update reached the server");
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoincrement_offline_takes_the_nodes_reserved_ids() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, MIGRATION).await?;
    let node = open(&db, "n", SCHEMA).await?;
    node.sync(Direction::Bidirectional).await?;
    node.set_mode(Mode::Local).await;
    let tag: Json = node
        .model("Tag")?
        .create(json!({"data": {"label": "offline"}}))
        .await?;
    let id = tag["id"].as_i64().expect("an integer id");
    let mut on_server = None;
    for _ in 0..20 {
        node.sync(Direction::Bidirectional).await?;
        let rows = client
            .query(r#"SELECT id FROM "Tag" WHERE label = 'offline'"#, &[])
            .await?;
        if let Some(r) = rows.first() {
            on_server = Some(i64::from(r.get::<_, i32>(0)));
            break;
        }
    }
    assert_eq!(on_server, Some(id), "the id given offline is the server's");
    // The server's own sequence does not hand it out again.
    let next: i32 = client
        .query_one(
            r#"INSERT INTO "Tag" (label) VALUES ('server') RETURNING id"#,
            &[],
        )
        .await?
        .get(0);
    assert_ne!(i64::from(next), id);
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_that_disagrees_with_the_database_is_reported() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, schema) = server(&db, MIGRATION).await?;
    // A model whose table does not exist: a note, the node opens.
    let extra = format!(
        "{SCHEMA}\nmodel Comment {{\n  id String @id @default(cuid())\n  body String\n  @@map(\"comments\")\n}}\n"
    );
    let path = db.dir().join("extra.prisma");
    std::fs::write(&path, &extra)?;
    let config = outpost_core::config::Config::from_lookup(|k| match k {
        "PRISMA_SCHEMA" => Some(path.display().to_string()),
        _ => None,
    })?;
    let (_, notes) = outpost_engine::check_prisma_schema(&config, &schema)
        .map_err(anyhow::Error::msg)?
        .expect("a schema was read");
    assert!(
        notes.iter().any(|n| n.contains("model Comment")
            && n.contains("\"comments\"")
            && n.contains("not among the synced tables")),
        "{notes:?}"
    );
    // A field whose column does not exist: refused, naming it.
    let wrong = SCHEMA.replace(r#"@map("author_id")"#, r#"@map("writer_id")"#);
    std::fs::write(&path, &wrong)?;
    let err = outpost_engine::check_prisma_schema(&config, &schema).expect_err("refused");
    assert!(
        err.contains("Post.authorId") && err.contains("writer_id"),
        "{err}"
    );
    let node = open(&db, "bad", &wrong).await;
    let Err(e) = node else {
        anyhow::bail!("the node opened with a schema that does not fit")
    };
    assert!(e.to_string().contains("writer_id"), "{e}");
    // Not Prisma at all: the line and column.
    std::fs::write(&path, "model User {\n  id String @id\n  name ??\n}\n")?;
    let err = outpost_engine::check_prisma_schema(&config, &schema).expect_err("refused");
    assert!(err.contains("line 3"), "{err}");
    // A PRISMA_SCHEMA that names no file is an error, not ignored.
    let missing = outpost_core::config::Config::from_lookup(|k| match k {
        "PRISMA_SCHEMA" => Some(db.dir().join("nope.prisma").display().to_string()),
        _ => None,
    })?;
    assert!(outpost_engine::check_prisma_schema(&missing, &schema).is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_side_default_kind_on_either_database() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _schema) = server(&db, MIGRATION).await?;
    let node = open(&db, "n", SCHEMA).await?;
    node.sync(Direction::Bidirectional).await?;
    let url_safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut ids = Vec::new();
    for mode in [Mode::Remote, Mode::Local] {
        node.set_mode(mode).await;
        let today = Utc::now().date_naive();
        let t: Json = node.model("Token")?.create(json!({"data": {}})).await?;
        let id = t["id"].as_str().unwrap_or_default();
        assert!(
            id.len() == 24
                && id.as_bytes()[0].is_ascii_lowercase()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{mode:?}: cuid(2): {t}"
        );
        let r = uuid::Uuid::parse_str(t["ref"].as_str().unwrap_or_default())?;
        assert_eq!(r.get_version_num(), 7, "{mode:?}: uuid(7): {t}");
        let code = t["code"].as_str().unwrap_or_default();
        assert!(
            code.len() == 8 && url_safe(code),
            "{mode:?}: nanoid(8): {t}"
        );
        let short = t["short"].as_str().unwrap_or_default();
        assert!(
            short.len() == 21 && url_safe(short),
            "{mode:?}: nanoid(): {t}"
        );
        assert_eq!(
            t["day"],
            format!("{today}T00:00:00.000Z"),
            "{mode:?}: now() on a @db.Date, as Prisma reads it"
        );
        ids.push(id.to_string());
    }
    assert_ne!(ids[0], ids[1]);
    let mut pushed = false;
    for _ in 0..20 {
        node.sync(Direction::Bidirectional).await?;
        let n: i64 = client
            .query_one(r#"SELECT count(*) FROM tokens WHERE id = ANY($1)"#, &[&ids])
            .await?
            .get(0);
        if n == 2 {
            pushed = true;
            break;
        }
    }
    assert!(pushed, "both tokens on the server");
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_schema_describes_models_under_their_prisma_names() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (_client, _schema) = server(&db, MIGRATION).await?;
    let node = open(&db, "n", SCHEMA).await?;
    let api = node.api_schema();
    let names: Vec<&str> = api.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["Post", "Tag", "Token", "User"]);
    let post = api.table("Post").expect("Post");
    let created = post.column("createdAt").expect("createdAt");
    assert_eq!(
        created.ty.scalar,
        outpost_core::types::ScalarType::Timestamptz,
        "UTC with Z"
    );
    assert_eq!(
        post.column("id").and_then(|c| c.default.clone()),
        Some("uuid()".into())
    );
    assert_eq!(
        post.column("updatedAt").and_then(|c| c.default.clone()),
        Some("@updatedAt".into())
    );
    let written_by = post.relation("writtenBy").expect("writtenBy");
    assert_eq!(
        (written_by.target.as_str(), written_by.local_columns.clone()),
        ("User", vec!["authorId".to_string()])
    );
    let user = api.table("User").expect("User");
    assert_eq!(
        user.relation("articles").map(|r| r.target.as_str()),
        Some("Post")
    );
    assert_eq!(
        user.relation("edits").map(|r| r.target.as_str()),
        Some("Post")
    );
    let role = api.enum_type("role").expect("the enum type");
    assert_eq!(role.labels, vec!["USER".to_string(), "ADMIN".to_string()]);
    // The node's own schema keeps the database's names; events name models
    // by the application's names.
    assert!(node.engine().schema().table("users").is_some());
    assert_eq!(node.model_name("users"), "User");
    assert_eq!(node.model_name("Tag"), "Tag");
    // Either name reaches the model service.
    assert_eq!(node.model("users")?.name(), node.model("User")?.name());
    node.shutdown().await;
    Ok(())
}
