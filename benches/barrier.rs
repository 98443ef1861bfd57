//! `cargo bench --bench barrier [-- TRIPS [TRIALS]]`: Barrier trip time
//! against a process-shared `pthread_barrier_t`, and how long the waiting
//! parties take to learn that a party was SIGKILLed.
//!
//! - Trip: `n` processes (this one and `n - 1` children, `n` = 2 and 4)
//!   each call `wait` TRIPS times (default 20 000) after 500 warm-up
//!   trips; the time per trip is the parent's wall time over TRIPS. The
//!   `pthread_barrier_t` lives in a shmkit segment (raw bytes), initialised
//!   with `PTHREAD_PROCESS_SHARED`; the same loop drives it.
//! - Death: a 3-party barrier; a child and a thread of this process wait
//!   (the third party never comes), both asleep; the child is SIGKILLed;
//!   time from `kill(2)` to the thread's `BrokenBarrier`. TRIALS (default
//!   100) trials; the child arrives first in even trials, last in odd ones.
//!
//! Prints µs per trip and the ratio (Barrier / pthread; below 1 is faster),
//! then the death latency's median and p90 in ms.
#![allow(missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmkit::{Barrier, Error, Segment};

const ROLE: &str = "SHMKIT_BARRIER_BENCH_ROLE";
const WARMUP: usize = 500;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role, &std::env::args().skip(1).collect::<Vec<_>>());
        return;
    }
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let trips = nums.first().copied().unwrap_or(20_000);
    let trials = nums.get(1).copied().unwrap_or(100);
    println!("barrier trip time, {trips} trips (µs per trip; ratio = shmkit / pthread)");
    println!(
        "{:<10} {:>10} {:>10} {:>8}",
        "processes", "Barrier", "pthread", "ratio"
    );
    for n in [2usize, 4] {
        let ours = trip_barrier(n, trips);
        let theirs = trip_pthread(n, trips);
        println!(
            "{:<10} {:>10.2} {:>10.2} {:>8.2}",
            n,
            ours,
            theirs,
            ours / theirs
        );
    }
    let mut v: Vec<Duration> = (0..trials).map(death_trial).collect();
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "death to BrokenBarrier, {trials} trials (ms): median {:.3}, p90 {:.3}, max {:.3}",
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    );
}

fn spawn(role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env(ROLE, role)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn child(role: &str, args: &[String]) {
    match role {
        "trips" => {
            let b = Barrier::open(&args[0]).unwrap();
            let n: usize = args[1].parse().unwrap();
            for _ in 0..n {
                b.wait().unwrap();
            }
        }
        "pthread" => {
            let seg = Segment::open(&args[0]).unwrap();
            let n: usize = args[1].parse().unwrap();
            let b = seg.as_ptr().cast::<libc::pthread_barrier_t>();
            for _ in 0..n {
                // SAFETY: the parent initialised a process-shared barrier
                // at the start of the segment before starting us, and
                // destroys it only after joining us.
                unsafe { libc::pthread_barrier_wait(b) };
            }
        }
        "wait" => {
            let b = Barrier::open(&args[0]).unwrap();
            let _ = b.wait();
        }
        other => panic!("unknown role {other}"),
    }
}

fn trip_barrier(n: usize, trips: usize) -> f64 {
    let b = Barrier::create_unique(n as u32).unwrap();
    let count = (WARMUP + trips).to_string();
    let kids: Vec<Child> = (1..n)
        .map(|_| spawn("trips", &[b.name(), &count]))
        .collect();
    for _ in 0..WARMUP {
        b.wait().unwrap();
    }
    let t = Instant::now();
    for _ in 0..trips {
        b.wait().unwrap();
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / trips as f64;
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    per
}

fn trip_pthread(n: usize, trips: usize) -> f64 {
    let seg = Segment::create_unique(std::mem::size_of::<libc::pthread_barrier_t>()).unwrap();
    let b = seg.as_ptr().cast::<libc::pthread_barrier_t>();
    // SAFETY: `b` points at the segment's payload (64-aligned, large
    // enough), which nobody uses yet; the attribute lives on our stack.
    unsafe {
        let mut attr: libc::pthread_barrierattr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_barrierattr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_barrierattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            0
        );
        assert_eq!(libc::pthread_barrier_init(b, &attr, n as u32), 0);
        libc::pthread_barrierattr_destroy(&mut attr);
    }
    let count = (WARMUP + trips).to_string();
    let kids: Vec<Child> = (1..n)
        .map(|_| spawn("pthread", &[seg.name(), &count]))
        .collect();
    // SAFETY: initialised above; destroyed only after the children exit.
    let wait = || unsafe { libc::pthread_barrier_wait(b) };
    for _ in 0..WARMUP {
        wait();
    }
    let t = Instant::now();
    for _ in 0..trips {
        wait();
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / trips as f64;
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    // SAFETY: every party is gone.
    unsafe { libc::pthread_barrier_destroy(b) };
    per
}

/// The state letters of every thread of `pid`'s tasks (or of one task).
fn asleep(path: &str) -> bool {
    let one = |p: std::path::PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s[s.rfind(')')? + 1..].trim_start().chars().next())
    };
    let Ok(dir) = std::fs::read_dir(path) else {
        return false;
    };
    let states: Vec<Option<char>> = dir
        .filter_map(|e| e.ok())
        .map(|e| one(e.path().join("stat")))
        .collect();
    !states.is_empty() && states.iter().all(|s| *s == Some('S'))
}

fn until(mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(30), "stuck");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn death_trial(trial: usize) -> Duration {
    let b = Barrier::create_unique(3).unwrap();
    let name = b.name().to_owned();
    let child_first = trial % 2 == 0;
    let mut victim = None;
    if child_first {
        let c = spawn("wait", &[&name]);
        until(|| b.n_waiting() == 1);
        let pid = c.id();
        until(|| asleep(&format!("/proc/{pid}/task")));
        victim = Some(c);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            let b = Barrier::open(&name).unwrap();
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            let r = b.wait();
            let t = Instant::now();
            assert!(matches!(r, Err(Error::BrokenBarrier { .. })), "{r:?}");
            t
        })
    };
    let tid = rx.recv().unwrap();
    until(|| b.n_waiting() == if child_first { 2 } else { 1 });
    let mut victim = victim.unwrap_or_else(|| {
        let c = spawn("wait", &[&name]);
        until(|| b.n_waiting() == 2);
        c
    });
    let pid = victim.id();
    until(|| asleep(&format!("/proc/{pid}/task")));
    until(|| {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .ok()
            .and_then(|s| s[s.rfind(')')? + 1..].trim_start().chars().next())
            == Some('S')
    });
    let killed = Instant::now();
    // SAFETY: kill(2) on our own child's pid; no memory involved.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let broke = waiter.join().unwrap();
    let _ = victim.wait();
    broke.saturating_duration_since(killed)
}
