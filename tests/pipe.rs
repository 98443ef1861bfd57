//! Pipe: semantics, large messages, dead peers, zero-copy.

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, watchdog};
use shmkit::Direction;
use shmkit::{Error, Event, Pipe};

#[test]
fn child() {
    dispatch(&[("echo", echo), ("send_then_hang", send_then_hang)]);
}

/// Echoes every message back until the peer disconnects.
fn echo(args: &[String]) {
    let mut end = Pipe::open(&args[0]).unwrap();
    loop {
        match end.recv() {
            Ok(m) => end.send(&m).unwrap(),
            Err(Error::Disconnected { .. }) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

/// Sends three messages, says so, then waits to be killed.
fn send_then_hang(args: &[String]) {
    let mut end = Pipe::open(&args[0]).unwrap();
    let sent = Event::open(&args[1]).unwrap();
    for m in [&b"one"[..], b"", b"three"] {
        end.send(m).unwrap();
    }
    sent.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn sixteen_mib_round_trip_through_a_64_kib_pipe() {
    let _w = watchdog(Duration::from_secs(120));
    let mut end = Pipe::builder().capacity(64 * 1024).create_unique().unwrap();
    let child = spawn("echo", &[end.name()]);
    let big = pattern(16 << 20, 3);
    end.send(&big).unwrap();
    let back = end.recv().unwrap();
    assert!(back == big, "16 MiB message changed on the way");
    // Sizes around the ring's size, and a few small ones in between.
    for (i, len) in [0, 1, 3, 65_531, 65_532, 65_533, 65_536, 65_537, 200_000, 5]
        .into_iter()
        .enumerate()
    {
        let m = pattern(len, i as u8);
        end.send(&m).unwrap();
        assert_eq!(end.recv().unwrap(), m, "length {len}");
    }
    drop(end);
    child.join();
}

#[test]
fn boundaries_order_and_empty_messages() {
    let _w = watchdog(Duration::from_secs(60));
    let mut a = Pipe::builder().capacity(64).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    for m in [&b"a"[..], b"b", b"cd", b"", b"", b"efg"] {
        a.send(m).unwrap();
        assert_eq!(b.recv().unwrap(), m);
    }
    // Many small messages wrapping around a 64-byte ring, in both directions.
    for i in 0..1000u32 {
        let m = pattern((i % 13) as usize, i as u8);
        b.send(&m).unwrap();
        assert_eq!(a.recv().unwrap(), m);
    }
}

#[test]
fn recv_into_small_buffer_keeps_the_message_and_poll_never_consumes() {
    let _w = watchdog(Duration::from_secs(60));
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    assert!(!b.poll(Duration::ZERO).unwrap());
    let t = Instant::now();
    assert!(!b.poll(Duration::from_millis(100)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
    a.send(b"0123456789").unwrap();
    for _ in 0..3 {
        assert!(b.poll(Duration::ZERO).unwrap());
    }
    let mut small = [0u8; 4];
    for _ in 0..2 {
        assert!(matches!(
            b.recv_into(&mut small),
            Err(Error::BufferTooSmall { needed: 10, .. })
        ));
    }
    assert!(b.poll(Duration::ZERO).unwrap());
    let mut buf = [0u8; 10];
    assert_eq!(b.recv_into(&mut buf).unwrap(), 10);
    assert_eq!(&buf, b"0123456789");
    assert!(!b.poll(Duration::ZERO).unwrap());
    // An empty message polls true until read.
    a.send(b"").unwrap();
    assert!(b.poll(Duration::ZERO).unwrap());
    assert!(b.poll(Duration::ZERO).unwrap());
    assert_eq!(b.recv_into(&mut small).unwrap(), 0);
    // The same for a message streamed through a small ring.
    let mut c = Pipe::builder().capacity(64).create_unique().unwrap();
    let mut d = Pipe::open(c.name()).unwrap();
    let sender = std::thread::spawn(move || {
        c.send(&pattern(1000, 1)).unwrap();
        c
    });
    assert!(d.poll(Duration::from_secs(30)).unwrap());
    let mut small = [0u8; 999];
    assert!(matches!(
        d.recv_into(&mut small),
        Err(Error::BufferTooSmall { needed: 1000, .. })
    ));
    let mut buf = vec![0u8; 1000];
    assert_eq!(d.recv_into(&mut buf).unwrap(), 1000);
    assert_eq!(buf, pattern(1000, 1));
    drop(sender.join().unwrap());
}

#[test]
fn timeouts_never_return_early() {
    let _w = watchdog(Duration::from_secs(60));
    let mut a = Pipe::builder().capacity(64).create_unique().unwrap();
    let _b = Pipe::open(a.name()).unwrap();
    let t = Instant::now();
    assert!(matches!(
        a.recv_timeout(Duration::from_millis(100)),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    a.send(&[1; 56]).unwrap();
    let t = Instant::now();
    assert!(matches!(
        a.send_timeout(&[2; 56], Duration::from_millis(100)),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    let mut buf = [0u8; 8];
    let t = Instant::now();
    assert!(matches!(
        a.recv_into_timeout(&mut buf, Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
}

#[test]
fn limits_and_directions() {
    let _w = watchdog(Duration::from_secs(60));
    let mut a = Pipe::builder().max_message(8).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    assert!(matches!(
        a.send(&[0; 9]),
        Err(Error::MessageTooLarge { len: 9, max: 8, .. })
    ));
    assert!(
        !b.poll(Duration::ZERO).unwrap(),
        "nothing is sent when too large"
    );
    assert!(matches!(Pipe::open(a.name()), Err(Error::InUse { .. })));
    drop(b);
    assert!(matches!(
        Pipe::open(a.name()),
        Err(Error::Disconnected { .. })
    ));
    assert!(a.is_disconnected());
    assert!(matches!(a.send(b"x"), Err(Error::Disconnected { .. })));
    assert!(matches!(a.recv(), Err(Error::Disconnected { .. })));

    let mut w = Pipe::builder()
        .direction(Direction::CreatorSends)
        .create_unique()
        .unwrap();
    let mut r = Pipe::open(w.name()).unwrap();
    assert!(w.can_send() && !w.can_recv() && r.can_recv() && !r.can_send());
    assert!(matches!(w.recv(), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        w.poll(Duration::ZERO),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(r.send(b"x"), Err(Error::InvalidArgument(_))));
    w.send(b"down").unwrap();
    assert_eq!(r.recv().unwrap(), b"down");
    let mut w2 = Pipe::builder()
        .direction(Direction::OpenerSends)
        .create_unique()
        .unwrap();
    let mut r2 = Pipe::open(w2.name()).unwrap();
    r2.send(b"up").unwrap();
    assert_eq!(w2.recv().unwrap(), b"up");
    assert!(matches!(
        Pipe::builder().capacity(0).create_unique(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn peer_killed_gives_buffered_messages_then_disconnected() {
    let _w = watchdog(Duration::from_secs(60));
    let mut end = Pipe::create_unique().unwrap();
    let sent = Event::create_unique().unwrap();
    let child = spawn("send_then_hang", &[end.name(), sent.name()]);
    assert!(sent.wait_timeout(Duration::from_secs(30)).unwrap());
    child.kill();
    assert_eq!(end.recv().unwrap(), b"one");
    assert!(end.poll(Duration::ZERO).unwrap());
    assert_eq!(end.recv().unwrap(), b"");
    assert_eq!(end.recv().unwrap(), b"three");
    assert!(matches!(end.recv(), Err(Error::Disconnected { .. })));
    assert!(matches!(
        end.poll(Duration::from_secs(1)),
        Err(Error::Disconnected { .. })
    ));
    assert!(matches!(
        end.send(b"anyone?"),
        Err(Error::Disconnected { .. })
    ));
}

#[test]
fn blocked_recv_wakes_when_the_peer_process_dies() {
    let _w = watchdog(Duration::from_secs(60));
    let mut end = Pipe::create_unique().unwrap();
    let sent = Event::create_unique().unwrap();
    let child = spawn("send_then_hang", &[end.name(), sent.name()]);
    for _ in 0..3 {
        end.recv().unwrap();
    }
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        child.kill();
    });
    assert!(matches!(end.recv(), Err(Error::Disconnected { .. })));
    killer.join().unwrap();
}

#[test]
fn zero_copy_both_sides_across_the_wrap() {
    let _w = watchdog(Duration::from_secs(60));
    let mut a = Pipe::builder().capacity(256).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let msg = |i: usize| pattern((i * 37) % 200, i as u8);
    // The writer needs the reader to consume skip records: another thread.
    let writer = std::thread::spawn(move || {
        for i in 0..500usize {
            let m = msg(i);
            if i % 2 == 0 {
                let mut g = a.reserve(m.len()).unwrap();
                g.copy_from_slice(&m);
                assert_eq!(&*g, m.as_slice());
                g.commit();
            } else {
                a.send(&m).unwrap();
            }
        }
        a
    });
    for i in 0..500usize {
        if i % 3 == 0 {
            assert_eq!(&*b.recv_ref().unwrap(), msg(i).as_slice(), "message {i}");
        } else {
            assert_eq!(b.recv().unwrap(), msg(i), "message {i}");
        }
    }
    let mut a = writer.join().unwrap();
    // A grant dropped without commit sends nothing.
    {
        let _g = a.reserve(10).unwrap();
    }
    assert!(!b.poll(Duration::ZERO).unwrap());
    assert!(matches!(a.reserve(300), Err(Error::InvalidArgument(_))));
    let mut g = a.reserve(100).unwrap();
    g[..3].copy_from_slice(b"abc");
    g.commit_len(3);
    assert_eq!(b.recv().unwrap(), b"abc");
}

#[test]
fn threads_stream_random_sizes_both_ways() {
    let _w = watchdog(Duration::from_secs(120));
    let mut a = Pipe::builder().capacity(1024).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let n = 3000usize;
    let t = std::thread::spawn(move || {
        for i in 0..n {
            let m = b.recv().unwrap();
            assert_eq!(m, pattern((i * 131) % 3000, i as u8), "message {i}");
            b.send(&m[..m.len() / 2]).unwrap();
        }
        b
    });
    for i in 0..n {
        let m = pattern((i * 131) % 3000, i as u8);
        a.send(&m).unwrap();
        assert_eq!(a.recv().unwrap(), &m[..m.len() / 2]);
    }
    drop(t.join().unwrap());
}
