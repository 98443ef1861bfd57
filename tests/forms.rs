//! Every timed form waits at least its timeout (or until its deadline)
//! before it says `Timeout`: never early. And each form added for issue
//! 12 succeeds when its item is there.

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, watchdog};
use shmkit::{Error, Pipe, Queue};

const T: Duration = Duration::from_millis(15);
/// Long enough never to be reached by a healthy run.
const LONG: Duration = Duration::from_secs(30);

#[test]
fn child() {
    dispatch(&[("grant_echo", grant_echo)]);
}

/// Echoes every message back through the zero-copy grants, with the timed
/// and deadline forms, until the peer disconnects.
fn grant_echo(args: &[String]) {
    let mut end = Pipe::open(&args[0]).unwrap();
    loop {
        let m = match end.recv_ref_timeout(LONG) {
            Ok(m) => m.to_vec(),
            Err(Error::Disconnected { .. }) => return,
            Err(e) => panic!("grant_echo: recv_ref_timeout: {e}"),
        };
        let mut g = match end.reserve_deadline(m.len(), Instant::now() + LONG) {
            Ok(g) => g,
            Err(Error::Disconnected { .. }) => return,
            Err(e) => panic!("grant_echo: reserve_deadline: {e}"),
        };
        g.copy_from_slice(&m);
        g.commit();
    }
}

fn never_early<R: std::fmt::Debug>(what: &str, f: impl FnOnce() -> shmkit::Result<R>) {
    let start = Instant::now();
    let r = f();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{what}: {r:?}");
    assert!(
        start.elapsed() >= T,
        "{what} returned after {:?}",
        start.elapsed()
    );
}

#[test]
fn queue_timed_forms_never_return_early() {
    let q = Queue::create_unique(1, 16).unwrap();
    never_early("get_timeout", || q.get_timeout(T));
    never_early("get_value_timeout", || q.get_value_timeout::<u32>(T));
    never_early("get_ref_timeout", || q.get_ref_timeout(T).map(drop));
    never_early("get_deadline", || q.get_deadline(Instant::now() + T));
    never_early("get_into_deadline", || {
        q.get_into_deadline(&mut [0; 16], Instant::now() + T)
    });
    never_early("get_ref_deadline", || {
        q.get_ref_deadline(Instant::now() + T).map(drop)
    });
    never_early("get_lease_deadline", || {
        q.get_lease_deadline(Instant::now() + T).map(drop)
    });
    never_early("get_value_deadline", || {
        q.get_value_deadline::<u32>(Instant::now() + T)
    });
    q.put(b"full").unwrap();
    never_early("put_timeout", || q.put_timeout(b"x", T));
    never_early("put_value_timeout", || q.put_value_timeout(&1u8, T));
    never_early("reserve_timeout", || q.reserve_timeout(1, T).map(drop));
    never_early("put_deadline", || q.put_deadline(b"x", Instant::now() + T));
    never_early("reserve_deadline", || {
        q.reserve_deadline(1, Instant::now() + T).map(drop)
    });
    never_early("join_deadline", || q.join_deadline(Instant::now() + T));
    never_early("put_value_deadline", || {
        q.put_value_deadline(&1u8, Instant::now() + T)
    });
    let tx = Queue::open_sender(q.name()).unwrap();
    never_early("QueueSender::reserve_timeout", || {
        tx.reserve_timeout(1, T).map(drop)
    });
    never_early("QueueSender::reserve_deadline", || {
        tx.reserve_deadline(1, Instant::now() + T).map(drop)
    });
    let rx = Queue::open_receiver(q.name()).unwrap();
    assert_eq!(rx.get().unwrap(), b"full");
    never_early("QueueReceiver::get_deadline", || {
        rx.get_deadline(Instant::now() + T)
    });
    never_early("QueueReceiver::get_ref_timeout", || {
        rx.get_ref_timeout(T).map(drop)
    });
    never_early("QueueReceiver::get_ref_deadline", || {
        rx.get_ref_deadline(Instant::now() + T).map(drop)
    });
    never_early("QueueReceiver::get_lease_deadline", || {
        rx.get_lease_deadline(Instant::now() + T).map(drop)
    });
}

