//! `Barrier` across real processes, mirroring CPython's `_TestBarrier`
//! (`Lib/test/_test_multiprocessing.py`: test_barrier, test_barrier_10,
//! test_wait_return, test_action, test_abort, test_reset,
//! test_abort_and_reset, test_timeout, test_default_timeout,
//! test_single_thread, test_thousand; SEMANTICS.md BAR-01..10), plus what
//! Python cannot do (cpython#123899): a party SIGKILLed while the others
//! wait breaks the barrier for them, wherever it was (first or last to
//! arrive, or running the action).

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, wait_for, watchdog, Proc, Words};
use shmkit::{Barrier, Error};

#[test]
fn child() {
    dispatch(&[
        ("multipass", multipass),
        ("wait_return", wait_return),
        ("action", action),
        ("abort", abort),
        ("reset", reset),
        ("abort_and_reset", abort_and_reset),
        ("timeout", timeout),
        ("expect_broken", expect_broken),
        ("wait_once", wait_once),
        ("stuck_action", stuck_action),
        ("lockstep", lockstep),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(120);
const REACH: Duration = Duration::from_secs(30);
const N: usize = 5;

/// The state letters of every thread of process `pid`.
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    })
    .collect()
}

/// Every thread of `pid` asleep: a child that arrived is blocked in the
/// barrier's sleep, past its arrival, its slot write and its notify.
fn all_asleep(pid: u32) -> bool {
    let s = thread_states(pid);
    !s.is_empty() && s.iter().all(|&c| c == 'S')
}

/// Starts `n` children playing `role` with the barrier's and the words'
/// names, then `extra` arguments.
fn start(n: usize, role: &str, b: &Barrier, w: &Words, extra: &[&str]) -> Vec<Proc> {
    (0..n)
        .map(|_| {
            let mut args = vec![b.name(), w.name()];
            args.extend_from_slice(extra);
            spawn(role, &args)
        })
        .collect()
}

fn join_all(ps: Vec<Proc>) {
    for p in ps {
        p.join();
    }
}

fn open(args: &[String]) -> (Barrier, Words) {
    (Barrier::open(&args[0]).unwrap(), Words::open(&args[1]))
}

/// Python's `multipass`: words 0 and 1 are its two result lists.
fn multipass(args: &[String]) {
    let (b, w) = open(args);
    let passes: u64 = args[2].parse().unwrap();
    let n = b.parties() as u64;
    for i in 0..passes {
        w.add(0, 1);
        assert_eq!(w.get(1), i * n);
        b.wait().unwrap();
        w.add(1, 1);
        assert_eq!(w.get(0), (i + 1) * n);
        b.wait().unwrap();
    }
}

fn barrier_passes(passes: u64) {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(N as u32).unwrap();
    let w = Words::create(2);
    join_all(start(N, "multipass", &b, &w, &[&passes.to_string()]));
    assert_eq!(w.get(0), passes * N as u64);
    assert_eq!(b.n_waiting(), 0);
    assert!(!b.broken());
}

/// test_barrier: lockstep over one pass.
#[test]
fn test_barrier() {
    barrier_passes(1);
}

/// test_barrier_10: and over ten.
#[test]
fn test_barrier_10() {
    barrier_passes(10);
}

/// Each party adds `1 << index` to word `2 + pass` and counts index 0 in
/// word 0.
fn wait_return(args: &[String]) {
    let (b, w) = open(args);
    let passes: usize = args[2].parse().unwrap();
    for pass in 0..passes {
        let i = b.wait().unwrap();
        assert!(i < b.parties() as usize);
        if i == 0 {
            w.add(0, 1);
        }
        w.add(2 + pass, 1 << i);
    }
}

