//! Regression tests for issue 14's Lock defects (4, 10, 11, and the
//! liveness of a lock held by an exited thread-group leader), and a check of
//! defect 13 for the Array.
//!
//! The lock is the first 16 bytes of a segment's payload, which starts 64
//! bytes into the object; the tests map the object a second time, as a
//! hostile or crashed peer would have, and write those bytes themselves.
//! Offsets (the same in the old and the new layout of `src/raw/lock.rs`):
//! byte 0 is the futex word, byte 4 `aux` (bits 0..31 count contended
//! unlocks for the fair hand-off), byte 8 a 64-bit word that holds the
//! owner's stamp (thread id << 40 | start time).
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{dispatch, spawn, wait_for, watchdog};
use shmkit::{Array, Error, Lock, Value};

const WATCHDOG: Duration = Duration::from_secs(120);
const REACH: Duration = Duration::from_secs(30);
/// Where the lock starts in the object (after the 64-byte header).
const LOCK: usize = 64;

#[test]
fn child() {
    dispatch(&[
        ("hang", hang),
        ("sleep_in_lock", sleep_in_lock),
        ("leader_exits_holding", leader_exits_holding),
    ]);
}

// ---------------------------------------------------------------- helpers

/// The object named `name`, mapped a second time.
struct Raw {
    map: memmap2::MmapRaw,
}

impl Raw {
    fn open(name: &str) -> Raw {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        Raw {
            map: memmap2::MmapRaw::map_raw(&file).unwrap(),
        }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.map.len());
        // SAFETY: in bounds and aligned (checked; the mapping is
        // page-aligned); shmkit accesses these words only atomically.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.map.len());
        // SAFETY: as in `u32_at`.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU64) }
    }

    /// Writes the lock's three words.
    fn set_lock(&self, word: u32, aux: u32, owner: u64) {
        self.u32_at(LOCK).store(word, Ordering::SeqCst);
        self.u32_at(LOCK + 4).store(aux, Ordering::SeqCst);
        self.u64_at(LOCK + 8).store(owner, Ordering::SeqCst);
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Field `n` (1-based, as in proc(5)) of `/proc/<path>/stat`.
fn stat_field(path: &str, n: usize) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{path}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

/// The stamp shmkit records for thread `tid` of this process.
fn my_stamp(tid: u32) -> u64 {
    let start: u64 = stat_field(&format!("self/task/{tid}"), 22)
        .unwrap()
        .parse()
        .unwrap();
    (u64::from(tid) << 40) | (start & ((1 << 40) - 1))
}

/// Whether `path`'s thread is asleep in futex(2) (x86_64: 202; aarch64: 98).
fn asleep_in_futex(path: &str) -> bool {
    let nr = if cfg!(target_arch = "aarch64") {
        98
    } else {
        202
    };
    stat_field(path, 3).as_deref() == Some("S")
        && std::fs::read_to_string(format!("/proc/{path}/syscall"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
            == Some(nr)
}

// ---------------------------------------------------------------- roles

/// Sleeps until killed.
fn hang(_: &[String]) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// args: lock, tid value, cpu. Pins itself to `cpu` at SCHED_IDLE, records
/// its thread id, and waits in `lock()` (holding it forever if it gets it).
fn sleep_in_lock(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let tid = Value::<u32>::open(&args[1]).unwrap();
    let cpu: usize = args[2].parse().unwrap();
    // SAFETY: plain syscalls on this thread with valid arguments.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
        let p = libc::sched_param { sched_priority: 0 };
        assert_eq!(libc::sched_setscheduler(0, libc::SCHED_IDLE, &p), 0);
    }
    tid.store(gettid());
    let _g = lock.lock().unwrap();
    hang(&[]);
}

/// args: lock, pid value. Forks a process whose leader (the only thread,
/// tid == pid) takes the lock, starts a thread that lives on, and exits
/// (pthread_exit): a zombie leader in a live process.
fn leader_exits_holding(args: &[String]) {
    let pidv = Value::<u32>::open(&args[1]).unwrap();
    let name = args[0].clone();
    // SAFETY: the child only opens the lock, takes it, spawns a thread and
    // exits its leader; glibc's malloc is usable in a forked child.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain syscalls.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        assert_eq!(gettid(), std::process::id());
        let lock = Lock::open(&name).unwrap();
        std::mem::forget(lock.lock().unwrap());
        std::thread::spawn(|| hang(&[]));
        pidv.store(std::process::id());
        // SAFETY: exit(2) (not exit_group) ends the leader thread only, with
        // no unwinding; the other thread runs on.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        unreachable!();
    }
    // This (intermediate) process waits to be killed; the grandchild dies
    // with it (PDEATHSIG).
    hang(&[]);
}

// ---------------------------------------------------------------- defect 4

/// Defect 4: a peer writes this thread's own stamp (tid and start time,
/// both readable from /proc) as the lock's owner. `Value::store`,
/// `Value::load` of a large type, `Array::get` and `Array::to_vec` panicked
/// ("deadlock"). Now the forgery is a foreign live owner: the call waits,
/// and finishes once the forgery is gone.
#[test]
fn a_forged_owner_is_me_stamp_makes_no_call_panic() {
    let _w = watchdog(WATCHDOG);
    let v = Value::<[u64; 4]>::create_unique([1; 4]).unwrap();
    let a = Array::<u64>::create_unique(3, 7).unwrap();
    let (rv, ra) = (Raw::open(v.name()), Raw::open(a.name()));
    for op in 0..4 {
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let (v, a) = (&v, &a);
            let t = s.spawn(move || {
                tx.send(gettid()).unwrap();
                go_rx.recv().unwrap();
                match op {
                    0 => {
                        v.store([2; 4]);
                        assert_eq!(v.load(), [2; 4]);
                    }
                    1 => assert_eq!(v.load(), [2; 4]),
                    2 => assert_eq!(a.get(1), Some(7)),
                    _ => assert_eq!(a.to_vec(), [7, 7, 7]),
                }
            });
            let tid = rx.recv().unwrap();
            let raw = if op < 2 { &rv } else { &ra };
            // Old layout: word = tid and stamp; new: the stamp word is the lock.
            raw.set_lock(tid, 0, my_stamp(tid));
            go_tx.send(()).unwrap();
            // Until the forgery is undone the call waits (the owner "lives").
            let slept = wait_for(Duration::from_secs(2), || {
                t.is_finished() || asleep_in_futex(&format!("self/task/{tid}"))
            });
            raw.set_lock(0, 0, 0);
            let r = t.join();
            assert!(slept, "op {op}: never waited");
            assert!(r.is_ok(), "op {op}: panicked on a forged owner stamp");
        });
    }
}

