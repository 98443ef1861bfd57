//! `RawExit`: the exit of a process, as something to wait for (a child's
//! `join_timeout`, a `WaitSet` entry).
//!
//! # Algorithm
//!
//! Nothing in shared memory: the process is named by its stamp (pid and
//! start time, read when the handle is made), and it has exited once the
//! liveness check says dead (no such process, a zombie, or the pid now
//! names another process). A waiter sleeps on a private futex word whose
//! value never changes; the death watcher (`sync::watch`, a pidfd per
//! watched process) wakes it when the process exits. If the process cannot
//! be watched, the waiter looks every liveness interval (20 ms).
//!
//! | state of the process      | `exited()` | a waiter                       |
//! |---------------------------|------------|--------------------------------|
//! | running                   | false      | sleeps until woken or timed out |
//! | exited, not yet reaped    | true       | returns                        |
//! | reaped (pid free or reused) | true     | returns                        |
//! | `/proc` does not answer   | false      | looks again in 20 ms            |
//!
//! # Crash cases
//!
//! None: nobody else writes the word, and a dead waiter leaves nothing
//! behind (its watch registration lived in its own process).

use crate::sync::{self, Deadline, Futex, Liveness, Target, TaskStamp};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct RawExit {
    /// Woken by the death watcher; always 0.
    word: Futex,
    stamp: TaskStamp,
}

impl RawExit {
    /// The exit of process `pid`, which should be running now (a child
    /// just spawned and not yet reaped: its pid cannot be reused before).
    pub(crate) fn new(pid: u32) -> RawExit {
        RawExit {
            word: Futex::new(0),
            stamp: sync::process_stamp(pid),
        }
    }

    /// Whether the process has exited (only a certain answer counts).
    pub(crate) fn exited(&self) -> bool {
        sync::liveness(self.stamp.tid(), Some(self.stamp)) == Liveness::Dead
    }

    /// The word a waiter sleeps on, and the value it holds.
    pub(crate) fn armed(&self) -> (&Futex, u32) {
        (&self.word, 0)
    }

    /// The process, for the death watcher.
    pub(crate) fn target(&self) -> Target {
        Target::Process(self.stamp)
    }

    /// Waits until the process has exited (true) or `deadline` passed
    /// (false).
    pub(crate) fn wait_until(&self, deadline: Deadline) -> bool {
        loop {
            if self.exited() {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            let watch = sync::watch(&self.word, &[self.target()]);
            // A watch that found it dead while `/proc` disagreed (it did
            // not answer): look again soon rather than trust either.
            let interval = if watch.dead {
                sync::LIVENESS_INTERVAL
            } else {
                watch.interval()
            };
            let (until, _) = deadline.or_within(interval);
            self.word.wait(0, until);
        }
    }
}
