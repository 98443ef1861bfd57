//! `cargo bench --bench recovery [-- TRIALS]`: how long a survivor takes to
//! notice a peer SIGKILLed at a bad moment, and how often an idle blocked
//! call wakes by itself.
//!
//! - Lock: a child holds the lock; the parent blocks in `lock()`; the child
//!   is killed; time from `kill(2)` to the parent's guard (with
//!   `owner_died`).
//! - Pipe: the parent blocks in `recv()`; the child (the other end) is
//!   killed; time from `kill(2)` to `Disconnected`.
//! - Queue: a child holds a put grant at the head, and another message is
//!   queued behind it; the parent blocks in `get()`; the child is killed;
//!   time from `kill(2)` to the message behind the dead claim.
//! - Idle: a `recv_timeout`, `get_timeout` and `lock_timeout` of 3 s with a
//!   live, silent peer: the voluntary context switches of the waiting
//!   thread, per second.
//!
//! Prints medians and p90 in milliseconds.
#![allow(missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmkit::{Error, Event, Lock, Pipe, Queue};

const ROLE: &str = "SHMKIT_RECOVERY_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role, &std::env::args().skip(1).collect::<Vec<_>>());
        return;
    }
    let trials: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    println!("recovery after SIGKILL, {trials} trials each (ms from kill(2) to recovery)");
    println!("{:<8} {:>8} {:>8} {:>8}", "core", "median", "p90", "max");
    for (name, f) in [
        ("Lock", lock_trial as fn() -> Duration),
        ("Pipe", pipe_trial),
        ("Queue", queue_trial),
    ] {
        let mut v: Vec<Duration> = (0..trials).map(|_| f()).collect();
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:<8} {:>8.3} {:>8.3} {:>8.3}",
            name,
            ms(v[v.len() / 2]),
            ms(v[v.len() * 9 / 10]),
            ms(v[v.len() - 1])
        );
    }
    idle();
}

fn spawn(role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env(ROLE, role)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn kill(c: &mut Child) -> Instant {
    let t = Instant::now();
    // SAFETY: kill(2) on our own child's pid; no memory involved.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    t
}

fn child(role: &str, args: &[String]) {
    let ready = Event::open(&args[1]).unwrap();
    match role {
        "hold_lock" => {
            let l = Lock::open(&args[0]).unwrap();
            let _g = l.lock().unwrap();
            ready.set();
            park();
        }
        "pipe_peer" => {
            let _p = Pipe::open(&args[0]).unwrap();
            ready.set();
            park();
        }
        "queue_grant" => {
            let q = Queue::open(&args[0]).unwrap();
            let _g = q.reserve(8).unwrap();
            ready.set();
            park();
        }
        _ => panic!("unknown role {role}"),
    }
}

fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Starts `role` on `name`, waits until it is in place, then runs `block`
/// on a thread (it must block until the child dies) and kills the child
/// once that thread is asleep; returns the time from the kill to `block`'s
/// return.
fn trial(role: &str, name: &str, block: impl FnOnce() + Send + 'static) -> Duration {
    let ready = Event::create_unique().unwrap();
    let mut c = spawn(role, &[name, ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(10)).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        block();
        tx.send(Instant::now()).unwrap();
    });
    // Let the waiter reach its sleep (past the spin).
    std::thread::sleep(Duration::from_millis(30));
    let killed = kill(&mut c);
    let done = rx.recv_timeout(Duration::from_secs(10)).expect("recovered");
    t.join().unwrap();
    let _ = c.wait();
    done.saturating_duration_since(killed)
}

fn lock_trial() -> Duration {
    let l = Lock::create_unique().unwrap();
    let name = l.name().to_owned();
    let l = std::sync::Arc::new(l);
    let l2 = l.clone();
    trial("hold_lock", &name, move || {
        let g = l2.lock().unwrap();
        assert!(g.owner_died());
    })
}

fn pipe_trial() -> Duration {
    let mut p = Pipe::create_unique().unwrap();
    let name = p.name().to_owned();
    let ready = Event::create_unique().unwrap();
    let mut c = spawn("pipe_peer", &[&name, ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(10)).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let r = p.recv();
        assert!(matches!(r, Err(Error::Disconnected { .. })), "{r:?}");
        tx.send(Instant::now()).unwrap();
    });
    std::thread::sleep(Duration::from_millis(30));
    let killed = kill(&mut c);
    let done = rx.recv_timeout(Duration::from_secs(10)).expect("recovered");
    t.join().unwrap();
    let _ = c.wait();
    done.saturating_duration_since(killed)
}

fn queue_trial() -> Duration {
    let q = Queue::create_unique(4, 8).unwrap();
    let name = q.name().to_owned();
    let q = std::sync::Arc::new(q);
    let ready = Event::create_unique().unwrap();
    let mut c = spawn("queue_grant", &[&name, ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(10)).unwrap());
    q.put(b"behind").unwrap();
    let q2 = q.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        assert_eq!(q2.get().unwrap(), b"behind");
        tx.send(Instant::now()).unwrap();
    });
    std::thread::sleep(Duration::from_millis(30));
    let killed = kill(&mut c);
    let done = rx.recv_timeout(Duration::from_secs(10)).expect("recovered");
    t.join().unwrap();
    let _ = c.wait();
    done.saturating_duration_since(killed)
}

fn voluntary_switches() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn idle() {
    let secs = 3;
    let d = Duration::from_secs(secs);
    println!("\nidle wake-ups of a call blocked {secs} s with a live, silent peer (per second)");
    let rate = |f: &dyn Fn()| {
        let before = voluntary_switches();
        f();
        (voluntary_switches() - before) as f64 / secs as f64
    };
    let ready = Event::create_unique().unwrap();
    let mut p = Pipe::create_unique().unwrap();
    let mut c = spawn("pipe_peer", &[p.name(), ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(10)).unwrap());
    let p_rate = {
        let before = voluntary_switches();
        assert!(matches!(p.recv_timeout(d), Err(Error::Timeout { .. })));
        (voluntary_switches() - before) as f64 / secs as f64
    };
    kill(&mut c);
    let _ = c.wait();

    let q = Queue::create_unique(4, 8).unwrap();
    let q_rate = rate(&|| assert!(matches!(q.get_timeout(d), Err(Error::Timeout { .. }))));

    let l = Lock::create_unique().unwrap();
    let ready = Event::create_unique().unwrap();
    let mut c = spawn("hold_lock", &[l.name(), ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(10)).unwrap());
    let l_rate = rate(&|| assert!(matches!(l.lock_timeout(d), Err(Error::Timeout { .. }))));
    kill(&mut c);
    let _ = c.wait();
    println!("Pipe recv_timeout  {p_rate:>6.1}");
    println!("Queue get_timeout  {q_rate:>6.1}");
    println!("Lock lock_timeout  {l_rate:>6.1}");
}