/// Defect 4, second half: a forged live owner must not block the Value and
/// Array calls forever: `try_lock` and `lock_timeout` give up.
#[test]
fn a_forged_live_owner_times_out_value_and_array_calls() {
    let _w = watchdog(WATCHDOG);
    let v = Value::<[u64; 4]>::create_unique([1; 4]).unwrap();
    let a = Array::<u64>::create_unique(3, 7).unwrap();
    let (rv, ra) = (Raw::open(v.name()), Raw::open(a.name()));
    let tid = gettid();
    // Owned by this thread (forged), and by a live stranger (our parent).
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() } as u32;
    let stranger = (u64::from(ppid) << 40)
        | stat_field(&ppid.to_string(), 22)
            .unwrap()
            .parse::<u64>()
            .unwrap();
    for owner in [my_stamp(tid), stranger] {
        let w = (owner >> 40) as u32;
        rv.set_lock(w, 0, owner);
        ra.set_lock(w, 0, owner);
        assert!(v.try_lock().unwrap().is_none());
        assert!(a.try_lock().unwrap().is_none());
        for ms in [0, 30] {
            let d = Duration::from_millis(ms);
            let t = Instant::now();
            assert!(matches!(v.lock_timeout(d), Err(Error::Timeout { .. })));
            assert!(t.elapsed() >= d);
            let t = Instant::now();
            assert!(matches!(a.lock_timeout(d), Err(Error::Timeout { .. })));
            assert!(t.elapsed() >= d);
        }
    }
    rv.set_lock(0, 0, 0);
    ra.set_lock(0, 0, 0);
    *v.lock_timeout(REACH).unwrap() = [5; 4];
    assert_eq!(v.load(), [5; 4]);
    a.lock_timeout(REACH).unwrap()[2] = 9;
    assert_eq!(a.to_vec(), [7, 7, 9]);
}

