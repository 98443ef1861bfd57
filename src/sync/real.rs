//! The shim in a normal build: core atomics, futex(2), the monotonic clock.

use std::time::Duration;

pub(crate) use std::sync::atomic::fence;

/// Atomics as newtypes, so that `clippy::disallowed_types` (which sees
/// through re-exports) can forbid the std types everywhere but here.
macro_rules! atomic {
    ($($name:ident($t:ty));* $(;)?) => {$(
        #[doc = concat!("`std::sync::atomic::", stringify!($name), "`, through the shim.")]
        #[repr(transparent)]
        #[derive(Debug, Default)]
        pub(crate) struct $name(std::sync::atomic::$name);

        #[allow(dead_code)]
        impl $name {
            #[inline]
            pub(crate) const fn new(v: $t) -> Self {
                $name(std::sync::atomic::$name::new(v))
            }
            #[inline]
            pub(crate) fn load(&self, o: Ordering) -> $t {
                self.0.load(o)
            }
            #[inline]
            pub(crate) fn store(&self, v: $t, o: Ordering) {
                self.0.store(v, o)
            }
            #[inline]
            pub(crate) fn swap(&self, v: $t, o: Ordering) -> $t {
                self.0.swap(v, o)
            }
            #[inline]
            pub(crate) fn compare_exchange(&self, c: $t, n: $t, s: Ordering, f: Ordering) -> Result<$t, $t> {
                self.0.compare_exchange(c, n, s, f)
            }
            #[inline]
            pub(crate) fn compare_exchange_weak(&self, c: $t, n: $t, s: Ordering, f: Ordering) -> Result<$t, $t> {
                self.0.compare_exchange_weak(c, n, s, f)
            }
            #[inline]
            pub(crate) fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_add(v, o)
            }
            #[inline]
            pub(crate) fn fetch_sub(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_sub(v, o)
            }
            #[inline]
            pub(crate) fn fetch_or(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_or(v, o)
            }
            #[inline]
            pub(crate) fn fetch_and(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_and(v, o)
            }
            #[inline]
            pub(crate) fn as_ptr(&self) -> *mut $t {
                self.0.as_ptr()
            }
        }
    )*};
}

atomic! {
    AtomicU8(u8);
    AtomicU16(u16);
    AtomicU32(u32);
    AtomicU64(u64);
}

use super::{Ordering, TaskStamp};
use crate::sys;

/// A 32-bit word that threads of any process can sleep on.
///
/// `repr(transparent)` over `AtomicU32`, so it has the layout of a `u32` in
/// shared memory.
#[repr(transparent)]
#[derive(Debug, Default)]
pub(crate) struct Futex(AtomicU32);

impl Futex {
    pub(crate) const fn new(v: u32) -> Futex {
        Futex(AtomicU32::new(v))
    }

    /// The word, for loads, stores and read-modify-writes.
    #[inline]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.0
    }

    /// Sleeps while the word equals `expected`, until woken or `until`
    /// (absolute monotonic time). Returns false when `until` passed. May
    /// return true spuriously: callers re-check the word.
    #[inline]
    pub(crate) fn wait(&self, expected: u32, until: Option<Duration>) -> bool {
        // SAFETY: `self.0` is a live, aligned AtomicU32 for the whole call,
        // and every access to it is atomic (it is only reachable through `&self`).
        unsafe { sys::futex_wait(self.0.as_ptr(), expected, until) }
    }

    /// Wakes one sleeper; returns how many woke (0 or 1).
    #[inline]
    pub(crate) fn wake_one(&self) -> usize {
        // SAFETY: as in `wait`; FUTEX_WAKE does not touch the word.
        unsafe { sys::futex_wake(self.0.as_ptr(), 1) }
    }

    /// Wakes every sleeper.
    #[inline]
    pub(crate) fn wake_all(&self) {
        // SAFETY: as in `wait`; FUTEX_WAKE does not touch the word.
        unsafe { sys::futex_wake(self.0.as_ptr(), u32::MAX) };
    }
}

/// The most words [`wait_any`] sleeps on at once.
pub(crate) const WAIT_ANY_MAX: usize = sys::FUTEX_WAITV_MAX;

/// Without `futex_waitv`, [`wait_any`] sleeps on its first word for at most
/// this long at a time, then returns so that its caller re-checks them all.
pub(crate) const WAIT_ANY_FALLBACK_SLICE: Duration = Duration::from_millis(2);

