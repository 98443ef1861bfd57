//! Criterion benches of shmkit's in-process hot paths: lock/unlock, event
//! set with and without a waiter, queue put + get, pipe send + recv and
//! `Value::fetch_add`. Both ends live in this process, so these measure the
//! code path itself, not a cross-process hand-off (that is `compare`, the
//! harness in `bench/`).
//!
//! ```text
//! cargo bench --bench hot_paths
//! ```
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shmkit::{Event, Lock, Pipe, Queue, Value};

fn lock(c: &mut Criterion) {
    let lock = Lock::create_unique().unwrap();
    c.bench_function("lock/lock+unlock", |b| {
        b.iter(|| drop(black_box(lock.lock().unwrap())))
    });
    c.bench_function("lock/try_lock+unlock", |b| {
        b.iter(|| drop(black_box(lock.try_lock().unwrap())))
    });
}

fn value(c: &mut Criterion) {
    let v = Value::create_unique(0u64).unwrap();
    c.bench_function("value/fetch_add", |b| b.iter(|| black_box(v.fetch_add(1))));
    c.bench_function("value/load", |b| b.iter(|| black_box(v.load())));
    c.bench_function("value/lock+1", |b| b.iter(|| *v.lock().unwrap() += 1));
}

/// The state letter (`R`, `S`, …) of thread `tid` of this process.
fn thread_state(tid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses.
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

#[allow(clippy::disallowed_types)] // process-local hand-shake flags of the bench, not shared memory
fn event(c: &mut Criterion) {
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::Arc;

    let ev = Event::create_unique().unwrap();
    c.bench_function("event/set+clear, nobody waiting", |b| {
        b.iter(|| {
            ev.set();
            ev.clear();
        })
    });
    ev.set();
    c.bench_function("event/set, already set", |b| b.iter(|| ev.set()));
    ev.clear();

    // set() while another thread sleeps in wait(): the cost of the call
    // that wakes it (the futex wake), timed alone.
    let name = ev.name().to_owned();
    let go = Arc::new(AtomicBool::new(false));
    let woke = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(AtomicBool::new(false));
    let tid = Arc::new(AtomicI32::new(0));
    let waiter = {
        let (go, woke, quit, tid) = (go.clone(), woke.clone(), quit.clone(), tid.clone());
        std::thread::spawn(move || {
            let ev = Event::open(&name).unwrap();
            // SAFETY: gettid has no preconditions.
            tid.store(unsafe { libc::gettid() }, Ordering::Release);
            loop {
                while !go.swap(false, Ordering::AcqRel) {
                    if quit.load(Ordering::Acquire) {
                        return;
                    }
                    std::hint::spin_loop();
                }
                ev.wait().unwrap();
                woke.store(true, Ordering::Release);
            }
        })
    };
    while tid.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    let tid = tid.load(Ordering::Acquire);
    c.bench_function("event/set, one thread asleep in wait", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                ev.clear();
                woke.store(false, Ordering::Release);
                go.store(true, Ordering::Release);
                // Until the waiter has left its spin and sleeps in wait().
                while go.load(Ordering::Acquire) || thread_state(tid) != Some('S') {
                    std::hint::spin_loop();
                }
                let t0 = Instant::now();
                ev.set();
                total += t0.elapsed();
                while !woke.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            }
            total
        })
    });
    quit.store(true, Ordering::Release);
    waiter.join().unwrap();
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    for size in [8usize, 64, 4096] {
        let q = Queue::create_unique(64, size).unwrap();
        let msg = vec![7u8; size];
        let mut buf = vec![0u8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("put+get_into {size} B"), |b| {
            b.iter(|| {
                q.put(black_box(&msg)).unwrap();
                black_box(q.get_into(&mut buf).unwrap());
            })
        });
        g.bench_function(format!("reserve+commit+get_ref {size} B"), |b| {
            b.iter(|| {
                let mut w = q.reserve(size).unwrap();
                w[0] = 1;
                w.commit().unwrap();
                black_box(q.get_ref().unwrap()[0]);
            })
        });
        g.bench_function(format!("put+get_lease+ack {size} B"), |b| {
            b.iter(|| {
                q.put(black_box(&msg)).unwrap();
                let l = q.get_lease().unwrap();
                black_box(l[0]);
                l.ack().unwrap();
            })
        });
        g.bench_function(format!("put+get (allocates) {size} B"), |b| {
            b.iter(|| {
                q.put(black_box(&msg)).unwrap();
                black_box(q.get().unwrap());
            })
        });
    }
    // The error path a polling consumer takes most: nothing queued.
    let q = Queue::create_unique(64, 64).unwrap();
    let mut buf = vec![0u8; 64];
    g.bench_function("try_get, empty", |b| {
        b.iter(|| black_box(q.try_get()).is_err())
    });
    g.bench_function("try_get_into, empty", |b| {
        b.iter(|| black_box(q.try_get_into(&mut buf)).is_err())
    });
    g.finish();
}

