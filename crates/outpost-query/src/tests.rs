//! Unit tests: request parsing and its errors, hostile input, and the SQL
//! of a few requests pinned for each dialect.

use outpost_core::schema::{Column, EnumType, FkAction, ForeignKey, Schema, Table};
use outpost_core::types::{ColumnType, ScalarType, Value};
use serde_json::{Value as Json, json};

use crate::exec::{Driver, ExecOptions, execute};
use crate::plan::Body;
use crate::sql::{Builder, Statement};
use crate::{Dialect, Operation, QueryError, plan};

fn col(name: &str, scalar: ScalarType, pg: &str, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty: ColumnType::scalar(scalar, pg),
        nullable,
        default: None,
        identity: None,
        generated: false,
    }
}

pub(crate) fn schema() -> Schema {
    let user = Table {
        name: "User".into(),
        columns: vec![
            col("id", ScalarType::Text, "text", false),
            col("email", ScalarType::Text, "text", false),
            col("name", ScalarType::Text, "text", true),
            col("age", ScalarType::Int4, "integer", true),
            col("score", ScalarType::Numeric, "numeric(10,2)", true),
            col(
                "createdAt",
                ScalarType::Timestamptz,
                "timestamp with time zone",
                false,
            ),
            col("active", ScalarType::Bool, "boolean", false),
            col("role", ScalarType::Enum("Role".into()), "\"Role\"", true),
            col("meta", ScalarType::Jsonb, "jsonb", true),
        ],
        primary_key: vec!["id".into()],
        foreign_keys: vec![],
        uniques: vec![vec!["email".into()]],
        relations: vec![],
    };
    let post = Table {
        name: "Post".into(),
        columns: vec![
            col("id", ScalarType::Int4, "integer", false),
            col("title", ScalarType::Text, "text", false),
            col("views", ScalarType::Int4, "integer", false),
            col("userId", ScalarType::Text, "text", false),
            col(
                "publishedAt",
                ScalarType::Timestamptz,
                "timestamp with time zone",
                true,
            ),
        ],
        primary_key: vec!["id".into()],
        foreign_keys: vec![ForeignKey {
            name: "Post_userId_fkey".into(),
            columns: vec!["userId".into()],
            ref_table: "User".into(),
            ref_columns: vec!["id".into()],
            on_delete: FkAction::Restrict,
            on_update: FkAction::Cascade,
        }],
        uniques: vec![],
        relations: vec![],
    };
    let like = Table {
        name: "Like".into(),
        columns: vec![
            col("userId", ScalarType::Text, "text", false),
            col("postId", ScalarType::Int4, "integer", false),
            col(
                "at",
                ScalarType::Timestamptz,
                "timestamp(3) with time zone",
                true,
            ),
        ],
        primary_key: vec!["userId".into(), "postId".into()],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    };
    Schema {
        pg_schema: "public".into(),
        tables: vec![user, post, like],
        enums: vec![EnumType {
            name: "Role".into(),
            labels: vec!["USER".into(), "ADMIN".into()],
        }],
    }
    .finish()
}

fn err(model: &str, op: &str, args: Json) -> String {
    let op: Operation = op.parse().unwrap();
    match plan(&schema(), model, op, &args) {
        Ok(p) => panic!("{model}.{op} {args} planned: {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn ok(model: &str, op: &str, args: Json) -> crate::Plan {
    let op: Operation = op.parse().unwrap();
    plan(&schema(), model, op, &args).unwrap_or_else(|e| panic!("{args}: {e}"))
}

/// The main statement of a read plan, in a dialect.
fn select(p: &crate::Plan, dialect: Dialect) -> Statement {
    let schema = schema();
    let b = Builder {
        dialect,
        schema: &schema,
        scopes: None,
    };
    match &p.body {
        Body::Read { query, .. } => b
            .select(query, None, true, dialect == Dialect::Sqlite)
            .unwrap(),
        Body::Count(query) => b.count(query).unwrap(),
        other => panic!("not a read: {other:?}"),
    }
}

#[test]
fn operations_parse() {
    for (name, op) in Operation::NAMES.iter().zip(Operation::ALL) {
        assert_eq!(name.parse::<Operation>(), Ok(op));
        assert_eq!(op.name(), *name);
    }
    let err = "findAll".parse::<Operation>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown operation \"findAll\" (operations: findMany, findFirst, findUnique, count, create, createMany, update, updateMany, upsert, delete, deleteMany)"
    );
    assert!(Operation::Upsert.is_write());
    assert!(!Operation::Count.is_write());
}

#[test]
fn unknown_names_are_refused_and_listed() {
    let e = plan(&schema(), "Pst", Operation::FindMany, &json!({})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown model \"Pst\" (models: Like, Post, User)"
    );
    assert_eq!(
        err("Post", "findMany", json!({"wher": {}})),
        "unknown argument \"wher\" for Post.findMany (arguments: where, select, include, orderBy, take, skip, cursor, distinct)"
    );
    assert_eq!(
        err("Post", "findMany", json!({"where": {"titel": "x"}})),
        "unknown field \"titel\" on model Post (fields: id, title, views, userId, publishedAt, user)"
    );
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"where": {"title": {"like": "x%"}}})
        ),
        "unknown operator \"like\" on Post.title (operators: equals, not, in, notIn, lt, lte, gt, gte, contains, startsWith, endsWith, mode)"
    );
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"where": {"views": {"contains": "1"}}})
        ),
        "unknown operator \"contains\" on Post.views (operators: equals, not, in, notIn, lt, lte, gt, gte)"
    );
    assert_eq!(
        err(
            "User",
            "findMany",
            json!({"where": {"age": {"gt": 1, "mode": "insensitive"}}})
        ),
        "unknown operator \"mode\" on User.age (operators: equals, not, in, notIn, lt, lte, gt, gte)"
    );
    assert_eq!(
        err(
            "User",
            "findMany",
            json!({"where": {"meta": {"equals": {"a": 1}}}})
        ),
        "unknown operator \"equals\" on User.meta (jsonb fields can only be tested for null: equals: null, not: null)"
    );
    assert_eq!(
        err("User", "findMany", json!({"include": {"friends": true}})),
        "unknown relation \"friends\" on model User (relations: posts)"
    );
    assert_eq!(
        err(
            "Post",
            "update",
            json!({"where": {"id": 1}, "data": {"views": {"add": 1}}})
        ),
        "unknown operator \"add\" on Post.views (update operations: set, increment, decrement, multiply, divide)"
    );
}

