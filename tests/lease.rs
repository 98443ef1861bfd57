//! Leases and `join` (issue 10 §2–3): a message taken under a lease is
//! delivered again if the lease ends without an ack, however it ends (drop,
//! `nack`, the holder SIGKILLed); an acked one never is; `join` waits for
//! every ack and never hangs on a dead worker's job.
//!
//! The torture (`leases_survive_consumers_killed_while_holding_them`) runs
//! `SHMKIT_TORTURE_TRIALS` trials (few by default; the closing note of
//! issue 10 reports 1,000).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    count_from_env, dispatch, seed_from_env, spawn, unique_name, wait_for, watchdog, Cleanup, Rng,
    Words,
};
use shmkit::{Error, Queue};

#[test]
fn child() {
    dispatch(&[("holder", holder), ("worker", worker)]);
}

const LIMIT: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- in one process ----------------------------------------------------

#[test]
fn an_acked_message_is_never_delivered_again() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(4, 16).unwrap();
    q.put(b"one").unwrap();
    let l = q.get_lease().unwrap();
    assert_eq!(&*l, b"one");
    assert_eq!(l.deliveries(), 1);
    assert!(!l.redelivered());
    l.ack().unwrap();
    assert!(matches!(q.try_get_lease(), Err(Error::Empty { .. })));
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    assert!(q.is_empty());
    q.join_timeout(ms(1)).unwrap();
}

#[test]
fn a_lease_dropped_or_nacked_is_delivered_again_and_counted() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(4, 16).unwrap();
    q.put(b"job").unwrap();
    drop(q.get_lease().unwrap());
    let l = q.get_lease().unwrap();
    assert_eq!(
        (&*l, l.deliveries(), l.redelivered()),
        (&b"job"[..], 2, true)
    );
    l.nack().unwrap();
    // A plain get takes a given-back message too.
    assert_eq!(q.get_timeout(ms(100)).unwrap(), b"job");
    assert!(matches!(q.try_get_lease(), Err(Error::Empty { .. })));
}

#[test]
fn a_given_back_message_goes_to_the_back() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(8, 16).unwrap();
    for m in [b"a", b"b", b"c"] {
        q.put(m).unwrap();
    }
    let a = q.get_lease().unwrap();
    assert_eq!(&*a, b"a");
    a.nack().unwrap();
    let mut order = Vec::new();
    while let Ok(l) = q.try_get_lease() {
        order.push((l.to_vec(), l.deliveries()));
        l.ack().unwrap();
    }
    assert_eq!(
        order,
        [(b"b".to_vec(), 1), (b"c".to_vec(), 1), (b"a".to_vec(), 2)]
    );
}

#[test]
fn producers_lapping_round_put_a_given_back_message_again_in_place() {
    let _w = watchdog(LIMIT);
    // Capacity 2: 3 slots. "a" at position 0 is leased and given back; puts
    // of 1, 2 fill the count, a get makes room, and the put of position 3
    // (slot 0 again) puts "a" again there first: it takes the room, so the
    // put's own message finds none.
    let q = Queue::create_unique(2, 16).unwrap();
    q.put(b"a").unwrap();
    q.get_lease().unwrap().nack().unwrap();
    q.put(b"1").unwrap();
    q.put(b"2").unwrap();
    assert_eq!(q.get().unwrap(), b"1");
    assert_eq!(q.len(), 1);
    assert!(matches!(q.try_put(b"3"), Err(Error::Full { .. })));
    assert_eq!(q.len(), 2);
    let mut got = Vec::new();
    while let Ok(l) = q.try_get_lease() {
        got.push((l.to_vec(), l.deliveries()));
        l.ack().unwrap();
    }
    assert_eq!(got, [(b"2".to_vec(), 1), (b"a".to_vec(), 2)]);
    q.try_put(b"3").unwrap();
    assert_eq!(q.try_get().unwrap(), b"3");
    q.join_timeout(ms(1)).unwrap();
}

#[test]
fn join_waits_for_every_ack() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(4, 16).unwrap();
    q.put(b"a").unwrap();
    q.put(b"b").unwrap();
    assert!(matches!(q.join_timeout(ms(20)), Err(Error::Timeout { .. })));
    let a = q.get_lease().unwrap();
    assert_eq!(q.get().unwrap(), b"b"); // a plain get: done when taken
    let start = Instant::now();
    assert!(matches!(q.join_timeout(ms(20)), Err(Error::Timeout { .. })));
    assert!(start.elapsed() >= ms(20));
    std::thread::scope(|s| {
        let joiner = s.spawn(|| q.join());
        a.ack().unwrap();
        joiner.join().unwrap().unwrap();
    });
}

