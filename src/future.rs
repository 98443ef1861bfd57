//! The machinery under the `_async` methods (`Queue::get_async`,
//! `PipeEnd::recv_async`, `Event::wait_async`, `Lock::lock_async`,
//! `WaitSet::wait_async`): runtime-agnostic futures (std `Future` and
//! `Waker` only) that never block the executor's thread.
//!
//! A pending future has registered its futex word with the process's one
//! async waiter thread (`sync::reactor`), which sleeps in `futex_waitv` over
//! every pending future's word and wakes the future's `Waker` when its word
//! changes, when a watched peer dies (`sync::watch`), or after at most a
//! second. No file descriptor per object, no thread per future. Dropping a
//! pending future removes its registration: nothing is lost (it claimed
//! nothing) and no wake-up goes to a dead waker.

use std::task::{Context, Poll};
use std::time::Duration;

use crate::sync::{self, reactor, Futex, Target};

/// The state a pending future keeps between polls.
pub(crate) struct Waiter {
    regs: Vec<reactor::Registration>,
    watch: Option<sync::Watch>,
    /// What `watch` watches: the word's address and the targets.
    watched: (usize, Vec<Target>),
    /// The watch found a target dead already: the next poll reads liveness.
    found_dead: bool,
    deaths: u64,
    checked: Duration,
}

impl Waiter {
    pub(crate) fn new() -> Waiter {
        Waiter {
            regs: Vec::new(),
            watch: None,
            watched: (0, Vec::new()),
            found_dead: false,
            deaths: sync::deaths(),
            checked: sync::now(),
        }
    }

    /// Whether this poll should read liveness: a watched peer died since
    /// the last look, or the liveness interval passed.
    pub(crate) fn check_dead(&mut self) -> bool {
        let (d, now) = (sync::deaths(), sync::now());
        if std::mem::take(&mut self.found_dead)
            || d != self.deaths
            || now.saturating_sub(self.checked) >= sync::LIVENESS_INTERVAL
        {
            self.deaths = d;
            self.checked = now;
            return true;
        }
        false
    }

    /// Registers `words` (armed by the caller, who checked once more after
    /// arming) to wake `cx`'s waker, and watches `targets` for death on the
    /// first word. Without the waiter thread, wakes the waker at once (the
    /// executor polls again: a busy wait, the documented fallback).
    pub(crate) fn sleep(&mut self, cx: &Context<'_>, words: &[(&Futex, u32)], targets: &[Target]) {
        self.regs.clear();
        for &(w, v) in words {
            match reactor::register(w, v, cx.waker()) {
                Some(r) => self.regs.push(r),
                None => {
                    cx.waker().wake_by_ref();
                    return;
                }
            }
        }
        // The targets change (a lock's next owner, a queue's newcomer):
        // watch the current ones, re-registering only when they differ.
        let Some(&(w, _)) = words.first() else {
            return;
        };
        let addr = w.word().as_ptr() as usize;
        if self.watched.0 != addr || self.watched.1 != targets {
            self.watch = None;
            self.watched = (addr, targets.to_vec());
            if !targets.is_empty() {
                let watch = sync::watch(w, targets);
                if watch.dead {
                    // Dead before the watch began: no notice will come.
                    self.found_dead = true;
                    cx.waker().wake_by_ref();
                }
                self.watch = Some(watch);
            }
        }
    }

    /// Forgets the registrations (the future is done).
    pub(crate) fn done(&mut self) {
        self.regs.clear();
        self.watch = None;
        self.watched = (0, Vec::new());
    }
}

/// One poll of a future that waits on one armed word: try (reading
/// liveness when due), arm, try again, else register and stay pending.
pub(crate) fn poll_one<'w, T>(
    w: &mut Waiter,
    cx: &Context<'_>,
    mut attempt: impl FnMut(bool) -> Option<T>,
    arm: impl FnOnce() -> (&'w Futex, u32),
    targets: impl FnOnce() -> Vec<Target>,
) -> Poll<T> {
    let check_dead = w.check_dead();
    if let Some(r) = attempt(check_dead) {
        w.done();
        return Poll::Ready(r);
    }
    let (word, armed) = arm();
    if let Some(r) = attempt(false) {
        w.done();
        return Poll::Ready(r);
    }
    w.sleep(cx, &[(word, armed)], &targets());
    Poll::Pending
}