#[test]
fn bad_values_name_field_type_and_value() {
    assert_eq!(
        err("Post", "findMany", json!({"where": {"views": true}})),
        "Post.views: expected an integer, got a boolean (type integer)"
    );
    assert_eq!(
        err(
            "Post",
            "create",
            json!({"data": {"id": 1, "title": "t", "views": "ten", "userId": "u"}})
        ),
        "Post.views: \"ten\" is not an integer (type integer)"
    );
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"where": {"publishedAt": {"lt": "yesterday"}}})
        ),
        "Post.publishedAt: \"yesterday\" is not an RFC 3339 timestamp with a time zone (type timestamp with time zone)"
    );
    assert_eq!(
        err("User", "findMany", json!({"where": {"role": "ROOT"}})),
        "User.role: \"ROOT\" is not a label of enum Role (USER, ADMIN) (type \"Role\")"
    );
    assert_eq!(
        err(
            "Post",
            "create",
            json!({"data": {"id": 1, "title": null, "views": 1, "userId": "u"}})
        ),
        "Post.title: cannot be null (the field is required) (type text)"
    );
    assert_eq!(
        err(
            "User",
            "update",
            json!({"where": {"id": "u"}, "data": {"score": "123456789.5"}})
        ),
        "User.score: numeric field overflow: a field with precision 10, scale 2 must round to an absolute value less than 10^8 (type numeric(10,2))"
    );
    assert_eq!(
        err(
            "Post",
            "updateMany",
            json!({"data": {"views": {"divide": 0}}})
        ),
        "Post.views: division by zero (type integer)"
    );
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"where": {"views": {"lt": null}}})
        ),
        "Post.views: lt cannot compare with null (type integer)"
    );
    assert_eq!(
        err("Post", "findMany", json!({"where": {"title": {"in": "a"}}})),
        "Post.title: in expects an array, got a string (type text)"
    );
    assert_eq!(
        err("Post", "findMany", json!({"take": "10"})),
        "Post.findMany take: expected an integer, got a string \"10\""
    );
    assert_eq!(
        err("Post", "findMany", json!({"skip": -1})),
        "Post.findMany skip: expected a non-negative integer, got a number -1"
    );
    assert_eq!(
        err("Post", "findMany", json!([1])),
        "Post.findMany: arguments must be an object, got an array"
    );
}

#[test]
fn unsupported_features_say_so() {
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"where": {"user": {"name": "x"}}})
        ),
        "relation filters are not supported yet: Post.user in Post.findMany where; set or filter the foreign-key field(s) userId of Post instead"
    );
    assert_eq!(
        err(
            "User",
            "findMany",
            json!({"where": {"posts": {"some": {}}}})
        ),
        "relation filters are not supported yet: User.posts in User.findMany where"
    );
    assert_eq!(
        err(
            "Post",
            "create",
            json!({"data": {"id": 1, "title": "t", "views": 1, "user": {"connect": {"id": "u"}}}})
        ),
        "nested writes are not supported yet: Post.user in Post.create data; set or filter the foreign-key field(s) userId of Post instead"
    );
    assert_eq!(
        err("Post", "findMany", json!({"take": -3})),
        "negative take is not supported yet: Post.findMany take: -3; reverse orderBy and use a positive take"
    );
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"orderBy": {"user": {"name": "asc"}}})
        ),
        "ordering by relation fields is not supported yet: Post.user in Post.findMany orderBy"
    );
    assert_eq!(
        err("Post", "findMany", json!({"distinct": ["title"]})),
        "distinct is not supported yet: Post.findMany: sort with orderBy and remove duplicates in the application"
    );
    assert_eq!(
        err(
            "User",
            "findMany",
            json!({"include": {"posts": {"cursor": {"id": 1}}}})
        ),
        "cursor is not supported yet: User.findMany include.posts: cursor inside include/select; use skip and take"
    );
    assert_eq!(
        err(
            "User",
            "update",
            json!({"where": {"id": "u"}, "data": {"score": {"increment": 1}}})
        ),
        "increment is not supported yet: on numeric(10,2) field User.score; read the value and use set"
    );
}

#[test]
fn unique_wheres_name_a_key_exactly() {
    assert_eq!(
        err("User", "findUnique", json!({"where": {"name": "Ann"}})),
        "User.findUnique: where must name exactly the primary key or a unique constraint of User (id | email); got {name}"
    );
    assert_eq!(
        err(
            "User",
            "update",
            json!({"where": {"id": "u", "email": "e"}, "data": {}})
        ),
        "User.update: where must name exactly the primary key or a unique constraint of User (id | email); got {id, email}"
    );
    assert_eq!(
        err("Like", "delete", json!({"where": {"userId": "u"}})),
        "Like.delete: where must name exactly the primary key or a unique constraint of Like (userId, postId); got {userId}"
    );
    assert_eq!(
        err("User", "findUnique", json!({"where": {"id": null}})),
        "User.id: a unique where cannot match null (type text)"
    );
    // Plain, {equals}, and Prisma's compound form.
    ok(
        "User",
        "findUnique",
        json!({"where": {"email": {"equals": "a@b"}}}),
    );
    ok(
        "Like",
        "findUnique",
        json!({"where": {"userId": "u", "postId": 1}}),
    );
    ok(
        "Like",
        "findUnique",
        json!({"where": {"userId_postId": {"userId": "u", "postId": 1}}}),
    );
    assert_eq!(
        err("Post", "findMany", json!({"cursor": {"title": "x"}})),
        "Post.cursor: where must name exactly the primary key or a unique constraint of Post (id); got {title}"
    );
}

#[test]
fn hostile_identifiers_never_reach_sql() {
    let hostile = "title\"; DROP TABLE x; --";
    for (model, args) in [
        ("Post", json!({"where": {hostile: 1}})),
        ("Post", json!({"orderBy": {hostile: "asc"}})),
        ("Post", json!({"select": {hostile: true}})),
        (
            "Post",
            json!({"where": {"AND": [{"OR": [{hostile: {"equals": 1}}]}]}}),
        ),
        ("Post", json!({"data": {hostile: 1}})),
    ] {
        let op = if args.get("data").is_some() {
            "create"
        } else {
            "findMany"
        };
        let e = err(model, op, args);
        assert!(
            e.starts_with("unknown field \"title\\\"; DROP TABLE x; --\" on model Post"),
            "{e}"
        );
    }
    assert!(
        err("User", "findMany", json!({"include": {hostile: true}}))
            .starts_with("unknown relation")
    );
    let e = plan(
        &schema(),
        "Post\"; DROP TABLE x; --",
        Operation::FindMany,
        &json!({}),
    )
    .unwrap_err();
    assert!(matches!(e, QueryError::UnknownModel { .. }));
    // A hostile value is bound, never spliced.
    let p = ok(
        "Post",
        "findMany",
        json!({"where": {"title": "'; DROP TABLE \"Post\"; --"}}),
    );
    for d in [Dialect::Sqlite, Dialect::Postgres] {
        let s = select(&p, d);
        assert!(!s.sql.contains("DROP"), "{}", s.sql);
        assert!(
            s.params
                .contains(&Value::Text("'; DROP TABLE \"Post\"; --".into()))
        );
    }
}

