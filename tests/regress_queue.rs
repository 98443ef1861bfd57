//! Regression tests for the Queue defects of issue 14. Each failed on the
//! queue as it was before the fix (noted on each test).

#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{dispatch, spawn, watchdog, Cleanup};
use shmkit::raw::{QueueLayout, RawQueue};
use shmkit::{Error, Queue, Segment};

/// The documented wait of a `try_` call for a put or get in flight.
const IN_FLIGHT: Duration = Duration::from_millis(2);

#[test]
fn child() {
    dispatch(&[
        ("reserve_and_wait", reserve_and_wait),
        ("fork_reserve_and_die", fork_reserve_and_die),
    ]);
}

/// A child that reserves the only place of a queue and then waits to be
/// killed (it signals the reservation by putting nothing else: the parent
/// watches `len()`).
fn reserve_and_wait(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let _g = q.reserve(1).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Defect 2b: two abandoned reservations of one slot wedged a clean queue
/// (before: `Corrupted { "queue slot state 0x5 does not fit head 1" }` and
/// "b" never delivered).
#[test]
fn two_abandoned_reservations_of_one_slot_do_not_wedge() {
    let _w = watchdog(Duration::from_secs(30));
    let q = Queue::create_unique(2, 8).unwrap();
    let g0 = q.try_reserve(1).unwrap();
    let g1 = q.try_reserve(1).unwrap();
    drop(g1);
    let mut g0 = g0;
    g0[0] = b'a';
    g0.commit().unwrap();
    assert_eq!(q.try_get().unwrap(), b"a");
    q.try_put(b"b").unwrap();
    let g = q.try_reserve(1).unwrap();
    drop(g);
    assert_eq!(q.try_get().unwrap(), b"b");
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    // And it keeps working for many laps of reserve/abandon/put/get.
    for i in 0..1000u32 {
        let g = q.try_reserve(4).unwrap();
        if i % 3 == 0 {
            drop(g);
        } else {
            let mut g = g;
            g.copy_from_slice(&i.to_le_bytes());
            g.commit().unwrap();
            assert_eq!(q.try_get().unwrap(), i.to_le_bytes());
        }
        assert!(q.is_empty());
    }
}

/// Defect 2b, second half: with capacity == slots the tail must never get a
/// lap ahead of a lagging head, whatever is abandoned in between.
#[test]
fn abandoned_reservations_in_every_order_keep_fifo() {
    let _w = watchdog(Duration::from_secs(60));
    for cap in [1usize, 2, 3, 4] {
        let q = Queue::create_unique(cap, 8).unwrap();
        let mut next_put = 0u64;
        let mut model = std::collections::VecDeque::new();
        // A deterministic pseudo-random walk over reserve/commit/abandon/get.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 | 1 => {
                    let mut grants = Vec::new();
                    let n = (x >> 8) as usize % (cap + 1);
                    for _ in 0..n {
                        match q.try_reserve(8) {
                            Ok(g) => grants.push(g),
                            Err(Error::Full { .. }) => break,
                            Err(e) => panic!("reserve: {e}"),
                        }
                    }
                    for (k, mut g) in grants.into_iter().enumerate() {
                        if (x >> (16 + k)) & 1 == 0 {
                            g.copy_from_slice(&next_put.to_le_bytes());
                            g.commit().unwrap();
                            model.push_back(next_put);
                            next_put += 1;
                        }
                    }
                }
                _ => match q.try_get() {
                    Ok(m) => {
                        let want = model.pop_front().expect("got a message the model lacks");
                        assert_eq!(m, want.to_le_bytes(), "capacity {cap}");
                    }
                    Err(Error::Empty { .. }) => assert!(model.is_empty(), "Empty with {model:?}"),
                    Err(e) => panic!("get: {e}"),
                },
            }
            assert!(q.len() <= cap);
        }
    }
}

