//! Review of leases and of "abandoned positions cost no capacity" (the
//! Queue core changes of 2026-12-03): each `#[ignore = "review: …"]` test
//! demonstrates a defect and fails on the reviewed code; the fix removes the
//! `ignore`. The tests that are not ignored pin behaviour the review checked
//! and found right.
//!
//! Crash windows too narrow to hit with a real SIGKILL are reproduced on a
//! heap region by writing exactly the words the killed process leaves (the
//! word offsets are found by watching bytes change, as in
//! tests/regress_queue_fuzz.rs, not hard-coded).

mod common;

use std::time::Duration;

use common::{dispatch, spawn, unique_name, wait_for, watchdog, Cleanup, Region, Words};
use shmkit::{Error, Queue};

#[test]
fn child() {
    dispatch(&[("holder", holder), ("writer", writer)]);
}

const LIMIT: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- a queue on the heap, with its words at hand ----------------------

/// The offsets of the words that `f` moves from `from` to `to`.
fn words_moved(r: &Region, from: u64, to: u64, f: impl FnOnce()) -> Vec<usize> {
    let before = r.words();
    f();
    let after = r.words();
    (0..before.len())
        .filter(|&i| before[i] == from && after[i] == to)
        .map(|i| i * 8)
        .collect()
}

// ---- defects -------------------------------------------------------------

/// A producer that laps round to a given-back message puts it again in
/// place (`redeliver_at`, src/raw/queue/lease.rs): a CAS of the slot from
/// `BACK(t - slots)` to "message of t ready", then `backs -= 1`, then
/// `help_tail(t)`. Killed between the CAS and `help_tail` (or merely
/// preempted there), it leaves a ready message *at* the tail: `tail == t`
/// and the slot of `t` holds `t + 1`. `settled()` counts only `[head,
/// tail)` and looks for leases and BACKs, so it finds nothing and `join`
/// returns Ok while the message waits, undelivered, at the head (and
/// `len()`/`is_empty()` say 0/true while `try_get` returns it).
#[test]
fn join_waits_for_a_message_redelivered_in_place_before_the_tail_moved() {
    let _w = watchdog(LIMIT);
    let (r, ql) = Region::for_queue(2, 16); // 3 slots
    let q = r.init(&ql);
    let moved = words_moved(&r, 0, 1, || q.try_put(b"a").unwrap());
    let slot0 = moved[1]; // the tail moves first (the control block leads)
    let l = q.try_get_lease().unwrap();
    // One hint word: lease claims in the low half, BACKs in the high half.
    let backs = words_moved(&r, 1, 1 << 32, || l.nack().unwrap())[0];
    for m in [&b"b"[..], b"c"] {
        q.try_put(m).unwrap();
        assert_eq!(q.try_get().unwrap(), m);
    }
    // head = tail = 3; slot 0 holds BACK(0). What a producer at t = 3 left
    // after its redelivery CAS and the hint's decrement, before help_tail:
    r.write(slot0, 4);
    r.write(backs, 0);
    let joined = q.join_timeout(ms(50));
    let len = q.len();
    // The message is there to be taken:
    assert_eq!(q.try_get().unwrap(), b"a");
    assert!(
        matches!(joined, Err(Error::Timeout { .. })),
        "join returned {joined:?} while message `a` waited at the head"
    );
    assert_eq!(len, 1, "len() did not count the ready message");
}

fn holder(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let l = q.get_lease().unwrap();
    w.set(0, 1);
    std::thread::sleep(Duration::from_secs(120));
    drop(l);
}

/// Starts a holder that takes the only message under a lease, and kills it.
fn dead_holder(tag: &str) -> (Queue, Cleanup) {
    let name = unique_name(tag);
    let c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 4, 16).unwrap();
    let w = Words::create(1);
    q.put(b"job").unwrap();
    let p = spawn("holder", &[&name, w.name()]);
    assert!(wait_for(LIMIT, || w.get(0) == 1), "holder took no lease");
    p.kill(); // SIGKILL, and reaped: the holder is gone ("no such task")
    (q, c)
}