#[test]
fn a_closed_queue_says_closed_only_once_no_lease_can_come_back() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(4, 16).unwrap();
    q.put(b"last").unwrap();
    let l = q.get_lease().unwrap();
    q.close();
    // Not `Closed` yet: the lease may still come back.
    assert!(matches!(q.try_get_lease(), Err(Error::Empty { .. })));
    drop(l);
    let again = q.try_get_lease().unwrap();
    assert_eq!(&*again, b"last");
    again.ack().unwrap();
    assert!(matches!(q.try_get_lease(), Err(Error::Closed { .. })));
}

#[test]
fn a_leaked_lease_is_given_back_when_its_handle_drops() {
    let _w = watchdog(LIMIT);
    let q = Queue::create_unique(4, 16).unwrap();
    let other = Queue::open(q.name()).unwrap();
    q.put(b"x").unwrap();
    std::mem::forget(other.get_lease().unwrap());
    drop(other);
    let l = q.get_lease_timeout(ms(1000)).unwrap();
    assert_eq!((&*l, l.deliveries()), (&b"x"[..], 2));
    l.ack().unwrap();
}

#[test]
fn a_lease_reads_the_whole_message_in_place() {
    // A lease reads in place: no buffer to be too small.
    let q = Queue::create_unique(2, 64).unwrap();
    q.put(&[7u8; 64]).unwrap();
    let l = q.try_get_lease().unwrap();
    assert_eq!(l.len(), 64);
    l.ack().unwrap();
}

// ---- with processes ----------------------------------------------------

/// Takes one lease on queue `args[0]`, says so in word 0 of `args[1]`,
/// then waits to be killed.
fn holder(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let l = q.get_lease().unwrap();
    w.set(1, l.deliveries() as u64);
    w.set(0, 1);
    std::thread::sleep(Duration::from_secs(120));
    drop(l);
}

#[test]
fn a_lease_held_by_a_killed_process_is_delivered_again() {
    let _w = watchdog(LIMIT);
    let name = unique_name("lease-kill");
    let _c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 4, 16).unwrap();
    let w = Words::create(2);
    q.put(b"job").unwrap();
    let c = spawn("holder", &[&name, w.name()]);
    assert!(wait_for(LIMIT, || w.get(0) == 1), "holder took no lease");
    assert!(matches!(q.try_get_lease(), Err(Error::Empty { .. })));
    c.kill();
    // The blocking call is woken by the death notice (or its own liveness
    // look) and finds the dead lease.
    let l = q.get_lease().unwrap();
    assert_eq!((&*l, l.deliveries()), (&b"job"[..], 2));
    l.ack().unwrap();
    q.join().unwrap();
}

#[test]
fn join_never_hangs_on_a_dead_workers_job_nor_returns_before_it_is_redone() {
    let _w = watchdog(LIMIT);
    let name = unique_name("lease-join");
    let _c = Cleanup(vec![name.clone()]);
    let q = Queue::create(&name, 4, 16).unwrap();
    let w = Words::create(2);
    q.put(b"job").unwrap();
    let c = spawn("holder", &[&name, w.name()]);
    assert!(wait_for(LIMIT, || w.get(0) == 1), "holder took no lease");
    c.kill();
    // Not done: the job was given back (by join itself), not acked.
    assert!(matches!(q.join_timeout(ms(50)), Err(Error::Timeout { .. })));
    std::thread::scope(|s| {
        let joiner = s.spawn(|| q.join());
        let l = q.get_lease().unwrap();
        assert!(l.redelivered());
        l.ack().unwrap();
        joiner.join().unwrap().unwrap();
    });
}

// ---- torture -----------------------------------------------------------

/// Bookkeeping words of the torture: per consumer its in-flight message
/// (id + 1, or 0), then per message its ack count; at the end, per
/// consumer (backwards) whether it started, then the nacks, then the
/// deliveries marked redelivered.
const INFLIGHT: usize = 0;

fn worker(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let me: usize = args[2].parse().unwrap();
    let consumers: usize = args[3].parse().unwrap();
    let seed: u64 = args[4].parse().unwrap();
    let mut rng = Rng::new(seed, me as u64);
    loop {
        let l = match q.get_lease_timeout(ms(2000)) {
            Ok(l) => l,
            Err(Error::Closed { .. }) | Err(Error::Timeout { .. }) => return,
            Err(e) => panic!("get_lease: {e:?}"),
        };
        // Sometimes a second one, to die holding two (never waiting for
        // it: a held lease keeps its slot, see `Queue::get_lease`).
        let mut held = vec![l];
        if rng.one_in(4) {
            held.extend(q.try_get_lease().ok());
        }
        for l in &held {
            if l.redelivered() {
                w.add(w.len() - 1, 1);
            }
        }
        // Started (the parent kills only started workers), and some work
        // done while holding the lease, to be killed in the middle of.
        w.set(w.len() - 3 - me, 1);
        let until = Instant::now() + Duration::from_micros(rng.below(100));
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        for l in held {
            if rng.one_in(10) {
                w.add(w.len() - 2, 1);
                l.nack().unwrap();
                continue;
            }
            let id = u64::from_le_bytes(l[..8].try_into().unwrap());
            w.set(INFLIGHT + me, id + 1);
            l.ack().unwrap();
            w.add(consumers + id as usize, 1);
            w.set(INFLIGHT + me, 0);
        }
    }
}

