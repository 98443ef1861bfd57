//! The shim under `--cfg loom`: loom's atomics, a futex modelled by a loom
//! `Mutex` + `Condvar`, model thread ids, and a liveness table that a model
//! can mark a thread dead in.
//!
//! Timed waits: loom has no clock. A model chooses, with
//! [`support::set_timeouts_fire`], whether a wait with a deadline returns at
//! once as timed out (to drive the "the owner died" paths) or blocks like an
//! untimed wait (so that a lost wake-up deadlocks the model).

use std::cell::{Cell, RefCell};
use std::time::Duration;

pub(crate) use loom::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8};

use super::TaskStamp;

std::thread_local! {
    static TIMEOUTS_FIRE: Cell<bool> = const { Cell::new(false) };
    static NEXT_TID: Cell<u32> = const { Cell::new(1) };
    static DEAD: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Live threads whose liveness checks answer "unknown"; `u32::MAX`: all.
    static UNKNOWN: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

loom::thread_local! {
    static TID: u32 = NEXT_TID.with(|n| {
        let t = n.get();
        n.set(t + 1);
        t
    });
}

/// The futex model: the word plus a mutex and a condition variable. `wait`
/// checks the word under the mutex and `wake_*` notifies under it, which is
/// exactly the atomicity a real futex gives.
#[derive(Debug)]
pub(crate) struct Futex {
    word: AtomicU32,
    /// The number of threads asleep in `wait`.
    lock: loom::sync::Mutex<usize>,
    cv: loom::sync::Condvar,
}

impl Default for Futex {
    fn default() -> Self {
        Futex::new(0)
    }
}

impl Futex {
    pub(crate) fn new(v: u32) -> Futex {
        Futex {
            word: AtomicU32::new(v),
            lock: loom::sync::Mutex::new(0),
            cv: loom::sync::Condvar::new(),
        }
    }

    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    pub(crate) fn wait(&self, expected: u32, until: Option<Duration>) -> bool {
        if until.is_some() && TIMEOUTS_FIRE.with(Cell::get) {
            loom::thread::yield_now();
            return false;
        }
        let mut guard = self.lock.lock().unwrap();
        if self.word.load(super::Ordering::SeqCst) != expected {
            return true;
        }
        *guard += 1;
        let mut guard = self.cv.wait(guard).unwrap();
        *guard -= 1;
        true
    }

    pub(crate) fn wake_one(&self) -> usize {
        let g = self.lock.lock().unwrap();
        self.cv.notify_one();
        (*g).min(1)
    }

    pub(crate) fn wake_all(&self) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

pub(crate) fn now() -> Duration {
    Duration::ZERO
}

pub(crate) fn current_stamp() -> TaskStamp {
    TaskStamp::new(TID.with(|t| *t), 1)
}

/// Under loom each model thread plays a process too.
pub(crate) fn current_process() -> TaskStamp {
    current_stamp()
}

/// A model thread's liveness: dead once it called [`support::die`] (or
/// never existed), "unknown" when the model said so with
/// [`support::set_unknown`], else running since tick 1.
pub(crate) fn probe_thread(tid: u32) -> crate::sys::Probe {
    use crate::sys::Probe;
    let dead = DEAD.with(|d| d.borrow().contains(&tid));
    if dead || tid == 0 || tid >= NEXT_TID.with(Cell::get) {
        Probe::Gone
    } else if UNKNOWN.with(|u| u.borrow().iter().any(|&x| x == tid || x == u32::MAX)) {
        Probe::Unknown
    } else {
        Probe::Running(1)
    }
}

/// Under loom each model thread plays a process too.
pub(crate) fn probe_process(pid: u32) -> crate::sys::Probe {
    probe_thread(pid)
}

/// Under loom there are no pidfds: no token.
pub(crate) fn process_token(_pid: u32) -> Option<u64> {
    None
}

pub(crate) fn spin_loop() {
    loom::thread::yield_now();
}

#[allow(dead_code)]
pub(crate) fn yield_now() {
    loom::thread::yield_now();
}

pub(crate) const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);

/// Helpers for loom models (only under `--cfg loom`).
pub mod support {
    use super::*;

    /// Runs `f` as a loom model, resetting the model's thread ids and
    /// liveness table for every execution.
    pub fn model<F: Fn() + Sync + Send + 'static>(timeouts_fire: bool, f: F) {
        TIMEOUTS_FIRE.with(|t| t.set(timeouts_fire));
        loom::model(move || {
            NEXT_TID.with(|n| n.set(1));
            DEAD.with(|d| d.borrow_mut().clear());
            UNKNOWN.with(|u| u.borrow_mut().clear());
            f();
        });
    }

    /// Marks the calling model thread dead, as if SIGKILLed: whatever it
    /// holds stays held, and liveness checks now say it is gone.
    pub fn die() {
        let tid = TID.with(|t| *t);
        DEAD.with(|d| d.borrow_mut().push(tid));
    }

    /// Makes every liveness check of the live model thread `tid` answer
    /// "unknown" (as if the checker could not read `/proc`), for the rest of
    /// this execution; `u32::MAX` does it for every live thread. A thread
    /// marked dead with [`die`] still answers "dead". `tid` 1 is the model's
    /// main thread, then spawned threads in order.
    pub fn set_unknown(tid: u32) {
        UNKNOWN.with(|u| u.borrow_mut().push(tid));
    }

    /// The calling model thread's id, for [`set_unknown`].
    pub fn current_tid() -> u32 {
        TID.with(|t| *t)
    }
}

/// The most words [`wait_any`] sleeps on at once.
pub(crate) const WAIT_ANY_MAX: usize = 128;

/// `wait_any` under loom: a loom condition variable cannot wait on several
/// words, so this looks at them all and, if none changed, yields and
/// returns as if spuriously woken (or timed out, when timeouts fire).
/// Callers loop until ready, which loom explores like any spin loop.
pub(crate) fn wait_any(words: &[(&Futex, u32)], until: Option<Duration>) -> bool {
    if words
        .iter()
        .any(|(f, v)| f.word().load(super::Ordering::SeqCst) != *v)
    {
        return true;
    }
    loom::thread::yield_now();
    !(until.is_some() && TIMEOUTS_FIRE.with(Cell::get))
}

/// Under loom, as in real builds.
pub(crate) const WATCHED_INTERVAL: Duration = Duration::from_secs(1);

/// Death notice under loom: nothing is watched (a model's deaths are seen
/// by its liveness checks, driven by timeouts), so sleepers keep the short
/// liveness interval.
pub(crate) struct Watch {
    #[allow(dead_code)] // read by the real shim's users only
    pub(crate) all: bool,
    pub(crate) dead: bool,
}

impl Watch {
    pub(crate) fn interval(&self) -> Duration {
        LIVENESS_INTERVAL
    }
}

/// See the real `sync::watch::Target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Process(TaskStamp),
    Thread(TaskStamp),
}

pub(crate) fn watch(_word: &Futex, _targets: &[Target]) -> Watch {
    Watch {
        all: false,
        dead: false,
    }
}

pub(crate) fn deaths() -> u64 {
    0
}
