//! Loom models of `RawEvent` (`src/raw/event.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_event` (or `ci/loom.sh`).
//!
//! With `timeouts_fire = false` a sleeper wakes only when someone wakes it,
//! so a lost wake-up is a loom deadlock; with `timeouts_fire = true` every
//! timed sleep times out at once.
//!
//! | model                              | checks                                                        |
//! |------------------------------------|---------------------------------------------------------------|
//! | `set_wakes_waiter`                 | `set` racing `wait` (at every point of it): the waiter returns, and sees what was written before `set` |
//! | `set_wakes_every_waiter`           | two waiters, one `set`: both return (`wake_all`)              |
//! | `set_then_clear_wakes_sleeper`     | a waiter asleep when `set` ran returns true even if `clear` follows at once |
//! | `set_before_wait_returns_at_once`  | `wait`/`wait_timeout(0)` after `set` return true without sleeping |
//! | `wait_timeout_times_out`           | nobody sets: `wait_timeout` returns false                     |
//! | `wait_timeout_racing_set`          | a timed wait racing `set`: true or false, and true means the data is visible |
//!
//! How each model can fail is written beside it; the mutants named there
//! were run by hand against a scratch copy of `src/` when these models were
//! written.
#![cfg(loom)]

use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shmkit::raw::RawEvent;
use shmkit::sync::loom_support;

/// Data published by the setter before `set` and read by a waiter after its
/// `wait` returned true: loom reports a causality violation unless `set`
/// (Release) happens-before the waiter's return (Acquire).
#[derive(Default)]
struct Data(UnsafeCell<u32>);

// SAFETY: written only before `set`, read only after a successful wait; the
// models check exactly that this ordering holds.
unsafe impl Sync for Data {}

impl Data {
    fn write(&self, v: u32) {
        // SAFETY: see the `Sync` impl.
        self.0.with_mut(|p| unsafe { *p = v });
    }
    fn read(&self) -> u32 {
        // SAFETY: see the `Sync` impl.
        self.0.with(|p| unsafe { *p })
    }
}

/// The setter writes data, then `set`s; the waiter `wait`s, then reads.
/// Loom runs the `set` at every point of the waiter's way into the futex,
/// including between its `WAITERS` CAS and its sleep. Fails on a lost
/// wake-up (deadlock; mutants: `set` skipping `wake_all`, or `wait` sleeping
/// without setting `WAITERS`) and on a `set` whose CAS is `Relaxed`
/// (causality violation on the data).
#[test]
fn set_wakes_waiter() {
    loom_support::model(false, || {
        let ev = Arc::new(RawEvent::new());
        let data = Arc::new(Data::default());
        let waiter = {
            let (ev, data) = (ev.clone(), data.clone());
            thread::spawn(move || {
                ev.wait();
                assert_eq!(data.read(), 42);
            })
        };
        data.write(42);
        ev.set();
        waiter.join().unwrap();
        assert!(ev.is_set());
    });
}

/// Two waiters, one `set`: both must return. Fails (deadlock) if `set`
/// woke only one sleeper (mutant: `wake_all` → `wake_one`).
#[test]
fn set_wakes_every_waiter() {
    loom_support::model(false, || {
        let ev = Arc::new(RawEvent::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let ev = ev.clone();
                thread::spawn(move || ev.wait())
            })
            .collect();
        ev.set();
        for w in waiters {
            w.join().unwrap();
        }
    });
}

/// How many times the setter yields before `set` so that, in every
/// execution loom explores, the waiter is already asleep: a yield hands the
/// CPU to the waiter, which then runs to its sleep unless loom preempts it,
/// and each preemption buys the setter only one more yield. So one yield
/// more than the preemption bound suffices. `None` when there is no bound
/// (then some execution would run `set` + `clear` before the waiter even
/// looked, and block it legitimately).
fn yields_until_waiter_sleeps() -> Option<usize> {
    let bound: usize = std::env::var("LOOM_MAX_PREEMPTIONS").ok()?.parse().ok()?;
    Some(bound + 1)
}