#[test]
fn leases_survive_consumers_killed_while_holding_them() {
    let _w = watchdog(Duration::from_secs(3600));
    let trials = count_from_env("SHMKIT_TORTURE_TRIALS", 10);
    let seed = seed_from_env("SHMKIT_TORTURE_SEED", "leases");
    let only = std::env::var("SHMKIT_TORTURE_TRIAL")
        .ok()
        .map(|s| s.parse::<u64>().unwrap());
    let consumers = 3usize;
    let msgs = 200u64;
    let mut kills = 0u64;
    let mut redelivered = 0u64;
    let mut nacked = 0u64;
    for trial in 0..trials {
        if only.is_some_and(|o| o != trial) {
            continue;
        }
        let mut rng = Rng::new(seed, trial);
        let name = unique_name("lease-torture");
        let _c = Cleanup(vec![name.clone()]);
        let q = Queue::create(&name, 16, 16).unwrap();
        let w = Words::create(2 * consumers + msgs as usize + 2);
        let seed_s = rng.next().to_string();
        let cons_s = consumers.to_string();
        let mut procs: Vec<_> = (0..consumers)
            .map(|c| {
                let me = c.to_string();
                Some(spawn("worker", &[&name, w.name(), &me, &cons_s, &seed_s]))
            })
            .collect();
        let mut killed = Vec::new();
        let producer = std::thread::spawn({
            let name = name.clone();
            move || {
                let q = Queue::open(&name).unwrap();
                for id in 0..msgs {
                    q.put(&id.to_le_bytes()).unwrap();
                }
            }
        });
        {
            // Kill one or two consumers at random moments of the run, once
            // they are at work.
            let started = |c: usize| w.get(w.len() - 3 - c) == 1;
            assert!(
                wait_for(Duration::from_secs(30), || (0..consumers).any(started)),
                "trial {trial}: no worker started"
            );
            for _ in 0..1 + rng.below(2) {
                let c = rng.below(consumers as u64) as usize;
                std::thread::sleep(Duration::from_micros(rng.below(3_000)));
                if !started(c) {
                    continue;
                }
                if let Some(p) = procs[c].take() {
                    p.kill();
                    killed.push(c);
                    kills += 1;
                }
            }
        }
        // The survivors and this process finish the work (while the
        // producer may still be putting): join returns once every message
        // put is acked, whoever died.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match q.join_timeout(ms(5)) {
                Ok(()) if producer.is_finished() && q.is_empty() => break,
                Ok(()) => {}
                Err(Error::Timeout { .. }) => {}
                Err(e) => panic!("trial {trial}: join: {e:?}"),
            }
            assert!(Instant::now() < deadline, "trial {trial}: join hung");
            if let Ok(l) = q.get_lease_timeout(ms(5)) {
                let id = u64::from_le_bytes(l[..8].try_into().unwrap());
                if l.redelivered() {
                    w.add(w.len() - 1, 1);
                }
                l.ack().unwrap();
                w.add(consumers + id as usize, 1);
            }
        }
        producer.join().unwrap();
        q.close();
        for p in procs.into_iter().flatten() {
            let code = p.wait_deadline(Duration::from_secs(30)).unwrap();
            assert_eq!(code, 0, "trial {trial}: a worker failed");
        }
        // Every message acked exactly once; a killed consumer may have
        // acked its in-flight message without recording it.
        let mut unrecorded: HashMap<u64, usize> = HashMap::new();
        for &c in &killed {
            let f = w.get(INFLIGHT + c);
            if f != 0 {
                unrecorded.insert(f - 1, c);
            }
        }
        for id in 0..msgs {
            let n = w.get(consumers + id as usize);
            let ok = n == 1 || (n == 0 && unrecorded.contains_key(&id));
            assert!(
                ok,
                "trial {trial} (seed {seed}): message {id} acked {n} times; killed {killed:?}"
            );
        }
        assert!(q.is_empty());
        redelivered += w.get(w.len() - 1);
        nacked += w.get(w.len() - 2);
    }
    // Every lease that ended without an ack (a nack, or a holder killed)
    // was followed by exactly one delivery marked redelivered.
    assert!(
        redelivered >= nacked,
        "{redelivered} redeliveries for {nacked} nacks"
    );
    eprintln!(
        "leases torture: {trials} trials, {kills} consumers killed; {redelivered} redeliveries: \
         {nacked} after a nack, {} after the holder was killed",
        redelivered - nacked
    );
}
