//! Loom models of `RawLock` (`src/raw/lock.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_lock` (or `ci/loom.sh`).
//!
//! Under loom the futex is a loom `Mutex` + `Condvar` (`src/sync/model.rs`):
//! with `timeouts_fire = false` a sleeper wakes only when someone wakes it,
//! so a lost wake-up is a loom deadlock; with `timeouts_fire = true` every
//! timed sleep times out at once, which drives the "is the owner alive?"
//! path. Under loom `FAIR_EVERY` is 2, so the second contended unlock is a
//! fair hand-off (`HANDOFF | WAITERS`).
//!
//! # Getting a waiter to sleep
//!
//! `lock` spins [`SRC_SPIN_LIMIT`] times (`spin_loop` is a loom yield)
//! before it sleeps, and a loom yield lets every other thread take a step
//! first. So a waiter only runs out of spins, and sleeps, while the holder
//! does more than that many steps; a holder that unlocks at once never has a
//! sleeper. Models that must reach the sleeping paths therefore hold the
//! lock for [`LONG`] yields ("slow holder"), and one sweeps the hold length
//! across the point where the waiter stops spinning, so that the unlock
//! lands on each step of the waiter's way to sleep.
//!
//! | model                                | checks                                                         |
//! |--------------------------------------|----------------------------------------------------------------|
//! | `mutual_exclusion`                   | two lockers never overlap (loom's `UnsafeCell` race check)     |
//! | `mutual_exclusion_with_sleeper`      | the same when the waiter sleeps and is woken                   |
//! | `mutual_exclusion_three_threads`     | three lockers                                                  |
//! | `live_owner_never_robbed`            | with timeouts firing, the liveness path never takes a live owner's lock |
//! | `no_lost_wakeup`                     | a sleeping waiter is woken by the unlock                       |
//! | `no_lost_wakeup_sweep`               | ... wherever the unlock lands between spinning and sleeping    |
//! | `no_lost_wakeup_with_fair_handoff`   | two rounds each, so the fair hand-off (2nd contended unlock) runs |
//! | `no_lost_wakeup_three_threads`       | one unlock wakes one of two sleepers; the rest follow          |
//! | `dead_owner_is_taken_over`           | a holder that dies is taken over, told `owner_died`, lock usable after |
//! | `two_survivors_race_for_dead_lock`   | exactly one survivor is told `owner_died`; they still exclude  |
//! | `try_lock_on_held_lock_is_none`      | `try_lock` never takes a held lock, takes a free or dead one   |
//! | `try_lock_races_lock`                | `try_lock` racing `lock`: exclusion                            |
//!
//! Every model ends with [`assert_quiescent`]: once every thread is done,
//! the lock must be free for anyone (`try_lock` succeeds), which catches a
//! lock left reserved for a sleeper that does not exist.
//!
//! How each model can fail is written beside it; the mutants named there
//! were run by hand against a scratch copy of `src/` when these models were
//! written (see the report in the commit that added them).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmkit::raw::RawLock;
use shmkit::sync::loom_support::{self, die};

/// `SPIN_LIMIT` in `src/raw/lock.rs`: how many times `lock` spins before it
/// sleeps. If the source lowers it under loom, [`LONG`] holds are merely
/// longer than needed.
const SRC_SPIN_LIMIT: usize = 100;

/// A hold long enough that a waiter runs out of spins and sleeps.
const LONG: usize = SRC_SPIN_LIMIT + 4;

/// A counter incremented non-atomically under the lock: if two holders ever
/// overlap, loom's `UnsafeCell` reports the unsynchronised access.
#[derive(Default)]
struct Counter(UnsafeCell<u32>);

// SAFETY: every access happens under the `RawLock` the model tests (or
// after every other thread was joined); loom checks that claim on each
// access.
unsafe impl Sync for Counter {}

impl Counter {
    fn bump(&self) {
        // SAFETY: called only while holding the lock (the property tested).
        self.0.with_mut(|p| unsafe { *p += 1 });
    }
    fn get(&self) -> u32 {
        // SAFETY: called after every other thread was joined.
        self.0.with(|p| unsafe { *p })
    }
}

/// Takes the lock, bumps the counter, keeps the lock for `hold` yields (a
/// slow holder), unlocks.
fn locked_bump(lock: &RawLock, c: &Counter, hold: usize) {
    let g = lock.lock().expect("lock");
    assert!(!g.owner_died(), "nobody died, yet owner_died");
    c.bump();
    for _ in 0..hold {
        thread::yield_now();
    }
    drop(g);
}

/// Once every thread is done, the lock must be free for anyone.
fn assert_quiescent(lock: &RawLock) {
    assert!(!lock.is_locked(), "locked after every holder unlocked");
    let g = lock
        .try_lock()
        .unwrap()
        .expect("nobody holds or waits for the lock, yet try_lock fails");
    assert!(!g.owner_died());
}

