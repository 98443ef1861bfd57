//! `Notify`: an event count on one futex word, for "something changed" wake-ups
//! that cost no syscall when nobody sleeps.
//!
//! | bits  | meaning                                                        |
//! |-------|----------------------------------------------------------------|
//! | 0     | `SLEEPERS`: someone may be asleep; the next notify must wake   |
//! | 1..32 | generation, bumped by every notify that wakes                  |
//!
//! A sleeper: sets `SLEEPERS` (one RMW), a SeqCst fence, re-checks its
//! condition, and sleeps only if the word is unchanged. A notifier, after
//! publishing its change: a SeqCst fence, then a load; only if `SLEEPERS` is
//! set does it bump the generation (clearing the bit) and wake everyone.
//! The two fences are ordered one way or the other, so either the notifier
//! sees the bit, or the sleeper's re-check sees the change.
//! A sleeper that dies leaves at most one spurious wake behind: the bit is
//! cleared by the next notify, so deaths do not leave a syscall on every
//! later notify. Waking all is deliberate: a woken sleeper that dies before
//! acting cannot strand the others.

use std::time::Duration;

use crate::sync::{self, Futex, Ordering};

const SLEEPERS: u32 = 1;

/// See the module documentation. 4 bytes; all-zero is a valid state.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Notify {
    word: Futex,
}

impl Notify {
    pub(crate) fn new() -> Notify {
        Notify {
            word: Futex::new(0),
        }
    }

    /// Call after publishing a change (with at least Release ordering).
    #[inline]
    pub(crate) fn notify(&self) {
        sync::fence(Ordering::SeqCst);
        let w = self.word.word().load(Ordering::Relaxed);
        if w & SLEEPERS != 0 {
            self.notify_slow(w);
        }
    }

    #[cold]
    fn notify_slow(&self, mut w: u32) {
        loop {
            let new = w.wrapping_add(2) & !SLEEPERS;
            match self
                .word
                .word()
                .compare_exchange(w, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(cur) if cur & SLEEPERS == 0 => return,
                Err(cur) => w = cur,
            }
        }
        self.word.wake_all();
    }

    /// Wakes every sleeper unconditionally (close, disconnect).
    pub(crate) fn notify_all(&self) {
        self.word.word().fetch_add(2, Ordering::SeqCst);
        self.word.wake_all();
    }

    /// Sleeps until notified or `until` (absolute monotonic), unless `ready()`
    /// holds once the sleeper is registered. Returns false on timeout.
    /// Callers loop: a return says only "look again".
    pub(crate) fn sleep(&self, until: Option<Duration>, ready: impl FnOnce() -> bool) -> bool {
        let w = self.arm();
        if ready() {
            return true;
        }
        self.word.wait(w, until)
    }

    /// The first half of [`sleep`](Notify::sleep), for a waiter on several
    /// words at once: registers as a sleeper and returns the value to sleep
    /// on with [`futex`](Notify::futex). The caller checks its condition
    /// after this and sleeps only if it does not hold.
    pub(crate) fn arm(&self) -> u32 {
        let w = self.word.word().fetch_or(SLEEPERS, Ordering::SeqCst) | SLEEPERS;
        // SYNC POINT: pairs with the fence in `notify`. Without it the
        // condition's loads may be ordered before the bit is visible, and
        // both sides miss each other (store buffering; the loom model of
        // the queue finds this lost wake-up).
        sync::fence(Ordering::SeqCst);
        w
    }

    /// The futex word a sleeper armed by [`arm`](Notify::arm) sleeps on.
    pub(crate) fn futex(&self) -> &Futex {
        &self.word
    }
}
