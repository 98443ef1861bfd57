//! The sync shim: the one place that names atomics, `UnsafeCell`, futex
//! wait/wake, the clock and task liveness.
//!
//! Every raw core (`crate::raw`) imports only from here. In a normal build
//! these are the real things (`core::sync::atomic`, futex(2), `/proc`). Under
//! `RUSTFLAGS="--cfg loom"` they are loom's atomics and cells, and the futex
//! is modelled by a loom `Mutex` + `Condvar` whose `wait` re-checks the word
//! under the mutex, so a lost wake-up shows up as a loom deadlock (the same
//! idea as tokio's `src/loom`). `clippy.toml` forbids the std types
//! everywhere else.
#![allow(clippy::disallowed_types)]

use std::time::Duration;

#[cfg(not(loom))]
mod real;
#[cfg(not(loom))]
pub(crate) use real::*;
#[cfg(not(loom))]
mod fork_local;
#[cfg(not(loom))]
pub(crate) use fork_local::ForkLocal;
#[cfg(not(loom))]
pub(crate) mod reactor;
#[cfg(not(loom))]
mod watch;
#[cfg(not(loom))]
pub(crate) use watch::{deaths, watch, Target, Watch, WATCHED_INTERVAL};

#[cfg(loom)]
mod model;
#[cfg(loom)]
pub use model::support as loom_support;
#[cfg(loom)]
pub(crate) use model::*;

pub(crate) use std::sync::atomic::Ordering;

/// A number a handle keeps for itself as a hint (a queue producer's last
/// read of the head): a std atomic in every build, *not* modelled by loom.
/// Only for values that choose between a fast path and a checked one, where
/// any value at all is safe (the checked path reads the shared state
/// itself); so the models lose nothing by not interleaving it, and do not
/// pay for it in states to explore.
#[derive(Debug, Default)]
pub(crate) struct Hint(std::sync::atomic::AtomicU64);

/// A yes/no setting of a handle's own, changed through `&self` (whether a
/// segment handle removes its name when it drops): a std atomic in every
/// build, not modelled by loom, because no other thread or process decides
/// anything from it; it only lets a handle shared in an `Arc` be changed.
#[derive(Debug, Default)]
pub(crate) struct Flag(std::sync::atomic::AtomicBool);

impl Flag {
    pub(crate) fn new(v: bool) -> Flag {
        Flag(std::sync::atomic::AtomicBool::new(v))
    }

    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, v: bool) {
        self.0.store(v, Ordering::Release)
    }
}

impl Hint {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }
}

/// An absolute point on the monotonic clock, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Duration>);

impl Deadline {
    /// No deadline: wait for as long as it takes.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now. A timeout too large to represent is "never".
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(now().checked_add(timeout))
    }

    /// True once the deadline has passed.
    pub(crate) fn expired(self) -> bool {
        self.0.is_some_and(|d| now() >= d)
    }

    /// The point itself (monotonic time), `None` for never.
    pub(crate) fn at(self) -> Option<Duration> {
        self.0
    }

    /// The earlier of this deadline and `interval` from now, and whether that
    /// is this deadline (true) or the interval (false).
    pub(crate) fn or_within(self, interval: Duration) -> (Option<Duration>, bool) {
        let check = now().checked_add(interval);
        match (self.0, check) {
            (Some(d), Some(c)) if d <= c => (Some(d), true),
            (Some(d), None) => (Some(d), true),
            (_, c) => (c, false),
        }
    }
}

/// Identifies a running thread even after its id is reused: the kernel
/// thread id (22 bits suffice, `PID_MAX_LIMIT` is 2^22) and the thread's start
/// time in clock ticks (40 bits), packed into one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TaskStamp(pub(crate) u64);

impl TaskStamp {
    const START_BITS: u32 = 40;
    const START_MASK: u64 = (1 << Self::START_BITS) - 1;

    pub(crate) fn new(tid: u32, start: u64) -> TaskStamp {
        TaskStamp((u64::from(tid) << Self::START_BITS) | (start & Self::START_MASK))
    }

