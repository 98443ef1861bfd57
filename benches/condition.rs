//! `cargo bench --bench condition [-- ROUNDS]`: a notify + wake round trip
//! between two processes, shmkit's `Condition` against a process-shared
//! `pthread_cond_t` with its `pthread_mutex_t` (both in shared memory).
//!
//! Each round trip: the parent, holding the lock, sets `turn = 1`,
//! notifies one and waits until `turn == 0`; the child, woken, sets
//! `turn = 0`, notifies one and waits again. So one round trip is two
//! notifies and two wake-ups across processes. Prints the median of 7
//! batches in microseconds per round trip and the ratio shmkit/pthread
//! (below 1: shmkit faster).
#![allow(missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use shmkit::{Condition, Lock, Segment, Value};

const ROLE: &str = "SHMKIT_COND_BENCH_ROLE";
const BATCHES: usize = 7;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match role.as_str() {
            "shmkit" => shmkit_child(&args[0], &args[1]),
            "pthread" => pthread_child(&args[0]),
            r => panic!("unknown role {r}"),
        }
        return;
    }
    let rounds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    println!(
        "condition notify+wake round trip, 2 processes, {rounds} per batch, median of {BATCHES}"
    );
    let s = median(shmkit_parent(rounds));
    let p = median(pthread_parent(rounds));
    println!("{:<28} {:>10.2} us", "shmkit Condition (Lock)", s);
    println!("{:<28} {:>10.2} us", "pthread_cond_t (pshared)", p);
    println!("ratio shmkit/pthread: {:.2}", s / p);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn spawn(role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env(ROLE, role)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn")
}

// ---- shmkit ------------------------------------------------------------

fn shmkit_parent(rounds: u64) -> Vec<f64> {
    let lock = Lock::create_unique().unwrap();
    let cond = Condition::create_over(None, lock).unwrap();
    let turn = Value::<u64>::create_unique(0).unwrap();
    let mut child = spawn("shmkit", &[cond.name(), turn.name()]);
    let mut out = Vec::new();
    let mut g = cond.lock().unwrap();
    // Warm up: one round trip, so the child is waiting.
    let trip = |g: &mut shmkit::ConditionGuard<'_>| {
        turn.store(1);
        g.notify(1).unwrap();
        g.wait_for(|| turn.load() == 0).unwrap();
    };
    trip(&mut g);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..rounds {
            trip(&mut g);
        }
        out.push(t.elapsed().as_secs_f64() * 1e6 / rounds as f64);
    }
    turn.store(2);
    g.notify_all().unwrap();
    drop(g);
    child.wait().unwrap();
    out
}

fn shmkit_child(cond: &str, turn: &str) {
    let cond = Condition::open(cond).unwrap();
    let turn = Value::<u64>::open(turn).unwrap();
    let mut g = cond.lock().unwrap();
    loop {
        g.wait_for(|| turn.load() != 0).unwrap();
        if turn.load() == 2 {
            return;
        }
        turn.store(0);
        g.notify(1).unwrap();
    }
}

// ---- pthread -----------------------------------------------------------

#[repr(C)]
struct Shared {
    mutex: libc::pthread_mutex_t,
    cond: libc::pthread_cond_t,
    turn: u64,
}

fn shared(seg: &Segment) -> *mut Shared {
    assert!(seg.len() >= std::mem::size_of::<Shared>());
    seg.as_ptr().cast()
}

fn pthread_parent(rounds: u64) -> Vec<f64> {
    let seg = Segment::create_unique(std::mem::size_of::<Shared>()).unwrap();
    let s = shared(&seg);
    // SAFETY: the segment is ours, mapped, large enough and 64-aligned; no
    // other process uses it until the child starts after this.
    unsafe {
        let mut ma: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut ma);
        libc::pthread_mutexattr_setpshared(&mut ma, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutex_init(&mut (*s).mutex, &ma);
        let mut ca: libc::pthread_condattr_t = std::mem::zeroed();
        libc::pthread_condattr_init(&mut ca);
        libc::pthread_condattr_setpshared(&mut ca, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_cond_init(&mut (*s).cond, &ca);
        (*s).turn = 0;
    }
    let mut child = spawn("pthread", &[seg.name()]);
    let mut out = Vec::new();
    // SAFETY: the mutex and condition are initialised, process-shared, and
    // `turn` is only accessed with the mutex held, in both processes.
    unsafe {
        libc::pthread_mutex_lock(&mut (*s).mutex);
        let trip = || {
            (*s).turn = 1;
            libc::pthread_cond_signal(&mut (*s).cond);
            while std::ptr::read_volatile(&(*s).turn) != 0 {
                libc::pthread_cond_wait(&mut (*s).cond, &mut (*s).mutex);
            }
        };
        trip();
        for _ in 0..BATCHES {
            let t = Instant::now();
            for _ in 0..rounds {
                trip();
            }
            out.push(t.elapsed().as_secs_f64() * 1e6 / rounds as f64);
        }
        (*s).turn = 2;
        libc::pthread_cond_broadcast(&mut (*s).cond);
        libc::pthread_mutex_unlock(&mut (*s).mutex);
    }
    child.wait().unwrap();
    out
}

fn pthread_child(name: &str) {
    let seg = Segment::open(name).unwrap();
    let s = shared(&seg);
    // SAFETY: the parent initialised both objects before starting us; the
    // mapping outlives this loop; `turn` is accessed under the mutex.
    unsafe {
        libc::pthread_mutex_lock(&mut (*s).mutex);
        loop {
            while std::ptr::read_volatile(&(*s).turn) == 0 {
                libc::pthread_cond_wait(&mut (*s).cond, &mut (*s).mutex);
            }
            if (*s).turn == 2 {
                break;
            }
            (*s).turn = 0;
            libc::pthread_cond_signal(&mut (*s).cond);
        }
        libc::pthread_mutex_unlock(&mut (*s).mutex);
    }
}