/// Defect 15: a grant dropped without commit gives its room back at once
/// when no later put has claimed a place after it (before: `len()` stayed 2
/// and `try_put` said `Full` until a consumer stepped over it).
#[test]
fn abandoned_grant_gives_its_room_back() {
    let q = Queue::create_unique(2, 8).unwrap();
    q.try_put(b"x").unwrap();
    let g = q.try_reserve(1).unwrap();
    assert_eq!(q.len(), 2);
    drop(g);
    assert_eq!(q.len(), 1);
    assert!(!q.is_full());
    q.try_put(b"y").unwrap();
    assert_eq!(q.try_get().unwrap(), b"x");
    assert_eq!(q.try_get().unwrap(), b"y");
}

/// Defect 14: `try_get` said `Empty` while this thread's own put had
/// returned, because an earlier position was still being copied by another
/// producer (before: hundreds of such answers per 100 000).
#[test]
fn try_get_after_own_put_is_never_empty() {
    let _w = watchdog(Duration::from_secs(120));
    let q = Queue::create_unique(4, 4096).unwrap();
    // Our message is in the queue and nobody takes more than they put, so
    // there is at least one message. `Empty` is allowed only after the
    // documented wait for a put in flight at the head (its thread stayed
    // preempted), never at once.
    let bad = quick_refusals(q, |q| {
        q.put(&[7u8; 4096]).unwrap();
        let t0 = Instant::now();
        match q.try_get() {
            Ok(_) => false,
            Err(Error::Empty { .. }) => {
                let quick = t0.elapsed() < IN_FLIGHT;
                q.get().unwrap();
                quick
            }
            Err(e) => panic!("{e}"),
        }
    });
    assert_eq!(bad, 0, "try_get said Empty at once after put");
}

/// Defect 14, the other side: `try_put` said `Full` while the queue held
/// fewer than `capacity` messages, because a get was still copying.
#[test]
fn try_put_after_own_get_is_never_full() {
    let _w = watchdog(Duration::from_secs(120));
    let q = Queue::create_unique(4, 4096).unwrap();
    for _ in 0..4 {
        q.put(&[1u8; 4096]).unwrap();
    }
    let bad = quick_refusals(q, |q| {
        q.get().unwrap();
        let t0 = Instant::now();
        match q.try_put(&[1u8; 4096]) {
            Ok(()) => false,
            Err(Error::Full { .. }) => {
                let quick = t0.elapsed() < IN_FLIGHT;
                q.put(&[1u8; 4096]).unwrap();
                quick
            }
            Err(e) => panic!("{e}"),
        }
    });
    assert_eq!(bad, 0, "try_put said Full at once after get");
}

