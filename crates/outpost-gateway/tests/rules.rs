//! Sync rules through a real gateway against a real PostgreSQL
//! (docs/gateway.md, "Sync rules"): two nodes whose tokens name different
//! users see only their rows after the bootstrap and after pulls; rows
//! moving out of a node's scope leave its replica (a pending local edit on
//! one is `FAILED` naming the rule, never lost) and rows moving in arrive; forged
//! pushes are `FAILED` naming the rule while the rest lands; a child table
//! filtered through its parent by a subquery; a table without a rule is
//! not served; bad rules files stop the gateway at start; claim values are
//! bound, never spliced into SQL.

#[path = "../../outpost-engine/tests/common/mod.rs"]
mod common;
use common::gateway_support as support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{local, local_rows, server, sync};
use outpost_core::sync::{Direction, Trigger};
use outpost_core::types::Value;
use outpost_engine::{Engine, SyncOptions};
use outpost_testkit::TestDb;
use support::GatewayProcess;

/// The blog, a child table of `Post`, and a table no rule names.
const SCHEMA: &str = r#"
CREATE TABLE "User" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text, "updatedAt" timestamptz);
CREATE TABLE "Post" (id text PRIMARY KEY, title text NOT NULL, body text, views int NOT NULL DEFAULT 0,
  "userId" text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE);
CREATE TABLE "Comment" (id text PRIMARY KEY, "postId" text NOT NULL REFERENCES "Post"(id) ON DELETE CASCADE, body text);
CREATE TABLE "Secret" (id text PRIMARY KEY, v text);
INSERT INTO "User" (id, email) VALUES ('u1', 'u1@x'), ('u2', 'u2@x');
INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'one', 'u1'), ('p2', 'two', 'u2');
INSERT INTO "Comment" (id, "postId", body) VALUES ('c1', 'p1', 'on one'), ('c2', 'p2', 'on two');
INSERT INTO "Secret" (id, v) VALUES ('s1', 'nobody''s');
"#;

/// Users whole, posts by owner (`sub` is the user's id), comments through
/// their post (a subquery over the parent); `Secret` has no rule.
const RULES: &str = r#"
[[rule]]
table = "User"
where = 'true'

[[rule]]
table = "Post"
where = '"userId" = $sub'

# A child reachable through its parent.
[[rule]]
table = "Comment"
where = '"postId" IN (SELECT id FROM "Post" WHERE "userId" = $sub)'
"#;

struct Setup {
    db: TestDb,
    client: outpost_remote::tokio_postgres::Client,
    gw: GatewayProcess,
}

async fn setup(rules: &str) -> anyhow::Result<Setup> {
    setup_with(SCHEMA, rules).await
}

/// [`setup`] with another schema.
async fn setup_with(schema: &str, rules: &str) -> anyhow::Result<Setup> {
    let db = TestDb::new().await?;
    let (client, _) = server(&db, schema).await?;
    let path = db.dir().join("rules.toml");
    std::fs::write(&path, rules)?;
    let gw = GatewayProcess::start(
        &db,
        0,
        &[("OUTPOST_GATEWAY_RULES", &path.display().to_string())],
    )?;
    Ok(Setup { db, client, gw })
}

/// Syncs `node` in `direction` until no change is held back: the pull
/// horizon is cluster-wide, so other tests' open transactions can hold a
/// server commit back for a moment. The last run's report.
async fn settled(
    node: &Engine,
    direction: Direction,
) -> anyhow::Result<outpost_engine::SyncReport> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = node
            .sync(SyncOptions::new(direction, Trigger::Manual))
            .await?;
        if !report.held_back || std::time::Instant::now() > deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pull that brings every change committed before it.
async fn pull(node: &Engine) -> anyhow::Result<()> {
    let report = settled(node, Direction::FromServer).await?;
    anyhow::ensure!(report.success, "pull failed: {:?}", report.errors);
    Ok(())
}

