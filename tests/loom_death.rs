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
//! | model (`_sweep`, `_unknown`) | victim does                         | checks (what a failure means)                                        |
//! |-----------------------------|-------------------------------------|----------------------------------------------------------------------|
//! | `event_set`                 | `set` while a survivor waits        | an acked set is seen by every later wait; waiters finish             |
//! | `event_wait`                | untimed `wait`; a survivor sets     | a dead waiter does not wedge `set`: the other waiter is woken (no timeouts: a lost wake-up deadlocks) |
//! | `queue_put`                 | `put`, racing a live producer       | the acked message arrives once, the live one too; the dead claim is stepped over and its slot reused |
//! | `queue_get`                 | `get` of one of two messages        | no message twice; at most the one it was taking is lost; the queue works after (slots freed) |
//! | `queue_reserve_commit`      | `try_reserve`, write, `commit`      | as `queue_put`: a committed message arrives once, an abandoned claim is recovered |
//! | `queue_get_ref`             | `try_get_ref`, read, drop           | as `queue_get`, for the in-place read                                |
//! | `queue_close`               | `close`; a survivor blocked in `get` | an acked close wakes the getter by itself (no timeouts: a lost wake-up deadlocks); else a second close finishes the job |
//! | `pipe_send`                 | two `send`s                         | the reader gets the acked messages in order, then at most the next one whole, then `Disconnected` |
//! | `pipe_send_streamed`        | one `send` larger than the ring     | the reader gets it whole or `Disconnected`, never a part             |
//! | `pipe_recv`                 | two `recv`s through a full ring     | the sender finishes (`Ok` or `Disconnected`, never `Ok` after it); the victim got what was sent, in order |
//! | `lock_unlock`               | `lock`, write, `unlock`, racing a survivor | exclusion (loom cell); a lock the victim died holding is taken over and exactly one taker told `owner_died`; otherwise nobody is told |
//! | `lock_unlock_waiting`       | the same while the survivor holds long | the victim dies at each step of its spin, `WAITERS` CAS, timed sleep and liveness check of a live owner (which it must never rob) |
//! | `lock_unlock_holding`       | the same, holding long              | the survivor polls while the victim dies holding, or dies in `unlock_slow` |
//! | `lock_takeover`             | `lock` of a lock whose holder died  | takeover by victim or survivor; the deaths reported exactly (see the model) |
//! | `lock_handoff`              | sleeps, is handed the lock by a fair unlock | the reservation a dead recipient left is taken by the polling survivor |
//!
//! `_unknown` variants run the same model with every liveness check of a
//! live thread answering "unknown". (`event_wait` and `queue_close` run
//! without timeouts, where liveness is never read: no variant.)
//!
//! Step counts and times (LOOM_MAX_PREEMPTIONS=2, release, this machine;
//! `lock_handoff` uses one preemption and skips the spin): event_set 4,
//! event_wait 6, queue_put 35, queue_get 42, queue_reserve_commit 35,
//! queue_get_ref 42, queue_close 23, pipe_send 23, pipe_send_streamed 60,
//! pipe_recv 50, lock_unlock 6, lock_unlock_waiting 144,
//! lock_unlock_holding 9, lock_takeover 129, lock_handoff 126 (26 run);
//! the whole file ~3 min, half of it `lock_handoff`.
//!
//! Mutants run by hand against a scratch copy of `src/` (each made the
//! named sweeps fail, at the step printed):
//!
//! - `lock_slow` takeover `acquired(me, key, died)` → `false` (the report
//!   lost): every `lock_*` sweep ("deaths reported").
//! - queue `recover.rs` `stamp_alive` → always `true` (dead claims never
//!   recovered): `queue_put`, `queue_get`, `queue_get_ref`,
//!   `queue_reserve_commit` (the queue unusable after the death).
//! - pipe `Peer::gone` never judging the peer dead: every `pipe_*` sweep
//!   (the survivor loops: loom's branch limit). (The same mutant in
//!   `peer_gone_now`, the readiness check, survived: these sweeps never
//!   reach it; `loom_waitset` would, with a pipe source.)
//! - `RawQueue::close` not waking `not_empty`: `queue_close` (deadlock).
//! - `judge` refusing a hand-off to a thread that slept: `lock_handoff`
//!   (already at k = 0: the model reaches the hand-off).
#![cfg(loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use shmkit::raw::queue_model::HeapQueue;
use shmkit::raw::{RawEvent, RawQueue};
use shmkit::sync::loom_support::{ack, acks, spare, sweep, victim, Sweep};
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