#[test]
fn nesting_is_capped() {
    let mut filter = json!({"views": 1});
    for _ in 0..20 {
        filter = json!({"NOT": filter});
    }
    assert_eq!(
        err("Post", "findMany", json!({"where": filter})),
        "Post.findMany where.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT.NOT: arguments nest more than 16 levels deep"
    );
    let mut include = json!(true);
    for i in 0..20 {
        include = if i % 2 == 1 {
            json!({"include": {"user": include}})
        } else {
            json!({"include": {"posts": include}})
        };
    }
    let e = err("Post", "findMany", include);
    assert!(
        e.ends_with("arguments nest more than 16 levels deep"),
        "{e}"
    );
    // Far deeper JSON is refused before any recursion.
    let mut deep = json!(1);
    for _ in 0..1000 {
        deep = json!([deep]);
    }
    assert_eq!(
        err("Post", "findMany", json!({"where": {"id": {"in": deep}}})),
        "Post.findMany: arguments nest more than 72 levels deep"
    );
    // 16 levels are fine.
    let mut filter = json!({"views": 1});
    for _ in 0..15 {
        filter = json!({"OR": [filter]});
    }
    ok("Post", "findMany", json!({"where": filter}));
}

#[test]
fn order_by_forms() {
    let order = |args: Json| match ok("Post", "findMany", args).body {
        Body::Read { query, .. } => query
            .order
            .iter()
            .map(|k| (k.column, k.desc, k.nulls_first))
            .collect::<Vec<_>>(),
        _ => unreachable!(),
    };
    assert_eq!(
        order(json!({"orderBy": {"views": "desc"}})),
        [(2, true, true)]
    );
    assert_eq!(
        order(json!({"orderBy": [{"views": "asc"}, {"title": "desc"}]})),
        [(2, false, false), (1, true, true)]
    );
    assert_eq!(
        order(json!({"orderBy": {"publishedAt": {"sort": "asc", "nulls": "first"}}})),
        [(4, false, true)]
    );
    assert_eq!(
        order(json!({"orderBy": [{"publishedAt": {"sort": "desc", "nulls": "last"}}]})),
        [(4, true, false)]
    );
    assert_eq!(order(json!({"orderBy": []})), []);
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"orderBy": {"views": "asc", "title": "desc"}})
        ),
        "Post.findMany orderBy: each orderBy object names exactly one field (got 2); use an array for several: [{\"a\": \"asc\"}, {\"b\": \"desc\"}]"
    );
    assert_eq!(
        err("Post", "findMany", json!({"orderBy": {"views": "up"}})),
        "Post.findMany orderBy.views: expected \"asc\" or \"desc\", got a string \"up\""
    );
    assert_eq!(
        err("User", "findMany", json!({"orderBy": {"meta": "asc"}})),
        "User.findMany orderBy: cannot order by User.meta (type jsonb): values of this type have no common order in the replica and the server"
    );
    assert_eq!(
        err("Post", "findMany", json!({"orderBy": "views"})),
        "Post.findMany orderBy: expected an object or an array of objects, got a string"
    );
}

#[test]
fn select_and_include_shapes() {
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"select": {"id": true}, "include": {"user": true}})
        ),
        "Post.findMany: use either select or include, not both"
    );
    assert_eq!(
        err("Post", "findMany", json!({"include": {"title": true}})),
        "Post.findMany include.title: Post.title is a field, not a relation; include takes relations (user), select takes fields"
    );
    assert_eq!(
        err("Post", "findMany", json!({"select": {"id": false}})),
        "Post.findMany select: select must choose at least one field"
    );
    assert_eq!(
        err(
            "Post",
            "findMany",
            json!({"include": {"user": {"where": {"id": "u"}}}})
        ),
        "unknown argument \"where\" for Post.findMany include.user (arguments: select, include)"
    );
    match ok(
        "Post",
        "findFirst",
        json!({"select": {"title": true, "id": true, "user": {"select": {"email": true}}}}),
    )
    .body
    {
        Body::Read { query, single } => {
            assert!(single);
            assert_eq!(query.take, Some(1));
            assert_eq!(
                query.shape.fields,
                [0, 1],
                "column order, not request order"
            );
            assert_eq!(query.shape.relations[0].query.shape.fields, [1]);
        }
        _ => unreachable!(),
    }
}

#[test]
fn written_values_get_the_type_modifier() {
    match ok("User", "create", json!({"data": {"id": "u", "email": "e", "score": "1.005", "createdAt": "2024-01-01T00:00:00+01:00", "active": true}})).body {
        Body::Create { data, .. } => {
            assert!(data.contains(&(4, Value::Text("1.01".into()))), "{data:?}");
            assert!(data.contains(&(5, Value::Text("2023-12-31T23:00:00.000000Z".into()))));
        }
        _ => unreachable!(),
    }
    match ok(
        "Like",
        "create",
        json!({"data": {"userId": "u", "postId": 1, "at": "2024-01-01T00:00:00.123456Z"}}),
    )
    .body
    {
        Body::Create { data, .. } => {
            assert_eq!(
                data[2],
                (2, Value::Text("2024-01-01T00:00:00.123000Z".into()))
            );
        }
        _ => unreachable!(),
    }
}

// ---- pinned SQL -----------------------------------------------------------

