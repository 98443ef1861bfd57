//! Death at every step: loom models in which one thread (the victim) stops
//! forever just before its k-th shim operation, for every k across an
//! operation (`loom_support::sweep`, `src/sync/model.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_death -- --nocapture` (or
//! `ci/loom.sh loom_death`); each sweep prints its step count and time.
//!
//! A sweep first runs its model with nobody dying and counts the victim's
//! shim operations (atomic accesses, fences, futex waits and wakes,
//! liveness probes; the most over every execution), then once for every
//! `k` in `1..=steps`. A victim that dies is marked dead in the liveness
//! table and parks; it never runs another operation while the model runs,
//! and runs no destructor that publishes anything (see `kill` in
//! `src/sync/model.rs`): SIGKILL. The model checks, whatever `k` was:
//! the survivors finish (else loom reports a deadlock or hits its branch
//! limit), every operation the victim got an `Ok` for (`ack`) took effect
//! exactly once, nothing is duplicated or torn, locks are recovered and the
//! new owner is told. `_unknown` sweeps do it again with every liveness
//! check of a live thread answering "unknown": survivors must then never
//! steal from the (live) victim, and still finish (timed waits fire).
//!
//! | model                      | victim does                         | checks (what a failure means)                                        |
//! |----------------------------|-------------------------------------|----------------------------------------------------------------------|
//! | `event_set`                | `set` while a survivor waits        | acked set is seen by every later wait; waiters finish                |
//! | `event_wait`               | untimed `wait`, the set is a survivor's | a dead waiter does not wedge `set`: the other waiter is woken (no timeouts: a lost wake-up deadlocks) |
//! | `queue_put`                | `put`, racing a live producer       | acked message received once; the live one too; the dead claim is stepped over and its slot reused |
//! | `queue_get`                | `get` of one of two messages        | no message twice; at most the one it was taking is lost; the queue works after (slots freed) |
//! | `queue_reserve_commit`     | `try_reserve` + write + `commit`    | as `queue_put`: a committed message arrives once, an abandoned claim is recovered |
//! | `queue_get_ref`            | `try_get_ref`, read, drop           | as `queue_get`, for the in-place read                                |
//! | `queue_close`              | `close` while a survivor is blocked in `get` | an acked close is seen (puts fail, the getter returns), no timeouts: a lost wake-up deadlocks |
//! | `pipe_send`                | two `send`s                         | the reader gets the acked messages in order, then at most the next one whole, then `Disconnected` |
//! | `pipe_send_streamed`       | one `send` larger than the ring     | the reader gets it whole or `Disconnected`, never a part             |
//! | `pipe_recv`                | two `recv`s                         | it got what was sent, in order; the sender finishes (`Ok` or `Disconnected`) |
//! | `lock_unlock`              | `lock`, write, `unlock`, racing a survivor | exclusion; a lock the victim died holding is taken over and the taker told `owner_died`, else nobody is told |
//! | `lock_takeover`            | `lock` of a lock whose holder died  | the takeover by victim or survivor, exactly the deaths reported, exclusion |
//!
//! Mutants run by hand against a scratch copy of `src/` (see the report of
//! the commit that added this file) are listed beside the models.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use shmkit::raw::queue_model::HeapQueue;
use shmkit::raw::{RawEvent, RawQueue};
use shmkit::sync::loom_support::{ack, acks, sweep, victim, Sweep};
use shmkit::Error;

const T: Duration = Duration::from_millis(5);

fn fire() -> Sweep {
    Sweep::default()
}

fn fire_unknown() -> Sweep {
    Sweep {
        unknown: true,
        ..Sweep::default()
    }
}

fn no_timeouts() -> Sweep {
    Sweep {
        timeouts_fire: false,
        ..Sweep::default()
    }
}

// ---- Event -------------------------------------------------------------

