//! `RLock`: Python's `RLock` semantics (SEMANTICS.md RLOCK-01..08, after
//! CPython's `_TestLock.test_rlock`), across threads and real processes,
//! and a holder SIGKILLed at any level taken over and reported.

#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, watchdog};
use shmkit::{Error, Event, RLock, Value, WaitSet};

#[test]
fn child() {
    dispatch(&[
        ("hold_at_level", hold_at_level),
        ("count_under_rlock", count_under_rlock),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(60);
const REACH: Duration = Duration::from_secs(30);

/// args: rlock, held event, level. Takes the lock `level` times, says so,
/// and waits to be killed.
fn hold_at_level(args: &[String]) {
    let l = RLock::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let level: u32 = args[2].parse().unwrap();
    for _ in 0..level {
        assert!(!l.acquire(None).unwrap());
    }
    assert_eq!(l.level(), level);
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// args: rlock, counter, rounds. Increments the counter `rounds` times,
/// each under two levels of the lock, non-atomically.
fn count_under_rlock(args: &[String]) {
    let l = RLock::open(&args[0]).unwrap();
    let c = Value::<u64>::open(&args[1]).unwrap();
    let rounds: u64 = args[2].parse().unwrap();
    for _ in 0..rounds {
        let _a = l.lock().unwrap();
        let _b = l.lock().unwrap();
        let v = c.load();
        std::hint::black_box(());
        c.store(v + 1);
    }
}

/// RLOCK-01/02: three acquisitions, three releases; a fourth release is an
/// error; `is_locked` stays true until the last release.
#[test]
fn acquire_three_times_release_three_times_then_not_owner() {
    let l = RLock::create_unique().unwrap();
    for i in 1..=3 {
        assert!(!l.acquire(None).unwrap());
        assert_eq!(l.level(), i);
    }
    for i in (0..3).rev() {
        assert!(l.is_locked());
        l.release().unwrap();
        assert_eq!(l.level(), i);
    }
    assert!(!l.is_locked());
    assert!(matches!(l.release(), Err(Error::NotOwner { .. })));
    assert!(!l.is_locked());
    // Guards, dropped in any order.
    let a = l.lock().unwrap();
    let b = l.try_lock().unwrap().expect("ours");
    let c = l.lock_timeout(Duration::ZERO).unwrap();
    drop(a);
    drop(c);
    assert_eq!(l.level(), 1);
    drop(b);
    assert!(!l.is_locked());
}

/// RLOCK-03/04: a thread that does not own it cannot release it (nothing
/// changes) and does not get it without waiting; the owner's level stays.
#[test]
fn a_non_owner_neither_releases_nor_takes_it() {
    let _w = watchdog(WATCHDOG);
    let l = RLock::create_unique().unwrap();
    let other = RLock::open(l.name()).unwrap();
    let g1 = l.lock().unwrap();
    let g2 = l.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(l.release(), Err(Error::NotOwner { .. })));
            assert!(matches!(other.release(), Err(Error::NotOwner { .. })));
            assert!(other.try_lock().unwrap().is_none());
            assert!(matches!(
                other.lock_timeout(Duration::from_millis(20)),
                Err(Error::Timeout { .. })
            ));
            assert_eq!(other.level(), 0);
        });
    });
    // Another handle in the same thread names the same owner.
    assert_eq!(other.level(), 2);
    drop(g2);
    assert_eq!(l.level(), 1);
    drop(g1);
    assert!(!l.is_locked());
}

/// A timed acquisition by another thread never returns early.
#[test]
fn lock_timeout_never_returns_early() {
    let _w = watchdog(WATCHDOG);
    let l = RLock::create_unique().unwrap();
    let _g = l.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let t0 = Instant::now();
            assert!(matches!(
                l.lock_timeout(Duration::from_millis(50)),
                Err(Error::Timeout { .. })
            ));
            assert!(t0.elapsed() >= Duration::from_millis(50));
        });
    });
}

