//! `Lock` across real processes and threads: mutual exclusion, a holder
//! SIGKILLed 200 times (`SHMKIT_TORTURE_TRIALS`; and at random moments), timeouts that never come
//! early, a slow live holder that is never robbed, deadlock detection, a
//! thread that exits holding the lock, and fairness between two processes.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{dispatch, spawn, wait_for, watchdog};
use shmkit::{Array, Error, Event, Lock, Value};

#[test]
fn child() {
    dispatch(&[
        ("hold_until_released", hold_until_released),
        ("hold_and_hang", hold_and_hang),
        ("hold_slowly", hold_slowly),
        ("load_swap_increments", load_swap_increments),
        ("two_fields_forever", two_fields_forever),
        ("hammer", hammer),
        ("take_and_exit", take_and_exit),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(60);
/// How long a parent waits for a child to reach a point before failing.
const REACH: Duration = Duration::from_secs(30);

/// The calling thread's kernel id.
fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Whether thread `tid` of this process is asleep (blocked in a syscall).
fn thread_asleep(tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 1..].trim_start().chars().next())
        == Some('S')
}

/// A small xorshift generator; the seed comes from `SHMKIT_TEST_SEED` or the
/// clock, and is printed so that a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn from_env_or_time(test: &str) -> XorShift {
        let seed = std::env::var("SHMKIT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("{test}: seed {seed} (replay with SHMKIT_TEST_SEED={seed})");
        XorShift(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------- roles

/// args: lock, held event, release event. Holds the lock from `held` until
/// `release`.
fn hold_until_released(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let release = Event::open(&args[2]).unwrap();
    let g = lock.lock().unwrap();
    assert!(!g.owner_died());
    held.set();
    release.wait().unwrap();
    drop(g);
}

/// args: lock, held event. Takes the lock, says so, and waits to be killed.
fn hold_and_hang(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let _g = lock.lock().unwrap();
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// args: lock, held event. Takes the lock and exits normally without
/// unlocking (the guard is leaked).
fn take_and_exit(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    std::mem::forget(lock.lock().unwrap());
    held.set();
}

/// args: lock, held event, released flag, hold time in ms. Holds the lock
/// that long (alive, but not releasing), raises the flag, then unlocks.
fn hold_slowly(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let released = Value::<u32>::open(&args[2]).unwrap();
    let ms: u64 = args[3].parse().unwrap();
    let g = lock.lock().unwrap();
    held.set();
    std::thread::sleep(Duration::from_millis(ms));
    released.store(1);
    drop(g);
}

/// args: lock, counter, go event, increments. Increments with a plain load
/// and a separate store, which only the lock makes atomic.
fn load_swap_increments(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let v = Value::<u64>::open(&args[1]).unwrap();
    let go = Event::open(&args[2]).unwrap();
    let n: u64 = args[3].parse().unwrap();
    go.wait().unwrap();
    for _ in 0..n {
        let g = lock.lock().unwrap();
        assert!(!g.owner_died());
        let x = v.load();
        std::hint::spin_loop();
        v.swap(x + 1);
    }
}

/// args: lock, field a, field b, violations, repairs. Under the lock,
/// increments `a`, then (a little later) `b`, forever: `a == b` whenever the
/// lock is free, and a holder killed in between leaves `a == b + 1`. A
/// locker told `owner_died` repairs; one not told checks.
fn two_fields_forever(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let a = Value::<u64>::open(&args[1]).unwrap();
    let b = Value::<u64>::open(&args[2]).unwrap();
    let violations = Value::<u64>::open(&args[3]).unwrap();
    let repairs = Value::<u64>::open(&args[4]).unwrap();
    loop {
        let g = lock.lock().unwrap();
        let x = a.load();
        let mut y = b.load();
        if g.owner_died() {
            if x != y && x != y + 1 {
                violations.fetch_add(1);
            }
            repairs.fetch_add(1);
            b.swap(x);
            y = x;
        } else if x != y {
            violations.fetch_add(1);
        }
        a.swap(x + 1);
        // Widen the window in which a kill leaves the fields apart.
        for i in 0..64u32 {
            std::hint::black_box(i);
        }
        b.swap(y + 1);
        drop(g);
    }
}

/// args: lock, counts (Array<u64> of 2), go event, my index, target total.
/// Takes the lock in a tight loop and counts its own acquisitions until the
/// two counts add up to the target.
fn hammer(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let counts = Array::<u64>::open(&args[1]).unwrap();
    let go = Event::open(&args[2]).unwrap();
    let me: usize = args[3].parse().unwrap();
    let target: u64 = args[4].parse().unwrap();
    go.wait().unwrap();
    loop {
        let g = lock.lock().unwrap();
        assert!(!g.owner_died());
        let mut c = counts.lock().unwrap();
        if c[0] + c[1] >= target {
            break;
        }
        c[me] += 1;
    }
}

// ---------------------------------------------------------------- exclusion

#[test]
fn three_processes_exclude_each_other() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let v = Value::<u64>::create_unique(0).unwrap();
    let go = Event::create_unique().unwrap();
    let n = 30_000u64;
    let kids: Vec<_> = (0..3)
        .map(|_| {
            spawn(
                "load_swap_increments",
                &[lock.name(), v.name(), go.name(), &n.to_string()],
            )
        })
        .collect();
    go.set();
    for k in kids {
        k.join();
    }
    assert_eq!(v.load(), 3 * n);
    assert!(!lock.is_locked());
}

#[test]
fn four_threads_exclude_each_other() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let v = Value::<u64>::create_unique(0).unwrap();
    let n = 20_000u64;
    std::thread::scope(|s| {
        for t in 0..4 {
            // Half the threads share the creating handles, half open their own.
            let (lock, v) = (&lock, &v);
            s.spawn(move || {
                let own = (t % 2 == 1).then(|| {
                    (
                        Lock::open(lock.name()).unwrap(),
                        Value::<u64>::open(v.name()).unwrap(),
                    )
                });
                let (lock, v) = own.as_ref().map_or((lock, v), |(l, v)| (l, v));
                for _ in 0..n {
                    let g = lock.lock().unwrap();
                    assert!(!g.owner_died());
                    let x = v.load();
                    std::hint::spin_loop();
                    v.swap(x + 1);
                }
            });
        }
    });
    assert_eq!(v.load(), 4 * n);
}

// ---------------------------------------------------------------- held elsewhere

#[test]
fn try_lock_and_lock_timeout_fail_while_another_process_holds_it() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let release = Event::create_unique().unwrap();
    let kid = spawn(
        "hold_until_released",
        &[lock.name(), held.name(), release.name()],
    );
    assert!(
        held.wait_timeout(REACH).unwrap(),
        "child never took the lock"
    );
    assert!(lock.is_locked());
    assert!(lock.try_lock().unwrap().is_none());
    // Longer than several liveness checks: the live holder is seen alive.
    for ms in [0, 10, 150] {
        let d = Duration::from_millis(ms);
        let t = Instant::now();
        match lock.lock_timeout(d) {
            Err(Error::Timeout { .. }) => {}
            other => panic!("lock_timeout({d:?}) on a held lock: {other:?}"),
        }
        let took = t.elapsed();
        assert!(took >= d, "lock_timeout({d:?}) gave up after {took:?}");
    }
    assert!(lock.try_lock().unwrap().is_none());
    assert!(lock.is_locked());
    release.set();
    let g = lock.lock_timeout(REACH).unwrap();
    assert!(!g.owner_died(), "the holder released it");
    drop(g);
    kid.join();
    assert!(!lock.is_locked());
}

#[test]
fn a_live_slow_holder_is_never_robbed() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let released = Value::<u32>::create_unique(0).unwrap();
    let kid = spawn(
        "hold_slowly",
        &[lock.name(), held.name(), released.name(), "300"],
    );
    assert!(
        held.wait_timeout(REACH).unwrap(),
        "child never took the lock"
    );
    // 300 ms is many liveness intervals: this waiter checks the holder again
    // and again, and must find it alive every time.
    let g = lock.lock().unwrap();
    assert_eq!(
        released.load(),
        1,
        "got the lock before the holder released it"
    );
    assert!(!g.owner_died(), "the holder released it; it did not die");
    drop(g);
    kid.join();
}