/// Spawns a thread running `f(lock, counter)`.
fn spawn_with(
    lock: &Arc<RawLock>,
    c: &Arc<Counter>,
    f: impl FnOnce(&RawLock, &Counter) + Send + 'static,
) -> thread::JoinHandle<()> {
    let (lock, c) = (lock.clone(), c.clone());
    thread::spawn(move || f(&lock, &c))
}

/// Two threads lock, increment, unlock. Fails (loom: causality violation on
/// the cell) if the acquiring CAS were `Relaxed` instead of `Acquire`, or
/// the releasing CAS `Relaxed` instead of `Release`.
#[test]
fn mutual_exclusion() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let t = spawn_with(&lock, &c, |l, c| locked_bump(l, c, 0));
        locked_bump(&lock, &c, 0);
        t.join().unwrap();
        assert_eq!(c.get(), 2);
        assert_quiescent(&lock);
    });
}

/// As above, with a slow holder so that the waiter sleeps and takes the
/// lock on the slow path (`me | WAITERS`, whose CAS must be `Acquire`; the
/// unlock is then `unlock_slow`, whose CAS must be `Release`).
#[test]
fn mutual_exclusion_with_sleeper() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let t = spawn_with(&lock, &c, |l, c| locked_bump(l, c, 0));
        locked_bump(&lock, &c, LONG);
        t.join().unwrap();
        assert_eq!(c.get(), 2);
        assert_quiescent(&lock);
    });
}

/// Three lockers, each once.
#[test]
fn mutual_exclusion_three_threads() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let ts: Vec<_> = (0..2)
            .map(|_| spawn_with(&lock, &c, |l, c| locked_bump(l, c, 0)))
            .collect();
        locked_bump(&lock, &c, 0);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 3);
        assert_quiescent(&lock);
    });
}

/// With every timed sleep timing out, a waiter of a slow holder runs the
/// liveness check on every round; the owner is alive, so it must never be
/// robbed, and nobody is told `owner_died`. Fails if `owner_alive` misjudged
/// a live owner (mutant: `owner_alive` returning `false` makes the cell
/// race and `owner_died` fire), e.g. a stamp not yet written, read as 0,
/// taken for a reused id.
#[test]
fn live_owner_never_robbed() {
    loom_support::model(true, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let t = spawn_with(&lock, &c, |l, c| locked_bump(l, c, 0));
        locked_bump(&lock, &c, LONG);
        t.join().unwrap();
        assert_eq!(c.get(), 2);
        assert_quiescent(&lock);
    });
}

/// A slow holder and a waiter that sleeps, no timeouts: the unlock must wake
/// it, or loom reports a deadlock (mutant: no `wake_one` in `unlock_slow`).
#[test]
fn no_lost_wakeup() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let t = spawn_with(&lock, &c, |l, c| locked_bump(l, c, 0));
        locked_bump(&lock, &c, LONG);
        t.join().unwrap();
        assert_eq!(c.get(), 2);
        assert_quiescent(&lock);
    });
}

/// The unlock lands on each step of the waiter's way from spinning to
/// sleeping (its last spins, the `WAITERS` CAS, the futex check, the
/// sleep), one hold length per model run. Fails (deadlock) if the waiter
/// could sleep on a word that no longer needs a wake, e.g. if it slept
/// without setting `WAITERS` (mutant: skip the `w | WAITERS` CAS).
#[test]
fn no_lost_wakeup_sweep() {
    for hold in (0..=2).chain(SRC_SPIN_LIMIT - 3..=SRC_SPIN_LIMIT + 3) {
        loom_support::model(false, move || {
            let lock = Arc::new(RawLock::new());
            let c = Arc::new(Counter::default());
            let t = spawn_with(&lock, &c, |l, c| locked_bump(l, c, 0));
            locked_bump(&lock, &c, hold);
            t.join().unwrap();
            assert_eq!(c.get(), 2);
            assert_quiescent(&lock);
        });
    }
}

/// Two threads, two rounds each, under each pattern of slow (`LONG`) and
/// quick (0) holds, so that contended unlocks happen both with a thread
/// asleep and with one on its way to sleep. Under loom the second contended
/// unlock is a fair hand-off (`HANDOFF | WAITERS`), which only a thread that
/// slept may take: so it must not be left in place when nobody sleeps,
/// else the next locker sleeps with nobody to wake it (loom: deadlock) and
/// `try_lock` fails on a free lock ([`assert_quiescent`]).
/// Mutant checks: `may_take` never taking a hand-off deadlocks here, and so
/// does a fair unlock that frees an unclaimed hand-off without waking
/// whoever went to sleep on it meanwhile.
#[test]
fn no_lost_wakeup_with_fair_handoff() {
    for other in [[0, 0], [LONG, 0], [0, LONG]] {
        loom_support::model(false, move || {
            let lock = Arc::new(RawLock::new());
            let c = Arc::new(Counter::default());
            let t = spawn_with(&lock, &c, move |l, c| {
                for hold in other {
                    locked_bump(l, c, hold);
                }
            });
            locked_bump(&lock, &c, LONG);
            locked_bump(&lock, &c, 0);
            t.join().unwrap();
            assert_eq!(c.get(), 4);
            assert_quiescent(&lock);
        });
    }
}