#[test]
fn pinned_find_many_sql() {
    let p = ok(
        "Post",
        "findMany",
        json!({"where": {"title": {"contains": "a", "mode": "insensitive"}, "views": {"gt": 3}}, "orderBy": [{"title": "desc"}], "take": 10, "skip": 5}),
    );
    let s = select(&p, Dialect::Sqlite);
    assert_eq!(
        s.sql,
        r#"SELECT "Post"."id", "Post"."title", "Post"."views", "Post"."userId", "Post"."publishedAt", "_outpost_rows"."status" AS "_outpost_status" FROM "Post" LEFT JOIN "_outpost_rows" ON "_outpost_rows"."table_name" = ? AND "_outpost_rows"."pk" = (json_array(CASE WHEN typeof("Post"."id") = 'blob' THEN hex("Post"."id") ELSE "Post"."id" END)) WHERE ((instr(outpost_lower("Post"."title"), outpost_lower(?)) > 0)) AND (("Post"."views" > ?)) ORDER BY "Post"."title" DESC NULLS FIRST, "Post"."id" ASC NULLS LAST LIMIT ? OFFSET ?"#
    );
    assert_eq!(
        s.params,
        [
            Value::Text("Post".into()),
            Value::Text("a".into()),
            Value::Int(3),
            Value::Int(10),
            Value::Int(5)
        ]
    );
    let s = select(&p, Dialect::Postgres);
    assert_eq!(
        s.sql,
        r#"SELECT "Post"."id", "Post"."title", "Post"."views", "Post"."userId", "Post"."publishedAt" FROM "public"."Post" WHERE ((strpos(lower("Post"."title"), lower($1::text)) > 0)) AND (("Post"."views" > $2::bigint)) ORDER BY "Post"."title" COLLATE "C" DESC NULLS FIRST, "Post"."id" ASC NULLS LAST LIMIT $3 OFFSET $4"#
    );
    assert_eq!(
        s.params,
        [
            Value::Text("a".into()),
            Value::Int(3),
            Value::Int(10),
            Value::Int(5)
        ]
    );
}

#[test]
fn pinned_numeric_enum_and_text_sql() {
    let p = ok(
        "User",
        "findMany",
        json!({"where": {"score": {"gte": "1.5"}, "role": {"lt": "ADMIN"}, "NOT": {"name": {"endsWith": "x"}}}, "orderBy": {"role": "asc"}}),
    );
    let s = select(&p, Dialect::Sqlite);
    assert_eq!(
        s.sql,
        r#"SELECT "User"."id", "User"."email", "User"."name", "User"."age", "User"."score", "User"."createdAt", "User"."active", "User"."role", "User"."meta", "_outpost_rows"."status" AS "_outpost_status" FROM "User" LEFT JOIN "_outpost_rows" ON "_outpost_rows"."table_name" = ? AND "_outpost_rows"."pk" = (json_array(CASE WHEN typeof("User"."id") = 'blob' THEN hex("User"."id") ELSE "User"."id" END)) WHERE (("User"."score" COLLATE "outpost_numeric" >= ?)) AND (((CASE "User"."role" WHEN ? THEN 0 WHEN ? THEN 1 END) < ?)) AND (NOT ((substr("User"."name", length("User"."name") - length(?) + 1) = ?))) ORDER BY (CASE "User"."role" WHEN ? THEN 0 WHEN ? THEN 1 END) ASC NULLS LAST, "User"."id" ASC NULLS LAST"#
    );
    let s = select(&p, Dialect::Postgres);
    assert_eq!(
        s.sql,
        r#"SELECT "User"."id", "User"."email", "User"."name", "User"."age", "User"."score", "User"."createdAt", "User"."active", "User"."role", "User"."meta" FROM "public"."User" WHERE (("User"."score" >= $1::numeric)) AND (("User"."role" < $2::"Role")) AND (NOT ((right("User"."name", length($3::text)) = $4::text))) ORDER BY "User"."role" ASC NULLS LAST, "User"."id" COLLATE "C" ASC NULLS LAST"#
    );
    assert_eq!(
        s.params,
        [
            Value::Text("1.5".into()),
            Value::Text("ADMIN".into()),
            Value::Text("x".into()),
            Value::Text("x".into())
        ]
    );
}

#[test]
fn pinned_count_and_write_sql() {
    let schema = schema();
    let p = ok("Post", "count", json!({"where": {"views": 3}, "take": 2}));
    assert_eq!(
        select(&p, Dialect::Sqlite).sql,
        r#"SELECT COUNT(*) FROM (SELECT 1 FROM "Post" WHERE "Post"."views" = ? ORDER BY "Post"."id" ASC NULLS LAST LIMIT ?) AS "_outpost_count""#
    );
    assert_eq!(
        select(&p, Dialect::Postgres).sql,
        r#"SELECT COUNT(*) FROM (SELECT 1 FROM "public"."Post" WHERE "Post"."views" = ($1::bigint) ORDER BY "Post"."id" ASC NULLS LAST LIMIT $2) AS "_outpost_count""#
    );
    let p = ok(
        "Post",
        "updateMany",
        json!({"where": {"id": {"in": [1, 2]}}, "data": {"views": {"increment": 1}, "title": "x"}}),
    );
    let Body::UpdateMany { filter, set } = &p.body else {
        unreachable!()
    };
    let post = schema.table("Post").unwrap();
    let lite = Builder {
        dialect: Dialect::Sqlite,
        schema: &schema,
        scopes: None,
    };
    let pg = Builder {
        dialect: Dialect::Postgres,
        schema: &schema,
        scopes: None,
    };
    let s = lite.update(post, set, filter).unwrap();
    assert_eq!(
        s.sql,
        r#"UPDATE "Post" SET "title" = ?, "views" = "views" + ? WHERE "Post"."id" IN (?, ?) RETURNING "id", "title", "views", "userId", "publishedAt""#
    );
    assert_eq!(
        s.params,
        [
            Value::Text("x".into()),
            Value::Int(1),
            Value::Int(1),
            Value::Int(2)
        ]
    );
    assert_eq!(
        pg.update(post, set, filter).unwrap().sql,
        r#"UPDATE "public"."Post" SET "title" = $1, "views" = "views" + $2 WHERE "Post"."id" IN ($3::bigint, $4::bigint) RETURNING "id", "title", "views", "userId", "publishedAt""#
    );
    assert_eq!(
        pg.delete(post, filter).unwrap().sql,
        r#"DELETE FROM "public"."Post" WHERE "Post"."id" IN ($1::bigint, $2::bigint) RETURNING "id", "title", "views", "userId", "publishedAt""#
    );
    let row = vec![
        Value::Int(1),
        Value::Text("t".into()),
        Value::Int(0),
        Value::Text("u".into()),
    ];
    assert_eq!(
        lite.insert(post, &[0, 1, 2, 3], std::slice::from_ref(&row), true)
            .unwrap()
            .sql,
        r#"INSERT INTO "Post" ("id", "title", "views", "userId") VALUES (?, ?, ?, ?) ON CONFLICT  DO NOTHING RETURNING "id", "title", "views", "userId", "publishedAt""#
    );
    assert_eq!(
        pg.insert(post, &[0, 1, 2, 3], &[row], false).unwrap().sql,
        r#"INSERT INTO "public"."Post" ("id", "title", "views", "userId") VALUES ($1, $2, $3, $4) RETURNING "id", "title", "views", "userId", "publishedAt""#
    );
}

