//! Errors name their object and operation: for each handle type, one
//! failing call's error carries an [`Origin`] with the segment's name and
//! the method called, and its message starts with them. And the error of a
//! `try_` call on an empty queue allocates nothing (a counting global
//! allocator in this test binary).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::{unique_name, watchdog, Cleanup};
use shmkit::{
    Array, Barrier, BoundedSemaphore, Condition, Error, Lock, Origin, Pipe, Queue, RLock,
    Semaphore, Value,
};

/// Counts this thread's allocations (a thread-local, so that tests running
/// in parallel threads do not count each other's).
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the counting only
// touches a thread-local `Cell` with no destructor (no allocation, no
// re-entry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Checks that `e` comes from operation `op` on the `kind` object `name`,
/// in `origin()` and in the message (`Kind "name": op: what`).
#[track_caller]
fn check(e: &Error, kind: &str, name: &str, op: &str) {
    let o = e.origin().unwrap_or_else(|| panic!("no origin in {e:?}"));
    assert_eq!(o.kind(), kind, "{e:?}");
    assert_eq!(o.name(), Some(name), "{e:?}");
    assert_eq!(o.operation(), op, "{e:?}");
    let msg = e.to_string();
    let head = format!("{kind} {name:?}: {op}: ");
    assert!(
        msg.starts_with(&head),
        "{msg:?} does not start with {head:?}"
    );
}

#[test]
fn queue_errors_name_the_queue_and_the_call() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-q");
    let _c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 1, 8).unwrap();

    let e = q.try_get().unwrap_err();
    assert!(matches!(e, Error::Empty { .. }), "{e:?}");
    check(&e, "Queue", &name, "try_get");
    assert_eq!(e.to_string(), format!("Queue {name:?}: try_get: empty"));

    let e = q.get_timeout(Duration::ZERO).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    check(&e, "Queue", &name, "get_timeout");

    let e = q.try_put(&[0; 9]).unwrap_err();
    assert!(matches!(e, Error::MessageTooLarge { .. }), "{e:?}");
    check(&e, "Queue", &name, "try_put");

    q.try_put(b"abc").unwrap();
    let e = q.try_put(b"d").unwrap_err();
    assert!(matches!(e, Error::Full { .. }), "{e:?}");
    check(&e, "Queue", &name, "try_put");

    let e = q.try_get_into(&mut [0; 2]).unwrap_err();
    assert!(
        matches!(e, Error::BufferTooSmall { needed: 3, .. }),
        "{e:?}"
    );
    check(&e, "Queue", &name, "try_get_into");

    let e = q.try_get_value::<u64>().unwrap_err();
    assert!(matches!(e, Error::WrongSize { expected: 8, .. }), "{e:?}");
    check(&e, "Queue", &name, "try_get_value");

    q.close();
    let e = q.try_put(b"e").unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e:?}");
    check(&e, "Queue", &name, "try_put");
    assert_eq!(e.to_string(), format!("Queue {name:?}: try_put: closed"));
}

#[test]
fn a_sender_whose_receiver_left_names_the_queue() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-qs");
    let _c = Cleanup(vec![name.clone()]);
    let rx = Queue::create(&name, 4, 8).unwrap().into_receiver().unwrap();
    rx.keep();
    let tx = Queue::open_sender(&name).unwrap();
    drop(rx);
    let e = tx.try_put(b"x").unwrap_err();
    assert!(matches!(e, Error::Disconnected { .. }), "{e:?}");
    check(&e, "Queue", &name, "try_put");
}

#[test]
fn queue_leases_name_the_queue() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-ql");
    let _c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 4, 8).unwrap();
    let e = q.try_get_lease().unwrap_err();
    check(&e, "Queue", &name, "try_get_lease");
    let e = q.get_lease_timeout(Duration::ZERO).unwrap_err();
    check(&e, "Queue", &name, "get_lease_timeout");
}