/// Mutual exclusion across threads, each taking two levels.
#[test]
fn four_threads_taking_two_levels_exclude_each_other() {
    let _w = watchdog(WATCHDOG);
    let l = RLock::create_unique().unwrap();
    // Held while inside: a second owner's `try_lock` of it fails.
    let inside = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..2_000 {
                    let _a = l.lock().unwrap();
                    let _b = l.lock().unwrap();
                    let _in = inside.try_lock().expect("two owners at once");
                }
            });
        }
    });
    assert!(!l.is_locked());
}

/// Mutual exclusion across processes: 3 × 2,000 unlocked read-then-write
/// increments under the lock sum exactly.
#[test]
fn three_processes_exclude_each_other() {
    let _w = watchdog(WATCHDOG);
    let l = RLock::create_unique().unwrap();
    let c = Value::<u64>::create_unique(0).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| spawn("count_under_rlock", &[l.name(), c.name(), "2000"]))
        .collect();
    for k in kids {
        k.join();
    }
    assert_eq!(c.load(), 6_000);
}

/// A holder SIGKILLed at level 1, 2 or 3 is taken over by the next locker,
/// which is told, starts at level 1, and leaves the lock free after one
/// release; the next one is not told again.
#[test]
fn a_holder_killed_at_any_level_is_taken_over_and_reported() {
    let _w = watchdog(WATCHDOG);
    let l = RLock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    for level in 1..=3u32 {
        held.clear();
        let kid = spawn(
            "hold_at_level",
            &[l.name(), held.name(), &level.to_string()],
        );
        assert!(held.wait_timeout(REACH).unwrap());
        assert!(l.try_lock().unwrap().is_none(), "a live holder was robbed");
        assert!(matches!(l.release(), Err(Error::NotOwner { .. })));
        kid.kill();
        let g = l.lock_timeout(REACH).unwrap();
        assert!(g.owner_died(), "level {level}: not told");
        assert_eq!(l.level(), 1);
        let inner = l.lock().unwrap();
        assert!(!inner.owner_died(), "a nested acquisition is never told");
        drop(inner);
        drop(g);
        assert!(!l.is_locked(), "level {level}: still held");
        assert!(!l.lock().unwrap().owner_died(), "told twice");
    }
}

/// A wait set sees an RLock free once its owner lets go (or dies).
#[test]
fn a_wait_set_sees_the_lock_free() {
    let _w = watchdog(WATCHDOG);
    let l = RLock::create_unique().unwrap();
    let g = l.lock().unwrap();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let name = l.name().to_owned();
        let t = s.spawn(move || {
            let other = RLock::open(&name).unwrap();
            let mut ws = WaitSet::new();
            let k = ws.add(&other).unwrap();
            assert!(ws.poll().unwrap().is_empty(), "ready while held");
            tx.send(()).unwrap();
            ws.wait_timeout(REACH).unwrap().contains(k)
        });
        rx.recv().unwrap();
        drop(g);
        assert!(t.join().unwrap());
    });
}

/// The lock word rewritten by another process while we hold the lock (here:
/// cleared, as if it were free): the owner's release says `NotOwner` and
/// changes nothing, never a panic; the lock works on.
#[test]
fn a_scribbled_lock_word_is_not_owner_not_a_panic() {
    let l = RLock::create_unique().unwrap();
    let g = l.lock().unwrap();
    let inner = l.lock().unwrap();
    // The segment: a 64-byte header, then the lock's 64-bit state word.
    // Written through the file, as another process could.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", l.name()))
        .unwrap();
    let state_at = 64 + 8;
    f.write_all_at(&0u64.to_ne_bytes(), state_at).unwrap();
    assert!(!l.is_locked());
    assert_eq!(l.level(), 0, "the lock no longer names us");
    assert!(matches!(l.release(), Err(Error::NotOwner { .. })));
    drop(inner); // NotOwner, ignored
    drop(g);
    let again = l.lock().unwrap();
    assert_eq!(l.level(), 1);
    drop(again);
    assert!(!l.is_locked());
}
