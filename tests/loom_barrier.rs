//! Loom models of `RawBarrier` (`src/raw/barrier.rs`), on the heap
//! (`raw::barrier_model::HeapBarrier`, the same code as in a segment).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_barrier -- --nocapture` (or
//! `ci/loom.sh loom_barrier`).
//!
//! | model                         | checks                                                               |
//! |-------------------------------|----------------------------------------------------------------------|
//! | `two_parties_two_trips`       | no timeouts (a lost wake-up deadlocks): each party released exactly once per trip, never before the other arrived; exactly one index 0 per trip |
//! | `two_parties_action`          | no timeouts, two trips: the action runs once per trip, before anyone is released; indices distinct |
//! | `abort_wakes_waiter`          | no timeouts: an abort wakes a sleeping party with `BrokenBarrier`     |
//! | `reset_wakes_waiter`          | no timeouts: a reset wakes it with `BrokenBarrier`, and the barrier trips afterwards |
//! | `death_sweep` (`_unknown`)    | a party dies at every step of `wait` while the other waits: the survivor finishes (by itself if the victim was named as waiting; released, or `BrokenBarrier`); both are released or neither; a live party is never broken (no timeout can break it) |
//! | `death_sweep_action` (`_unknown`) | the last party dies at every step of a trip with an action: the survivor is released only after the action ran, else broken; never broken while the tripper lives |
//!
//! Death sweeps (`loom_support::sweep`, see `tests/loom_death.rs`) run with
//! timeouts firing, so the survivor's sleeps end at once and it reads
//! liveness; its own deadline (1 s) never comes under loom's clock, so
//! only a dead party's verdict can break the barrier for it. `_unknown`:
//! every liveness check of a live thread answers "unknown".
//!
//! Mutant run by hand: `any_dead` always false made `death_sweep_action`
//! and its `_unknown` variant fail at step 3 (the survivor polls past
//! loom's branch limit); `death_sweep` survives it, since with two parties
//! the survivor trips with a named dead party instead of judging it (the
//! SIGKILL tests of `tests/barrier.rs` cover 4-party judging). Step counts
//! (LOOM_MAX_PREEMPTIONS=2): barrier_wait 34, barrier_action 15; the file
//! takes about 25 s on this 2-core machine.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmkit::raw::barrier_model::HeapBarrier;
use shmkit::sync::loom_support::{
    self, ack, acks, at_death, current_tid, finding, sweep, victim, Sweep,
};
use shmkit::Error;

/// A survivor's timeout: never reached under loom's clock (it stands
/// still), so only a verdict can break the barrier for it.
const LONG: Duration = Duration::from_secs(1);
/// A stand-in's timeout: its sleep times out at once.
const SHORT: Duration = Duration::from_millis(5);

