//! What every example shares: starting worker processes, naming segments,
//! and Ctrl-C.
//!
//! # Starting workers
//!
//! A worker is this same program, started again with a *role*:
//!
//! ```text
//! counter --shmkit-role locked shmkit-ex-counter-4711-locked 100000
//! ```
//!
//! `main` asks [`role`] first: in a worker it gets the role and its
//! arguments (segment names travel in argv), in the parent it gets `None`.
//! This is Python's `spawn` start method: a fresh process that opens the
//! objects by name, not a `fork` of a process that may have threads.
//!
//! Starting, joining and killing workers is `shmkit::process`: a worker
//! dies with its parent, and the parent's [`Worker`] handles kill and reap
//! their process when dropped. So an example that fails, panics or is
//! interrupted leaves no process behind.
//!
//! # Cleaning up
//!
//! Only the parent creates segments, under names that say which example
//! and which process made them ([`name`]: `shmkit-ex-tour-4711-value`), and
//! the creating handles unlink them when they drop. So every path out of
//! the parent's `main` must *return*, not `exit`: on Ctrl-C the handler
//! installed by [`on_ctrl_c`] only sets a flag; the parent notices it
//! ([`check`], [`patiently`], [`Worker::join`]), returns an
//! [`Interrupted`] error up through `?`, and the drops do the rest.
#![allow(dead_code)]

use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What examples return: any error, printed by [`finish`].
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A worker's role and its arguments, from argv (`shmkit::process::Role`).
pub use shmkit::process::Role;

/// In a worker started by [`spawn`]: its role. In the parent: `None`.
pub fn role() -> Option<Role> {
    shmkit::process::role()
}

/// A worker process; killed and reaped if dropped before [`join`](Worker::join)
/// (`shmkit::process::Child` does that).
pub struct Worker {
    child: shmkit::process::Child,
}

/// Starts this program again as a worker playing `role` with `args`
/// (`shmkit::process::spawn`): it shares our stdout and stderr, reads no
/// stdin, and dies with this process.
pub fn spawn(role: &str, args: &[&str]) -> Result<Worker> {
    Ok(Worker {
        child: shmkit::process::spawn(role, args)?,
    })
}

/// Starts `n` workers playing `role`, each with `args` followed by its
/// index (`0..n`).
pub fn spawn_n(n: usize, role: &str, args: &[&str]) -> Result<Vec<Worker>> {
    (0..n)
        .map(|i| {
            let i = i.to_string();
            let mut a = args.to_vec();
            a.push(&i);
            spawn(role, &a)
        })
        .collect()
}

impl Worker {
    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Waits for the worker to exit and fails unless it exited with 0.
    /// Returns [`Interrupted`] (and kills the worker) on Ctrl-C.
    pub fn join(mut self) -> Result {
        loop {
            check()?;
            if let Some(status) = self.child.join_timeout(Duration::from_millis(50))? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("worker {} failed: {status}", self.child.role()).into())
                };
            }
        }
    }
}

/// Joins every worker (see [`Worker::join`]); the first failure wins, and
/// the workers not yet joined are killed.
pub fn join_all(workers: Vec<Worker>) -> Result {
    for w in workers {
        w.join()?;
    }
    Ok(())
}

/// A segment name for this example and this process: `shmkit-ex-<example>-<pid>-<tag>`.
/// Anyone can see in `/dev/shm` who made it (and the tests check that none
/// is left behind).
pub fn name(tag: &str) -> String {
    let exe = std::env::current_exe().ok();
    let example = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("example");
    format!("shmkit-ex-{example}-{}-{tag}", std::process::id())
}

/// Whether `SHMKIT_EXAMPLE_QUICK=1` asks for smaller sizes (the tests set
/// it; the printed checks hold either way).
pub fn quick() -> bool {
    std::env::var("SHMKIT_EXAMPLE_QUICK").is_ok_and(|v| v == "1")
}

/// The number of worker processes to use: the CPUs, between 2 and 4.
pub fn workers() -> usize {
    cpus().clamp(2, 4)
}

/// The CPUs this process may run on.
pub fn cpus() -> usize {
    shmkit::process::cpu_count()
}

// ------------------------------------------------------------------ Ctrl-C

/// Set by the signal handler. Process-local (not in shared memory), so a std
/// atomic: the one thing an async-signal-safe handler may touch.
#[allow(clippy::disallowed_types)]
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    // A second Ctrl-C kills at once. signal(2) is async-signal-safe.
    // SAFETY: restores the default disposition of the signal being handled.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Makes Ctrl-C (SIGINT) and SIGTERM set a flag instead of killing the
/// process, so that the parent can return from `main` and its segments
/// unlink. A second Ctrl-C kills as usual.
pub fn on_ctrl_c() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic and calls
        // signal(2), both async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The error that unwinds `main` (through `?`, running every Drop) after
/// Ctrl-C.
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// `Err(Interrupted)` once Ctrl-C was pressed.
pub fn check() -> Result {
    if interrupted() {
        Err(Interrupted.into())
    } else {
        Ok(())
    }
}

/// Runs a timed shmkit call (`get_timeout`, `wait_timeout`, …) in slices of
/// 50 ms until it does not time out, checking for Ctrl-C in between, so the
/// parent never blocks where Ctrl-C cannot reach it.
pub fn patiently<T>(mut op: impl FnMut(Duration) -> shmkit::Result<T>) -> Result<T> {
    loop {
        check()?;
        match op(Duration::from_millis(50)) {
            Err(shmkit::Error::Timeout { .. }) => continue,
            r => return Ok(r?),
        }
    }
}

/// Polls `cond` until it holds, checking for Ctrl-C; spins first, then
/// sleeps briefly.
pub fn until(mut cond: impl FnMut() -> bool) -> Result {
    let mut spins = 0u32;
    while !cond() {
        check()?;
        if spins < 10_000 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    Ok(())
}

/// The end of every example's `main`: prints an error, or says it was
/// interrupted (exit status 130, as a shell reports Ctrl-C). By the time
/// this runs, every segment has been dropped and unlinked.
pub fn finish(r: Result) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // Ctrl-C also reaches the workers (one process group), so the error
        // may be a worker's death rather than `Interrupted` itself.
        Err(_) if interrupted() => {
            println!("interrupted: workers stopped, segments removed");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A duration for people: `812 ns`, `4.1 µs`, `12.3 ms`, `1.52 s`.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Runs `f` and returns its result with how long it took.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let t = Instant::now();
    let r = f()?;
    Ok((r, t.elapsed()))
}
