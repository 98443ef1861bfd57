//! Review of Queue roles and disconnect (src/raw/queue/links.rs): races
//! of a look against a lease given back, a forked sender, a sender killed
//! holding a grant, a waiter on many woken by a death. The loom model of a
//! look that hid the check bit from a woken sleeper is in
//! tests/loom_queue.rs.

#[cfg(not(loom))]
mod common;

#[cfg(not(loom))]
#[test]
fn child() {
    common::dispatch(&[
        ("fork_sender", procs::fork_sender),
        ("grant_sender", procs::grant_sender),
        ("plain_sender", procs::plain_sender),
    ]);
}

#[cfg(not(loom))]
mod procs {
    use std::time::Duration;

    use super::common::{spawn, unique_name, watchdog, Cleanup};
    use shmkit::{Error, Queue};

    const LIMIT: Duration = Duration::from_secs(60);

    fn receiver_queue(tag: &str, capacity: usize) -> (shmkit::QueueReceiver, Cleanup) {
        let name = unique_name(tag);
        let rx = Queue::create(&name, capacity, 16)
            .unwrap()
            .into_receiver()
            .unwrap();
        (rx, Cleanup(vec![name]))
    }

    /// Defect 1 (fixed in get.rs): a get's disconnect verdict looked for given-back messages
    /// (`claim_back`) before it scanned for held leases (`lease_held`). A lease
    /// given back between the two was neither: the get said `Disconnected`
    /// while that message waited in the queue (and an iterator ended there,
    /// leaving it behind). Here one receiver holds the only message under a
    /// lease and gives it back while another polls; the poller must get the
    /// message, never `Disconnected`.
    #[test]
    fn a_lease_given_back_during_the_look_is_not_lost_to_disconnect() {
        let _w = watchdog(LIMIT);
        let (rx, _c) = receiver_queue("rdc-back", 4);
        let rx2 = Queue::open_receiver(rx.name()).unwrap();
        for round in 0..300 {
            let tx = Queue::open_sender(rx.name()).unwrap();
            tx.put(b"job").unwrap();
            drop(tx);
            let lease = rx2.get_lease().unwrap();
            let (started, polling) = std::sync::mpsc::channel();
            let got = std::thread::scope(|s| {
                let polled = &rx;
                let mut started = Some(started);
                let poller = s.spawn(move || loop {
                    match polled.try_get() {
                        Err(Error::Empty { .. }) => {
                            if let Some(t) = started.take() {
                                let _ = t.send(());
                            }
                        }
                        r => break r,
                    }
                });
                polling.recv().unwrap();
                drop(lease); // given back
                poller.join().unwrap()
            });
            match got {
                Ok(m) => assert_eq!(m, b"job"),
                Err(e) => {
                    let left = rx.try_get();
                    panic!("round {round}: the poller got {e:?}; the message after it: {left:?}");
                }
            }
        }
    }

    /// The same race for `Closed` (older than roles): a closed and drained
    /// queue said `Closed` while a lease given back during the look waited.
    #[test]
    fn a_lease_given_back_during_the_look_is_not_lost_to_close() {
        let _w = watchdog(LIMIT);
        for round in 0..300 {
            let q = Queue::create_unique(4, 16).unwrap();
            let _c = Cleanup(vec![q.name().to_owned()]);
            let q2 = Queue::open(q.name()).unwrap();
            q.put(b"job").unwrap();
            let lease = q2.get_lease().unwrap();
            q.close();
            let (started, polling) = std::sync::mpsc::channel();
            let got = std::thread::scope(|s| {
                let polled = &q;
                let mut started = Some(started);
                let poller = s.spawn(move || loop {
                    match polled.try_get() {
                        Err(Error::Empty { .. }) => {
                            if let Some(t) = started.take() {
                                let _ = t.send(());
                            }
                        }
                        r => break r,
                    }
                });
                polling.recv().unwrap();
                drop(lease); // given back
                poller.join().unwrap()
            });
            match got {
                Ok(m) => assert_eq!(m, b"job"),
                Err(e) => {
                    let left = q.try_get();
                    panic!("round {round}: the poller got {e:?}; the message after it: {left:?}");
                }
            }
        }
    }

    /// Opens a sender, forks; the forked child waits for "go" on `args[1]`
    /// and puts through its inherited handle; the parent drops its own sender
    /// and says "dropped" on `args[2]`, then waits for the child.
    pub(super) fn fork_sender(args: &[String]) {
        let tx = Queue::open_sender(&args[0]).unwrap();
        // SAFETY: this process is single-threaded apart from the test
        // harness's idle main thread; the forked child only uses queues and
        // then exits with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let go = Queue::open(&args[1]).unwrap();
            let ok = go.get_timeout(LIMIT).is_ok() && tx.put(b"late").is_ok();
            // SAFETY: ends the forked child without running the parent's
            // atexit handlers or the harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        drop(tx);
        Queue::open(&args[2]).unwrap().put(b"dropped").unwrap();
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{st}");
    }