/// Set once the kernel said it has no `futex_waitv`.
static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sleeps until any of `words` no longer holds its expected value or is
/// woken, or until `until` (absolute monotonic time). Returns false when
/// `until` passed. May return true spuriously: callers re-check. At most
/// [`WAIT_ANY_MAX`] words; callers refuse more.
///
/// On kernels without `futex_waitv(2)` (before 5.16) it sleeps on the first
/// word alone, for at most [`WAIT_ANY_FALLBACK_SLICE`], and returns true:
/// a change of another word is then seen within that slice.
pub(crate) fn wait_any(words: &[(&Futex, u32)], until: Option<Duration>) -> bool {
    debug_assert!(words.len() <= WAIT_ANY_MAX);
    let Some(&(first, first_val)) = words.first() else {
        return true;
    };
    if words.len() == 1 {
        return first.wait(first_val, until);
    }
    if !NO_WAITV.load(Ordering::Relaxed) {
        let mut raw = [(std::ptr::null::<u32>(), 0u32); WAIT_ANY_MAX];
        let n = words.len().min(WAIT_ANY_MAX);
        for (r, &(f, v)) in raw.iter_mut().zip(&words[..n]) {
            *r = (f.0.as_ptr().cast_const(), v);
        }
        // SAFETY: every word is a live, aligned AtomicU32 borrowed for the
        // whole call (`&Futex`), only ever accessed atomically.
        match unsafe { sys::futex_waitv(&raw[..n], until) } {
            sys::WaitvOutcome::Woken(_) => return true,
            sys::WaitvOutcome::TimedOut => return false,
            sys::WaitvOutcome::Unsupported => NO_WAITV.store(true, Ordering::Relaxed),
        }
    }
    let slice = now().checked_add(WAIT_ANY_FALLBACK_SLICE);
    let (wake_at, is_until) = match (until, slice) {
        (Some(u), Some(s)) if u <= s => (Some(u), true),
        (Some(u), None) => (Some(u), true),
        (_, s) => (s, false),
    };
    first.wait(first_val, wake_at) || !is_until
}

/// Monotonic time shared by every process on the machine.
#[inline]
pub(crate) fn now() -> Duration {
    sys::monotonic_now()
}

/// Bumped in every child created by fork(2), so that cached identities
/// (which a forked child inherits from its parent's thread) are recomputed.
static FORK_GEN: AtomicU32 = AtomicU32::new(0);
static ATFORK: std::sync::Once = std::sync::Once::new();

/// This process's fork generation: 0 in the first process, bumped in each
/// child of fork(2).
pub(crate) fn fork_gen() -> u32 {
    ATFORK.call_once(|| sys::on_fork_child(after_fork_in_child));
    FORK_GEN.load(Ordering::Relaxed)
}

extern "C" fn after_fork_in_child() {
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    static STAMPS: std::cell::Cell<Option<(u32, TaskStamp, TaskStamp)>> = const { std::cell::Cell::new(None) };
}

/// Reads this thread's and process's stamps. Cached only when both start
/// times were read: while `/proc` does not answer (EMFILE, ...), the stamps
/// carry [`TaskStamp::START_UNKNOWN`] (they name the id only, so nobody can
/// match them to a dead task with that id either) and the next call reads
/// again.
#[cold]
fn compute_stamps(gen: u32) -> (u32, TaskStamp, TaskStamp) {
    compute_stamps_with(gen, sys::probe_thread, sys::probe_process)
}

fn compute_stamps_with(
    gen: u32,
    thread: fn(u32) -> sys::Probe,
    process: fn(u32) -> sys::Probe,
) -> (u32, TaskStamp, TaskStamp) {
    ATFORK.call_once(|| sys::on_fork_child(after_fork_in_child));
    let tid = sys::gettid();
    let pid = sys::getpid();
    let start = |p: sys::Probe| match p {
        // A start time that reads as 0 is indistinguishable from unknown.
        sys::Probe::Running(s) => Some(s).filter(|&s| s & TaskStamp::START_MASK != 0),
        _ => None,
    };
    let (ts, ps) = (start(thread(tid)), start(process(pid)));
    let thread = TaskStamp::new(tid, ts.unwrap_or(TaskStamp::START_UNKNOWN));
    let process = TaskStamp::new(pid, ps.unwrap_or(TaskStamp::START_UNKNOWN));
    let v = (gen, thread, process);
    if ts.is_some() && ps.is_some() {
        STAMPS.with(|s| s.set(Some(v)));
    }
    v
}

#[inline]
fn stamps() -> (TaskStamp, TaskStamp) {
    let gen = FORK_GEN.load(Ordering::Relaxed);
    let (g, t, p) = STAMPS
        .with(|s| s.get())
        .filter(|v| v.0 == gen)
        .unwrap_or_else(|| compute_stamps(gen));
    debug_assert_eq!(g, gen);
    (t, p)
}