/// A real double lock is still told: `Deadlock` from the guard calls of
/// the same handle and of a second handle on the same object.
#[test]
fn a_real_double_lock_is_still_a_deadlock() {
    let _w = watchdog(WATCHDOG);
    let v = Value::<[u64; 4]>::create_unique([1; 4]).unwrap();
    let v2 = Value::<[u64; 4]>::open(v.name()).unwrap();
    let a = Array::<u64>::create_unique(3, 7).unwrap();
    let a2 = Array::<u64>::open(a.name()).unwrap();
    let l = Lock::create_unique().unwrap();
    let l2 = Lock::open(l.name()).unwrap();
    {
        let _g = v.lock().unwrap();
        assert!(matches!(v.lock(), Err(Error::Deadlock { .. })));
        assert!(matches!(v2.lock(), Err(Error::Deadlock { .. })));
        assert!(matches!(
            v2.lock_timeout(Duration::from_secs(3600)),
            Err(Error::Deadlock { .. })
        ));
        assert!(v2.try_lock().unwrap().is_none());
    }
    {
        let _g = a.lock().unwrap();
        assert!(matches!(a2.lock(), Err(Error::Deadlock { .. })));
        assert!(matches!(a2.set(0, 1), Err(Error::Deadlock { .. })));
        assert!(a2.try_lock().unwrap().is_none());
    }
    {
        let _g = l.lock().unwrap();
        assert!(matches!(l2.lock(), Err(Error::Deadlock { .. })));
    }
    // Nested guards of different locks, released out of order.
    let g1 = l.lock().unwrap();
    let g2 = v.lock().unwrap();
    drop(g1);
    assert!(matches!(v2.lock(), Err(Error::Deadlock { .. })));
    let g3 = l2.lock().unwrap();
    drop(g2);
    drop(g3);
    assert!(v.try_lock().unwrap().is_some());
    assert!(l.try_lock().unwrap().is_some());
}

// ---------------------------------------------------------------- defect 10

/// Defect 10: a holder killed between the lock CAS and its stamp store left
/// the word naming its thread id with no stamp; once a live stranger ran
/// under that id, nobody could tell, and the lock was kept forever. Here
/// the bytes are exactly what that crash left (word = the id, stamp 0), the
/// id now a live process. Now the owner is claimed with its stamp in one
/// CAS, so no crash leaves an owner without a stamp; these bytes read as a
/// free lock (the old futex word is now only a wake-up counter).
#[test]
fn a_holder_killed_before_its_stamp_store_is_recovered_when_its_id_is_reused() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let raw = Raw::open(lock.name());
    let stranger = spawn("hang", &[]);
    raw.set_lock(stranger.pid(), 0, 0);
    let t = Instant::now();
    let r = lock.lock_timeout(Duration::from_secs(2));
    assert!(
        r.is_ok(),
        "a lock left without a stamp was never recovered ({:?} after {:?})",
        r.err(),
        t.elapsed()
    );
    drop(r);
    stranger.kill();
}

// ---------------------------------------------------------------- defect 11

fn current_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    assert!(c >= 0);
    c as usize
}

fn pin_to(cpu: usize) {
    // SAFETY: plain syscall on this thread with a valid set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

/// Makes an orphaned fair hand-off: a sleeper in `lock()` is SIGKILLed and,
/// before it runs again (it is pinned to this CPU at SCHED_IDLE), this
/// thread's unlock, the 32nd contended one, reserves the lock for it and
/// wakes it. Returns false when the unlock did not see the sleeper (it had
/// run already, and the hand-off was undone), so the caller tries again.
fn orphan_a_handoff(lock: &Lock, raw: &Raw) -> bool {
    let tid = Value::<u32>::create_unique(0).unwrap();
    let cpu = current_cpu();
    pin_to(cpu);
    let g = lock.lock().unwrap();
    assert!(!g.owner_died());
    // The next contended unlock is the 32nd: a fair one.
    raw.u32_at(LOCK + 4).store(31, Ordering::SeqCst);
    let kid = spawn(
        "sleep_in_lock",
        &[lock.name(), tid.name(), &cpu.to_string()],
    );
    assert!(wait_for(REACH, || tid.load() != 0), "child never started");
    let path = format!("{}/task/{}", kid.pid(), tid.load());
    assert!(
        wait_for(REACH, || asleep_in_futex(&path)),
        "child never slept in lock()"
    );
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(kid.pid() as i32, libc::SIGKILL) }, 0);
    drop(g);
    // Reserved for a sleeper (the hand-off bit: bit 62 of the state word
    // now, bit 29 of the futex word in the old layout), or undone (free).
    let reserved = raw.u64_at(LOCK + 8).load(Ordering::SeqCst) & (1 << 62) != 0
        || raw.u32_at(LOCK).load(Ordering::SeqCst) & (1 << 29) != 0;
    kid.kill(); // reaps it
    if !reserved {
        let g = lock.try_lock().unwrap();
        assert!(g.is_some(), "an undone hand-off left the lock taken");
    }
    reserved
}