/// Lock sweeps: a waiter spins up to 100 times (loom yields) before it
/// sleeps, which takes more than loom's default 1000 branches.
fn fire_lock(unknown: bool) -> Sweep {
    Sweep {
        unknown,
        max_branches: Some(20_000),
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
            Err(Error::Timeout { .. }) | Err(Error::Empty { .. }) | Err(Error::Closed { .. }) => {
                return
            }
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
/// main thread drains after both. Mutant: `recover.rs` judging every
/// participant alive: a dead claim is never recovered, and the queue is
/// unusable after the death (`check_usable` times out).
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

/// Two messages queued; the victim takes one (`take`) while a survivor
/// takes one too; the main thread drains after both. No message twice; the
/// victim's acked one nowhere else; at most the one it was taking lost.
fn queue_take(label: &str, opts: Sweep, take: fn(&RawQueue<'_>) -> Option<u8>) {
    sweep(label, opts, move || {
        let q = Arc::new(HeapQueue::new(2, 1));
        {
            let h = q.handle();
            h.try_put(b"a").unwrap();
            h.try_put(b"b").unwrap();
        }
        let s = {
            let q = q.clone();
            thread::spawn(move || q.handle().get_timeout(T).ok())
        };
        let v = {
            let q = q.clone();
            victim(move || {
                if let Some(m) = take(&q.handle()) {
                    ack(u64::from(m));
                }
            })
        };
        let mut got: Vec<u8> = s.join().unwrap().map(|m| m[0]).into_iter().collect();
        let done = v.join().is_some();
        let h = q.handle();
        drain(&h, &mut got);
        let mine: Vec<u8> = acks().iter().map(|&a| a as u8).collect();
        got.extend(&mine);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "a message taken twice: {got:?}");
        let lost = 2 - got.len();
        assert!(
            lost <= usize::from(!done),
            "lost {lost} (victim done: {done}): {got:?}"
        );
        check_usable(&h);
    });
}

fn get_one(q: &RawQueue<'_>) -> Option<u8> {
    q.get_timeout(T).ok().map(|m| m[0])
}

fn get_ref_one(q: &RawQueue<'_>) -> Option<u8> {
    let g = q.try_get_ref().ok()?;
    let m = g[0];
    drop(g);
    Some(m)
}

/// Mutant: `GetGrant`'s claim judged alive forever (recover.rs never frees
/// a dead READING claim): `check_usable` then cannot put past the slot.
#[test]
fn queue_get_sweep() {
    queue_take("queue_get", fire(), get_one);
}

#[test]
fn queue_get_sweep_unknown() {
    queue_take("queue_get", fire_unknown(), get_one);
}

#[test]
fn queue_get_ref_sweep() {
    queue_take("queue_get_ref", fire(), get_ref_one);
}

#[test]
fn queue_get_ref_sweep_unknown() {
    queue_take("queue_get_ref", fire_unknown(), get_ref_one);
}

/// The victim reserves, writes and commits while a live producer puts.
fn queue_reserve_commit(opts: Sweep) {
    sweep("queue_reserve_commit", opts, || {
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
                let h = q.handle();
                if let Ok(mut g) = h.try_reserve(1) {
                    g[0] = b'r';
                    g.commit().unwrap();
                    ack(u64::from(b'r'));
                };
            })
        };
        p.join().unwrap();
        let done = v.join().is_some();
        let h = q.handle();
        let mut got = Vec::new();
        drain(&h, &mut got);
        check_delivery(&got, b"rx");
        assert!(
            got.contains(&b'x'),
            "the live producer's message lost: {got:?}"
        );
        if done {
            assert!(got.contains(&b'r'));
        }
        check_usable(&h);
    });
}

#[test]
fn queue_reserve_commit_sweep() {
    queue_reserve_commit(fire());
}

#[test]
fn queue_reserve_commit_sweep_unknown() {
    queue_reserve_commit(fire_unknown());
}

