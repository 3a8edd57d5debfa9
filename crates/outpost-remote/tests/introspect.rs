//! Introspection against a real PostgreSQL database: a Prisma-style schema
//! reads into the expected model; what cannot be replicated is refused with a
//! message naming it.

use outpost_core::schema::{FkAction, Identity, RelationKind};
use outpost_core::types::ScalarType;
use outpost_remote::{RemoteError, introspect};
use outpost_testkit::TestDb;

const PRISMA_SCHEMA: &str = r#"
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN');
CREATE TABLE "User" (
    id text PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    role "Role" NOT NULL DEFAULT 'USER',
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    "updatedAt" timestamptz(3) NOT NULL
);
CREATE TABLE "Post" (
    id text PRIMARY KEY,
    title text NOT NULL,
    content text,
    published boolean NOT NULL DEFAULT false,
    price numeric(12,2),
    tags text[] NOT NULL DEFAULT '{}',
    metadata jsonb,
    "userId" text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE ON UPDATE CASCADE,
    "createdAt" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE "Tag" (id serial PRIMARY KEY, name text UNIQUE NOT NULL);
CREATE TABLE "PostTag" (
    "postId" text REFERENCES "Post"(id),
    "tagId" int REFERENCES "Tag"(id),
    PRIMARY KEY ("postId", "tagId")
);
CREATE TABLE "_prisma_migrations" (id varchar(36) PRIMARY KEY, checksum text);
"#;

async fn db_with(sql: &str) -> anyhow::Result<(TestDb, tokio_postgres::Client)> {
    let db = TestDb::new().await?;
    let client = db.client().await?;
    client.batch_execute(sql).await?;
    Ok((db, client))
}

#[tokio::test]
async fn prisma_schema_introspects_to_the_expected_model() -> anyhow::Result<()> {
    let (_db, client) = db_with(PRISMA_SCHEMA).await?;
    let schema = introspect(&client, "public", None, &[]).await?;

    assert_eq!(schema.pg_schema, "public");
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Post", "PostTag", "Tag", "User"]);
    assert_eq!(schema.enums.len(), 1);
    assert_eq!(schema.enums[0].name, "Role");
    assert_eq!(schema.enums[0].labels, ["USER", "ADMIN"]);

    // User
    let user = schema.table("User").expect("User");
    let cols: Vec<&str> = user.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        cols,
        ["id", "email", "name", "role", "createdAt", "updatedAt"]
    );
    assert_eq!(user.primary_key, ["id"]);
    assert_eq!(user.uniques, vec![vec!["email".to_string()]]);
    let role = user.column("role").expect("role");
    assert_eq!(role.ty.scalar, ScalarType::Enum("Role".into()));
    assert!(!role.ty.array);
    assert_eq!(role.ty.pg_name, "\"Role\"");
    assert!(!role.nullable);
    assert_eq!(role.default.as_deref(), Some("'USER'::\"Role\""));
    let name = user.column("name").expect("name");
    assert!(name.nullable);
    assert_eq!(name.ty.scalar, ScalarType::Text);
    assert_eq!(name.default, None);
    let created = user.column("createdAt").expect("createdAt");
    assert_eq!(created.ty.scalar, ScalarType::Timestamptz);
    assert_eq!(created.default.as_deref(), Some("now()"));
    let updated = user.column("updatedAt").expect("updatedAt");
    assert_eq!(updated.ty.pg_name, "timestamp(3) with time zone");
    assert!(!updated.nullable);
    assert_eq!(updated.default, None);
    assert!(user.foreign_keys.is_empty());

    // Post
    let post = schema.table("Post").expect("Post");
    let price = post.column("price").expect("price");
    assert_eq!(price.ty.scalar, ScalarType::Numeric);
    assert_eq!(price.ty.pg_name, "numeric(12,2)");
    assert!(price.nullable);
    let tags = post.column("tags").expect("tags");
    assert_eq!(tags.ty.scalar, ScalarType::Text);
    assert!(tags.ty.array);
    assert_eq!(tags.ty.pg_name, "text[]");
    assert_eq!(tags.default.as_deref(), Some("'{}'::text[]"));
    assert_eq!(
        post.column("metadata").map(|c| c.ty.scalar.clone()),
        Some(ScalarType::Jsonb)
    );
    let published = post.column("published").expect("published");
    assert_eq!(published.ty.scalar, ScalarType::Bool);
    assert_eq!(published.default.as_deref(), Some("false"));
    assert_eq!(
        post.column("createdAt").and_then(|c| c.default.as_deref()),
        Some("CURRENT_TIMESTAMP")
    );
    assert_eq!(post.foreign_keys.len(), 1);
    let fk = &post.foreign_keys[0];
    assert_eq!(fk.columns, ["userId"]);
    assert_eq!(fk.ref_table, "User");
    assert_eq!(fk.ref_columns, ["id"]);
    assert_eq!(fk.on_delete, FkAction::Cascade);
    assert_eq!(fk.on_update, FkAction::Cascade);
    assert!(post.uniques.is_empty());

    // Tag
    let tag = schema.table("Tag").expect("Tag");
    let id = tag.column("id").expect("id");
    assert_eq!(id.ty.scalar, ScalarType::Int4);
    assert_eq!(
        id.default.as_deref(),
        Some("nextval('\"Tag_id_seq\"'::regclass)")
    );
    assert_eq!(id.identity, None);
    assert_eq!(tag.uniques, vec![vec!["name".to_string()]]);

    // PostTag: composite key in key order, two foreign keys.
    let pt = schema.table("PostTag").expect("PostTag");
    assert_eq!(pt.primary_key, ["postId", "tagId"]);
    assert!(!pt.column("postId").expect("postId").nullable);
    let fks: Vec<(&str, &str, FkAction)> = pt
        .foreign_keys
        .iter()
        .map(|f| (f.columns[0].as_str(), f.ref_table.as_str(), f.on_delete))
        .collect();
    assert_eq!(
        fks,
        [
            ("postId", "Post", FkAction::NoAction),
            ("tagId", "Tag", FkAction::NoAction)
        ]
    );

    // Relations.
    let rel = |table: &str, name: &str| {
        schema
            .table(table)
            .and_then(|t| t.relation(name))
            .map(|r| (r.kind, r.target.clone(), r.owns_foreign_key))
    };
    assert_eq!(
        rel("Post", "user"),
        Some((RelationKind::ToOne, "User".into(), true))
    );
    assert_eq!(
        rel("User", "posts"),
        Some((RelationKind::ToMany, "Post".into(), false))
    );
    assert_eq!(
        rel("PostTag", "post"),
        Some((RelationKind::ToOne, "Post".into(), true))
    );
    assert_eq!(
        rel("PostTag", "tag"),
        Some((RelationKind::ToOne, "Tag".into(), true))
    );
    assert_eq!(
        rel("Post", "postTags"),
        Some((RelationKind::ToMany, "PostTag".into(), false))
    );
    assert_eq!(
        rel("Tag", "postTags"),
        Some((RelationKind::ToMany, "PostTag".into(), false))
    );
    let user_rel = post.relation("user").expect("Post.user");
    assert_eq!(user_rel.local_columns, ["userId"]);
    assert_eq!(user_rel.target_columns, ["id"]);

    // Introspecting twice gives the same model (and hash).
    let again = introspect(&client, "public", None, &[]).await?;
    assert_eq!(again, schema);
    assert_eq!(again.hash(), schema.hash());
    Ok(())
}

