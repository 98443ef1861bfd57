//! Sender and receiver handles of a Queue: disconnect by drop and by
//! SIGKILL, on both sides, for blocked and non-blocking calls, and the
//! iterators that end there.

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, unique_name, wait_for, watchdog, Cleanup};
use shmkit::{Error, Queue};

#[test]
fn child() {
    dispatch(&[
        ("sender", sender),
        ("receiver", receiver),
        ("producer", producer),
    ]);
}

const LIMIT: Duration = Duration::from_secs(60);

/// Opens a sender, puts `n` messages, says so, then waits to be killed.
fn sender(args: &[String]) {
    let tx = Queue::open_sender(&args[0]).unwrap();
    let n: u32 = args[1].parse().unwrap();
    for i in 0..n {
        tx.put(&i.to_ne_bytes()).unwrap();
    }
    let ready = Queue::open(&args[2]).unwrap();
    ready.put(b"ready").unwrap();
    std::thread::sleep(LIMIT);
}

/// Opens a receiver, says so, then waits to be killed.
fn receiver(args: &[String]) {
    let _rx = Queue::open_receiver(&args[0]).unwrap();
    let ready = Queue::open(&args[1]).unwrap();
    ready.put(b"ready").unwrap();
    std::thread::sleep(LIMIT);
}

/// Opens a sender, says so, puts `n` values and exits (dropping it).
fn producer(args: &[String]) {
    let tx = Queue::open_sender(&args[0]).unwrap();
    Queue::open(&args[3]).unwrap().put(b"opened").unwrap();
    let (n, me): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    for k in 0..n {
        tx.put_value(&(me * n + k)).unwrap();
    }
}

fn receiver_queue(tag: &str, capacity: usize) -> (shmkit::QueueReceiver, Cleanup) {
    let name = unique_name(tag);
    let rx = Queue::create(&name, capacity, 16)
        .unwrap()
        .into_receiver()
        .unwrap();
    (rx, Cleanup(vec![name]))
}

#[test]
fn a_receiver_is_disconnected_once_the_last_sender_drops_and_it_has_drained() {
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-drop", 4);
    let tx1 = Queue::open_sender(rx.name()).unwrap();
    let tx2 = Queue::open_sender(rx.name()).unwrap();
    tx1.put(b"one").unwrap();
    drop(tx1);
    assert_eq!(rx.try_get().unwrap(), b"one");
    assert!(
        matches!(rx.try_get(), Err(Error::Empty { .. })),
        "tx2 is open"
    );
    assert!(!rx.is_disconnected());
    tx2.put(b"two").unwrap();
    tx2.put(b"three").unwrap();
    drop(tx2);
    assert!(rx.is_disconnected());
    // What was put before the last sender left comes first.
    assert_eq!(rx.get().unwrap(), b"two");
    assert_eq!(rx.try_get().unwrap(), b"three");
    assert!(matches!(rx.try_get(), Err(Error::Disconnected { .. })));
    assert!(matches!(rx.get(), Err(Error::Disconnected { .. })));
    assert!(matches!(
        rx.get_timeout(Duration::from_secs(5)),
        Err(Error::Disconnected { .. })
    ));
    assert!(matches!(
        rx.try_get_lease(),
        Err(Error::Disconnected { .. })
    ));
    assert!(rx.readable().is_ready(), "a disconnected receiver is ready");
}

#[test]
fn a_sender_is_disconnected_once_the_last_receiver_drops() {
    let _w = watchdog(LIMIT);
    let name = unique_name("dc-rx-drop");
    let _c = Cleanup(vec![name.clone()]);
    let tx = Queue::create(&name, 4, 16).unwrap().into_sender().unwrap();
    let rx = Queue::open_receiver(&name).unwrap();
    tx.put(b"a").unwrap();
    assert!(!tx.is_disconnected());
    drop(rx);
    assert!(tx.is_disconnected());
    assert!(matches!(tx.put(b"b"), Err(Error::Disconnected { .. })));
    assert!(matches!(tx.try_put(b"b"), Err(Error::Disconnected { .. })));
    assert!(matches!(tx.try_reserve(1), Err(Error::Disconnected { .. })));
    assert!(tx.writable().is_ready());
    // What was put stays: a receiver that comes later gets it.
    let rx = Queue::open_receiver(&name).unwrap();
    assert_eq!(rx.try_get().unwrap(), b"a");
    tx.put(b"c").unwrap();
    assert_eq!(rx.try_get().unwrap(), b"c");
}

