//! Hostile review (rev11) of the Semaphore, Condition and Barrier cores.
//!
//! Each `#[ignore = "review: …"]` test demonstrates a defect and fails on the
//! current code; the fix removes the `ignore`. Un-ignored tests are
//! regression guards for promises that hold today.
#![cfg(not(loom))]

mod common;

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::time::Duration;

use common::{dispatch, gettid, spawn, wait_for, watchdog, Cleanup, Mapped};
use shmkit::raw::{RawBarrier, RawCondition, RawLock, RawSemaphore, MAX_PARTIES};
use shmkit::{Barrier, Error};

#[test]
fn child() {
    dispatch(&[
        ("barrier_wait_ok", barrier_wait_ok),
        ("barrier_wait_any", barrier_wait_any),
        ("barrier_wait_pass", barrier_wait_pass),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(120);
const REACH: Duration = Duration::from_secs(30);

/// A zeroed heap region aligned to 64, written "by another process" through
/// `write` (volatile stores between calls of ours).
struct Region {
    ptr: *mut u8,
    layout: Layout,
}

impl Region {
    fn new(len: usize) -> Region {
        let layout = Layout::from_size_align(len, 64).unwrap();
        // SAFETY: a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Region { ptr, layout }
    }

    fn len(&self) -> usize {
        self.layout.size()
    }

    /// A store by another process, between two calls of ours.
    fn write(&self, at: usize, v: u64) {
        assert!(at + 8 <= self.len() && at % 8 == 0);
        // SAFETY: in bounds and aligned (asserted); no call on the object
        // runs now.
        unsafe { self.ptr.add(at).cast::<u64>().write_volatile(v) }
    }

    fn read(&self, at: usize) -> u64 {
        assert!(at + 8 <= self.len() && at % 8 == 0);
        // SAFETY: in bounds and aligned (asserted).
        unsafe { self.ptr.add(at).cast::<u64>().read_volatile() }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout; the handles borrowed `self`.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

fn thread_states(pid: u32) -> Vec<char> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    })
    .collect()
}

fn all_in(pid: u32, state: char) -> bool {
    let s = thread_states(pid);
    !s.is_empty() && s.iter().all(|&c| c == state)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

// ---- Semaphore ------------------------------------------------------------

/// BoundedSemaphore: the guard's give-back adds a permit without checking
/// the bound (`give_back` saturates at 2^32-1, not at `limit`), so a release
/// that Python allows (value 1 → 2 ≤ 2) followed by the guard's drop leaves
/// the count at 3 with a bound of 2: three acquirers then hold it at once.
/// Python's `BoundedSemaphore` raises `ValueError` on that second release.
#[test]
fn bounded_guard_drop_never_exceeds_bound() {
    let s = RawSemaphore::new(2, true).unwrap();
    let g = s.acquire().unwrap();
    s.release(1).unwrap(); // 1 → 2: at the bound, allowed (as in Python)
    drop(g); // must not go to 3
    assert!(
        s.value() <= s.limit(),
        "bounded semaphore of {} now has {} free permits",
        s.limit(),
        s.value()
    );
}

/// The same through `keep` + `release`: the checked path refuses, which is
/// what the guard's path should do too (regression guard).
#[test]
fn bounded_release_is_checked() {
    let s = RawSemaphore::new(2, true).unwrap();
    s.acquire().unwrap().keep();
    s.release(1).unwrap();
    assert!(matches!(
        s.release(1),
        Err(Error::TooManyReleases { limit: 2, .. })
    ));
    assert_eq!(s.value(), 2);
}

/// A scribbled semaphore (every byte 0xFF, then arbitrary words) never
/// panics and every timed call returns.
#[test]
fn scribbled_semaphore_calls_return() {
    let _w = watchdog(WATCHDOG);
    let r = Region::new(RawSemaphore::required_size());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..200 {
        for at in (0..r.len()).step_by(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match round % 4 {
                0 => u64::MAX,
                1 => x,
                2 => x & 0xFFFF_FFFF_0000_0003,
                _ => 0,
            };
            r.write(at, v);
        }
        // SAFETY: the region outlives `s`, used only through it and `write`.
        let s = unsafe { RawSemaphore::attach(r.ptr, r.len()) }.unwrap();
        let _ = s.value();
        let _ = s.protected_holders();
        if let Ok(Some(g)) = s.try_acquire() {
            drop(g);
        }
        let _ = s.release(1);
        let _ = s.acquire_timeout(Duration::from_millis(1)).map(drop);
    }
}

// ---- Barrier --------------------------------------------------------------

fn barrier_wait_ok(args: &[String]) {
    let b = Barrier::open(&args[0]).unwrap();
    assert_eq!(b.wait().expect("my generation tripped"), 0);
}

/// A party whose generation tripped gets `BrokenBarrier` if more than 8
/// generations pass before it looks (`outcome`: `d < HIST_BITS`). Here the
/// generation trips, then the barrier is reset 8 times while the released
/// party is stopped (a slow or preempted process; more processes than
/// parties do the same with trips). Python releases it with its index:
/// `reset()` during draining changes nothing, and a new generation cannot
/// start before the last one drained. The barrier was never broken for it;
/// a live party must not get `BrokenBarrier` for a generation that tripped.
#[test]
#[ignore = "review: a released Barrier party gets BrokenBarrier if 8 generations pass before it wakes"]
fn released_party_is_released_even_after_many_generations() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(2).unwrap();
    let _c = Cleanup(vec![b.name().to_owned()]);
    let p = spawn("barrier_wait_ok", &[b.name()]);
    assert!(wait_for(REACH, || b.n_waiting() == 1 && all_in(p.pid(), 'S')));
    signal(p.pid(), libc::SIGSTOP);
    assert!(wait_for(REACH, || all_in(p.pid(), 'T')));
    // Our arrival trips the child's generation: we are index 1.
    assert_eq!(b.wait().unwrap(), 1);
    for _ in 0..8 {
        b.reset();
    }
    signal(p.pid(), libc::SIGCONT);
    p.join(); // the child asserts Ok(0)
}

/// Control for the test above: with 7 resets the history still holds the
/// trip and the released party gets its index (regression guard).
#[test]
fn released_party_is_released_after_seven_resets() {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(2).unwrap();
    let _c = Cleanup(vec![b.name().to_owned()]);
    let p = spawn("barrier_wait_ok", &[b.name()]);
    assert!(wait_for(REACH, || b.n_waiting() == 1 && all_in(p.pid(), 'S')));
    signal(p.pid(), libc::SIGSTOP);
    assert!(wait_for(REACH, || all_in(p.pid(), 'T')));
    assert_eq!(b.wait().unwrap(), 1);
    for _ in 0..7 {
        b.reset();
    }
    signal(p.pid(), libc::SIGCONT);
    p.join();
}

/// A scribbled barrier of many parties: the state says 65533 parties wait
/// and every slot is tagged with this generation and names a distinct
/// (non-existent) process. One `wait_timeout(1 ms)` must still return (the
/// watchdog is the bound; no timing upper bound here). Found by review:
/// `targets()` deduplicated with `Vec::contains`, quadratic in the party
/// count (~2·10^9 comparisons, 20–30 s in a debug build), and registered
/// every stamp with the watcher; now it sorts, deduplicates and watches at
/// most 256 processes.
#[test]
fn scribbled_many_party_barrier_returns_near_its_timeout() {
    let _w = watchdog(Duration::from_secs(600));
    let parties = MAX_PARTIES;
    let len = RawBarrier::required_size(parties).unwrap();
    let r = Region::new(len);
    // SAFETY: the region outlives `b`, used only through it and `write`.
    let b = unsafe { RawBarrier::init_in(r.ptr, len, parties) }.unwrap();
    // state: generation 0, count parties-2 (our arrival makes parties-1).
    r.write(0, u64::from(parties - 2));
    for i in 0..parties as usize {
        let at = 16 + 16 * i;
        r.write(at, 1 << 32); // key: VALID | gen 0
                              // A distinct stamp per slot: tid 3_000_000 + i, some start time.
        let tid = 3_000_000u64 + i as u64;
        r.write(at + 8, (tid << 40) | 12345);
    }
    assert_eq!(r.read(0), u64::from(parties - 2));
    let res = b.wait_timeout(Duration::from_millis(1));
    // The "parties" are dead processes (or the state is garbage): broken.
    assert!(res.is_err(), "{res:?}");
}

fn barrier_wait_any(args: &[String]) {
    let b = Barrier::open(&args[0]).unwrap();
    let _ = b.wait();
}

/// The byte offset, in the mapping `seg`, of the state word of a barrier of
/// `parties` parties whose state is `state` (layout: state, parties, notify,
/// then the slots).
fn find_barrier_state(seg: &Mapped, state: u64, parties: u32) -> usize {
    let p = seg.as_mut_ptr();
    (0..seg.len().saturating_sub(16))
        .step_by(8)
        .find(|&at| {
            // SAFETY: in bounds, 8-aligned (the payload is 64-aligned).
            let (w, n) = unsafe {
                (
                    p.add(at).cast::<u64>().read_volatile(),
                    p.add(at + 8).cast::<u32>().read_volatile(),
                )
            };
            w == state && n == parties
        })
        .expect("the barrier's state word")
}

/// `record` (src/raw/barrier/party.rs) CASes the slot's stamp and then its
/// key from whatever values it reads, whatever generation they carry. A
/// party X of generation g that is preempted between its arrival CAS and
/// its `record` (its generation trips meanwhile; X is counted and will be
/// released) and then records *after* a party Y of generation g+1 recorded
/// the same slot overwrites Y's entry with `(X, VALID | g)`: Y is hidden
/// from every sleeper of g+1 (`parties_in` skips keys not tagged g+1). If
/// Y is then SIGKILLed, the parties of g+1 never learn it: an untimed
/// `wait` hangs for ever (a timed one times out) instead of breaking
/// promptly. No scribbler is needed, only a slow live process; the test
/// performs X's two late stores itself (exactly what `record(0, g, X)`
/// writes), because the window cannot be hit on demand.
///
/// Suggested fix: `record` must never move a key backwards: load the key
/// first and skip the record if it is tagged with a newer generation
/// (wrapping compare), or better, skip it if `GEN` already moved past `g`
/// and make the stamp and key one CAS-able unit (e.g. stamp in the key
/// word's slot with the generation in a 16-byte CAS, or a seqlock per slot).
#[test]
fn late_record_of_an_old_generation_does_not_hide_a_party() {
    late_record_scenario(true);
}

/// Control for the test above, without X's late stores: Y's death breaks
/// the barrier for Z (regression guard).
#[test]
fn a_killed_first_party_breaks_the_barrier_for_a_later_one() {
    late_record_scenario(false);
}

fn late_record_scenario(late_record: bool) {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(3).unwrap();
    let _c = Cleanup(vec![b.name().to_owned()]);
    let seg = Mapped::open(b.name());
    // Generation 0: three parties (threads of this process) pass.
    std::thread::scope(|s| {
        let t: Vec<_> = (0..2).map(|_| s.spawn(|| b.wait().unwrap())).collect();
        b.wait().unwrap();
        for t in t {
            t.join().unwrap();
        }
    });
    // Now generation 1, history "tripped", count 0.
    let st = find_barrier_state(&seg, (1 << 32) | (1 << 24), 3);
    // Slot 0 of generation 0's bank, and of generation 1's (two banks of
    // 3 slots of 16 bytes, used by alternate generations).
    let (key0, stamp0) = (st + 16, st + 24);
    let key1 = key0 + 3 * 16;
    assert_eq!(seg.read(key0), 1 << 32, "slot 0 tagged generation 0");
    let x = seg.read(stamp0); // X: the generation-0 party of slot 0
                              // Y arrives in generation 1 as index 0 and sleeps.
    let y = spawn("barrier_wait_any", &[b.name()]);
    assert!(wait_for(REACH, || b.n_waiting() == 1
        && seg.read(key1) == (1 << 32) | 1
        && all_in(y.pid(), 'S')));
    // X's late record(0, 0, X): into slot 0 of generation 0's bank (before
    // the banks, the slot Y had just written).
    if late_record {
        seg.write(stamp0, x);
        seg.write(key0, 1 << 32);
    }
    y.kill();
    // Z arrives in generation 1 (index 1) and must be told of Y's death.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = tx.send(b.wait());
        });
        let r = rx.recv_timeout(REACH);
        if r.is_err() {
            b.abort(); // unstick Z before failing
        }
        assert!(
            matches!(r, Ok(Err(Error::BrokenBarrier { .. }))),
            "Z was not told of Y's death within {REACH:?}: {r:?}"
        );
    });
}

