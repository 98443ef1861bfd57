//! A tour of shmkit: worker processes share a `Value`, an `Array`, a `Lock`,
//! an `Event`, a `Pipe` and a `Queue` with this one, and it prints for each
//! what happened and how long it took, then the machine's CPU count.
//!
//! This is the whole of Python's multiprocessing tutorials in one program —
//! the counter (`Value`), the shared array (`Array`), `Lock`, `Event`, the
//! `Pipe` ping-pong and the `Queue` of producers — run as real processes:
//! each worker is this program started again with a role, and it opens the
//! objects by the names it is given in argv (see `examples/common`).
//!
//! Every segment is created by this process, named
//! `shmkit-ex-tour-<pid>-<what>`, and unlinked when its handle drops, also on
//! Ctrl-C: the signal only sets a flag, the tour notices it and returns, and
//! the workers are killed and reaped (or killed by the kernel if the tour
//! itself dies). At the end it checks that `/dev/shm` holds none of them.
//!
//! Run it with `cargo run --release --example tour`.
//! (`SHMKIT_TOUR_HOLD=1` makes it wait at the `Event` step, workers
//! blocked, until Ctrl-C: the tests use it to interrupt it mid-run.)

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{human, Result, Role};
use shmkit::{Array, Error, Event, Lock, Pipe, Queue, Value};

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(worker(&role));
    }
    common::on_ctrl_c();
    let r = tour();
    // Every segment has been dropped by now, whichever way `tour` returned.
    let left = leftovers();
    if left.is_empty() {
        println!("left in /dev/shm: nothing");
    } else {
        println!("left in /dev/shm: {left:?}");
    }
    common::finish(r)
}

/// Sizes: smaller under `SHMKIT_EXAMPLE_QUICK=1`.
fn size(full: u64) -> u64 {
    if common::quick() {
        full / 5
    } else {
        full
    }
}

fn tour() -> Result {
    let n = common::workers();
    println!(
        "shmkit tour: {n} worker processes, segments named {}*",
        common::name("")
    );
    let t = Instant::now();
    value(n)?;
    array(n)?;
    lock(n)?;
    event(n)?;
    pipe()?;
    queue(n)?;
    println!("all done in {}", human(t.elapsed()));
    println!("CPUs: {}", common::cpus());
    Ok(())
}

/// One line of the tour: the primitive, what happened, how long it took
/// (the whole step, starting the workers included, except where a line
/// says otherwise).
fn report(what: &str, happened: String, took: Duration) {
    println!("{what:<6} {happened:<68} {:>9}", human(took));
}

/// `Value`: every worker adds 1, many times, with the lock-free `fetch_add`.
fn value(n: usize) -> Result {
    let per = size(100_000);
    let counter = Value::<u64>::create(&common::name("value"), 0)?;
    let ((), took) = common::timed(|| {
        let w = common::spawn_n(n, "value", &[counter.name(), &per.to_string()])?;
        common::join_all(w)
    })?;
    let got = counter.load();
    report(
        "Value",
        format!(
            "{n} processes × {per} fetch_add(1): {got} (expected {})",
            n as u64 * per
        ),
        took,
    );
    check_eq(got, n as u64 * per)
}

/// `Array`: each worker writes i*i into its stripe, under the array's lock.
fn array(n: usize) -> Result {
    let len = 4096usize;
    let squares = Array::<u64>::create(&common::name("array"), len, 0)?;
    let ((), took) = common::timed(|| {
        let w = common::spawn_n(n, "array", &[squares.name(), &n.to_string()])?;
        common::join_all(w)
    })?;
    let right = squares
        .to_vec()
        .iter()
        .enumerate()
        .filter(|&(i, &x)| x == (i * i) as u64)
        .count();
    report(
        "Array",
        format!("{n} processes wrote i*i into {len} slots: {right} right"),
        took,
    );
    check_eq(right as u64, len as u64)
}

/// `Lock`: workers read and then write a shared number while holding a
/// `Lock`, so no update is lost.
fn lock(n: usize) -> Result {
    let per = size(10_000);
    let lock = Lock::create(&common::name("lock"))?;
    let number = Value::<u64>::create(&common::name("lock-number"), 0)?;
    let ((), took) = common::timed(|| {
        let w = common::spawn_n(n, "lock", &[lock.name(), number.name(), &per.to_string()])?;
        common::join_all(w)
    })?;
    let got = number.load();
    report(
        "Lock",
        format!(
            "{n} processes × {per} load+store under a Lock: {got} (expected {})",
            n as u64 * per
        ),
        took,
    );
    check_eq(got, n as u64 * per)
}

