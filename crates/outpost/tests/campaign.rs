//! The fault campaign: seeds of random workload and random faults against
//! N nodes (`outpost sync` child processes plus the application's model
//! service) and one PostgreSQL on a cluster the campaign starts for itself
//! (it restarts it; the shared server on 5432 is never touched). After each
//! seed every node syncs until quiet and the checker (`campaign/check.rs`,
//! which documents exactly what is asserted) must find nothing.
//!
//! * CI: `cargo test -p outpost --test campaign` runs the fixed seeds
//!   `1..=20`.
//! * One seed: `OUTPOST_CAMPAIGN_SEED=17 cargo test -p outpost --test campaign -- --nocapture`.
//! * A long run: `OUTPOST_CAMPAIGN_SEEDS=500 cargo test --release -p outpost --test campaign -- --nocapture`
//!   (seeds `1..=500`; `OUTPOST_CAMPAIGN_FIRST=1000` moves the start;
//!   `OUTPOST_CAMPAIGN_NODES` and `OUTPOST_CAMPAIGN_ROUNDS` change the shape;
//!   `OUTPOST_CAMPAIGN_DROP_COLUMN=0` leaves the dropped column out of the
//!   migration; `OUTPOST_CAMPAIGN_TOPOLOGY=gateway` syncs every node through
//!   two `outpost gateway` processes, with sync rules unless
//!   `OUTPOST_CAMPAIGN_RULES=0`; nodes write in remote mode through them
//!   too).
//!
//! See `docs/reliability.md` for the fault model and the figures.

#[path = "campaign/check.rs"]
mod check;
#[path = "campaign/harness.rs"]
mod harness;

#[path = "campaign/gateway.rs"]
mod gateway;

use std::sync::Arc;

use check::{Ack, Actor, AuditEvent, FinalState, Kind, ReplicaState, Row, Unsettled, Write};
use harness::{Figures, Shape};
use serde_json::json;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn seeds() -> Vec<u64> {
    if let Some(one) = env_u64("OUTPOST_CAMPAIGN_SEED") {
        return vec![one];
    }
    let first = env_u64("OUTPOST_CAMPAIGN_FIRST").unwrap_or(1);
    let n = env_u64("OUTPOST_CAMPAIGN_SEEDS").unwrap_or(20);
    (first..first + n).collect()
}

fn shape() -> Shape {
    let mut s = Shape::default();
    if let Some(n) = env_u64("OUTPOST_CAMPAIGN_NODES") {
        s.nodes = n.max(1) as usize;
    }
    if let Some(r) = env_u64("OUTPOST_CAMPAIGN_ROUNDS") {
        s.rounds = r.max(1) as usize;
    }
    // The migration drops a column too unless told not to (`=0`).
    s.drop_column = env_u64("OUTPOST_CAMPAIGN_DROP_COLUMN") != Some(0);
    s.gateway = std::env::var("OUTPOST_CAMPAIGN_TOPOLOGY").is_ok_and(|t| t.trim() == "gateway");
    s.rules = env_u64("OUTPOST_CAMPAIGN_RULES") != Some(0);
    s
}