/// After `close`, a get that finds the head drained returns `Closed` from
/// the first, liveness-free look (`wait_for` propagates the `Err(Closed)`
/// of `claim(false)` at once; `claim_get` → `claim_back(check_dead:
/// false)` → `backs_maybe(false)` ignores the leases hint). So a lease
/// whose holder died is never given back by a get once the queue is
/// closed: every consumer's `get_lease` says `Closed`, and the job is lost
/// (and a `join` would give it back and then wait for ever for a consumer
/// that has gone). The doc promises "Closed once closed and drained (of
/// messages given back too)" and "acked exactly once, provided some
/// consumer keeps taking leases".
#[test]
fn a_closed_queue_redelivers_a_dead_holders_lease_before_it_says_closed() {
    let _w = watchdog(LIMIT);
    let (q, _c) = dead_holder("rev-closed-dead");
    q.close();
    match q.get_lease() {
        Ok(l) => {
            assert_eq!((&*l, l.deliveries()), (&b"job"[..], 2));
            l.ack().unwrap();
        }
        Err(e) => panic!("get_lease after close with a dead holder's lease: {e:?}"),
    };
}

/// `try_get_lease` (and `try_get`, `try_get_ref`) never give back a dead
/// holder's lease: they run `claim_get(check_dead: false)` only, and
/// `back_at` recovers a lease only with `check_dead`. Other LONG claims
/// (a dead `PutGrant`/`GetGrant` at the head) have their owner's liveness
/// read at first sight by `claimant_dead(s, false)`; a lease behind the
/// head is never looked at. A polling consumer (`loop { try_get_lease,
/// else do other work }`) never sees the job again, and with no blocking
/// consumer and no producer lapping round, it is lost.
#[test]
fn try_get_lease_gives_back_a_dead_holders_lease() {
    let _w = watchdog(LIMIT);
    let (q, _c) = dead_holder("rev-try-dead");
    let mut got = None;
    for _ in 0..3 {
        match q.try_get_lease() {
            Ok(l) => {
                got = Some((l.to_vec(), l.deliveries()));
                l.ack().unwrap();
                break;
            }
            Err(Error::Empty { .. }) => {}
            Err(e) => panic!("try_get_lease: {e:?}"),
        }
    }
    assert_eq!(got, Some((b"job".to_vec(), 2)));
}

/// `Closed` is meant to be final ("gets drain what is left and then fail
/// with Closed"), and consumer loops end on it. With a live lease
/// outstanding, a get after `close` says `Closed` (`closed_and_drained`
/// looks at `[head, tail)` only), and then the lease is nacked: its message
/// is delivered to whoever asks again, but every consumer that believed
/// `Closed` has gone. A get should say `Empty`/wait while a lease that may
/// be given back is held (the leases hint, then a scan, as `join` does).
#[test]
fn closed_is_final_while_a_lease_is_outstanding() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(4, 16).unwrap();
    q.put(b"job").unwrap();
    let l = q.try_get_lease().unwrap();
    q.close();
    let r = q.try_get_lease().map(|l| l.to_vec());
    l.nack().unwrap();
    let again = q.try_get_lease().map(|l| l.to_vec());
    assert!(
        !matches!(r, Err(Error::Closed { .. })),
        "Closed while a lease was held; after its nack a get returned {again:?}"
    );
}

/// A lease inherited across `fork` ends in the child in its parent's name:
/// `Lease::drop` (and `ack`, `nack`) CAS the parent's exact claim word
/// (`give_back` → `end_claim`; `release`), with no check that the calling
/// process took it. The claims themselves are protected against this
/// (`me()` re-registers a forked child so that "its claims are never made
/// in its parent's name", src/raw/queue/mod.rs), the end of a lease is
/// not. Here the child merely drops its copy: the parent's live lease is
/// given back and delivered to another consumer while the parent still
/// holds and processes it, and the parent's ack fails. (If the parent had
/// taken it again on the same handle the claim word would be identical and
/// the child's ack would ack the parent's new lease.)
#[test]
fn a_forked_child_does_not_end_its_parents_lease() {
    let _w = watchdog(LIMIT);
    let name = unique_name("rev-fork");
    let _c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 4, 16).unwrap();
    let other = Queue::open(&name).unwrap();
    q.put(b"job").unwrap();
    let l = q.try_get_lease().unwrap();
    // SAFETY: the child only drops its copy of the lease (atomics and a
    // futex wake on the shared mapping) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(l);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: reaps our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let stolen = other.try_get_lease().map(|l| {
        let v = l.to_vec();
        drop(l);
        v
    });
    let acked = l.ack();
    assert!(
        matches!(stolen, Err(Error::Empty { .. })),
        "another consumer got {stolen:?} while the parent held its lease"
    );
    assert!(acked.is_ok(), "the parent's ack failed: {acked:?}");
}