#[tokio::test]
async fn selection_include_and_exclude() -> anyhow::Result<()> {
    let (_db, client) = db_with(PRISMA_SCHEMA).await?;
    let include = vec!["User".to_string(), "Post".to_string()];
    let schema = introspect(&client, "public", Some(&include), &[]).await?;
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Post", "User"]);
    assert!(
        schema
            .table("Post")
            .and_then(|t| t.relation("user"))
            .is_some()
    );

    let exclude = vec!["PostTag".to_string()];
    let schema = introspect(&client, "public", None, &exclude).await?;
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Post", "Tag", "User"]);
    // Foreign keys to unselected tables stay in the model but give no relation.
    let pt_only = vec!["PostTag".to_string()];
    let schema = introspect(&client, "public", Some(&pt_only), &[]).await?;
    assert_eq!(schema.tables[0].foreign_keys.len(), 2);
    assert!(schema.tables[0].relations.is_empty());
    assert!(schema.enums.is_empty());

    let missing = vec!["user".to_string()];
    let err = introspect(&client, "public", Some(&missing), &[])
        .await
        .expect_err("unknown table");
    assert!(matches!(&err, RemoteError::TableNotFound { table, .. } if table == "user"));
    assert!(err.to_string().contains("\"user\""), "{err}");
    Ok(())
}