/// Defect 11: an orphaned fair hand-off (the woken sleeper died before it
/// took the lock) was never taken by `try_lock`.
#[test]
fn try_lock_takes_a_handoff_orphaned_by_a_dead_sleeper() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let raw = Raw::open(lock.name());
    let mut tries = 0;
    while !orphan_a_handoff(&lock, &raw) {
        tries += 1;
        assert!(tries < 50, "could not orphan a hand-off");
    }
    eprintln!("orphaned a hand-off after {tries} undone tries");
    assert!(!lock.is_locked());
    let took = wait_for(Duration::from_secs(5), || {
        lock.try_lock().unwrap().is_some_and(|g| !g.owner_died())
    });
    assert!(took, "try_lock never took the orphaned hand-off");
}

/// Defect 11 for `lock_timeout(0)`.
#[test]
fn lock_timeout_zero_takes_a_handoff_orphaned_by_a_dead_sleeper() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let raw = Raw::open(lock.name());
    let mut tries = 0;
    while !orphan_a_handoff(&lock, &raw) {
        tries += 1;
        assert!(tries < 50, "could not orphan a hand-off");
    }
    let took = wait_for(Duration::from_secs(5), || {
        lock.lock_timeout(Duration::ZERO).is_ok()
    });
    assert!(took, "lock_timeout(0) never took the orphaned hand-off");
}

// ---------------------------------------------------------------- liveness

/// A lock held by a thread-group leader that exited (a zombie) while its
/// process runs on is a dead thread's lock: it was judged with process
/// liveness ("some thread runs") and kept forever.
#[test]
fn a_lock_held_by_an_exited_leader_thread_is_taken_over() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let pid = Value::<u32>::create_unique(0).unwrap();
    let kid = spawn("leader_exits_holding", &[lock.name(), pid.name()]);
    assert!(
        wait_for(REACH, || pid.load() != 0),
        "grandchild never locked"
    );
    let p = pid.load().to_string();
    assert!(
        wait_for(REACH, || stat_field(&p, 3).as_deref() == Some("Z")),
        "the leader never exited"
    );
    let r = lock.lock_timeout(Duration::from_secs(2));
    assert!(r.as_ref().is_ok_and(|g| g.owner_died()), "{:?}", r.err());
    drop(r);
    // SAFETY: signals the grandchild we were told about.
    unsafe { libc::kill(pid.load() as i32, libc::SIGKILL) };
    kid.kill();
}

// ---------------------------------------------------------------- defect 13

/// Defect 13 for the Array: a peer scribbling over the array (lock and
/// elements) while it is read makes the reader see changing values, never
/// memory out of bounds, and every call returns.
#[test]
fn array_readers_under_a_scribbler_stay_in_bounds_and_return() {
    let _w = watchdog(WATCHDOG);
    let a = Array::<u64>::create_unique(64, 0).unwrap();
    let raw = Raw::open(a.name());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut calls = 0u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Elements and, now and then, the lock's words.
                let i = (x % 64) as usize;
                raw.u64_at(LOCK + 16 + 8 * i).store(x, Ordering::Relaxed);
                if x % 16 == 0 {
                    raw.set_lock(x as u32, (x >> 32) as u32, x.rotate_left(7));
                }
                if x % 64 == 1 {
                    raw.set_lock(0, 0, 0);
                }
            }
        });
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(500) {
            let d = Duration::from_millis(1);
            if let Ok(g) = a.lock_timeout(d) {
                assert_eq!(g.len(), 64);
                let _ = g.iter().fold(0u64, |acc, &x| acc ^ x);
            }
            if let Ok(Some(g)) = a.try_lock() {
                assert_eq!(g.len(), 64);
            }
            calls += 2;
        }
        stop.store(true, Ordering::Relaxed);
    });
    // With the lock freed for good, the one-shot calls return too.
    raw.set_lock(0, 0, 0);
    assert_eq!(a.to_vec().len(), 64);
    assert!(a.get(63).is_some() && a.get(64).is_none());
    eprintln!("{calls} guarded calls under the scribbler");
}
