//! Foreign keys declared only on partitions (not on the partitioned parent)
//! order the push as the parent's own keys do: a child pushed with its new
//! parent in the same push lands, and deletes go children first.

mod common;

use common::*;
use outpost_core::sync::Direction;
use outpost_testkit::TestDb;

/// `Charge` sorts before `Wallet`: without the partitions' keys the push
/// would send the charge first and the server would refuse it.
const SCHEMA: &str = r#"
CREATE TABLE "Wallet" (id text PRIMARY KEY, owner text);
CREATE TABLE "Charge" (id text, region text, "walletId" text NOT NULL, amount int,
  PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE "Charge_eu" PARTITION OF "Charge" FOR VALUES IN ('eu');
CREATE TABLE "Charge_us" PARTITION OF "Charge" FOR VALUES IN ('us');
CREATE TABLE "Charge_rest" PARTITION OF "Charge" DEFAULT;
ALTER TABLE "Charge_eu" ADD CONSTRAINT "Charge_eu_wallet" FOREIGN KEY ("walletId") REFERENCES "Wallet"(id);
ALTER TABLE "Charge_us" ADD CONSTRAINT "Charge_us_wallet" FOREIGN KEY ("walletId") REFERENCES "Wallet"(id);
"#;

#[tokio::test]
async fn partition_only_foreign_keys_order_the_push() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let (client, schema) = server(&db, SCHEMA).await?;
    // Read under the parent, once although two partitions declare it.
    let charge = schema.table("Charge").expect("Charge");
    let refs: Vec<(&str, &[String])> = charge
        .foreign_keys
        .iter()
        .map(|f| (f.ref_table.as_str(), f.columns.as_slice()))
        .collect();
    assert_eq!(refs, [("Wallet", &["walletId".to_string()][..])]);

    let a = node(&db, &schema, "a")?;
    sync(&a, Direction::Bidirectional).await?;
    // The child is written first, as an application may do offline.
    local(
        &a,
        r#"INSERT INTO "Charge" (id, region, "walletId", amount) VALUES ('c1', 'eu', 'w1', 5), ('c2', 'us', 'w1', 7);
           INSERT INTO "Wallet" (id, owner) VALUES ('w1', 'ann');"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(report.results["Charge"].records_failed, 0, "{report:?}");
    assert_eq!(report.results["Charge"].records_succeeded, 2, "{report:?}");
    assert_eq!(report.results["Wallet"].records_succeeded, 1, "{report:?}");
    assert!(unsettled(&a).await?.is_empty());
    let n: i64 = client
        .query_one(
            r#"SELECT count(*) FROM "Charge" WHERE "walletId" = 'w1'"#,
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 2);

    // Deleting both in one push: the children go first.
    local(
        &a,
        r#"DELETE FROM "Wallet" WHERE id = 'w1'; DELETE FROM "Charge" WHERE "walletId" = 'w1';"#,
    )
    .await?;
    let report = sync(&a, Direction::ToServer).await?;
    assert_eq!(
        report.results["Wallet"].records_failed + report.results["Charge"].records_failed,
        0,
        "{report:?}"
    );
    let n: i64 = client
        .query_one(
            r#"SELECT (SELECT count(*) FROM "Charge") + (SELECT count(*) FROM "Wallet")"#,
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 0);
    // Through a gateway too (`POST /v1/verify`, scoped to the node's rows).
    let report = a.verify(None).await?;
    assert!(report.consistent && report.pending == 0, "{report:#?}");
    Ok(())
}