/// The first column (the id) of every local row of `table`.
async fn ids(node: &Engine, table: &str) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = local_rows(node, table)
        .await?
        .into_iter()
        .filter_map(|r| match r.into_iter().next() {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// `(table, pk, status, error)` of the node's rows with local changes.
async fn states(node: &Engine) -> anyhow::Result<Vec<(String, String, String, Option<String>)>> {
    Ok(node
        .with_replica(|r| {
            let mut stmt = r
                .connection()
                .prepare(
                    "SELECT table_name, pk, status, error FROM _outpost_rows \
                     WHERE status <> 'SYNCED' ORDER BY table_name, pk",
                )
                .map_err(outpost_local::LocalError::sqlite("test"))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .map_err(outpost_local::LocalError::sqlite("test"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(outpost_local::LocalError::sqlite("test"))
        })
        .await?)
}

/// A node whose token carries `extra` claims besides `sub`.
async fn node_with_claims(
    db: &TestDb,
    gateway: &str,
    sub: &str,
    extra: serde_json::Value,
    name: &str,
) -> anyhow::Result<Engine> {
    let keys =
        outpost_gateway::auth::Keys::hs256(support::SECRET, None).map_err(anyhow::Error::msg)?;
    let extra = match extra {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let token = keys
        .create_with(sub, Duration::from_secs(3600), extra)
        .map_err(anyhow::Error::msg)?;
    support::node_with_token(db, gateway, &token, name).await
}

#[tokio::test]
async fn two_nodes_see_only_their_rows_after_bootstrap_and_pulls() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    let b = support::node(&s.db, &s.gw.url(), "u2", "b").await?;
    // The table without a rule is not in the schema a node is set up from.
    assert!(a.schema().table("Secret").is_none());
    assert!(a.schema().table("Post").is_some());

    assert!(sync(&a, Direction::Bidirectional).await?.bootstrapped);
    sync(&b, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "User").await?, ["u1", "u2"]);
    assert_eq!(ids(&a, "Post").await?, ["p1"]);
    assert_eq!(ids(&a, "Comment").await?, ["c1"]);
    assert_eq!(ids(&b, "Post").await?, ["p2"]);
    assert_eq!(ids(&b, "Comment").await?, ["c2"]);

    // Server inserts and edits: each node pulls only its own.
    s.client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p3', 'three', 'u1'), ('p4', 'four', 'u2');
               INSERT INTO "Comment" (id, "postId", body) VALUES ('c3', 'p3', 'x'), ('c4', 'p4', 'y');
               UPDATE "Post" SET title = 'two, edited' WHERE id = 'p2';"#,
        )
        .await?;
    pull(&a).await?;
    pull(&b).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1", "p3"]);
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c3"]);
    assert_eq!(ids(&b, "Post").await?, ["p2", "p4"]);
    assert_eq!(ids(&b, "Comment").await?, ["c2", "c4"]);
    // Nothing of the other user's rows in the replica file at all.
    let file = std::fs::read(s.db.dir().join("a.db"))?;
    let text = String::from_utf8_lossy(&file);
    assert!(!text.contains("two, edited") && !text.contains("four"));
    Ok(())
}

#[tokio::test]
async fn rows_moving_out_leave_the_replica_and_rows_moving_in_arrive() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    let b = support::node(&s.db, &s.gw.url(), "u2", "b").await?;
    sync(&a, Direction::Bidirectional).await?;
    sync(&b, Direction::Bidirectional).await?;

    // p1 changes hands: out of a's scope, into b's.
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    pull(&b).await?;
    assert_eq!(ids(&a, "Post").await?, Vec::<String>::new());
    assert_eq!(ids(&b, "Post").await?, ["p1", "p2"]);
    // p1's comment came with it.
    assert_eq!(ids(&b, "Comment").await?, ["c1", "c2"]);
    assert!(states(&a).await?.is_empty(), "{:?}", states(&a).await?);

    // And back, edited on the way.
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u1', title = 'back' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    pull(&b).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1"]);
    assert_eq!(ids(&b, "Post").await?, ["p2"]);
    let rows = local_rows(&a, "Post").await?;
    assert_eq!(rows[0][1], Value::Text("back".into()));

    // A child whose own row changes follows its condition too: c2 is
    // re-pointed at a's post and arrives; its old copy leaves b.
    s.client
        .batch_execute(r#"UPDATE "Comment" SET "postId" = 'p1' WHERE id = 'c2'"#)
        .await?;
    pull(&a).await?;
    pull(&b).await?;
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c2"]);
    // c1 left b with its parent p1 (on the pull that moved p1 back),
    // although c1 itself never changed.
    assert_eq!(ids(&b, "Comment").await?, Vec::<String>::new());
    Ok(())
}

/// `p1`'s row on the server: `(title, userId)`, if it exists.
async fn p1_on_server(s: &Setup) -> anyhow::Result<Option<(String, String)>> {
    Ok(s.client
        .query_opt(r#"SELECT title, "userId" FROM "Post" WHERE id = 'p1'"#, &[])
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Asserts the node lists `Post p1` alone, `FAILED` naming the rule that
/// refused it.
async fn p1_failed_by_the_rule(a: &Engine) -> anyhow::Result<()> {
    let left = states(a).await?;
    assert_eq!(left.len(), 1, "{left:?}");
    let (table, pk, status, error) = &left[0];
    assert_eq!((table.as_str(), pk.as_str()), ("Post", r#"["p1"]"#));
    assert_eq!(status, "FAILED", "{left:?}");
    let error = error.as_deref().unwrap_or_default();
    assert!(
        error.contains("refused by the sync rules") && error.contains("rule 2 (table \"Post\")"),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn a_row_moving_out_with_a_pending_local_edit_is_failed_naming_the_rule_not_lost()
-> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;

    // Offline edit on a's side; meanwhile the server gives p1 to u2.
    local(&a, r#"UPDATE "Post" SET title = 'mine' WHERE id = 'p1'"#).await?;
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p1'"#)
        .await?;
    settled(&a, Direction::Bidirectional).await?;
    // The push is refused (the row is outside the scope before the
    // change); the pull's deletion is the row leaving the scope, not a
    // server delete, so the refusal stands: FAILED naming the rule, the
    // local edit kept for the person to see.
    p1_failed_by_the_rule(&a).await?;
    let rows = local_rows(&a, "Post").await?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1], Value::Text("mine".into()));
    // The server row is untouched by the refused push.
    let before = Some(("one".to_string(), "u2".to_string()));
    assert_eq!(p1_on_server(&s).await?, before);

    // Discarding the edit leaves the row gone here (it is not this node's
    // any more) and untouched on the server; a later sync keeps it so.
    let discarded = a.discard_failed("Post", r#"["p1"]"#).await?;
    assert!(discarded.is_some_and(|d| d.row.is_none()));
    settled(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Post").await?, Vec::<String>::new());
    assert_eq!(states(&a).await?, Vec::new());
    assert_eq!(p1_on_server(&s).await?, before);
    Ok(())
}

/// Gateway campaign seed 140: a local delete pending when the pull brings
/// the row's move out of scope. Read as a server delete, it agreed with the
/// local one and the row settled `SYNCED`: the delete vanished while the
/// row lived on for its new owner. It is the rules' to refuse.
#[tokio::test]
async fn a_pending_delete_of_a_row_that_left_the_scope_is_failed_not_agreed() -> anyhow::Result<()>
{
    let s = setup(RULES).await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;

    local(&a, r#"DELETE FROM "Post" WHERE id = 'p1'"#).await?;
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p1'"#)
        .await?;
    // The pull alone first, as when the delete is committed while a run
    // is between its push and its pull.
    pull(&a).await?;
    let left = states(&a).await?;
    assert_eq!(left.len(), 1, "the local delete is still owed: {left:?}");
    assert_eq!(left[0].2, "PENDING", "{left:?}");
    settled(&a, Direction::Bidirectional).await?;
    p1_failed_by_the_rule(&a).await?;
    assert_eq!(ids(&a, "Post").await?, Vec::<String>::new());
    let owned = Some(("one".to_string(), "u2".to_string()));
    assert_eq!(p1_on_server(&s).await?, owned);
    Ok(())
}

#[tokio::test]
async fn forged_pushes_fail_naming_the_rule_and_the_rest_lands() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    s.client
        .batch_execute(r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p7', 'seven', 'u2')"#)
        .await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;

    // Forged: another user's new post (p9), an existing post of another
    // user written as an insert (p2), a comment on another user's post
    // (c8); legitimate: a new post (p5) with a comment (c9), an edit (p1).
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('p9', 'forged', 0, 'u2');
           INSERT INTO "Post" (id, title, views, "userId") VALUES ('p2', 'overwrite', 0, 'u1');
           INSERT INTO "Post" (id, title, views, "userId") VALUES ('p5', 'legit', 0, 'u1');
           UPDATE "Post" SET title = 'one, edited' WHERE id = 'p1';
           INSERT INTO "Comment" (id, "postId", body) VALUES ('c8', 'p7', 'on their post');
           INSERT INTO "Comment" (id, "postId", body) VALUES ('c9', 'p5', 'on my new post');"#,
    )
    .await?;
    let report = a
        .sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    let post = report.results.get("Post").cloned();
    assert_eq!(
        post.as_ref().map(|s| s.records_failed),
        Some(2),
        "{report:?}"
    );
    assert_eq!(
        post.as_ref().map(|s| s.records_succeeded),
        Some(2),
        "{report:?}"
    );

    let left = states(&a).await?;
    let failed: BTreeSet<(String, String)> = left
        .iter()
        .filter(|r| r.2 == "FAILED")
        .map(|r| (r.0.clone(), r.1.clone()))
        .collect();
    let expect: BTreeSet<(String, String)> = [
        ("Comment", r#"["c8"]"#),
        ("Post", r#"["p2"]"#),
        ("Post", r#"["p9"]"#),
    ]
    .iter()
    .map(|(t, k)| (t.to_string(), k.to_string()))
    .collect();
    assert_eq!(failed, expect, "{left:?}");
    for (t, pk, _, error) in left.iter().filter(|r| r.2 == "FAILED") {
        let error = error.as_deref().unwrap_or_default();
        assert!(
            error.contains("refused by the sync rules"),
            "{t} {pk}: {error}"
        );
        let when = if pk.contains("p2") { "before" } else { "after" };
        assert!(
            error.contains(&format!("scope {when} the change")),
            "{t} {pk}: {error}"
        );
        let rule = if t == "Post" {
            "rule 2 (table \"Post\")"
        } else {
            "rule 3 (table \"Comment\")"
        };
        assert!(error.contains(rule), "{t} {pk}: {error}");
    }

    // On the server: the legitimate rows landed, the forged ones did not,
    // and the other user's row is untouched.
    let rows: Vec<String> = s
        .client
        .query(
            r#"SELECT id || ':' || title || ':' || "userId" FROM "Post" ORDER BY id"#,
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [
            "p1:one, edited:u1",
            "p2:two:u2",
            "p5:legit:u1",
            "p7:seven:u2"
        ]
    );
    let comments: Vec<String> = s
        .client
        .query(r#"SELECT id FROM "Comment" ORDER BY id"#, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(comments, ["c1", "c2", "c9"]);

    // Moving its own row to another user is refused too (outside the
    // scope after the change); the row stays a's on the server.
    local(&a, r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p5'"#).await?;
    a.sync(SyncOptions::new(Direction::ToServer, Trigger::Manual))
        .await?;
    let owner: String = s
        .client
        .query_one(r#"SELECT "userId" FROM "Post" WHERE id = 'p5'"#, &[])
        .await?
        .get(0);
    assert_eq!(owner, "u1");
    let left = states(&a).await?;
    let p5 = left.iter().find(|r| r.1.contains("p5"));
    assert!(
        p5.is_some_and(|r| r.2 == "FAILED"
            && r.3
                .as_deref()
                .is_some_and(|e| e.contains("after the change"))),
        "{left:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_table_without_a_rule_is_not_served() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let token = support::token("u1", Duration::from_secs(3600))?;
    let http = reqwest::Client::new();
    let schema: serde_json::Value = http
        .get(format!("{}/v1/schema", s.gw.url()))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<String> = schema["tables"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["Comment", "Post", "User"]);

    // A request naming it is refused, saying why.
    let resp = http
        .get(format!("{}/v1/bootstrap/Secret?schema_hash=x", s.gw.url()))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 409);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "table_not_served");
    assert_eq!(body["error"]["table"], "Secret");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no rule")),
        "{body}"
    );
    let resp = http
        .post(format!("{}/v1/pull", s.gw.url()))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "schema_hash": "x", "cursor": {"txid": 0, "seq": 0}, "limit": 10,
            "tables": ["Post", "Secret"], "limits_ms": null
        }))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 409);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "table_not_served", "{body}");
    Ok(())
}

#[tokio::test]
async fn bad_rules_files_stop_the_gateway_at_start_naming_the_rule() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    server(&db, SCHEMA).await?;
    let start = |rules: &str| -> anyhow::Result<String> {
        let path = db.dir().join("bad.toml");
        std::fs::write(&path, rules)?;
        match GatewayProcess::start(
            &db,
            0,
            &[("OUTPOST_GATEWAY_RULES", &path.display().to_string())],
        ) {
            Ok(_) => anyhow::bail!("the gateway started with {rules}"),
            Err(e) => Ok(format!("{e:#}")),
        }
    };
    let ok = "[[rule]]\ntable = \"User\"\nwhere = 'true'\n";
    let cases = [
        // A table that does not exist.
        (
            format!("{ok}[[rule]]\ntable = \"Pots\"\nwhere = 'true'\n"),
            vec!["rule 2 (table \"Pots\")", "no table"],
        ),
        // A column that does not exist.
        (
            format!("{ok}[[rule]]\ntable = \"Post\"\nwhere = '\"owner\" = $sub'\n"),
            vec!["rule 2 (table \"Post\")", "column \"owner\" does not exist"],
        ),
        // Comparing an int with the text claim, without a cast.
        (
            format!("{ok}[[rule]]\ntable = \"Post\"\nwhere = 'views = $sub'\n"),
            vec!["rule 2 (table \"Post\")", "operator does not exist"],
        ),
        // Not SQL.
        (
            format!("{ok}[[rule]]\ntable = \"Post\"\nwhere = '\"userId\" = = $sub'\n"),
            vec!["rule 2 (table \"Post\")", "syntax error"],
        ),
        // A claim nobody declared (a typo).
        (
            format!("{ok}[[rule]]\ntable = \"Post\"\nwhere = '\"userId\" = $subb'\n"),
            vec!["rule 2 (table \"Post\")", "unknown claim $subb"],
        ),
        // A second statement.
        (
            format!("{ok}[[rule]]\ntable = \"Post\"\nwhere = 'true; DELETE FROM \"Post\"'\n"),
            vec!["rule 2 (table \"Post\")", "`;`"],
        ),
        // Not a boolean.
        (
            format!("{ok}[[rule]]\ntable = \"Post\"\nwhere = 'views'\n"),
            vec!["rule 2 (table \"Post\")", "boolean"],
        ),
        // A table excluded from the served ones.
        (
            format!("{ok}[[rule]]\ntable = \"_prisma_migrations\"\nwhere = 'true'\n"),
            vec!["rule 2"],
        ),
    ];
    for (rules, words) in cases {
        let e = start(&rules)?;
        for w in words {
            assert!(e.contains(w), "{rules}\n-> {e}\n(expected {w:?})");
        }
    }
    // Nothing was deleted by the refused `;` rule.
    let (client, _) = (db.client().await?, ());
    let n: i64 = client
        .query_one(r#"SELECT count(*) FROM "Post""#, &[])
        .await?
        .get(0);
    assert_eq!(n, 2);
    Ok(())
}

#[tokio::test]
async fn claim_values_are_bound_never_spliced_into_sql() -> anyhow::Result<()> {
    let rules =
        format!("claims = [\"org\"]\n{RULES}\n[[rule]]\ntable = \"Secret\"\nwhere = 'v = $org'\n");
    let s = setup(&rules).await?;
    // A principal whose name is an injection attempt gets exactly the rows
    // whose userId is that text: none.
    let evil = r#"u1' OR '1'='1"#;
    let e = node_with_claims(
        &s.db,
        &s.gw.url(),
        evil,
        serde_json::json!({"org": "x'); DROP TABLE \"Post\"; --"}),
        "e",
    )
    .await?;
    sync(&e, Direction::Bidirectional).await?;
    assert_eq!(ids(&e, "Post").await?, Vec::<String>::new());
    assert_eq!(ids(&e, "Comment").await?, Vec::<String>::new());
    assert_eq!(ids(&e, "Secret").await?, Vec::<String>::new());
    assert_eq!(ids(&e, "User").await?, ["u1", "u2"]);
    let n: i64 = s
        .client
        .query_one(r#"SELECT count(*) FROM "Post""#, &[])
        .await?
        .get(0);
    assert_eq!(n, 2);

    // The right value of a custom claim gives its rows.
    let o = node_with_claims(
        &s.db,
        &s.gw.url(),
        "u2",
        serde_json::json!({"org": "nobody's"}),
        "o",
    )
    .await?;
    sync(&o, Direction::Bidirectional).await?;
    assert_eq!(ids(&o, "Secret").await?, ["s1"]);
    assert_eq!(ids(&o, "Post").await?, ["p2"]);

    // A token without a claim a rule reads is refused, saying which.
    let token = support::token("u1", Duration::from_secs(3600))?;
    let schema: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/schema", s.gw.url()))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let hash = outpost_core::schema::Schema::hash(&serde_json::from_value(schema)?);
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v1/bootstrap/Secret?schema_hash={hash}",
            s.gw.url()
        ))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 403);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "claim_missing", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`org`") && m.contains("rule 4 (table \"Secret\")")),
        "{body}"
    );
    Ok(())
}

/// A child filtered through its parent (docs/gateway.md, "Sync rules"):
/// a parent moving into a node's scope brings its unchanged children on
/// the same pull, and one moving out takes them away on the same pull
/// (the node asks the gateway about the rows it holds under the changed
/// parent); a child with a local edit stays, and its push is refused by
/// the rules, never dropped. Moving back in brings the children again.
#[tokio::test]
async fn children_follow_their_parent_in_and_out_of_scope() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    s.client
        .batch_execute(
            r#"INSERT INTO "Comment" (id, "postId", body) VALUES ('c3', 'p1', 'also on one')"#,
        )
        .await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c3"]);

    // p2 (with its comment c2) is given to u1.
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u1' WHERE id = 'p2'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1", "p2"]);
    // c2 did not change: it comes with its parent.
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c2", "c3"]);
    // Another edit of the parent sends c2 again, harmlessly, and keeps
    // every comment (they are still in scope).
    s.client
        .batch_execute(r#"UPDATE "Post" SET title = 'two again' WHERE id = 'p2'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c2", "c3"]);
    assert!(states(&a).await?.is_empty(), "{:?}", states(&a).await?);

    // An offline edit of c3, then p1 is given to u2: p1 leaves, and its
    // unchanged comment c1 with it, on the same pull.
    local(&a, r#"UPDATE "Comment" SET body = 'mine' WHERE id = 'c3'"#).await?;
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, ["p2"]);
    assert_eq!(ids(&a, "Comment").await?, ["c2", "c3"]);
    // c3's edit is kept and reported: its push is refused by the rules.
    settled(&a, Direction::Bidirectional).await?;
    let left = states(&a).await?;
    assert!(
        matches!(&left[..], [(t, k, st, Some(e))]
            if t == "Comment" && k.contains("c3") && st == "FAILED" && e.contains("sync rules")),
        "{left:?}"
    );
    let c3: String = s
        .client
        .query_one(r#"SELECT body FROM "Comment" WHERE id = 'c3'"#, &[])
        .await?
        .get(0);
    assert_eq!(c3, "also on one", "the refused edit did not land");

    // p1 comes back: c1 arrives again at the version it had.
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u1' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1", "p2"]);
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c2", "c3"]);

    // The other user's node holds none of them.
    let b = support::node(&s.db, &s.gw.url(), "u2", "b").await?;
    sync(&b, Direction::Bidirectional).await?;
    assert_eq!(ids(&b, "Comment").await?, Vec::<String>::new());
    Ok(())
}

/// Rows two levels under a parent leave with it: a vote on a comment on a
/// post, each filtered through the one above (docs/gateway.md, "Sync
/// rules": the rows removed are parents in turn).
#[tokio::test]
async fn grandchildren_leave_with_their_grandparent() -> anyhow::Result<()> {
    let s = setup_with(
        &format!(
            "{SCHEMA}\n{}",
            r#"CREATE TABLE "Vote" (id text PRIMARY KEY, "commentId" text NOT NULL REFERENCES "Comment"(id), up boolean);
               INSERT INTO "Vote" (id, "commentId", up) VALUES ('v1', 'c1', true), ('v2', 'c2', true);"#
        ),
        &format!(
            "{RULES}\n{}",
            r#"[[rule]]
table = "Vote"
where = '"commentId" IN (SELECT c.id FROM "Comment" c JOIN "Post" p ON p.id = c."postId" WHERE p."userId" = $sub)'
"#
        ),
    )
    .await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Vote").await?, ["v1"]);
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, Vec::<String>::new());
    assert_eq!(ids(&a, "Comment").await?, Vec::<String>::new());
    assert_eq!(ids(&a, "Vote").await?, Vec::<String>::new());
    assert!(states(&a).await?.is_empty(), "{:?}", states(&a).await?);
    Ok(())
}

/// A child that references its parent by a unique column other than the
/// key (a note on a post's slug) leaves with the parent too: the node
/// reads the slug from its own copy of the parent before the pull applies
/// the parent's departure.
#[tokio::test]
async fn children_under_a_parents_unique_column_leave_with_it() -> anyhow::Result<()> {
    let s = setup_with(
        &format!(
            "{SCHEMA}\n{}",
            r#"ALTER TABLE "Post" ADD COLUMN slug text UNIQUE;
               UPDATE "Post" SET slug = 'slug-' || id;
               CREATE TABLE "Note" (id text PRIMARY KEY, "postSlug" text NOT NULL REFERENCES "Post"(slug), body text);
               INSERT INTO "Note" (id, "postSlug", body) VALUES ('n1', 'slug-p1', 'on one'), ('n2', 'slug-p2', 'on two');"#
        ),
        &format!(
            "{RULES}\n{}",
            r#"[[rule]]
table = "Note"
where = '"postSlug" IN (SELECT slug FROM "Post" WHERE "userId" = $sub)'
"#
        ),
    )
    .await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Note").await?, ["n1"]);
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, Vec::<String>::new());
    assert_eq!(ids(&a, "Note").await?, Vec::<String>::new());
    assert!(states(&a).await?.is_empty(), "{:?}", states(&a).await?);
    // Given back, the post brings its note again.
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u1' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Note").await?, ["n1"]);
    Ok(())
}

/// A child a rule serves without its parent (a comment on another user's
/// published post) leaves when the parent's change takes it out of scope
/// (the post is unpublished), though that change crosses as a tag the
/// node never kept: the node asks about the children it holds without
/// their parent. A change that keeps them in scope removes nothing.
#[tokio::test]
async fn children_held_without_their_parent_leave_when_the_parent_takes_them_out()
-> anyhow::Result<()> {
    let s = setup_with(
        &format!(
            "{SCHEMA}\n{}",
            r#"ALTER TABLE "Post" ADD COLUMN published boolean NOT NULL DEFAULT false;
               UPDATE "Post" SET published = true WHERE id = 'p2';
               INSERT INTO "Post" (id, title, "userId", published) VALUES ('p3', 'three', 'u2', true);
               INSERT INTO "Comment" (id, "postId", body) VALUES ('c3', 'p3', 'on three'), ('c4', 'p3', 'also on three');"#
        ),
        r#"
[[rule]]
table = "User"
where = 'true'

[[rule]]
table = "Post"
where = '"userId" = $sub'

[[rule]]
table = "Comment"
where = '"postId" IN (SELECT id FROM "Post" WHERE "userId" = $sub OR published)'
"#,
    )
    .await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1"]);
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c2", "c3", "c4"]);

    // u2 edits its published posts: the comments stay in scope and stay.
    s.client
        .batch_execute(r#"UPDATE "Post" SET title = title || '!' WHERE "userId" = 'u2'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c2", "c3", "c4"]);

    // An offline edit of c4, then p3 is unpublished: c3 leaves on the same
    // pull, c4's edit is kept and its push refused by the rules.
    local(&a, r#"UPDATE "Comment" SET body = 'mine' WHERE id = 'c4'"#).await?;
    s.client
        .batch_execute(r#"UPDATE "Post" SET published = false WHERE id = 'p3'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c2", "c4"]);
    settled(&a, Direction::Bidirectional).await?;
    let left = states(&a).await?;
    assert!(
        matches!(&left[..], [(t, k, st, Some(e))]
            if t == "Comment" && k.contains("c4") && st == "FAILED" && e.contains("sync rules")),
        "{left:?}"
    );

    // p2 is deleted on the server (its comment with it, by cascade).
    s.client
        .batch_execute(r#"DELETE FROM "Post" WHERE id = 'p2'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Comment").await?, ["c1", "c4"]);

    // Published again, p3 brings c3 back.
    s.client
        .batch_execute(r#"UPDATE "Post" SET published = true WHERE id = 'p3'"#)
        .await?;
    pull(&a).await?;
    assert!(ids(&a, "Comment").await?.contains(&"c3".to_string()));
    Ok(())
}

/// `POST /v1/scope` answers only about the keys asked, and the same way
/// for a row of another user and a row that does not exist: a node learns
/// nothing about rows outside its scope. Bad input is refused by name.
#[tokio::test]
async fn the_scope_check_tells_nothing_about_other_rows_and_refuses_bad_keys() -> anyhow::Result<()>
{
    let s = setup(RULES).await?;
    let token = support::token("u1", Duration::from_secs(3600))?;
    let http = reqwest::Client::new();
    let schema: outpost_core::schema::Schema = http
        .get(format!("{}/v1/schema", s.gw.url()))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let ask = |table: &str, keys: serde_json::Value| {
        http.post(format!("{}/v1/scope", s.gw.url()))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "schema_hash": schema.hash(),
                "table": table,
                "keys": keys,
            }))
            .send()
    };
    // c1 is u1's; c2 is u2's; c9 does not exist.
    let key = |k: &[&str]| -> Vec<Value> { k.iter().map(|v| Value::Text(v.to_string())).collect() };
    let keys = serde_json::to_value([key(&["c1"]), key(&["c2"]), key(&["c9"])])?;
    let resp = ask("Comment", keys).await?;
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body, serde_json::json!({"outside": [1, 2]}));
    // A key of the wrong length, a table without a rule, no token.
    let resp = ask("Comment", serde_json::to_value([key(&["c1", "x"])])?).await?;
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await?;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("primary key has 1")),
        "{body}"
    );
    let resp = ask("Secret", serde_json::to_value([key(&["s1"])])?).await?;
    assert_eq!(resp.status().as_u16(), 409);
    let resp = http
        .post(format!("{}/v1/scope", s.gw.url()))
        .json(&serde_json::json!({"schema_hash": schema.hash(), "table": "Comment", "keys": []}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    Ok(())
}

/// A rules change (the gateway restarted with another file) reaches the
/// rows a node already holds on its next sync: the pull reports each
/// table's rule digest, and the node copies again exactly the tables whose
/// digest differs from the one it copied them under (docs/gateway.md,
/// "Changing the rules").
#[tokio::test]
async fn a_rules_change_copies_again_only_the_tables_whose_rule_changed() -> anyhow::Result<()> {
    let mut s = setup(RULES).await?;
    s.client
        .batch_execute(r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p3', 'three', 'u1')"#)
        .await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1", "p3"]);
    // An offline edit of a post the new rule takes away from u1.
    local(
        &a,
        r#"UPDATE "Post" SET body = 'mine, offline' WHERE id = 'p1'"#,
    )
    .await?;

    // u1's posts but the one titled 'one', and posts titled 'two' are
    // everybody's; the other tables' rules stay.
    let port = s.gw.addr.port();
    s.gw.kill();
    let path = s.db.dir().join("rules2.toml");
    std::fs::write(
        &path,
        RULES.replace(
            r#"where = '"userId" = $sub'"#,
            // A condition with string literals in it: TOML's `'''…'''`.
            r#"where = '''("userId" = $sub AND title <> 'one') OR title = 'two' '''"#,
        ),
    )?;
    s.gw = GatewayProcess::start(
        &s.db,
        port,
        &[("OUTPOST_GATEWAY_RULES", &path.display().to_string())],
    )?;
    let copied = a.metrics().rows_bootstrapped;
    settled(&a, Direction::Bidirectional).await?;
    // A plain sync: p2 moved in and p3 stayed, copied again, and nothing
    // else was (User's and Comment's rules did not change).
    assert_eq!(a.metrics().rows_bootstrapped - copied, 2);
    // p1 left the scope; the replica keeps it only as the refused edit,
    // reported, never silently dropped.
    assert_eq!(ids(&a, "Post").await?, ["p1", "p2", "p3"]);
    let p1 = states(&a).await?;
    assert!(
        matches!(&p1[..], [(t, k, st, Some(e))]
            if t == "Post" && k.contains("p1") && st == "FAILED" && e.contains("sync rules")),
        "{p1:?}"
    );
    assert_eq!(
        server_value(&s.client, "p1").await?,
        None,
        "the refused edit did not land"
    );
    // The next run copies nothing again.
    settled(&a, Direction::Bidirectional).await?;
    assert_eq!(a.metrics().rows_bootstrapped - copied, 2);
    Ok(())
}

/// The body of post `id` on the server.
async fn server_value(
    client: &outpost_remote::tokio_postgres::Client,
    id: &str,
) -> anyhow::Result<Option<String>> {
    let row = client
        .query_one(r#"SELECT body FROM "Post" WHERE id = $1"#, &[&id])
        .await?;
    Ok(row.get(0))
}

/// What the rules cost, for docs/gateway.md: the same 20,000 rows (all
/// the node's) bootstrapped, 5,000 of them updated on the server and
/// pulled, and 5,000 offline inserts pushed, through a gateway with the
/// rules and through one without, on one database.
#[tokio::test]
async fn rules_overhead_measured() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    s.client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, body, views, "userId")
               SELECT 'm' || g, 'title ' || g, repeat('y', 100), g, 'u1' FROM generate_series(1, 20000) g;
               CREATE INDEX ON "Post" ("userId");
               CREATE INDEX ON "Comment" ("postId");
               ANALYZE;"#,
        )
        .await?;
    let plain = GatewayProcess::start(&s.db, 0, &[])?;
    let ruled = support::node(&s.db, &s.gw.url(), "u1", "ruled").await?;
    let whole = support::node(&s.db, &plain.url(), "u1", "whole").await?;
    let mut lines = Vec::new();
    for (who, node) in [("with rules", &ruled), ("without", &whole)] {
        let t = std::time::Instant::now();
        sync(node, Direction::FromServer).await?;
        lines.push(format!(
            "bootstrap {who}: {:?} ({} posts)",
            t.elapsed(),
            ids(node, "Post").await?.len()
        ));
    }
    s.client
        .batch_execute(
            r#"UPDATE "Post" SET views = views + 1 WHERE id LIKE 'm%' AND views <= 5000"#,
        )
        .await?;
    for (who, node) in [("with rules", &ruled), ("without", &whole)] {
        let t = std::time::Instant::now();
        pull(node).await?;
        lines.push(format!(
            "pull of 5000 updated rows {who}: {:?}",
            t.elapsed()
        ));
    }
    for (who, node, prefix) in [("with rules", &ruled, "r"), ("without", &whole, "w")] {
        local(
            node,
            &format!(
                r#"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000)
                   INSERT INTO "Post" (id, title, body, views, "userId")
                   SELECT '{prefix}' || n, 'pushed ' || n, printf('%.100c', 'z'), n, 'u1' FROM g"#
            ),
        )
        .await?;
        let t = std::time::Instant::now();
        let report = sync(node, Direction::ToServer).await?;
        lines.push(format!(
            "push of 5000 inserts {who}: {:?} ({:?} landed)",
            t.elapsed(),
            report.results.get("Post").map(|s| s.records_succeeded)
        ));
    }
    eprintln!("{}", lines.join("\n"));
    assert_eq!(ids(&ruled, "Post").await?.len(), 20_000 + 1 + 5_000);
    Ok(())
}

/// A served table may reference one that is not served (a rule for `Post`
/// only, none for `User`): the node sets up, bootstraps, pulls and pushes
/// its posts without the users' table.
#[tokio::test]
async fn a_served_table_may_reference_a_table_that_is_not_served() -> anyhow::Result<()> {
    let s = setup("[[rule]]\ntable = \"Post\"\nwhere = '\"userId\" = $sub'\n").await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    let names: Vec<String> = a.schema().tables.iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["Post"]);
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1"]);
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('p5', 'five', 0, 'u1')"#,
    )
    .await?;
    s.client
        .batch_execute(r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p6', 'six', 'u1'), ('p7', 'seven', 'u2')"#)
        .await?;
    sync(&a, Direction::ToServer).await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1", "p5", "p6"]);
    assert!(states(&a).await?.is_empty(), "{:?}", states(&a).await?);
    Ok(())
}

/// Rules turned on for a node that synced before them: it goes on with
/// the served tables (the unserved one is refused by name, the rest
/// syncs), and its filtered tables are copied again under the rules by
/// that same sync (docs/gateway.md).
#[tokio::test]
async fn a_replica_synced_before_the_rules_goes_on_without_unserved_tables() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, _) = server(&db, SCHEMA).await?;
    let mut gw = GatewayProcess::start(&db, 0, &[])?;
    let a = support::node(&db, &gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    assert_eq!(ids(&a, "Post").await?, ["p1", "p2"]);
    assert_eq!(ids(&a, "Secret").await?, ["s1"]);

    let port = gw.addr.port();
    gw.kill();
    let path = db.dir().join("rules.toml");
    std::fs::write(&path, RULES)?;
    let _gw = GatewayProcess::start(
        &db,
        port,
        &[("OUTPOST_GATEWAY_RULES", &path.display().to_string())],
    )?;
    client
        .batch_execute(r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p3', 'three', 'u1'), ('p4', 'four', 'u2')"#)
        .await?;
    let report = settled(&a, Direction::Bidirectional).await?;
    let secret = report.errors.get("Secret").cloned().unwrap_or_default();
    assert!(secret.contains("no rule"), "{report:?}");
    assert!(!report.errors.contains_key("Post"), "{report:?}");
    // The table copied before the rules is copied again under them: the
    // other user's p2 leaves, p3 arrives, p4 never does.
    assert_eq!(ids(&a, "Post").await?, ["p1", "p3"]);
    assert_eq!(ids(&a, "Comment").await?, ["c1"]);
    Ok(())
}

/// Remote mode through a gateway with sync rules runs each request
/// scoped to the node's rows, as its local mode would answer it from a
/// replica holding only those: reads, counts, relations and cursors see
/// only them; an update or delete of another user's row is "not found"
/// and a `deleteMany` leaves others' rows alone; a write that would leave
/// a row outside the scope (created for another user, handed to one) is
/// refused whole, naming the rule, and writes nothing; a write inside the
/// scope lands and is mirrored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_under_sync_rules_reads_and_writes_only_the_nodes_rows() -> anyhow::Result<()> {
    use serde_json::{Value as Json, json};
    let s = setup(RULES).await?;
    s.client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p3', 'three', 'u2');
               INSERT INTO "Comment" (id, "postId", body) VALUES ('c3', 'p3', 'on three');"#,
        )
        .await?;
    let path = s.db.dir().join("a.db");
    let token = support::token("u1", Duration::from_secs(3600))?;
    let node = outpost_engine::Outpost::open_with(
        support::config(&s.gw.url(), &token, &path)?,
        outpost_engine::NodeOptions {
            monitor: false,
            ..outpost_engine::NodeOptions::default()
        },
    )
    .await?;
    node.sync(Direction::Bidirectional).await?;
    node.set_mode(outpost_engine::Mode::Remote).await;
    let posts = node.model("Post")?;
    let users = node.model("User")?;
    let comments = node.model("Comment")?;
    let ids_of = |rows: &[Json]| -> Vec<String> {
        rows.iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    };
    let server_posts = || async {
        let rows = s
            .client
            .query(r#"SELECT id, title, "userId" FROM "Post" ORDER BY id"#, &[])
            .await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| {
                    format!(
                        "{}:{}:{}",
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2)
                    )
                })
                .collect::<Vec<_>>(),
        )
    };

    // Reads: only u1's post, its comment, and users whole with only the
    // posts in scope under them.
    let all: Vec<Json> = posts.find_many(json!({"orderBy": {"id": "asc"}})).await?;
    assert_eq!(ids_of(&all), ["p1"]);
    assert_eq!(posts.count(json!({})).await?, 1);
    assert_eq!(posts.count(json!({"take": 10, "skip": 0})).await?, 1);
    let theirs: Option<Json> = posts.find_unique(json!({"where": {"id": "p2"}})).await?;
    assert_eq!(theirs, None);
    let after: Vec<Json> = posts.find_many(json!({"cursor": {"id": "p2"}})).await?;
    assert!(
        after.is_empty(),
        "a cursor on another user's row reads nothing: {after:?}"
    );
    let with_posts: Vec<Json> = users
        .find_many(json!({"include": {"posts": true}, "orderBy": {"id": "asc"}}))
        .await?;
    assert_eq!(ids_of(&with_posts), ["u1", "u2"]);
    assert_eq!(
        ids_of(
            with_posts[0]["posts"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
        ),
        ["p1"]
    );
    assert_eq!(with_posts[1]["posts"], json!([]), "{with_posts:?}");
    let mine: Vec<Json> = comments.find_many(json!({})).await?;
    assert_eq!(ids_of(&mine), ["c1"]);

    // Writes over another user's rows find nothing.
    let before = server_posts().await?;
    let err = posts
        .update::<Json>(json!({"where": {"id": "p2"}, "data": {"title": "mine now"}}))
        .await
        .expect_err("not in scope");
    assert_eq!(err.code(), "not_found", "{err}");
    let err = posts
        .delete::<Json>(json!({"where": {"id": "p3"}}))
        .await
        .expect_err("not in scope");
    assert_eq!(err.code(), "not_found", "{err}");
    assert_eq!(posts.update_many(json!({"data": {"views": 7}})).await?, 1);
    assert_eq!(server_posts().await?, before);

    // Writes that would leave a row outside the scope are refused whole.
    let err = posts
        .create::<Json>(json!({"data": {"id": "p9", "title": "planted", "userId": "u2"}}))
        .await
        .expect_err("outside the scope after the change");
    assert_eq!(err.code(), "refused", "{err}");
    assert!(err.to_string().contains("rule 2"), "{err}");
    let err = posts
        .update::<Json>(json!({"where": {"id": "p1"}, "data": {"title": "given", "userId": "u2"}}))
        .await
        .expect_err("handed to another user");
    assert_eq!(err.code(), "refused", "{err}");
    let err = posts
        .create_many(json!({"data": [
            {"id": "p11", "title": "mine", "userId": "u1"},
            {"id": "p12", "title": "theirs", "userId": "u2"}]}))
        .await
        .expect_err("one of the rows is another user's");
    assert_eq!(err.code(), "refused", "{err}");
    assert!(err.to_string().contains("p12"), "{err}");
    assert_eq!(server_posts().await?, before, "nothing refused was written");

    // A write inside the scope lands and is mirrored.
    let made: Json = posts
        .create(json!({"data": {"id": "p4", "title": "four", "userId": "u1"}}))
        .await?;
    assert_eq!(made["id"], "p4");
    assert_eq!(
        posts
            .delete_many(json!({"where": {"title": "one"}}))
            .await?,
        1
    );
    assert_eq!(
        server_posts().await?,
        ["p2:two:u2", "p3:three:u2", "p4:four:u1"]
    );
    node.set_mode(outpost_engine::Mode::Local).await;
    let local: Vec<Json> = posts.find_many(json!({"orderBy": {"id": "asc"}})).await?;
    assert_eq!(ids_of(&local), ["p4"]);
    // p4, written remotely, has its tag (the mirror's, or a pull's since):
    // given away on the server, it leaves the replica on the next pull
    // although its key never crosses.
    let tagged = |node: &outpost_engine::Outpost| {
        let engine = node.engine().clone();
        async move {
            let n = engine
                .with_replica(|r| {
                    r.connection().query_row(
                "SELECT count(*) FROM _outpost_tags WHERE table_name = 'Post' AND pk = '[\"p4\"]'",
                [],
                |row| row.get::<_, i64>(0),
            ).map_err(outpost_local::LocalError::sqlite("test"))
                })
                .await?;
            anyhow::Ok(n)
        }
    };
    assert_eq!(tagged(&node).await?, 1);
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p4'"#)
        .await?;
    pull(node.engine()).await?;
    let local: Vec<Json> = posts.find_many(json!({"orderBy": {"id": "asc"}})).await?;
    assert_eq!(ids_of(&local), Vec::<String>::new());
    node.shutdown().await;
    Ok(())
}

