//! Four processes each add 1 to one shared `Value<u64>` 100 000 times: first
//! with no lock (a load, then a store: updates get lost), then under the
//! value's lock, then with the lock-free `fetch_add`. Prints each final value
//! and how long the run took (starting the four processes included).
//!
//! Mirrors the counter of Python's multiprocessing tutorials:
//!
//! ```python
//! def add(counter, n):
//!     for _ in range(n):
//!         with counter.get_lock():      # drop this line to lose updates
//!             counter.value += 1
//!
//! counter = Value('i', 0)
//! procs = [Process(target=add, args=(counter, 100_000)) for _ in range(4)]
//! for p in procs: p.start()
//! for p in procs: p.join()
//! print(counter.value)                  # 400000
//! ```
//!
//! Run it with `cargo run --release --example counter`.

mod common;

use std::process::ExitCode;

use common::{Result, Role};
use shmkit::Value;

const PROCS: usize = 4;
const INCREMENTS: u64 = 100_000;

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(worker(&role));
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// A worker: opens the counter by name and adds 1 to it, `n` times, the way
/// its role says.
fn worker(role: &Role) -> Result {
    let counter = Value::<u64>::open(role.arg(0)?)?;
    let n: u64 = role.num(1)?;
    match role.name() {
        // Another process can store between our load and our store: its
        // increment is then overwritten by ours.
        "unlocked" => {
            for _ in 0..n {
                let v = counter.load();
                counter.store(v + 1);
            }
        }
        // The guard holds the lock from the read to the write-back.
        "locked" => {
            for _ in 0..n {
                *counter.lock()? += 1;
            }
        }
        "fetch_add" => {
            for _ in 0..n {
                counter.fetch_add(1);
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}

fn parent() -> Result {
    let expected = PROCS as u64 * INCREMENTS;
    println!(
        "{PROCS} processes × {INCREMENTS} increments of one Value<u64> (expected {expected}):"
    );
    for (role, how) in [
        ("unlocked", "load, then store"),
        ("locked", "*counter.lock()? += 1"),
        ("fetch_add", "counter.fetch_add(1)"),
    ] {
        let counter = Value::<u64>::create(&common::name(role), 0)?;
        let n = INCREMENTS.to_string();
        let ((), took) = common::timed(|| {
            let workers = common::spawn_n(PROCS, role, &[counter.name(), &n])?;
            common::join_all(workers)
        })?;
        let v = counter.load();
        let note = if v < expected {
            format!("  ({} updates lost)", expected - v)
        } else {
            String::new()
        };
        println!(
            "  {role:<9} {how:<24} final value {v:>6}  in {:>8}{note}",
            common::human(took)
        );
    }
    Ok(())
}