/// xorshift64 words for scribbling: all ones, random, random with low
/// generation-like values, zero, by round.
fn scribble_words(r: &Region, round: u32, x: &mut u64) {
    for at in (0..r.len()).step_by(8) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let v = match round % 4 {
            0 => u64::MAX,
            1 => *x,
            2 => *x & 0x0000_0003_00FF_FFFF,
            _ => 0,
        };
        r.write(at, v);
    }
}

/// A scribbled condition never panics: notify and a timed wait return
/// (Ok, or `Full` when every slot looks taken), and the lock is ours after.
#[test]
fn scribbled_condition_calls_return() {
    let _w = watchdog(WATCHDOG);
    let r = Region::new(RawCondition::required_size());
    let lock = RawLock::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for round in 0..100 {
        scribble_words(&r, round, &mut x);
        // SAFETY: the region outlives `c`, used only through it and `write`.
        let c = unsafe { RawCondition::attach(r.ptr, r.len()) }.unwrap();
        let _ = c.waiting();
        let g = lock.lock().unwrap();
        let _ = c.notify(&lock, usize::MAX).unwrap();
        match c.wait(&lock, Some(Duration::from_millis(1))) {
            Ok(_) | Err(Error::Full { .. }) => {}
            Err(e) => panic!("wait on a scribbled condition: {e:?}"),
        }
        assert!(c.notify(&lock, 1).is_ok(), "the lock is held again");
        drop(g);
    }
}

