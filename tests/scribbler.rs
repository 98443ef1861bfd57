//! The concurrent scribbler: one thread writes random bytes over a live
//! Queue's, Pipe's and Lock's shared memory (header and payload, random
//! offsets, values near 0, 2^32 and 2^64) while other threads operate on it
//! with short timeouts. Every call must return (Ok or an error) -- a monitor
//! fails the run if one call is in progress for more than 10 s -- and
//! nothing may panic, abort or hang. `SHMKIT_SCRIBBLE_MS` (default 1500)
//! bounds each test; `SHMKIT_SCRIBBLE_SEED` replays the random choices.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{count_from_env, seed_from_env, Rng};
use shmkit::{Lock, Pipe, Queue};

const CALL_LIMIT: Duration = Duration::from_secs(10);

fn t(rng: &mut Rng) -> Duration {
    Duration::from_micros(rng.below(2_000))
}

/// Writes random values at random offsets of `seg` until `stop`.
fn scribble(seg: memmap2::MmapRaw, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new(seed, 77);
    let (p, len) = (seg.as_mut_ptr(), seg.len());
    while !stop.load(Ordering::Relaxed) {
        let v: u64 = match rng.below(6) {
            0 => rng.next(),
            1 => u64::MAX - rng.below(16),
            2 => (1u64 << 32) - 8 + rng.below(16),
            3 => rng.below(256),
            4 => 0,
            _ => rng.below(1 << 20),
        };
        let wide = rng.one_in(2) && len >= 8;
        if wide {
            let off = (rng.below((len / 8) as u64) * 8) as usize;
            // SAFETY: in bounds of the mapping; a hostile peer's write, which
            // the library must tolerate. Volatile so it is not elided.
            unsafe { std::ptr::write_volatile(p.add(off).cast::<u64>(), v) };
        } else {
            let off = rng.below(len as u64) as usize;
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(p.add(off), v as u8) };
        }
        if rng.one_in(64) {
            std::thread::yield_now();
        }
    }
}

/// Runs `ops` (each call wrapped by `call`) on `threads` threads while a
/// scribbler runs over `seg_name`; fails if a call does not return.
fn run(
    test: &str,
    seg_name: &str,
    threads: usize,
    op: impl Fn(usize, &mut Rng) + Send + Sync + 'static,
) {
    let seed = seed_from_env("SHMKIT_SCRIBBLE_SEED", test);
    let dur = Duration::from_millis(count_from_env("SHMKIT_SCRIBBLE_MS", 1_500));
    let stop = Arc::new(AtomicBool::new(false));
    // The whole object, header included, mapped a second time.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{seg_name}"))
        .unwrap();
    let seg = memmap2::MmapRaw::map_raw(&file).unwrap();
    let s = {
        let stop = stop.clone();
        std::thread::spawn(move || scribble(seg, seed, stop))
    };
    let op = Arc::new(op);
    let t0 = Instant::now();
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    let calls = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let (op, stop, started, calls) =
                (op.clone(), stop.clone(), started.clone(), calls.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed, 1 + i as u64);
                while !stop.load(Ordering::Relaxed) {
                    started[i].store(t0.elapsed().as_micros() as u64 + 1, Ordering::SeqCst);
                    op(i, &mut rng);
                    started[i].store(0, Ordering::SeqCst);
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while t0.elapsed() < dur {
        std::thread::sleep(Duration::from_millis(20));
        for (i, st) in started.iter().enumerate() {
            let s = st.load(Ordering::SeqCst);
            if s != 0 && t0.elapsed().as_micros() as u64 > s - 1 + CALL_LIMIT.as_micros() as u64 {
                eprintln!("{test}: a call on thread {i} did not return within {CALL_LIMIT:?} (seed {seed}); aborting");
                std::process::abort();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut panicked = 0;
    for h in hs {
        // A thread still in a call is watched until it returns.
        let t = Instant::now();
        while !h.is_finished() {
            assert!(
                t.elapsed() < CALL_LIMIT + CALL_LIMIT,
                "{test}: an operator never returned (seed {seed})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        panicked += usize::from(h.join().is_err());
    }
    s.join().unwrap();
    eprintln!(
        "{test}: seed {seed}, {} calls in {:?}",
        calls.load(Ordering::Relaxed),
        t0.elapsed()
    );
    assert_eq!(
        panicked, 0,
        "{test}: {panicked} operator threads panicked (seed {seed})"
    );
}

#[test]
fn scribble_queue() {
    let q = Arc::new(Queue::create_unique(4, 32).unwrap());
    let name = q.name().to_owned();
    run("scribble_queue", &name, 3, move |_, rng| {
        let mut buf = [0u8; 32];
        let _ = match rng.below(9) {
            0 => q.try_put(b"hello").map(drop),
            1 => q.put_timeout(&[7; 20], t(rng)).map(drop),
            2 => q.try_get().map(drop),
            3 => q.get_timeout(t(rng)).map(drop),
            4 => q.try_get_into(&mut buf[..rng.below(33) as usize]).map(drop),
            5 => q.try_reserve(rng.below(33) as usize).and_then(|g| {
                if rng.one_in(2) {
                    g.commit()
                } else {
                    Ok(())
                }
            }),
            6 => q.try_get_ref().map(|g| {
                std::hint::black_box(g.len());
            }),
            7 => q.get_into_timeout(&mut buf, t(rng)).map(drop),
            _ => {
                std::hint::black_box((q.len(), q.is_full(), q.is_empty()));
                Ok(())
            }
        };
    });
}

#[test]
fn scribble_pipe() {
    let a = Pipe::builder()
        .capacity(128)
        .max_message(512)
        .create_unique()
        .unwrap();
    let b = Pipe::open(a.name()).unwrap();
    let name = a.name().to_owned();
    let ends = Arc::new([std::sync::Mutex::new(a), std::sync::Mutex::new(b)]);
    run("scribble_pipe", &name, 2, move |i, rng| {
        let mut e = ends[i].lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = [0u8; 600];
        let _ = match rng.below(6) {
            0 => e
                .send_timeout(&buf[..rng.below(513) as usize], t(rng))
                .map(drop),
            1 => e.recv_timeout(t(rng)).map(drop),
            2 => e
                .recv_into_timeout(&mut buf[..rng.below(600) as usize], t(rng))
                .map(drop),
            3 => e.poll(t(rng)).map(drop),
            4 => e.send_timeout(b"x", t(rng)),
            _ => {
                std::hint::black_box((e.can_send(), e.can_recv(), e.is_disconnected()));
                Ok(())
            }
        };
    });
}

#[test]
fn scribble_lock() {
    let l = Arc::new(Lock::create_unique().unwrap());
    let name = l.name().to_owned();
    run("scribble_lock", &name, 3, move |_, rng| {
        match rng.below(3) {
            0 => drop(l.try_lock()),
            1 => drop(l.lock_timeout(t(rng))),
            _ => drop(l.is_locked()),
        };
    });
}
