//! Unit tests of the lock that need its internals: wake-ups passed on and
//! hand-offs given up by waits on many (review findings), `arm`.

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::raw::wait::{self, Source};
use crate::sync::Deadline;
use crate::sys;

use sys::test_support::{asleep, until};

/// A holder thread: takes `lock`, says so, lets go when told, then says
/// so and stays alive until told again (its exit would wake sleepers
/// that watch it, hiding a lost wake-up).
pub(crate) fn holder<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    lock: &'static RawLock,
) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
    let (cmd_tx, cmd_rx) = mpsc::channel::<()>();
    let (ev_tx, ev_rx) = mpsc::channel::<()>();
    s.spawn(move || {
        let g = lock.lock().unwrap();
        ev_tx.send(()).unwrap();
        cmd_rx.recv().unwrap();
        drop(g);
        ev_tx.send(()).unwrap();
        let _ = cmd_rx.recv();
    });
    ev_rx.recv().unwrap();
    (cmd_tx, ev_rx)
}

/// Regression: a wait set on a lock, asleep before a locker, took the
/// unlock's single wake-up and returned; the unlock had cleared
/// `WAITERS`, so the set's hand-on (`pass_wake`) saw none and the
/// locker stayed asleep on a free lock until its own timer (a second).
#[test]
fn a_wait_set_woken_in_a_lockers_stead_passes_the_wake_on() {
    let lock: &'static RawLock = Box::leak(Box::new(RawLock::new()));
    std::thread::scope(|s| {
        let (cmd, ev) = holder(s, lock);
        let (tid_tx, tid_rx) = mpsc::channel();
        let set = {
            let tid_tx = tid_tx.clone();
            s.spawn(move || {
                tid_tx.send(sys::gettid()).unwrap();
                let mut out = Vec::new();
                let src = [Source::Lock(lock)];
                wait::wait(&src, Deadline::after(Duration::from_secs(60)), &mut out).unwrap()
            })
        };
        let set_tid = tid_rx.recv().unwrap();
        until("the set asleep", || asleep(set_tid));
        let locker = s.spawn(move || {
            tid_tx.send(sys::gettid()).unwrap();
            drop(lock.lock().unwrap());
        });
        let locker_tid = tid_rx.recv().unwrap();
        until("the locker asleep", || asleep(locker_tid));
        // The unlock wakes the first sleeper queued: the set.
        cmd.send(()).unwrap();
        ev.recv().unwrap();
        assert!(set.join().unwrap(), "the set saw the lock free");
        assert_eq!(
            lock.wake.wake_one(),
            0,
            "a locker was left asleep on a free lock"
        );
        locker.join().unwrap();
        cmd.send(()).unwrap();
    });
}

/// Regression: `arm` on a free lock set no `WAITERS` and returned the
/// current wake count. A lock taken between that and the caller's
/// sleep was then released without a wake-up (nobody was registered),
/// and the sleeper slept on until its timer.
#[test]
fn arming_never_leaves_a_sleep_that_no_unlock_ends() {
    let lock = RawLock::new();
    let (word, val) = lock.arm();
    let registered = lock.state.load(Ordering::Relaxed) & WAITERS != 0;
    assert!(
        registered || word.word().load(Ordering::Relaxed) != val,
        "arm left neither WAITERS nor a value that ends the sleep"
    );
}

/// Runs `n` contended unlocks (a held lock with `WAITERS` set), so that
/// the next contended unlock is a fair one when `n` is
/// `FAIR_EVERY - 1` on a fresh lock.
pub(crate) fn contended_unlocks(lock: &RawLock, n: u32) {
    for _ in 0..n {
        let g = lock.lock().unwrap();
        let _ = lock.arm();
        drop(g);
    }
}

/// Review: a fair unlock whose single wake-up goes to a wait set on
/// the lock hands the lock to a sleeper that cannot take it (a set
/// claims nothing): the state stays `HANDOFF`, which is ready only once
/// 20 ms old, and the set sleeps again with no owner to watch and the
/// watched interval, a second, although the lock is ready 20 ms later.
/// Now the set gives the reservation up: when it returns, the lock is
/// plainly free (a stale hand-off, which is what the set found after
/// its second of sleep before, fails the test).
#[test]
fn review_a_wait_set_woken_by_a_fair_unlock_sees_the_lock_ready_within_the_liveness_interval() {
    let lock: &'static RawLock = Box::leak(Box::new(RawLock::new()));
    contended_unlocks(lock, FAIR_EVERY - 1);
    std::thread::scope(|s| {
        let (cmd, ev) = holder(s, lock);
        let (tid_tx, tid_rx) = mpsc::channel();
        let set = s.spawn(move || {
            tid_tx.send(sys::gettid()).unwrap();
            let mut out = Vec::new();
            let src = [Source::Lock(lock)];
            let r = wait::wait(&src, Deadline::after(Duration::from_secs(60)), &mut out);
            (r.unwrap(), std::time::Instant::now())
        });
        let set_tid = tid_rx.recv().unwrap();
        until("the set asleep", || asleep(set_tid));
        cmd.send(()).unwrap();
        ev.recv().unwrap();
        let unlocked = std::time::Instant::now();
        let (ready, at) = set.join().unwrap();
        let state = lock.state.load(Ordering::Relaxed);
        cmd.send(()).unwrap();
        assert!(ready);
        assert!(
            state & HANDOFF == 0,
            "the set left the fair hand-off in place and saw the lock ready only {:?} \
             after the unlock, once the hand-off was stale",
            at - unlocked
        );
    });
}
