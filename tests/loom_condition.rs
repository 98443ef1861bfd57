//! Loom models of `RawCondition` (`src/raw/condition.rs`) over a `RawLock`
//! and a `RawRLock`.
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_condition -- --nocapture` (or
//! `ci/loom.sh loom_condition`).
//!
//! | model                                  | checks                                                        |
//! |----------------------------------------|---------------------------------------------------------------|
//! | `no_lost_notify`                       | a waiter looping on a flag under the lock, a notifier setting it and notifying one: the waiter always returns (timed waits block, so a lost notify is a loom deadlock) |
//! | `no_lost_notify_rlock`                 | the same over an `RLock` held two levels deep: the level is restored |
//! | `no_wake_beyond_n`                     | a timed waiter and `notify(1)` racing its timeout: it says "notified" exactly when notify counted it released (a timeout never loses a release, a release is never reported twice) |
//! | `dead_waiter_sweep` (death sweep)      | a victim waiter and a live one; `notify(1)` once the live one waits: the notifier never blocks, and unless the victim had been released before it died, the live waiter is the one released (no second notify is sent: a swallowed notify is a loom deadlock) |
//!
//! Step count and time (LOOM_MAX_PREEMPTIONS=2, release, this machine):
//! `dead_waiter_sweep` 39 steps, 40 models, 8 s; the other three under a
//! second together.
//!
//! Mutants run by hand (against a scratch copy of `src/raw/condition.rs`):
//! - `notify` not checking liveness (a dead waiter released in a live
//!   one's stead): `dead_waiter_sweep` fails (the live waiter is never
//!   notified and polls until loom gives up).
//! - a timed-out waiter leaving with a plain store instead of the CAS from
//!   its exact word: survives at two preemptions (the race needs the
//!   notifier's CAS between the waiter's last look and its store, which
//!   takes a third); caught by reasoning only, see "wait" in the module
//!   docs.
#![cfg(loom)]

use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU32;
use loom::sync::Arc;
use loom::thread;
use shmkit::raw::{RawCondition, RawLock, RawRLock, Spin};
use shmkit::sync::loom_support::{
    self, at_death, current_tid, finding, spare, sweep, timed_waits_block, victim, Sweep,
};
use std::sync::atomic::Ordering::SeqCst;

/// A flag written and read only under the lock (loom checks that).
#[derive(Default)]
struct Flag(UnsafeCell<bool>);

// SAFETY: every access happens under the model's lock.
unsafe impl Sync for Flag {}

impl Flag {
    fn set(&self) {
        // SAFETY: called with the lock held.
        self.0.with_mut(|p| unsafe { *p = true });
    }
    fn get(&self) -> bool {
        // SAFETY: called with the lock held.
        self.0.with(|p| unsafe { *p })
    }
}

#[test]
fn no_lost_notify() {
    loom_support::model(false, || {
        let lock = Arc::new(RawLock::new());
        let cond = Arc::new(RawCondition::new());
        let flag = Arc::new(Flag::default());
        let t = {
            let (lock, cond, flag) = (lock.clone(), cond.clone(), flag.clone());
            thread::spawn(move || {
                let g = lock.lock_with(None, Spin::Never).unwrap();
                while !flag.get() {
                    let w = cond.wait(&*lock, None).unwrap();
                    assert!(!w.timed_out && !w.owner_died);
                }
                drop(g);
            })
        };
        let g = lock.lock_with(None, Spin::Never).unwrap();
        flag.set();
        assert!(cond.notify(&*lock, 1).unwrap() <= 1);
        drop(g);
        t.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(cond.waiting(), 0);
    });
}

#[test]
fn no_lost_notify_rlock() {
    loom_support::model(false, || {
        let lock = Arc::new(RawRLock::new());
        let cond = Arc::new(RawCondition::new());
        let flag = Arc::new(Flag::default());
        let t = {
            let (lock, cond, flag) = (lock.clone(), cond.clone(), flag.clone());
            thread::spawn(move || {
                let a = lock.lock().unwrap();
                let b = lock.lock().unwrap();
                while !flag.get() {
                    cond.wait(&*lock, None).unwrap();
                    assert_eq!(lock.level(), 2);
                }
                drop((b, a));
            })
        };
        let g = lock.lock().unwrap();
        flag.set();
        cond.notify(&*lock, 1).unwrap();
        drop(g);
        t.join().unwrap();
        assert!(!lock.is_locked());
    });
}

#[test]
fn no_wake_beyond_n() {
    loom_support::model(true, || {
        let lock = Arc::new(RawLock::new());
        let cond = Arc::new(RawCondition::new());
        let t = {
            let (lock, cond) = (lock.clone(), cond.clone());
            thread::spawn(move || {
                let g = lock.lock_with(None, Spin::Never).unwrap();
                let w = cond.wait(&*lock, Some(Duration::from_millis(5))).unwrap();
                drop(g);
                !w.timed_out
            })
        };
        let g = lock.lock_with(None, Spin::Never).unwrap();
        let released = cond.notify(&*lock, 1).unwrap();
        drop(g);
        let notified = t.join().unwrap();
        assert!(released <= 1);
        assert_eq!(
            usize::from(notified),
            released,
            "released {released}, woke {notified}"
        );
        assert_eq!(cond.waiting(), 0);
    });
}

#[test]
fn dead_waiter_sweep() {
    let opts = Sweep {
        timeouts_fire: true,
        preemptions: Some(1),
        max_branches: Some(200_000),
        ..Sweep::default()
    };
    sweep("condition_dead_waiter", opts, || {
        let lock = Arc::new(RawLock::new());
        let cond = Arc::new(RawCondition::new());
        // Thread ids are handed out at first use: each says its own.
        let v_tid = Arc::new(AtomicU32::new(0));
        let w_tid = Arc::new(AtomicU32::new(0));
        let v = {
            let (lock, cond, id) = (lock.clone(), cond.clone(), v_tid.clone());
            victim(move || {
                spare(|| id.store(current_tid(), SeqCst));
                // Sleeps for real (as W): only the main thread polls.
                timed_waits_block();
                // Marks the instant of death (see `finding` below).
                at_death(|| 1);
                let g = lock.lock_with(None, Spin::Never).unwrap();
                let w = cond.wait(&*lock, None).unwrap();
                drop(g);
                assert!(!w.timed_out);
            })
        };
        let w = {
            let (lock, cond, id) = (lock.clone(), cond.clone(), w_tid.clone());
            thread::spawn(move || {
                id.store(current_tid(), SeqCst);
                // It polls (its timed waits fire): it must, to outlive a
                // victim that dies in `unlock` between the CAS and the wake
                // (the lock's documented crash case). A notify meant for it
                // that is lost shows as a model that never ends.
                let g = lock.lock_with(None, Spin::Never).unwrap();
                let r = cond.wait(&*lock, None).unwrap();
                drop(g);
                assert!(!r.timed_out);
                current_tid()
            })
        };
        // Once the live waiter waits, and the victim waits or is dead.
        let (released, victim_dead) = loop {
            let g = lock.lock_with(None, Spin::Never).unwrap();
            let dead = finding().is_some();
            let (vt, wt) = (v_tid.load(SeqCst), w_tid.load(SeqCst));
            let v_waits = vt != 0 && cond.slot_state(vt) == 1;
            if wt != 0 && cond.slot_state(wt) == 1 && (dead || v_waits) {
                let n = cond.notify(&*lock, 1).unwrap();
                drop(g);
                break (n, dead);
            }
            drop(g);
            thread::yield_now();
        };
        // The live waiter was present and alive: someone was released.
        assert_eq!(released, 1);
        if !victim_dead {
            // Either of two live waiters took it: release the other (or,
            // if the victim died since, nobody).
            let g = lock.lock_with(None, Spin::Never).unwrap();
            cond.notify(&*lock, 1).unwrap();
            drop(g);
        }
        v.join();
        // A victim that died holding the lock (taking it back) leaves it
        // to a takeover: this lock, not a notify, lets the live waiter on.
        drop(lock.lock_with(None, Spin::Never).unwrap());
        // A victim dead before the notify took nothing: the live waiter
        // was released by that one notify (else: deadlock here).
        assert_eq!(w.join().unwrap(), w_tid.load(SeqCst));
    });
}