    pub(crate) fn tid(self) -> u32 {
        (self.0 >> Self::START_BITS) as u32
    }

    pub(crate) fn start(self) -> u64 {
        self.0 & Self::START_MASK
    }

    /// The start time stored when it could not be read (`/proc` did not
    /// answer): such a stamp names its id only.
    pub(crate) const START_UNKNOWN: u64 = 0;

    /// Whether the start time was read (see [`Self::START_UNKNOWN`]).
    pub(crate) fn start_known(self) -> bool {
        self.start() != Self::START_UNKNOWN
    }

    /// Whether `self` (a recorded owner) may be the task `me`: the same id,
    /// and the same start time or one of them unknown. Used to tell "I hold
    /// it" from "a dead task with my id holds it" without ever guessing the
    /// latter.
    #[allow(dead_code)]
    pub(crate) fn could_be(self, me: TaskStamp) -> bool {
        self.tid() == me.tid()
            && (self.start() == me.start() || !self.start_known() || !me.start_known())
    }
}

/// What a liveness check found out about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// It runs, and it is the task the stamp names.
    Alive,
    /// It is gone ("no such task", a zombie, or its id now names a task
    /// with another start time).
    Dead,
    /// The OS did not answer (e.g. this process is out of descriptors):
    /// treat as alive, and look again later.
    Unknown,
}

pub(crate) use crate::sys::Probe;

fn judge(id: u32, probe: Probe, stamp: Option<TaskStamp>) -> Liveness {
    match probe {
        Probe::Gone => Liveness::Dead,
        Probe::Unknown => Liveness::Unknown,
        Probe::Running(start) => match stamp {
            // A stamp whose start time could not be read (0) names the id
            // only: it cannot be told from a later task with the same id.
            Some(s) if s.tid() == id && s.start_known() => {
                if s.start() == (start & TaskStamp::START_MASK) {
                    Liveness::Alive
                } else {
                    Liveness::Dead
                }
            }
            _ => Liveness::Alive,
        },
    }
}

/// Whether the process `pid` (any thread of it) still runs. `stamp` is what
/// it recorded of itself, if it got so far: when the stamp names the same
/// id with a known start time, the start times must match too, so a reused
/// id cannot pass for the dead one.
/// The stamp of process `pid` as `/proc` shows it now (start time 0, "not
/// known", when it did not answer or the process is gone already).
#[cfg(not(loom))]
pub(crate) fn process_stamp(pid: u32) -> TaskStamp {
    match probe_process(pid) {
        crate::sys::Probe::Running(start) => TaskStamp::new(pid, start),
        _ => TaskStamp::new(pid, 0),
    }
}

pub(crate) fn liveness(pid: u32, stamp: Option<TaskStamp>) -> Liveness {
    judge(pid, probe_process(pid), stamp)
}

/// As [`liveness`], for one thread: a thread-group leader that exited
/// (state Z) is a dead thread, even while its group runs on.
pub(crate) fn thread_liveness(tid: u32, stamp: Option<TaskStamp>) -> Liveness {
    judge(tid, probe_thread(tid), stamp)
}

/// Whether the process (or thread) `tid` is not known to be dead: only a
/// [`Liveness::Dead`] answer of [`liveness`] is `false`; "unknown" is alive.
/// Process semantics, the safe reading for any id: a thread id whose thread
/// exited while its group lives counts as alive here (see
/// [`thread_alive`] for locks held by threads).
pub(crate) fn task_alive(tid: u32, stamp: Option<TaskStamp>) -> bool {
    liveness(tid, stamp) != Liveness::Dead
}

/// Whether the thread `tid` is not known to be dead ([`thread_liveness`]).
#[allow(dead_code)]
pub(crate) fn thread_alive(tid: u32, stamp: Option<TaskStamp>) -> bool {
    thread_liveness(tid, stamp) != Liveness::Dead
}