#[test]
fn queue_deadline_forms_succeed_when_the_item_is_there() {
    let q = Queue::create_unique(2, 16).unwrap();
    let tx = Queue::open_sender(q.name()).unwrap();
    let rx = Queue::open_receiver(q.name()).unwrap();
    let later = || Instant::now() + LONG;
    q.join_deadline(later()).unwrap();
    let mut g = q.reserve_deadline(1, later()).unwrap();
    g.copy_from_slice(b"a");
    g.commit().unwrap();
    assert_eq!(&*q.get_ref_deadline(later()).unwrap(), b"a");
    let mut g = tx.reserve_timeout(1, LONG).unwrap();
    g.copy_from_slice(b"b");
    g.commit().unwrap();
    let mut g = tx.reserve_deadline(1, later()).unwrap();
    g.copy_from_slice(b"c");
    g.commit().unwrap();
    assert_eq!(&*rx.get_ref_timeout(LONG).unwrap(), b"b");
    assert_eq!(&*rx.get_ref_deadline(later()).unwrap(), b"c");
    q.put(b"d").unwrap();
    q.put(b"e").unwrap();
    let lease = q.get_lease_deadline(later()).unwrap();
    assert_eq!(&*lease, b"d");
    lease.ack().unwrap();
    let lease = rx.get_lease_deadline(later()).unwrap();
    assert_eq!(&*lease, b"e");
    // Unacked work keeps join waiting; acked, it returns.
    never_early("join_deadline with a lease held", || {
        q.join_deadline(Instant::now() + T)
    });
    lease.ack().unwrap();
    q.join_deadline(later()).unwrap();
    // A deadline already past still tries once.
    q.put(b"f").unwrap();
    assert_eq!(&*q.get_ref_deadline(Instant::now()).unwrap(), b"f");
}

#[test]
fn pipe_timed_forms_never_return_early() {
    let mut a = Pipe::builder().capacity(64).create_unique().unwrap();
    let _b = Pipe::open(a.name()).unwrap();
    never_early("recv_timeout", || a.recv_timeout(T));
    never_early("recv_value_timeout", || a.recv_value_timeout::<u64>(T));
    never_early("recv_deadline", || a.recv_deadline(Instant::now() + T));
    never_early("recv_into_deadline", || {
        a.recv_into_deadline(&mut [0; 8], Instant::now() + T)
    });
    never_early("recv_ref_timeout", || a.recv_ref_timeout(T).map(drop));
    never_early("recv_value_deadline", || {
        a.recv_value_deadline::<u64>(Instant::now() + T)
    });
    never_early("recv_ref_deadline", || {
        a.recv_ref_deadline(Instant::now() + T).map(drop)
    });
    a.send(&[0; 40]).unwrap();
    never_early("send_timeout", || a.send_timeout(&[0; 40], T));
    never_early("send_value_timeout", || a.send_value_timeout(&[0u64; 5], T));
    never_early("send_deadline", || {
        a.send_deadline(&[0; 40], Instant::now() + T)
    });
    never_early("reserve_timeout", || a.reserve_timeout(40, T).map(drop));
    never_early("send_value_deadline", || {
        a.send_value_deadline(&[0u64; 5], Instant::now() + T)
    });
    never_early("reserve_deadline", || {
        a.reserve_deadline(40, Instant::now() + T).map(drop)
    });
    assert!(matches!(a.try_reserve(40), Err(Error::Full { .. })));
    assert!(matches!(a.try_recv_ref(), Err(Error::Empty { .. })));
}