/// test_wait_return: exactly one party per pass gets 0, and the indices of
/// a pass are distinct (their powers of two sum to `2^N - 1`).
#[test]
fn test_wait_return() {
    let _w = watchdog(WATCHDOG);
    let passes = 3;
    let b = Barrier::create_unique(N as u32).unwrap();
    let w = Words::create(2 + passes);
    join_all(start(N, "wait_return", &b, &w, &[&passes.to_string()]));
    assert_eq!(w.get(0), passes as u64);
    for pass in 0..passes {
        assert_eq!(w.get(2 + pass), (1 << N) - 1, "pass {pass}");
    }
}

/// The action counts trips in word 0; after its `k`-th wait every party
/// sees exactly `k` (it ran once, before anyone was released).
fn action(args: &[String]) {
    let (b, w) = open(args);
    let name = args[1].clone();
    let b = b.with_action(move || {
        Words::open(&name).add(0, 1);
    });
    for k in 1..=3 {
        b.wait().unwrap();
        assert_eq!(w.get(0), k);
    }
}

/// test_action.
#[test]
fn test_action() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(N as u32).unwrap();
    let w = Words::create(1);
    join_all(start(N, "action", &b, &w, &[]));
    assert_eq!(w.get(0), 3);
}

/// Python's `_test_abort_f`: words 0 and 1 are results1 and results2.
fn abort(args: &[String]) {
    let (b, w) = open(args);
    let i = b.wait().unwrap();
    if i == b.parties() as usize / 2 {
        b.abort();
        return;
    }
    match b.wait() {
        Ok(_) => w.add(0, 1),
        Err(Error::BrokenBarrier { .. }) => w.add(1, 1),
        Err(e) => panic!("{e}"),
    };
}

/// test_abort: the parties that wait after the abort are all broken; none
/// passes.
#[test]
fn test_abort() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(N as u32).unwrap();
    let w = Words::create(2);
    join_all(start(N, "abort", &b, &w, &[]));
    assert_eq!(w.get(0), 0);
    assert_eq!(w.get(1), N as u64 - 1);
    assert!(b.broken());
}

/// Python's `_test_reset_f`: words 0, 1, 2 are results1..3.
fn reset(args: &[String]) {
    let (b, w) = open(args);
    let n = b.parties();
    let i = b.wait().unwrap();
    if i == n as usize / 2 {
        // Until the others all wait again.
        assert!(wait_for(REACH, || b.n_waiting() == n - 1));
        b.reset();
    } else {
        match b.wait() {
            Ok(_) => w.add(0, 1),
            Err(Error::BrokenBarrier { .. }) => w.add(1, 1),
            Err(e) => panic!("{e}"),
        };
    }
    // Now, pass the barrier again.
    b.wait().unwrap();
    w.add(2, 1);
}

/// test_reset: the waiters are broken by the reset, then all pass again.
#[test]
fn test_reset() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(N as u32).unwrap();
    let w = Words::create(3);
    join_all(start(N, "reset", &b, &w, &[]));
    assert_eq!(w.get(0), 0);
    assert_eq!(w.get(1), N as u64 - 1);
    assert_eq!(w.get(2), N as u64);
}

/// Python's `_test_abort_and_reset_f`, with a second barrier (args[2]).
fn abort_and_reset(args: &[String]) {
    let (b, w) = open(args);
    let b2 = Barrier::open(&args[2]).unwrap();
    let half = b.parties() as usize / 2;
    let i = b.wait().unwrap();
    if i == half {
        b.abort();
    } else {
        match b.wait() {
            Ok(_) => w.add(0, 1),
            Err(Error::BrokenBarrier { .. }) => w.add(1, 1),
            Err(e) => panic!("{e}"),
        };
    }
    // Synchronize and reset the barrier: first so that everyone has left
    // it when it is reset, then so that nobody enters it before.
    if b2.wait().unwrap() == half {
        b.reset();
    }
    b2.wait().unwrap();
    b.wait().unwrap();
    w.add(2, 1);
}

/// test_abort_and_reset: a broken barrier is reset and reused.
#[test]
fn test_abort_and_reset() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(N as u32).unwrap();
    let b2 = Barrier::create_unique(N as u32).unwrap();
    let w = Words::create(3);
    join_all(start(N, "abort_and_reset", &b, &w, &[b2.name()]));
    assert_eq!(w.get(0), 0);
    assert_eq!(w.get(1), N as u64 - 1);
    assert_eq!(w.get(2), N as u64);
}

