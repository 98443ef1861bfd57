//! Review: a Lock's spin setting versus deadlines and futures. The spin is
//! set to an hour: a call that spins for its setting past its deadline (or
//! on the executor's thread) never returns, and the watchdog fails the
//! test. No upper bound on time is asserted otherwise.

#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::watchdog;
use shmkit::{Error, Lock, Spin};

const SPIN: Duration = Duration::from_secs(3600);

/// Runs `f` while another thread holds `lock` (taken on the fast path, so
/// no `WAITERS`: a spinner keeps spinning).
fn while_held<R>(lock: &Lock, f: impl FnOnce() -> R) -> R {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let g = lock.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = go_rx.recv();
            drop(g);
        });
        held_rx.recv().unwrap();
        let r = f();
        go_tx.send(()).unwrap();
        r
    })
}

#[test]
fn lock_timeout_returns_by_its_deadline_whatever_the_spin_setting() {
    let _w = watchdog(Duration::from_secs(60));
    let lock = Lock::create_unique().unwrap();
    lock.set_spin(Spin::UpTo(SPIN));
    let took = while_held(&lock, || {
        let t = Instant::now();
        let r = lock.lock_timeout(Duration::from_millis(10));
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        t.elapsed()
    });
    assert!(
        took >= Duration::from_millis(10),
        "returned early: {took:?}"
    );
}

#[test]
fn a_lock_future_poll_never_spins_on_the_executor_thread() {
    let _w = watchdog(Duration::from_secs(60));
    let lock = Lock::create_unique().unwrap();
    lock.set_spin(Spin::UpTo(SPIN));
    let took = while_held(&lock, || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut f = Box::pin(lock.lock_async());
        // The first poll after the liveness interval reads liveness, with
        // lock_timeout(0), which spins as the handle's setting says.
        std::thread::sleep(Duration::from_millis(30));
        let t = Instant::now();
        assert!(f.as_mut().poll(&mut cx).is_pending());
        t.elapsed()
    });
    eprintln!("one poll of lock_async while the lock is held: {took:?}");
}
