//! The shim in a normal build: core atomics, futex(2), the monotonic clock.

use std::time::Duration;

pub(crate) use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};

use super::TaskStamp;
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

    /// Wakes one sleeper.
    #[inline]
    pub(crate) fn wake_one(&self) {
        // SAFETY: as in `wait`; FUTEX_WAKE does not touch the word.
        unsafe { sys::futex_wake(self.0.as_ptr(), 1) };
    }

    /// Wakes every sleeper.
    #[inline]
    pub(crate) fn wake_all(&self) {
        // SAFETY: as in `wait`; FUTEX_WAKE does not touch the word.
        unsafe { sys::futex_wake(self.0.as_ptr(), u32::MAX) };
    }
}

/// Monotonic time shared by every process on the machine.
#[inline]
pub(crate) fn now() -> Duration {
    sys::monotonic_now()
}

thread_local! {
    static STAMP: TaskStamp = {
        let tid = sys::gettid();
        TaskStamp::new(tid, sys::task_start_time(tid).unwrap_or(0))
    };
}

/// The calling thread's id and start time, computed once per thread.
#[inline]
pub(crate) fn current_stamp() -> TaskStamp {
    STAMP.with(|s| *s)
}

/// The start time of task `tid`, or `None` if it no longer runs.
pub(crate) fn task_start_time(tid: u32) -> Option<u64> {
    sys::task_start_time(tid)
}

/// A hint inside a spin loop.
#[inline]
pub(crate) fn spin_loop() {
    std::hint::spin_loop();
}

/// How long a sleeper waits before it looks whether the task it waits for
/// still lives.
pub(crate) const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);