// ---------------------------------------------------------------- death

/// Trials of the SIGKILLed-holder torture unless `SHMKIT_TORTURE_TRIALS`
/// says otherwise.
const TRIALS: u64 = 200;

/// A holder is SIGKILLed `SHMKIT_TORTURE_TRIALS` times (200 by default);
/// every lock must be recovered, with the "previous owner died" notice
/// given exactly once.
#[test]
fn holder_sigkilled_200_times_is_taken_over_and_the_lock_keeps_working() {
    let trials = common::count_from_env("SHMKIT_TORTURE_TRIALS", TRIALS);
    // About 40 ms a trial; the watchdog grows with the count.
    let _w = watchdog(WATCHDOG + Duration::from_millis(100) * trials as u32);
    let lock = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let (mut kills, mut recovered, mut told) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    for i in 0..trials {
        held.clear();
        let kid = spawn("hold_and_hang", &[lock.name(), held.name()]);
        assert!(
            held.wait_timeout(REACH).unwrap(),
            "trial {i}: child never took the lock"
        );
        assert!(lock.is_locked(), "trial {i}");
        assert!(
            lock.try_lock().unwrap().is_none(),
            "trial {i}: a live holder was robbed"
        );
        // Each way of locking meets a dead holder in turn.
        let died = match i % 4 {
            0 => {
                kid.kill();
                lock.lock().unwrap().owner_died()
            }
            1 => {
                // A thread of ours is already asleep in lock() when the
                // holder dies.
                std::thread::scope(|s| {
                    let (tx, rx) = mpsc::channel();
                    let lock = &lock;
                    let t = s.spawn(move || {
                        tx.send(gettid()).unwrap();
                        lock.lock().unwrap().owner_died()
                    });
                    let tid = rx.recv().unwrap();
                    assert!(
                        wait_for(REACH, || thread_asleep(tid)),
                        "trial {i}: waiter never slept"
                    );
                    kid.kill();
                    t.join().unwrap()
                })
            }
            2 => {
                // The holder is reaped: try_lock sees it gone at once.
                kid.kill();
                lock.try_lock()
                    .unwrap()
                    .unwrap_or_else(|| panic!("trial {i}: try_lock refused a dead holder's lock"))
                    .owner_died()
            }
            _ => {
                kid.kill();
                lock.lock_timeout(REACH).unwrap().owner_died()
            }
        };
        kills += 1;
        recovered += 1;
        told += u64::from(died);
        assert!(died, "trial {i} (mode {}): owner_died() was false", i % 4);
        assert!(!lock.is_locked(), "trial {i}");
        for _ in 0..2 {
            let g = lock.lock().unwrap();
            assert!(!g.owner_died(), "trial {i}: told twice");
            drop(g);
            let g = lock.try_lock().unwrap().expect("free");
            assert!(!g.owner_died(), "trial {i}: told twice");
        }
    }
    eprintln!(
        "lock torture: {trials} trials, {kills} holders SIGKILLed, {recovered} locks recovered, \
         {told} told owner_died, in {:?}",
        t0.elapsed()
    );
}

