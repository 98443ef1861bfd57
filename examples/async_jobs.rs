//! Async: a tokio program whose tasks wait on shmkit queues, a pipe and an
//! event without blocking the runtime's threads. A worker *process* answers
//! jobs from a `Queue` over a `Pipe`; in this process, 8 tasks await
//! answers while a ticker task keeps running, which shows that the waits
//! do not hold the executor; a shutdown `Event` ends the worker.
//!
//! Run it with `cargo run --release --example async_jobs`.

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use common::{Result, Role};
use shmkit::{Event, Pipe, Queue, WaitSet};

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(worker(&role));
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// Blocking worker: squares each job and sends `[job, job²]` back, until
/// shutdown.
fn worker(role: &Role) -> Result {
    let jobs = Queue::open(role.arg(0)?)?;
    let mut answers = Pipe::open(role.arg(1)?)?;
    let shutdown = Event::open(role.arg(2)?)?;
    loop {
        let mut ws = WaitSet::new();
        let (j, s) = (ws.add(&jobs)?, ws.add(&shutdown)?);
        let ready = ws.wait()?;
        if ready.contains(j) {
            if let Ok(m) = jobs.try_get() {
                let job = u64::from_le_bytes(m.as_slice().try_into()?);
                let mut out = job.to_le_bytes().to_vec();
                out.extend((job * job).to_le_bytes());
                answers.send(&out)?;
            }
        } else if ready.contains(s) {
            return Ok(());
        }
    }
}

fn parent() -> Result {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result {
    let jobs = Arc::new(Queue::create(&common::name("jobs"), 4, 8)?);
    let mut answers = Pipe::create(&common::name("answers"))?;
    let shutdown = Event::create(&common::name("shutdown"))?;
    let worker = common::spawn("worker", &[jobs.name(), answers.name(), shutdown.name()])?;

    // A ticker that runs only if nothing below blocks the (single) thread.
    let ticks = Arc::new(std::sync::Mutex::new(0u32));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            *t.lock().unwrap() += 1;
        }
    });

    // 8 producer tasks put 8 jobs each, waiting for room as futures.
    let n = 64u64;
    let producers: Vec<_> = (0..8u64)
        .map(|p| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                for i in 0..n / 8 {
                    jobs.put_async(&(p * (n / 8) + i).to_le_bytes()).await?;
                }
                Ok::<(), shmkit::Error>(())
            })
        })
        .collect();
    let mut sum = 0u64;
    for _ in 0..n {
        let m = answers.recv_async().await?;
        let job = u64::from_le_bytes(m[..8].try_into()?);
        let square = u64::from_le_bytes(m[8..16].try_into()?);
        if square != job * job {
            return Err(format!("job {job}: got {square}").into());
        }
        sum += square;
    }
    for p in producers {
        p.await??;
    }
    shutdown.set();
    worker.join()?;
    ticker.abort();
    let want: u64 = (0..n).map(|i| i * i).sum();
    println!(
        "async: {n} jobs answered by a worker process, sum of squares {sum} (expected {want})"
    );
    println!(
        "async: the ticker ran {} times meanwhile: the waits did not block the runtime",
        *ticks.lock().unwrap()
    );
    if sum != want {
        return Err("wrong sum".into());
    }
    Ok(())
}