#[test]
fn pipe_halves_timed_grant_forms_never_return_early() {
    let a = Pipe::builder().capacity(64).create_unique().unwrap();
    let _b = Pipe::open(a.name()).unwrap();
    let (mut tx, mut rx) = a.split();
    never_early("PipeReceiver::recv_ref_timeout", || {
        rx.recv_ref_timeout(T).map(drop)
    });
    never_early("PipeReceiver::recv_ref_deadline", || {
        rx.recv_ref_deadline(Instant::now() + T).map(drop)
    });
    assert!(matches!(rx.try_recv_ref(), Err(Error::Empty { .. })));
    never_early("PipeReceiver::recv_deadline", || {
        rx.recv_deadline(Instant::now() + T)
    });
    never_early("PipeReceiver::recv_into_timeout", || {
        rx.recv_into_timeout(&mut [0; 8], T)
    });
    never_early("PipeReceiver::recv_into_deadline", || {
        rx.recv_into_deadline(&mut [0; 8], Instant::now() + T)
    });
    tx.reserve(40).unwrap().commit();
    never_early("PipeSender::send_deadline", || {
        tx.send_deadline(&[0; 40], Instant::now() + T)
    });
    never_early("PipeSender::reserve_timeout", || {
        tx.reserve_timeout(40, T).map(drop)
    });
    never_early("PipeSender::reserve_deadline", || {
        tx.reserve_deadline(40, Instant::now() + T).map(drop)
    });
    assert!(matches!(tx.try_reserve(40), Err(Error::Full { .. })));
}

#[test]
fn pipe_grant_forms_succeed_when_the_item_is_there() {
    let mut a = Pipe::builder().capacity(64).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let later = || Instant::now() + LONG;
    let mut g = a.try_reserve(3).unwrap();
    g.copy_from_slice(b"one");
    g.commit();
    assert_eq!(&*b.try_recv_ref().unwrap(), b"one");
    a.reserve_timeout(3, LONG).unwrap().copy_from_slice(b"not");
    assert!(
        matches!(b.try_recv_ref(), Err(Error::Empty { .. })),
        "a dropped grant sends nothing"
    );
    let mut g = a.reserve_deadline(3, later()).unwrap();
    g.copy_from_slice(b"two");
    g.commit();
    assert_eq!(&*b.recv_ref_timeout(LONG).unwrap(), b"two");
    a.send(b"three").unwrap();
    assert_eq!(&*b.recv_ref_deadline(later()).unwrap(), b"three");
    // Halves.
    let (mut tx, mut rx) = a.split();
    for (i, m) in [&b"x"[..], b"yy", b"zzz", b""].into_iter().enumerate() {
        let mut g = match i {
            0 => tx.reserve(m.len()),
            1 => tx.try_reserve(m.len()),
            2 => tx.reserve_timeout(m.len(), LONG),
            _ => tx.reserve_deadline(m.len(), later()),
        }
        .unwrap();
        g.copy_from_slice(m);
        g.commit();
        assert_eq!(b.recv().unwrap(), m);
        b.send(m).unwrap();
        let got = match i {
            0 => rx.recv_ref(),
            1 => rx.try_recv_ref(),
            2 => rx.recv_ref_timeout(LONG),
            _ => rx.recv_ref_deadline(later()),
        }
        .unwrap();
        assert_eq!(&*got, m);
    }
}