/// A waiter that is asleep when `set` runs must return true even though
/// `clear` follows at once (Python's `Event.wait` semantics; the generation
/// in the word carries the news). Both the untimed `wait` and a timed
/// `wait_timeout` (which under `timeouts_fire = false` sleeps like an
/// untimed one) are checked. Fails (deadlock) if `wait` looked only at the
/// flag (mutant: drop `|| w & GEN_MASK != gen` in `wait_until`), or if
/// `clear` reset the generation.
///
/// The waiter must already be asleep, or its `wait` might legitimately
/// start after `clear` and block: see [`yields_until_waiter_sleeps`]. (A
/// hook that tells how many model threads sleep on futexes would make this
/// exact and let `set` + `clear` land inside the waiter's way to sleep too.)
#[test]
fn set_then_clear_wakes_sleeper() {
    let Some(yields) = yields_until_waiter_sleeps() else {
        eprintln!("set_then_clear_wakes_sleeper: skipped, needs LOOM_MAX_PREEMPTIONS");
        return;
    };
    loom_support::model(false, move || {
        let ev = Arc::new(RawEvent::new());
        let untimed = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait())
        };
        for _ in 0..yields {
            thread::yield_now();
        }
        ev.set();
        ev.clear();
        untimed.join().unwrap();
        assert!(!ev.is_set());
    });
    loom_support::model(false, move || {
        let ev = Arc::new(RawEvent::new());
        let timed = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait_timeout(Duration::from_secs(1)))
        };
        for _ in 0..yields {
            thread::yield_now();
        }
        ev.set();
        ev.clear();
        assert!(
            timed.join().unwrap(),
            "woken by set, yet wait_timeout said false"
        );
    });
}

/// A waiter that sees the flag up (by polling `is_set`) and then waits must
/// return at once, and a zero timeout must say true: with nobody left to
/// wake it, sleeping would deadlock. The data written before `set` is
/// visible after `is_set` (Acquire). Fails if `wait` slept on a raised flag
/// (deadlock), or `is_set` loaded `Relaxed` (causality violation).
#[test]
fn set_before_wait_returns_at_once() {
    loom_support::model(false, || {
        let ev = Arc::new(RawEvent::new());
        let data = Arc::new(Data::default());
        let waiter = {
            let (ev, data) = (ev.clone(), data.clone());
            thread::spawn(move || {
                while !ev.is_set() {
                    thread::yield_now();
                }
                assert_eq!(data.read(), 7);
                ev.wait();
                assert!(ev.wait_timeout(Duration::ZERO));
                assert!(ev.wait_timeout(Duration::from_secs(1)));
            })
        };
        data.write(7);
        ev.set();
        waiter.join().unwrap();
    });
}

/// Nobody sets: with every timed sleep timing out, `wait_timeout` returns
/// false, for a zero and a non-zero timeout, and leaves the flag down.
/// Fails if a timed-out wait reported true (e.g. if it mistook the
/// `WAITERS` bit it set itself for news).
#[test]
fn wait_timeout_times_out() {
    loom_support::model(true, || {
        let ev = Arc::new(RawEvent::new());
        let waiter = {
            let ev = ev.clone();
            thread::spawn(move || {
                assert!(!ev.wait_timeout(Duration::ZERO));
                assert!(!ev.wait_timeout(Duration::from_millis(5)));
            })
        };
        assert!(!ev.wait_timeout(Duration::from_millis(5)));
        waiter.join().unwrap();
        assert!(!ev.is_set());
    });
}

/// A timed wait racing `set`, timeouts firing: the result may be either,
/// but true means the data written before `set` is visible, and false is
/// only possible if `set` had not yet run when the wait gave up (so a
/// later `wait_timeout` sees it). Fails on a `Relaxed` `set` or wait load
/// (causality violation), or a wait that returned true for nothing.
#[test]
fn wait_timeout_racing_set() {
    loom_support::model(true, || {
        let ev = Arc::new(RawEvent::new());
        let data = Arc::new(Data::default());
        let waiter = {
            let (ev, data) = (ev.clone(), data.clone());
            thread::spawn(move || {
                if ev.wait_timeout(Duration::from_millis(5)) {
                    assert_eq!(data.read(), 9);
                }
            })
        };
        data.write(9);
        ev.set();
        waiter.join().unwrap();
        assert!(ev.wait_timeout(Duration::from_millis(5)));
    });
}
