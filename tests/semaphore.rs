//! `Semaphore` and `BoundedSemaphore`: Python's semantics (SEMANTICS.md
//! SEM-01..08, after CPython's `_TestSemaphore.test_semaphore`,
//! `test_bounded_semaphore` and `test_timeout`) across threads and real
//! processes, a guarded permit of a SIGKILLed holder coming back to a
//! waiter, plain (kept) permits following Python's counting, and bad input.

#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, unique_name, watchdog, Cleanup, Words};
use shmkit::raw::{HOLDER_SLOTS, MAX_VALUE};
use shmkit::{BoundedSemaphore, Error, Event, Lock, Semaphore};

#[test]
fn child() {
    dispatch(&[
        ("hold_guarded", hold_guarded),
        ("hold_many", hold_many),
        ("wait_forever", wait_forever),
        ("hold_kept", hold_kept),
        ("release_and_die", release_and_die),
        ("count_inside", count_inside),
        ("over_release", over_release),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(60);
const REACH: Duration = Duration::from_secs(30);

/// args: semaphore, held event. Takes a guarded permit, says so, waits to
/// be killed.
fn hold_guarded(args: &[String]) {
    let s = Semaphore::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let g = s.acquire().unwrap();
    assert!(g.is_protected());
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// args: semaphore, held event, n. Takes `n` guarded permits, says so,
/// waits to be killed.
fn hold_many(args: &[String]) {
    let s = Semaphore::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let n: usize = args[2].parse().unwrap();
    let guards: Vec<_> = (0..n).map(|_| s.acquire().unwrap()).collect();
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(guards.len(), n);
    }
}

/// args: semaphore, started event. Says so, then waits for a permit (the
/// test kills it before or while it sleeps).
fn wait_forever(args: &[String]) {
    let s = Semaphore::open(&args[0]).unwrap();
    let started = Event::open(&args[1]).unwrap();
    started.set();
    let g = s.acquire().unwrap();
    g.keep();
}

/// args: semaphore, held event. Takes a permit and keeps it without a
/// guard (Python's `acquire()`), says so, waits to be killed.
fn hold_kept(args: &[String]) {
    let s = Semaphore::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    s.acquire().unwrap().keep();
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// args: semaphore, done event. Releases one permit it never took, says
/// so, waits to be killed.
fn release_and_die(args: &[String]) {
    let s = Semaphore::open(&args[0]).unwrap();
    let done = Event::open(&args[1]).unwrap();
    s.release(1).unwrap();
    done.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// args: semaphore, words (0: inside now, 1: most inside seen, 2: total),
/// rounds. Each round takes a permit and counts itself inside.
fn count_inside(args: &[String]) {
    let s = Semaphore::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let rounds: u64 = args[2].parse().unwrap();
    for _ in 0..rounds {
        let g = s.acquire().unwrap();
        let now = w.add(0, 1) + 1;
        let mut most = w.get(1);
        while now > most {
            w.set(1, now);
            most = w.get(1);
        }
        std::thread::yield_now();
        w.add(2, 1);
        w.add(0, u64::MAX); // minus one
        drop(g);
    }
}

/// args: bounded semaphore. A release past the bound fails in this process
/// too, and changes nothing.
fn over_release(args: &[String]) {
    let s = BoundedSemaphore::open(&args[0]).unwrap();
    let before = s.value();
    assert!(matches!(
        s.release(1),
        Err(Error::TooManyReleases { limit: 2, .. })
    ));
    assert_eq!(s.value(), before);
}

/// SEM-01, CPython's `test_semaphore`: Semaphore(2) counts down to 0,
/// `acquire(False)` fails, and releases count up past the initial value.
#[test]
fn test_semaphore() {
    let s = Semaphore::create_unique(2).unwrap();
    assert_eq!(s.value(), 2);
    s.acquire().unwrap().keep();
    assert_eq!(s.value(), 1);
    s.acquire().unwrap().keep();
    assert_eq!(s.value(), 0);
    assert!(s.try_acquire().unwrap().is_none());
    assert_eq!(s.value(), 0);
    for v in 1..=4 {
        s.release(1).unwrap();
        assert_eq!(s.value(), v);
    }
    s.release(3).unwrap();
    assert_eq!(s.value(), 7);
}

/// SEM-02, CPython's `test_bounded_semaphore`, enforced here (CPython
/// disables the check): the same sequence up to 2, then a release past it
/// is an error in every handle and every process, and changes nothing.
#[test]
fn test_bounded_semaphore() {
    let _w = watchdog(WATCHDOG);
    let s = BoundedSemaphore::create_unique(2).unwrap();
    assert_eq!(s.value(), 2);
    s.acquire().unwrap().keep();
    s.acquire().unwrap().keep();
    assert!(s.try_acquire().unwrap().is_none());
    s.release(1).unwrap();
    // Two at once would pass the bound: refused whole.
    assert!(matches!(
        s.release(2),
        Err(Error::TooManyReleases { limit: 2, .. })
    ));
    assert_eq!(s.value(), 1);
    s.release(1).unwrap();
    assert_eq!(s.value(), 2);
    assert!(matches!(
        s.release(1),
        Err(Error::TooManyReleases { limit: 2, .. })
    ));
    let other = BoundedSemaphore::open(s.name()).unwrap();
    assert!(matches!(
        other.release(1),
        Err(Error::TooManyReleases { .. })
    ));
    spawn("over_release", &[s.name()]).join();
    assert_eq!(s.value(), 2);
    // A guard's permit goes back within the bound.
    let g = s.acquire().unwrap();
    assert!(matches!(s.release(2), Err(Error::TooManyReleases { .. })));
    drop(g);
    assert_eq!(s.value(), 2);
    // A release (no holder needed, as in Python) fills the place a guard's
    // permit would go back to: that permit is dropped, never past the bound.
    let g = s.acquire().unwrap();
    s.release(1).unwrap();
    assert_eq!(s.value(), 2);
    drop(g);
    assert_eq!(s.value(), 2);
}

/// SEM-03, CPython's `test_timeout`: Semaphore(0) fails a non-blocking
/// acquire at once and a timed one after (never before) the timeout.
#[test]
fn test_timeout() {
    let s = Semaphore::create_unique(0).unwrap();
    assert!(s.try_acquire().unwrap().is_none());
    for ms in [0u64, 1, 100] {
        let t = Instant::now();
        let r = s.acquire_timeout(Duration::from_millis(ms));
        assert!(matches!(r, Err(Error::Timeout { .. })), "{ms} ms: {r:?}");
        assert!(t.elapsed() >= Duration::from_millis(ms), "{ms} ms: early");
    }
}

/// SEM-04: the value is visible through every handle.
#[test]
fn value_is_shared() {
    let s = Semaphore::create_unique(3).unwrap();
    let o = Semaphore::open(s.name()).unwrap();
    let g = s.acquire().unwrap();
    assert_eq!(o.value(), 2);
    assert_eq!(o.initial_value(), 3);
    assert_eq!(o.protected_holders(), 1);
    drop(g);
    assert_eq!(o.value(), 3);
    assert_eq!(o.protected_holders(), 0);
    let dbg = format!("{s:?}");
    assert!(dbg.contains("value: 3"), "{dbg}");
}

/// SEM-06: a kept name keeps its count; reopened, exactly its permits.
#[test]
fn a_named_semaphore_persists() {
    let name = unique_name("sem-persist");
    let _c = Cleanup(vec![name.clone()]);
    let s = Semaphore::create(&name, 3).unwrap();
    s.keep();
    drop(s);
    let s = Semaphore::open(&name).unwrap();
    for _ in 0..3 {
        s.try_acquire().unwrap().expect("a permit").keep();
    }
    assert!(s.try_acquire().unwrap().is_none());
    s.release(1).unwrap();
    drop(s);
    let s = Semaphore::open(&name).unwrap();
    s.try_acquire().unwrap().expect("one").keep();
    assert!(s.try_acquire().unwrap().is_none());
}

/// A waiter is woken by a release from another thread.
#[test]
fn a_release_wakes_a_waiter() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(0).unwrap();
    std::thread::scope(|sc| {
        let t = sc.spawn(|| {
            let g = s.acquire_timeout(REACH).unwrap();
            g.keep();
        });
        s.release(1).unwrap();
        t.join().unwrap();
    });
    assert_eq!(s.value(), 0);
}

/// SEM-05: never more holders than permits, across three processes and
/// two permits.
#[test]
fn three_processes_never_exceed_the_count() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(2).unwrap();
    let w = Words::create(3);
    let _c = Cleanup(vec![w.name().to_owned()]);
    let kids: Vec<_> = (0..3)
        .map(|_| spawn("count_inside", &[s.name(), w.name(), "2000"]))
        .collect();
    for k in kids {
        k.join();
    }
    assert_eq!(w.get(2), 6000);
    assert!(w.get(1) <= 2, "{} holders at once", w.get(1));
    assert_eq!(s.value(), 2);
    assert_eq!(s.protected_holders(), 0);
}

/// A guarded permit of a SIGKILLed process comes back: a waiter blocked on
/// it gets it (told `recovered`), and the count is whole again after.
#[test]
fn a_killed_guard_holders_permit_goes_to_a_waiter() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(1).unwrap();
    let held = Event::create_unique().unwrap();
    let kid = spawn("hold_guarded", &[s.name(), held.name()]);
    assert!(held.wait_timeout(REACH).unwrap());
    assert!(s.try_acquire().unwrap().is_none(), "a live holder robbed");
    assert_eq!(s.protected_holders(), 1);
    std::thread::scope(|sc| {
        let t = sc.spawn(|| {
            let g = s.acquire_timeout(REACH).unwrap();
            assert!(g.recovered());
            assert!(g.is_protected());
            assert_eq!(s.value(), 0);
        });
        // The waiter is asleep on the live holder's permit (or about to
        // be); the kill is what frees it.
        std::thread::sleep(Duration::from_millis(50)); // to measure, not to order
        let killed = Instant::now();
        kid.kill();
        t.join().unwrap();
        eprintln!("permit recovered {:?} after the kill", killed.elapsed());
    });
    assert_eq!(s.value(), 1);
    assert_eq!(s.protected_holders(), 0);
    let g = s.acquire().unwrap();
    assert!(!g.recovered(), "recovered twice");
}

/// A non-blocking acquire also takes a dead holder's permit.
#[test]
fn try_acquire_takes_a_dead_holders_permit() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(1).unwrap();
    let held = Event::create_unique().unwrap();
    let kid = spawn("hold_guarded", &[s.name(), held.name()]);
    assert!(held.wait_timeout(REACH).unwrap());
    kid.kill();
    let g = s.try_acquire().unwrap().expect("the dead holder's permit");
    assert!(g.recovered());
}

/// A dead holder's permit is counted as held until someone needs it (the
/// download_pool example once reported 2 of 3 free at its end, in CI);
/// `reclaim` gives it back at once, and never a live holder's.
#[test]
fn reclaim_gives_back_a_dead_holders_permit_without_an_acquirer() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(3).unwrap();
    let held = Event::create_unique().unwrap();
    let live_held = Event::create_unique().unwrap();
    let dead = spawn("hold_guarded", &[s.name(), held.name()]);
    let live = spawn("hold_guarded", &[s.name(), live_held.name()]);
    assert!(held.wait_timeout(REACH).unwrap());
    assert!(live_held.wait_timeout(REACH).unwrap());
    dead.kill();
    assert_eq!(
        s.value(),
        1,
        "a snapshot: the dead holder's permit is not back yet"
    );
    assert_eq!(s.reclaim(), 1);
    assert_eq!(s.value(), 2, "the live holder keeps its permit");
    assert_eq!(s.reclaim(), 0);
    drop(live);
}