#[test]
fn holders_killed_at_random_moments_never_break_the_invariant() {
    let _w = watchdog(WATCHDOG);
    let mut rng = XorShift::from_env_or_time("holders_killed_at_random_moments");
    let lock = Lock::create_unique().unwrap();
    let a = Value::<u64>::create_unique(0).unwrap();
    let b = Value::<u64>::create_unique(0).unwrap();
    let violations = Value::<u64>::create_unique(0).unwrap();
    let repairs = Value::<u64>::create_unique(0).unwrap();
    let names = [
        lock.name(),
        a.name(),
        b.name(),
        violations.name(),
        repairs.name(),
    ];
    let rounds = 25;
    let mut parent_told = 0;
    for round in 0..rounds {
        let mut kids: Vec<_> = (0..2)
            .map(|_| spawn("two_fields_forever", &names))
            .collect();
        let start = a.load();
        assert!(
            wait_for(REACH, || a.load() >= start + 100),
            "round {round}: children make no progress"
        );
        while !kids.is_empty() {
            // Mostly within a few lock cycles; sometimes long enough for the
            // survivor to take over from the first one killed.
            let us = if rng.below(2) == 0 {
                rng.below(2_000)
            } else {
                20_000 + rng.below(40_000)
            };
            std::thread::sleep(Duration::from_micros(us));
            let k = kids.swap_remove(rng.below(kids.len() as u64) as usize);
            k.kill();
        }
        let g = lock
            .lock_timeout(REACH)
            .unwrap_or_else(|e| panic!("round {round}: lock after the kills: {e}"));
        let (x, y) = (a.load(), b.load());
        if g.owner_died() {
            parent_told += 1;
            assert!(
                x == y || x == y + 1,
                "round {round}: told owner_died, fields {x} and {y}"
            );
            b.swap(x);
        } else {
            assert_eq!(
                x, y,
                "round {round}: not told owner_died, but the fields differ"
            );
        }
        drop(g);
        assert_eq!(
            violations.load(),
            0,
            "round {round}: a child saw the fields apart"
        );
    }
    let g = lock.lock().unwrap();
    assert!(!g.owner_died());
    assert_eq!(a.load(), b.load());
    eprintln!(
        "{rounds} rounds: {} increments, parent told owner_died {parent_told} times, children repaired {} times",
        a.load(),
        repairs.load()
    );
}