// ---- execution over a scripted driver ----------------------------------

/// Answers statements from a script and records them.
struct Scripted {
    answers: Vec<Vec<Vec<Value>>>,
    seen: Vec<Statement>,
    fill: fn(&mut std::collections::BTreeMap<String, Value>) -> Result<(), QueryError>,
}

impl Driver for Scripted {
    type Error = QueryError;

    async fn query(&mut self, statement: &Statement) -> Result<Vec<Vec<Value>>, QueryError> {
        self.seen.push(statement.clone());
        Ok(if self.answers.is_empty() {
            Vec::new()
        } else {
            self.answers.remove(0)
        })
    }

    fn fill(
        &mut self,
        _: &outpost_core::Table,
        row: &mut std::collections::BTreeMap<String, Value>,
    ) -> Result<(), QueryError> {
        (self.fill)(row)
    }
}

fn run_scripted(
    model: &str,
    op: &str,
    args: Json,
    driver: &mut Scripted,
) -> Result<crate::QueryOutput, QueryError> {
    run_scripted_on(&schema(), model, op, args, driver, ExecOptions::server())
}

fn run_scripted_on(
    schema: &Schema,
    model: &str,
    op: &str,
    args: Json,
    driver: &mut Scripted,
    options: ExecOptions,
) -> Result<crate::QueryOutput, QueryError> {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let op: Operation = op.parse().unwrap();
    let p = plan(schema, model, op, &args).unwrap_or_else(|e| panic!("{args}: {e}"));
    let fut = execute(driver, schema, &p, &options);
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the scripted driver never waits"),
    }
}

fn post_row(id: i64, user: &str) -> Vec<Value> {
    vec![
        Value::Int(id),
        Value::Text(format!("t{id}")),
        Value::Int(0),
        Value::Text(user.into()),
        Value::Null,
    ]
}

fn user_row(id: &str) -> Vec<Value> {
    vec![
        Value::Text(id.into()),
        Value::Text(format!("{id}@x")),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Text("2024-01-01T00:00:00.000000Z".into()),
        Value::Bool(true),
        Value::Null,
        Value::Null,
    ]
}

