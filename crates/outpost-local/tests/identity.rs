//! The replica's identity and schema snapshot as other processes see them:
//! incarnations, becoming a new node with pending edits kept, and a
//! connection noticing a snapshot another connection replaced.

mod common;

use common::schema;
use outpost_local::{LocalError, Replica};

#[test]
fn incarnations_grow_and_a_new_node_keeps_its_pending_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("local.db");
    let (mut r, _) = Replica::setup(&path, &schema()).expect("setup");
    assert!(!r.has_local_edits().expect("edits"), "a new file has none");
    let first = r.incarnations().expect("incarnations");
    assert_eq!(first.len(), 1, "made with the file");
    let rotated = r.rotate_incarnation().expect("rotate");
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[0], first[0]);
    assert_ne!(rotated[1], first[0]);
    // Another connection to the file sees the same list.
    let mut other = Replica::open(&path).expect("open");
    assert_eq!(other.incarnations().expect("incarnations"), rotated);

    r.connection()
        .execute(
            "INSERT INTO \"Item\" (id, qty, score) VALUES ('a', 1, 0.5)",
            [],
        )
        .expect("local write");
    r.add_ids("Item", "qty", &[(10, 20)]).expect("ids");
    let old = r.node_id();
    assert!(
        r.has_local_edits().expect("edits"),
        "an unfolded change counts"
    );
    let pending_before = r.status_counts().expect("pending");
    assert_eq!(
        pending_before.get(&("Item".to_string(), "PENDING".to_string())),
        Some(&1)
    );
    let new = r.become_new_node().expect("new node");
    assert_ne!(new, old);
    assert_eq!(r.node_id(), new);
    assert_eq!(r.former_node_ids().expect("former"), [old]);
    assert_eq!(
        r.status_counts().expect("pending"),
        pending_before,
        "pending edits kept"
    );
    assert!(r.has_local_edits().expect("edits"));
    assert_eq!(
        r.ids_left("Item", "qty").expect("ids"),
        0,
        "reservations dropped"
    );
    let fresh = r.incarnations().expect("incarnations");
    assert_eq!(fresh.len(), 1);
    assert!(!rotated.contains(&fresh[0]));

    // The other connection learns the new id when it refreshes, and a
    // second `become_new_node` from it takes that id instead of a third.
    assert_eq!(other.node_id(), old);
    assert_eq!(other.become_new_node().expect("adopt"), new);
    assert_eq!(Replica::open(&path).expect("reopen").node_id(), new);
}

#[test]
fn a_replaced_snapshot_is_noticed_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("local.db");
    let (mut r, _) = Replica::setup(&path, &schema()).expect("setup");
    assert!(r.check_schema().is_ok());
    let mut smaller = schema();
    smaller.tables.retain(|t| t.name == "Item");
    Replica::setup(&path, &smaller).expect("setup by another process");
    assert!(matches!(r.check_schema(), Err(LocalError::SchemaChanged)));
    assert!(matches!(
        r.apply_silenced(|_| Ok(())),
        Err(LocalError::SchemaChanged)
    ));
    let changed = r.refresh().expect("refresh");
    assert!(changed.schema && !changed.node_id);
    assert_eq!(r.schema().tables.len(), 1);
    r.apply_silenced(|_| Ok(()))
        .expect("writes with the new snapshot");
    assert_eq!(r.refresh().expect("refresh"), Default::default());
}