fn writer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let g = q.reserve(3).unwrap();
    w.set(0, 1);
    std::thread::sleep(Duration::from_secs(120));
    drop(g);
}

/// `join` waits for "every message put" to be taken, and `settled()`
/// counts every position in `[head, tail)` but the `SKIP`s (`live`),
/// so a producer SIGKILLed with a grant open (or mid-copy in a plain put)
/// leaves a dead `WRITING` position that `join` waits for. Nothing was
/// put (the put never returned), and `join` recovers dead *leases* on its
/// `check_dead` looks but not dead `WRITING` claims: with no consumer at
/// the head to turn it into a `SKIP`, `join` never returns (here: its
/// timeout). `settled(check_dead)` should help the head on over dead
/// claims (`help_head_a_little(true)`, or recover a dead `WRITING` in
/// `[head, tail)`), as it gives back dead leases.
#[test]
fn join_does_not_wait_for_a_dead_producers_open_position() {
    let _w = watchdog(LIMIT);
    let name = unique_name("rev-join-writer");
    let _c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 4, 16).unwrap();
    let w = Words::create(1);
    let p = spawn("writer", &[&name, w.name()]);
    assert!(wait_for(LIMIT, || w.get(0) == 1), "writer reserved nothing");
    p.kill();
    let r = q.join_timeout(Duration::from_secs(2));
    assert!(
        r.is_ok(),
        "join with only a dead producer's open position: {r:?}"
    );
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
}

/// A producer asleep because the slot at the tail holds a lease
/// (`room_maybe`: `READING(t - slots)` is busy) has room as soon as that
/// lease is nacked: it puts the message again in place and then its own.
/// (Found by review: `give_back` notified `not_empty` only, so the producer
/// slept until its liveness interval; it now notifies `not_full` too. How
/// soon it wakes is not asserted: no timing upper bounds in tests.)
#[test]
fn a_nack_wakes_a_producer_waiting_for_the_leased_slot() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(2, 16).unwrap(); // 3 slots
    q.put(b"a").unwrap();
    let l = q.try_get_lease().unwrap();
    for m in [&b"b"[..], b"c"] {
        q.put(m).unwrap();
        assert_eq!(q.try_get().unwrap(), m);
    }
    // The tail's slot holds the lease on `a`: a put waits for it.
    assert!(matches!(q.try_put(b"d"), Err(Error::Full { .. })));
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let q = &q;
        let p = s.spawn(move || {
            tx.send(()).unwrap();
            q.put_timeout(b"d", Duration::from_secs(30))
        });
        rx.recv().unwrap();
        l.nack().unwrap();
        p.join().unwrap().unwrap();
    });
    assert_eq!(q.try_get().unwrap(), b"a");
    assert_eq!(q.try_get().unwrap(), b"d");
}

// ---- checked and found right ---------------------------------------------

