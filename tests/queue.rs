//! Queue: semantics and many processes (the crash torture is in
//! tests/torture_queue.rs).

mod common;

use std::time::{Duration, Instant};

use common::{dispatch, spawn, watchdog};
use shmkit::{Error, Queue};

#[test]
fn child() {
    dispatch(&[
        ("producer_0_to_5", producer_0_to_5),
        ("mp_producer", mp_producer),
        ("mp_consumer", mp_consumer),
    ]);
}

const SENTINEL: &[u8] = b"STOP";

fn producer_0_to_5(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    for i in 0u32..5 {
        q.put_value(&i).unwrap();
    }
    q.put(SENTINEL).unwrap();
}

#[test]
fn producer_consumer_tutorial() {
    let _w = watchdog(Duration::from_secs(60));
    let q = Queue::create_unique(2, 16).unwrap();
    let p = spawn("producer_0_to_5", &[q.name()]);
    let mut got = Vec::new();
    loop {
        let m = q.get().unwrap();
        if m == SENTINEL {
            break;
        }
        got.push(u32::from_ne_bytes(m.try_into().unwrap()));
    }
    p.join();
    assert_eq!(got, [0, 1, 2, 3, 4]);
}

#[test]
fn full_empty_timeout_in_every_form() {
    let q = Queue::create_unique(2, 8).unwrap();
    assert!(q.is_empty() && !q.is_full());
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    let mut buf = [0u8; 8];
    assert!(matches!(q.try_get_into(&mut buf), Err(Error::Empty { .. })));
    assert!(matches!(q.try_get_ref(), Err(Error::Empty { .. })));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(100)),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    let t = Instant::now();
    assert!(matches!(
        q.get_into_timeout(&mut buf, Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));

    q.put(b"a").unwrap();
    q.try_put(b"b").unwrap();
    assert!(q.is_full());
    assert_eq!(q.len(), 2);
    assert!(matches!(q.try_put(b"c"), Err(Error::Full { .. })));
    assert!(matches!(q.try_reserve(1), Err(Error::Full { .. })));
    let t = Instant::now();
    assert!(matches!(
        q.put_timeout(b"c", Duration::from_millis(100)),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(q.get().unwrap(), b"a");
    assert_eq!(q.get().unwrap(), b"b");
    assert!(q.is_empty());
}

#[test]
fn sizes_and_empty_messages() {
    let q = Queue::create_unique(3, 5).unwrap();
    assert!(matches!(
        q.put(b"123456"),
        Err(Error::MessageTooLarge { len: 6, max: 5, .. })
    ));
    assert!(q.is_empty(), "nothing is put when too large");
    q.put(b"").unwrap();
    q.put(b"12345").unwrap();
    assert_eq!(q.get().unwrap(), b"");
    let mut small = [0u8; 4];
    assert!(matches!(
        q.get_into(&mut small),
        Err(Error::BufferTooSmall { needed: 5, .. })
    ));
    assert_eq!(q.len(), 1, "the message stays queued");
    let mut buf = [0u8; 5];
    assert_eq!(q.get_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf, b"12345");
    assert!(matches!(
        Queue::create_unique(0, 5),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Queue::create_unique(usize::MAX, 5),
        Err(Error::InvalidArgument(_))
    ));
    let zero = Queue::create_unique(1, 0).unwrap();
    zero.put(b"").unwrap();
    assert_eq!(zero.get().unwrap(), b"");
}

#[test]
fn zero_copy_and_typed() {
    let q = Queue::create_unique(2, 16).unwrap();
    {
        let mut g = q.reserve(4).unwrap();
        g.copy_from_slice(b"wxyz");
        // Dropped without commit: nothing is sent, the room comes back.
    }
    assert!(q.is_empty());
    let mut g = q.reserve(4).unwrap();
    g.copy_from_slice(b"abcd");
    g.commit().unwrap();
    q.try_reserve(2).unwrap().commit().unwrap();
    assert!(q.is_full());
    {
        let m = q.get_ref().unwrap();
        assert_eq!(&*m, b"abcd");
    }
    assert_eq!(q.get().unwrap().len(), 2);
    // A typed get of the wrong size, longer or shorter, takes the message
    // and returns its bytes: the next typed get is not held up by it.
    q.put_value(&[7u32, 8]).unwrap();
    q.put_value(&9u32).unwrap();
    match q.get_value::<u32>() {
        Err(Error::WrongSize {
            expected: 4,
            message,
            ..
        }) => {
            assert_eq!(message, bytemuck::bytes_of(&[7u32, 8]))
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(q.get_value::<u32>().unwrap(), 9);
    q.put(b"1").unwrap();
    match q.try_get_value::<u32>() {
        Err(Error::WrongSize {
            expected: 4,
            message,
            ..
        }) => assert_eq!(message, b"1"),
        r => panic!("{r:?}"),
    }
    assert!(matches!(q.try_get_value::<u32>(), Err(Error::Empty { .. })));
}

#[test]
fn close_wakes_blocked_callers_and_drains() {
    let _w = watchdog(Duration::from_secs(60));
    let q = std::sync::Arc::new(Queue::create_unique(1, 8).unwrap());
    let getter = {
        let q = Queue::open(q.name()).unwrap();
        std::thread::spawn(move || q.get())
    };
    // A blocked get on an empty queue wakes with Closed.
    while !getter.is_finished() && !q.is_closed() {
        // Wait until the getter is (very likely) asleep, then close.
        std::thread::sleep(Duration::from_millis(20));
        q.close();
    }
    assert!(matches!(getter.join().unwrap(), Err(Error::Closed { .. })));
    let q2 = Queue::create_unique(1, 8).unwrap();
    q2.put(b"x").unwrap();
    let putter = {
        let q = Queue::open(q2.name()).unwrap();
        std::thread::spawn(move || q.put(b"y"))
    };
    std::thread::sleep(Duration::from_millis(20));
    q2.close();
    assert!(matches!(putter.join().unwrap(), Err(Error::Closed { .. })));
    assert_eq!(q2.get().unwrap(), b"x");
    assert!(matches!(q2.get(), Err(Error::Closed { .. })));
    assert!(matches!(q2.try_get(), Err(Error::Closed { .. })));
    assert!(matches!(q2.try_put(b"z"), Err(Error::Closed { .. })));
}

#[test]
fn threads_in_one_process_exactly_once() {
    let _w = watchdog(Duration::from_secs(120));
    let q = std::sync::Arc::new(Queue::create_unique(8, 8).unwrap());
    let per = 20_000u32;
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    q.put_value(&[p, i]).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut last = [None::<u32>; 3];
                let mut seen = Vec::new();
                loop {
                    match q.get_value::<[u32; 2]>() {
                        Ok([p, i]) => {
                            let p = p as usize;
                            assert!(last[p].map_or(true, |l| l < i), "FIFO per producer");
                            last[p] = Some(i);
                            seen.push((p, i));
                        }
                        Err(Error::Closed { .. }) => return seen,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    q.close();
    let mut all: Vec<(usize, u32)> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    let want: Vec<(usize, u32)> = (0..3).flat_map(|p| (0..per).map(move |i| (p, i))).collect();
    assert_eq!(all, want);
}

const MP_PER: u32 = 100_000;

fn mp_producer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let p: u32 = args[1].parse().unwrap();
    for i in 0..MP_PER {
        q.put_value(&[p, i]).unwrap();
    }
}

fn mp_consumer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let out = shmkit::Array::<u64>::open(&args[1]).unwrap();
    let c: usize = args[2].parse().unwrap();
    let mut last = [None::<u32>; 4];
    let (mut count, mut sum, mut sq) = ([0u64; 4], [0u64; 4], [0u64; 4]);
    loop {
        match q.get_value::<[u32; 2]>() {
            Ok([p, i]) => {
                let p = p as usize;
                assert!(last[p].map_or(true, |l| l < i), "FIFO per producer broken");
                last[p] = Some(i);
                count[p] += 1;
                sum[p] += u64::from(i);
                sq[p] += u64::from(i) * u64::from(i);
            }
            Err(Error::Closed { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut g = out.lock().unwrap();
    for p in 0..4 {
        g[c * 12 + p] = count[p];
        g[c * 12 + 4 + p] = sum[p];
        g[c * 12 + 8 + p] = sq[p];
    }
}

#[test]
fn four_producer_processes_two_consumer_processes() {
    let _w = watchdog(Duration::from_secs(240));
    let q = Queue::create_unique(64, 8).unwrap();
    let out = shmkit::Array::<u64>::create_unique(24, 0).unwrap();
    let consumers: Vec<_> = (0..2)
        .map(|c| spawn("mp_consumer", &[q.name(), out.name(), &c.to_string()]))
        .collect();
    let producers: Vec<_> = (0..4)
        .map(|p| spawn("mp_producer", &[q.name(), &p.to_string()]))
        .collect();
    for p in producers {
        p.join();
    }
    q.close();
    for c in consumers {
        c.join();
    }
    let r = out.to_vec();
    let n = u64::from(MP_PER);
    for p in 0..4 {
        assert_eq!(r[p] + r[12 + p], n, "count of producer {p}");
        assert_eq!(r[4 + p] + r[16 + p], n * (n - 1) / 2, "sum of producer {p}");
        assert_eq!(
            r[8 + p] + r[20 + p],
            (n - 1) * n * (2 * n - 1) / 6,
            "squares of producer {p}"
        );
    }
}