fn pipe(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe");
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    for size in [8usize, 64, 4096] {
        let msg = vec![7u8; size];
        let mut buf = vec![0u8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("send+recv_into {size} B"), |bn| {
            bn.iter(|| {
                a.send(black_box(&msg)).unwrap();
                black_box(b.recv_into(&mut buf).unwrap());
            })
        });
        g.bench_function(format!("reserve+commit+recv_ref {size} B"), |bn| {
            bn.iter(|| {
                let mut w = a.reserve(size).unwrap();
                w[0] = 1;
                w.commit();
                black_box(b.recv_ref().unwrap()[0]);
            })
        });
        g.bench_function(format!("send+recv (allocates) {size} B"), |bn| {
            bn.iter(|| {
                a.send(black_box(&msg)).unwrap();
                black_box(b.recv().unwrap());
            })
        });
    }
    g.finish();
}

/// A round trip through two queues to an echo thread, the reply waited for
/// by a plain blocking `get`, by a WaitSet of 1 entry, and by one of 8
/// (the reply queue and 7 events that never fire); the set is built for
/// every wait, as a caller that also waits on pipe ends would.
fn waitset(c: &mut Criterion) {
    let mut g = c.benchmark_group("waitset");
    let req = std::sync::Arc::new(Queue::create_unique(4, 64).unwrap());
    let rep = std::sync::Arc::new(Queue::create_unique(4, 64).unwrap());
    let events: Vec<Event> = (0..7).map(|_| Event::create_unique().unwrap()).collect();
    let (rq, rp) = (req.clone(), rep.clone());
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match rq.get_into(&mut buf) {
                Ok(n) if n > 0 => rp.put(&buf[..n]).unwrap(),
                _ => return,
            }
        }
    });
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    g.throughput(Throughput::Elements(1));
    g.bench_function("round trip, get", |b| {
        b.iter(|| {
            req.put(&msg).unwrap();
            black_box(rep.get_into(&mut buf).unwrap());
        })
    });
    g.bench_function("round trip, WaitSet of 1", |b| {
        b.iter(|| {
            req.put(&msg).unwrap();
            loop {
                let mut ws = shmkit::WaitSet::new();
                ws.add(&*rep).unwrap();
                ws.wait().unwrap();
                if let Ok(n) = rep.try_get_into(&mut buf) {
                    black_box(n);
                    break;
                }
            }
        })
    });
    g.bench_function("round trip, WaitSet of 8", |b| {
        b.iter(|| {
            req.put(&msg).unwrap();
            loop {
                let mut ws = shmkit::WaitSet::new();
                ws.add(&*rep).unwrap();
                for e in &events {
                    ws.add(e).unwrap();
                }
                ws.wait().unwrap();
                if let Ok(n) = rep.try_get_into(&mut buf) {
                    black_box(n);
                    break;
                }
            }
        })
    });
    g.finish();
    req.put(&[]).unwrap();
    echo.join().unwrap();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lock, value, event, queue, pipe, waitset
}
criterion_main!(benches);
