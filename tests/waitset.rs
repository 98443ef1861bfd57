//! WaitSet and wait(): readiness of queues, pipes and events, across
//! processes, with dead peers, and timeouts that never return early.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dispatch, spawn, watchdog};
use shmkit::Direction;
use shmkit::{Error, Event, Lock, Pipe, Queue, WaitSet, Waitable};

#[test]
fn child() {
    dispatch(&[
        ("stepper", stepper),
        ("idle_peer", idle_peer),
        ("dead_producer", dead_producer),
        ("idle_participant", idle_participant),
        ("hold_lock", hold_lock),
    ]);
}

/// Makes one source ready per command from the `cmd` queue: "queue",
/// "pipe", "event"; returns on "done".
fn stepper(args: &[String]) {
    let cmd = Queue::open(&args[0]).unwrap();
    let q = Queue::open(&args[1]).unwrap();
    let mut p = Pipe::open(&args[2]).unwrap();
    let ev = Event::open(&args[3]).unwrap();
    loop {
        match &cmd.get().unwrap()[..] {
            b"queue" => q.put(b"job").unwrap(),
            b"pipe" => p.send(b"ping").unwrap(),
            b"event" => ev.set(),
            b"done" => return,
            other => panic!("stepper: unknown command {other:?}"),
        }
    }
}