/// Whether a condition's waiter, the thread `stamp` of process `pid` (as
/// it recorded itself), is not known to be dead, cheaply enough for every
/// notify: a per-thread cache of pidfds of the waiters' processes, each
/// checked once against `/proc` when opened, then asked with one `poll(2)`.
/// A waiter thread is taken to die only with its process (it is blocked in
/// the wait); a thread that started before the process now under `pid`
/// belonged to an earlier process with that pid, which is dead. Without a
/// pidfd (or a known start time), the `/proc` check of [`thread_alive`].
#[cfg(not(loom))]
pub(crate) fn waiter_alive(pid: u32, stamp: TaskStamp) -> bool {
    real::waiter_alive(pid, stamp)
}

/// Under loom: the model's liveness of the waiter thread.
#[cfg(loom)]
pub(crate) fn waiter_alive(_pid: u32, stamp: TaskStamp) -> bool {
    thread_alive(stamp.tid(), Some(stamp))
}

/// Names a lock in the calling thread's set of held locks: its address in
/// this process and, for a lock in a named segment, the object's identity
/// (device, inode), which every mapping of the object shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldKey {
    pub(crate) addr: usize,
    pub(crate) object: Option<(u64, u64)>,
}

impl HeldKey {
    /// Two keys name one lock if they name one object, or, when either
    /// object is unknown, one address. Two known, different objects are two
    /// locks even at one address: the first was unmapped (a guard of it
    /// leaked, so its record stays) and the second mapped where it was.
    fn same_lock(&self, other: &HeldKey) -> bool {
        match (self.object, other.object) {
            (Some(a), Some(b)) => a == b,
            _ => self.addr == other.addr,
        }
    }
}

// The locks the calling thread holds (a guard of this thread exists, or was
// leaked), each with the thread id it was taken under. A forked child
// inherits its parent thread's set; the ids tell its entries apart. Only
// this thread's own record can say "you already hold it": a lock word is
// shared memory, and a peer can write our stamp into it.
//
// The first `HELD_INLINE` entries live in a thread-local without a
// destructor (the cheapest kind to reach: it costs the lock's fast path a
// few nanoseconds); more nested locks spill into a `Vec`. During thread
// teardown the spill may be gone: a relock then waits instead of failing
// with `Deadlock`, which is never wrong.

type Held = (HeldKey, u32);

#[cfg(not(loom))]
const NO_HELD: Held = (
    HeldKey {
        addr: 0,
        object: None,
    },
    0,
);

#[cfg(not(loom))]
const HELD_INLINE: usize = 8;

#[cfg(not(loom))]
struct HeldSet {
    /// Entries used in `inline`.
    len: std::cell::Cell<usize>,
    /// Entries in `HELD_MORE`.
    more: std::cell::Cell<usize>,
    inline: std::cell::RefCell<[Held; HELD_INLINE]>,
}