#[test]
fn a_holder_that_exits_without_unlocking_is_taken_over_before_it_is_reaped() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let kid = spawn("take_and_exit", &[lock.name(), held.name()]);
    assert!(
        held.wait_timeout(REACH).unwrap(),
        "child never took the lock"
    );
    // Not reaped yet (a zombie once it has exited): lock() must not wait for
    // the parent to reap it.
    let g = lock.lock().unwrap();
    assert!(g.owner_died(), "the holder exited holding it");
    drop(g);
    assert!(!lock.lock().unwrap().owner_died());
    assert_eq!(kid.wait(), 0);
}

#[test]
fn lock_timeout_zero_takes_over_a_dead_holder_like_try_lock() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let kid = spawn("hold_and_hang", &[lock.name(), held.name()]);
    assert!(
        held.wait_timeout(REACH).unwrap(),
        "child never took the lock"
    );
    assert!(matches!(
        lock.lock_timeout(Duration::ZERO),
        Err(Error::Timeout { .. })
    ));
    // Killed and reaped: the holder is gone for good, and try_lock (checked in
    // the 200 trials) takes the lock at once. A zero timeout asks for no more
    // waiting than try_lock does, and must not refuse what try_lock grants.
    kid.kill();
    match lock.lock_timeout(Duration::ZERO) {
        Ok(g) => assert!(g.owner_died()),
        Err(e) => panic!("lock_timeout(0) after the holder was killed and reaped: {e:?}"),
    };
}

/// A thread takes the lock and exits without unlocking (the guard is
/// leaked): the next locker is told, as if a process had died.
#[test]
fn a_thread_that_exits_holding_the_lock_is_taken_over() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(lock.lock().unwrap()));
    });
    assert!(lock.is_locked());
    let g = lock.lock().unwrap();
    assert!(g.owner_died(), "the holding thread exited");
    drop(g);
    assert!(!lock.lock().unwrap().owner_died());
}

// ---------------------------------------------------------------- deadlock

#[test]
fn locking_twice_in_one_thread_is_a_deadlock_error() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let other = Lock::open(lock.name()).unwrap();
    let g = lock.lock().unwrap();
    assert!(matches!(lock.lock(), Err(Error::Deadlock { .. })));
    assert!(matches!(other.lock(), Err(Error::Deadlock { .. })));
    // A timeout does not turn a certain deadlock into a wait.
    assert!(matches!(
        lock.lock_timeout(Duration::from_secs(3600)),
        Err(Error::Deadlock { .. })
    ));
    assert!(lock.try_lock().unwrap().is_none());
    assert!(other.try_lock().unwrap().is_none());
    // Another thread is no deadlock: it waits, and gets it once released.
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let other = &other;
        let t = s.spawn(move || {
            assert!(other.try_lock().unwrap().is_none());
            let d = Duration::from_millis(30);
            let t0 = Instant::now();
            assert!(matches!(other.lock_timeout(d), Err(Error::Timeout { .. })));
            assert!(t0.elapsed() >= d);
            tx.send(()).unwrap();
            let g = other.lock().unwrap();
            g.owner_died()
        });
        rx.recv().unwrap();
        drop(g);
        assert!(!t.join().unwrap());
    });
    // The errors left the lock as it was.
    let g = lock.lock().unwrap();
    assert!(!g.owner_died());
    drop(g);
    assert!(!lock.is_locked());
}