/// `Event`: workers block on it; one `set` wakes them all. Each notes when
/// it woke (on the monotonic clock, which all processes share) in an
/// `Array`, so the wake-up times are measured without this process
/// watching.
fn event(n: usize) -> Result {
    let go = Event::create(&common::name("event"))?;
    let ready = Value::<u64>::create(&common::name("event-ready"), 0)?;
    let woke = Array::<u64>::create(&common::name("event-woke"), n, 0)?;
    let workers = common::spawn_n(n, "event", &[go.name(), ready.name(), woke.name()])?;
    common::until(|| ready.load() == n as u64)?;
    if std::env::var_os("SHMKIT_TOUR_HOLD").is_some() {
        let pids: Vec<u32> = workers.iter().map(common::Worker::pid).collect();
        println!("Event  holding: workers {pids:?} wait on the event; press Ctrl-C");
        loop {
            common::check()?;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Let them fall asleep in the kernel, so that `set` must wake them.
    std::thread::sleep(Duration::from_millis(20));
    let set_at = monotonic_ns();
    go.set();
    common::join_all(workers)?;
    let after: Vec<Duration> = woke
        .to_vec()
        .iter()
        .map(|&t| Duration::from_nanos(t.saturating_sub(set_at)))
        .collect();
    let first = after.iter().min().copied().unwrap_or_default();
    let last = after.iter().max().copied().unwrap_or_default();
    report(
        "Event",
        format!(
            "{n} processes blocked in wait(); set() woke the first in {}, all in",
            human(first)
        ),
        last,
    );
    Ok(())
}

/// Nanoseconds on `CLOCK_MONOTONIC`: one clock for every process.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `Pipe`: round trips with one worker that echoes every message.
fn pipe() -> Result {
    let trips = size(20_000);
    let mut end = Pipe::create(&common::name("pipe"))?;
    let echo = common::spawn("pipe", &[end.name()])?;
    let t = Instant::now();
    let mut buf = [0u8; 8];
    for i in 0..trips {
        end.send_value(&i)?;
        // In slices, checking for Ctrl-C: a Ctrl-C that kills the echo
        // worker before it opened its end leaves nobody to be disconnected
        // from, and a plain `recv` would wait for it for ever.
        let n = common::patiently(|t| end.recv_into_timeout(&mut buf, t))?;
        let back = u64::from_ne_bytes(buf[..n].try_into()?);
        if back != i {
            return Err(format!("pipe: sent {i}, got {back}").into());
        }
    }
    let took = t.elapsed();
    drop(end); // the echo worker sees Disconnected and exits
    echo.join()?;
    report(
        "Pipe",
        format!(
            "{trips} round trips with 1 process: {} each",
            human(took / trips as u32)
        ),
        took,
    );
    Ok(())
}

/// `Queue`: workers produce numbers, this process consumes them all.
fn queue(n: usize) -> Result {
    let per = size(25_000);
    let q = Queue::create(&common::name("queue"), 256, 8)?;
    let t = Instant::now();
    let producers = common::spawn_n(n, "queue", &[q.name(), &per.to_string()])?;
    let total = n as u64 * per;
    let (mut count, mut sum) = (0u64, 0u64);
    while count < total {
        let msg = common::patiently(|t| q.get_timeout(t))?;
        sum += u64::from_ne_bytes(msg.as_slice().try_into()?);
        count += 1;
    }
    let took = t.elapsed();
    common::join_all(producers)?;
    let expected = total * (total - 1) / 2;
    report(
        "Queue",
        format!(
            "{n} producers → this process: {count} messages, sum {} ({:.1} M msg/s)",
            if sum == expected { "right" } else { "WRONG" },
            count as f64 / took.as_secs_f64() / 1e6
        ),
        took,
    );
    check_eq(sum, expected)
}

fn check_eq(got: u64, expected: u64) -> Result {
    if got == expected {
        Ok(())
    } else {
        Err(format!("got {got}, expected {expected}").into())
    }
}

/// The entries of `/dev/shm` that this process made.
fn leftovers() -> Vec<String> {
    let prefix = common::name("");
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// What a worker does, by role.
fn worker(role: &Role) -> Result {
    match role.name() {
        "value" => {
            let counter = Value::<u64>::open(role.arg(0)?)?;
            for _ in 0..role.num::<u64>(1)? {
                counter.fetch_add(1);
            }
        }
        "array" => {
            let squares = Array::<u64>::open(role.arg(0)?)?;
            let (stripes, me): (usize, usize) = (role.num(1)?, role.num(2)?);
            let mut slots = squares.lock()?;
            for i in (me..slots.len()).step_by(stripes) {
                slots[i] = (i * i) as u64;
            }
        }
        "lock" => {
            let lock = Lock::open(role.arg(0)?)?;
            let number = Value::<u64>::open(role.arg(1)?)?;
            for _ in 0..role.num::<u64>(2)? {
                let _held = lock.lock()?;
                let x = number.load();
                number.store(x + 1);
            }
        }
        "event" => {
            let go = Event::open(role.arg(0)?)?;
            let ready = Value::<u64>::open(role.arg(1)?)?;
            let woke = Array::<u64>::open(role.arg(2)?)?;
            ready.fetch_add(1);
            go.wait()?;
            woke.set(role.num(3)?, monotonic_ns())?;
        }
        "pipe" => {
            let mut end = Pipe::open(role.arg(0)?)?;
            loop {
                match end.recv() {
                    Ok(msg) => end.send(&msg)?,
                    Err(Error::Disconnected { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        "queue" => {
            let q = Queue::open(role.arg(0)?)?;
            let (per, me): (u64, u64) = (role.num(1)?, role.num(2)?);
            for k in 0..per {
                q.put_value(&(me * per + k))?;
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}
