//! Every timed form waits at least its timeout (or until its deadline)
//! before it says `Timeout`: never early.

use std::time::{Duration, Instant};

use shmkit::{Error, Pipe, Queue};

const T: Duration = Duration::from_millis(15);

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
    q.put(b"full").unwrap();
    never_early("put_timeout", || q.put_timeout(b"x", T));
    never_early("put_value_timeout", || q.put_value_timeout(&1u8, T));
    never_early("reserve_timeout", || q.reserve_timeout(1, T).map(drop));
    never_early("put_deadline", || q.put_deadline(b"x", Instant::now() + T));
    let rx = Queue::open_receiver(q.name()).unwrap();
    assert_eq!(rx.get().unwrap(), b"full");
    never_early("QueueReceiver::get_deadline", || {
        rx.get_deadline(Instant::now() + T)
    });
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
    a.send(&[0; 40]).unwrap();
    never_early("send_timeout", || a.send_timeout(&[0; 40], T));
    never_early("send_value_timeout", || a.send_value_timeout(&[0u64; 5], T));
    never_early("send_deadline", || {
        a.send_deadline(&[0; 40], Instant::now() + T)
    });
}

#[cfg(feature = "serde")]
#[test]
fn serde_timed_forms_never_return_early() {
    let q = Queue::create_unique(1, 64).unwrap();
    never_early("get_serde_timeout", || q.get_serde_timeout::<u8>(T));
    q.put_serde(&1u8).unwrap();
    never_early("put_serde_timeout", || q.put_serde_timeout(&2u8, T));
    let mut a = Pipe::create_unique().unwrap();
    let _b = Pipe::open(a.name()).unwrap();
    never_early("recv_serde_timeout", || a.recv_serde_timeout::<u8>(T));
}