#[cfg(not(loom))]
std::thread_local! {
    static HELD: HeldSet = const {
        HeldSet {
            len: std::cell::Cell::new(0),
            more: std::cell::Cell::new(0),
            inline: std::cell::RefCell::new([NO_HELD; HELD_INLINE]),
        }
    };
    static HELD_MORE: std::cell::RefCell<Vec<Held>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records that thread `tid` (the caller) now holds the lock `key`.
#[cfg(not(loom))]
pub(crate) fn held_insert(key: HeldKey, tid: u32) {
    let _ = HELD.try_with(|h| {
        let n = h.len.get();
        if n < HELD_INLINE {
            h.inline.borrow_mut()[n] = (key, tid);
            h.len.set(n + 1);
        } else if HELD_MORE
            .try_with(|m| m.borrow_mut().push((key, tid)))
            .is_ok()
        {
            h.more.set(h.more.get() + 1);
        }
    });
}

/// Forgets the latest record of `held_insert(key, tid)` with `key.addr ==
/// addr`. A thread holds a lock at one address at most once (a second
/// `lock` through it is `Deadlock`), so the address and the thread name the
/// record, and a guard need not carry the whole key.
#[cfg(not(loom))]
pub(crate) fn held_remove(addr: usize, tid: u32) {
    let mine = |e: &Held| e.0.addr == addr && e.1 == tid;
    let _ = HELD.try_with(|h| {
        let n = h.len.get();
        let mut a = h.inline.borrow_mut();
        if let Some(i) = a[..n].iter().rposition(mine) {
            // Locks are mostly let go in the reverse order of taking: then
            // the entry is the last and nothing moves (a copy of the entry
            // just stored, read back whole, stalls on the store buffer).
            if i + 1 != n {
                a[i] = a[n - 1];
            }
            h.len.set(n - 1);
            return;
        }
        if h.more.get() > 0 {
            let _ = HELD_MORE.try_with(|m| {
                let mut m = m.borrow_mut();
                if let Some(i) = m.iter().rposition(mine) {
                    m.swap_remove(i);
                    h.more.set(h.more.get() - 1);
                }
            });
        }
    });
}

/// Forgets the calling thread's (`tid`'s) record of the lock `key` names,
/// made through whichever mapping of its object: the record of `key`
/// itself if there is one, else the latest of the same lock (taken through
/// one handle of a segment and let go through another). Returns the
/// forgotten record's key. For the releases that know the whole key (a
/// lock kept without a guard); a guard's drop uses [`held_remove`].
#[cfg(not(loom))]
pub(crate) fn held_forget(key: HeldKey, tid: u32) -> Option<HeldKey> {
    held_take(|e| e.1 == tid && e.0 == key)
        .or_else(|| held_take(|e| e.1 == tid && e.0.same_lock(&key)))
}

/// Removes the latest record that `pick` chooses (of the inline ones,
/// else of the spill); its key.
#[cfg(not(loom))]
fn held_take(pick: impl Fn(&Held) -> bool) -> Option<HeldKey> {
    HELD.try_with(|h| {
        let n = h.len.get();
        let mut a = h.inline.borrow_mut();
        if let Some(i) = a[..n].iter().rposition(&pick) {
            let k = a[i].0;
            a[i] = a[n - 1];
            h.len.set(n - 1);
            return Some(k);
        }
        if h.more.get() == 0 {
            return None;
        }
        HELD_MORE
            .try_with(|m| {
                let mut m = m.borrow_mut();
                let i = m.iter().rposition(&pick)?;
                h.more.set(h.more.get() - 1);
                Some(m.swap_remove(i).0)
            })
            .ok()
            .flatten()
    })
    .ok()
    .flatten()
}

/// Whether thread `tid` (the caller) holds the lock `key` (through any
/// mapping of its object).
#[cfg(not(loom))]
pub(crate) fn held_contains(key: HeldKey, tid: u32) -> bool {
    let hit = |e: &Held| e.1 == tid && e.0.same_lock(&key);
    HELD.try_with(|h| {
        h.inline.borrow()[..h.len.get()].iter().any(hit)
            || (h.more.get() > 0
                && HELD_MORE
                    .try_with(|m| m.borrow().iter().any(hit))
                    .unwrap_or(false))
    })
    .unwrap_or(false)
}

// The levels of the recursive locks the calling thread holds
// (`raw::RawRLock`): process-local, because only the owner thread needs its
// level, and a level in shared memory could be scribbled, or written by a
// dead owner after the store that a survivor's takeover synchronises with.
// Each entry: the lock, the thread id, the level, and whether the
// outermost acquisition took the lock over from a dead holder.

type Level = (HeldKey, u32, u32, bool);

#[cfg(not(loom))]
std::thread_local! {
    static LEVELS: std::cell::RefCell<Vec<Level>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(loom)]
loom::thread_local! {
    static LEVELS: std::cell::RefCell<Vec<Level>> = std::cell::RefCell::new(Vec::new());
}

/// The calling thread's level of the recursive lock `key`, and whether its
/// outermost acquisition was told a holder died; `(0, false)` if none.
pub(crate) fn level_get(key: HeldKey, tid: u32) -> (u32, bool) {
    let f = |l: &std::cell::RefCell<Vec<Level>>| {
        l.borrow()
            .iter()
            .find(|e| e.1 == tid && e.0.same_lock(&key))
            .map_or((0, false), |e| (e.2, e.3))
    };
    #[cfg(not(loom))]
    return LEVELS.try_with(f).unwrap_or((0, false));
    #[cfg(loom)]
    return LEVELS.with(f);
}

/// Sets the calling thread's level of `key` (0 forgets it).
pub(crate) fn level_set(key: HeldKey, tid: u32, level: u32, told: bool) {
    let f = |l: &std::cell::RefCell<Vec<Level>>| {
        let mut l = l.borrow_mut();
        let i = l.iter().position(|e| e.1 == tid && e.0.same_lock(&key));
        match (i, level) {
            (Some(i), 0) => {
                l.swap_remove(i);
            }
            (Some(i), n) => l[i] = (key, tid, n, told),
            (None, 0) => {}
            (None, n) => l.push((key, tid, n, told)),
        }
    };
    #[cfg(not(loom))]
    let _ = LEVELS.try_with(f);
    #[cfg(loom)]
    LEVELS.with(f);
}

/// Steps the calling thread's level of `key` by one, up (`up`, not past
/// `u32::MAX`) or down (a level of 1 is forgotten), in one look; returns
/// the level and flag before the step, `(0, false)` (and no change) if
/// there is none. A nested acquisition and release are one look each,
/// not a `level_get` and a `level_set`.
pub(crate) fn level_step(key: HeldKey, tid: u32, up: bool) -> (u32, bool) {
    let f = |l: &std::cell::RefCell<Vec<Level>>| {
        let mut l = l.borrow_mut();
        let Some(i) = l.iter().rposition(|e| e.1 == tid && e.0.same_lock(&key)) else {
            return (0, false);
        };
        let (n, told) = (l[i].2, l[i].3);
        match (up, n) {
            (true, u32::MAX) => {}
            (true, n) => l[i].2 = n + 1,
            (false, 0 | 1) => {
                l.swap_remove(i);
            }
            (false, n) => l[i].2 = n - 1,
        }
        (n, told)
    };
    #[cfg(not(loom))]
    return LEVELS.try_with(f).unwrap_or((0, false));
    #[cfg(loom)]
    return LEVELS.with(f);
}

#[cfg(loom)]
loom::thread_local! {
    static HELD: std::cell::RefCell<Vec<Held>> = std::cell::RefCell::new(Vec::new());
}

/// Records that thread `tid` (the caller) now holds the lock `key`.
#[cfg(loom)]
pub(crate) fn held_insert(key: HeldKey, tid: u32) {
    HELD.with(|h| h.borrow_mut().push((key, tid)));
}

/// Forgets the latest record of `held_insert(key, tid)` with `key.addr ==
/// addr`.
#[cfg(loom)]
pub(crate) fn held_remove(addr: usize, tid: u32) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if let Some(i) = h.iter().rposition(|e| e.0.addr == addr && e.1 == tid) {
            h.swap_remove(i);
        }
    });
}

/// Forgets the calling thread's record of the lock `key` names (see the
/// non-loom `held_forget`).
#[cfg(loom)]
pub(crate) fn held_forget(key: HeldKey, tid: u32) -> Option<HeldKey> {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let i = h
            .iter()
            .rposition(|e| e.1 == tid && e.0 == key)
            .or_else(|| h.iter().rposition(|e| e.1 == tid && e.0.same_lock(&key)))?;
        Some(h.swap_remove(i).0)
    })
}

/// Whether thread `tid` (the caller) holds the lock `key`.
#[cfg(loom)]
pub(crate) fn held_contains(key: HeldKey, tid: u32) -> bool {
    HELD.with(|h| h.borrow().iter().any(|e| e.1 == tid && e.0.same_lock(&key)))
}