/// The grant forms across processes, with both halves of this end busy at
/// once: a thread sends through `PipeSender` grants while this one
/// receives through `PipeReceiver` grants, and a child echoes with the
/// `PipeEnd` forms. The 64-byte ring makes every side wait for the others.
#[test]
fn pipe_grant_forms_across_processes_and_threads() {
    let _w = watchdog(Duration::from_secs(120));
    let end = Pipe::builder().capacity(64).create_unique().unwrap();
    let child = spawn("grant_echo", &[end.name()]);
    let (mut tx, mut rx) = end.split();
    let msg = |i: usize| -> Vec<u8> { (0..i % 41).map(|k| (i + k) as u8).collect() };
    const N: usize = 500;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            let m = msg(i);
            let mut g = if i % 2 == 0 {
                tx.reserve_timeout(m.len(), LONG)
            } else {
                tx.reserve_deadline(m.len(), Instant::now() + LONG)
            }
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
            g.copy_from_slice(&m);
            g.commit();
        }
        tx
    });
    for i in 0..N {
        let got = if i % 2 == 0 {
            rx.recv_ref_deadline(Instant::now() + LONG)
        } else {
            rx.recv_ref_timeout(LONG)
        }
        .unwrap_or_else(|e| panic!("echo {i}: {e}"));
        assert_eq!(&*got, &msg(i)[..], "echo {i}");
    }
    let tx = sender.join().unwrap();
    drop((tx, rx));
    child.join();
}

#[cfg(feature = "serde")]
#[test]
fn serde_timed_forms_never_return_early() {
    let q = Queue::create_unique(1, 64).unwrap();
    never_early("get_serde_timeout", || q.get_serde_timeout::<u8>(T));
    q.put_serde(&1u8).unwrap();
    never_early("put_serde_timeout", || q.put_serde_timeout(&2u8, T));
    never_early("put_serde_deadline", || {
        q.put_serde_deadline(&2u8, Instant::now() + T)
    });
    assert_eq!(q.get_serde::<u8>().unwrap(), 1);
    never_early("get_serde_deadline", || {
        q.get_serde_deadline::<u8>(Instant::now() + T)
    });
    let mut a = Pipe::builder().capacity(64).create_unique().unwrap();
    let _b = Pipe::open(a.name()).unwrap();
    never_early("recv_serde_timeout", || a.recv_serde_timeout::<u8>(T));
    never_early("recv_serde_deadline", || {
        a.recv_serde_deadline::<u8>(Instant::now() + T)
    });
    a.send(&[0; 40]).unwrap();
    never_early("send_serde_deadline", || {
        a.send_serde_deadline(&[0u8; 30][..], Instant::now() + T)
    });
}

/// The typed forms of the role handles and of the split pipe halves: never
/// early, and the value arrives when it is there.
#[test]
fn role_and_half_typed_forms() {
    let q = Queue::create_unique(1, 16).unwrap();
    let tx = Queue::open_sender(q.name()).unwrap();
    let rx = Queue::open_receiver(q.name()).unwrap();
    assert!(matches!(
        rx.try_get_value::<u32>(),
        Err(Error::Empty { .. })
    ));
    never_early("QueueReceiver::get_value_timeout", || {
        rx.get_value_timeout::<u32>(T)
    });
    never_early("QueueReceiver::get_value_deadline", || {
        rx.get_value_deadline::<u32>(Instant::now() + T)
    });
    never_early("QueueReceiver::get_into_deadline", || {
        rx.get_into_deadline(&mut [0; 16], Instant::now() + T)
    });
    tx.try_put_value(&1u32).unwrap();
    assert!(matches!(tx.try_put_value(&2u32), Err(Error::Full { .. })));
    never_early("QueueSender::put_value_timeout", || {
        tx.put_value_timeout(&2u32, T)
    });
    never_early("QueueSender::put_value_deadline", || {
        tx.put_value_deadline(&2u32, Instant::now() + T)
    });
    assert_eq!(rx.try_get_value::<u32>().unwrap(), 1);
    tx.put_value_timeout(&2u32, T).unwrap();
    assert_eq!(rx.get_value_timeout::<u32>(T).unwrap(), 2);
    tx.put_value_deadline(&3u32, Instant::now() + T).unwrap();
    assert_eq!(rx.get_value_deadline::<u32>(Instant::now() + T).unwrap(), 3);
    tx.put(b"four").unwrap();
    let mut buf = [0; 16];
    let n = rx.get_into_deadline(&mut buf, Instant::now() + T).unwrap();
    assert_eq!(&buf[..n], b"four");

    let a = Pipe::builder().capacity(64).create_unique().unwrap();
    let b = Pipe::open(a.name()).unwrap();
    let (mut atx, _arx) = a.split();
    let (_btx, mut brx) = b.split();
    assert!(matches!(
        brx.try_recv_value::<u16>(),
        Err(Error::Empty { .. })
    ));
    never_early("PipeReceiver::recv_value_timeout", || {
        brx.recv_value_timeout::<u16>(T)
    });
    never_early("PipeReceiver::recv_value_deadline", || {
        brx.recv_value_deadline::<u16>(Instant::now() + T)
    });
    atx.try_send_value(&1u16).unwrap();
    atx.send_value_timeout(&2u16, T).unwrap();
    atx.send_value_deadline(&3u16, Instant::now() + T).unwrap();
    assert_eq!(brx.try_recv_value::<u16>().unwrap(), 1);
    assert_eq!(brx.recv_value_timeout::<u16>(T).unwrap(), 2);
    assert_eq!(
        brx.recv_value_deadline::<u16>(Instant::now() + T).unwrap(),
        3
    );
    // A full ring: the sending forms wait their time.
    atx.send(&[0; 40]).unwrap();
    assert!(matches!(
        atx.try_send_value(&[0u8; 30]),
        Err(Error::Full { .. })
    ));
    never_early("PipeSender::send_value_timeout", || {
        atx.send_value_timeout(&[0u8; 30], T)
    });
    never_early("PipeSender::send_value_deadline", || {
        atx.send_value_deadline(&[0u8; 30], Instant::now() + T)
    });
}

