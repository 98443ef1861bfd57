//! `Condition`: Python's semantics (SEMANTICS.md COND-01..07, after
//! CPython's `_TestCondition`: test_notify, test_notify_all, test_notify_n,
//! test_timeout, test_waitfor, test_waitfor_timeout) with real child
//! processes, and the death cases: a waiter SIGKILLed while waiting neither
//! blocks `notify` nor swallows a notification meant for a live waiter;
//! a lock holder SIGKILLed after notifying is reported to the woken waiter.
//!
//! "Waiting" is read from the condition itself (`waiting()`, the number of
//! occupied waiter slots), so no test sleeps to let a child get there.

#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, unique_name, wait_for, watchdog, Cleanup, Proc};
use shmkit::{Condition, Error, Event, Lock, RLock, Value};

#[test]
fn child() {
    dispatch(&[
        ("waiter", waiter),
        ("incrementer", incrementer),
        ("notify_and_hold", notify_and_hold),
        ("notifier", notifier),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(60);
const REACH: Duration = Duration::from_secs(30);

/// args: condition, woken counter, timed-out counter, timeout in ms ("-":
/// none). Waits once; counts how it ended.
fn waiter(args: &[String]) {
    let c = Condition::open(&args[0]).unwrap();
    let woken = Value::<u64>::open(&args[1]).unwrap();
    let timed = Value::<u64>::open(&args[2]).unwrap();
    wait_once(&c, &woken, &timed, &args[3]);
}

fn wait_once(c: &Condition, woken: &Value<u64>, timed: &Value<u64>, timeout: &str) {
    let mut g = c.lock().unwrap();
    let w = match timeout {
        "-" => g.wait().unwrap(),
        ms => g
            .wait_timeout(Duration::from_millis(ms.parse().unwrap()))
            .unwrap(),
    };
    if w.timed_out {
        timed.fetch_add(1);
    } else {
        woken.fetch_add(1);
    }
    drop(g);
}

/// args: condition, counter. Increments the counter 4 times under the lock,
/// notifying each time, as CPython's test_waitfor child does.
fn incrementer(args: &[String]) {
    let c = Condition::open(&args[0]).unwrap();
    let v = Value::<u64>::open(&args[1]).unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(5));
        let g = c.lock().unwrap();
        v.fetch_add(1);
        g.notify(1).unwrap();
    }
}

/// args: condition, event. Takes the lock, notifies one waiter, says so,
/// and keeps the lock until it is killed.
fn notify_and_hold(args: &[String]) {
    let c = Condition::open(&args[0]).unwrap();
    let ev = Event::open(&args[1]).unwrap();
    let g = c.lock().unwrap();
    assert_eq!(g.notify(1).unwrap(), 1);
    ev.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// args: condition. Notifies one waiter once one waits.
fn notifier(args: &[String]) {
    let c = Condition::open(&args[0]).unwrap();
    assert!(wait_for(REACH, || c.waiting() > 0));
    let g = c.lock().unwrap();
    assert_eq!(g.notify(1).unwrap(), 1);
}

/// A condition and two counters, named and cleaned up.
struct Fixture {
    cond: Condition,
    woken: Value<u64>,
    timed: Value<u64>,
    _clean: Cleanup,
}

fn fixture() -> Fixture {
    let names = [
        unique_name("cond"),
        unique_name("woken"),
        unique_name("timed"),
    ];
    let clean = Cleanup(names.to_vec());
    Fixture {
        cond: Condition::create(&names[0]).unwrap(),
        woken: Value::create(&names[1], 0).unwrap(),
        timed: Value::create(&names[2], 0).unwrap(),
        _clean: clean,
    }
}

impl Fixture {
    fn spawn_waiter(&self, timeout: &str) -> Proc {
        spawn(
            "waiter",
            &[
                self.cond.name(),
                self.woken.name(),
                self.timed.name(),
                timeout,
            ],
        )
    }

    fn thread_waiter(&self, timeout: &'static str) -> std::thread::JoinHandle<()> {
        let c = Condition::open(self.cond.name()).unwrap();
        let woken = Value::<u64>::open(self.woken.name()).unwrap();
        let timed = Value::<u64>::open(self.timed.name()).unwrap();
        std::thread::spawn(move || wait_once(&c, &woken, &timed, timeout))
    }

    fn wait_waiting(&self, n: usize) {
        assert!(
            wait_for(REACH, || self.cond.waiting() == n),
            "{} waiting, not {n}",
            self.cond.waiting()
        );
    }

    fn wait_woken(&self, n: u64) {
        assert!(
            wait_for(REACH, || self.woken.load() == n),
            "{} woken, not {n}",
            self.woken.load()
        );
    }

    fn notify(&self, n: usize) -> usize {
        self.cond.lock().unwrap().notify(n).unwrap()
    }
}

/// COND-01 (test_notify): one process and one thread wait; none wakes by
/// itself; each `notify()` wakes exactly one.
#[test]
fn notify_wakes_one_at_a_time() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let p = f.spawn_waiter("-");
    let t = f.thread_waiter("-");
    f.wait_waiting(2);
    assert_eq!(f.woken.load(), 0);
    assert_eq!(f.notify(1), 1);
    f.wait_woken(1);
    assert_eq!(f.cond.waiting(), 1, "one notify released two");
    assert_eq!(f.notify(1), 1);
    f.wait_woken(2);
    p.join();
    t.join().unwrap();
    assert_eq!(f.timed.load(), 0);
}

/// COND-02 (test_notify_all): six timed waiters (3 processes, 3 threads)
/// all time out and leave no slot; six untimed ones wake only on
/// `notify_all`, all of them.
#[test]
fn notify_all_wakes_everyone_and_timeouts_leave_nothing() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let mut procs: Vec<Proc> = (0..3).map(|_| f.spawn_waiter("100")).collect();
    let mut threads: Vec<_> = (0..3).map(|_| f.thread_waiter("100")).collect();
    for p in procs.drain(..) {
        p.join();
    }
    for t in threads.drain(..) {
        t.join().unwrap();
    }
    assert_eq!((f.woken.load(), f.timed.load()), (0, 6));
    assert_eq!(f.cond.waiting(), 0);
    procs = (0..3).map(|_| f.spawn_waiter("-")).collect();
    threads = (0..3).map(|_| f.thread_waiter("-")).collect();
    f.wait_waiting(6);
    assert_eq!(f.woken.load(), 0);
    assert_eq!(f.cond.lock().unwrap().notify_all().unwrap(), 6);
    f.wait_woken(6);
    for p in procs {
        p.join();
    }
    for t in threads {
        t.join().unwrap();
    }
}

