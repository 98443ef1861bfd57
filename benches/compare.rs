//! `cargo bench --bench compare [-- ARGS]`: the cross-process comparison
//! against shmkit's peers (issue 6).
//!
//! The comparison lives in `bench/`, a crate of its own so that the main
//! build never compiles the peers (ipc-channel, interprocess, raw_sync,
//! shared_memory, plotters, iceoryx2 0.10). This bench only builds
//! and runs it, passing ARGS on (`--quick`, `--out DIR`, `--no-doc`, …; see
//! `bench/src/main.rs`). A full run takes about five minutes and writes
//! `bench/results/` and the generated section of `BENCHMARKS.md`.
//! iceoryx2 0.10 is built and measured in every run (it needs no libclang);
//! `SHMKIT_COMPARE_FEATURES` passes cargo features to the comparison crate
//! (`iceoryx2`, once needed for it, is kept as a no-op).
#![allow(missing_docs)]

use std::process::Command;

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    // `cargo bench` passes `--bench` to every bench binary.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--release", "--manifest-path"])
        .arg(format!("{root}/bench/Cargo.toml"));
    // SHMKIT_COMPARE_FEATURES: cargo features for the comparison crate.
    if let Ok(f) = std::env::var("SHMKIT_COMPARE_FEATURES") {
        cmd.arg("--features").arg(f);
    }
    let status = cmd
        .arg("--")
        .args(&args)
        // The comparison crate keeps its own target directory.
        .env("CARGO_TARGET_DIR", format!("{root}/bench/target"))
        .env("SHMKIT_COMPARE_VIA_CARGO_BENCH", "1")
        .status()
        .expect("cannot start cargo");
    std::process::exit(status.code().unwrap_or(1));
}
