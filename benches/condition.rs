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

use shmkit::{Condition, ConditionGuard, Lock, Segment, Spin, Value};

const ROLE: &str = "SHMKIT_COND_BENCH_ROLE";
const BATCHES: usize = 7;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match role.as_str() {
            "shmkit" => shmkit_child(&args[0], &args[1], &args[2]),
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
        "condition notify+wake round trip, 2 processes, {rounds} per batch, \
         median of {BATCHES} batches, the three kinds interleaved batch by batch"
    );
    let mut adaptive = ShmkitPair::start(Spin::Adaptive);
    let mut never = ShmkitPair::start(Spin::Never);
    let mut pthread = PthreadPair::start();
    let (mut a, mut n, mut p) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BATCHES {
        a.push(adaptive.batch(rounds));
        n.push(never.batch(rounds));
        p.push(pthread.batch(rounds));
    }
    adaptive.stop();
    never.stop();
    pthread.stop();
    let (a, n, p) = (median(a), median(n), median(p));
    println!("{:<36} {:>10.2} us", "shmkit Condition (Lock, adaptive)", a);
    println!(
        "{:<36} {:>10.2} us",
        "shmkit Condition (Lock, Spin::Never)", n
    );
    println!("{:<36} {:>10.2} us", "pthread_cond_t (pshared)", p);
    println!(
        "ratio shmkit/pthread: adaptive {:.2}, never {:.2}",
        a / p,
        n / p
    );
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

/// A parent holding its condition's lock between batches, and its child
/// asleep in `wait_for`.
struct ShmkitPair {
    cond: &'static Condition,
    turn: &'static Value<u64>,
    child: Child,
    guard: Option<ConditionGuard<'static>>,
    lock_name: String,
}

impl ShmkitPair {
    fn start(spin: Spin) -> ShmkitPair {
        let lock = Lock::create_unique().unwrap();
        let lock_name = lock.name().to_owned();
        let cond: &'static Condition =
            Box::leak(Box::new(Condition::create_over(None, lock).unwrap()));
        cond.set_spin(spin);
        let turn: &'static Value<u64> =
            Box::leak(Box::new(Value::<u64>::create_unique(0).unwrap()));
        let never = if spin == Spin::Never {
            "never"
        } else {
            "adaptive"
        };
        let child = spawn("shmkit", &[cond.name(), turn.name(), never]);
        let mut pair = ShmkitPair {
            cond,
            turn,
            child,
            guard: Some(cond.lock().unwrap()),
            lock_name,
        };
        // Warm up: one round trip, so the child is waiting.
        pair.trip();
        pair
    }

    fn trip(&mut self) {
        let g = self.guard.as_mut().unwrap();
        self.turn.store(1);
        g.notify(1).unwrap();
        let turn = self.turn;
        g.wait_for(|| turn.load() == 0).unwrap();
    }

    fn batch(&mut self, rounds: u64) -> f64 {
        let t = Instant::now();
        for _ in 0..rounds {
            self.trip();
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    }

    fn stop(mut self) {
        self.turn.store(2);
        self.guard.as_ref().unwrap().notify_all().unwrap();
        self.guard = None;
        self.child.wait().unwrap();
        let _ = shmkit::unlink(self.cond.name());
        let _ = shmkit::unlink(self.turn.name());
        // The handles are leaked (the guard borrows them): unlink by name.
        let _ = shmkit::unlink(&self.lock_name);
    }
}

fn shmkit_child(cond: &str, turn: &str, spin: &str) {
    let cond = Condition::open(cond).unwrap();
    if spin == "never" {
        cond.set_spin(Spin::Never);
    }
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

/// A parent holding the pthread mutex between batches, and its child.
struct PthreadPair {
    seg: Segment,
    s: *mut Shared,
    child: Child,
}

impl PthreadPair {
    fn start() -> PthreadPair {
        let seg = Segment::create_unique(std::mem::size_of::<Shared>()).unwrap();
        let s = shared(&seg);
        // SAFETY: the segment is ours, mapped, large enough and 64-aligned;
        // no other process uses it until the child starts after this.
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
            libc::pthread_mutex_lock(&mut (*s).mutex);
        }
        let child = spawn("pthread", &[seg.name()]);
        let mut pair = PthreadPair { seg, s, child };
        pair.trip();
        pair
    }

    fn trip(&mut self) {
        let s = self.s;
        // SAFETY: the mutex and condition are initialised and
        // process-shared, we hold the mutex, and `turn` is only accessed
        // with it held, in both processes.
        unsafe {
            (*s).turn = 1;
            libc::pthread_cond_signal(&mut (*s).cond);
            while std::ptr::read_volatile(&(*s).turn) != 0 {
                libc::pthread_cond_wait(&mut (*s).cond, &mut (*s).mutex);
            }
        }
    }

    fn batch(&mut self, rounds: u64) -> f64 {
        let t = Instant::now();
        for _ in 0..rounds {
            self.trip();
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    }

    fn stop(mut self) {
        let s = self.s;
        // SAFETY: as in `trip`; we hold the mutex until the unlock here.
        unsafe {
            (*s).turn = 2;
            libc::pthread_cond_broadcast(&mut (*s).cond);
            libc::pthread_mutex_unlock(&mut (*s).mutex);
        }
        self.child.wait().unwrap();
        drop(self.seg);
    }
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