/// A plain put/get sequence stays FIFO across many laps of the
/// non-power-of-two ring, with len()/is_full() agreeing with try_put.
#[test]
fn plain_fifo_and_count_agree_over_many_laps() {
    let (r, ql) = Region::for_queue(7, 8); // 8 slots
    let q = r.init(&ql);
    let (mut next_put, mut next_get) = (0u64, 0u64);
    for round in 0..500u64 {
        let puts = 1 + round % 7;
        for _ in 0..puts {
            let full = q.is_full();
            match q.try_put(&next_put.to_le_bytes()) {
                Ok(()) => {
                    assert!(!full);
                    next_put += 1;
                }
                Err(Error::Full { .. }) => assert!(full && q.len() == 7),
                Err(e) => panic!("{e:?}"),
            }
        }
        let gets = 1 + (round * 3) % 7;
        for _ in 0..gets {
            match q.try_get() {
                Ok(v) => {
                    assert_eq!(v, next_get.to_le_bytes());
                    next_get += 1;
                }
                Err(Error::Empty { .. }) => assert_eq!(next_get, next_put),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(q.len() as u64, next_put - next_get);
    }
}

/// Hints scribbled to u64::MAX cost looks, never an answer or a hang.
#[test]
fn lease_hints_at_u64_max_cost_a_look_only() {
    let _w = watchdog(LIMIT);
    let (r, ql) = Region::for_queue(4, 16);
    let q = r.init(&ql);
    q.try_put(b"a").unwrap();
    let mut held = None;
    // The head and the leases hint move 0 -> 1; the hint comes last.
    let leases = *words_moved(&r, 0, 1, || held = Some(q.try_get_lease().unwrap()))
        .last()
        .unwrap();
    // The same word: lease claims in the low half, BACKs in the high half.
    let backs = words_moved(&r, 1, 1 << 32, || held.take().unwrap().nack().unwrap())[0];
    q.try_get_lease().unwrap().ack().unwrap();
    q.join_timeout(ms(1)).unwrap();
    r.write(leases, u64::MAX);
    r.write(backs, u64::MAX);
    q.join_timeout(ms(1)).unwrap();
    assert!(matches!(q.try_get_lease(), Err(Error::Empty { .. })));
    assert!(matches!(
        q.get_lease_timeout(ms(5)),
        Err(Error::Timeout { .. })
    ));
    q.try_put(b"b").unwrap();
    let l = q.try_get_lease().unwrap();
    assert_eq!(&*l, b"b");
    l.ack().unwrap();
    q.join_timeout(ms(1)).unwrap();
}

/// Head and tail near 2^64 with the slots as a queue that had run that
/// far would hold them (slot `i`: free for the first position >= `x` with
/// `pos % slots == i`). The slot count is no longer a power of two, so
/// `pos % slots` jumps at the 2^64 wrap: position 2^64 - 1 is in slot
/// `(2^64 - 1) % slots`, position 2^64 (= 0) in slot 0, which is still
/// marked free for position 2^64 - (2^64 % slots) + slots. The producer at
/// the wrap finds a state it cannot place and, after 2^16 steps, says
/// `Corrupted` (and so does the next put: nothing changed). Unreachable by
/// honest traffic (2^64 positions), reachable by a scribbled index; the
/// answer is an error, never a panic or a hang (checked here), but the
/// module doc's "positions are 64-bit (wrapping)" no longer holds.
#[test]
#[ignore = "documented limit: slot counts are not powers of two, so positions are exact below 2^64 (a scribbled index near it is Corrupted, never a panic)"]
fn positions_across_the_2_64_wrap_stay_fifo() {
    wrap_at(0);
}

/// The same at the 2^40 wrap of the slot states' positions: fine.
#[test]
fn positions_across_the_2_40_wrap_stay_fifo() {
    wrap_at(1 << 40);
}

fn wrap_at(base: u64) {
    let _w = watchdog(LIMIT);
    let cap = 4;
    let (probe, ql) = Region::for_queue(cap, 8);
    let pq = probe.init(&ql);
    let moved = words_moved(&probe, 0, 1, || pq.try_put(b"x").unwrap());
    let (tail, slot0) = (moved[0], moved[1]);
    let head = words_moved(&probe, 0, 1, || drop(pq.try_get().unwrap()))[0];
    let slots = pq.slots() as u64;
    let stride = 64;
    drop(pq);
    let mut report = Vec::new();
    for back in 1..=2 * slots {
        let x = base.wrapping_sub(back);
        let (r, ql) = Region::for_queue(cap, 8);
        let q = r.init(&ql);
        r.write(head, x);
        r.write(tail, x);
        for i in 0..slots {
            let off = (i + slots - x % slots) % slots;
            let p = x.wrapping_add(off);
            r.write(slot0 + (i as usize) * stride, p & ((1 << 40) - 1));
        }
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut next = 0u64;
            let mut got = 0u64;
            for _ in 0..3 * slots {
                match q.try_put(&next.to_le_bytes()) {
                    Ok(()) => next += 1,
                    Err(Error::Full { .. }) => {}
                    Err(e) => return Err(format!("put {next}: {e:?}")),
                }
                match q.try_get() {
                    Ok(v) => {
                        if v != got.to_le_bytes() {
                            return Err(format!("got {v:?}, expected {got}"));
                        }
                        got += 1;
                    }
                    Err(Error::Empty { .. }) => {}
                    Err(e) => return Err(format!("get {got}: {e:?}")),
                }
            }
            Ok(got)
        }));
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => report.push(format!("head = tail = {base:#x} - {back}: {e}")),
            Err(_) => panic!("a call panicked with head = tail = {base} - {back}"),
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        report.is_empty(),
        "{} of {} starts failed",
        report.len(),
        2 * slots
    );
}

