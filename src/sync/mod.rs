//! The sync shim: the one place that names atomics, `UnsafeCell`, futex
//! wait/wake, the clock and task liveness.
//!
//! Every raw core (`crate::raw`) imports only from here. In a normal build
//! these are the real things (`core::sync::atomic`, futex(2), `/proc`). Under
//! `RUSTFLAGS="--cfg loom"` they are loom's atomics and cells, and the futex
//! is modelled by a loom `Mutex` + `Condvar` whose `wait` re-checks the word
//! under the mutex, so a lost wake-up shows up as a loom deadlock (the same
//! idea as tokio's `src/loom`). `clippy.toml` forbids the std types
//! everywhere else.
#![allow(clippy::disallowed_types)]

use std::time::Duration;

#[cfg(not(loom))]
mod real;
#[cfg(not(loom))]
pub(crate) use real::*;

#[cfg(loom)]
mod model;
#[cfg(loom)]
pub use model::support as loom_support;
#[cfg(loom)]
pub(crate) use model::*;

pub(crate) use std::sync::atomic::Ordering;

/// An absolute point on the monotonic clock, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Duration>);

impl Deadline {
    /// No deadline: wait for as long as it takes.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now. A timeout too large to represent is "never".
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(now().checked_add(timeout))
    }

    /// True once the deadline has passed.
    pub(crate) fn expired(self) -> bool {
        self.0.is_some_and(|d| now() >= d)
    }

    /// The earlier of this deadline and `interval` from now, and whether that
    /// is this deadline (true) or the interval (false).
    pub(crate) fn or_within(self, interval: Duration) -> (Option<Duration>, bool) {
        let check = now().checked_add(interval);
        match (self.0, check) {
            (Some(d), Some(c)) if d <= c => (Some(d), true),
            (Some(d), None) => (Some(d), true),
            (_, c) => (c, false),
        }
    }
}

/// Identifies a running thread even after its id is reused: the kernel
/// thread id (22 bits suffice, `PID_MAX_LIMIT` is 2^22) and the thread's start
/// time in clock ticks (40 bits), packed into one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskStamp(pub(crate) u64);

impl TaskStamp {
    const START_BITS: u32 = 40;
    const START_MASK: u64 = (1 << Self::START_BITS) - 1;

    pub(crate) fn new(tid: u32, start: u64) -> TaskStamp {
        TaskStamp((u64::from(tid) << Self::START_BITS) | (start & Self::START_MASK))
    }

    pub(crate) fn tid(self) -> u32 {
        (self.0 >> Self::START_BITS) as u32
    }

    pub(crate) fn start(self) -> u64 {
        self.0 & Self::START_MASK
    }
}

/// Whether the task `tid` still runs. `stamp` is what its owner recorded of
/// itself, if it got so far: when the stamp names the same id, the start
/// times must match too, so a reused id cannot pass for the dead owner.
pub(crate) fn task_alive(tid: u32, stamp: Option<TaskStamp>) -> bool {
    match task_start_time(tid) {
        None => false,
        Some(start) => match stamp {
            Some(s) if s.tid() == tid => s.start() == (start & TaskStamp::START_MASK),
            _ => true,
        },
    }
}
