//! The types beyond the basic ones through a real sync: bootstrap, pull and
//! push carry every one of them unchanged (the replica and the server hold
//! the same values, compared by the binary codec), a domain's check refuses
//! a pushed value as `FAILED` with the server's message, and a
//! multi-dimensional array neither stops the bootstrap nor the pulls.

mod common;

use common::*;
use outpost_core::sync::Direction;
use outpost_core::types::Value;
use outpost_testkit::TestDb;

const TYPES: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE DOMAIN year AS integer CHECK (VALUE BETWEEN 1901 AND 2155);
CREATE DOMAIN email AS citext CHECK (VALUE LIKE '%@%');
CREATE TABLE "Thing" (
    id int PRIMARY KEY,
    yr year, years year[], mail email, ip inet, net cidr, mac macaddr, mac8 macaddr8,
    ttz timetz, cash money, b4 bit(4), vb varbit, doc xml, o oid,
    r4 int4range, rn numrange, rd daterange, rts tsrange, rtz tstzrange, mr4 int4multirange,
    tsv tsvector, tsq tsquery, pt point, ln line, seg lseg, bx box,
    pth path, pg polygon, circ circle, grid int[][], cube text[][][]
);
CREATE TABLE "Other" (id int PRIMARY KEY, note text);
"#;

const ROW: &str = r#"INSERT INTO "Thing" VALUES (1,
    1999, '{1901,2155,NULL}', 'Ann@Example.org', '192.168.1.5/24', '2001:db8::/32',
    '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', '12:34:56.789+05:30', '-1234.56',
    B'1010', B'10101', '<a x="1">t</a>', 4000000000,
    '[1,5)', '(1.5,2.25]', '[2024-01-01,)', '["2024-01-01 10:00","2024-01-02 10:00")',
    '[2024-01-01 10:00+02,infinity)', '{[1,3),[5,7)}',
    to_tsvector('simple', 'the quick brown fox'), $$'fox' & !('dog' | 'cat':*B)$$,
    '(1,2)', '{1,-1,0}', '[(0,0),(1e300,-1e-300)]', '(2,2),(0,0)',
    '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(2,0))', '<(1,2),3>',
    '{{1,2},{3,NULL}}', '{{{a,b},{c,d}},{{"e,f",NULL},{"","x\"y"}}}')"#;

#[tokio::test]
async fn new_types_survive_bootstrap_pull_and_push() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, TYPES).await?;
    client.batch_execute(ROW).await?;
    client
        .batch_execute(r#"INSERT INTO "Other" VALUES (1, 'one')"#)
        .await?;

    // Bootstrap: the multi-dimensional arrays do not stop it, and every
    // value lands as the server holds it.
    let a = node(&db, &schema, "a")?;
    let report = sync(&a, Direction::Bidirectional).await?;
    assert!(report.bootstrapped, "{report:?}");
    assert_converged(&client, &schema, &[&a]).await?;
    let rows = local_rows(&a, "Thing").await?;
    let t = schema.table("Thing").expect("Thing");
    let at = |name: &str| {
        t.columns
            .iter()
            .position(|c| c.name == name)
            .expect("column")
    };
    assert_eq!(rows[0][at("cash")], Value::Text("-1234.56".into()));
    assert_eq!(
        rows[0][at("ttz")],
        Value::Text("12:34:56.789000+05:30".into())
    );
    assert_eq!(
        rows[0][at("grid")],
        Value::Array(vec![
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
            Value::Array(vec![Value::Int(3), Value::Null]),
        ])
    );

    // Pull: server-side changes of every kind arrive, and a new 2-D row
    // does not stop the other table's changes.
    client
        .batch_execute(
            r#"INSERT INTO "Thing" SELECT 2, yr, years, mail, ip, net, mac, mac8, ttz, cash, b4, vb,
                   doc, o, r4, rn, rd, rts, rtz, mr4, tsv, tsq, pt, ln, seg, bx, pth, pg, circ,
                   '{{9}}', cube FROM "Thing" WHERE id = 1;
               UPDATE "Thing" SET ip = '10.1.2.3', tsv = to_tsvector('simple', 'lazy dog'),
                   rtz = 'empty', pth = '((5,5),(6,6))' WHERE id = 1;
               UPDATE "Other" SET note = 'two' WHERE id = 1;"#,
        )
        .await?;
    converge(&client, &schema, &[&a]).await?;
    assert_eq!(
        local_rows(&a, "Other").await?[0][1],
        Value::Text("two".into())
    );

    // Push: local edits in the stored (canonical) forms reach the server
    // unchanged.
    local(
        &a,
        r#"UPDATE "Thing" SET ip = '2001:db8::7/64', mac = '0a:0b:0c:0d:0e:0f', ttz = '23:59:59.000001-03:00',
               cash = '0.01', b4 = '0110', vb = '', o = 7, r4 = '[2,9)', rn = '(,3.5]',
               rtz = '[2020-02-29T12:00:00.000000Z,)', mr4 = '{[1,2),[4,5)}',
               tsv = '''new'':1A ''words'':2', tsq = '''new'' <-> ''words''', pt = '(-0,1e-300)',
               bx = '(3,3),(1,1)', circ = '<(0,0),0.5>', grid = '[[5,6],[7,8]]', years = '[1950,null]',
               mail = 'Bob@Example.org'
           WHERE id = 1;
           INSERT INTO "Thing" (id, yr, pg) VALUES (3, 2000, '((1,1),(2,2),(3,1))');"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(report.results["Thing"].records_succeeded, 2, "{report:?}");
    assert_eq!(report.results["Thing"].records_failed, 0, "{report:?}");
    assert_converged(&client, &schema, &[&a]).await?;
    let ip: String = client
        .query_one(
            r#"SELECT ip::text || ' ' || tsq::text || ' ' || grid::text FROM "Thing" WHERE id = 1"#,
            &[],
        )
        .await?
        .get(0);
    assert_eq!(ip, "2001:db8::7/64 'new' <-> 'words' {{5,6},{7,8}}");

    // A domain's check: the server refuses the value, the row is FAILED with
    // its message, the rest of the push lands.
    local(
        &a,
        r#"UPDATE "Thing" SET yr = 1800 WHERE id = 3; UPDATE "Other" SET note = 'three' WHERE id = 1;"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(report.results["Thing"].records_failed, 1, "{report:?}");
    assert_eq!(report.results["Other"].records_succeeded, 1, "{report:?}");
    let status = a.status().await?;
    assert_eq!(status.failed, 1);
    let msg: String = a
        .with_replica(|r| {
            r.connection()
                .query_row(
                    "SELECT error FROM _outpost_rows WHERE status = 'FAILED'",
                    [],
                    |row| row.get(0),
                )
                .map_err(outpost_local::LocalError::sqlite("test"))
        })
        .await?;
    assert!(
        msg.contains("value for domain year violates check constraint"),
        "{msg}"
    );
    Ok(())
}