/// The calling thread's id and start time (cached per thread, and
/// recomputed after fork).
#[inline]
pub(crate) fn current_stamp() -> TaskStamp {
    stamps().0
}

/// The calling process's id and start time (cached, recomputed after fork).
#[inline]
pub(crate) fn current_process() -> TaskStamp {
    stamps().1
}

/// A number that tells process `pid` from any other process that had or
/// will have the same pid (its pidfs inode), or `None` if it cannot be had.
/// Two processes with equal tokens may still differ (older kernels).
pub(crate) fn process_token(pid: u32) -> Option<u64> {
    sys::pidfs_ino(pid)
}

/// `/proc` about thread `tid` (see [`sys::probe_thread`]).
pub(crate) fn probe_thread(tid: u32) -> sys::Probe {
    sys::probe_thread(tid)
}

/// `/proc` about process `pid` (see [`sys::probe_process`]).
pub(crate) fn probe_process(pid: u32) -> sys::Probe {
    sys::probe_process(pid)
}

/// A hint inside a spin loop.
#[inline]
pub(crate) fn spin_loop() {
    std::hint::spin_loop();
}

/// Gives the CPU to another runnable thread (sched_yield), for waits on a
/// peer that may have been preempted.
#[inline]
pub(crate) fn yield_now() {
    std::thread::yield_now();
}

/// How long a sleeper waits before it looks whether the task it waits for
/// still lives.
pub(crate) const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_that_could_not_be_read_is_not_cached() {
        std::thread::spawn(|| {
            let gen = FORK_GEN.load(Ordering::Relaxed);
            let (_, t, p) =
                compute_stamps_with(gen, |_| sys::Probe::Unknown, |_| sys::Probe::Unknown);
            assert_eq!(t.tid(), sys::gettid());
            assert_eq!(p.tid(), sys::getpid());
            assert!(!t.start_known() && !p.start_known());
            assert!(
                STAMPS.with(|s| s.get()).is_none(),
                "unknown stamps are not cached"
            );
            // The next call reads again, and keeps what it read.
            let (t2, p2) = stamps();
            assert!(t2.start_known() && p2.start_known());
            assert_eq!(STAMPS.with(|s| s.get()), Some((gen, t2, p2)));
            assert!(t.could_be(t2) && t2.could_be(t));
        })
        .join()
        .unwrap();
    }
}

/// The waiters' processes a notifier has judged: pid, process start time,
/// and a pidfd that becomes readable when that process exits.
struct WaiterProc {
    pid: u32,
    start: u64,
    fd: std::os::fd::OwnedFd,
}

/// How many waiter processes a thread keeps pidfds for.
const WAITER_CACHE: usize = 16;

std::thread_local! {
    static WAITER_PROCS: std::cell::RefCell<Vec<WaiterProc>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// See `sync::waiter_alive`.
pub(crate) fn waiter_alive(pid: u32, stamp: super::TaskStamp) -> bool {
    let slow = || super::thread_alive(stamp.tid(), Some(stamp));
    if pid == 0 || !stamp.start_known() {
        return slow();
    }
    let judge = |w: &WaiterProc| -> Option<bool> {
        if stamp.start() < (w.start & ((1 << 40) - 1)) {
            // Started before the process now under `pid`: an earlier one's.
            return Some(false);
        }
        match sys::pidfd_exited(&w.fd) {
            Some(false) => Some(true),
            // Exited: a later process may have the pid now; look again.
            Some(true) => None,
            None => Some(true),
        }
    };
    let cached = WAITER_PROCS
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let i = c.iter().position(|w| w.pid == pid)?;
            let v = judge(&c[i]);
            if v.is_none() {
                c.remove(i);
            }
            v
        })
        .ok()
        .flatten();
    if let Some(v) = cached {
        return v;
    }
    // Open a pidfd, then read the start time of what runs under `pid`: if
    // the process died in between, its pidfd is readable and the next look
    // opens again.
    let Some(fd) = sys::pidfd_open(pid, false) else {
        return slow();
    };
    let start = match super::probe_process(pid) {
        sys::Probe::Running(start) => start,
        sys::Probe::Gone => return false,
        sys::Probe::Unknown => return true,
    };
    let w = WaiterProc { pid, start, fd };
    let v = judge(&w).unwrap_or_else(slow);
    let _ = WAITER_PROCS.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= WAITER_CACHE {
            c.remove(0);
        }
        c.push(w);
    });
    v
}