/// COND-03 (test_notify_n): `notify(2)` wakes exactly 2 of 6, `notify(4)`
/// the other 4, and `notify(3)` with nobody waiting stores nothing.
#[test]
fn notify_n_wakes_exactly_n_and_stores_nothing() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let procs: Vec<Proc> = (0..3).map(|_| f.spawn_waiter("-")).collect();
    let threads: Vec<_> = (0..3).map(|_| f.thread_waiter("-")).collect();
    f.wait_waiting(6);
    assert_eq!(f.notify(2), 2);
    f.wait_woken(2);
    assert_eq!(f.cond.waiting(), 4);
    assert_eq!(f.notify(4), 4);
    f.wait_woken(6);
    for p in procs {
        p.join();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(f.notify(3), 0);
    // A later waiter is not woken by what was not stored.
    let g = f.cond.lock().unwrap();
    drop(g);
    let mut g = f.cond.lock().unwrap();
    assert!(g.wait_timeout(Duration::from_millis(20)).unwrap().timed_out);
}

/// COND-04 (test_timeout, test_wait_result): a timed wait with no notifier
/// returns timed out, never early; one that another process notifies
/// returns notified.
#[test]
fn wait_timeout_never_returns_early_and_a_notify_ends_it() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let mut g = f.cond.lock().unwrap();
    assert!(g.wait_timeout(Duration::ZERO).unwrap().timed_out);
    let t0 = Instant::now();
    assert!(
        g.wait_timeout(Duration::from_millis(100))
            .unwrap()
            .timed_out
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
    let n = spawn("notifier", &[f.cond.name()]);
    let w = g.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(!w.timed_out && !w.owner_died);
    drop(g);
    n.join();
}

/// COND-05 (test_waitfor, test_waitfor_timeout): `wait_for` returns once
/// another process made the predicate true; a false one times out, never
/// early.
#[test]
fn wait_for_sees_the_predicate_and_times_out() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let mut g = f.cond.lock().unwrap();
    let p = spawn("incrementer", &[f.cond.name(), f.woken.name()]);
    let w = g.wait_for(|| f.woken.load() == 4).unwrap();
    assert!(!w.timed_out);
    assert_eq!(f.woken.load(), 4);
    let t0 = Instant::now();
    let w = g
        .wait_for_timeout(|| f.woken.load() == 5, Duration::from_millis(100))
        .unwrap();
    assert!(w.timed_out);
    assert!(t0.elapsed() >= Duration::from_millis(100));
    drop(g);
    p.join();
}

/// COND-06: wait and notify without the lock are `NotOwner` (also while
/// another thread holds it); an RLock's level is restored after a wait.
#[test]
fn wait_and_notify_need_the_lock_and_restore_the_level() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    assert!(matches!(f.cond.wait(), Err(Error::NotOwner { .. })));
    assert!(matches!(
        f.cond.wait_timeout(Duration::ZERO),
        Err(Error::NotOwner { .. })
    ));
    assert!(matches!(
        f.cond.wait_for(|| false),
        Err(Error::NotOwner { .. })
    ));
    assert!(matches!(f.cond.notify(1), Err(Error::NotOwner { .. })));
    assert!(matches!(f.cond.notify_all(), Err(Error::NotOwner { .. })));
    let g = f.cond.lock().unwrap();
    let other = Condition::open(f.cond.name()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(other.notify(1), Err(Error::NotOwner { .. })));
            assert!(matches!(other.wait(), Err(Error::NotOwner { .. })));
        });
    });
    drop(g);
    for _ in 0..3 {
        assert!(!f.cond.acquire(None).unwrap());
    }
    assert!(
        f.cond
            .wait_timeout(Duration::from_millis(1))
            .unwrap()
            .timed_out
    );
    // Three levels again: three releases, and the fourth is refused.
    for _ in 0..3 {
        f.cond.release().unwrap();
    }
    assert!(matches!(f.cond.release(), Err(Error::NotOwner { .. })));
    assert!(f.cond.lock_timeout(Duration::ZERO).is_ok());
}