fn replay(seed: u64) -> String {
    let drop = if shape().drop_column {
        ""
    } else {
        "OUTPOST_CAMPAIGN_DROP_COLUMN=0 "
    };
    let topology = match (shape().gateway, shape().rules) {
        (true, true) => "OUTPOST_CAMPAIGN_TOPOLOGY=gateway ",
        (true, false) => "OUTPOST_CAMPAIGN_TOPOLOGY=gateway OUTPOST_CAMPAIGN_RULES=0 ",
        (false, _) => "",
    };
    format!(
        "replay: {topology}{drop}OUTPOST_CAMPAIGN_SEED={seed} cargo test -p outpost --test campaign -- campaign --nocapture"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign() -> anyhow::Result<()> {
    let cluster =
        Arc::new(tokio::task::spawn_blocking(outpost_testkit::cluster::Cluster::start).await??);
    let shape = shape();
    let mut total = Figures::default();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for (n, seed) in seeds().into_iter().enumerate() {
        if n > 0 && n % 25 == 0 {
            // A long run stopped early still leaves its figures.
            println!("after {n} seeds: {total}");
        }
        let t = std::time::Instant::now();
        // Each seed in a task of its own: a panic in it fails that seed
        // with its message (and the run goes on) instead of ending the
        // campaign without saying which seed or why.
        let run = tokio::spawn({
            let cluster = cluster.clone();
            async move { harness::run_seed(&cluster, seed, shape).await }
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the seed panicked: {}", panic_text(e))));
        match run {
            Ok(outcome) => {
                total.add(&outcome.figures);
                if outcome.anomalies.is_empty() {
                    println!("seed {seed}: sound ({:.1}s)", t.elapsed().as_secs_f64());
                } else {
                    println!(
                        "seed {seed}: {} anomalies; {}",
                        outcome.anomalies.len(),
                        replay(seed)
                    );
                    for a in &outcome.anomalies {
                        println!("  [{}] {}", a.class, a.detail);
                    }
                    explain(&outcome.state, &outcome.anomalies);
                    println!("  what the harness did:");
                    for line in &outcome.trace {
                        println!("    {line}");
                    }
                    if let Some(dir) = &outcome.kept {
                        println!("  replicas and logs kept in {}", dir.display());
                    }
                    failures.push((seed, format!("{} anomalies", outcome.anomalies.len())));
                }
            }
            Err(e) => {
                println!(
                    "seed {seed}: the run itself failed: {e:#}; {}",
                    replay(seed)
                );
                failures.push((seed, format!("the run itself failed: {e:#}")));
            }
        }
    }
    println!(
        "campaign: {total}\n  {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
    // The CI seeds must exercise every fault kind issues 17 and 18 added,
    // or the campaign would pass without testing them.
    if total.runs >= 20 {
        let gateway_kinds: &[&str] = if shape.gateway {
            &["gateway-restart"]
        } else {
            &[]
        };
        for &kind in [
            "stall-mid-sync",
            "restore-from-backup",
            "replica-copy",
            "setup-while-serving",
        ]
        .iter()
        .chain(gateway_kinds)
        {
            let ran: u64 = total
                .faults
                .iter()
                .filter(|(k, _)| k.starts_with(kind))
                .map(|(_, v)| v)
                .sum();
            anyhow::ensure!(
                ran > 0,
                "the fault {kind} never ran in {} seeds",
                total.runs
            );
        }
    }
    // The reasons again at the end: CI keeps the tail of the output.
    anyhow::ensure!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(seed, why)| format!("seed {seed}: {why}\n  {}", replay(*seed)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// What a panicked task said, for the seed's failure line.
fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

/// The history of every key an anomaly names: the harness's writes, the
/// server's audit events, and each replica's unsettled entry.
fn explain(state: &FinalState, anomalies: &[check::Anomaly]) {
    let keys: std::collections::BTreeSet<&str> = state
        .log
        .iter()
        .map(|w| w.pk.as_str())
        .chain(state.audit.iter().map(|e| e.pk.as_str()))
        .filter(|k| anomalies.iter().any(|a| a.detail.contains(*k)))
        .collect();
    for k in keys {
        println!("  history of {k}:");
        for w in state.log.iter().filter(|w| w.pk == k) {
            println!(
                "    write #{} {:?} {:?} {:?} via {} ({:?})",
                w.id, w.actor, w.kind, w.token, w.via, w.ack
            );
        }
        for e in state.audit.iter().filter(|e| e.pk == k) {
            println!("    server event {} {} {:?}", e.seq, e.op, e.tokens);
        }
        for (i, r) in state.replicas.iter().enumerate() {
            for ((t, pk), u) in &r.unsettled {
                if pk == k {
                    println!("    node {i}: {t} {} {:?}", u.status, u.reason);
                }
            }
        }
    }
}

// ---- the checker catches what it claims to catch ----------------------------------

fn row(id: &str, title: &str) -> (String, Row) {
    let r: Row = [
        ("id".to_string(), json!(id)),
        ("title".to_string(), json!(title)),
    ]
    .into_iter()
    .collect();
    (format!("[\"{id}\"]"), r)
}

fn write(id: u64, actor: Actor, pk: &str, kind: Kind, token: Option<&str>) -> Write {
    Write {
        id,
        actor,
        table: "Post".into(),
        pk: format!("[\"{pk}\"]"),
        kind,
        token: token.map(str::to_string),
        ack: Ack::Acked,
        via: "test",
    }
}

fn event(seq: i64, pk: &str, op: &str, tokens: &[&str]) -> AuditEvent {
    AuditEvent {
        seq,
        table: "Post".into(),
        pk: format!("[\"{pk}\"]"),
        op: op.into(),
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
    }
}

/// A sound state: two nodes equal to the server, writes in the history.
fn sound() -> FinalState {
    let rows = vec![row("p1", "t2"), row("p2", "t3")];
    let replica = ReplicaState {
        tables: [("Post".to_string(), rows.clone())].into_iter().collect(),
        unsettled: Default::default(),
        scope: None,
    };
    FinalState {
        server: [("Post".to_string(), rows)].into_iter().collect(),
        replicas: vec![replica.clone(), replica],
        audit: vec![
            event(1, "p1", "I", &["t1"]),
            event(2, "p1", "U", &["t2"]),
            event(3, "p2", "I", &["t3"]),
            event(4, "p9", "I", &["t9"]),
            event(5, "p9", "D", &[]),
        ],
        log: vec![
            write(1, Actor::Node(0), "p1", Kind::Insert, Some("t1")),
            write(2, Actor::Node(1), "p1", Kind::Update, Some("t2")),
            write(3, Actor::Server, "p2", Kind::Insert, Some("t3")),
            write(4, Actor::Node(0), "p9", Kind::Delete, None),
        ],
        token_columns: vec!["title".into()],
        restore_lost: Default::default(),
        copy_carried: Default::default(),
    }
}

fn posts(tables: &mut check::Tables) -> &mut Vec<(String, Row)> {
    tables.entry("Post".to_string()).or_default()
}

fn classes(state: &FinalState) -> Vec<&'static str> {
    check::check(state).into_iter().map(|a| a.class).collect()
}

#[test]
fn the_checker_passes_a_sound_state() {
    assert_eq!(check::check(&sound()), vec![]);
}

#[test]
fn the_checker_catches_a_diverged_replica_and_a_missing_server_change() {
    let mut s = sound();
    posts(&mut s.replicas[1].tables)[0]
        .1
        .insert("title".into(), json!("t1"));
    assert_eq!(classes(&s), vec!["diverged"]);
    let mut s = sound();
    posts(&mut s.replicas[0].tables).pop();
    assert_eq!(classes(&s), vec!["diverged"]);
    // Listed as CONFLICT: excused.
    s.replicas[0].unsettled.insert(
        ("Post".into(), "[\"p2\"]".into()),
        Unsettled {
            status: "CONFLICT".into(),
            reason: None,
        },
    );
    assert_eq!(classes(&s), Vec::<&str>::new());
}

#[test]
fn the_checker_catches_a_row_outside_the_replicas_scope() {
    // Node 1's scope leaves p2 out, and it holds p2 anyway.
    let mut s = sound();
    let mut scope = s.server.clone();
    posts(&mut scope).retain(|(pk, _)| pk != "[\"p2\"]");
    s.replicas[1].scope = Some(scope.clone());
    assert_eq!(classes(&s), vec!["out-of-scope"]);
    // Without it, the replica is sound; a row of its scope missing is not.
    posts(&mut s.replicas[1].tables).retain(|(pk, _)| pk != "[\"p2\"]");
    assert!(classes(&s).is_empty());
    posts(&mut s.replicas[1].tables).clear();
    assert_eq!(classes(&s), vec!["diverged"]);
}

#[test]
fn the_checker_catches_a_lost_acknowledged_write() {
    let mut s = sound();
    // Node 1 says it wrote t7 on p2; the server never saw it.
    s.log
        .push(write(5, Actor::Node(1), "p2", Kind::Update, Some("t7")));
    assert_eq!(classes(&s), vec!["lost-write"]);
    // Listed as FAILED with a reason on that node: excused (and the row
    // may differ there).
    s.replicas[1].unsettled.insert(
        ("Post".into(), "[\"p2\"]".into()),
        Unsettled {
            status: "FAILED".into(),
            reason: Some("violates foreign key".into()),
        },
    );
    assert_eq!(classes(&s), Vec::<&str>::new());
    // Without the reason it is an anomaly of its own.
    s.replicas[1].unsettled.insert(
        ("Post".into(), "[\"p2\"]".into()),
        Unsettled {
            status: "FAILED".into(),
            reason: None,
        },
    );
    assert_eq!(classes(&s), vec!["no-reason"]);
    // A delete acknowledged but the row still on the server.
    let mut s = sound();
    s.log
        .push(write(5, Actor::Node(0), "p2", Kind::Delete, None));
    assert_eq!(classes(&s), vec!["lost-write"]);
    // Superseded by the same node's later write to that row: fine.
    let mut s = sound();
    s.log
        .push(write(5, Actor::Node(1), "p2", Kind::Update, Some("t7")));
    s.log
        .push(write(6, Actor::Node(1), "p2", Kind::Update, Some("t3")));
    assert_eq!(classes(&s), Vec::<&str>::new());
    // An unknown outcome need not have landed.
    let mut s = sound();
    let mut w = write(5, Actor::Node(1), "p2", Kind::Update, Some("t7"));
    w.ack = Ack::Unknown;
    s.log.push(w);
    assert_eq!(classes(&s), Vec::<&str>::new());
}

/// A copy carried node 0's insert of p2 (never on the server); node 0 then
/// deleted p2 and the copy pushed its insert: the row is on the server, and
/// that is the copy's doing, not a lost delete. Only that row and only the
/// copied node's delete are allowed.
#[test]
fn the_checker_allows_a_copy_to_insert_a_row_its_original_deleted_and_nothing_else() {
    let mut s = sound();
    s.log
        .push(write(5, Actor::Node(0), "p2", Kind::Delete, None));
    assert_eq!(classes(&s), vec!["lost-write"]);
    s.copy_carried.insert(("Post".into(), "[\"p2\"]".into(), 0));
    assert_eq!(classes(&s), Vec::<&str>::new());
    // Another node's delete of that row is not the copy's business.
    s.log
        .push(write(6, Actor::Node(1), "p2", Kind::Delete, None));
    assert_eq!(classes(&s), vec!["lost-write"]);
    // Nor is node 0's delete of another row.
    let mut s = sound();
    s.copy_carried.insert(("Post".into(), "[\"p2\"]".into(), 0));
    s.log
        .push(write(5, Actor::Node(0), "p1", Kind::Delete, None));
    assert_eq!(classes(&s), vec!["lost-write"]);
}

#[test]
fn the_checker_catches_duplicates_resurrections_and_stuck_rows() {
    let mut s = sound();
    posts(&mut s.server).push(row("p3", "t3"));
    for r in &mut s.replicas {
        posts(&mut r.tables).push(row("p3", "t3"));
    }
    assert_eq!(classes(&s), vec!["duplicate"; 3]);
    let mut s = sound();
    posts(&mut s.replicas[0].tables).push(row("p1", "t2"));
    assert_eq!(classes(&s), vec!["duplicate"]);
    let mut s = sound();
    s.audit.push(event(6, "p9", "I", &["t10"]));
    assert_eq!(classes(&s), vec!["resurrected"]);
    let mut s = sound();
    s.replicas[0].unsettled.insert(
        ("Post".into(), "[\"p1\"]".into()),
        Unsettled {
            status: "PENDING".into(),
            reason: None,
        },
    );
    assert_eq!(classes(&s), vec!["pending"]);
}

#[test]
fn the_checker_exempts_only_the_writes_a_restore_threw_away() {
    // Node 0 wrote t7 after a backup; the restore threw it away before it
    // was synced: exempt, and only that write.
    let mut s = sound();
    s.log
        .push(write(5, Actor::Node(0), "p2", Kind::Update, Some("t7")));
    assert_eq!(classes(&s), vec!["lost-write"]);
    s.restore_lost.insert(5);
    assert_eq!(classes(&s), Vec::<&str>::new());
    // A thrown-away write does not supersede the node's earlier write:
    // that one (in the backup) must still land.
    let mut s = sound();
    s.log
        .push(write(5, Actor::Node(0), "p2", Kind::Update, Some("t8")));
    s.log
        .push(write(6, Actor::Node(0), "p2", Kind::Update, Some("t7")));
    s.restore_lost.insert(6);
    assert_eq!(classes(&s), vec!["lost-write"]);
    // Another node's write to the same row is not exempt.
    let mut s = sound();
    s.log
        .push(write(5, Actor::Node(1), "p2", Kind::Update, Some("t7")));
    s.restore_lost.insert(6);
    assert_eq!(classes(&s), vec!["lost-write"]);
}

#[test]
fn the_checker_catches_an_edit_pushed_twice() {
    let mut s = sound();
    // The server rewrote p1 with the tokens it already had.
    s.audit.push(event(6, "p1", "U", &["t2"]));
    assert_eq!(classes(&s), vec!["pushed-twice"]);
}