#[test]
fn relations_load_with_one_statement_per_level() {
    let mut d = Scripted {
        answers: vec![
            vec![
                post_row(1, "u1"),
                post_row(2, "u1"),
                post_row(3, "u2"),
                post_row(4, "u3"),
            ],
            vec![user_row("u1"), user_row("u2")],
            vec![
                post_row(1, "u1"),
                post_row(2, "u1"),
                post_row(3, "u2"),
                post_row(9, "u2"),
            ],
        ],
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let out = run_scripted(
        "Post",
        "findMany",
        json!({"select": {"id": true, "user": {"select": {"id": true, "posts": {"select": {"id": true}, "take": 1, "skip": 1}}}}}),
        &mut d,
    )
    .unwrap();
    assert_eq!(d.seen.len(), 3, "posts, their users, the users' posts");
    // The parents' keys as one array parameter (its JSON text, typed by
    // the server's parameter type when bound).
    assert_eq!(
        d.seen[1].params,
        [Value::Text(r#"["u1","u2","u3"]"#.into())]
    );
    assert!(
        d.seen[1].sql.contains(r#""User"."id" = ANY($1::text[])"#),
        "{}",
        d.seen[1].sql
    );
    assert_eq!(
        out.result,
        json!([
            {"id": 1, "user": {"id": "u1", "posts": [{"id": 2}]}},
            {"id": 2, "user": {"id": "u1", "posts": [{"id": 2}]}},
            {"id": 3, "user": {"id": "u2", "posts": [{"id": 9}]}},
            {"id": 4, "user": null}
        ])
    );
    assert!(out.written.is_empty());
}

#[test]
fn inserts_are_filled_and_checked() {
    // fill adds the id; the row is inserted, then read back.
    let mut d = Scripted {
        answers: vec![vec![post_row(7, "u1")], vec![post_row(7, "u1")]],
        seen: Vec::new(),
        fill: |row| {
            row.insert("id".into(), Value::Int(7));
            Ok(())
        },
    };
    let out = run_scripted(
        "Post",
        "create",
        json!({"data": {"title": "t7", "views": 0, "userId": "u1"}}),
        &mut d,
    )
    .unwrap();
    assert_eq!(d.seen[0].params[0], Value::Int(7));
    assert_eq!(out.result["id"], json!(7));
    assert_eq!(out.written.len(), 1);
    assert_eq!(out.written[0].pk, [Value::Int(7)]);

    // Without an id (no default), the row is refused before any SQL.
    let mut d = Scripted {
        answers: vec![],
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let e = run_scripted(
        "Post",
        "create",
        json!({"data": {"title": "t", "views": 0, "userId": "u1"}}),
        &mut d,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "Post.create: missing required field(s) id");
    assert!(d.seen.is_empty());

    let mut d = Scripted {
        answers: vec![],
        seen: Vec::new(),
        fill: |row| {
            row.insert("nope".into(), Value::Int(1));
            Ok(())
        },
    };
    let e = run_scripted(
        "Post",
        "create",
        json!({"data": {"id": 1, "title": "t", "views": 0, "userId": "u1"}}),
        &mut d,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Post: row refused: fill added \"nope\", which is not a field of Post"
    );
}

#[test]
fn sync_status_is_joined_only_for_tables_with_entries() {
    // Posts have no _outpost_rows entry (the probe says 0): no join, every
    // post SYNCED. Users have entries: joined, NULL meaning SYNCED.
    let with_status = |mut row: Vec<Value>, status: Option<&str>| {
        row.push(status.map_or(Value::Null, |s| Value::Text(s.into())));
        row
    };
    let mut d = Scripted {
        answers: vec![
            vec![vec![Value::Int(0)]],
            vec![post_row(1, "u1"), post_row(2, "u2"), post_row(3, "u1")],
            vec![vec![Value::Int(1)]],
            vec![
                with_status(user_row("u1"), Some("PENDING")),
                with_status(user_row("u2"), None),
            ],
        ],
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let out = run_scripted_on(
        &schema(),
        "Post",
        "findMany",
        json!({"select": {"id": true, "user": {"select": {"id": true}}}}),
        &mut d,
        ExecOptions::replica(true),
    )
    .unwrap();
    assert_eq!(d.seen.len(), 4);
    assert_eq!(
        d.seen[0].sql,
        r#"SELECT EXISTS(SELECT 1 FROM "_outpost_rows" WHERE "table_name" = ?)"#
    );
    assert_eq!(d.seen[0].params, [Value::Text("Post".into())]);
    assert!(
        !d.seen[1].sql.contains("_outpost_rows"),
        "{}",
        d.seen[1].sql
    );
    assert_eq!(d.seen[2].params, [Value::Text("User".into())]);
    assert!(
        d.seen[3].sql.contains(r#"LEFT JOIN "_outpost_rows""#),
        "{}",
        d.seen[3].sql
    );
    assert_eq!(
        out.result,
        json!([
            {"id": 1, "syncStatus": "SYNCED", "user": {"id": "u1", "syncStatus": "PENDING"}},
            {"id": 2, "syncStatus": "SYNCED", "user": {"id": "u2", "syncStatus": "SYNCED"}},
            {"id": 3, "syncStatus": "SYNCED", "user": {"id": "u1", "syncStatus": "PENDING"}}
        ])
    );
    // Field order is the output's order.
    let keys: Vec<&String> = out.result[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "syncStatus", "user"]);
}

#[test]
fn a_column_named_like_the_status_field_gives_way_in_place() {
    // As when each record was built by inserting its fields in order: the
    // status overwrites the column's value, in the column's position.
    let t = Table {
        name: "Note".into(),
        columns: vec![
            col("id", ScalarType::Int8, "bigint", false),
            col("syncStatus", ScalarType::Text, "text", true),
            col("body", ScalarType::Text, "text", true),
        ],
        primary_key: vec!["id".into()],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    };
    let schema = Schema {
        pg_schema: "public".into(),
        tables: vec![t],
        enums: vec![],
    }
    .finish();
    let row = |id: i64| {
        vec![
            Value::Int(id),
            Value::Text("mine".into()),
            Value::Text(format!("b{id}")),
        ]
    };
    let mut d = Scripted {
        answers: vec![vec![vec![Value::Int(0)]], vec![row(1), row(2)]],
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let out = run_scripted_on(
        &schema,
        "Note",
        "findMany",
        json!({}),
        &mut d,
        ExecOptions::replica(true),
    )
    .unwrap();
    assert_eq!(
        out.result,
        json!([
            {"id": 1, "syncStatus": "SYNCED", "body": "b1"},
            {"id": 2, "syncStatus": "SYNCED", "body": "b2"}
        ])
    );
    let keys: Vec<&String> = out.result[1].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "syncStatus", "body"]);
    // Without the status, the column's own value.
    let mut d = Scripted {
        answers: vec![vec![row(1)]],
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let out = run_scripted_on(
        &schema,
        "Note",
        "findMany",
        json!({}),
        &mut d,
        ExecOptions::server(),
    )
    .unwrap();
    assert_eq!(
        out.result,
        json!([{"id": 1, "syncStatus": "mine", "body": "b1"}])
    );
}

#[test]
fn a_deleted_record_is_read_before_its_delete() {
    let mut d = Scripted {
        answers: vec![vec![post_row(4, "u1")], vec![post_row(4, "u1")]],
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let out = run_scripted("Post", "delete", json!({"where": {"id": 4}}), &mut d).unwrap();
    assert_eq!(out.result["title"], json!("t4"));
    assert_eq!(d.seen[1].params, [Value::Int(4)]);
    assert_eq!(out.written.len(), 1);
    assert_eq!(out.written[0].pk, [Value::Int(4)]);
    assert_eq!(out.written[0].values, None);
}

// ---- typed reads ---------------------------------------------------------

/// The same read, once as JSON records (`execute`) and once as
/// [`crate::Records`] (`execute_read`), each over its own copy of the
/// script.
fn both_ways(
    schema: &Schema,
    model: &str,
    op: &str,
    args: Json,
    answers: Vec<Vec<Vec<Value>>>,
    options: ExecOptions,
) -> (Json, crate::Records) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut d = Scripted {
        answers: answers.clone(),
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let json = run_scripted_on(schema, model, op, args.clone(), &mut d, options)
        .unwrap()
        .result;
    let mut d = Scripted {
        answers,
        seen: Vec::new(),
        fill: |_| Ok(()),
    };
    let op: Operation = op.parse().unwrap();
    let p = plan(schema, model, op, &args).unwrap();
    let fut = crate::execute_read(&mut d, schema, &p, &options);
    let mut fut = std::pin::pin!(fut);
    let records = match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out.unwrap(),
        Poll::Pending => panic!("the scripted driver never waits"),
    };
    (json, records)
}

/// `Records::deserialize::<T>` gives what `serde_json::from_value::<T>`
/// gives for each JSON record: the same values, or an error for both.
fn agrees<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    json: &Json,
    records: crate::Records,
) -> Result<Vec<T>, String> {
    let items = match json {
        Json::Array(items) => items.clone(),
        Json::Null => vec![],
        one => vec![one.clone()],
    };
    let expected: Result<Vec<T>, _> = items.into_iter().map(serde_json::from_value).collect();
    // Serialized, the same JSON text.
    assert_eq!(serde_json::to_string(&records).unwrap(), json.to_string());
    let got = records.deserialize::<T>();
    match (expected, got) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            Ok(b)
        }
        (Err(_), Err(e)) => Err(e.to_string()),
        (a, b) => panic!("from_value gave {a:?}, Records::deserialize gave {b:?}"),
    }
}

fn thing_schema() -> Schema {
    let arr = |name: &str, scalar: ScalarType, pg: &str| Column {
        ty: ColumnType {
            scalar,
            array: true,
            pg_name: pg.into(),
            domain: None,
        },
        ..col(name, ScalarType::Text, pg, true)
    };
    let thing = Table {
        name: "Thing".into(),
        columns: vec![
            col("id", ScalarType::Int8, "bigint", false),
            col("big", ScalarType::Int8, "bigint", true),
            col("f", ScalarType::Float8, "double precision", true),
            col("n", ScalarType::Numeric, "numeric", true),
            col("by", ScalarType::Bytea, "bytea", true),
            col("j", ScalarType::Jsonb, "jsonb", true),
            col("at", ScalarType::Timestamptz, "timestamptz", true),
            col("mood", ScalarType::Enum("Mood".into()), "\"Mood\"", true),
            col("ok", ScalarType::Bool, "boolean", true),
            arr("tags", ScalarType::Text, "text[]"),
            arr("nums", ScalarType::Int8, "bigint[]"),
            arr("docs", ScalarType::Jsonb, "jsonb[]"),
        ],
        primary_key: vec!["id".into()],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    };
    Schema {
        pg_schema: "public".into(),
        tables: vec![thing],
        enums: vec![EnumType {
            name: "Mood".into(),
            labels: vec!["happy".into(), "sad".into()],
        }],
    }
    .finish()
}

fn thing_rows() -> Vec<Vec<Value>> {
    let big = 9_007_199_254_740_993;
    vec![
        vec![
            Value::Int(1),
            Value::Int(big),
            Value::Float(1.5),
            Value::Text("1.50".into()),
            Value::Bytes(vec![0, 1, 255]),
            Value::Json(r#"{"a": [1, 2.5, null], "b": "x", "n": -3}"#.into()),
            Value::Text("2024-01-01T00:00:00.000000Z".into()),
            Value::Text("happy".into()),
            Value::Bool(true),
            Value::Array(vec![Value::Text("x".into()), Value::Null]),
            Value::Array(vec![Value::Int(big), Value::Int(-1), Value::Int(2)]),
            Value::Array(vec![
                Value::Json("null".into()),
                Value::Json(r#"{"k":1}"#.into()),
            ]),
        ],
        vec![
            Value::Int(2),
            Value::Int(-big),
            Value::Float(f64::NAN),
            Value::Text("NaN".into()),
            Value::Bytes(vec![]),
            Value::Json("null".into()),
            Value::Null,
            Value::Text("sad".into()),
            Value::Bool(false),
            Value::Array(vec![]),
            Value::Null,
            Value::Null,
        ],
        vec![
            Value::Int(3),
            Value::Int(-7),
            Value::Float(f64::NEG_INFINITY),
            Value::Null,
            Value::Null,
            Value::Json("not json".into()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Array(vec![Value::Null]),
            Value::Array(vec![]),
        ],
        vec![
            Value::Int(4),
            Value::Int(0),
            Value::Float(-0.0),
            Value::Text("-12345678901234567890.000001".into()),
            Value::Null,
            Value::Json("[1, \"two\", {\"three\": 3}]".into()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
    ]
}

#[test]
fn typed_reads_give_what_the_json_records_give() {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    // Every value kind, read as JSON, as self-describing types and as
    // structs: the same as `from_value` of the JSON records.
    let schema = thing_schema();
    let (json, records) = both_ways(
        &schema,
        "Thing",
        "findMany",
        json!({}),
        vec![thing_rows()],
        ExecOptions::server(),
    );
    let got: Vec<Json> = agrees(&json, records).unwrap();
    assert_eq!(Json::Array(got.clone()), json);
    // Keys in the same order (Json equality ignores it).
    for (a, b) in got.iter().zip(json.as_array().unwrap()) {
        let ka: Vec<&String> = a.as_object().unwrap().keys().collect();
        let kb: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(ka, kb);
    }
    assert_eq!(got[0]["big"], json!("9007199254740993"));
    assert_eq!(got[0]["by"], json!("AAH/"));
    assert_eq!(got[1]["f"], json!("NaN"));

    let run = || {
        both_ways(
            &schema,
            "Thing",
            "findMany",
            json!({}),
            vec![thing_rows()],
            ExecOptions::server(),
        )
    };
    let (json, records) = run();
    agrees::<BTreeMap<String, Json>>(&json, records).unwrap();

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mood {
        Happy,
        Sad,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Thing {
        id: u32,
        big: Json,
        f: Json,
        n: Option<String>,
        by: Option<String>,
        j: Option<Json>,
        at: Option<String>,
        mood: Option<Mood>,
        ok: Option<bool>,
        tags: Option<Vec<Option<String>>>,
        nums: Option<Vec<Json>>,
        docs: Option<Vec<String>>,
    }
    let (json, records) = run();
    let things: Vec<Thing> = agrees(&json, records).unwrap();
    assert_eq!(things[0].mood, Some(Mood::Happy));
    assert_eq!(
        things[1].j, None,
        "the document null is None, as from_value has it"
    );
    assert_eq!(
        things[0].docs,
        Some(vec!["null".into(), r#"{"k":1}"#.into()])
    );

    // A struct with a newtype, an untagged enum, a flattened rest, an
    // ignored field.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Id(i64);
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Big {
        Number(i64),
        Text(String),
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Partial {
        id: Id,
        big: Big,
        #[serde(flatten)]
        rest: BTreeMap<String, Json>,
    }
    let (json, records) = run();
    let partial: Vec<Partial> = agrees(&json, records).unwrap();
    assert_eq!(partial[2].big, Big::Number(-7));
    #[derive(Debug, PartialEq, Deserialize)]
    struct Few {
        id: i64,
    }
    let (json, records) = run();
    agrees::<Few>(&json, records).unwrap();

    // Values that do not fit: an error for both, naming where.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Wrong {
        id: i64,
        big: i64,
    }
    let (json, records) = run();
    let e = agrees::<Wrong>(&json, records).unwrap_err();
    assert_eq!(
        e,
        "[0].big: invalid type: string \"9007199254740993\", expected i64"
    );
    #[derive(Debug, PartialEq, Deserialize)]
    struct Missing {
        id: i64,
        nope: String,
    }
    let (json, records) = run();
    let e = agrees::<Missing>(&json, records).unwrap_err();
    assert_eq!(e, "[0]: missing field `nope`");
    let (json, records) = run();
    let e = agrees::<(i64, i64)>(&json, records).unwrap_err();
    assert!(e.starts_with("[0]: invalid type: map"), "{e}");
    #[derive(Debug, PartialEq, Deserialize)]
    struct BadMood {
        mood: Option<u8>,
    }
    let (json, records) = run();
    let e = agrees::<BadMood>(&json, records).unwrap_err();
    assert_eq!(e, "[0].mood: invalid type: string \"happy\", expected u8");
}

#[test]
fn typed_reads_of_relations_and_status_give_what_the_json_records_give() {
    use serde::Deserialize;

    // Shared users with their own to-many posts (each visited as often as
    // its posts are), a missing user, syncStatus from the rows.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        id: i64,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct User {
        id: String,
        posts: Vec<Inner>,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Post {
        id: i64,
        user: Option<User>,
    }
    let answers = || {
        vec![
            vec![
                post_row(1, "u1"),
                post_row(2, "u1"),
                post_row(3, "u2"),
                post_row(4, "u3"),
            ],
            vec![user_row("u1"), user_row("u2")],
            vec![
                post_row(1, "u1"),
                post_row(2, "u1"),
                post_row(3, "u2"),
                post_row(9, "u2"),
            ],
        ]
    };
    let args = json!({"select": {"id": true, "user": {"select": {"id": true, "posts": {"select": {"id": true}, "take": 1, "skip": 1}}}}});
    let run = || {
        both_ways(
            &schema(),
            "Post",
            "findMany",
            args.clone(),
            answers(),
            ExecOptions::server(),
        )
    };
    let (json, records) = run();
    let got: Vec<Json> = agrees(&json, records).unwrap();
    assert_eq!(Json::Array(got), json);
    let (json, records) = run();
    let posts: Vec<Post> = agrees(&json, records).unwrap();
    assert_eq!(posts[1].user.as_ref().map(|u| u.posts.len()), Some(1));
    assert_eq!(posts[3].user, None);
    // A user is required: the missing one is an error, with its place.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Strict {
        user: User,
    }
    let (json, records) = run();
    let e = agrees::<Strict>(&json, records).unwrap_err();
    assert_eq!(e, "[3].user: invalid type: null, expected struct User");
    // Wrong type deep inside.
    #[derive(Debug, PartialEq, Deserialize)]
    struct DeepInner {
        id: String,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct DeepUser {
        posts: Vec<DeepInner>,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Deep {
        user: Option<DeepUser>,
    }
    let (json, records) = run();
    let e = agrees::<Deep>(&json, records).unwrap_err();
    assert_eq!(
        e,
        "[0].user.posts[0].id: invalid type: integer `2`, expected a string"
    );

    // findFirst: at most one record; syncStatus on the replica.
    let with_status = |mut row: Vec<Value>, status: Option<&str>| {
        row.push(status.map_or(Value::Null, |s| Value::Text(s.into())));
        row
    };
    let answers = vec![
        vec![vec![Value::Int(1)]],
        vec![
            with_status(post_row(1, "u1"), Some("PENDING")),
            with_status(post_row(2, "u1"), None),
        ],
        vec![vec![Value::Int(0)]],
        vec![user_row("u1")],
    ];
    for op in ["findMany", "findFirst"] {
        let (json, records) = both_ways(
            &schema(),
            "Post",
            op,
            json!({"include": {"user": true}}),
            answers.clone(),
            ExecOptions::replica(true),
        );
        let got: Vec<Json> = agrees(&json, records).unwrap();
        assert_eq!(got[0]["syncStatus"], "PENDING");
        assert_eq!(got[0]["user"]["syncStatus"], "SYNCED");
        if op == "findFirst" {
            assert_eq!(got, std::slice::from_ref(&json));
        } else {
            assert_eq!(Json::Array(got), json);
        }
    }
}

#[test]
fn typed_reads_keep_a_repeated_name_in_place() {
    // A column called syncStatus: first position, the status's value.
    let t = Table {
        name: "Note".into(),
        columns: vec![
            col("id", ScalarType::Int8, "bigint", false),
            col("syncStatus", ScalarType::Text, "text", true),
            col("body", ScalarType::Text, "text", true),
        ],
        primary_key: vec!["id".into()],
        foreign_keys: vec![],
        uniques: vec![],
        relations: vec![],
    };
    let schema = Schema {
        pg_schema: "public".into(),
        tables: vec![t],
        enums: vec![],
    }
    .finish();
    let row = vec![
        Value::Int(1),
        Value::Text("mine".into()),
        Value::Text("b".into()),
    ];
    let (json, records) = both_ways(
        &schema,
        "Note",
        "findMany",
        json!({}),
        vec![vec![vec![Value::Int(0)]], vec![row]],
        ExecOptions::replica(true),
    );
    let got: Vec<Json> = agrees(&json, records).unwrap();
    let keys: Vec<&String> = got[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "syncStatus", "body"]);
    assert_eq!(got[0]["syncStatus"], "SYNCED");
}

/// Scoped (a gateway's sync rules): the server's reads take the table's
/// rows through its condition, with the table its own alias inside, and
/// its updates and deletes add the condition; a table the scopes do not
/// name reads as empty; SQLite statements are never scoped.
#[test]
fn scoped_statements_read_and_write_only_rows_in_scope() {
    let schema = schema();
    let scopes: crate::Scopes = [(
        "Post".to_string(),
        "\"userId\" = current_setting('outpost.claim.sub')".to_string(),
    )]
    .into_iter()
    .collect();
    let pg = Builder {
        dialect: Dialect::Postgres,
        schema: &schema,
        scopes: Some(&scopes),
    };
    let scoped = r#"(SELECT * FROM "public"."Post" AS "Post" WHERE (
"userId" = current_setting('outpost.claim.sub')
)) AS "Post""#;
    let p = ok("Post", "findMany", json!({"where": {"views": 1}}));
    let Body::Read { query, .. } = &p.body else {
        unreachable!()
    };
    let s = pg.select(query, None, true, false).unwrap();
    assert!(s.sql.contains(&format!("FROM {scoped} WHERE")), "{}", s.sql);
    assert!(pg.count(query).unwrap().sql.contains(scoped));
    let p = ok("Post", "findMany", json!({"cursor": {"id": 3}}));
    let Body::Read { query, .. } = &p.body else {
        unreachable!()
    };
    let s = pg.select(query, None, true, false).unwrap();
    assert!(
        s.sql.contains(
            r#"')
)) AS "_outpost_cursor""#
        ),
        "the cursor row is read in scope too: {}",
        s.sql
    );
    let p = ok("Post", "deleteMany", json!({}));
    let Body::DeleteMany { filter } = &p.body else {
        unreachable!()
    };
    let post = schema.table("Post").unwrap();
    assert_eq!(
        pg.delete(post, filter).unwrap().sql,
        r#"DELETE FROM "public"."Post" WHERE (
"userId" = current_setting('outpost.claim.sub')
) RETURNING "id", "title", "views", "userId", "publishedAt""#
    );
    let p = ok("User", "findMany", json!({}));
    let Body::Read { query, .. } = &p.body else {
        unreachable!()
    };
    let s = pg.select(query, None, true, false).unwrap();
    assert!(s.sql.contains(r#"WHERE false) AS "User""#), "{}", s.sql);
    let lite = Builder {
        dialect: Dialect::Sqlite,
        schema: &schema,
        scopes: Some(&scopes),
    };
    assert!(
        !lite
            .select(query, None, true, false)
            .unwrap()
            .sql
            .contains("false")
    );
}
