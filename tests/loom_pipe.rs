//! Loom models of the SPSC rings under `Pipe` (`RawPipe`): no loss, no
//! duplication, order kept, whole messages (including one streamed through
//! a smaller ring), no lost wake-up, and a peer that stops forever or closes
//! is reported after its last message.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::raw::pipe_model::HeapPipe;
use shmkit::sync::loom_support::{die, model};
use shmkit::Error;

fn msg(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[test]
fn messages_arrive_whole_and_in_order_across_the_wrap() {
    model(false, || {
        let p = Arc::new(HeapPipe::new(64, 256));
        let w = {
            let p = p.clone();
            thread::spawn(move || {
                let mut a = p.end0();
                for (len, seed) in [(40, 1), (30, 2), (0, 3)] {
                    a.send(&msg(len, seed)).unwrap();
                }
            })
        };
        let mut b = p.end1();
        for (len, seed) in [(40, 1), (30, 2), (0, 3)] {
            assert_eq!(b.recv().unwrap(), msg(len, seed));
        }
        w.join().unwrap();
    });
}

#[test]
fn a_message_larger_than_the_ring_is_streamed_whole() {
    model(false, || {
        let p = Arc::new(HeapPipe::new(64, 256));
        let w = {
            let p = p.clone();
            thread::spawn(move || {
                let mut a = p.end0();
                a.send(&msg(130, 9)).unwrap();
                a.send(&msg(3, 4)).unwrap();
            })
        };
        let mut b = p.end1();
        assert_eq!(b.recv().unwrap(), msg(130, 9));
        assert_eq!(b.recv().unwrap(), msg(3, 4));
        w.join().unwrap();
    });
}

#[test]
fn close_is_seen_after_the_last_message() {
    model(false, || {
        let p = Arc::new(HeapPipe::new(64, 64));
        let w = {
            let p = p.clone();
            thread::spawn(move || {
                let mut a = p.end0();
                a.send(b"last").unwrap();
                drop(a);
            })
        };
        let mut b = p.end1();
        assert_eq!(b.recv().unwrap(), b"last");
        assert!(matches!(b.recv(), Err(Error::Disconnected { .. })));
        w.join().unwrap();
    });
}

#[test]
fn a_peer_that_dies_is_seen_after_its_last_message() {
    // Timed waits fire: the reader looks at the peer's liveness.
    model(true, || {
        let p = Arc::new(HeapPipe::new(64, 64));
        let mut b = p.end1();
        let w = {
            let p = p.clone();
            thread::spawn(move || {
                let mut a = p.end0();
                a.send(b"bye").unwrap();
                die();
                std::mem::forget(a);
            })
        };
        assert_eq!(b.recv().unwrap(), b"bye");
        assert!(matches!(b.recv(), Err(Error::Disconnected { .. })));
        w.join().unwrap();
    });
}