/// Hostile bytes: random lease-era states (`BACK` of any position, lease
/// claims of any participant, deliveries, the `holes`/`leases`/`backs`
/// hints, head and tail) written between random calls of two handles.
/// Every call returns Ok or an Error within its timeout: no panic, no hang
/// (the watchdog), and an acked lease's ack never fails for lack of its
/// claim unless the slot was scribbled meanwhile.
#[test]
fn scribbled_lease_states_and_hints_give_answers_or_errors() {
    let _w = watchdog(LIMIT);
    let seed = common::seed_from_env("SHMKIT_REVIEW_SEED", "scribbled_lease_states");
    let cap = 5;
    let (probe, ql) = Region::for_queue(cap, 8);
    let words = {
        let q = probe.init(&ql);
        let m = words_moved(&probe, 0, 1, || q.try_put(b"x").unwrap());
        let (tail, slot0) = (m[0], m[1]);
        let mut held = None;
        let m = words_moved(&probe, 0, 1, || held = Some(q.try_get_lease().unwrap()));
        let (head, leases) = (m[0], *m.last().unwrap());
        let backs = words_moved(&probe, 1, 1 << 32, || held.take().unwrap().nack().unwrap())[0];
        q.try_get_lease().unwrap().ack().unwrap();
        q.try_put(b"y").unwrap();
        let g = q.try_reserve(1).unwrap();
        q.try_put(b"z").unwrap();
        let holes = words_moved(&probe, 0, 1, || drop(g))[0];
        (tail, head, slot0, leases, backs, holes, q.slots())
    };
    let (tail, head, slot0, leases, backs, holes, slots) = words;
    let stride = 64usize;
    for trial in 0..common::count_from_env("SHMKIT_REVIEW_TRIALS", 40) {
        let mut rng = common::Rng::new(seed, trial);
        let (r, ql) = Region::for_queue(cap, 8);
        let a = r.init(&ql);
        let b = r.attach();
        let mut held = Vec::new();
        for step in 0..60u64 {
            let q = if rng.one_in(2) { &a } else { &b };
            if rng.one_in(4) {
                let h = r.read(head);
                let slot = slot0 + rng.below(slots as u64) as usize * stride;
                let pos = h
                    .wrapping_add(rng.below(2 * slots as u64))
                    .wrapping_sub(slots as u64);
                let p40 = pos & ((1 << 40) - 1);
                let who = rng.below(4) << 40;
                let (at, v) = match rng.below(9) {
                    0 => (slot, (1 << 58) | p40),
                    1 => (slot, (1 << 63) | (1 << 61) | (1 << 59) | who | p40),
                    2 => (slot + 8, rng.next()), // len and deliveries
                    3 => (leases, [0, 1, u64::MAX][rng.below(3) as usize]),
                    4 => (backs, [0, 1, u64::MAX][rng.below(3) as usize]),
                    5 => (holes, [0, 1, u64::MAX][rng.below(3) as usize]),
                    6 => (head, h.wrapping_add(rng.below(3)).wrapping_sub(1)),
                    7 => (
                        tail,
                        r.read(tail).wrapping_add(rng.below(3)).wrapping_sub(1),
                    ),
                    _ => (slot, (1 << 60) | p40),
                };
                // Scribbles land between calls; a held lease's slot may be
                // among them (then its end may fail, as documented).
                r.write(at, v);
            }
            let res: Result<(), Error> = match rng.below(9) {
                0 | 1 => q.try_put(&step.to_le_bytes()),
                2 => q.try_get().map(drop),
                3 => q.try_get_lease().map(|l| held.push(l)),
                4 => q.get_lease_timeout(ms(1)).map(|l| held.push(l)),
                5 => held.pop().map_or(Ok(()), |l| l.ack()),
                6 => held.pop().map_or(Ok(()), |l| l.nack()),
                7 => q.join_timeout(ms(1)),
                _ => {
                    let _ = (q.len(), q.is_full(), q.is_empty());
                    q.put_timeout(b"t", ms(1))
                }
            };
            match res {
                Ok(())
                | Err(Error::Empty { .. })
                | Err(Error::Full { .. })
                | Err(Error::Timeout { .. })
                | Err(Error::Closed { .. })
                | Err(Error::Corrupted { .. })
                | Err(Error::BufferTooSmall { .. }) => {}
                Err(e) => panic!("seed {seed:#x} trial {trial} step {step}: {e:?}"),
            }
            assert!(q.len() <= cap);
        }
        drop(held);
    }
}