#[test]
fn two_parties_two_trips() {
    loom_support::model(false, || {
        let b = Arc::new(HeapBarrier::new(2));
        // arrived[p] = trips party p has arrived at.
        let arrived = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let zeros = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let party = |p: usize| {
            let (b, arrived, zeros) = (b.clone(), arrived.clone(), zeros.clone());
            move || {
                for trip in 0..2u32 {
                    arrived[p].store(trip + 1, Ordering::SeqCst);
                    let i = b.handle().wait().unwrap();
                    assert!(
                        arrived[1 - p].load(Ordering::SeqCst) > trip,
                        "released before the other arrived"
                    );
                    if i == 0 {
                        zeros[trip as usize].fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        };
        let t = thread::spawn(party(1));
        party(0)();
        t.join().unwrap();
        for z in zeros.iter() {
            assert_eq!(z.load(Ordering::SeqCst), 1, "exactly one index 0 per trip");
        }
        assert_eq!(b.handle().n_waiting(), 0);
        assert!(!b.handle().broken());
    });
}

#[test]
fn two_parties_action() {
    loom_support::model(false, || {
        let b = Arc::new(HeapBarrier::new(2));
        let ran = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(AtomicU32::new(0));
        let party = || {
            let (b, ran, seen) = (b.clone(), ran.clone(), seen.clone());
            move || {
                let r = ran.clone();
                let action = move || {
                    r.fetch_add(1, Ordering::SeqCst);
                };
                for trip in 1..=2 {
                    let i = b.handle().wait_with(None, &action).unwrap();
                    assert_eq!(
                        ran.load(Ordering::SeqCst),
                        trip,
                        "action not run exactly once before release"
                    );
                    seen.fetch_add(1 << (2 * (trip - 1) + i as u32), Ordering::SeqCst);
                }
            }
        };
        let t = thread::spawn(party());
        party()();
        t.join().unwrap();
        assert_eq!(
            seen.load(Ordering::SeqCst),
            0b1111,
            "indices 0 and 1 in each trip"
        );
    });
}

#[test]
fn abort_wakes_waiter() {
    loom_support::model(false, || {
        let b = Arc::new(HeapBarrier::new(2));
        let t = {
            let b = b.clone();
            thread::spawn(move || b.handle().wait())
        };
        b.handle().abort();
        assert!(matches!(
            t.join().unwrap(),
            Err(Error::BrokenBarrier { .. })
        ));
        assert!(b.handle().broken());
    });
}

#[test]
fn reset_wakes_waiter() {
    loom_support::model(false, || {
        let b = Arc::new(HeapBarrier::new(2));
        let t = {
            let b = b.clone();
            thread::spawn(move || {
                let first = b.handle().wait();
                (first, b.handle().wait())
            })
        };
        // Reset until the party has seen one (it may arrive after a reset
        // that then broke nothing), then meet it.
        while b.handle().n_waiting() == 0 {
            thread::yield_now();
        }
        b.handle().reset();
        let mine = b.handle().wait().unwrap();
        let (first, second) = t.join().unwrap();
        assert!(
            matches!(first, Err(Error::BrokenBarrier { .. })),
            "{first:?}"
        );
        assert_eq!(mine + second.unwrap(), 1);
    });
}

fn opts(unknown: bool, preemptions: Option<usize>) -> Sweep {
    Sweep {
        unknown,
        preemptions,
        max_branches: Some(20_000),
        ..Sweep::default()
    }
}

/// Arms the victim's autopsy: at death, does the barrier name it as a
/// waiting party (so that the survivor must break it by itself)?
fn autopsy(b: &Arc<HeapBarrier>) {
    let (b, me) = (b.clone(), current_tid());
    at_death(move || u64::from(b.handle().names(me)));
}

/// Tags: 1 + index for a victim released with that index, 9 for broken.
const BROKEN: u64 = 9;

/// A party dies at each step of `wait` on a 2-party barrier while the
/// survivor waits (1 s: only a verdict breaks it). If the victim died
/// named as a waiting party, the survivor must finish by itself. Otherwise
/// the main thread arrives as a stand-in with a short timeout, again until
/// the survivor is done, so that it finishes even when the victim died
/// before it was counted (or counted but unnamed: the survivor then passes
/// with it and waits in the next round). (With two parties the survivor
/// trips with a named dead party rather than judging it; judging is swept
/// by `death_sweep_action`. A 3-party version of this sweep, two survivors
/// polling each other, exceeded loom's path length at k = 0.)
fn death(label: &str, o: Sweep) {
    sweep(label, o, || {
        let b = Arc::new(HeapBarrier::new(2));
        let done = Arc::new(AtomicU32::new(0));
        let s = {
            let (b, done) = (b.clone(), done.clone());
            thread::spawn(move || {
                let r = b.handle().wait_timeout(LONG);
                done.store(1, Ordering::SeqCst);
                r
            })
        };
        let v = {
            let b = b.clone();
            victim(move || {
                autopsy(&b);
                match b.handle().wait_timeout(LONG) {
                    Ok(i) => ack(1 + i as u64),
                    Err(Error::BrokenBarrier { .. }) => ack(BROKEN),
                    Err(e) => panic!("{e}"),
                }
            })
        };
        let dead = v.join().is_none();
        // A named party's death the survivor must notice by itself.
        let named = finding() == Some(1);
        while dead && !named && done.load(Ordering::SeqCst) == 0 {
            let _ = b.handle().wait_timeout(SHORT);
            thread::yield_now();
        }
        let sr = s.join().unwrap();
        match (acks().first().copied(), &sr) {
            // Both released, with the other index.
            (Some(t), Ok(i)) if t != BROKEN => assert_eq!(t - 1 + *i as u64, 1),
            (Some(t), r) if t != BROKEN => panic!("victim released at {t}, survivor {r:?}"),
            // A live victim is never broken: nobody's timeout comes.
            (Some(_), r) => panic!("live victim broken (survivor {r:?})"),
            (None, Ok(_)) | (None, Err(Error::BrokenBarrier { .. })) => assert!(dead),
            (None, Err(e)) => panic!("{e}"),
        }
    });
}

#[test]
fn death_sweep() {
    death("barrier_wait", opts(false, None));
}

#[test]
fn death_sweep_unknown() {
    death("barrier_wait_unknown", opts(true, None));
}

/// The survivor arrives first; the victim arrives last with an action and
/// dies at each step of its trip. The survivor is released only if the
/// action ran, and is broken only if the victim died.
fn death_action(label: &str, o: Sweep) {
    sweep(label, o, || {
        let b = Arc::new(HeapBarrier::new(2));
        let ran = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicU32::new(0));
        let s = {
            let (b, done) = (b.clone(), done.clone());
            thread::spawn(move || {
                let r = b.handle().wait_timeout(LONG);
                done.store(1, Ordering::SeqCst);
                r
            })
        };
        while b.handle().n_waiting() == 0 {
            thread::yield_now();
        }
        let v = {
            let (b, ran) = (b.clone(), ran.clone());
            victim(move || {
                autopsy(&b);
                let r = ran.clone();
                let action = move || {
                    r.store(1, Ordering::SeqCst);
                };
                match b.handle().wait_with(Some(LONG), &action) {
                    Ok(i) => ack(1 + i as u64),
                    Err(e) => panic!("live tripper: {e}"),
                }
            })
        };
        let dead = v.join().is_none();
        // A named party's death the survivor must notice by itself.
        let named = finding() == Some(1);
        let r = ran.clone();
        let action = move || {
            r.store(1, Ordering::SeqCst);
        };
        while dead && !named && done.load(Ordering::SeqCst) == 0 {
            // Died before its arrival: stand in for it, with the action.
            let _ = b.handle().wait_with(Some(SHORT), &action);
            thread::yield_now();
        }
        match s.join().unwrap() {
            Ok(i) => {
                assert_eq!(i, 0);
                assert_eq!(
                    ran.load(Ordering::SeqCst),
                    1,
                    "released before the action ran"
                );
            }
            Err(Error::BrokenBarrier { .. }) => assert!(dead, "broken while the tripper lived"),
            Err(e) => panic!("{e}"),
        }
        if !dead {
            assert_eq!(acks(), vec![2]);
        }
    });
}

#[test]
fn death_sweep_action() {
    death_action("barrier_action", opts(false, None));
}

#[test]
fn death_sweep_action_unknown() {
    death_action("barrier_action_unknown", opts(true, None));
}
