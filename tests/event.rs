//! `Event` across real processes: set wakes a blocked child, and every
//! blocked child; timeouts never come early; a set event is waited on at
//! once; clear is seen by the other process; a sleeper woken by `set` returns
//! even if `clear` follows at once; and no wake-up is lost in a long
//! ping-pong.

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, wait_for, watchdog};
use shmkit::{Event, Value};

#[test]
fn child() {
    dispatch(&[
        ("wait_then_count", wait_then_count),
        ("check_set", check_set),
        ("check_unset_times_out", check_unset_times_out),
        ("set_it", set_it),
        ("clear_then_wait", clear_then_wait),
        ("pong", pong),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(60);
/// How long a parent waits for a child to reach a point before failing.
const REACH: Duration = Duration::from_secs(30);

/// The state letters (R, S, D, Z, ...) of every thread of process `pid`.
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
        // The state follows the command name, which is in parentheses.
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    })
    .collect()
}

/// Whether every thread of `pid` is asleep (so a child that said it is about
/// to wait is blocked in the wait, not running towards it or gone).
fn all_asleep(pid: u32) -> bool {
    let s = thread_states(pid);
    !s.is_empty() && s.iter().all(|&c| c == 'S')
}

/// The calling thread's kernel id.
fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Whether thread `tid` of this process is asleep.
fn thread_asleep(tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 1..].trim_start().chars().next())
        == Some('S')
}

/// args: event, ready counter, done counter, "set" if the event must still
/// be set when the wait returns. Counts itself ready, waits for the event,
/// counts itself done.
fn wait_then_count(args: &[String]) {
    let ev = Event::open(&args[0]).unwrap();
    let ready = Value::<u32>::open(&args[1]).unwrap();
    let done = Value::<u32>::open(&args[2]).unwrap();
    ready.fetch_add(1);
    ev.wait().unwrap();
    if args[3] == "set" {
        assert!(ev.is_set());
    }
    done.fetch_add(1);
}

/// Starts `n` children blocked in `wait()` on a new event (checked: every
/// thread of each is asleep, and none has returned). `stays_set`: whether
/// they may assert that the event is set when they wake.
fn blocked_children(n: usize, stays_set: bool) -> (Event, Value<u32>, Vec<common::Proc>) {
    let ev = Event::create_unique().unwrap();
    let ready = Value::<u32>::create_unique(0).unwrap();
    let done = Value::<u32>::create_unique(0).unwrap();
    let check = if stays_set { "set" } else { "-" };
    let kids: Vec<_> = (0..n)
        .map(|_| {
            spawn(
                "wait_then_count",
                &[ev.name(), ready.name(), done.name(), check],
            )
        })
        .collect();
    assert!(
        wait_for(REACH, || ready.load() == n as u32),
        "children never got ready"
    );
    for k in &kids {
        assert!(
            wait_for(REACH, || all_asleep(k.pid())),
            "child {} never blocked: thread states {:?}",
            k.pid(),
            thread_states(k.pid())
        );
    }
    assert_eq!(
        done.load(),
        0,
        "a child returned from wait() on an unset event"
    );
    drop(ready);
    (ev, done, kids)
}

#[test]
fn set_wakes_a_child_blocked_in_wait() {
    let _w = watchdog(WATCHDOG);
    let (ev, done, kids) = blocked_children(1, true);
    ev.set();
    for k in kids {
        k.join();
    }
    assert_eq!(done.load(), 1);
}

#[test]
fn set_wakes_every_waiter_in_every_process() {
    let _w = watchdog(WATCHDOG);
    let (ev, done, kids) = blocked_children(4, true);
    // And a thread of this process, blocked too.
    let same = Event::open(ev.name()).unwrap();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = s.spawn(move || {
            tx.send(gettid()).unwrap();
            same.wait().unwrap();
            same.is_set()
        });
        let tid = rx.recv().unwrap();
        assert!(
            wait_for(REACH, || thread_asleep(tid)),
            "thread never blocked"
        );
        ev.set();
        assert!(t.join().unwrap());
    });
    for k in kids {
        k.join();
    }
    assert_eq!(done.load(), 4);
}

/// args: event. Expects it set.
fn check_set(args: &[String]) {
    let ev = Event::open(&args[0]).unwrap();
    assert!(ev.is_set());
    ev.wait().unwrap();
    assert!(ev.wait_timeout(Duration::ZERO).unwrap());
    assert!(ev.wait_timeout(Duration::from_secs(3600)).unwrap());
    assert!(ev.wait_timeout(Duration::MAX).unwrap());
    assert!(ev.is_set(), "waiting does not consume the flag");
}

#[test]
fn a_set_event_is_waited_on_at_once() {
    let _w = watchdog(WATCHDOG);
    let ev = Event::create_unique().unwrap();
    ev.set();
    ev.set(); // twice is the same as once
    assert!(ev.is_set());
    ev.wait().unwrap();
    assert!(ev.wait_timeout(Duration::ZERO).unwrap());
    assert!(ev.wait_timeout(Duration::from_secs(3600)).unwrap());
    spawn("check_set", &[ev.name()]).join();
    spawn("check_set", &[ev.name()]).join();
    assert!(ev.is_set());
}

