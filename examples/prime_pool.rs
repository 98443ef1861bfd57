//! Which numbers in a range are prime: first one after the other in this
//! process, then with a pool of worker processes that take chunks of the
//! range from one `Queue` and send their answers back on another. Prints
//! both times and checks that the answers agree.
//!
//! Mirrors `Pool.map` in Python's multiprocessing tutorials:
//!
//! ```python
//! numbers = range(START, START + COUNT)
//! answers = [is_prime(n) for n in numbers]          # sequential
//! with Pool() as pool:
//!     pooled = pool.map(is_prime, numbers, chunksize=CHUNK)
//! assert pooled == answers
//! ```
//!
//! The pool is two queues: tasks (`[start, len]` of a chunk) and results
//! (`start` followed by one byte per number). Closing the task queue, once
//! every task is in, tells the workers to stop after draining it. Run it with
//! `cargo run --release --example prime_pool`.

mod common;

use std::process::ExitCode;
use std::time::Instant;

use common::{Result, Role};
use shmkit::{Error, Queue};

/// The first number tested.
const START: u64 = 10_000_000_000;
/// Numbers per task.
const CHUNK: u64 = 500;

fn count() -> u64 {
    if common::quick() {
        20_000
    } else {
        100_000
    }
}

/// Trial division by 2, 3 and the numbers 6k ± 1.
fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n % 2 == 0 || n % 3 == 0 {
        return false;
    }
    let mut d = 5;
    while d * d <= n {
        if n % d == 0 || n % (d + 2) == 0 {
            return false;
        }
        d += 6;
    }
    true
}

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(worker(&role));
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// A pool worker: takes chunks until the task queue is closed and empty.
fn worker(role: &Role) -> Result {
    let tasks = Queue::open(role.arg(0)?)?;
    let results = Queue::open(role.arg(1)?)?;
    loop {
        let [start, len] = match tasks.get_value::<[u64; 2]>() {
            Ok(task) => task,
            Err(Error::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut answer = start.to_ne_bytes().to_vec();
        answer.extend((start..start + len).map(|n| u8::from(is_prime(n))));
        results.put(&answer)?;
    }
}

fn parent() -> Result {
    let count = count();
    let numbers = START..START + count;
    println!("is_prime for the {count} numbers from {START}:");

    let t = Instant::now();
    let mut sequential = Vec::with_capacity(count as usize);
    for n in numbers.clone() {
        if n % 1024 == 0 {
            common::check()?;
        }
        sequential.push(is_prime(n));
    }
    let seq_time = t.elapsed();
    let seq_primes = sequential.iter().filter(|&&p| p).count();
    println!(
        "  sequential:                  {seq_primes} primes in {}",
        common::human(seq_time)
    );

    let chunks = count.div_ceil(CHUNK) as usize;
    // Room for every task and every answer, so no one ever waits for room.
    let tasks = Queue::create(&common::name("tasks"), chunks, 16)?;
    let results = Queue::create(&common::name("results"), chunks, 8 + CHUNK as usize)?;
    let procs = common::workers();

    let t = Instant::now();
    let workers = common::spawn_n(procs, "worker", &[tasks.name(), results.name()])?;
    for start in numbers.clone().step_by(CHUNK as usize) {
        tasks.put_value(&[start, CHUNK.min(numbers.end - start)])?;
    }
    tasks.close();
    let mut pooled = vec![None; count as usize];
    for _ in 0..chunks {
        let answer = common::patiently(|t| results.get_timeout(t))?;
        let (head, flags) = answer.split_at(8);
        let start = u64::from_ne_bytes(head.try_into()?);
        let at = (start - START) as usize;
        for (i, &f) in flags.iter().enumerate() {
            pooled[at + i] = Some(f == 1);
        }
    }
    common::join_all(workers)?;
    let pool_time = t.elapsed();
    let pooled: Vec<bool> = pooled
        .into_iter()
        .map(|a| a.ok_or("a number got no answer"))
        .collect::<std::result::Result<_, _>>()?;
    let pool_primes = pooled.iter().filter(|&&p| p).count();
    println!(
        "  pool of {procs} worker processes: {pool_primes} primes in {} ({chunks} tasks of {CHUNK})",
        common::human(pool_time)
    );
    println!(
        "  speedup {:.2}×",
        seq_time.as_secs_f64() / pool_time.as_secs_f64()
    );
    if pooled != sequential {
        return Err("the pool's answers differ from the sequential ones".into());
    }
    println!("answers agree: yes");
    Ok(())
}
