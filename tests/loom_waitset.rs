//! Loom models of the multi-source wait under `WaitSet` (`src/raw/wait.rs`):
//! registration (arming every source) racing the notify that makes one
//! ready. Under loom `wait_any` is a real multi-word sleep
//! (`src/sync/model.rs`), so a wake-up lost between the checks, the arming
//! and the sleep is a loom deadlock.
//!
//! | model                   | checks                                                      |
//! |-------------------------|-------------------------------------------------------------|
//! | `put_wakes_waitset`     | a set waiting on a queue and an event returns the queue ready after a `put` |
//! | `set_wakes_waitset`     | ... the event ready after a `set`                           |
//! | `put_and_set_race`      | both racing: it returns, and what it says is ready is ready |
//!
//! Mutants run by hand (see the commit's report): `RawEvent::arm` not
//! setting `WAITERS` (then `set` skips the wake) deadlocks
//! `set_wakes_waitset`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::raw::queue_model::HeapQueue;
use shmkit::raw::wait_model::wait_get_or_set;
use shmkit::raw::RawEvent;
use shmkit::sync::loom_support::model;

struct Both {
    q: HeapQueue,
    ev: RawEvent,
}

fn both() -> Arc<Both> {
    Arc::new(Both {
        q: HeapQueue::new(2, 1),
        ev: RawEvent::new(),
    })
}

#[test]
fn put_wakes_waitset() {
    model(false, || {
        let b = both();
        let w = {
            let b = b.clone();
            thread::spawn(move || wait_get_or_set(&b.q.handle(), &b.ev))
        };
        b.q.handle().try_put(b"m").unwrap();
        assert_eq!(w.join().unwrap(), [0]);
    });
}

#[test]
fn set_wakes_waitset() {
    model(false, || {
        let b = both();
        let w = {
            let b = b.clone();
            thread::spawn(move || wait_get_or_set(&b.q.handle(), &b.ev))
        };
        b.ev.set();
        assert_eq!(w.join().unwrap(), [1]);
    });
}

#[test]
fn put_and_set_race() {
    model(false, || {
        let b = both();
        let w = {
            let b = b.clone();
            thread::spawn(move || wait_get_or_set(&b.q.handle(), &b.ev))
        };
        let p = {
            let b = b.clone();
            thread::spawn(move || b.q.handle().try_put(b"m").unwrap())
        };
        b.ev.set();
        let ready = w.join().unwrap();
        p.join().unwrap();
        assert!(!ready.is_empty());
        if ready.contains(&0) {
            assert_eq!(b.q.handle().try_get().unwrap(), b"m");
        }
        assert!(b.ev.is_set());
    });
}
