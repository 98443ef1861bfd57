//! Readiness, for waiting on many locks and other objects at once (a
//! `WaitSet`, a `lock_async` future): arming, passing a wake-up on, giving
//! up a fair hand-off a wait cannot take.

use super::*;

impl RawLock {
    // ---- readiness, for waiting on many ----------------------------------

    /// Whether a `try_lock` would take the lock now: it is free, or its
    /// hand-off is stale, or (`check_dead`) its owner's thread is gone.
    pub(crate) fn free_ready(&self, check_dead: bool) -> bool {
        let w = self.state.load(Ordering::Relaxed);
        if w & HANDOFF != 0 {
            return handoff_stale(w);
        }
        let owner = TaskStamp(w & STAMP_MASK);
        owner.0 == 0
            || owner.tid() == 0
            || (check_dead && !sync::thread_alive(owner.tid(), Some(owner)))
    }

    /// Registers a waiter on several words at once: reads the wake count,
    /// then sets `WAITERS` (as a sleeping locker does, so that the next
    /// unlock bumps the count and wakes), and returns the word and value to
    /// sleep on. When nothing could be registered (the lock is free, or its
    /// state kept changing), the value returned is one the word does not
    /// hold, so that a sleep on it returns at once and the caller looks
    /// again: a lock taken after this look is released by a fast unlock
    /// that wakes nobody. Unlocks wake one sleeper: a set woken in a
    /// locker's stead passes the wake on ([`pass_wake`](RawLock::pass_wake)).
    pub(crate) fn arm(&self) -> (&Futex, u32) {
        let seq = self.wake_seq();
        let mut w = self.state.load(Ordering::Relaxed);
        for _ in 0..64 {
            if w & WAITERS != 0 {
                return (&self.wake, seq);
            }
            if w == 0 {
                break;
            }
            // SYNC POINT: Release, as in `lock_slow`: the unlocker that
            // reads this (Acquire) bumps `wake` after our read of it.
            match self
                .state
                .compare_exchange(w, w | WAITERS, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return (&self.wake, seq),
                Err(cur) => w = cur,
            }
        }
        // 2^32 - 1 unlocks would have to run before the sleep for the word
        // to hold this value.
        (&self.wake, seq.wrapping_sub(1))
    }

    /// The wake count, read before a wait on many so that
    /// [`pass_wake`](RawLock::pass_wake) knows whether an unlock ran since.
    pub(crate) fn wake_seq(&self) -> u32 {
        self.wake.word().load(Ordering::Acquire)
    }

    /// The word lockers sleep on, for tests that count its sleepers.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn wake_word(&self) -> &Futex {
        &self.wake
    }

    /// What a wait on many that may have taken an unlock's single wake-up
    /// does before it returns: if any unlock woke a sleeper since `since`
    /// (the count moved), wake one more, so that a locker still asleep
    /// does not lose it. The unlock cleared `WAITERS`, so that bit cannot
    /// tell whether a locker sleeps; at worst this is one spurious wake-up.
    pub(crate) fn pass_wake(&self, since: u32) {
        if self.wake_seq() != since {
            self.wake.wake_one();
        }
    }

    /// What a wait on many does when it wakes: if an unlock ran since it
    /// armed at `since` and the lock is now a fresh fair hand-off, that
    /// unlock's single wake-up may have come to this wait, which claims
    /// nothing and cannot take the hand-off, while the hand-off keeps every
    /// locker that has not slept out for 20 ms. So the reservation is
    /// given up: the lock becomes free (`WAITERS` kept), and one sleeper is
    /// woken to take it. Nobody holds a hand-off, so nobody is robbed; the
    /// fairness of that one unlock is lost.
    pub(crate) fn undo_handoff_since(&self, since: u32) {
        if self.wake_seq() == since {
            return;
        }
        let w = self.state.load(Ordering::Relaxed);
        if w & HANDOFF == 0 || handoff_stale(w) {
            return;
        }
        // SYNC POINT: AcqRel, as the unlock's own undo of a hand-off.
        if self
            .state
            .compare_exchange(w, WAITERS, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.wake.word().fetch_add(1, Ordering::Release);
            self.wake.wake_one();
        }
    }

    /// The owner's thread, for a waiter to watch (see `sync::watch`).
    pub(crate) fn owner_target(&self) -> Vec<Target> {
        let w = self.state.load(Ordering::Relaxed);
        let owner = TaskStamp(w & STAMP_MASK);
        if w & HANDOFF != 0 || owner.0 == 0 {
            return Vec::new();
        }
        vec![Target::Thread(owner)]
    }
}