/// A scribbled barrier never panics and a timed wait returns (Ok,
/// `BrokenBarrier` or `Corrupted`).
#[test]
fn scribbled_barrier_calls_return() {
    let _w = watchdog(WATCHDOG);
    let parties = 4;
    let len = RawBarrier::required_size(parties).unwrap();
    let r = Region::new(len);
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    for round in 0..100 {
        // SAFETY: the region outlives `b`, used only through it and `write`.
        unsafe { RawBarrier::init_in(r.ptr, len, parties) }.unwrap();
        scribble_words(&r, round, &mut x);
        r.write(8, u64::from(parties)); // keep the party count attachable
                                        // SAFETY: as above.
        let b = unsafe { RawBarrier::attach(r.ptr, len) }.unwrap();
        let _ = (b.n_waiting(), b.broken());
        match b.wait_timeout(Duration::from_millis(1)) {
            Ok(i) => assert!(i < parties as usize),
            Err(Error::BrokenBarrier { .. }) | Err(Error::Corrupted { .. }) => {}
            Err(e) => panic!("wait on a scribbled barrier: {e:?}"),
        }
        b.reset();
        b.abort();
    }
}

fn barrier_wait_pass(args: &[String]) {
    let b = Barrier::open(&args[0]).unwrap();
    b.wait().expect("released");
}