#[tokio::test]
async fn tables_without_a_primary_key_are_refused_by_name() -> anyhow::Result<()> {
    let (_db, client) = db_with(
        r#"CREATE TABLE "Item"(id int PRIMARY KEY);
           CREATE TABLE "Log"(at timestamptz, line text);"#,
    )
    .await?;
    // Default selection.
    let err = introspect(&client, "public", None, &[])
        .await
        .expect_err("PK-less table");
    assert!(matches!(&err, RemoteError::NoPrimaryKey { table } if table == "Log"));
    let msg = err.to_string();
    assert!(
        msg.starts_with("table \"Log\" has no primary key; outpost needs one to identify rows"),
        "{msg}"
    );
    // Explicitly included.
    let include = vec!["Log".to_string()];
    let err = introspect(&client, "public", Some(&include), &[])
        .await
        .expect_err("PK-less table");
    assert!(matches!(&err, RemoteError::NoPrimaryKey { table } if table == "Log"));
    // Excluded: fine.
    let schema = introspect(&client, "public", None, &["Log".to_string()]).await?;
    assert_eq!(schema.tables.len(), 1);
    Ok(())
}

#[tokio::test]
async fn unsupported_types_are_refused_naming_table_and_column() -> anyhow::Result<()> {
    let (_db, client) = db_with(
        r#"CREATE TYPE address AS (street text, city text);
           CREATE TABLE "Host"(id int PRIMARY KEY, home address);"#,
    )
    .await?;
    let err = introspect(&client, "public", None, &[])
        .await
        .expect_err("composite column");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "table \"Host\", column \"home\": type address cannot be replicated: address is a composite type"
        ),
        "{msg}"
    );
    assert!(msg.contains("OUTPOST_EXCLUDE_TABLES=Host"), "{msg}");
    assert!(!err.is_transient());
    Ok(())
}

/// Every kind of refusal in one schema: one run names them all, each with
/// its table, column and reason, and the exclusion that lets setup go on.
#[tokio::test]
async fn one_setup_run_names_every_unreplicable_column() -> anyhow::Result<()> {
    let (_db, client) = db_with(
        r#"CREATE TYPE address AS (street text, city text);
           CREATE TYPE floatrange AS RANGE (subtype = float8);
           CREATE DOMAIN home AS address;
           CREATE DOMAIN ints AS int[];
           CREATE TABLE "Person"(id int PRIMARY KEY, addr address, homes home,
               past address[], lsn pg_lsn, ok int[][]);
           CREATE TABLE "Slot"(id int PRIMARY KEY, span floatrange, grid ints[], fine int4range);
           CREATE TABLE "Log"(at timestamptz, line text, snap txid_snapshot);
           CREATE TABLE "Fine"(id int PRIMARY KEY, y int)"#,
    )
    .await?;
    let err = introspect(&client, "public", None, &[])
        .await
        .expect_err("unreplicable columns");
    let RemoteError::Unreplicable { refusals } = &err else {
        panic!("expected every refusal at once, got {err}");
    };
    let named: Vec<(String, Option<String>)> = refusals
        .iter()
        .map(|r| match r {
            RemoteError::UnsupportedType { table, column, .. } => {
                (table.clone(), Some(column.clone()))
            }
            RemoteError::NoPrimaryKey { table } => (table.clone(), None),
            other => panic!("unexpected refusal {other}"),
        })
        .collect();
    let expected: Vec<(String, Option<String>)> = [
        ("Log", None),
        ("Log", Some("snap")),
        ("Person", Some("addr")),
        ("Person", Some("homes")),
        ("Person", Some("lsn")),
        ("Person", Some("past")),
        ("Slot", Some("grid")),
        ("Slot", Some("span")),
    ]
    .into_iter()
    .map(|(t, c)| (t.to_string(), c.map(str::to_string)))
    .collect();
    assert_eq!(named, expected);
    let msg = err.to_string();
    for needle in [
        "8 problems in 3 selected tables",
        "table \"Log\" has no primary key",
        "column \"homes\": type home cannot be replicated: it is a domain over address, and address is a composite type",
        "column \"span\": type floatrange cannot be replicated: floatrange is not one of the built-in ranges",
        "column \"grid\": type ints[] cannot be replicated: it is an array of ints, itself an array type",
        "OUTPOST_EXCLUDE_TABLES=Log,Person,Slot",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from:\n{msg}");
    }
    // Excluding what it names lets setup go on.
    let exclude: Vec<String> = ["Log", "Person", "Slot"].map(String::from).to_vec();
    let schema = introspect(&client, "public", None, &exclude).await?;
    assert_eq!(schema.tables.len(), 1);
    Ok(())
}

