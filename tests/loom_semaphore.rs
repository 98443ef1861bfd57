//! Loom models of `RawSemaphore` (`src/raw/semaphore.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_semaphore` (or `ci/loom.sh loom_semaphore`).
//! Under loom the holder table has two entries.
//!
//! | model                                  | checks                                                    |
//! |----------------------------------------|-----------------------------------------------------------|
//! | `one_permit_excludes`                  | Semaphore(1) as a mutex: the guarded cell is never touched by two holders at once (loom's causality check), the count whole after |
//! | `two_permits_never_three_holders`      | Semaphore(2), three takers (one past the table's two entries: unprotected): never more than 2 inside, the count whole after |
//! | `a_release_wakes_a_sleeper`            | Semaphore(0): a sleeper (untimed; timeouts do not fire) is woken by a release from another thread; a lost wake-up is a loom deadlock |
//! | `keep_then_release_counts`             | a kept permit is plain: released by another thread, never given back twice |
//! | `holder_dies_at_every_step_sweep`      | the victim takes a guarded permit, bumps the cell, gives it back; it dies before each of its steps in turn. A survivor and then the main thread each get a permit (else deadlock), the cell's accesses stay ordered, and the count is whole again at the end: no permit lost, none made up |
//! | `bounded_release_at_every_step_sweep`  | the victim releases a kept permit of a BoundedSemaphore(1) and dies at each step: the count never passes the bound, and a second release is refused |
//!
//! Mutants run by hand when these were written, each caught: a recovery
//! that frees a dead entry whose bit is set (instead of taking its permit
//! over) fails the sweep with the victim dying at step 5, holding (the
//! survivor never gets a permit: loom's branch limit); a release that
//! clears `WAITERS` without waking fails `a_release_wakes_a_sleeper`
//! (loom: deadlock); a guarded acquire that decrements and records its
//! entry with two separate atomics fails the sweep at step 5 (a death
//! between them loses the permit).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmkit::raw::RawSemaphore;
use shmkit::sync::loom_support::{self, ack, acks, sweep, victim, Sweep};
use shmkit::Error;

/// A counter bumped non-atomically while holding a permit of a
/// one-permit semaphore.
#[derive(Default)]
struct Counter(UnsafeCell<u32>);

// SAFETY: every access happens while holding the only permit (the property
// tested) or after the other threads were joined; loom checks each access.
unsafe impl Sync for Counter {}

impl Counter {
    fn bump(&self) {
        // SAFETY: called only while holding the only permit.
        self.0.with_mut(|p| unsafe { *p += 1 });
    }
    fn get(&self) -> u32 {
        // SAFETY: called after every other thread was joined.
        self.0.with(|p| unsafe { *p })
    }
}

fn bump_under(s: &RawSemaphore, c: &Counter) {
    let g = s.acquire().unwrap();
    c.bump();
    drop(g);
}

#[test]
fn one_permit_excludes() {
    loom_support::model(false, || {
        let s = Arc::new(RawSemaphore::new(1, false).unwrap());
        let c = Arc::new(Counter::default());
        let t = {
            let (s, c) = (s.clone(), c.clone());
            thread::spawn(move || bump_under(&s, &c))
        };
        bump_under(&s, &c);
        t.join().unwrap();
        assert_eq!(c.get(), 2);
        assert_eq!(s.value(), 1);
        assert_eq!(s.protected_holders(), 0);
    });
}

#[test]
fn two_permits_never_three_holders() {
    loom_support::model(false, || {
        let s = Arc::new(RawSemaphore::new(2, false).unwrap());
        let inside = Arc::new(AtomicUsize::new(0));
        let take = |s: &RawSemaphore, inside: &AtomicUsize| {
            let g = s.acquire().unwrap();
            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(n <= 2, "{n} holders of 2 permits");
            inside.fetch_sub(1, Ordering::SeqCst);
            drop(g);
        };
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let (s, inside) = (s.clone(), inside.clone());
                thread::spawn(move || take(&s, &inside))
            })
            .collect();
        take(&s, &inside);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.value(), 2);
        assert_eq!(s.protected_holders(), 0);
    });
}

#[test]
fn a_release_wakes_a_sleeper() {
    loom_support::model(false, || {
        let s = Arc::new(RawSemaphore::new(0, false).unwrap());
        let t = {
            let s = s.clone();
            thread::spawn(move || s.acquire().unwrap().keep())
        };
        s.release(1).unwrap();
        t.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn keep_then_release_counts() {
    loom_support::model(false, || {
        let s = Arc::new(RawSemaphore::new(1, true).unwrap());
        s.acquire().unwrap().keep();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.release(1))
        };
        let again = s.release(1);
        let other = t.join().unwrap();
        // Exactly one of the two releases fits under the bound.
        assert!(
            again.is_ok() ^ other.is_ok(),
            "{again:?} {other:?}: both or neither released"
        );
        assert!(matches!(
            again.err().or(other.err()),
            Some(Error::TooManyReleases { limit: 1, .. })
        ));
        assert_eq!(s.value(), 1);
    });
}

fn sweep_opts() -> Sweep {
    Sweep {
        max_branches: Some(20_000),
        ..Sweep::default()
    }
}

#[test]
fn holder_dies_at_every_step_sweep() {
    let swept = sweep("semaphore_holder", sweep_opts(), || {
        let s = Arc::new(RawSemaphore::new(1, false).unwrap());
        let c = Arc::new(Counter::default());
        let survivor = {
            let (s, c) = (s.clone(), c.clone());
            thread::spawn(move || bump_under(&s, &c))
        };
        let v = {
            let (s, c) = (s.clone(), c.clone());
            victim(move || {
                let g = s.acquire().unwrap();
                c.bump();
                ack(1);
                drop(g);
            })
        };
        survivor.join().unwrap();
        v.join();
        bump_under(&s, &c);
        let victim_bumped = u32::from(acks().contains(&1));
        assert_eq!(c.get(), 2 + victim_bumped);
        assert_eq!(s.value(), 1, "a permit lost or made up");
        assert_eq!(s.protected_holders(), 0);
    });
    assert!(swept.steps > 0);
}

#[test]
fn bounded_release_at_every_step_sweep() {
    sweep("semaphore_bounded_release", sweep_opts(), || {
        let s = Arc::new(RawSemaphore::new(1, true).unwrap());
        s.acquire().unwrap().keep();
        let v = {
            let s = s.clone();
            victim(move || {
                if s.release(1).is_ok() {
                    ack(1);
                }
            })
        };
        let mine = s.release(1);
        v.join();
        let released = u32::from(acks().contains(&1)) + u32::from(mine.is_ok());
        assert!(released <= 1, "released past the bound");
        assert!(s.value() <= 1);
        if s.value() == 1 {
            assert!(matches!(s.release(1), Err(Error::TooManyReleases { .. })));
        }
    });
}