/// One slow holder, two threads that sleep: unlock wakes only one, so the
/// woken thread must take the lock with `WAITERS` still set for the other
/// to be woken in turn. Fails (deadlock) if a woken thread took the lock as
/// plain `tid` (mutant: `me.tid() | WAITERS` → `me.tid()` in `lock_slow`).
#[test]
fn no_lost_wakeup_three_threads() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let g = lock.lock().unwrap();
        let ts: Vec<_> = (0..2)
            .map(|_| spawn_with(&lock, &c, |l, c| locked_bump(l, c, 0)))
            .collect();
        c.bump();
        for _ in 0..LONG {
            thread::yield_now();
        }
        drop(g);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 3);
        assert_quiescent(&lock);
    });
}

/// A holder takes the lock and then stops forever (marked dead, guard
/// forgotten). The survivor either got the lock before it (then its second
/// `lock` finds it dead-held) or after (then it is told `owner_died`):
/// exactly one of the survivor's two acquisitions reports the death, and
/// the lock works normally after. Fails if `owner_died` were not reported
/// (mutant: `acquired(me, false)` on the takeover path), or if the
/// takeover path were gone (a livelock: loom's branch limit).
#[test]
fn dead_owner_is_taken_over() {
    loom_support::model(true, || {
        let lock = Arc::new(RawLock::new());
        let doomed = {
            let lock = lock.clone();
            thread::spawn(move || {
                let g = lock.lock().unwrap();
                assert!(!g.owner_died());
                die();
                std::mem::forget(g);
            })
        };
        let g1 = lock.lock().unwrap();
        let died1 = g1.owner_died();
        drop(g1);
        doomed.join().unwrap();
        let g2 = lock.lock().unwrap();
        let died2 = g2.owner_died();
        assert!(
            died1 ^ died2,
            "the death must be reported exactly once (got {died1}, {died2})"
        );
        drop(g2);
        assert_quiescent(&lock);
    });
}

/// The holder dies; two survivors race to take over. Exactly one is told
/// `owner_died` (the takeover CAS is won once), and they still exclude each
/// other. Fails if the takeover CAS did not compare the word it judged
/// (both would take over), or if the loser then robbed the live winner.
#[test]
fn two_survivors_race_for_dead_lock() {
    loom_support::model(true, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let died = Arc::new(AtomicU32::new(0));
        std::mem::forget(lock.lock().unwrap());
        die();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let died = died.clone();
                spawn_with(&lock, &c, move |lock, c| {
                    let g = lock.lock().unwrap();
                    if g.owner_died() {
                        died.fetch_add(1, Ordering::Relaxed);
                    }
                    c.bump();
                    drop(g);
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(died.load(Ordering::Relaxed), 1);
        assert_eq!(c.get(), 2);
        assert_quiescent(&lock);
    });
}

/// `try_lock` while another thread holds the lock returns `None` (also for
/// the holder itself); once free it returns a guard; while the holder is
/// dead it takes over and says so. Fails if `try_lock` ignored liveness
/// (mutant: `!self.owner_alive(w)` → `true`).
#[test]
fn try_lock_on_held_lock_is_none() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let g = lock.lock().unwrap();
        let t = {
            let lock = lock.clone();
            thread::spawn(move || {
                assert!(lock.try_lock().unwrap().is_none(), "took a held lock");
            })
        };
        assert!(lock.try_lock().unwrap().is_none(), "holder took it twice");
        t.join().unwrap();
        drop(g);
        let t = {
            let lock = lock.clone();
            thread::spawn(move || {
                let g = lock.try_lock().unwrap().expect("free lock");
                assert!(!g.owner_died());
                die();
                std::mem::forget(g);
            })
        };
        t.join().unwrap();
        let g = lock.try_lock().unwrap().expect("dead holder's lock");
        assert!(g.owner_died());
        drop(g);
        assert_quiescent(&lock);
    });
}

/// `try_lock` racing `lock`: whoever gets the lock has it alone. Fails
/// (loom race on the counter) if `try_lock` took a held lock or its CAS
/// were `Relaxed`.
#[test]
fn try_lock_races_lock() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let got = Arc::new(AtomicU32::new(0));
        let t = {
            let got = got.clone();
            spawn_with(&lock, &c, move |lock, c| {
                if let Some(g) = lock.try_lock().unwrap() {
                    assert!(!g.owner_died());
                    c.bump();
                    drop(g);
                    got.store(1, Ordering::Relaxed);
                }
            })
        };
        locked_bump(&lock, &c, 0);
        t.join().unwrap();
        assert_eq!(c.get(), 1 + got.load(Ordering::Relaxed));
        assert_quiescent(&lock);
    });
}