/// Domains replicate as their base type, recursively, with the declared
/// domain's name in the model; multi-dimensional arrays and the new types
/// are accepted.
#[tokio::test]
async fn domains_and_new_types_are_accepted() -> anyhow::Result<()> {
    let (_db, client) = db_with(
        r#"CREATE DOMAIN year AS integer CHECK (VALUE BETWEEN 1901 AND 2155);
           CREATE DOMAIN recent AS year CHECK (VALUE >= 2000);
           CREATE DOMAIN ints AS int[];
           CREATE TABLE "Film"(id int PRIMARY KEY, made year, re recent, years year[],
               scores ints, grid int[][], ip inet, during tstzrange, spans datemultirange,
               doc tsvector, at timetz, price money, spot point)"#,
    )
    .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    let t = &schema.tables[0];
    let ty = |n: &str| t.column(n).map(|c| c.ty.clone()).expect("column");
    assert_eq!(ty("made").scalar, ScalarType::Int4);
    assert_eq!(ty("made").domain.as_deref(), Some("year"));
    assert_eq!(ty("re").domain.as_deref(), Some("recent"));
    assert!(ty("years").array && ty("years").domain.as_deref() == Some("year"));
    assert!(ty("scores").array && ty("scores").domain.as_deref() == Some("ints"));
    assert!(ty("grid").array && ty("grid").domain.is_none());
    assert_eq!(ty("ip").scalar, ScalarType::Inet);
    assert_eq!(
        ty("during").scalar,
        ScalarType::Range(Box::new(ScalarType::Timestamptz))
    );
    assert_eq!(
        ty("spans").scalar,
        ScalarType::Multirange(Box::new(ScalarType::Date))
    );
    assert_eq!(ty("doc").scalar, ScalarType::Tsvector);
    assert_eq!(ty("at").scalar, ScalarType::Timetz);
    assert_eq!(ty("price").scalar, ScalarType::Money);
    assert_eq!(ty("spot").scalar, ScalarType::Point);
    Ok(())
}