/// `verify` on a node behind a gateway with sync rules (`POST /v1/verify`):
/// the replica is compared with the server's rows in the node's scope only
/// (another user's posts are neither differences nor counted), a server
/// row changed behind outpost's back is reported with both values, and a
/// table that differs by more rows than one answer carries is reported
/// inconsistent with the buckets it did not compare, never as clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_through_a_gateway_compares_the_nodes_scope_and_says_what_it_left()
-> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    let report = a.verify(None).await?;
    assert!(report.consistent, "{report:#?}");
    let post = report
        .models
        .iter()
        .find(|m| m.model == "Post")
        .ok_or_else(|| anyhow::anyhow!("no Post"))?;
    assert_eq!((post.local_rows, post.server_rows), (1, 1), "{post:#?}");
    assert_eq!(post.rows_compared, 0);

    // Behind outpost's back (no capture): u1's post edited, and another
    // user's, which is not u1's to compare.
    s.client
        .batch_execute(
            r#"BEGIN; SET LOCAL session_replication_role = replica;
               UPDATE "Post" SET title = 'server side' WHERE id = 'p1';
               UPDATE "Post" SET title = 'not yours' WHERE id = 'p2';
               COMMIT;"#,
        )
        .await?;
    let report = a.verify(Some(vec!["Post".into()])).await?;
    assert!(!report.consistent);
    let post = &report.models[0];
    assert_eq!(post.differences.len(), 1, "{post:#?}");
    assert_eq!(post.differences[0].key, serde_json::json!({"id": "p1"}));
    assert_eq!(post.differences[0].columns, ["title"]);
    assert_eq!(
        post.differences[0]
            .server
            .as_ref()
            .map(|r| r["title"].clone()),
        Some(serde_json::json!("server side"))
    );
    assert_eq!(post.unexamined_buckets, 0);

    // 10,001 posts of u1 that no pull will bring: more than one answer
    // carries.
    s.client
        .batch_execute(
            r#"BEGIN; SET LOCAL session_replication_role = replica;
               INSERT INTO "Post" (id, title, "userId")
                 SELECT 'q' || i, 'quiet', 'u1' FROM generate_series(1, 10001) i;
               COMMIT;"#,
        )
        .await?;
    let report = a.verify(Some(vec!["Post".into()])).await?;
    assert!(!report.consistent, "{report:#?}");
    let post = &report.models[0];
    assert_eq!(post.server_rows, 10_002);
    assert!(post.unexamined_buckets > 0, "{}", post.unexamined_buckets);
    assert!(post.rows_compared <= 10_000, "{}", post.rows_compared);
    assert!(
        post.differences.len() < 10_002 && !post.differences.is_empty(),
        "{}",
        post.differences.len()
    );
    Ok(())
}

