//! What the operator's integration tests share: a visible skip.
//!
//! The operator crate does not depend on `netfence-e2e`, so this is the same few lines as
//! `netfence_e2e::skip`, with the same output: one `SKIPPED [target] test: reason` line written
//! straight to stderr (the test harness captures `eprintln!`, so a skip of a passing test would
//! not show) and appended to the file `NETFENCE_SKIP_LOG` names, which `.ci/run` summarises.

use std::io::Write as _;

/// The environment variable that points the scenarios at a real cluster (as in `netfence-e2e`).
pub const KUBECONFIG_VARIABLE: &str = "NETFENCE_E2E_KUBECONFIG";

/// The environment variable naming the file every skip is appended to.
pub const SKIP_LOG_VARIABLE: &str = "NETFENCE_SKIP_LOG";

/// Say that `test` is skipped, and why, where it shows even when the test passes.
pub fn skip(test: &str, reason: &str) {
    let target = std::env::var_os(KUBECONFIG_VARIABLE).map_or("sandbox", |_| "real");
    let line = format!("SKIPPED [{target}] {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG_VARIABLE)
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}