/// Opens the pipe end, says so, and waits to be killed.
fn idle_peer(args: &[String]) {
    let _p = Pipe::open(&args[0]).unwrap();
    Event::open(&args[1]).unwrap().set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Takes the lock, says so, and waits to be killed holding it.
fn hold_lock(args: &[String]) {
    let l = Lock::open(&args[0]).unwrap();
    let _g = l.lock().unwrap();
    Event::open(&args[1]).unwrap().set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Takes part in the queue (one put and get) and in the pipe, says so,
/// and waits, silent, to be killed.
fn idle_participant(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    q.put(b"hello").unwrap();
    q.get().unwrap();
    let _p = Pipe::open(&args[1]).unwrap();
    Event::open(&args[2]).unwrap().set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Claims the queue's next place with a grant, says so, and waits to be
/// killed holding it.
fn dead_producer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let _grant = q.reserve(4).unwrap();
    Event::open(&args[1]).unwrap().set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn ready_set(ws: &mut WaitSet<'_>) -> Vec<usize> {
    ws.wait_timeout(Duration::from_secs(30))
        .expect("something became ready")
        .iter()
        .map(|k| k.index())
        .collect()
}

/// Each source becomes ready in turn, made so by another process, and the
/// wait reports exactly that one; a SIGKILLed peer makes its pipe ready.
#[test]
fn each_source_becomes_ready_in_turn_across_processes() {
    let _w = watchdog(Duration::from_secs(120));
    let cmd = Queue::create_unique(8, 16).unwrap();
    let q = Queue::create_unique(4, 16).unwrap();
    let mut p = Pipe::create_unique().unwrap();
    let ev = Event::create_unique().unwrap();
    let mut dying = Pipe::create_unique().unwrap();
    let opened = Event::create_unique().unwrap();
    let stepper = spawn("stepper", &[cmd.name(), q.name(), p.name(), ev.name()]);
    let mut peer = Some(spawn("idle_peer", &[dying.name(), opened.name()]));
    assert!(opened.wait_timeout(Duration::from_secs(30)).unwrap());

    {
        let mut ws = WaitSet::new();
        for w in [&q as &dyn Waitable, &p, &ev, &dying] {
            ws.add(w.interest()).unwrap();
        }
        assert!(ws.poll().unwrap().is_empty(), "nothing is ready yet");
    }
    for (i, step) in ["queue", "pipe", "event", "kill"].into_iter().enumerate() {
        if step == "kill" {
            peer.take().unwrap().kill();
        } else {
            cmd.put(step.as_bytes()).unwrap();
        }
        let got = {
            let mut ws = WaitSet::new();
            for w in [&q as &dyn Waitable, &p, &ev, &dying] {
                ws.add(w.interest()).unwrap();
            }
            ready_set(&mut ws)
        };
        assert_eq!(got, [i], "after {step}");
        // Consume it, so that the next round sees only the next source.
        match step {
            "queue" => assert_eq!(q.try_get().unwrap(), b"job"),
            "pipe" => assert_eq!(p.recv().unwrap(), b"ping"),
            "event" => ev.clear(),
            _ => assert!(matches!(
                dying.recv_timeout(Duration::ZERO),
                Err(Error::Disconnected { .. })
            )),
        }
    }
    cmd.put(b"done").unwrap();
    assert_eq!(stepper.wait(), 0);
}

/// A producer killed while its grant holds the head: the queue's entry
/// does not report a message that is not there (the dead claim is
/// stepped over), and a later put makes it ready.
#[test]
fn a_dead_claim_at_the_head_is_stepped_over_not_reported() {
    let _w = watchdog(Duration::from_secs(120));
    let q = Queue::create_unique(2, 16).unwrap();
    let claimed = Event::create_unique().unwrap();
    let child = spawn("dead_producer", &[q.name(), claimed.name()]);
    assert!(claimed.wait_timeout(Duration::from_secs(30)).unwrap());
    child.kill();
    let mut ws = WaitSet::new();
    let k = ws.add(&q).unwrap();
    // Long enough for the liveness interval to pass more than once.
    let t0 = Instant::now();
    assert!(matches!(
        ws.wait_timeout(Duration::from_millis(100)),
        Err(Error::Timeout { .. })
    ));
    assert!(t0.elapsed() >= Duration::from_millis(100));
    q.put(b"after").unwrap();
    assert!(ws
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .contains(k));
    assert_eq!(q.try_get().unwrap(), b"after");
}

#[test]
fn timeouts_never_return_early() {
    let _w = watchdog(Duration::from_secs(60));
    let ev = Event::create_unique().unwrap();
    let q = Queue::create_unique(1, 8).unwrap();
    for ms in [0u64, 1, 5, 25, 60] {
        let d = Duration::from_millis(ms);
        let mut ws = WaitSet::new();
        ws.add(&ev).unwrap();
        ws.add(&q).unwrap();
        let t0 = Instant::now();
        assert!(matches!(ws.wait_timeout(d), Err(Error::Timeout { .. })));
        assert!(t0.elapsed() >= d, "wait_timeout({d:?}) returned early");
        let t0 = Instant::now();
        assert!(matches!(
            ws.wait_deadline(t0 + d),
            Err(Error::Timeout { .. })
        ));
        assert!(t0.elapsed() >= d, "wait_deadline returned early");
        let t0 = Instant::now();
        assert!(shmkit::wait(&[&ev, &q], Some(d)).unwrap().is_empty());
        assert!(t0.elapsed() >= d, "wait() returned early");
    }
    // A set of one entry takes the single-futex path.
    let mut ws = WaitSet::new();
    ws.add(&ev).unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        ws.wait_timeout(Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

/// A wait with no timeout sleeps until another thread makes an entry
/// ready (a lost wake-up would hang here, caught by the watchdog).
#[test]
fn blocking_wait_is_woken_by_each_kind_of_change() {
    let _w = watchdog(Duration::from_secs(120));
    let q = Arc::new(Queue::create_unique(1, 8).unwrap());
    let ev = Arc::new(Event::create_unique().unwrap());
    for round in 0..200 {
        let (q2, ev2) = (q.clone(), ev.clone());
        let t = std::thread::spawn(move || {
            if round % 2 == 0 {
                q2.put(b"x").unwrap();
            } else {
                ev2.set();
            }
        });
        let mut ws = WaitSet::new();
        let (kq, ke) = (ws.add(&*q).unwrap(), ws.add(&*ev).unwrap());
        let ready = ws.wait().unwrap();
        t.join().unwrap();
        if round % 2 == 0 {
            assert!(ready.contains(kq));
            q.try_get().unwrap();
        } else {
            assert!(ready.contains(ke));
            ev.clear();
        }
    }
}

#[test]
fn queue_writable_and_closed() {
    let _w = watchdog(Duration::from_secs(60));
    let q = Queue::create_unique(1, 8).unwrap();
    q.put(b"x").unwrap();
    assert!(!q.writable().is_ready());
    let mut ws = WaitSet::new();
    let put = ws.add(q.writable()).unwrap();
    let get = ws.add(&q).unwrap();
    let r = ws.poll().unwrap();
    assert!(r.contains(get) && !r.contains(put));
    q.try_get().unwrap();
    let r = ws.poll().unwrap();
    assert!(r.contains(put) && !r.contains(get));
    q.close();
    let r = ws.poll().unwrap();
    assert!(
        r.contains(put) && r.contains(get),
        "a closed queue is ready both ways"
    );
}

#[test]
fn pipe_writable_follows_room() {
    let _w = watchdog(Duration::from_secs(60));
    let mut a = Pipe::builder().capacity(256).create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    while a.send_timeout(&[1u8; 60], Duration::ZERO).is_ok() {}
    assert!(!a.writable(60).is_ready());
    b.recv().unwrap();
    assert!(a.writable(60).is_ready());
    drop(b);
    assert!(a.writable(1000).is_ready(), "a closed peer is ready");
}

#[test]
fn impossible_entries_and_too_many_are_refused() {
    let a = Pipe::builder()
        .direction(Direction::CreatorSends)
        .create_unique()
        .unwrap();
    let b = Pipe::open(a.name()).unwrap();
    let mut ws = WaitSet::new();
    assert!(matches!(ws.add(&a), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        ws.add(b.writable(1)),
        Err(Error::InvalidArgument(_))
    ));
    ws.add(a.writable(1)).unwrap();
    ws.add(&b).unwrap();

    let ev = Event::create_unique().unwrap();
    let mut ws = WaitSet::new();
    for _ in 0..128 {
        ws.add(&ev).unwrap();
    }
    match ws.add(&ev) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("128"), "{m}"),
        r => panic!("129th entry: {r:?}"),
    }
    ev.set();
    assert_eq!(ws.wait().unwrap().len(), 128);
    assert!(matches!(
        WaitSet::new().wait(),
        Err(Error::InvalidArgument(_))
    ));
}

/// The calling thread's voluntary context switches so far.
fn voluntary_switches() -> u64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Blocked calls with a live, silent peer do not wake every liveness
/// interval to look for a death (they did: 50 wake-ups a second); the
/// peer's exit would wake them. Each call here blocks 2 s: about 2
/// wake-ups are expected, 150 before.
#[test]
fn idle_blocked_calls_wake_about_once_a_second() {
    let _w = watchdog(Duration::from_secs(120));
    let q = Arc::new(Queue::create_unique(4, 8).unwrap());
    let mut p = Pipe::create_unique().unwrap();
    let ready = Event::create_unique().unwrap();
    let child = spawn("idle_participant", &[q.name(), p.name(), ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    let d = Duration::from_secs(2);
    let limit = 8;
    let l = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let holder = spawn("hold_lock", &[l.name(), held.name()]);
    assert!(held.wait_timeout(Duration::from_secs(30)).unwrap());
    let lock = std::thread::spawn(move || {
        let before = voluntary_switches();
        assert!(matches!(l.lock_timeout(d), Err(Error::Timeout { .. })));
        voluntary_switches() - before
    });
    let q2 = q.clone();
    let queue = std::thread::spawn(move || {
        let before = voluntary_switches();
        assert!(matches!(q2.get_timeout(d), Err(Error::Timeout { .. })));
        voluntary_switches() - before
    });
    let q3 = q.clone();
    let set = std::thread::spawn(move || {
        let ev = Event::create_unique().unwrap();
        let before = voluntary_switches();
        let mut ws = WaitSet::new();
        ws.add(&*q3).unwrap();
        ws.add(&ev).unwrap();
        assert!(matches!(ws.wait_timeout(d), Err(Error::Timeout { .. })));
        voluntary_switches() - before
    });
    let before = voluntary_switches();
    assert!(matches!(p.recv_timeout(d), Err(Error::Timeout { .. })));
    let pipe = voluntary_switches() - before;
    let (queue, set) = (queue.join().unwrap(), set.join().unwrap());
    let lock = lock.join().unwrap();
    child.kill();
    holder.kill();
    assert!(
        lock <= limit,
        "Lock::lock_timeout woke {lock} times in {d:?}"
    );
    assert!(
        pipe <= limit,
        "Pipe::recv_timeout woke {pipe} times in {d:?}"
    );
    assert!(
        queue <= limit,
        "Queue::get_timeout woke {queue} times in {d:?}"
    );
    assert!(
        set <= limit,
        "WaitSet::wait_timeout woke {set} times in {d:?}"
    );
}

/// A lock entry: not ready while held, ready when its holder is SIGKILLed
/// (and `try_lock` then takes it, told that the owner died), ready when
/// released by another thread; a locker asleep meanwhile still gets it.
#[test]
fn lock_entries_follow_holders_and_their_deaths() {
    let _w = watchdog(Duration::from_secs(120));
    let l = Arc::new(Lock::create_unique().unwrap());
    let held = Event::create_unique().unwrap();
    let child = spawn("hold_lock", &[l.name(), held.name()]);
    assert!(held.wait_timeout(Duration::from_secs(30)).unwrap());
    let mut ws = WaitSet::new();
    let k = ws.add(&*l).unwrap();
    assert!(ws.poll().unwrap().is_empty());
    child.kill();
    assert!(ws
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .contains(k));
    let g = l
        .try_lock()
        .unwrap()
        .expect("the dead holder's lock is free");
    assert!(g.owner_died());

    drop(g);
    // Held by another thread; a locker thread sleeps on it; the set sees
    // the unlock; the locker still gets the lock (the set passes the
    // wake-up on). The pause only lets the locker reach its sleep: the
    // outcome is the same without it.
    let (tx, rx) = std::sync::mpsc::channel();
    let l3 = l.clone();
    let holder = std::thread::spawn(move || {
        let g = l3.lock().unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
    });
    rx.recv().unwrap();
    let l2 = l.clone();
    let locker = std::thread::spawn(move || drop(l2.lock().unwrap()));
    let mut ws = WaitSet::new();
    let k = ws.add(l.free_interest()).unwrap();
    let _ = ws
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .contains(k);
    holder.join().unwrap();
    locker.join().unwrap();
}
