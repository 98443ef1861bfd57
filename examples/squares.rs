//! Squares of numbers computed by other processes and written into shared
//! memory, two ways: one process per number (`Process`), then a pool of
//! worker processes that take `(index, number)` tasks from a `Queue` and
//! write `number * number` into a shared `Array` at that index
//! (`Pool.starmap` into shared memory). Prints both arrays.
//!
//! Mirrors Python's multiprocessing tutorials:
//!
//! ```python
//! def square(arr, x):
//!     arr[x] = x * x
//!
//! arr = Array('q', 8)
//! procs = [Process(target=square, args=(arr, x)) for x in range(8)]
//! for p in procs: p.start()
//! for p in procs: p.join()
//!
//! def init(arr):
//!     global shared
//!     shared = arr
//!
//! def square_into(i, x):
//!     shared[i] = x * x
//!
//! arr = Array('q', 32)
//! with Pool(4, initializer=init, initargs=(arr,)) as pool:
//!     pool.starmap(square_into, [(i, i) for i in range(32)])
//! ```
//!
//! Run it with `cargo run --release --example squares`.

mod common;

use std::process::ExitCode;

use common::{Result, Role};
use shmkit::{Array, Error, Queue};

/// Numbers for the one-process-per-number part.
const PER_PROCESS: usize = 8;
/// Numbers for the pool part.
const POOLED: usize = 32;

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        let r = match role.name() {
            "square" => square(&role),
            "pool" => pool_worker(&role),
            other => Err(format!("unknown role {other}").into()),
        };
        return common::finish(r);
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// One process, one number: writes `x * x` at index `x`.
fn square(role: &Role) -> Result {
    let arr = Array::<u64>::open(role.arg(0)?)?;
    let x: u64 = role.num(1)?;
    arr.set(x as usize, x * x)?;
    println!("  process {}: {x}² = {}", std::process::id(), x * x);
    Ok(())
}

/// A pool worker: `(index, number)` tasks until the queue is closed.
fn pool_worker(role: &Role) -> Result {
    let arr = Array::<u64>::open(role.arg(0)?)?;
    let tasks = Queue::open(role.arg(1)?)?;
    let mut done = 0;
    loop {
        match tasks.get_value::<[u64; 2]>() {
            Ok([i, x]) => arr.set(i as usize, x * x)?,
            Err(Error::Closed { .. }) => break,
            Err(e) => return Err(e.into()),
        }
        done += 1;
    }
    println!("  pool worker {}: wrote {done} squares", std::process::id());
    Ok(())
}

fn parent() -> Result {
    println!("one process per number:");
    let arr = Array::<u64>::create(&common::name("per-process"), PER_PROCESS, 0)?;
    let mut procs = Vec::new();
    for x in 0..PER_PROCESS {
        procs.push(common::spawn("square", &[arr.name(), &x.to_string()])?);
    }
    common::join_all(procs)?;
    println!("process per number: {:?}", arr.to_vec());

    let n = common::workers();
    println!("a pool of {n} processes, starmap into a shared Array:");
    let arr = Array::<u64>::create(&common::name("pooled"), POOLED, 0)?;
    let tasks = Queue::create(&common::name("tasks"), 8, 16)?;
    let pool = common::spawn_n(n, "pool", &[arr.name(), tasks.name()])?;
    for i in 0..POOLED as u64 {
        // Waits whenever the 8 places are taken.
        common::patiently(|t| tasks.put_timeout(bytemuck::bytes_of(&[i, i]), t))?;
    }
    tasks.close();
    common::join_all(pool)?;
    println!("pool starmap: {:?}", arr.to_vec());
    Ok(())
}