/// After a contended hand-over the lock word keeps its waiters bit (the new
/// holder cannot know whether others still sleep), so the holder's unlock
/// goes the slow way; every 32nd such unlock is a "fair" one that reserves
/// the lock for a sleeper (`HANDOFF | WAITERS`) even when nobody sleeps.
/// Then a free lock refuses `try_lock`, and `lock_timeout` shorter than the
/// liveness interval times out on it, until some locker has slept 20 ms.
#[test]
fn a_free_lock_nobody_waits_for_is_taken_at_once_after_contended_handovers() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    for episode in 0..64 {
        // This thread holds it; another goes to sleep in lock(); this one
        // releases it, and the other takes it and releases it in turn.
        std::thread::scope(|s| {
            let g = lock.lock().unwrap();
            let (tx, rx) = mpsc::channel();
            let lock = &lock;
            let t = s.spawn(move || {
                tx.send(gettid()).unwrap();
                lock.lock().unwrap().owner_died()
            });
            let tid = rx.recv().unwrap();
            assert!(
                wait_for(REACH, || thread_asleep(tid)),
                "episode {episode}: waiter never slept"
            );
            drop(g);
            assert!(!t.join().unwrap());
        });
        // Nobody holds it, nobody waits for it.
        assert!(!lock.is_locked(), "episode {episode}");
        let g = lock.try_lock().unwrap();
        assert!(
            g.is_some(),
            "episode {episode}: try_lock refused a free lock that nobody waits for"
        );
        drop(g);
        if let Err(e) = lock.lock_timeout(Duration::from_millis(1)) {
            panic!("episode {episode}: lock_timeout(1 ms) on a free lock: {e:?}");
        }
    }
}

// ---------------------------------------------------------------- fairness

#[test]
fn two_processes_hammering_one_lock_both_get_it() {
    let _w = watchdog(WATCHDOG);
    let target = 200_000u64;
    let lock = Lock::create_unique().unwrap();
    let counts = Array::<u64>::create_unique(2, 0).unwrap();
    let go = Event::create_unique().unwrap();
    let t = target.to_string();
    let kids: Vec<_> = (0..2)
        .map(|me| {
            spawn(
                "hammer",
                &[lock.name(), counts.name(), go.name(), &me.to_string(), &t],
            )
        })
        .collect();
    go.set();
    for k in kids {
        k.join();
    }
    let c = counts.to_vec();
    eprintln!(
        "fairness: {} / {} acquisitions ({:.1}% / {:.1}%)",
        c[0],
        c[1],
        100.0 * c[0] as f64 / target as f64,
        100.0 * c[1] as f64 / target as f64
    );
    assert_eq!(c[0] + c[1], target);
    for (i, &n) in c.iter().enumerate() {
        assert!(
            n >= target / 10,
            "process {i} got {n} of {target} acquisitions (split {c:?})"
        );
    }
}

/// Found by the loom models and the `raw_attach` fuzz target: a fair unlock
/// with nobody asleep left the lock reserved for a sleeper that did not
/// exist, so `try_lock` failed on a free lock.
#[test]
fn fair_unlock_with_nobody_asleep_leaves_the_lock_free() {
    #[repr(C, align(8))]
    struct Region([u8; 16]);
    let mut r = Region([0; 16]);
    // WAITERS set, owner a dead thread (id 0x3f_ffff, start time 1), 31
    // contended unlocks so far (layout: `src/raw/lock.rs`).
    let state = (1u64 << 63) | (0x3f_ffffu64 << 40) | 1;
    r.0[4..8].copy_from_slice(&31u32.to_le_bytes());
    r.0[8..16].copy_from_slice(&state.to_le_bytes());
    // SAFETY: `r` outlives `lock` and is used only through it.
    let lock = unsafe { shmkit::raw::RawLock::attach(r.0.as_mut_ptr(), 16) }.unwrap();
    let g = lock.try_lock().unwrap().unwrap();
    assert!(g.owner_died());
    drop(g); // the 32nd contended unlock: a fair one, with nobody asleep
    assert!(lock.try_lock().unwrap().is_some());
}
