//! A small job server: worker processes take jobs from a `Queue` and put
//! results on another; each worker has a `Pipe` to the server on which it
//! says which job it has taken; a shutdown `Event` ends everything. One
//! worker is SIGKILLed in the middle of a job. The server waits on all of
//! it (results, every worker's pipe, shutdown) with one `WaitSet`: no
//! polling loop, no reaper thread. A dead worker's pipe becomes ready (its
//! `recv` says `Disconnected`) within a millisecond or so of the kill, and
//! the server puts the job it had taken back and starts a replacement.
//!
//! Python's shape of the same server is `connection.wait([results._reader,
//! *worker_conns, shutdown_conn])`. Run it with
//! `cargo run --release --example server`.

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{Result, Role, Worker};
use shmkit::{Error, Event, Pipe, PipeEnd, Queue, WaitSet};

fn jobs() -> u64 {
    if common::quick() {
        40
    } else {
        200
    }
}

/// What one job costs a worker.
const WORK: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(worker(&role));
    }
    common::on_ctrl_c();
    common::finish(server())
}

/// Takes jobs until shutdown: says on its pipe which job it took, works,
/// puts `[job, job²]` on the results queue.
fn worker(role: &Role) -> Result {
    let jobs = Queue::open(role.arg(0)?)?;
    let results = Queue::open(role.arg(1)?)?;
    let shutdown = Event::open(role.arg(2)?)?;
    let mut pipe = Pipe::open(role.arg(3)?)?;
    loop {
        let mut ws = WaitSet::new();
        let (j, s) = (ws.add(&jobs)?, ws.add(&shutdown)?);
        let ready = ws.wait()?;
        if ready.contains(s) {
            return Ok(());
        }
        if !ready.contains(j) {
            continue;
        }
        let job = match jobs.try_get() {
            Ok(m) => u64::from_ne_bytes(m.as_slice().try_into()?),
            Err(Error::Empty { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        pipe.send_value(&job)?;
        std::thread::sleep(WORK);
        results.put_value(&[job, job * job])?;
    }
}

struct Slot {
    worker: Worker,
    pipe: PipeEnd,
    /// The job it said it took and has not delivered.
    taken: Option<u64>,
}

fn start(jobs: &Queue, results: &Queue, shutdown: &Event, n: usize) -> Result<Slot> {
    let pipe = Pipe::create(&common::name(&format!("pipe{n}")))?;
    let worker = common::spawn(
        "worker",
        &[jobs.name(), results.name(), shutdown.name(), pipe.name()],
    )?;
    Ok(Slot {
        worker,
        pipe,
        taken: None,
    })
}

fn server() -> Result {
    let total = jobs();
    let jobs = Queue::create(&common::name("jobs"), total as usize, 8)?;
    let results = Queue::create(&common::name("results"), total as usize, 16)?;
    let shutdown = Event::create(&common::name("shutdown"))?;
    let mut slots = Vec::new();
    for n in 0..common::workers().max(2) {
        slots.push(start(&jobs, &results, &shutdown, n)?);
    }
    let mut started = slots.len();
    println!("server: {} workers, {total} jobs", slots.len());
    for job in 0..total {
        jobs.put_value(&job)?;
    }
    let t = Instant::now();
    let mut done = vec![false; total as usize];
    let (mut delivered, mut killed, mut requeued) = (0u64, false, 0);
    while delivered < total {
        common::check()?;
        let mut ws = WaitSet::new();
        let r = ws.add(&results)?;
        let s = ws.add(&shutdown)?;
        let pipes: Vec<_> = slots
            .iter()
            .map(|slot| ws.add(&slot.pipe))
            .collect::<shmkit::Result<_>>()?;
        let ready = ws.wait_timeout(Duration::from_secs(30))?;
        if ready.contains(s) {
            break;
        }
        if ready.contains(r) {
            while let Ok(m) = results.try_get() {
                let job = u64::from_ne_bytes(m.get(..8).ok_or("short result")?.try_into()?);
                let square = u64::from_ne_bytes(m.get(8..16).ok_or("short result")?.try_into()?);
                if square != job * job {
                    return Err(format!("job {job}: got {square}").into());
                }
                for slot in &mut slots {
                    if slot.taken == Some(job) {
                        slot.taken = None;
                    }
                }
                if !std::mem::replace(&mut done[job as usize], true) {
                    delivered += 1;
                }
            }
        }
        let mut dead = Vec::new();
        for (i, k) in pipes.iter().enumerate() {
            if !ready.contains(*k) {
                continue;
            }
            match slots[i].pipe.recv_timeout(Duration::ZERO) {
                Ok(m) => {
                    let job = u64::from_ne_bytes(m.as_slice().try_into()?);
                    slots[i].taken = Some(job);
                    if !killed && delivered >= total / 4 {
                        // Kill this worker in the middle of its job.
                        killed = true;
                        // SAFETY: kill(2) on our own child; no memory involved.
                        unsafe { libc::kill(slots[i].worker.pid() as i32, libc::SIGKILL) };
                        println!(
                            "server: killed worker {} while it worked on job {job}",
                            slots[i].worker.pid()
                        );
                    }
                }
                Err(Error::Disconnected { .. }) => dead.push(i),
                Err(Error::Timeout { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for i in dead.into_iter().rev() {
            let slot = slots.swap_remove(i);
            if let Some(job) = slot.taken.filter(|&j| !done[j as usize]) {
                jobs.put_value(&job)?;
                requeued += 1;
                println!(
                    "server: worker {} died; job {job} put back",
                    slot.worker.pid()
                );
            }
            drop(slot.worker);
            slots.push(start(&jobs, &results, &shutdown, started)?);
            started += 1;
        }
    }
    shutdown.set();
    for slot in slots {
        slot.worker.join()?;
    }
    println!(
        "server: all {delivered} jobs done in {}, {requeued} put back after a worker died",
        common::human(t.elapsed())
    );
    if !killed {
        return Err("no worker was killed".into());
    }
    Ok(())
}