/// The victim closes while a survivor is blocked in an untimed `get` (no
/// timeouts: a lost wake-up deadlocks). An acked close must wake the
/// getter by itself; otherwise a survivor closes again, which must finish
/// the job whatever the dead closer left.
#[test]
fn queue_close_sweep() {
    sweep("queue_close", no_timeouts(), || {
        let q = Arc::new(HeapQueue::new(2, 1));
        let s = {
            let q = q.clone();
            thread::spawn(move || q.handle().get())
        };
        let v = {
            let q = q.clone();
            victim(move || {
                q.handle().close();
                ack(1);
            })
        };
        v.join();
        let h = q.handle();
        if acks().is_empty() {
            h.close();
        }
        assert!(matches!(s.join().unwrap(), Err(Error::Closed { .. })));
        assert!(matches!(h.try_put(b"z"), Err(Error::Closed { .. })));
    });
}

// ---- Pipe --------------------------------------------------------------

use shmkit::raw::pipe_model::HeapPipe;

fn msg(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// The victim (end 0) sends `msgs` (len, seed), acking each; the main
/// thread (end 1) receives until `Disconnected`. It must get the acked
/// messages in order, then at most the next one, whole.
fn pipe_send(label: &str, opts: Sweep, ring: usize, max: usize, msgs: &'static [(usize, u8)]) {
    sweep(label, opts, move || {
        let p = Arc::new(HeapPipe::new(ring, max));
        let mut b = p.end1();
        let v = {
            let p = p.clone();
            victim(move || {
                let mut a = spare(|| p.end0());
                for &(len, seed) in msgs {
                    a.send(&msg(len, seed)).unwrap();
                    ack(u64::from(seed));
                }
            })
        };
        let mut got = Vec::new();
        loop {
            match b.recv() {
                Ok(m) => got.push(m),
                Err(Error::Disconnected { .. }) => break,
                Err(e) => panic!("recv: {e:?}"),
            }
        }
        v.join();
        let acked = acks().len();
        assert!(
            got.len() >= acked,
            "acked message lost: {} of {acked}",
            got.len()
        );
        assert!(
            got.len() <= (acked + 1).min(msgs.len()),
            "more than was sent"
        );
        for (m, &(len, seed)) in got.iter().zip(msgs) {
            assert_eq!(*m, msg(len, seed), "torn or out of order");
        }
        drop(b);
    });
}

/// Mutant: the reader's liveness verdict on the writer ignored (treated
/// alive): the reader never returns `Disconnected` (branch limit).
#[test]
fn pipe_send_sweep() {
    pipe_send("pipe_send", fire(), 64, 64, &[(5, 1), (3, 2)]);
}

#[test]
fn pipe_send_sweep_unknown() {
    pipe_send("pipe_send", fire_unknown(), 64, 64, &[(5, 1), (3, 2)]);
}

/// A message of 100 bytes through a 64-byte ring: streamed in parts.
#[test]
fn pipe_send_streamed_sweep() {
    pipe_send("pipe_send_streamed", fire(), 64, 128, &[(100, 7)]);
}

/// The victim (end 1) receives two 40-byte messages through a 64-byte ring
/// (the second send must wait for the first to be read); the main thread
/// (end 0) sends both: each send returns `Ok` or `Disconnected`, never
/// hangs, and the victim's acked messages are what was sent, in order.
fn pipe_recv(opts: Sweep) {
    sweep("pipe_recv", opts, || {
        let p = Arc::new(HeapPipe::new(64, 64));
        let mut a = p.end0();
        let v = {
            let p = p.clone();
            victim(move || {
                let mut b = spare(|| p.end1());
                for i in 0..2u64 {
                    let m = b.recv().unwrap();
                    assert_eq!(m, msg(40, i as u8), "torn or out of order");
                    ack(i);
                }
            })
        };
        let mut gone = false;
        for i in 0..2u8 {
            match a.send(&msg(40, i)) {
                Ok(()) => assert!(!gone, "sent after Disconnected"),
                Err(Error::Disconnected { .. }) => gone = true,
                Err(e) => panic!("send: {e:?}"),
            }
        }
        let done = v.join().is_some();
        assert!(!(done && gone), "Disconnected from a live reader");
        assert_eq!(acks(), (0..acks().len() as u64).collect::<Vec<_>>());
        drop(a);
    });
}

#[test]
fn pipe_recv_sweep() {
    pipe_recv(fire());
}

#[test]
fn pipe_recv_sweep_unknown() {
    pipe_recv(fire_unknown());
}

// ---- Lock --------------------------------------------------------------

use loom::cell::UnsafeCell;
use shmkit::raw::RawLock;
use shmkit::sync::loom_support::{at_death, current_tid, finding, timed_waits_block};

/// Incremented non-atomically under the lock: overlapping holders are a
/// loom causality violation.
#[derive(Default)]
struct Counter(UnsafeCell<u32>);

// SAFETY: accessed only under the `RawLock` the models test.
unsafe impl Sync for Counter {}

impl Counter {
    fn bump(&self) {
        // SAFETY: called only while holding the lock (the property tested).
        self.0.with_mut(|p| unsafe { *p += 1 });
    }
}

/// `SPIN_LIMIT` in `src/raw/lock.rs`; a hold of [`LONG`] yields makes a
/// waiter stop spinning and go the sleeping (here: polling) way.
const SRC_SPIN_LIMIT: usize = 100;
const LONG: usize = SRC_SPIN_LIMIT + 4;

/// Takes the lock, bumps, keeps it `hold` yields, unlocks; whether it was
/// told `owner_died`.
fn locked_bump(lock: &RawLock, c: &Counter, hold: usize) -> bool {
    let g = lock.lock().expect("lock");
    c.bump();
    for _ in 0..hold {
        thread::yield_now();
    }
    g.owner_died()
}

/// After everything, the lock is free and reports no death.
fn assert_quiescent(lock: &RawLock) {
    let g = lock.try_lock().unwrap().expect("lock left held");
    assert!(!g.owner_died(), "a death reported twice");
}

/// The victim's `locked_bump`: acks (1) a report of `owner_died` as soon
/// as `lock` returns, before it can die in `unlock` having been told.
fn victim_bump(lock: &Arc<RawLock>, c: &Counter, hold: usize) {
    autopsy_holds(lock);
    let g = lock.lock().expect("lock");
    if g.owner_died() {
        ack(1);
    }
    c.bump();
    for _ in 0..hold {
        thread::yield_now();
    }
    drop(g);
}

/// Arms the victim's autopsy: at death, does the lock word name it?
fn autopsy_holds(lock: &Arc<RawLock>) {
    let (lock, me) = (lock.clone(), current_tid());
    at_death(move || u64::from(lock.owner_tid() == Some(me)));
}

/// The victim locks, bumps, unlocks while a survivor does the same; the
/// main thread locks after both. A death while the word names the victim
/// must be reported to exactly one later taker; no other report. Mutant:
/// the takeover's `acquired(me, key, died)` → `false` (report lost).
///
/// `holds` = (survivor's, victim's): with the survivor holding long, the
/// victim dies at each step of its spin, `WAITERS` CAS, sleep (timed out)
/// and liveness check of a live owner; with the victim holding long, the
/// survivor is polling when the victim dies holding, or in `unlock_slow`.
fn lock_unlock(label: &str, opts: Sweep, (s_hold, v_hold): (usize, usize)) {
    sweep(label, opts, move || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let s = {
            let (lock, c) = (lock.clone(), c.clone());
            thread::spawn(move || locked_bump(&lock, &c, s_hold))
        };
        let v = {
            let (lock, c) = (lock.clone(), c.clone());
            victim(move || victim_bump(&lock, &c, v_hold))
        };
        let mut reports = u32::from(s.join().unwrap());
        v.join();
        reports += u32::from(locked_bump(&lock, &c, 0));
        assert!(
            acks().is_empty(),
            "the victim was told of a death that did not happen"
        );
        let held = finding() == Some(1);
        assert_eq!(
            reports,
            u32::from(held),
            "deaths reported (victim died holding: {held})"
        );
        assert_quiescent(&lock);
    });
}