/// SEM-08: a permit kept without a guard is Python's: its holder's death
/// does not give it back.
#[test]
fn a_killed_plain_holders_permit_stays_taken() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(1).unwrap();
    let held = Event::create_unique().unwrap();
    let kid = spawn("hold_kept", &[s.name(), held.name()]);
    assert!(held.wait_timeout(REACH).unwrap());
    assert_eq!(s.protected_holders(), 0);
    kid.kill();
    assert!(s.try_acquire().unwrap().is_none());
    assert!(matches!(
        s.acquire_timeout(Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(s.value(), 0);
    s.release(1).unwrap();
    assert_eq!(s.value(), 1);
}

/// A release by a process that then dies stays released (counting).
#[test]
fn a_release_outlives_its_process() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(0).unwrap();
    let done = Event::create_unique().unwrap();
    let kid = spawn("release_and_die", &[s.name(), done.name()]);
    assert!(done.wait_timeout(REACH).unwrap());
    kid.kill();
    assert_eq!(s.value(), 1);
    s.try_acquire()
        .unwrap()
        .expect("the released permit")
        .keep();
}

/// Bad input: too large a value, release(0), releases that would overflow.
#[test]
fn bad_input_is_an_error_and_changes_nothing() {
    assert!(matches!(
        Semaphore::create_unique(MAX_VALUE + 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BoundedSemaphore::create_unique(u32::MAX),
        Err(Error::InvalidArgument(_))
    ));
    let s = Semaphore::create_unique(MAX_VALUE - 1).unwrap();
    assert!(matches!(s.release(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        s.release(u32::MAX),
        Err(Error::TooManyReleases {
            limit: MAX_VALUE,
            ..
        })
    ));
    assert!(matches!(s.release(2), Err(Error::TooManyReleases { .. })));
    assert_eq!(s.value(), MAX_VALUE - 1);
    s.release(1).unwrap();
    assert_eq!(s.value(), MAX_VALUE);
    let z = Semaphore::create_unique(0).unwrap();
    assert_eq!(z.value(), 0);
    let b = BoundedSemaphore::create_unique(0).unwrap();
    assert!(matches!(
        b.release(1),
        Err(Error::TooManyReleases { limit: 0, .. })
    ));
}

/// Each type opens only its own kind.
#[test]
fn wrong_kinds_are_refused() {
    let s = Semaphore::create_unique(1).unwrap();
    let b = BoundedSemaphore::create_unique(1).unwrap();
    let l = Lock::create_unique().unwrap();
    match BoundedSemaphore::open(s.name()) {
        Err(Error::WrongKind { name, .. }) => assert_eq!(name, s.name()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Semaphore::open(b.name()),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        Semaphore::open(l.name()),
        Err(Error::WrongKind { .. })
    ));
}

/// A full table of holders: the next guard works but is not protected,
/// and every permit comes back when the guards drop.
#[test]
fn a_full_table_gives_unprotected_guards() {
    let n = HOLDER_SLOTS as u32 + 3;
    let s = Semaphore::create_unique(n).unwrap();
    let guards: Vec<_> = (0..n).map(|_| s.acquire().unwrap()).collect();
    let protected = guards.iter().filter(|g| g.is_protected()).count();
    assert_eq!(protected, HOLDER_SLOTS);
    assert_eq!(s.protected_holders(), HOLDER_SLOTS as u32);
    assert_eq!(s.value(), 0);
    drop(guards);
    assert_eq!(s.value(), n);
    assert_eq!(s.protected_holders(), 0);
}

/// A guard may be dropped on another thread (a semaphore has no owner).
#[test]
fn a_guard_can_be_dropped_on_another_thread() {
    let s = Semaphore::create_unique(1).unwrap();
    let g = s.acquire().unwrap();
    std::thread::scope(|sc| {
        sc.spawn(move || drop(g));
    });
    assert_eq!(s.value(), 1);
}

/// A waiter on a live holder waits its whole timeout, and is not handed
/// the live holder's permit.
#[test]
fn a_live_holder_is_never_robbed() {
    let s = Semaphore::create_unique(1).unwrap();
    let g = s.acquire().unwrap();
    let t = Instant::now();
    assert!(matches!(
        s.acquire_timeout(Duration::from_millis(60)),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(60));
    drop(g);
}

/// The count rewritten by another process (past the largest value): no
/// panic, no wrap; releases fail, acquires work.
#[test]
fn a_scribbled_count_is_an_error_not_a_wrap() {
    let s = Semaphore::create_unique(1).unwrap();
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", s.name()))
        .unwrap();
    // The segment: a 64-byte header, then wake, flags, limit, pad, state.
    let state_at = 64 + 16;
    f.write_all_at(&u64::from(u32::MAX).to_ne_bytes(), state_at)
        .unwrap();
    assert_eq!(s.value(), u32::MAX);
    assert!(matches!(s.release(1), Err(Error::TooManyReleases { .. })));
    let g = s.acquire().unwrap();
    drop(g);
    assert_eq!(s.value(), u32::MAX);
    // Every held bit set over free entries: acquirers skip them.
    f.write_all_at(&(u64::MAX >> 1).to_ne_bytes(), state_at)
        .unwrap();
    let g = s.try_acquire().unwrap().expect("count is huge");
    assert!(!g.is_protected());
    drop(g);
}

/// A table full of a dead process's guards: the next guarded acquire,
/// with permits still free, clears the table by taking a dead holder's
/// permit over (the count stays), so it is protected; all come back.
#[test]
fn a_table_full_of_dead_holders_is_recovered() {
    let _w = watchdog(WATCHDOG);
    let total = HOLDER_SLOTS as u32 + 2;
    let s = Semaphore::create_unique(total).unwrap();
    let held = Event::create_unique().unwrap();
    let n = (HOLDER_SLOTS + 1).to_string();
    let kid = spawn("hold_many", &[s.name(), held.name(), &n]);
    assert!(held.wait_timeout(REACH).unwrap());
    assert_eq!(s.value(), 1);
    assert_eq!(s.protected_holders(), HOLDER_SLOTS as u32);
    kid.kill();
    let g = s.acquire().unwrap();
    assert!(g.recovered(), "not taken over from the dead");
    assert!(g.is_protected());
    assert_eq!(s.value(), 1, "a takeover takes no free permit");
    drop(g);
    // The other dead holders' permits come back as waiters need them; the
    // unprotected one (the table was full) is lost, as in Python.
    let guards: Vec<_> = (0..total - 1)
        .map(|_| s.acquire_timeout(REACH).unwrap())
        .collect();
    assert_eq!(s.value(), 0);
    assert!(s.try_acquire().unwrap().is_none());
    drop(guards);
    assert_eq!(s.value(), total - 1);
}

/// The handles can be shared and sent between threads; a guard can be sent.
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Semaphore>();
    send_sync::<BoundedSemaphore>();
    send::<shmkit::SemaphoreGuard<'static>>();
    send_sync::<shmkit::raw::RawSemaphore>();
    send::<shmkit::raw::RawSemaphoreGuard<'static>>();
}

/// A waiter killed in `acquire` corrupts nothing: a later release counts,
/// and wakes or serves the live ones (SEMANTICS.md B-SEM).
#[test]
fn a_killed_waiter_leaves_the_count_alone() {
    let _w = watchdog(WATCHDOG);
    let s = Semaphore::create_unique(0).unwrap();
    let started = Event::create_unique().unwrap();
    let kid = spawn("wait_forever", &[s.name(), started.name()]);
    assert!(started.wait_timeout(REACH).unwrap());
    kid.kill();
    std::thread::scope(|sc| {
        let t = sc.spawn(|| s.acquire_timeout(REACH).unwrap().keep());
        s.release(1).unwrap();
        t.join().unwrap();
    });
    assert_eq!(s.value(), 0);
    s.release(2).unwrap();
    assert_eq!(s.value(), 2);
}
