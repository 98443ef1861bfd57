//! `PipeEnd::split`, the pipe iterator and the `try_` forms: halves used
//! from two threads, the end closing only with its last half, the segment
//! removed then, and a killed peer seen by both halves.

mod common;

use std::time::Duration;

use common::{dispatch, spawn, unique_name, watchdog, Cleanup};
use shmkit::{Direction, Error, Pipe};

#[test]
fn child() {
    dispatch(&[("echo", echo)]);
}

const LIMIT: Duration = Duration::from_secs(60);

/// Echoes every message until the peer is gone.
fn echo(args: &[String]) {
    let mut end = Pipe::open(&args[0]).unwrap();
    while let Ok(m) = end.recv() {
        if end.send(&m).is_err() {
            break;
        }
    }
}

#[test]
fn halves_send_and_receive_from_two_threads_at_once() {
    let _w = watchdog(LIMIT);
    let a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let n = 2000u32;
    let echo = std::thread::spawn(move || {
        while let Ok(m) = b.recv() {
            b.send(&m).unwrap();
        }
    });
    let (mut tx, mut rx) = a.split();
    // 2000 messages of 1 KiB are more than both rings hold, so the sender
    // finishes only if the receiver drains at the same time: neither half
    // holds up the other.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..n {
            let m = rx.recv().unwrap();
            got.push(u32::from_ne_bytes(m[..4].try_into().unwrap()));
        }
        (got, rx)
    });
    for i in 0..n {
        let mut m = [0u8; 1024];
        m[..4].copy_from_slice(&i.to_ne_bytes());
        tx.send(&m).unwrap();
    }
    let (got, rx) = reader.join().unwrap();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    drop((tx, rx));
    echo.join().unwrap();
}

#[test]
fn the_end_closes_when_its_last_half_drops_and_the_segment_goes_then() {
    let _w = watchdog(LIMIT);
    let name = unique_name("split-close");
    let _c = Cleanup(vec![name.clone()]);
    let a = Pipe::create(&name).unwrap();
    let mut b = Pipe::open(&name).unwrap();
    let (mut tx, rx) = a.split();
    tx.send(b"last").unwrap();
    drop(tx);
    assert!(
        !b.is_disconnected(),
        "the receiving half still holds the end"
    );
    assert!(shmkit::inspect(&name).is_ok(), "removed with a half alive");
    drop(rx);
    assert!(b.is_disconnected());
    assert_eq!(b.recv().unwrap(), b"last");
    assert!(matches!(b.recv(), Err(Error::Disconnected { .. })));
    assert!(matches!(
        shmkit::inspect(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_half_of_a_one_way_end_refuses_the_missing_direction() {
    let _w = watchdog(LIMIT);
    let a = Pipe::builder()
        .direction(Direction::CreatorSends)
        .create_unique()
        .unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let (mut tx, mut rx) = a.split();
    assert!(matches!(rx.try_recv(), Err(Error::InvalidArgument(_))));
    tx.send(b"one way").unwrap();
    assert_eq!(b.recv().unwrap(), b"one way");
}

#[test]
fn a_killed_peer_is_seen_by_both_halves() {
    let _w = watchdog(LIMIT);
    let a = Pipe::create_unique().unwrap();
    let name = a.name().to_owned();
    let (mut tx, mut rx) = a.split();
    let peer = spawn("echo", &[&name]);
    tx.send(b"ping").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"ping");
    std::thread::scope(|s| {
        let blocked = s.spawn(|| rx.recv());
        std::thread::sleep(Duration::from_millis(20));
        peer.kill();
        assert!(matches!(
            blocked.join().unwrap(),
            Err(Error::Disconnected { .. })
        ));
    });
    assert!(tx.is_disconnected());
    // A send notices a dead peer at its next liveness look (every 256th
    // send, or once the ring is full and it waits): never a hang.
    let mut sent = 0u32;
    let end = loop {
        match tx.send(&[0u8; 512]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(end, Error::Disconnected { .. }),
        "{end:?} after {sent} sends"
    );
}

#[test]
fn iterating_an_end_ends_at_disconnect_after_the_last_message() {
    let _w = watchdog(LIMIT);
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    for i in 0..5u8 {
        b.send(&[i]).unwrap();
    }
    drop(b);
    let mut it = a.iter();
    let got: Vec<Vec<u8>> = it.by_ref().collect();
    assert_eq!(got, (0..5u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert!(matches!(it.error(), Some(Error::Disconnected { .. })));
}

#[test]
fn try_forms_say_full_empty_and_disconnected() {
    let _w = watchdog(LIMIT);
    let mut a = Pipe::builder().capacity(64).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    assert!(matches!(b.try_recv(), Err(Error::Empty { .. })));
    assert!(matches!(b.try_recv_value::<u8>(), Err(Error::Empty { .. })));
    a.try_send(&[1; 40]).unwrap();
    assert!(matches!(a.try_send(&[2; 40]), Err(Error::Full { .. })));
    assert_eq!(b.try_recv().unwrap(), [1; 40]);
    a.try_send_value(&7u64).unwrap();
    assert_eq!(b.try_recv_value::<u64>().unwrap(), 7);
    drop(a);
    assert!(matches!(b.try_recv(), Err(Error::Disconnected { .. })));
    assert!(matches!(b.try_send(b"x"), Err(Error::Disconnected { .. })));
}

#[test]
fn a_typed_receive_of_the_wrong_size_returns_the_message_and_the_next_one_works() {
    let _w = watchdog(LIMIT);
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    a.send(b"0123456789").unwrap(); // longer than a u32
    a.send(b"01").unwrap(); // shorter
    a.send_value(&5u32).unwrap();
    for want in [&b"0123456789"[..], b"01"] {
        match b.recv_value::<u32>() {
            Err(Error::WrongSize {
                expected: 4,
                message,
                ..
            }) => assert_eq!(message, want),
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(b.recv_value::<u32>().unwrap(), 5);
    let t = Duration::from_millis(20);
    let start = std::time::Instant::now();
    assert!(matches!(
        b.recv_value_timeout::<u32>(t),
        Err(Error::Timeout { .. })
    ));
    assert!(start.elapsed() >= t, "returned early");
}
