//! Leases under loom, with the lease holder dying at every step
//! (`loom_support::sweep`, as in `tests/loom_death.rs`).
//!
//! Run: `ci/loom.sh loom_lease`.
//!
//! | model (`_sweep`, `_unknown`) | victim does                               | checks (what a failure means) |
//! |------------------------------|-------------------------------------------|-------------------------------|
//! | `lease_ack`                  | `get_lease`, `ack`, racing a survivor doing the same | every message acked exactly once: none twice (a redelivery after an ack), none lost (a dead lease not given back), but the one the victim acked and died before it recorded; `join` returns once all are acked |
//! | `lease_nack`                 | `get_lease`, then drops it (the nack)     | the message is acked once by a survivor, whatever step the victim died at |
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmkit::raw::queue_model::HeapQueue;
use shmkit::raw::RawQueue;
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

/// Takes one message under a lease (timed) and acks it: its tag.
fn lease_ack_one(q: &RawQueue<'_>) -> Option<u8> {
    let l = q.get_lease_timeout(T).ok()?;
    let m = l[0];
    l.ack().expect("ack of a live lease");
    Some(m)
}

/// Finishes the work from the main thread: leases and acks until `join`
/// says every message put is acked (bounded: a lost message makes the
/// model fail instead of looping).
fn finish(q: &RawQueue<'_>, got: &mut Vec<u8>) {
    for _ in 0..4 {
        match q.join_timeout(T) {
            Ok(()) => return,
            Err(Error::Timeout { .. }) => {}
            Err(e) => panic!("join: {e:?}"),
        }
        if let Some(m) = lease_ack_one(q) {
            got.push(m);
        }
    }
    panic!("join never returned: got {got:?}");
}

/// Two messages; the victim leases and acks one while a survivor does the
/// same; the main thread finishes. Mutant: `recover_claim` freeing a dead
/// lease's slot instead of giving it back (a plain get's rule): the
/// message the victim died holding is lost (both sweeps fail).
fn lease_ack(opts: Sweep) {
    sweep("lease_ack", opts, || {
        let q = Arc::new(HeapQueue::new(2, 1));
        {
            let h = q.handle();
            h.try_put(b"a").unwrap();
            h.try_put(b"b").unwrap();
        }
        let s = {
            let q = q.clone();
            thread::spawn(move || lease_ack_one(&q.handle()))
        };
        // The message the victim is about to ack (tag + 1), set before its
        // ack: only that one may be missing from the records, and only if
        // the victim died after setting it.
        let acking = Arc::new(AtomicU64::new(0));
        let v = {
            let q = q.clone();
            let acking = acking.clone();
            victim(move || {
                let h = q.handle();
                let got = h.get_lease_timeout(T);
                if let Ok(l) = got {
                    let m = l[0];
                    acking.store(u64::from(m) + 1, Ordering::SeqCst);
                    l.ack().expect("ack of a live lease");
                    ack(u64::from(m));
                }
            })
        };
        let mut got: Vec<u8> = s.join().unwrap().into_iter().collect();
        let done = v.join().is_some();
        let h = q.handle();
        finish(&h, &mut got);
        got.extend(acks().iter().map(|&a| a as u8));
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "a message acked twice: {got:?}");
        let pending = acking.load(Ordering::SeqCst);
        for m in [b'a', b'b'] {
            let excused = !done && pending == u64::from(m) + 1;
            assert!(
                got.contains(&m) || excused,
                "message {} lost (victim done: {done}, acking {pending}): {got:?}",
                m as char
            );
        }
        assert!(h.is_empty());
    });
}

#[test]
fn lease_ack_sweep() {
    lease_ack(fire());
}

#[test]
fn lease_ack_sweep_unknown() {
    lease_ack(fire_unknown());
}

/// One message; the victim leases it and drops the lease (gives it back);
/// the main thread finishes. The message is acked exactly once. The mutant
/// above fails this too (both sweeps).
fn lease_nack(opts: Sweep) {
    sweep("lease_nack", opts, || {
        let q = Arc::new(HeapQueue::new(1, 1));
        q.handle().try_put(b"a").unwrap();
        let v = {
            let q = q.clone();
            victim(move || {
                let h = q.handle();
                drop(h.try_get_lease());
            })
        };
        v.join();
        let h = q.handle();
        let mut got = Vec::new();
        finish(&h, &mut got);
        assert_eq!(
            got, b"a",
            "the message given back (or left by the dead) is acked once"
        );
    });
}

#[test]
fn lease_nack_sweep() {
    lease_nack(fire());
}

#[test]
fn lease_nack_sweep_unknown() {
    lease_nack(fire_unknown());
}