#[test]
fn lock_unlock_sweep() {
    lock_unlock("lock_unlock", fire_lock(false), (0, 0));
}

#[test]
fn lock_unlock_sweep_unknown() {
    lock_unlock("lock_unlock", fire_lock(true), (0, 0));
}

#[test]
fn lock_unlock_waiting_sweep() {
    lock_unlock("lock_unlock_waiting", fire_lock(false), (LONG, 0));
}

#[test]
fn lock_unlock_waiting_sweep_unknown() {
    lock_unlock("lock_unlock_waiting", fire_lock(true), (LONG, 0));
}

#[test]
fn lock_unlock_holding_sweep() {
    lock_unlock("lock_unlock_holding", fire_lock(false), (0, LONG));
}

#[test]
fn lock_unlock_holding_sweep_unknown() {
    lock_unlock("lock_unlock_holding", fire_lock(true), (0, LONG));
}

/// A holder dies first; then the victim and a survivor race to take the
/// lock over, and the main thread locks after both. The holder's death is
/// reported to exactly one taker unless the victim took it over and died
/// before returning (then the victim's own death is reported instead); a
/// death of the victim holding is reported once more.
fn lock_takeover(opts: Sweep) {
    sweep("lock_takeover", opts, || {
        let lock = Arc::new(RawLock::new());
        let c = Arc::new(Counter::default());
        let h = {
            let lock = lock.clone();
            thread::spawn(move || {
                let g = lock.lock().unwrap();
                ls_die();
                std::mem::forget(g);
            })
        };
        h.join().unwrap();
        let s = {
            let (lock, c) = (lock.clone(), c.clone());
            thread::spawn(move || locked_bump(&lock, &c, 0))
        };
        let v = {
            let (lock, c) = (lock.clone(), c.clone());
            victim(move || victim_bump(&lock, &c, 0))
        };
        let mut reports = u32::from(s.join().unwrap());
        v.join();
        reports += u32::from(locked_bump(&lock, &c, 0));
        let held = u32::from(finding() == Some(1));
        if acks().is_empty() {
            assert!(
                reports >= 1 && reports <= 1 + held,
                "{reports} reports, victim died holding: {held}"
            );
        } else {
            assert_eq!(
                reports, held,
                "victim was told; then {reports} reports, held {held}"
            );
        }
        assert_quiescent(&lock);
    });
}

