//! Lockstep phases across separate processes with a `Barrier`: each worker
//! owns one cell of a ring and, every phase, writes its new value (the sum
//! of its neighbours' old values, mod 1000) into the other half of a
//! double-buffered shared `Array`, then waits at the barrier so that
//! nobody reads the next phase's inputs before everyone has written them.
//! The barrier's action counts the phases: it runs once per trip, in the
//! last worker to arrive, before anyone goes on. The parent checks the
//! result against a sequential run and prints both.
//!
//! Mirrors Python's `multiprocessing.Barrier` use for phases:
//!
//! ```python
//! def worker(barrier, cells, i, n, phases):
//!     for p in range(phases):
//!         src, dst = (p % 2) * n, ((p + 1) % 2) * n
//!         cells[dst + i] = (cells[src + (i - 1) % n] + cells[src + (i + 1) % n]) % 1000
//!         barrier.wait()
//!
//! barrier = Barrier(4, action=count_phase)
//! procs = [Process(target=worker, args=(barrier, cells, i, 4, 20)) for i in range(4)]
//! ```
//!
//! Run it with `cargo run --release --example lockstep`.

mod common;

use std::process::ExitCode;

use common::{Result, Role};
use shmkit::{Array, Barrier, Value};

const PHASES: usize = 20;

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        let r = match role.name() {
            "cell" => cell(&role),
            other => Err(format!("unknown role {other}").into()),
        };
        return common::finish(r);
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// The starting ring: cell `i` holds `i + 1`.
fn start(n: usize) -> Vec<u64> {
    (1..=n as u64).collect()
}

/// One phase of the rule over a whole ring.
fn step(cur: &[u64]) -> Vec<u64> {
    let n = cur.len();
    (0..n)
        .map(|i| (cur[(i + n - 1) % n] + cur[(i + 1) % n]) % 1000)
        .collect()
}

/// Worker `i` of `n`: args are the barrier, the cells (2n), the phase
/// counter, then its index.
fn cell(role: &Role) -> Result {
    let cells = Array::<u64>::open(role.arg(1)?)?;
    let counter = role.arg(2)?.to_owned();
    let phases = Value::<u64>::open(&counter)?;
    // The action runs in whichever worker arrives last, once per phase.
    let barrier = Barrier::open(role.arg(0)?)?.with_action(move || {
        phases.fetch_add(1);
    });
    let n = barrier.parties() as usize;
    let i: usize = role.num(3)?;
    for p in 0..PHASES {
        let (src, dst) = ((p % 2) * n, ((p + 1) % 2) * n);
        let left = cells
            .get(src + (i + n - 1) % n)
            .ok_or("cell out of range")?;
        let right = cells.get(src + (i + 1) % n).ok_or("cell out of range")?;
        cells.set(dst + i, (left + right) % 1000)?;
        if barrier.wait()? == 0 {
            println!("  phase {p} done (reported by worker {i})");
        }
    }
    Ok(())
}

fn parent() -> Result {
    // At least 3, so that a cell's two neighbours differ.
    let n = common::workers().max(3);
    let barrier = Barrier::create(&common::name("barrier"), n as u32)?;
    let cells = Array::<u64>::create(&common::name("cells"), 2 * n, 0)?;
    for (i, v) in start(n).into_iter().enumerate() {
        cells.set(i, v)?;
    }
    let phases = Value::<u64>::create(&common::name("phases"), 0)?;
    println!("{n} workers, {PHASES} phases in lockstep:");
    let workers = common::spawn_n(n, "cell", &[barrier.name(), cells.name(), phases.name()])?;
    common::join_all(workers)?;

    let half = (PHASES % 2) * n;
    let got = cells.to_vec()[half..half + n].to_vec();
    let mut want = start(n);
    for _ in 0..PHASES {
        want = step(&want);
    }
    println!("lockstep: {got:?}");
    println!("sequential: {want:?}");
    println!("phases counted by the action: {}", phases.load());
    if got != want || phases.load() != PHASES as u64 {
        return Err("the processes fell out of step".into());
    }
    println!("match: true");
    Ok(())
}