#[test]
fn pipe_errors_name_the_pipe_and_the_call() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-p");
    let _c = Cleanup(vec![name.clone()]);
    let mut a = Pipe::builder().capacity(64).create(&name).unwrap();
    let mut b = Pipe::open(&name).unwrap();

    let e = b.recv_timeout(Duration::ZERO).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    check(&e, "Pipe", &name, "recv_timeout");
    assert_eq!(
        e.to_string(),
        format!("Pipe {name:?}: recv_timeout: timed out")
    );

    let e = b.try_recv().unwrap_err();
    assert!(matches!(e, Error::Empty { .. }), "{e:?}");
    check(&e, "Pipe", &name, "try_recv");

    a.try_send(&[0; 40]).unwrap();
    let e = a.try_send(&[0; 40]).unwrap_err();
    assert!(matches!(e, Error::Full { .. }), "{e:?}");
    check(&e, "Pipe", &name, "try_send");

    let (_tx, mut rx) = b.split();
    let e = rx.try_recv_into(&mut [0; 8]).unwrap_err();
    assert!(
        matches!(e, Error::BufferTooSmall { needed: 40, .. }),
        "{e:?}"
    );
    check(&e, "Pipe", &name, "try_recv_into");
    drop(a);
    assert_eq!(rx.try_recv().unwrap().len(), 40);
    let e = rx.try_recv().unwrap_err();
    assert!(matches!(e, Error::Disconnected { .. }), "{e:?}");
    check(&e, "Pipe", &name, "try_recv");
}

#[test]
fn lock_errors_name_the_lock() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-l");
    let _c = Cleanup(vec![name.clone()]);
    let lock = Lock::create(&name).unwrap();
    let _g = lock.lock().unwrap();
    let e = lock.lock().unwrap_err();
    assert!(matches!(e, Error::Deadlock { .. }), "{e:?}");
    check(&e, "Lock", &name, "lock");
    let e = lock.lock_timeout(Duration::ZERO).unwrap_err();
    check(&e, "Lock", &name, "lock_timeout");
}

#[test]
fn rlock_errors_name_the_lock() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-rl");
    let _c = Cleanup(vec![name.clone()]);
    let lock = RLock::create(&name).unwrap();
    let e = lock.release().unwrap_err();
    assert!(matches!(e, Error::NotOwner { .. }), "{e:?}");
    check(&e, "RLock", &name, "release");
    assert_eq!(
        e.to_string(),
        format!("RLock {name:?}: release: the calling thread does not hold this lock")
    );
}

#[test]
fn semaphore_errors_name_the_semaphore() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-s");
    let bname = unique_name("eo-bs");
    let _c = Cleanup(vec![name.clone(), bname.clone()]);
    let s = Semaphore::create(&name, 0).unwrap();
    let e = s.acquire_timeout(Duration::ZERO).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    check(&e, "Semaphore", &name, "acquire_timeout");

    let b = BoundedSemaphore::create(&bname, 1).unwrap();
    let e = b.release(1).unwrap_err();
    assert!(
        matches!(e, Error::TooManyReleases { limit: 1, .. }),
        "{e:?}"
    );
    check(&e, "BoundedSemaphore", &bname, "release");
}

#[test]
fn barrier_errors_name_the_barrier() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-b");
    let _c = Cleanup(vec![name.clone()]);
    let b = Barrier::create(&name, 2).unwrap();
    b.abort();
    let e = b.wait().unwrap_err();
    assert!(matches!(e, Error::BrokenBarrier { .. }), "{e:?}");
    check(&e, "Barrier", &name, "wait");
    assert_eq!(
        e.to_string(),
        format!("Barrier {name:?}: wait: the barrier is broken")
    );
}

#[test]
fn condition_errors_name_the_condition() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("eo-c");
    let _c = Cleanup(vec![name.clone()]);
    let c = Condition::create(&name).unwrap();
    let e = c.notify(1).unwrap_err();
    assert!(matches!(e, Error::NotOwner { .. }), "{e:?}");
    check(&e, "Condition", &name, "notify");
    let e = c.wait_timeout(Duration::ZERO).unwrap_err();
    check(&e, "Condition", &name, "wait_timeout");
}

#[test]
fn value_and_array_errors_name_them() {
    let _w = watchdog(Duration::from_secs(60));
    let vname = unique_name("eo-v");
    let aname = unique_name("eo-a");
    let _c = Cleanup(vec![vname.clone(), aname.clone()]);
    let v = Value::create(&vname, 0u64).unwrap();
    let _g = v.lock().unwrap();
    let e = v.lock().unwrap_err();
    assert!(matches!(e, Error::Deadlock { .. }), "{e:?}");
    check(&e, "Value", &vname, "lock");

    let a = Array::create(&aname, 4, 0u32).unwrap();
    let _g = a.lock().unwrap();
    let e = a.lock_timeout(Duration::ZERO).unwrap_err();
    assert!(matches!(e, Error::Deadlock { .. }), "{e:?}");
    check(&e, "Array", &aname, "lock_timeout");
}