/// A resumed copy (`GET /v1/bootstrap/{table}?after=`): only the rows
/// after the key, of the node's scope, in key order; a key that is not a
/// JSON array of the key's width is refused, saying why.
#[tokio::test]
async fn a_resumed_copy_sends_only_the_rows_after_the_key_in_scope() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    s.client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES
                 ('p3', 't', 'u1'), ('p4', 't', 'u2'), ('p5', 't', 'u1'), ('p6', 't', 'u1');"#,
        )
        .await?;
    let token = support::token("u1", Duration::from_secs(3600))?;
    let cfg = support::config(&s.gw.url(), &token, &s.db.dir().join("x.db"))?;
    let target = cfg
        .gateway
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no gateway"))?;
    let hash = outpost_remote::gateway::GatewayConnection::new(&target, Duration::from_secs(5))?
        .schema()
        .await?
        .hash();
    let http = reqwest::Client::new();
    let copy = |after: &str| {
        http.get(format!("{}/v1/bootstrap/Post", s.gw.url()))
            .query(&[("schema_hash", hash.as_str()), ("after", after)])
            .bearer_auth(&token)
            .send()
    };
    // Keys in the protocol's value form (docs/protocol.md, "Over HTTP").
    let resp = copy(r#"[{"s": "p3"}]"#).await?;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await?;
    let rows: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| serde_json::from_str::<Vec<serde_json::Value>>(l).ok())
        .filter_map(|r| {
            r.first()
                .and_then(|v| v.as_object())
                .map(|o| format!("{o:?}"))
        })
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].contains("p5") && rows[1].contains("p6"), "{rows:?}");
    assert!(text.trim_end().ends_with(r#"{"end":2}"#), "{text}");

    for bad in ["p3", r#"["p3"]"#, r#"[{"s": "p3"}, {"s": "x"}]"#] {
        let resp = copy(bad).await?;
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
        let body: serde_json::Value = resp.json().await?;
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("after:")),
            "{body}"
        );
    }
    Ok(())
}