/// The other interleaving of the race above: X (of generation g, late)
/// CASes the stamp after Y (of g+1) did, but its key CAS lands before
/// Y's, so the slot ends `(X, VALID | g+1)`: X, which is no party of g+1,
/// is now watched and judged for it. X was released from g and *exits
/// normally*; the next sleeper of g+1 finds it dead and breaks the barrier:
/// the live parties of g+1 get `BrokenBarrier` although none of them died.
/// (The module doc names only "killed between its two slot stores"; any
/// later exit of X does it.) Simulated as above: the test performs X's
/// late stamp store, the one write of `record(0, g, X)` that lands.
#[test]
fn late_stamp_of_an_exited_party_does_not_break_a_newer_generation() {
    late_stamp_scenario(true);
}

/// Control for the test above without X's late store: the generation
/// trips for Y, Z and us (regression guard).
#[test]
fn an_exited_party_of_an_old_generation_breaks_nothing() {
    late_stamp_scenario(false);
}

fn late_stamp_scenario(late_stamp: bool) {
    let _w = watchdog(WATCHDOG);
    let b = Barrier::create_unique(3).unwrap();
    let _c = Cleanup(vec![b.name().to_owned()]);
    let seg = Mapped::open(b.name());
    // Generation 0: X (a child) arrives first (slot 0), then two threads.
    let xp = spawn("barrier_wait_pass", &[b.name()]);
    assert!(wait_for(REACH, || b.n_waiting() == 1));
    std::thread::scope(|s| {
        let t: Vec<_> = (0..2).map(|_| s.spawn(|| b.wait().unwrap())).collect();
        for t in t {
            t.join().unwrap();
        }
    });
    xp.join(); // X was released and has exited
    let st = find_barrier_state(&seg, (1 << 32) | (1 << 24), 3);
    let (key0, stamp0) = (st + 16, st + 24);
    let (key1, stamp1) = (key0 + 3 * 16, stamp0 + 3 * 16);
    let x = seg.read(stamp0);
    // Y arrives in generation 1 as index 0 (generation 1's bank) and sleeps.
    let y = spawn("barrier_wait_ok", &[b.name()]);
    assert!(wait_for(REACH, || b.n_waiting() == 1
        && seg.read(key1) == (1 << 32) | 1
        && all_in(y.pid(), 'S')));
    assert_ne!(seg.read(stamp1), x);
    // X's late stamp write: into slot 0 of generation 0's bank (before the
    // banks, over Y's stamp).
    if late_stamp {
        seg.write(stamp0, x);
    }
    // Z (a thread of ours) arrives as index 1 and sleeps.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let z = s.spawn(|| {
            tx.send(gettid()).unwrap();
            b.wait()
        });
        let ztid = rx.recv().unwrap();
        let me = std::process::id();
        let z_asleep = || {
            std::fs::read_to_string(format!("/proc/{me}/task/{ztid}/stat"))
                .ok()
                .and_then(|st| st[st.rfind(')')? + 1..].trim_start().chars().next())
                == Some('S')
        };
        assert!(wait_for(REACH, || b.broken() || (b.n_waiting() == 2 && z_asleep())));
        assert!(!b.broken(), "no party of generation 1 died, yet it broke");
        // The third party: the generation trips for all three.
        assert!(b.wait().is_ok());
        assert!(z.join().unwrap().is_ok());
    });
    y.join();
}

