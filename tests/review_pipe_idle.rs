//! Review: waiting on a pipe whose peer has not opened it yet (a server
//! waiting for its client) should sleep, not wake every liveness interval:
//! there is nobody whose death to watch for. The watch of a zero stamp is
//! "unwatched", so the wait sleeps 20 ms at a time (50 wake-ups a second,
//! for as long as no peer comes). Counted, not timed: the waiting thread's
//! voluntary context switches over 1 s.

#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::watchdog;
use shmkit::{Error, Pipe, WaitSet};

fn switches(tid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn wakeups_in_one_second(wait: impl FnOnce() + Send) -> u64 {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            wait();
        });
        let tid = tid_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let c0 = switches(tid);
        std::thread::sleep(Duration::from_secs(1));
        switches(tid) - c0
    })
}

#[test]
fn a_recv_before_the_peer_opens_sleeps() {
    let _w = watchdog(Duration::from_secs(60));
    let mut p = Pipe::create_unique().unwrap();
    let n = wakeups_in_one_second(|| {
        assert!(matches!(
            p.recv_timeout(Duration::from_secs(3)),
            Err(Error::Timeout { .. })
        ));
    });
    assert!(
        n < 10,
        "recv woke {n} times in 1 s waiting for a peer to open"
    );
}

#[test]
fn a_wait_set_on_a_pipe_before_the_peer_opens_sleeps() {
    let _w = watchdog(Duration::from_secs(60));
    let n = wakeups_in_one_second(|| {
        let p = Pipe::create_unique().unwrap();
        let mut set = WaitSet::new();
        set.add(&p).unwrap();
        assert!(matches!(
            set.wait_timeout(Duration::from_secs(3)),
            Err(Error::Timeout { .. })
        ));
    });
    assert!(
        n < 10,
        "the set woke {n} times in 1 s waiting for a peer to open"
    );
}