fn assert_times_out(ev: &Event, d: Duration) {
    let t = Instant::now();
    assert!(!ev.wait_timeout(d).unwrap(), "unset event reported set");
    let took = t.elapsed();
    assert!(took >= d, "wait_timeout({d:?}) gave up after {took:?}");
}

/// args: event. Expects it unset, and to stay unset.
fn check_unset_times_out(args: &[String]) {
    let ev = Event::open(&args[0]).unwrap();
    assert!(!ev.is_set());
    assert!(!ev.wait_timeout(Duration::ZERO).unwrap());
    assert_times_out(&ev, Duration::from_millis(100));
}

#[test]
fn wait_timeout_on_an_unset_event_is_false_after_at_least_the_timeout() {
    let _w = watchdog(WATCHDOG);
    let ev = Event::create_unique().unwrap();
    // The child waits at the same time as this process.
    let kid = spawn("check_unset_times_out", &[ev.name()]);
    assert!(!ev.wait_timeout(Duration::ZERO).unwrap());
    for ms in [1, 25, 100] {
        assert_times_out(&ev, Duration::from_millis(ms));
    }
    kid.join();
    // Set then cleared is unset again.
    ev.set();
    ev.clear();
    assert_times_out(&ev, Duration::from_millis(100));
}

/// args: event. Sets it.
fn set_it(args: &[String]) {
    Event::open(&args[0]).unwrap().set();
}

#[test]
fn a_child_wakes_a_sleeper_in_wait_timeout() {
    let _w = watchdog(WATCHDOG);
    let ev = Event::create_unique().unwrap();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let ev = &ev;
        let t = s.spawn(move || {
            tx.send(gettid()).unwrap();
            ev.wait_timeout(REACH).unwrap()
        });
        let tid = rx.recv().unwrap();
        assert!(
            wait_for(REACH, || thread_asleep(tid)),
            "thread never blocked"
        );
        spawn("set_it", &[ev.name()]).join();
        assert!(
            t.join().unwrap(),
            "woken by set, wait_timeout must say true"
        );
    });
}

/// args: event, ack event. Waits for the event, clears it, acknowledges,
/// then waits for it again.
fn clear_then_wait(args: &[String]) {
    let ev = Event::open(&args[0]).unwrap();
    let ack = Event::open(&args[1]).unwrap();
    ev.wait().unwrap();
    assert!(ev.is_set());
    ev.clear();
    assert!(!ev.is_set());
    ack.set();
    ev.wait().unwrap();
    assert!(ev.is_set());
}

#[test]
fn clear_in_one_process_is_seen_by_the_other() {
    let _w = watchdog(WATCHDOG);
    let ev = Event::create_unique().unwrap();
    let ack = Event::create_unique().unwrap();
    let kid = spawn("clear_then_wait", &[ev.name(), ack.name()]);
    ev.set();
    assert!(ack.wait_timeout(REACH).unwrap(), "child never cleared");
    assert!(!ev.is_set());
    assert_times_out(&ev, Duration::from_millis(50));
    // The child now waits for the second set.
    ev.set();
    kid.join();
    assert!(ev.is_set());
}

#[test]
fn a_sleeper_woken_by_set_returns_even_if_clear_follows_at_once() {
    let _w = watchdog(WATCHDOG);
    let (ev, done, kids) = blocked_children(2, false);
    // Documented: a waiter asleep when set ran returns even if clear came
    // right after (Python's Event.wait does the same).
    ev.set();
    ev.clear();
    assert!(
        wait_for(REACH, || done.load() == 2),
        "a sleeper woken by set() stayed asleep after clear()"
    );
    assert!(!ev.is_set());
    for k in kids {
        k.join();
    }
}

const ROUNDS: u32 = 2_000;

/// args: ping, pong, rounds. Answers every ping with a pong.
fn pong(args: &[String]) {
    let ping = Event::open(&args[0]).unwrap();
    let pong = Event::open(&args[1]).unwrap();
    let rounds: u32 = args[2].parse().unwrap();
    for _ in 0..rounds {
        ping.wait().unwrap();
        ping.clear();
        pong.set();
    }
}

#[test]
fn ping_pong_between_processes_loses_no_wake_up() {
    let _w = watchdog(WATCHDOG);
    let ping = Event::create_unique().unwrap();
    let pong = Event::create_unique().unwrap();
    let kid = spawn("pong", &[ping.name(), pong.name(), &ROUNDS.to_string()]);
    for i in 0..ROUNDS {
        ping.set();
        assert!(pong.wait_timeout(REACH).unwrap(), "round {i}: no pong");
        pong.clear();
    }
    kid.join();
    assert!(!ping.is_set());
}