#[test]
fn a_both_ways_handle_keeps_everyone_connected() {
    let _w = watchdog(LIMIT);
    let name = unique_name("dc-both");
    let _c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 4, 16).unwrap();
    let rx = Queue::open_receiver(&name).unwrap();
    let tx = Queue::open_sender(&name).unwrap();
    drop(tx);
    assert!(
        matches!(rx.try_get(), Err(Error::Empty { .. })),
        "q can still send"
    );
    assert!(!rx.is_disconnected());
    let tx = Queue::open_sender(&name).unwrap();
    drop(rx);
    tx.put(b"x").unwrap();
    assert!(!tx.is_disconnected(), "q can still receive");
    assert_eq!(q.try_get().unwrap(), b"x");
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
}

#[test]
fn a_receiver_made_before_any_sender_waits_for_the_first() {
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-first", 4);
    assert!(matches!(rx.try_get(), Err(Error::Empty { .. })));
    let t = Duration::from_millis(30);
    let start = Instant::now();
    assert!(matches!(rx.get_timeout(t), Err(Error::Timeout { .. })));
    assert!(start.elapsed() >= t, "returned early");
    assert!(!rx.is_disconnected());
}

#[test]
fn a_sender_that_opens_later_reconnects() {
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-again", 4);
    drop(Queue::open_sender(rx.name()).unwrap());
    assert!(matches!(rx.try_get(), Err(Error::Disconnected { .. })));
    let tx = Queue::open_sender(rx.name()).unwrap();
    assert!(matches!(rx.try_get(), Err(Error::Empty { .. })));
    tx.put(b"back").unwrap();
    assert_eq!(rx.get().unwrap(), b"back");
}

#[test]
fn a_blocked_get_wakes_with_disconnected_when_the_last_sender_drops() {
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-wake", 4);
    let tx = Queue::open_sender(rx.name()).unwrap();
    std::thread::scope(|s| {
        let got = s.spawn(|| rx.get());
        let timed = s.spawn(|| rx.get_timeout(Duration::from_secs(30)));
        // Let both block (or not: either way they must end Disconnected).
        std::thread::sleep(Duration::from_millis(20));
        drop(tx);
        assert!(matches!(
            got.join().unwrap(),
            Err(Error::Disconnected { .. })
        ));
        assert!(matches!(
            timed.join().unwrap(),
            Err(Error::Disconnected { .. })
        ));
    });
}

#[test]
fn a_blocked_put_wakes_with_disconnected_when_the_last_receiver_drops() {
    let _w = watchdog(LIMIT);
    let name = unique_name("dc-putwake");
    let _c = Cleanup(vec![name.clone()]);
    let tx = Queue::create(&name, 1, 16).unwrap().into_sender().unwrap();
    let rx = Queue::open_receiver(&name).unwrap();
    tx.put(b"fills it").unwrap();
    std::thread::scope(|s| {
        let put = s.spawn(|| tx.put(b"blocked"));
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(matches!(
            put.join().unwrap(),
            Err(Error::Disconnected { .. })
        ));
    });
}

#[test]
fn a_held_lease_keeps_receivers_from_disconnect_until_it_ends() {
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-lease", 4);
    let rx2 = Queue::open_receiver(rx.name()).unwrap();
    let tx = Queue::open_sender(rx.name()).unwrap();
    tx.put(b"job").unwrap();
    drop(tx);
    let lease = rx.get_lease().unwrap();
    // The job may come back: not disconnected yet.
    assert!(matches!(rx2.try_get(), Err(Error::Empty { .. })));
    drop(lease); // nack
    let again = rx2.get_lease().unwrap();
    assert!(again.redelivered());
    again.ack().unwrap();
    assert!(matches!(rx2.try_get(), Err(Error::Disconnected { .. })));
    assert!(matches!(rx.get(), Err(Error::Disconnected { .. })));
}

#[test]
fn sigkill_of_the_last_sender_wakes_a_blocked_receiver_with_disconnected() {
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-kill", 8);
    let ready_name = unique_name("dc-kill-ready");
    let ready = Queue::create(&ready_name, 2, 8).unwrap();
    let child = spawn("sender", &[rx.name(), "3", &ready_name]);
    assert_eq!(ready.get_timeout(LIMIT).unwrap(), b"ready");
    for i in 0..3u32 {
        assert_eq!(rx.get().unwrap(), i.to_ne_bytes());
    }
    std::thread::scope(|s| {
        let blocked = s.spawn(|| rx.get());
        std::thread::sleep(Duration::from_millis(20));
        child.kill();
        assert!(matches!(
            blocked.join().unwrap(),
            Err(Error::Disconnected { .. })
        ));
    });
    assert!(matches!(rx.try_get(), Err(Error::Disconnected { .. })));
}

