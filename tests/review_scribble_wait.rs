//! Review: scribblers write random bytes over a live Queue's, Pipe's, Lock's
//! and Event's shared memory while threads wait on them through a WaitSet
//! (short timeouts) and through futures polled for a short while and then
//! dropped. Every call must return (a wait of at most 2 ms within 10 s),
//! nothing may panic or hang. `SHMKIT_SCRIBBLE_MS` (default 1500) bounds
//! the run.
#![allow(clippy::disallowed_types)]
#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use common::{count_from_env, watchdog, Rng};
use shmkit::{Event, Lock, Pipe, Queue, WaitSet};

const CALL_LIMIT: Duration = Duration::from_secs(10);

fn scribble(name: String, seed: u64, stop: Arc<AtomicBool>) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let seg = memmap2::MmapRaw::map_raw(&file).unwrap();
    let mut rng = Rng::new(seed, 91);
    // The payload only (the header is read at open, which we do not redo).
    let (p, len) = (seg.as_mut_ptr(), seg.len());
    while !stop.load(Ordering::Relaxed) {
        let v: u64 = match rng.below(5) {
            0 => rng.next(),
            1 => u64::MAX - rng.below(16),
            2 => (1u64 << 32) - 8 + rng.below(16),
            3 => rng.below(256),
            _ => 0,
        };
        if len - 64 >= 8 {
            let off = 64 + (rng.below(((len - 64) / 8) as u64) * 8) as usize;
            // SAFETY: in bounds of the mapping; a hostile peer's write.
            unsafe { std::ptr::write_volatile(p.add(off).cast::<u64>(), v) };
        } else {
            // SAFETY: as above (an event's payload is one word).
            unsafe { std::ptr::write_volatile(p.add(64).cast::<u32>(), v as u32) };
        }
        if rng.one_in(16) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

struct Noop;

impl std::task::Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Polls `f` for up to `for_` (a waker that does nothing), then drops it.
fn poll_for<F: Future>(f: F, for_: Duration) {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let t = Instant::now();
    while t.elapsed() < for_ {
        if f.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn timed<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() < CALL_LIMIT, "{what} took {:?}", t.elapsed());
    r
}

#[test]
fn waits_survive_scribbled_words() {
    let _w = watchdog(Duration::from_secs(120));
    let dur = Duration::from_millis(count_from_env("SHMKIT_SCRIBBLE_MS", 1_500));
    let q = Queue::create_unique(4, 32).unwrap();
    let lock = Lock::create_unique().unwrap();
    let ev = Event::create_unique().unwrap();
    let a = Pipe::create_unique().unwrap();
    let pname = a.name().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let scribblers: Vec<_> = [q.name(), lock.name(), ev.name(), &pname]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (n, stop) = (n.to_string(), stop.clone());
            std::thread::spawn(move || scribble(n, 1000 + i as u64, stop))
        })
        .collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        // The pipe's other end, sending and receiving with short timeouts.
        s.spawn(|| {
            let mut b = match Pipe::open(&pname) {
                Ok(b) => b,
                Err(_) => return,
            };
            let mut rng = Rng::new(5, 5);
            while t0.elapsed() < dur {
                let d = Duration::from_micros(rng.below(2000));
                let _ = timed("send", || b.send_timeout(b"xyz", d));
                let _ = timed("recv", || b.recv_timeout(d));
                poll_for(b.recv_async(), d);
            }
        });
        // Waits on everything at once, and futures.
        s.spawn(|| {
            let mut a = a;
            let mut rng = Rng::new(6, 6);
            while t0.elapsed() < dur {
                let d = Duration::from_micros(rng.below(2000));
                {
                    let mut set = WaitSet::new();
                    set.add(q.readable()).unwrap();
                    set.add(q.writable()).unwrap();
                    set.add(&lock).unwrap();
                    set.add(&ev).unwrap();
                    set.add(a.readable()).unwrap();
                    let _ = timed("WaitSet::wait_timeout", || set.wait_timeout(d));
                    poll_for(set.wait_async(), d);
                }
                poll_for(q.get_async(), d);
                poll_for(q.put_async(b"m"), d);
                poll_for(lock.lock_async(), d);
                poll_for(ev.wait_async(), d);
                poll_for(a.recv_async(), d);
                let _ = timed("lock_timeout", || lock.lock_timeout(d).map(drop));
                let _ = timed("get_timeout", || q.get_timeout(d));
                let _ = timed("a.recv_timeout", || a.recv_timeout(d));
            }
        });
    });
    stop.store(true, Ordering::Relaxed);
    for s in scribblers {
        s.join().unwrap();
    }
}