/// The serde forms of the role handles.
#[cfg(feature = "serde")]
#[test]
fn role_serde_forms() {
    let q = Queue::create_unique(1, 64).unwrap();
    let tx = Queue::open_sender(q.name()).unwrap();
    let rx = Queue::open_receiver(q.name()).unwrap();
    assert!(matches!(rx.try_get_serde::<u8>(), Err(Error::Empty { .. })));
    never_early("QueueReceiver::get_serde_timeout", || {
        rx.get_serde_timeout::<u8>(T)
    });
    never_early("QueueReceiver::get_serde_deadline", || {
        rx.get_serde_deadline::<u8>(Instant::now() + T)
    });
    tx.try_put_serde(&1u8).unwrap();
    assert!(matches!(tx.try_put_serde(&2u8), Err(Error::Full { .. })));
    never_early("QueueSender::put_serde_timeout", || {
        tx.put_serde_timeout(&2u8, T)
    });
    never_early("QueueSender::put_serde_deadline", || {
        tx.put_serde_deadline(&2u8, Instant::now() + T)
    });
    assert_eq!(rx.try_get_serde::<u8>().unwrap(), 1);
    tx.put_serde_timeout(&2u8, T).unwrap();
    assert_eq!(rx.get_serde_timeout::<u8>(T).unwrap(), 2);
    tx.put_serde_deadline(&3u8, Instant::now() + T).unwrap();
    assert_eq!(rx.get_serde_deadline::<u8>(Instant::now() + T).unwrap(), 3);
}

/// `poll_deadline` on an end and on a receiving half: `false` no earlier
/// than the deadline, `true` when a message is there.
#[test]
fn poll_deadline_never_returns_early() {
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let start = Instant::now();
    assert!(!b.poll_deadline(start + T).unwrap());
    assert!(start.elapsed() >= T, "returned after {:?}", start.elapsed());
    a.send(b"x").unwrap();
    assert!(b.poll_deadline(Instant::now() + T).unwrap());
    let (_tx, mut rx) = b.split();
    assert_eq!(rx.recv().unwrap(), b"x");
    let start = Instant::now();
    assert!(!rx.poll_deadline(start + T).unwrap());
    assert!(start.elapsed() >= T, "returned after {:?}", start.elapsed());
}
