//! The `_async` methods under tokio: many futures on one queue, a future
//! dropped while pending, peers SIGKILLed while futures wait.

#![cfg(not(loom))]
#![allow(clippy::disallowed_types)] // a test-side counter, not shared memory
mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::{dispatch, spawn, watchdog};
use shmkit::{Error, Event, Lock, Pipe, Queue, WaitSet};

#[test]
fn child() {
    dispatch(&[
        ("pipe_peer", pipe_peer),
        ("queue_grant", queue_grant),
        ("hold_lock", hold_lock),
    ]);
}

fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn pipe_peer(args: &[String]) {
    let _p = Pipe::open(&args[0]).unwrap();
    Event::open(&args[1]).unwrap().set();
    park();
}

fn queue_grant(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let _g = q.reserve(4).unwrap();
    Event::open(&args[1]).unwrap().set();
    park();
}

fn hold_lock(args: &[String]) {
    let l = Lock::open(&args[0]).unwrap();
    let _g = l.lock().unwrap();
    Event::open(&args[1]).unwrap().set();
    park();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// 32 consumer tasks wait on one queue at once; a producer thread puts 32
/// messages; every message reaches exactly one task.
#[test]
fn many_futures_on_one_queue_each_get_one_message() {
    let _w = watchdog(Duration::from_secs(120));
    let q = Arc::new(Queue::create_unique(8, 8).unwrap());
    let rt = runtime();
    let mut got: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let m = q.get_async().await.unwrap();
                    u64::from_le_bytes(m.try_into().unwrap())
                })
            })
            .collect();
        let q2 = q.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..32u64 {
                q2.put(&i.to_le_bytes()).unwrap();
            }
        });
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        producer.join().unwrap();
        got
    });
    got.sort();
    assert_eq!(got, (0..32).collect::<Vec<_>>());
}

/// Producers as futures too: 4 tasks put 50 messages each through a
/// capacity-2 queue that a blocking consumer drains.
#[test]
fn put_async_waits_for_room() {
    let _w = watchdog(Duration::from_secs(120));
    let q = Arc::new(Queue::create_unique(2, 8).unwrap());
    let q2 = q.clone();
    let consumer = std::thread::spawn(move || {
        let mut n = 0;
        while n < 200 {
            q2.get().unwrap();
            n += 1;
        }
    });
    runtime().block_on(async {
        let tasks: Vec<_> = (0..4u64)
            .map(|t| {
                let q = q.clone();
                tokio::spawn(async move {
                    for i in 0..50u64 {
                        q.put_async(&(t * 100 + i).to_le_bytes()).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    consumer.join().unwrap();
    assert!(q.is_empty());
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A pending future that is dropped takes nothing and is never woken
/// afterwards: the message goes to the next get.
#[test]
fn a_dropped_pending_future_loses_nothing_and_is_not_woken() {
    let _w = watchdog(Duration::from_secs(60));
    let q = Queue::create_unique(2, 8).unwrap();
    let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    {
        let mut f = std::pin::pin!(q.get_async());
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    let before = count.0.load(Ordering::SeqCst);
    q.put(b"kept").unwrap();
    // The async waiter thread sees the word change; it must not wake the
    // dropped future's waker. Give it every chance to (it would within
    // microseconds), then check.
    let ev = Event::create_unique().unwrap();
    assert!(!ev.wait_timeout(Duration::from_millis(50)).unwrap());
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        before,
        "a dropped future was woken"
    );
    assert_eq!(q.try_get().unwrap(), b"kept");

    // The same for a pipe receive and a lock.
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    {
        let mut f = std::pin::pin!(b.recv_async());
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    a.send(b"kept too").unwrap();
    assert_eq!(b.recv().unwrap(), b"kept too");
}

/// Futures pending on a peer that is SIGKILLed finish: a pipe receive with
/// `Disconnected`, a get with the message behind the dead claim, a lock
/// with `owner_died`.
#[test]
fn futures_pending_on_a_killed_peer_finish() {
    let _w = watchdog(Duration::from_secs(120));
    let rt = runtime();

    let mut p = Pipe::create_unique().unwrap();
    let ready = Event::create_unique().unwrap();
    let c = spawn("pipe_peer", &[p.name(), ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    let r = rt.block_on(async {
        let f = p.recv_async();
        tokio::pin!(f);
        // Pending first, then the kill.
        assert!(futures_poll_once(&mut f).await.is_none());
        c.kill();
        f.await
    });
    assert!(matches!(r, Err(Error::Disconnected { .. })), "{r:?}");

    let q = Queue::create_unique(4, 8).unwrap();
    let ready = Event::create_unique().unwrap();
    let c = spawn("queue_grant", &[q.name(), ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    q.put(b"behind").unwrap();
    let m = rt.block_on(async {
        let f = q.get_async();
        tokio::pin!(f);
        assert!(futures_poll_once(&mut f).await.is_none());
        c.kill();
        f.await
    });
    assert_eq!(m.unwrap(), b"behind");

    let l = Lock::create_unique().unwrap();
    let ready = Event::create_unique().unwrap();
    let c = spawn("hold_lock", &[l.name(), ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    let died = rt.block_on(async {
        let f = l.lock_async();
        tokio::pin!(f);
        assert!(futures_poll_once(&mut f).await.is_none());
        c.kill();
        f.await.unwrap().owner_died()
    });
    assert!(died);
}

/// An event set from another thread wakes its future, and a WaitSet
/// future reports exactly the entry made ready.
#[test]
fn event_and_waitset_futures_wake() {
    let _w = watchdog(Duration::from_secs(60));
    let ev = Arc::new(Event::create_unique().unwrap());
    let other = Event::create_unique().unwrap();
    let rt = runtime();
    let ev2 = ev.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        ev2.set();
    });
    rt.block_on(ev.wait_async());
    t.join().unwrap();
    ev.clear();
    let ev2 = ev.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        ev2.set();
    });
    let (k, ready) = rt.block_on(async {
        let mut ws = WaitSet::new();
        ws.add(&other).unwrap();
        let k = ws.add(&*ev).unwrap();
        (k, ws.wait_async().await.unwrap())
    });
    t.join().unwrap();
    assert_eq!(ready.iter().collect::<Vec<_>>(), [k]);
}

/// Polls `f` once: `Some` if it finished.
async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}