const LATE: Duration = Duration::from_millis(600);
const TIMEOUT: Duration = Duration::from_millis(300);

/// Python's `_test_timeout_f` (args[2] "arg": the timeout is wait's
/// argument; "default": the handle's default). Word 0 counts broken
/// parties; word `1 + index` holds the wait (µs) of a party that was not late.
fn timeout(args: &[String]) {
    let (b, w) = open(args);
    let default = args[2] == "default";
    let b = if default {
        b.with_timeout(Some(TIMEOUT))
    } else {
        b
    };
    let i = b.wait_timeout(Duration::from_secs(60)).unwrap();
    let late = i == b.parties() as usize / 2;
    if late {
        std::thread::sleep(LATE);
    }
    let t = Instant::now();
    let r = if default {
        b.wait()
    } else {
        b.wait_timeout(TIMEOUT)
    };
    assert!(matches!(r, Err(Error::BrokenBarrier { .. })), "{r:?}");
    if !late {
        w.set(1 + i, t.elapsed().as_micros() as u64);
    }
    w.add(0, 1);
}

fn timeout_test(how: &str) {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(N as u32).unwrap();
    let w = Words::create(1 + N);
    join_all(start(N, "timeout", &b, &w, &[how]));
    assert_eq!(
        w.get(0),
        N as u64,
        "every party, the late one too, is broken"
    );
    // Someone's own timeout broke it: never before the timeout.
    let longest = (1..=N).map(|k| w.get(k)).max().unwrap();
    assert!(longest >= TIMEOUT.as_micros() as u64, "{longest}");
    assert!(b.broken());
}

/// test_timeout.
#[test]
fn test_timeout() {
    timeout_test("arg");
}

/// test_default_timeout.
#[test]
fn test_default_timeout() {
    timeout_test("default");
}

