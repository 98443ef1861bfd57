//! Edge-case arguments, decided and documented: a `max_message` of 0 (a
//! queue or pipe of empty messages) and an `Array` of length 0 are allowed
//! and behave as documented; a zero capacity is refused.

use shmkit::{Array, Error, Pipe, Queue};

#[test]
fn a_queue_of_empty_messages_carries_their_count() {
    let q = Queue::create_unique(2, 0).unwrap();
    assert_eq!(q.max_message(), 0);
    q.put(b"").unwrap();
    q.try_put(b"").unwrap();
    assert!(matches!(q.try_put(b""), Err(Error::Full { .. })));
    assert!(matches!(
        q.put(b"x"),
        Err(Error::MessageTooLarge { len: 1, max: 0, .. })
    ));
    assert_eq!(q.len(), 2);
    assert_eq!(q.get().unwrap(), b"");
    assert_eq!(q.try_get_into(&mut []).unwrap(), 0);
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
}

#[test]
fn a_pipe_of_empty_messages_sends_only_empty_ones() {
    let mut a = Pipe::builder().max_message(0).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    a.send(b"").unwrap();
    assert!(matches!(
        a.send(b"x"),
        Err(Error::MessageTooLarge { len: 1, max: 0, .. })
    ));
    assert_eq!(b.recv().unwrap(), b"");
    assert!(matches!(b.try_recv(), Err(Error::Empty { .. })));
}

#[test]
fn an_empty_array_holds_nothing_and_its_lock_works() {
    let a = Array::<u64>::create_unique(0, 7).unwrap();
    assert_eq!(a.len(), 0);
    assert!(a.is_empty());
    assert_eq!(a.get(0), None);
    assert!(a.to_vec().is_empty());
    let g = a.lock().unwrap();
    assert!(g.is_empty());
    drop(g);
    let b = Array::<u64>::open(a.name()).unwrap();
    assert_eq!(b.len(), 0);
}

#[test]
fn a_zero_capacity_is_refused() {
    assert!(matches!(
        Queue::create_unique(0, 8),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Pipe::builder().capacity(0).create_unique(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn keep_is_reachable_through_a_shared_handle() {
    let name = format!("shmkit-t-keep-arc-{}", std::process::id());
    let q = std::sync::Arc::new(Queue::create(&name, 2, 8).unwrap());
    let other = q.clone();
    std::thread::spawn(move || other.keep()).join().unwrap();
    drop(q);
    // Kept: still there after the creator's last handle dropped.
    assert!(shmkit::inspect(&name).is_ok());
    shmkit::unlink(&name).unwrap();
}

#[test]
fn a_wrong_kind_message_reads_right() {
    let l = shmkit::Lock::create_unique().unwrap();
    let e = shmkit::Event::open(l.name()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("holds a Lock, expected an Event"), "{msg}");
    let ev = shmkit::Event::create_unique().unwrap();
    let msg = shmkit::Lock::open(ev.name()).unwrap_err().to_string();
    assert!(msg.contains("holds an Event, expected a Lock"), "{msg}");
}

#[test]
fn opening_a_pipes_used_end_says_an_end_opens_once() {
    let a = Pipe::create_unique().unwrap();
    let _b = Pipe::open(a.name()).unwrap();
    let msg = Pipe::open(a.name()).unwrap_err().to_string();
    assert!(msg.contains("each end opens once"), "{msg}");
}