#[test]
fn an_unknown_origin_prints_as_before() {
    let e = Error::Empty {
        origin: Origin::UNKNOWN,
    };
    assert_eq!(e.to_string(), "empty");
    let e = Error::Closed {
        origin: Origin::new("RawQueue", ""),
    };
    assert_eq!(e.to_string(), "RawQueue: closed");
    assert_eq!(e.origin().unwrap().name(), None);
    let e = Error::NotFound { name: "x".into() };
    assert!(e.origin().is_none());
}

#[test]
fn a_raw_queue_names_its_kind_and_call_but_no_name() {
    use shmkit::raw::{QueueLayout, RawQueue};
    let _w = watchdog(Duration::from_secs(60));
    let layout = QueueLayout {
        capacity: 1,
        max_message: 8,
    };
    let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout).unwrap()).unwrap();
    // SAFETY: the segment is fresh, outlives `q`, and is used only through it.
    let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout) }.unwrap();
    for (e, op) in [
        (q.try_get().unwrap_err(), "try_get"),
        (q.try_get_into(&mut [0; 8]).unwrap_err(), "try_get_into"),
    ] {
        assert!(matches!(e, Error::Empty { .. }), "{e:?}");
        let o = e.origin().unwrap();
        assert_eq!((o.kind(), o.name(), o.operation()), ("RawQueue", None, op));
        assert_eq!(e.to_string(), format!("RawQueue: {op}: empty"));
    }
    q.try_put(b"a").unwrap();
    let e = q.try_put(b"b").unwrap_err();
    assert!(matches!(e, Error::Full { .. }), "{e:?}");
    assert_eq!(e.to_string(), "RawQueue: try_put: full");
}

#[test]
fn try_get_on_an_empty_queue_does_not_allocate() {
    let _w = watchdog(Duration::from_secs(60));
    let q = Queue::create_unique(4, 64).unwrap();
    let mut buf = [0u8; 64];
    // Warm-up: anything done once per thread or handle is done.
    for _ in 0..10 {
        assert!(q.try_get().is_err());
        assert!(q.try_get_into(&mut buf).is_err());
    }
    let full = Queue::create_unique(1, 8).unwrap();
    full.put(b"x").unwrap();
    assert!(full.try_put(b"y").is_err());
    let before = allocs();
    for _ in 0..1000 {
        let e = full.try_put(b"y").unwrap_err();
        assert!(matches!(e, Error::Full { .. }));
        let e = q.try_get().unwrap_err();
        assert!(matches!(e, Error::Empty { .. }));
        let e = q.try_get_into(&mut buf).unwrap_err();
        assert!(matches!(e, Error::Empty { .. }));
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "allocations in 1000 empty try_gets and full try_puts"
    );
    // The count works: a put allocates nothing, a get does.
    q.put(b"x").unwrap();
    let _m = q.get().unwrap();
    assert!(allocs() > after, "the counting allocator counts nothing");
}

#[test]
fn deadline_forms_name_their_own_operation() {
    let _w = watchdog(Duration::from_secs(60));
    let qname = unique_name("eo-qd");
    let pname = unique_name("eo-pd");
    let _c = Cleanup(vec![qname.clone(), pname.clone()]);
    let now = std::time::Instant::now;
    let q = Queue::create(&qname, 1, 8).unwrap();
    let e = q.get_deadline(now()).unwrap_err();
    check(&e, "Queue", &qname, "get_deadline");
    let e = q.get_value_deadline::<u32>(now()).unwrap_err();
    check(&e, "Queue", &qname, "get_value_deadline");
    let e = q.get_lease_deadline(now()).unwrap_err();
    check(&e, "Queue", &qname, "get_lease_deadline");
    q.put(b"x").unwrap();
    let e = q.reserve_deadline(1, now()).unwrap_err();
    check(&e, "Queue", &qname, "reserve_deadline");

    let mut a = Pipe::create(&pname).unwrap();
    let b = Pipe::open(&pname).unwrap();
    let e = a.recv_ref_deadline(now()).unwrap_err();
    check(&e, "Pipe", &pname, "recv_ref_deadline");
    let (_tx, mut rx) = b.split();
    let e = rx.recv_value_deadline::<u64>(now()).unwrap_err();
    check(&e, "Pipe", &pname, "recv_value_deadline");
    let e = rx.recv_ref_deadline(now()).unwrap_err();
    check(&e, "Pipe", &pname, "recv_ref_deadline");
}