fn ls_die() {
    shmkit::sync::loom_support::die();
}

#[test]
fn lock_takeover_sweep() {
    lock_takeover(fire_lock(false));
}

#[test]
fn lock_takeover_sweep_unknown() {
    lock_takeover(fire_lock(true));
}

/// Fair hand-off with the woken waiter dying. The main thread holds a lock
/// whose next contended unlock is fair (`RawLock::new_fair_next`); the
/// victim waits and really sleeps (its timed waits block), a survivor waits
/// polling (its timed waits time out). The main thread's unlock reserves
/// the lock (`HANDOFF | WAITERS`) and wakes the sleeper, the victim, which
/// dies at each step of its way to sleep, of waking, and of taking the
/// reserved lock. The survivor, which has slept (timed out), must take the
/// reservation a dead recipient left (under loom the clock stands still, so
/// the "stale after 20 ms" path never fires: only "a thread that slept may
/// take it" recovers). Checks as `lock_unlock`. Mutant: `judge` refusing a
/// hand-off to a thread that slept (`slept ||` dropped) hangs the survivor
/// (branch limit).
fn lock_handoff(opts: Sweep) {
    sweep("lock_handoff", opts, || {
        let lock = Arc::new(RawLock::new_fair_next());
        let c = Arc::new(Counter::default());
        let g = lock.lock().unwrap();
        let v = {
            let (lock, c) = (lock.clone(), c.clone());
            victim(move || {
                spare(timed_waits_block);
                victim_bump(&lock, &c, 0)
            })
        };
        let s = {
            let (lock, c) = (lock.clone(), c.clone());
            thread::spawn(move || locked_bump(&lock, &c, 0))
        };
        c.bump();
        for _ in 0..LONG {
            thread::yield_now();
        }
        drop(g);
        let mut reports = u32::from(s.join().unwrap());
        v.join();
        reports += u32::from(locked_bump(&lock, &c, 0));
        assert!(
            acks().is_empty(),
            "the victim was told of a death that did not happen"
        );
        let held = finding() == Some(1);
        assert_eq!(
            reports,
            u32::from(held),
            "deaths reported (victim died holding: {held})"
        );
        assert_quiescent(&lock);
    });
}

/// The victim's first 101 steps are its fast-path CAS and its spin, which
/// `lock_unlock_waiting` sweeps; here they cost ~1 s each. One preemption:
/// with two, each model takes ~10 s.
fn handoff_opts(unknown: bool) -> Sweep {
    Sweep {
        preemptions: Some(1),
        skip: SRC_SPIN_LIMIT + 1,
        ..fire_lock(unknown)
    }
}

#[test]
fn lock_handoff_sweep() {
    lock_handoff(handoff_opts(false));
}

#[test]
fn lock_handoff_sweep_unknown() {
    lock_handoff(handoff_opts(true));
}
