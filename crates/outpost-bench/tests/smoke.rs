//! The benchmark harness runs end to end in its quick mode, so it never rots.
//! (It measures nothing here: no timing is asserted.)

#[test]
fn harness_runs_in_quick_mode() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outpost-bench"))
        .arg("--quick")
        .output()
        .expect("run outpost-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        [
            "B1 bootstrap",
            "B2 push",
            "B3 pull",
            "B4 ",
            "B5 latency",
            "B6 capture",
            "B7 ",
            "B8 local",
            "B9 push",
            "B10 push",
            "B11 round trip",
            "B12 fan-out, 1 gateway",
            "B12 two gateways / one",
            "B13 updates, trigger",
            "B13 updates, xmin guard",
            "B13 inserts, trigger",
            "B13 inserts, if absent",
            "B13 decoding"
        ]
        .iter()
        .all(|s| stdout.contains(s)),
        "{stdout}"
    );
}