#[tokio::test]
async fn identity_generated_and_partitioned_tables() -> anyhow::Result<()> {
    let (_db, client) = db_with(
        r#"CREATE TABLE "Event"(
               id bigint GENERATED ALWAYS AS IDENTITY,
               at date NOT NULL,
               n int GENERATED BY DEFAULT AS IDENTITY,
               doubled int GENERATED ALWAYS AS (n * 2) STORED,
               code char(3),
               label varchar(20),
               PRIMARY KEY (id, at)
           ) PARTITION BY RANGE (at);
           CREATE TABLE "Event_2024" PARTITION OF "Event" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
           CREATE TABLE "Ref"(id int PRIMARY KEY, a int, b int, c int,
               CONSTRAINT "Ref_ab" UNIQUE (b, a));
           CREATE UNIQUE INDEX "Ref_c_partial" ON "Ref"(c) WHERE c > 0;
           CREATE UNIQUE INDEX "Ref_expr" ON "Ref"((a + b));
           CREATE UNIQUE INDEX "Ref_c_incl" ON "Ref"(c) INCLUDE (a);
           ALTER TABLE "Ref" DROP COLUMN a CASCADE;"#,
    )
    .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Event", "Ref"]);
    let ev = &schema.tables[0];
    assert_eq!(ev.primary_key, ["id", "at"]);
    let id = ev.column("id").expect("id");
    assert_eq!(id.identity, Some(Identity::Always));
    assert_eq!(id.default, None);
    assert_eq!(
        ev.column("n").and_then(|c| c.identity),
        Some(Identity::ByDefault)
    );
    let doubled = ev.column("doubled").expect("doubled");
    assert!(doubled.generated);
    assert_eq!(doubled.default, None);
    assert_eq!(
        ev.column("code").map(|c| c.ty.scalar.clone()),
        Some(ScalarType::Char)
    );
    assert_eq!(
        ev.column("label").map(|c| c.ty.pg_name.as_str()),
        Some("character varying(20)")
    );
    // Dropping `a` dropped the unique constraint on (b, a) and the INCLUDE
    // index with it; the partial and expression indexes were never uniques.
    let rf = &schema.tables[1];
    let cols: Vec<&str> = rf.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, ["id", "b", "c"]);
    assert!(rf.uniques.is_empty(), "{:?}", rf.uniques);
    client
        .batch_execute(
            r#"CREATE UNIQUE INDEX "Ref_cb" ON "Ref"(c, b) INCLUDE (id);
               ALTER TABLE "Ref" ADD CONSTRAINT "Ref_c" UNIQUE (c);
               CREATE UNIQUE INDEX "Ref_c_again" ON "Ref"(c);
               CREATE UNIQUE INDEX "Ref_id" ON "Ref"(id);"#,
        )
        .await?;
    let schema = introspect(&client, "public", None, &[]).await?;
    assert_eq!(
        schema.tables[1].uniques,
        vec![
            vec!["c".to_string()],
            vec!["c".to_string(), "b".to_string()]
        ]
    );
    Ok(())
}

/// Every kind of refusal is listed in one run: a table without a primary
/// key, a column of an unsupported type, a name the replica reserves, two
/// names SQLite cannot tell apart, and an included name that is no table.
#[tokio::test]
async fn every_kind_of_refusal_is_listed_in_one_run() -> anyhow::Result<()> {
    let (_db, client) = db_with(
        r#"CREATE TYPE pair AS (a int, b int);
           CREATE TABLE "Ok"(id int PRIMARY KEY);
           CREATE TABLE "NoKey"(id int);
           CREATE TABLE "Odd"(id int PRIMARY KEY, p pair);
           CREATE TABLE "SyncLog"(id int PRIMARY KEY);
           CREATE TABLE "Item"(id int PRIMARY KEY);
           CREATE TABLE "item"(id int PRIMARY KEY);
           CREATE TABLE "Cols"(id int PRIMARY KEY, "a" int, "A" int);"#,
    )
    .await?;
    let include: Vec<String> = [
        "Ok", "NoKey", "Odd", "SyncLog", "Item", "item", "Cols", "Gone",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let err = introspect(&client, "public", Some(&include), &[])
        .await
        .expect_err("refused");
    let RemoteError::Unreplicable { refusals } = &err else {
        panic!("expected every refusal at once, got {err}");
    };
    assert_eq!(refusals.len(), 6, "{err}");
    let text = err.to_string();
    for needle in [
        r#"table "NoKey" has no primary key"#,
        r#"table "Odd", column "p""#,
        r#"table "SyncLog" cannot be replicated: its name is reserved"#,
        r#"tables "Item" and "item" differ only in case"#,
        r#"table "Cols": columns "a" and "A" differ only in case"#,
        r#"table "Gone" was selected for sync"#,
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!text.contains(r#""Ok""#), "{text}");
    // Excluding what is named lets it through.
    let exclude: Vec<String> = ["NoKey", "Odd", "SyncLog", "item", "Cols", "Gone"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let schema = introspect(&client, "public", Some(&include), &exclude).await?;
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Item", "Ok"]);
    Ok(())
}