/// The replica `<name>.db` opened again, now with `sub`'s token (a shared
/// device whose user signed in with another account).
async fn reopened(s: &Setup, sub: &str, name: &str) -> anyhow::Result<Engine> {
    let path = s.db.dir().join(format!("{name}.db"));
    let token = support::token(sub, Duration::from_secs(3600))?;
    let cfg = support::config(&s.gw.url(), &token, &path)?;
    Ok(Engine::new(outpost_local::Replica::open(&path)?, cfg))
}

#[tokio::test]
async fn a_shared_device_continues_under_another_principal_once_its_edits_are_settled()
-> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let alice = support::node(&s.db, &s.gw.url(), "u1", "tablet").await?;
    sync(&alice, Direction::Bidirectional).await?;
    assert_eq!(ids(&alice, "Post").await?, ["p1"]);
    let first = alice.node_id();
    // u1 edits offline and signs out before it is pushed.
    local(
        &alice,
        r#"UPDATE "Post" SET title = 'by u1' WHERE id = 'p1'"#,
    )
    .await?;
    drop(alice);

    // u2 signs in on the same device: u1's edit is not pushed under u2's
    // name, and nothing of the replica changes.
    let bob = reopened(&s, "u2", "tablet").await?;
    let report = bob
        .sync(SyncOptions::new(Direction::Bidirectional, Trigger::Manual))
        .await?;
    assert!(!report.success);
    let said = report
        .errors
        .values()
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        said.contains("registered by another principal") && said.contains("1 PENDING"),
        "{said}"
    );
    assert_eq!(bob.node_id(), first);
    assert_eq!(ids(&bob, "Post").await?, ["p1"]);
    assert_eq!(states(&bob).await?.len(), 1);
    assert_eq!(p1_on_server(&s).await?, Some(("one".into(), "u1".into())));
    drop(bob);

    // u1 signs in again and the edit is pushed under u1's name.
    let alice = reopened(&s, "u1", "tablet").await?;
    sync(&alice, Direction::Bidirectional).await?;
    assert_eq!(p1_on_server(&s).await?, Some(("by u1".into(), "u1".into())));
    drop(alice);

    // Now u2's sign-in makes the replica u2's node as it opens, before u2
    // edits anything: an offline edit made next is u2's and is pushed.
    let bob = reopened(&s, "u2", "tablet").await?;
    assert_ne!(bob.node_id(), first);
    local(
        &bob,
        r#"UPDATE "User" SET name = 'set by u2' WHERE id = 'u2'"#,
    )
    .await?;
    sync(&bob, Direction::Bidirectional).await?;
    // u1's posts and comments left, u2's arrived, the tables every user
    // sees stayed.
    assert_eq!(ids(&bob, "Post").await?, ["p2"]);
    assert_eq!(ids(&bob, "Comment").await?, ["c2"]);
    assert_eq!(ids(&bob, "User").await?, ["u1", "u2"]);
    assert!(states(&bob).await?.is_empty());
    let name: Option<String> = s
        .client
        .query_one(r#"SELECT name FROM "User" WHERE id = 'u2'"#, &[])
        .await?
        .get(0);
    assert_eq!(name.as_deref(), Some("set by u2"));
    // And it syncs as u2 from then on, both ways.
    local(&bob, r#"UPDATE "Post" SET title = 'by u2' WHERE id = 'p2'"#).await?;
    s.client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p5', 'five', 'u2'), ('p6', 'six', 'u1');"#,
        )
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ids(&bob, "Post").await? != ["p2", "p5"] && std::time::Instant::now() < deadline {
        settled(&bob, Direction::Bidirectional).await?;
    }
    assert_eq!(ids(&bob, "Post").await?, ["p2", "p5"]);
    let title: String = s
        .client
        .query_one(r#"SELECT title FROM "Post" WHERE id = 'p2'"#, &[])
        .await?
        .get(0);
    assert_eq!(title, "by u2");
    Ok(())
}

/// A replica that did not record its principal (made before it was
/// recorded) switches at its first sync under another token instead.
#[tokio::test]
async fn a_replica_without_a_recorded_principal_switches_at_its_sync() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let alice = support::node(&s.db, &s.gw.url(), "u1", "old").await?;
    sync(&alice, Direction::Bidirectional).await?;
    let first = alice.node_id();
    local(
        &alice,
        "DELETE FROM _outpost_meta WHERE key = 'gateway_principal'",
    )
    .await?;
    drop(alice);
    let bob = reopened(&s, "u2", "old").await?;
    assert_eq!(
        bob.node_id(),
        first,
        "nothing recorded: nothing to compare yet"
    );
    sync(&bob, Direction::Bidirectional).await?;
    assert_ne!(bob.node_id(), first);
    assert_eq!(ids(&bob, "Post").await?, ["p2"]);
    assert_eq!(ids(&bob, "Comment").await?, ["c2"]);
    let recorded = bob.with_replica(|r| r.principal()).await?;
    assert_eq!(recorded.as_deref(), Some("u2"));
    Ok(())
}