#[test]
fn sigkill_of_the_last_receiver_disconnects_senders() {
    let _w = watchdog(LIMIT);
    let name = unique_name("dc-kill-rx");
    let ready_name = unique_name("dc-kill-rx-ready");
    let _c = Cleanup(vec![name.clone(), ready_name.clone()]);
    let tx = Queue::create(&name, 4, 16).unwrap().into_sender().unwrap();
    let ready = Queue::create(&ready_name, 2, 8).unwrap();
    let child = spawn("receiver", &[&name, &ready_name]);
    assert_eq!(ready.get_timeout(LIMIT).unwrap(), b"ready");
    child.kill();
    // Puts fill the queue, then the blocked put looks and finds nobody.
    let mut oks = 0;
    let end = loop {
        match tx.put(b"m") {
            Ok(()) => oks += 1,
            Err(e) => break e,
        }
        assert!(oks <= 4, "put past the capacity with no receiver");
    };
    assert!(matches!(end, Error::Disconnected { .. }), "{end:?}");
    assert!(tx.is_disconnected());
}

#[test]
fn iterating_a_receiver_ends_when_every_producer_has_exited() {
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-iter", 8);
    let opened_name = unique_name("dc-iter-opened");
    let opened = Queue::create(&opened_name, 4, 8).unwrap();
    // The parent holds a sender until every producer has opened its own:
    // else the first to finish could leave the queue with no sender before
    // a slow one opened, and the iteration would end early (disconnect is
    // a state, not latched; see `Queue::open_sender`).
    let starter = Queue::open_sender(rx.name()).unwrap();
    let per = 200u64;
    let kids: Vec<_> = (0..3u64)
        .map(|me| {
            spawn(
                "producer",
                &[rx.name(), &per.to_string(), &me.to_string(), &opened_name],
            )
        })
        .collect();
    for _ in 0..3 {
        assert_eq!(opened.get_timeout(LIMIT).unwrap(), b"opened");
    }
    drop(starter);
    let mut got: Vec<u64> = rx.values::<u64>().collect();
    for k in kids {
        k.join();
    }
    got.sort_unstable();
    assert_eq!(got, (0..3 * per).collect::<Vec<_>>());
    let mut it = rx.iter();
    assert_eq!(it.next(), None);
    assert!(matches!(it.error(), Some(Error::Disconnected { .. })));
}

#[test]
fn iterators_end_on_close_and_try_iter_on_empty() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(4, 16).unwrap();
    q.put(b"a").unwrap();
    q.put(b"b").unwrap();
    let mut t = q.try_iter();
    assert_eq!(t.next().as_deref(), Some(&b"a"[..]));
    assert_eq!(t.next().as_deref(), Some(&b"b"[..]));
    assert_eq!(t.next(), None);
    assert!(matches!(t.error(), Some(Error::Empty { .. })));
    assert_eq!(t.next(), None, "an ended iterator stays ended");
    q.put(b"c").unwrap();
    q.close();
    let all: Vec<Vec<u8>> = (&q).into_iter().collect();
    assert_eq!(all, [b"c".to_vec()]);
    let mut it = q.iter();
    assert_eq!(it.next(), None);
    assert!(matches!(it.error(), Some(Error::Closed { .. })));
}

#[test]
fn a_dead_senders_entry_does_not_keep_the_queue_connected() {
    // The sender dies without dropping (SIGKILL) and nobody sleeps: a
    // non-blocking receiver finds out by its periodic look.
    let _w = watchdog(LIMIT);
    let (rx, _c) = receiver_queue("dc-poll", 8);
    let ready_name = unique_name("dc-poll-ready");
    let ready = Queue::create(&ready_name, 2, 8).unwrap();
    let child = spawn("sender", &[rx.name(), "1", &ready_name]);
    assert_eq!(ready.get_timeout(LIMIT).unwrap(), b"ready");
    assert_eq!(rx.try_get().unwrap(), 0u32.to_ne_bytes());
    child.kill();
    let seen = wait_for(LIMIT, || {
        matches!(rx.try_get(), Err(Error::Disconnected { .. }))
    });
    assert!(
        seen,
        "try_get never said Disconnected after the sender died"
    );
}