/// test_single_thread: `Barrier(1)` never blocks; `Barrier(0)` is an error.
#[test]
fn test_single_thread() {
    let b = Barrier::create_unique(1).unwrap();
    assert_eq!(b.wait().unwrap(), 0);
    assert_eq!(b.wait().unwrap(), 0);
    match Barrier::create_unique(0) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("parties must be > 0"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// BAR-10 and `open`: the queries work through a second handle.
#[test]
fn queries_and_open() {
    let b = Barrier::create_unique(3).unwrap();
    let o = Barrier::open(b.name()).unwrap();
    assert_eq!(o.parties(), 3);
    assert_eq!(o.n_waiting(), 0);
    assert!(!o.broken());
    b.abort();
    assert!(o.broken());
    o.reset();
    assert!(!b.broken());
    assert!(matches!(
        shmkit::Event::open(b.name()),
        Err(Error::WrongKind { .. })
    ));
}

/// Waits (no timeout) and expects `BrokenBarrier`.
fn expect_broken(args: &[String]) {
    let (b, w) = open(args);
    let r = b.wait();
    assert!(matches!(r, Err(Error::BrokenBarrier { .. })), "{r:?}");
    w.add(0, 1);
}

/// Waits once (no timeout) and expects to pass.
fn wait_once(args: &[String]) {
    let (b, _w) = open(args);
    b.wait().unwrap();
}

/// Arrives with an action that says so in word 1 and never ends.
fn stuck_action(args: &[String]) {
    let (b, _w) = open(args);
    let name = args[1].clone();
    let b = b.with_action(move || {
        Words::open(&name).set(1, 1);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let _ = b.wait();
}

/// Starts a child waiting and returns once it sleeps in the barrier.
fn arrive(role: &str, b: &Barrier, w: &Words, waiting: u32) -> Proc {
    let p = start(1, role, b, w, &[]).pop().unwrap();
    assert!(wait_for(REACH, || b.n_waiting() == waiting));
    assert!(wait_for(REACH, || all_asleep(p.pid())));
    p
}

/// `parties = 4`: two survivors and a victim wait (the victim arriving
/// `victim_at`-th), the fourth party never comes; the victim is SIGKILLed
/// and both survivors get `BrokenBarrier` (the watchdog is the bound).
fn death_while_waiting(victim_at: usize) {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(4).unwrap();
    let w = Words::create(1);
    let mut survivors = Vec::new();
    let mut victim = None;
    for k in 0..3 {
        let role = if k == victim_at {
            "wait_once"
        } else {
            "expect_broken"
        };
        let p = arrive(role, &b, &w, k as u32 + 1);
        if k == victim_at {
            victim = Some(p);
        } else {
            survivors.push(p);
        }
    }
    victim.unwrap().kill();
    join_all(survivors);
    assert_eq!(w.get(0), 2);
    assert!(b.broken());
    // And it is usable again after a reset.
    b.reset();
    assert_eq!(b.n_waiting(), 0);
}

/// The victim arrived first (every later sleeper watches it).
#[test]
fn death_of_first_waiter_breaks() {
    death_while_waiting(0);
}

/// The victim arrived last (the earlier sleepers learn of it from its
/// arrival's notify).
#[test]
fn death_of_last_waiter_breaks() {
    death_while_waiting(2);
}

/// The victim arrived in the middle.
#[test]
fn death_of_middle_waiter_breaks() {
    death_while_waiting(1);
}

/// `parties = 2`: a survivor waits, the victim arrives last and runs an
/// action that never ends; it is SIGKILLed in the action and the survivor
/// gets `BrokenBarrier`.
#[test]
fn death_in_action_breaks() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(2).unwrap();
    let w = Words::create(2);
    let survivor = arrive("expect_broken", &b, &w, 1);
    let victim = start(1, "stuck_action", &b, &w, &[]).pop().unwrap();
    assert!(wait_for(REACH, || w.get(1) == 1));
    assert_eq!(b.n_waiting(), 0, "tripping: nobody counts as waiting");
    victim.kill();
    survivor.join();
    assert_eq!(w.get(0), 1);
    assert!(b.broken());
}

/// A party that died waiting with nobody else waiting still counts as
/// arrived (documented in `src/raw/barrier.rs`): the next arrival trips
/// the barrier with it. After a reset the barrier works with a new party.
#[test]
fn dead_party_with_nobody_waiting_counts() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(2).unwrap();
    let w = Words::create(1);
    let victim = arrive("wait_once", &b, &w, 1);
    victim.kill();
    assert_eq!(b.wait().unwrap(), 1);
    b.reset();
    let p = start(1, "wait_once", &b, &w, &[]).pop().unwrap();
    b.wait().unwrap();
    p.join();
    assert!(!b.broken());
}

/// Child `j` (args[2]) of `n` does `passes` (args[3]) rounds: it writes
/// its round into word `j` before each wait, and after the wait checks
/// that every party reached this round and none is past the next.
fn lockstep(args: &[String]) {
    let (b, w) = open(args);
    let j: usize = args[2].parse().unwrap();
    let passes: u64 = args[3].parse().unwrap();
    for i in 1..=passes {
        w.set(j, i);
        b.wait().unwrap();
        for k in 0..w.len() {
            let r = w.get(k);
            assert!(
                r == i || r == i + 1,
                "party {k} at round {r} after round {i}"
            );
        }
    }
}

/// test_thousand, shaped as lockstep: one barrier reused for many trips by
/// three processes; generations never mix.
#[test]
fn many_trips() {
    let _w = watchdog(WATCHDOG);
    let n = 3;
    let passes = 1000u64.to_string();
    let b = Barrier::create_unique(n as u32).unwrap();
    let w = Words::create(n);
    let ps: Vec<Proc> = (0..n)
        .map(|j| spawn("lockstep", &[b.name(), w.name(), &j.to_string(), &passes]))
        .collect();
    join_all(ps);
    for k in 0..n {
        assert_eq!(w.get(k), 1000);
    }
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
}