/// The setter dies at each step of `set`; a survivor waits (timed, timeouts
/// fire). An acked `set` must be seen by any later wait.
fn event_set(opts: Sweep) {
    sweep("event_set", opts, || {
        let ev = Arc::new(RawEvent::new());
        let w = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait_timeout(T))
        };
        let v = {
            let ev = ev.clone();
            victim(move || {
                ev.set();
                ack(1);
            })
        };
        let _ = w.join().unwrap();
        v.join();
        if acks().contains(&1) {
            assert!(ev.is_set(), "acked set lost");
            assert!(ev.wait_timeout(T));
        }
    });
}

#[test]
fn event_set_sweep() {
    event_set(fire());
}

#[test]
fn event_set_sweep_unknown() {
    event_set(fire_unknown());
}

/// A waiter dies at each step of an untimed `wait`; another waiter sleeps
/// too; a survivor sets. No timeouts: the live waiter must be woken whatever
/// state the dead one left in the word (a dead waiter must not wedge `set`:
/// Boost interprocess #69).
#[test]
fn event_wait_sweep() {
    sweep("event_wait", no_timeouts(), || {
        let ev = Arc::new(RawEvent::new());
        let v = {
            let ev = ev.clone();
            victim(move || ev.wait())
        };
        let w = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait())
        };
        ev.set();
        w.join().unwrap();
        v.join();
        assert!(ev.is_set());
    });
}

// ---- Queue -------------------------------------------------------------

/// Drains `q` (timed gets, timeouts fire) into `got`.
fn drain(q: &RawQueue<'_>, got: &mut Vec<u8>) {
    loop {
        match q.get_timeout(T) {
            Ok(m) => {
                assert_eq!(m.len(), 1, "torn message {m:?}");
                got.push(m[0]);
            }
            Err(Error::Timeout) | Err(Error::Empty) | Err(Error::Closed) => return,
            Err(e) => panic!("drain: {e:?}"),
        }
    }
}

/// No duplicates in `got`, every acked tag in it, nothing outside `sent`.
fn check_delivery(got: &[u8], sent: &[u8]) {
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "a message arrived twice: {got:?}");
    for m in got {
        assert!(sent.contains(m), "never sent: {m} in {got:?}");
    }
    for a in acks() {
        assert!(got.contains(&(a as u8)), "acked {a} lost: got {got:?}");
    }
}

/// After the sweep's deaths the queue still works, twice round its two
/// slots (a dead claim's slot must have been freed or skipped for good).
fn check_usable(q: &RawQueue<'_>) {
    for m in [b'u', b'v', b'w'] {
        q.put_timeout(&[m], T).expect("queue usable after a death");
        assert_eq!(q.get_timeout(T).expect("and readable"), [m]);
    }
}

/// The victim `put`s one message while a live producer puts another; the
/// main thread drains after both. Mutant: make `recover.rs` never judge a
/// stuck WRITING claim (treat every owner as alive) and the drain stops at
/// the dead claim, losing the live producer's message.
fn queue_put(opts: Sweep) {
    sweep("queue_put", opts, || {
        let q = Arc::new(HeapQueue::new(2, 1));
        let p = {
            let q = q.clone();
            thread::spawn(move || {
                q.handle().put_timeout(b"x", T).unwrap();
            })
        };
        let v = {
            let q = q.clone();
            victim(move || {
                q.handle().put_timeout(b"a", T).unwrap();
                ack(u64::from(b'a'));
            })
        };
        p.join().unwrap();
        v.join();
        let h = q.handle();
        let mut got = Vec::new();
        drain(&h, &mut got);
        check_delivery(&got, b"ax");
        assert!(
            got.contains(&b'x'),
            "the live producer's message lost: {got:?}"
        );
        check_usable(&h);
    });
}

#[test]
fn queue_put_sweep() {
    queue_put(fire());
}

#[test]
fn queue_put_sweep_unknown() {
    queue_put(fire_unknown());
}
