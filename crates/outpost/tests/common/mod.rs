//! What the binary's black-box tests share: running `outpost` with a clean
//! outpost environment.
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::process::{Command, Output};

/// The environment variables outpost reads; removed so the caller's own
/// environment cannot leak into a test.
pub const VARS: &[&str] = &[
    "DATABASE_URL",
    "ENABLE_LOCAL_DATABASE",
    "LOCAL_DATABASE_URL",
    "LOCAL_DATABASE_SYNC_INTERVAL",
    "ENABLE_OFFLINE_MODE",
    "OUTPOST_SCHEMA",
    "OUTPOST_TABLES",
    "OUTPOST_EXCLUDE_TABLES",
    "OUTPOST_GATEWAY_URL",
    "OUTPOST_GATEWAY_TOKEN",
    "OUTPOST_GATEWAY_SECRET",
    "OUTPOST_GATEWAY_AUDIENCE",
    "OUTPOST_GATEWAY_POOL",
];

/// Runs the binary in `dir` with a clean outpost environment plus `env`.
pub fn outpost(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    cmd.current_dir(dir).args(args);
    for v in VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run outpost")
}