/// COND-07: a condition over a given Lock and one over a given RLock;
/// another process opens them by the condition's name alone.
#[test]
fn a_condition_over_a_given_lock_works_across_processes() {
    let _w = watchdog(WATCHDOG);
    let lname = unique_name("lock");
    let rname = unique_name("rlock");
    let c1 = unique_name("cond");
    let c2 = unique_name("cond");
    let _clean = Cleanup(vec![lname.clone(), rname.clone(), c1.clone(), c2.clone()]);
    let lock = Lock::create(&lname).unwrap();
    let over_lock = Condition::create_over(Some(&c1), lock).unwrap();
    let rlock = RLock::create(&rname).unwrap();
    let over_rlock = Condition::create_over(Some(&c2), rlock).unwrap();
    for c in [&over_lock, &over_rlock] {
        let mut g = c.lock().unwrap();
        let n = spawn("notifier", &[c.name()]);
        assert!(!g.wait().unwrap().timed_out);
        drop(g);
        n.join();
    }
    // A condition over a plain lock of its own, opened by another process.
    let own = Condition::create_plain(None).unwrap();
    let mut g = own.lock().unwrap();
    let n = spawn("notifier", &[own.name()]);
    assert!(!g.wait().unwrap().timed_out);
    assert!(matches!(own.lock(), Err(Error::Deadlock { .. })));
    drop(g);
    n.join();
    // The plain lock is not recursive: it is the given Lock itself.
    let held = Lock::open(&lname).unwrap();
    let g = held.lock().unwrap();
    assert!(over_lock.lock_timeout(Duration::from_millis(1)).is_err());
    // Held through another handle of the same lock: wait and notify work.
    assert!(over_lock.wait_timeout(Duration::ZERO).unwrap().timed_out);
    assert_eq!(over_lock.notify(1).unwrap(), 0);
    drop(g);
}

/// COND-11, P8: a waiter SIGKILLed while it waits (the oldest, so the one
/// a notify would pick first) neither blocks `notify` nor takes the
/// notification: the live waiter behind it is woken.
#[test]
fn a_killed_waiter_neither_blocks_notify_nor_swallows_it() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let doomed = f.spawn_waiter("-");
    f.wait_waiting(1);
    doomed.kill();
    let live = f.spawn_waiter("-");
    f.wait_waiting(2); // the dead one's slot and the live one
    assert_eq!(f.notify(1), 1);
    f.wait_woken(1);
    live.join();
    // The dead waiter's slot was freed by that notify: nobody waits.
    assert_eq!(f.cond.waiting(), 0);
    assert_eq!(f.notify(usize::MAX), 0);
}

/// The same with `notify_all` and the dead waiter killed while a live one
/// already waits: only the live one is counted and woken.
#[test]
fn notify_all_skips_a_killed_waiter() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let live = f.thread_waiter("-");
    f.wait_waiting(1);
    let doomed = f.spawn_waiter("-");
    f.wait_waiting(2);
    doomed.kill();
    assert_eq!(f.cond.lock().unwrap().notify_all().unwrap(), 1);
    f.wait_woken(1);
    live.join().unwrap();
}

/// A notifier SIGKILLed while it holds the lock, after notifying: the
/// woken waiter takes the lock over and is told, and the condition works
/// on (the told guard drops, clearing the mark).
#[test]
fn a_waiter_woken_under_a_killed_holder_is_told() {
    let _w = watchdog(WATCHDOG);
    let f = fixture();
    let ev_name = unique_name("ev");
    let _c = Cleanup(vec![ev_name.clone()]);
    let ev = Event::create(&ev_name).unwrap();
    let c = Condition::open(f.cond.name()).unwrap();
    let t = std::thread::spawn(move || {
        let mut g = c.lock().unwrap();
        let w = g.wait().unwrap();
        (w, g.owner_died())
    });
    f.wait_waiting(1);
    let holder = spawn("notify_and_hold", &[f.cond.name(), &ev_name]);
    assert!(
        ev.wait_timeout(REACH).unwrap(),
        "the notifier never notified"
    );
    holder.kill();
    let (w, told) = t.join().unwrap();
    assert!(!w.timed_out);
    assert!(w.owner_died && told, "the takeover was not reported: {w:?}");
    let g = f.cond.lock().unwrap();
    assert!(!g.owner_died(), "the told guard's drop clears the mark");
    drop(g);
}