/// Runs `round` 50 000 times on each of 4 threads sharing `q`; returns how
/// many rounds said true (a refusal that came without the documented wait).
/// The queue must hold as many messages at the end as at the start.
fn quick_refusals(q: Queue, round: fn(&Queue) -> bool) -> u64 {
    let before = q.len();
    let q = Arc::new(q);
    let threads = 4;
    let bad = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (q, bad, start) = (q.clone(), bad.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..50_000 {
                    if round(&q) {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(q.len(), before);
    bad.load(Ordering::Relaxed)
}

/// Defect 16: a blocked producer waited forever on a corpse. The only place
/// of a capacity-1 queue is claimed by a writer that is then SIGKILLed; a
/// `put_timeout(5 s)` must get in (before: `Timeout` after 5 s, since only
/// consumers recovered a dead writer's claim).
#[test]
fn blocked_producer_recovers_a_dead_writers_claim() {
    let _w = watchdog(Duration::from_secs(60));
    let q = Queue::create_unique(1, 8).unwrap();
    let _c = Cleanup(vec![q.name().to_owned()]);
    let child = spawn("reserve_and_wait", &[q.name()]);
    assert!(common::wait_for(Duration::from_secs(30), || q.len() == 1));
    assert!(matches!(q.try_put(b"no"), Err(Error::Full { .. })));
    child.kill();
    q.put_timeout(b"in", Duration::from_secs(5)).unwrap();
    assert_eq!(q.try_get().unwrap(), b"in");
}

/// In a child: forks; the grandchild reserves the only place of a capacity-1
/// queue through the handle it inherited and SIGKILLs itself. The child
/// (which lives on) must then be able to put (defect 6; before: the claim
/// was made under the child's pid, alive, so it was never recovered).
fn fork_reserve_and_die(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    // SAFETY: this process is single-threaded apart from the test
    // harness's idle main thread; the forked child only uses the queue and
    // then kills itself.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let g = q.reserve(1);
        std::mem::forget(g);
        // SAFETY: raising a signal has no preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
        unreachable!();
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert!(libc::WIFSIGNALED(st));
    assert_eq!(q.len(), 1, "the grandchild reserved the place");
    q.put_timeout(b"after", Duration::from_secs(5)).unwrap();
    assert_eq!(q.try_get().unwrap(), b"after");
}

#[test]
fn claim_through_a_forked_handle_is_recovered() {
    let _w = watchdog(Duration::from_secs(60));
    let q = Queue::create_unique(1, 8).unwrap();
    let _c = Cleanup(vec![q.name().to_owned()]);
    spawn("fork_reserve_and_die", &[q.name()]).join();
}

/// Defect 3: `get_into` checked the slot's length against the buffer, then
/// read it again under its claim and checked it only against `max_message`.
/// A peer rewriting the length in between made `out[..len]` panic. Here a
/// thread keeps rewriting every slot's length word while another consumes
/// into a small buffer: every call returns (Ok, BufferTooSmall or
/// Corrupted), never a panic, and never more bytes than the buffer holds.
#[test]
fn length_rewritten_between_check_and_copy_is_not_trusted() {
    let _w = watchdog(Duration::from_secs(60));
    let layout = QueueLayout {
        capacity: 4,
        max_message: 256,
    };
    let seg = Segment::create_unique(RawQueue::required_size(&layout).unwrap()).unwrap();
    // SAFETY: the segment outlives the handle and both threads use it only
    // through RawQueue (and the scribbler, whose writes are what is tested).
    let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout).unwrap() };
    let base = seg.as_ptr() as usize;
    let len = seg.len();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    // The slot headers' length words: find them as the u32 after each state
    // word, by scanning for the lengths we put (8) — layout-agnostic.
    q.try_put(&[0u8; 8]).unwrap();
    let _ = q.try_get().unwrap();
    let scribbler = std::thread::spawn(move || {
        let mut x = 1u32;
        while !s2.load(Ordering::Relaxed) {
            // Rewrite every u32 that holds 8 (a length we use) to 200 and back.
            for off in (0..len).step_by(4) {
                let p = (base + off) as *mut u32;
                // SAFETY: inside the mapping; racy on purpose (a hostile
                // peer), through volatile access of aligned u32s.
                unsafe {
                    let v = p.read_volatile();
                    if v == 8 {
                        p.write_volatile(200);
                    } else if v == 200 {
                        p.write_volatile(8);
                    }
                }
            }
            x = x.wrapping_add(1);
        }
        x
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 16];
    while Instant::now() < deadline {
        let _ = q.try_put(&[5u8; 8]);
        match q.try_get_into(&mut buf) {
            Ok(n) => assert!(n <= buf.len()),
            Err(Error::BufferTooSmall { .. })
            | Err(Error::Corrupted { .. })
            | Err(Error::Empty { .. })
            | Err(Error::Full { .. }) => {
                // A message left queued as too large must be taken with a
                // larger buffer to keep the queue moving.
                let mut big = [0u8; 256];
                let _ = q.try_get_into(&mut big);
            }
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
}

/// Defect 9: hostile head/tail values near 2^64 made position arithmetic
/// overflow (a panic in debug builds). Every call must return.
#[test]
fn positions_near_u64_max_do_not_overflow() {
    let layout = QueueLayout {
        capacity: 4,
        max_message: 16,
    };
    let size = RawQueue::required_size(&layout).unwrap();
    for hostile in [u64::MAX, u64::MAX - 1, u64::MAX - 4, 1 << 63, (1 << 40) - 1] {
        let seg = Segment::create_unique(size).unwrap();
        // SAFETY: the segment outlives the handle.
        let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout).unwrap() };
        // Find head and tail: the only two u64 words that change from 0 to
        // 1 after one put and one get.
        let words = seg.len() / 8;
        let snap = |seg: &Segment| -> Vec<u64> {
            (0..words)
                // SAFETY: in bounds, aligned.
                .map(|i| unsafe { (seg.as_ptr() as *const u64).add(i).read_volatile() })
                .collect()
        };
        let before = snap(&seg);
        q.try_put(b"a").unwrap();
        q.try_get().unwrap();
        let after = snap(&seg);
        let moved: Vec<usize> = (0..words)
            .filter(|&i| before[i] == 0 && after[i] == 1)
            .collect();
        for &i in &moved {
            // SAFETY: in bounds, aligned; hostile on purpose.
            unsafe { (seg.as_ptr() as *mut u64).add(i).write_volatile(hostile) };
        }
        let mut buf = [0u8; 16];
        for _ in 0..50 {
            let _ = q.try_put(b"b");
            let _ = q.try_get();
            let _ = q.try_get_into(&mut buf);
            let _ = q.put_timeout(b"c", Duration::from_millis(1));
            let _ = q.get_timeout(Duration::from_millis(1));
            let _ = q.try_reserve(3).map(|g| g.commit());
            let _ = q.try_get_ref().map(|g| g.len());
            let _ = q.len();
            let _ = q.is_full();
        }
    }
}

/// Defect 12: a peer that keeps rewriting the head slot's state with
/// ever-changing garbage must not keep a non-blocking call spinning without
/// bound (before: `try_get` looped for as long as the scribbler ran, since
/// its "unchanged" count restarted at every new value).
#[test]
fn garbage_rewritten_forever_does_not_trap_try_calls() {
    let _w = watchdog(Duration::from_secs(60));
    let layout = QueueLayout {
        capacity: 2,
        max_message: 8,
    };
    let seg = Segment::create_unique(RawQueue::required_size(&layout).unwrap()).unwrap();
    // SAFETY: the segment outlives the handle.
    let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout).unwrap() };
    let words = seg.len() / 8;
    let snap = || -> Vec<u64> {
        (0..words)
            // SAFETY: in bounds and aligned.
            .map(|i| unsafe { (seg.as_ptr() as *const u64).add(i).read_volatile() })
            .collect()
    };
    // Slot 0's state word: 0 at first, `slots` (free for the position a
    // lap on) after one put and one get; head and tail are 1 by then.
    let slots = q.slots() as u64;
    let before = snap();
    q.try_put(b"x").unwrap();
    q.try_get().unwrap();
    let after = snap();
    let slot0 = (0..words)
        .find(|&i| before[i] == 0 && after[i] == slots)
        .expect("slot 0 state word");
    let addr = seg.as_ptr() as usize + slot0 * 8;
    // Head and tail are at 1 and slot 1 is next; make slot 0 the head's:
    // puts and gets until head and tail are at `slots`, slot 0.
    for _ in 1..slots {
        q.try_put(b"y").unwrap();
        q.try_get().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let scribbler = std::thread::spawn(move || {
        let mut x = 0x1234_5678_9abc_def1u64;
        while !s2.load(Ordering::Relaxed) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A value that fits no case for the head, different every time.
            let v = (x & !((1u64 << 40) - 1)) | 0x77;
            // SAFETY: inside the mapping, aligned; hostile on purpose.
            unsafe { (addr as *mut u64).write_volatile(v) };
        }
    });
    for _ in 0..200 {
        let _ = q.try_put(b"x");
        let _ = q.try_get();
        let _ = q.try_get_ref().map(|g| g.len());
        let _ = q.try_reserve(1).map(|g| g.commit());
    }
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
}