/// Every row a pull through the gateway answers from `cursor` on, as JSON
/// text, for the node of `sub`: pulled until nothing is held back (the
/// horizon is cluster-wide), with or without tags.
async fn raw_pull(
    s: &Setup,
    sub: &str,
    cursor: outpost_core::sync::Cursor,
    tags: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let token = support::token(sub, Duration::from_secs(3600))?;
    let http = reqwest::Client::new();
    let schema: outpost_core::schema::Schema = http
        .get(format!("{}/v1/schema", s.gw.url()))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let mut rows = Vec::new();
    let mut cursor = cursor;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let batch: outpost_core::sync::PullBatch = http
            .post(format!("{}/v1/pull", s.gw.url()))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "schema_hash": schema.hash(),
                "cursor": cursor,
                "limit": 1000,
                "tables": null,
                "tags": tags,
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for row in &batch.rows {
            rows.push(serde_json::to_value(row)?);
        }
        cursor = batch.cursor;
        if !batch.more && (!batch.held_back || std::time::Instant::now() > deadline) {
            return Ok(rows);
        }
        if !batch.more {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A node's `(Post, Comment)` tag counts.
async fn tag_counts(node: &Engine) -> anyhow::Result<(i64, i64)> {
    Ok(node
        .with_replica(|r| Ok((r.tag_count("Post")?, r.tag_count("Comment")?)))
        .await?)
}

/// Deletions in a filtered table carry a tag, never a key: a node learns
/// no key of another user's rows that changed (docs/gateway.md, "What a
/// node learns outside its scope"), and still removes its own rows that
/// were deleted or left its scope, found by the tags it kept from the
/// copy, a pull and its own push's acknowledgement.
#[tokio::test]
async fn deletions_outside_a_nodes_scope_carry_tags_never_keys() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    // From the copy: p1 and c1, a's rows, each with its tag.
    assert_eq!(tag_counts(&a).await?, (1, 1));
    // From its push's acknowledgement: a post a writes offline.
    local(
        &a,
        r#"INSERT INTO "Post" (id, title, views, "userId") VALUES ('p-mine', 'mine', 0, 'u1')"#,
    )
    .await?;
    settled(&a, Direction::Bidirectional).await?;
    assert_eq!(tag_counts(&a).await?, (2, 1));
    let (from, _) = a.with_replica(|r| r.cursor()).await?;

    // Another user's rows change in every way; one of a's arrives by pull.
    s.client
        .batch_execute(
            r#"INSERT INTO "Post" (id, title, "userId") VALUES ('p-u2-secret', 's', 'u2');
               UPDATE "Post" SET title = 'edited' WHERE id = 'p-u2-secret';
               UPDATE "Post" SET title = 'two, edited' WHERE id = 'p2';
               DELETE FROM "Comment" WHERE id = 'c2';
               INSERT INTO "Post" (id, title, "userId") VALUES ('p3', 'three', 'u1');"#,
        )
        .await?;
    let tagged = raw_pull(&s, "u1", from, true).await?;
    let text = serde_json::to_string(&tagged)?;
    // As JSON strings: a tag's hex digits may well hold "c2".
    for other in ["p-u2-secret", "p2", "c2"] {
        assert!(
            !text.contains(&format!("\"{other}\"")),
            "{other} crossed: {text}"
        );
    }
    assert!(text.contains("\"p3\""), "{text}");
    // Each deletion is a tag with no key.
    let withheld: Vec<&serde_json::Value> =
        tagged.iter().filter(|r| r["values"].is_null()).collect();
    assert_eq!(withheld.len(), 3, "{text}");
    assert!(
        withheld
            .iter()
            .all(|r| r["pk"] == serde_json::json!([]) && r["tag"].is_string()),
        "{text}"
    );
    // A node that does not keep tags (an older one) still gets keys.
    let untagged = serde_json::to_string(&raw_pull(&s, "u1", from, false).await?)?;
    assert!(untagged.contains("\"p-u2-secret\""), "{untagged}");

    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, ["p-mine", "p1", "p3"]);
    assert_eq!(tag_counts(&a).await?, (3, 1));

    // a's own rows leave, each by the path its tag came from: p1 (the
    // copy) and its comment c1 with it, p-mine (the push) and p3 (the
    // pull), given away or deleted.
    s.client
        .batch_execute(
            r#"UPDATE "Post" SET "userId" = 'u2' WHERE id IN ('p1', 'p-mine');
               DELETE FROM "Post" WHERE id = 'p3';"#,
        )
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, Vec::<String>::new());
    assert_eq!(ids(&a, "Comment").await?, Vec::<String>::new());
    assert!(states(&a).await?.is_empty(), "{:?}", states(&a).await?);
    // Users are not filtered: no tags, keys as before.
    assert_eq!(
        a.with_replica(|r| r.tag_count("User")).await?,
        0,
        "an unfiltered table carries no tags"
    );
    Ok(())
}

