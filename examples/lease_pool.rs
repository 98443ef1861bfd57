//! A worker pool that loses no job when a worker dies: Python's
//! `Pool.map(square, [1, 2, 3, 4, 5])`, on a leased `Queue`.
//!
//! ```python
//! with Pool(3) as pool:
//!     print(pool.map(square, range(1, 13)))   # [1, 4, 9, ..., 144]
//! ```
//!
//! Jobs go out on one queue, taken under leases (`get_lease`); answers
//! come back on another, with the job's index, and are put in input order.
//! A worker acks its job only after its answer is sent, so a worker that
//! dies holding a job loses nothing: the queue delivers the job again
//! (marked redelivered), and the parent starts a new worker in the dead
//! one's place. To show it, the worker that first takes job 7 crashes on
//! it. `join` waits until every job is acked. Run it with
//! `cargo run --example lease_pool`.

use std::process::ExitCode;
use std::time::Duration;

use shmkit::process::{self, Child, Role};
use shmkit::{Error, Queue};

const JOBS: u64 = 12;
const WORKERS: usize = 3;
/// The job whose first worker dies.
const FATAL: u64 = 7;

fn square(n: u64) -> u64 {
    n * n
}

/// The `k`-th u64 of a message (`put_value` wrote them).
fn word(m: &[u8], k: usize) -> u64 {
    u64::from_ne_bytes(m[8 * k..8 * k + 8].try_into().unwrap())
}

/// Takes jobs `[index, n]` until the job queue is closed and drained.
fn worker(role: &Role) -> shmkit::Result<()> {
    let jobs = Queue::open(role.arg(0)?)?;
    let answers = Queue::open(role.arg(1)?)?;
    loop {
        let lease = match jobs.get_lease() {
            Ok(l) => l,
            Err(Error::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let (i, n) = (word(&lease, 0), word(&lease, 1));
        if n == FATAL && !lease.redelivered() {
            eprintln!("worker {}: dying on job {i} (n = {n})", std::process::id());
            std::process::abort(); // as a SIGKILL would: no cleanup
        }
        answers.put_value(&[i, square(n), u64::from(lease.redelivered())])?;
        lease.ack()?; // after the answer is out: a death before this redoes the job
    }
}

fn main() -> ExitCode {
    if let Some(code) = process::dispatch(&[("worker", worker)]) {
        return code;
    }
    match parent() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lease_pool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> shmkit::Result<()> {
    let jobs = Queue::create_unique(JOBS as usize, 16)?;
    let answers = Queue::create_unique(JOBS as usize, 24)?;
    let args = [jobs.name(), answers.name()];
    let mut pool: Vec<Child> = (0..WORKERS)
        .map(|_| process::spawn("worker", &args))
        .collect::<shmkit::Result<_>>()?;
    for (i, n) in (1..=JOBS).enumerate() {
        jobs.put_value(&[i as u64, n])?;
    }
    let mut results = vec![None; JOBS as usize];
    let (mut got, mut redone, mut replaced) = (0, 0, 0);
    while got < JOBS {
        match answers.get_timeout(Duration::from_millis(20)) {
            // (A worker that dies after its answer, before its ack, has its
            // job redone: the answer may come twice.)
            Ok(m) if results[word(&m, 0) as usize].is_none() => {
                results[word(&m, 0) as usize] = Some(word(&m, 1));
                got += 1;
                redone += word(&m, 2);
            }
            Ok(_) => {}
            Err(Error::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
        // Supervise: a worker that died is replaced.
        for child in &mut pool {
            if let Some(status) = child.try_join()? {
                println!("worker {} died ({status}); starting another", child.pid());
                *child = process::spawn("worker", &args)?;
                replaced += 1;
            }
        }
    }
    jobs.join()?; // every job acked
    jobs.close();
    for mut child in pool {
        child.join()?;
    }
    let squares: Vec<u64> = results.into_iter().map(Option::unwrap).collect();
    println!("pool map: {squares:?}");
    println!("jobs redone after a worker died: {redone}; workers replaced: {replaced}");
    Ok(())
}