/// A process that arrives while the full generation runs its action (more
/// processes than parties) waits for the next generation, "as Python's
/// `_enter` does" (module doc). But if its own timeout passes meanwhile,
/// `sleep` breaks the barrier from the `TRIPPING` state (`break_from(s)`
/// at the deadline, `index == None`): the generation whose parties all
/// arrived is broken by an outsider and its tripper gets `BrokenBarrier`
/// after a successful action. In Python the latecomer blocks on the
/// condition's lock (held during the action) and then in `_enter` without
/// a timeout; it can never break the generation it is not part of.
/// Suggested fix: at the deadline, a waiter with `index == None` returns
/// `BrokenBarrier` (or Timeout) for itself only, breaking nothing, or
/// breaks only a generation it has arrived in.
#[test]
fn latecomer_timeout_during_action_breaks_nothing() {
    use std::sync::{mpsc, Mutex};
    let _w = watchdog(WATCHDOG);
    let b0 = Barrier::create_unique(1).unwrap();
    let _c = Cleanup(vec![b0.name().to_owned()]);
    let name = b0.name().to_owned();
    let (trip_tx, trip_rx) = mpsc::channel::<()>();
    let (res_tx, res_rx) = mpsc::channel::<String>();
    let latecomer = std::thread::spawn({
        let name = name.clone();
        move || {
            let b = Barrier::open(&name).unwrap();
            trip_rx.recv().unwrap();
            let r = b.wait_timeout(Duration::from_millis(20));
            let _ = res_tx.send(format!("{r:?}"));
            r
        }
    });
    let trip_tx = Mutex::new(trip_tx);
    let res_rx = Mutex::new(res_rx);
    let b = Barrier::open(&name).unwrap().with_action(move || {
        trip_tx.lock().unwrap().send(()).unwrap();
        // Run the action until the latecomer returned or well past its
        // 20 ms timeout.
        let _ = res_rx.lock().unwrap().recv_timeout(Duration::from_secs(2));
    });
    let r = b.wait();
    let late = latecomer.join().unwrap();
    assert!(
        matches!(r, Ok(0)),
        "the one party's generation tripped, yet it got {r:?} (latecomer: {late:?})"
    );
}