/// A replica copied before tags (its rows have none, its scopes are
/// recorded untagged) copies its filtered tables again on its next pull,
/// with tags, so a row that then leaves its scope is found.
#[tokio::test]
async fn a_replica_copied_before_tags_copies_its_filtered_tables_again() -> anyhow::Result<()> {
    let s = setup(RULES).await?;
    let a = support::node(&s.db, &s.gw.url(), "u1", "a").await?;
    sync(&a, Direction::Bidirectional).await?;
    a.with_replica(|r| {
        r.connection()
            .execute_batch(
                "DELETE FROM _outpost_tags; \
                 UPDATE _outpost_meta SET value = replace(value, 'tagged:', '') WHERE key = 'scopes';",
            )
            .map_err(outpost_local::LocalError::sqlite("test"))
    })
    .await?;
    assert_eq!(tag_counts(&a).await?, (0, 0));
    pull(&a).await?;
    assert_eq!(tag_counts(&a).await?, (1, 1));
    let scopes = a.with_replica(|r| r.scopes()).await?;
    assert!(
        ["Post", "Comment"]
            .iter()
            .all(|t| scopes.get(*t).is_some_and(|d| d.starts_with("tagged:"))),
        "{scopes:?}"
    );
    s.client
        .batch_execute(r#"UPDATE "Post" SET "userId" = 'u2' WHERE id = 'p1'"#)
        .await?;
    pull(&a).await?;
    assert_eq!(ids(&a, "Post").await?, Vec::<String>::new());
    assert_eq!(ids(&a, "Comment").await?, Vec::<String>::new());
    Ok(())
}
