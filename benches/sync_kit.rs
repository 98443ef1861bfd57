//! Criterion benches of the synchronisation kit's uncontended paths, each
//! beside what a user would otherwise reach for: one function per group,
//! so that another group (Condition, Barrier) is one more function added
//! to `criterion_group!` below.
//!
//! - `semaphore`: shmkit `Semaphore` acquire + release (guarded: one
//!   death-protected permit; plain: `keep` + `release(1)`; `try_acquire`),
//!   against a process-shared POSIX `sem_t` (`sem_init(pshared = 1)` in a
//!   `MAP_SHARED` mapping, `sem_wait` + `sem_post`), and, if `python3` is
//!   installed, Python's `multiprocessing.Semaphore` (timed in a python3
//!   subprocess; printed as `python mp.Semaphore ...: N ns/iter`, skipped
//!   with a note if python3 is missing).
//! - `rlock`: shmkit `RLock` lock + unlock (outermost, and nested one level
//!   inside a held guard) against `Lock` lock + unlock.
//!
//! ```text
//! cargo bench --bench sync_kit
//! ```
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};
use shmkit::{Lock, RLock, Semaphore};

/// A process-shared POSIX semaphore in a shared anonymous mapping (what a C
/// program would put in shared memory).
struct PosixSem(*mut libc::sem_t);

impl PosixSem {
    fn new(value: u32) -> PosixSem {
        let len = std::mem::size_of::<libc::sem_t>();
        // SAFETY: an anonymous shared mapping of `len` bytes; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let s = p.cast::<libc::sem_t>();
        // SAFETY: `s` is a fresh, aligned mapping big enough for a sem_t.
        assert_eq!(unsafe { libc::sem_init(s, 1, value) }, 0, "sem_init");
        PosixSem(s)
    }

    fn wait(&self) {
        // SAFETY: `self.0` was initialised by sem_init and stays mapped.
        while unsafe { libc::sem_wait(self.0) } != 0 {}
    }

    fn post(&self) {
        // SAFETY: as in `wait`.
        unsafe { libc::sem_post(self.0) };
    }
}

impl Drop for PosixSem {
    fn drop(&mut self) {
        // SAFETY: initialised by sem_init, mapped by `new`, used no more.
        unsafe {
            libc::sem_destroy(self.0);
            libc::munmap(self.0.cast(), std::mem::size_of::<libc::sem_t>());
        }
    }
}

/// Python's `multiprocessing.Semaphore` acquire + release, ns per pair,
/// from a python3 subprocess (`None` if python3 is missing or fails).
fn python_semaphore_ns(with_stmt: bool) -> Option<f64> {
    let body = if with_stmt {
        "with s: pass"
    } else {
        "s.acquire(); s.release()"
    };
    let script = [
        "import multiprocessing as mp, time",
        "s = mp.Semaphore(1)",
        "def run(n):",
        "    for _ in range(n):",
        &format!("        {body}"),
        "def timed(n):",
        "    t = time.perf_counter()",
        "    run(n)",
        "    return time.perf_counter() - t",
        "run(20000)",
        "print(min(timed(300000) for _ in range(5)) / 300000 * 1e9)",
    ]
    .join("\n");
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn semaphore(c: &mut Criterion) {
    let sem = Semaphore::create_unique(1).unwrap();
    let mut g = c.benchmark_group("semaphore");
    g.bench_function("shmkit acquire+drop (guarded)", |b| {
        b.iter(|| drop(black_box(sem.acquire().unwrap())))
    });
    g.bench_function("shmkit try_acquire+drop", |b| {
        b.iter(|| drop(black_box(sem.try_acquire().unwrap())))
    });
    g.bench_function("shmkit acquire+keep+release(1) (plain)", |b| {
        b.iter(|| {
            sem.acquire().unwrap().keep();
            sem.release(1).unwrap();
        })
    });
    let posix = PosixSem::new(1);
    g.bench_function("posix sem_t sem_wait+sem_post (pshared)", |b| {
        b.iter(|| {
            posix.wait();
            posix.post();
        })
    });
    g.finish();
    for (with_stmt, what) in [(false, "acquire()+release()"), (true, "with s: pass")] {
        match python_semaphore_ns(with_stmt) {
            Some(ns) => println!(
                "semaphore/python mp.Semaphore {what}: {ns:.1} ns/iter (best of 5 runs of 300000)"
            ),
            None => println!("semaphore/python mp.Semaphore {what}: skipped (no python3)"),
        }
    }
}

fn rlock(c: &mut Criterion) {
    let rl = RLock::create_unique().unwrap();
    let lock = Lock::create_unique().unwrap();
    let mut g = c.benchmark_group("rlock");
    g.bench_function("RLock lock+drop (outermost)", |b| {
        b.iter(|| drop(black_box(rl.lock().unwrap())))
    });
    g.bench_function("RLock acquire+release (outermost)", |b| {
        b.iter(|| {
            rl.acquire(None).unwrap();
            rl.release().unwrap();
        })
    });
    {
        let outer = rl.lock().unwrap();
        g.bench_function("RLock lock+drop (nested, level 2)", |b| {
            b.iter(|| drop(black_box(rl.lock().unwrap())))
        });
        drop(outer);
    }
    g.bench_function("Lock lock+drop", |b| {
        b.iter(|| drop(black_box(lock.lock().unwrap())))
    });
    g.finish();
}

criterion_group!(benches, semaphore, rlock);
criterion_main!(benches);