    /// Design problem (not fixed): a sender handle inherited across `fork`
    /// counts as a sender only from its first call in the child (that is when
    /// it takes a participant entry). A parent that forks its producers and
    /// then drops its own sender (the pipe idiom) disconnects the receiver
    /// while every child still holds a sender, and a receiver iterating ends
    /// before their messages come.
    #[test]
    #[ignore = "design: a forked child's inherited sender counts only from its first call (no entry before)"]
    fn a_sender_inherited_across_fork_keeps_the_receiver_connected() {
        let _w = watchdog(LIMIT);
        let (rx, _c) = receiver_queue("rdc-fork", 4);
        let go = unique_name("rdc-fork-go");
        let dropped = unique_name("rdc-fork-dropped");
        let _c2 = Cleanup(vec![go.clone(), dropped.clone()]);
        let go_q = Queue::create(&go, 2, 8).unwrap();
        let dropped_q = Queue::create(&dropped, 2, 8).unwrap();
        let p = spawn("fork_sender", &[rx.name(), &go, &dropped]);
        assert_eq!(dropped_q.get_timeout(LIMIT).unwrap(), b"dropped");
        // The forked child still holds a sender: observe, then let it go on
        // before asserting, so that it never waits for nothing.
        let seen = rx.try_get();
        let disconnected = rx.is_disconnected();
        go_q.put(b"go").unwrap();
        let late = rx.get();
        p.join();
        assert!(matches!(seen, Err(Error::Empty { .. })), "{seen:?}");
        assert!(!disconnected);
        assert_eq!(late.unwrap(), b"late");
    }

    /// Opens a sender, reserves a place (a zero-copy put held open), says
    /// "ready" on `args[1]`, and waits to be killed.
    pub(super) fn grant_sender(args: &[String]) {
        let tx = Queue::open_sender(&args[0]).unwrap();
        let g = tx.reserve(4).unwrap();
        Queue::open(&args[1]).unwrap().put(b"ready").unwrap();
        std::thread::sleep(LIMIT);
        drop(g);
    }

    /// A sender killed with a half-written place at the head: a blocked
    /// receiver steps over it and is told `Disconnected`.
    #[test]
    fn a_sender_killed_holding_a_grant_at_the_head_disconnects_a_blocked_receiver() {
        let _w = watchdog(LIMIT);
        let (rx, _c) = receiver_queue("rdc-grant", 4);
        let ready = unique_name("rdc-grant-ready");
        let _c2 = Cleanup(vec![ready.clone()]);
        let ready_q = Queue::create(&ready, 2, 8).unwrap();
        let child = spawn("grant_sender", &[rx.name(), &ready]);
        assert_eq!(ready_q.get_timeout(LIMIT).unwrap(), b"ready");
        assert!(matches!(rx.try_get(), Err(Error::Empty { .. })));
        std::thread::scope(|s| {
            let blocked = s.spawn(|| rx.get());
            child.kill();
            assert!(matches!(
                blocked.join().unwrap(),
                Err(Error::Disconnected { .. })
            ));
        });
        assert!(rx.is_empty());
    }

    /// Opens a sender, says "ready", waits to be killed.
    pub(super) fn plain_sender(args: &[String]) {
        let _tx = Queue::open_sender(&args[0]).unwrap();
        Queue::open(&args[1]).unwrap().put(b"ready").unwrap();
        std::thread::sleep(LIMIT);
    }

    /// A waiter on many (`shmkit::wait`) on `rx.readable()` is woken by the
    /// death of the last sender, and the receiver then says `Disconnected`.
    #[test]
    fn a_waiter_on_readable_wakes_when_the_last_sender_is_killed() {
        let _w = watchdog(LIMIT);
        let (rx, _c) = receiver_queue("rdc-wait", 4);
        let ready = unique_name("rdc-wait-ready");
        let _c2 = Cleanup(vec![ready.clone()]);
        let ready_q = Queue::create(&ready, 2, 8).unwrap();
        let child = spawn("plain_sender", &[rx.name(), &ready]);
        assert_eq!(ready_q.get_timeout(LIMIT).unwrap(), b"ready");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                while !rx.readable().is_ready() {
                    let _ = shmkit::wait(&[&rx], None);
                }
                rx.try_get()
            });
            child.kill();
            assert!(matches!(
                waiter.join().unwrap(),
                Err(Error::Disconnected { .. })
            ));
        });
    }
}

// Defect 2 (fixed in links.rs): a look (`gone`) cleared the check bit
// before it scanned and set it again, without a wake-up, when it found
// nobody, so a receiver woken by the last sender's drop could sleep on. Its
// loom model is `a_look_by_another_receiver_does_not_hide_the_last_senders_leave`
// in tests/loom_queue.rs, which ci/loom.sh runs.
