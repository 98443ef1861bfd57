//! Review: waits that watch a different owner each time (a lock taken by
//! a new thread each round, which then exits) must not leak pidfds or
//! registrations: the open descriptors stay bounded.

#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::watchdog;
use shmkit::Lock;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn waits_on_ever_new_owners_leak_no_descriptors() {
    let _w = watchdog(Duration::from_secs(120));
    let lock = Lock::create_unique().unwrap();
    let before = open_fds();
    for round in 0..600 {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let lock = &lock;
        std::thread::scope(|s| {
            s.spawn(move || {
                let g = lock.lock().unwrap();
                held_tx.send(()).unwrap();
                let _ = go_rx.recv();
                drop(g);
            });
            held_rx.recv().unwrap();
            // A sleep that watches the owner thread, then times out.
            let _ = lock.lock_timeout(Duration::from_millis(1));
            if round % 2 == 0 {
                let mut set = shmkit::WaitSet::new();
                set.add(lock).unwrap();
                let _ = set.wait_timeout(Duration::from_millis(1));
            }
            go_tx.send(()).unwrap();
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = open_fds();
    assert!(
        after <= before + 300,
        "{} descriptors more after 600 waits on new owners",
        after - before
    );
    eprintln!("fds before {before}, after {after}");
}
