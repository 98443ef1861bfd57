//! Loom models of `RawRLock` (`src/raw/rlock.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_rlock` (or `ci/loom.sh`).
//!
//! | model                               | checks                                                       |
//! |-------------------------------------|--------------------------------------------------------------|
//! | `nested_levels_exclude_each_other`  | two threads, each two levels deep: mutual exclusion (no overlap on the cell), the lock free after both |
//! | `a_non_owner_changes_nothing`       | a release by a thread that does not hold it is `NotOwner`, the owner keeps its level |
//! | `a_holder_dead_at_level_two_is_taken_over` | the owner dies two levels deep: the survivor takes it over, is told once, starts at level 1, and one release frees it |
//! | `holder_dies_at_every_step_sweep` | the owner dies before each step of a nested lock, lock, unlock, unlock (death at every step): the survivor gets the lock with mutual exclusion, is told at most once, never after a clean release, and the lock works afterwards |
//!
//! Mutants run by hand when these were written: a nested acquisition that
//! takes the lock again instead of raising the level (the first model
//! fails: the lock says `Deadlock`); a release that unlocks at every level
//! (the first model fails: the lock is free while the inner guard lives).
//! Before the levels moved into the owner thread, the third model found
//! that a level kept in shared memory could be overwritten by the dead
//! owner's last store (both acquisitions were told).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shmkit::raw::RawRLock;
use shmkit::sync::loom_support::{self, ack, acks, die, sweep, victim, Sweep};
use shmkit::Error;

/// A counter bumped non-atomically under the lock.
#[derive(Default)]
struct Counter(UnsafeCell<u32>);

// SAFETY: every access happens under the lock the model tests (or after
// the other threads were joined); loom checks that claim on each access.
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

fn twice(l: &RawRLock, c: &Counter) {
    let outer = l.lock().unwrap();
    let inner = l.lock().unwrap();
    assert_eq!(l.level(), 2);
    c.bump();
    // Out of order: the outer guard first.
    drop(outer);
    assert!(l.is_locked());
    c.bump();
    drop(inner);
}

#[test]
fn nested_levels_exclude_each_other() {
    loom_support::model(false, || {
        let l = Arc::new(RawRLock::new());
        let c = Arc::new(Counter::default());
        let t = {
            let (l, c) = (l.clone(), c.clone());
            thread::spawn(move || twice(&l, &c))
        };
        twice(&l, &c);
        t.join().unwrap();
        assert_eq!(c.get(), 4);
        assert!(!l.is_locked());
        assert_eq!(l.level(), 0);
    });
}

#[test]
fn a_non_owner_changes_nothing() {
    loom_support::model(false, || {
        let l = Arc::new(RawRLock::new());
        let g = l.lock().unwrap();
        let t = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(matches!(l.release(), Err(Error::NotOwner { .. })));
                assert_eq!(l.level(), 0);
            })
        };
        t.join().unwrap();
        assert_eq!(l.level(), 1);
        drop(g);
        assert!(!l.is_locked());
    });
}

#[test]
fn a_holder_dead_at_level_two_is_taken_over() {
    loom_support::model(true, || {
        let l = Arc::new(RawRLock::new());
        let doomed = {
            let l = l.clone();
            thread::spawn(move || {
                l.acquire().unwrap();
                l.acquire().unwrap();
                die();
            })
        };
        let first = l.lock().unwrap();
        let told_first = first.owner_died();
        assert_eq!(l.level(), 1);
        drop(first);
        doomed.join().unwrap();
        let second = l.lock().unwrap();
        assert!(
            told_first ^ second.owner_died(),
            "the death must be reported exactly once ({told_first}, {})",
            second.owner_died()
        );
        assert_eq!(l.level(), 1);
        drop(second);
        assert!(!l.is_locked());
    });
}

#[test]
fn holder_dies_at_every_step_sweep() {
    let opts = Sweep {
        max_branches: Some(20_000),
        ..Sweep::default()
    };
    let swept = sweep("rlock_holder", opts, || {
        let l = Arc::new(RawRLock::new());
        let c = Arc::new(Counter::default());
        let v = {
            let (l, c) = (l.clone(), c.clone());
            victim(move || {
                let outer = l.lock().unwrap();
                let inner = l.lock().unwrap();
                c.bump();
                ack(1);
                drop(inner);
                drop(outer);
                ack(2);
            })
        };
        let g = l.lock().unwrap();
        let told_first = g.owner_died();
        assert_eq!(l.level(), 1);
        c.bump();
        drop(g);
        v.join();
        let g = l.lock().unwrap();
        let told_second = g.owner_died();
        assert_eq!(l.level(), 1);
        drop(g);
        assert!(!l.is_locked());
        let acks = acks();
        assert_eq!(c.get(), 1 + u32::from(acks.contains(&1)));
        assert!(!(told_first && told_second), "one death reported twice");
        if acks.contains(&2) {
            assert!(
                !told_first && !told_second,
                "a death reported after a clean release"
            );
        }
    });
    assert!(swept.steps > 0);
}
