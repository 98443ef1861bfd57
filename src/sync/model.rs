//! The shim under `--cfg loom`: loom's atomics, a futex modelled by a loom
//! `Mutex` + `Condvar`, model thread ids, and a liveness table that a model
//! can mark a thread dead in.
//!
//! Death at every step: every shim operation (atomic access, fence, futex
//! wait or wake, `wait_any`, liveness probe) first runs a step hook. A
//! model thread started with [`support::victim`] in a [`support::sweep`]
//! counts its steps and dies before the k-th (see `kill`: marked dead,
//! parked while the model runs, then unwound as a ghost whose operations
//! touch nothing, which equals SIGKILL); outside a sweep the hook reads two
//! thread-local cells. `real.rs` has no such hook.
//!
//! `wait_any` is a real multi-word sleep (one execution-wide mutex and
//! condition variable that every futex wake notifies), so a lost wake-up
//! in a `WaitSet` registration is a loom deadlock.
//!
//! Timed waits: loom has no clock. A model chooses, with
//! [`support::set_timeouts_fire`], whether a wait with a deadline returns at
//! once as timed out (to drive the "the owner died" paths) or blocks like an
//! untimed wait (so that a lost wake-up deadlocks the model).

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::{Ordering, TaskStamp};

// The atomics the shim hands out: loom's, wrapped so that every operation
// is first a step of the death schedule (see `support::sweep`). Outside a
// death sweep the wrapper only reads two thread-local cells.
macro_rules! shim_atomic {
    ($name:ident, $t:ty) => {
        /// A loom atomic whose every operation counts as a step of the
        /// calling thread (see [`support::sweep`]); a killed thread's
        /// operations touch nothing.
        #[derive(Debug)]
        #[repr(transparent)]
        pub(crate) struct $name(loom::sync::atomic::$name);

        impl Default for $name {
            fn default() -> $name {
                $name::new(0)
            }
        }

        #[allow(dead_code)]
        impl $name {
            pub(crate) fn new(v: $t) -> $name {
                $name(loom::sync::atomic::$name::new(v))
            }
            pub(crate) fn load(&self, o: Ordering) -> $t {
                if step() {
                    return 0;
                }
                self.0.load(o)
            }
            pub(crate) fn store(&self, v: $t, o: Ordering) {
                if step() {
                    return;
                }
                self.0.store(v, o)
            }
            pub(crate) fn swap(&self, v: $t, o: Ordering) -> $t {
                if step() {
                    return 0;
                }
                self.0.swap(v, o)
            }
            pub(crate) fn compare_exchange(
                &self,
                cur: $t,
                new: $t,
                ok: Ordering,
                err: Ordering,
            ) -> Result<$t, $t> {
                if step() {
                    return Ok(cur);
                }
                self.0.compare_exchange(cur, new, ok, err)
            }
            pub(crate) fn compare_exchange_weak(
                &self,
                cur: $t,
                new: $t,
                ok: Ordering,
                err: Ordering,
            ) -> Result<$t, $t> {
                if step() {
                    return Ok(cur);
                }
                self.0.compare_exchange_weak(cur, new, ok, err)
            }
            pub(crate) fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                if step() {
                    return 0;
                }
                self.0.fetch_add(v, o)
            }
            pub(crate) fn fetch_sub(&self, v: $t, o: Ordering) -> $t {
                if step() {
                    return 0;
                }
                self.0.fetch_sub(v, o)
            }
            pub(crate) fn fetch_or(&self, v: $t, o: Ordering) -> $t {
                if step() {
                    return 0;
                }
                self.0.fetch_or(v, o)
            }
            pub(crate) fn fetch_and(&self, v: $t, o: Ordering) -> $t {
                if step() {
                    return 0;
                }
                self.0.fetch_and(v, o)
            }
        }
    };
}

shim_atomic!(AtomicU8, u8);
shim_atomic!(AtomicU16, u16);
shim_atomic!(AtomicU32, u32);
shim_atomic!(AtomicU64, u64);

/// A fence, counted as a step.
pub(crate) fn fence(o: Ordering) {
    if step() {
        return;
    }
    loom::sync::atomic::fence(o)
}

std::thread_local! {
    static TIMEOUTS_FIRE: Cell<bool> = const { Cell::new(false) };
    /// Model threads whose timed waits block like untimed ones even when
    /// timeouts fire (see [`support::timed_waits_block`]).
    static BLOCKING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    static NEXT_TID: Cell<u32> = const { Cell::new(1) };
    static DEAD: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Live threads whose liveness checks answer "unknown"; `u32::MAX`: all.
    static UNKNOWN: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// The death schedule of the running sweep (see [`support::sweep`]).
    static DOOM: Doom = const {
        Doom {
            k: Cell::new(0),
            max_steps: Cell::new(0),
            victim: Cell::new(0),
            dead_victim: Cell::new(0),
            armed: Cell::new(false),
            steps: Cell::new(0),
            ghost: Cell::new(0),
            grave: RefCell::new(None),
            autopsy: RefCell::new(None),
            finding: Cell::new(None),
        }
    };
}

/// Where a death sweep stands. Loom runs every model thread of an
/// execution on the test's OS thread, so these plain thread-locals are one
/// table per model, invisible to loom (they add no interleavings).
struct Doom {
    /// The step at which the victim dies; 0: it does not (the counting run).
    k: Cell<usize>,
    /// The counting run's result: the most steps the victim took.
    max_steps: Cell<usize>,
    /// The model thread armed to die (0: none, or it died already).
    victim: Cell<u32>,
    /// The victim, once it died.
    dead_victim: Cell<u32>,
    /// Whether this execution started its victim.
    armed: Cell<bool>,
    /// The shim operations the victim started so far.
    steps: Cell<usize>,
    /// A dead victim that was let go after the model's checks: it unwinds,
    /// and its operations on the way out touch nothing.
    ghost: Cell<u32>,
    /// Where the victim reports "done" or "dead", and waits once dead.
    grave: RefCell<Option<loom::sync::Arc<Grave>>>,
    /// What the victim asked to be looked at the instant it dies.
    autopsy: RefCell<Option<Box<dyn FnOnce() -> u64>>>,
    /// The autopsy's finding.
    finding: Cell<Option<u64>>,
}

impl Drop for Doom {
    fn drop(&mut self) {
        // Left only by a failed model: its loom objects belong to an
        // execution that is gone, and dropping them would panic.
        std::mem::forget(self.grave.take());
        std::mem::forget(self.autopsy.take());
    }
}

/// The unwind payload of a killed thread on its way out (see [`kill`]).
struct Killed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Running,
    Done,
    Dead,
    Released,
}

struct Grave {
    fate: loom::sync::Mutex<Fate>,
    cv: loom::sync::Condvar,
    /// Stored (Release) by the victim as it dies; a liveness probe that
    /// answers "gone" for it reads it (an Acquire RMW, so that it reads
    /// this store and releases nothing itself). Learning of a death from
    /// the kernel orders everything the dead task did before the learner's
    /// next step, as the real exit and `/proc` read do.
    exit: loom::sync::atomic::AtomicU32,
}

impl Grave {
    fn new() -> loom::sync::Arc<Grave> {
        loom::sync::Arc::new(Grave {
            fate: loom::sync::Mutex::new(Fate::Running),
            cv: loom::sync::Condvar::new(),
            exit: loom::sync::atomic::AtomicU32::new(0),
        })
    }

    fn set(&self, f: Fate) {
        *self.fate.lock().unwrap() = f;
        self.cv.notify_all();
    }

    /// Waits until the fate is no longer `from`, and returns it.
    fn wait_past(&self, from: Fate) -> Fate {
        let mut g = self.fate.lock().unwrap();
        while *g == from {
            g = self.cv.wait(g).unwrap();
        }
        *g
    }
}

/// The step hook, run before every shim operation (atomic access, fence,
/// futex wait or wake, liveness probe). Returns true when the caller is a
/// ghost, whose operation must then do nothing.
#[inline]
fn step() -> bool {
    let (victim, ghost) = DOOM.with(|d| (d.victim.get(), d.ghost.get()));
    if victim == 0 && ghost == 0 {
        return false;
    }
    let me = TID.with(|t| *t);
    if me == ghost {
        return true;
    }
    if me == victim {
        let (n, k) = DOOM.with(|d| {
            let n = d.steps.get() + 1;
            d.steps.set(n);
            (n, d.k.get())
        });
        if n == k {
            kill(me);
        }
    }
    false
}

/// The victim's death, before its k-th operation: liveness now says it is
/// gone ([`support::die`]), the model's main thread is told, and the thread
/// stops: it parks on its grave and runs nothing more while the model runs.
/// Once the model's checks are over (see `support::sweep`), it is let go
/// and unwinds with a [`Killed`] payload, caught where the victim was
/// spawned; on that way out it is a ghost, whose shim operations touch
/// nothing, so the destructors that run (guards, handles: loom insists that
/// every thread ends and every loom object is freed) publish nothing. To
/// the survivors that is SIGKILL: after the death point, no store, no wake,
/// no futex call of the victim ever happens, and what it held stays held.
fn kill(me: u32) -> ! {
    let grave = DOOM
        .with(|d| {
            d.victim.set(0);
            d.grave.borrow().clone()
        })
        .expect("a victim has a grave");
    // The autopsy only looks (it is the victim's thread, but no longer
    // counted, and what it runs is the model's, not the crate's).
    if let Some(a) = DOOM.with(|d| d.autopsy.borrow_mut().take()) {
        let found = a();
        DOOM.with(|d| d.finding.set(Some(found)));
    }
    // Only now does liveness say "gone": until then no survivor can act on
    // the death, so the autopsy saw the state the victim left.
    grave.exit.store(1, Ordering::Release);
    DEAD.with(|d| d.borrow_mut().push(me));
    DOOM.with(|d| d.dead_victim.set(me));
    grave.set(Fate::Dead);
    grave.wait_past(Fate::Dead);
    drop(grave);
    DOOM.with(|d| d.ghost.set(me));
    std::panic::resume_unwind(Box::new(Killed))
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
        if step() {
            return true;
        }
        if until.is_some() && timeouts_fire() {
            loom::thread::yield_now();
            return false;
        }
        let mut guard = self.lock.lock().unwrap();
        if self.word.0.load(Ordering::SeqCst) != expected {
            return true;
        }
        *guard += 1;
        let mut guard = self.cv.wait(guard).unwrap();
        *guard -= 1;
        true
    }

    pub(crate) fn wake_one(&self) -> usize {
        if step() {
            return 0;
        }
        let g = self.lock.lock().unwrap();
        self.cv.notify_one();
        let n = (*g).min(1);
        drop(g);
        wake_any_sleepers();
        n
    }

    pub(crate) fn wake_all(&self) {
        if step() {
            return;
        }
        let g = self.lock.lock().unwrap();
        self.cv.notify_all();
        drop(g);
        wake_any_sleepers();
    }
}

/// The multi-word sleep of [`wait_any`]: one mutex and condition variable
/// for the whole execution, and the number of threads asleep on it.
struct AnySleep {
    lock: loom::sync::Mutex<()>,
    cv: loom::sync::Condvar,
}

struct AnySlot(RefCell<Option<loom::sync::Arc<AnySleep>>>);

impl Drop for AnySlot {
    fn drop(&mut self) {
        // Left only by a failed model (see `Doom`'s drop).
        std::mem::forget(self.0.take());
    }
}

std::thread_local! {
    /// This execution's [`AnySleep`] (made by `support::reset`, dropped at
    /// the end of the model's main thread).
    static ANY: AnySlot = const { AnySlot(RefCell::new(None)) };
    /// Threads asleep in [`wait_any`]. A plain cell: it is read and written
    /// only between loom operations, so each access happens atomically with
    /// the loom operation before it (a sleeper counts itself right after it
    /// checked its words, under the mutex, before it waits).
    static ANY_SLEEPERS: Cell<usize> = const { Cell::new(0) };
}

/// A futex wake also wakes every `wait_any` sleeper (which then re-checks
/// its words): more than the kernel does for `wake_one` (it wakes one
/// waiter of the word, which may be a `futex_waitv` sleeper), never less.
fn wake_any_sleepers() {
    if ANY_SLEEPERS.with(Cell::get) == 0 {
        return;
    }
    if let Some(any) = ANY.with(|a| a.0.borrow().clone()) {
        let _g = any.lock.lock().unwrap();
        any.cv.notify_all();
    }
}

/// Whether the calling model thread's timed waits return at once.
fn timeouts_fire() -> bool {
    TIMEOUTS_FIRE.with(Cell::get) && {
        let me = TID.with(|t| *t);
        !BLOCKING.with(|b| b.borrow().contains(&me))
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

/// A model has no fork: one generation.
pub(crate) fn fork_gen() -> u32 {
    0
}

/// A model thread's liveness: dead once it called [`support::die`] (or
/// never existed), "unknown" when the model said so with
/// [`support::set_unknown`], else running since tick 1.
pub(crate) fn probe_thread(tid: u32) -> crate::sys::Probe {
    use crate::sys::Probe;
    if step() {
        return Probe::Unknown;
    }
    let dead = DEAD.with(|d| d.borrow().contains(&tid));
    if dead {
        // The death happens before whatever the prober does next.
        let grave = DOOM.with(|d| {
            (d.dead_victim.get() == tid)
                .then(|| d.grave.borrow().clone())
                .flatten()
        });
        if let Some(g) = grave {
            g.exit.fetch_add(0, Ordering::Acquire);
        }
    }
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
            reset();
            f();
            finish();
        });
    }

    /// [`model`] with the preemption bound capped at `cap` (below the
    /// `LOOM_MAX_PREEMPTIONS` that ci/loom.sh sets), for a model too large
    /// to explore at the full bound in every CI run.
    /// `SHMKIT_LOOM_FULL=1` lifts the cap: the long run that is reported,
    /// not run in CI.
    pub fn model_capped<F: Fn() + Sync + Send + 'static>(cap: usize, timeouts_fire: bool, f: F) {
        TIMEOUTS_FIRE.with(|t| t.set(timeouts_fire));
        let mut b = loom::model::Builder::new();
        if std::env::var_os("SHMKIT_LOOM_FULL").is_none() {
            b.preemption_bound = Some(b.preemption_bound.map_or(cap, |n| n.min(cap)));
        }
        b.check(move || {
            reset();
            f();
            finish();
        });
    }

    /// The end of an execution's main thread: drops the execution's loom
    /// objects that the shim keeps (loom checks that none leaks).
    fn finish() {
        let any = ANY.with(|a| a.0.borrow_mut().take());
        drop(any);
    }

    /// Clears the per-execution tables (thread ids, liveness, the victim).
    fn reset() {
        NEXT_TID.with(|n| n.set(1));
        DEAD.with(|d| d.borrow_mut().clear());
        UNKNOWN.with(|u| u.borrow_mut().clear());
        BLOCKING.with(|b| b.borrow_mut().clear());
        ANY_SLEEPERS.with(|n| n.set(0));
        ANY.with(|a| {
            // One left by a failed execution is that execution's.
            std::mem::forget(a.0.borrow_mut().replace(loom::sync::Arc::new(AnySleep {
                lock: loom::sync::Mutex::new(()),
                cv: loom::sync::Condvar::new(),
            })));
        });
        ACKS.with(|a| a.borrow_mut().clear());
        DOOM.with(|d| {
            d.victim.set(0);
            d.dead_victim.set(0);
            d.armed.set(false);
            d.steps.set(0);
            d.ghost.set(0);
            // A grave left by a failed execution belongs to a dead
            // execution: forget it, dropping it would call into loom.
            std::mem::forget(d.grave.borrow_mut().take());
            std::mem::forget(d.autopsy.borrow_mut().take());
            d.finding.set(None);
        });
    }

    std::thread_local! {
        static ACKS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    }

    /// Records that operation `tag` was acknowledged (returned `Ok`) to its
    /// caller. Outside loom's view: recording adds no interleavings and is
    /// no step, so a victim that records right after an operation returned
    /// cannot die between the two.
    pub fn ack(tag: u64) {
        ACKS.with(|a| a.borrow_mut().push(tag));
    }

    /// Every tag passed to [`ack`] in this execution, in order.
    pub fn acks() -> Vec<u64> {
        ACKS.with(|a| a.borrow().clone())
    }

    /// How a death sweep runs its models.
    #[derive(Debug, Clone, Copy)]
    pub struct Sweep {
        /// As for [`model`]: timed waits return at once as timed out.
        pub timeouts_fire: bool,
        /// Every liveness check of a live thread answers "unknown" (a dead
        /// thread still answers "gone").
        pub unknown: bool,
        /// Loom's preemption bound (`None`: `LOOM_MAX_PREEMPTIONS`).
        pub preemptions: Option<usize>,
        /// Loom's branch limit (`None`: loom's default).
        pub max_branches: Option<usize>,
        /// Deaths at steps `1..=skip` are not run (another sweep covers
        /// them, e.g. a spin that a cheaper model already sweeps).
        pub skip: usize,
    }

    impl Default for Sweep {
        fn default() -> Sweep {
            Sweep {
                timeouts_fire: true,
                unknown: false,
                preemptions: None,
                max_branches: None,
                skip: 0,
            }
        }
    }

    /// What a sweep did: the victim's most steps when nobody died (so the
    /// models run, one per `k` in `1..=steps`, plus the counting run).
    #[derive(Debug, Clone, Copy)]
    pub struct Swept {
        pub steps: usize,
    }

    /// Death at every step. Runs `f` as a loom model first with nobody
    /// dying, counting the shim operations of the thread `f` starts with
    /// [`victim`] (the most over every execution: retries and spins vary);
    /// then once for every `k` in `1..=steps`, the victim dying just before
    /// its k-th operation whenever it gets that far (in an execution where
    /// it takes fewer steps it finishes). `f` checks what must hold whether
    /// or not the victim died: survivors finish (else loom reports a
    /// deadlock or its branch limit), nothing acknowledged lost, and so on.
    /// Returns the step count; prints it with the time taken.
    pub fn sweep<F: Fn() + Sync + Send + 'static>(label: &str, opts: Sweep, f: F) -> Swept {
        let start = std::time::Instant::now();
        let f = std::sync::Arc::new(f);
        let run = |k: usize| {
            DOOM.with(|d| {
                d.k.set(k);
                d.max_steps.set(0);
            });
            TIMEOUTS_FIRE.with(|t| t.set(opts.timeouts_fire));
            let mut b = loom::model::Builder::new();
            if let Some(p) = opts.preemptions {
                b.preemption_bound = Some(p);
            }
            if let Some(m) = opts.max_branches {
                b.max_branches = m;
            }
            let f = f.clone();
            b.check(move || {
                reset();
                // The grave exists before any model thread does, so that
                // every thread's probes are ordered after its creation.
                DOOM.with(|d| *d.grave.borrow_mut() = Some(Grave::new()));
                if opts.unknown {
                    set_unknown(u32::MAX);
                }
                f();
                settle();
                finish();
            });
            DOOM.with(|d| d.max_steps.get())
        };
        /// Names the failing run when a model panics.
        struct Blame<'a>(&'a str, usize);
        impl Drop for Blame<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let k = self.1;
                    eprintln!(
                        "death sweep {}: failed with the victim dying at step {k} (0: nobody dies)",
                        self.0
                    );
                }
            }
        }
        let trace = std::env::var_os("LOOM_DEATH_TRACE").is_some();
        let run = |k: usize| {
            let _blame = Blame(label, k);
            let t = std::time::Instant::now();
            let n = run(k);
            if trace {
                eprintln!(
                    "death sweep {label}: k={k} took {:.2}s",
                    t.elapsed().as_secs_f64()
                );
            }
            n
        };
        let steps = run(0);
        assert!(
            steps > 0,
            "{label}: the model started no victim, or it took no step"
        );
        for k in opts.skip + 1..=steps {
            run(k);
        }
        DOOM.with(|d| d.k.set(0));
        eprintln!(
            "death sweep {label}: {steps} steps, {} models, {:.1}s",
            steps.saturating_sub(opts.skip) + 1,
            start.elapsed().as_secs_f64()
        );
        Swept { steps }
    }

    /// The end of a sweep's execution, on the main thread after its
    /// checks: waits until the victim finished or died, then lets a dead
    /// one go (it unwinds as a ghost; see `kill`).
    fn settle() {
        let grave = DOOM.with(|d| d.grave.borrow_mut().take().filter(|_| d.armed.get()));
        if let Some(g) = grave {
            if g.wait_past(Fate::Running) == Fate::Dead {
                g.set(Fate::Released);
            }
        }
    }

    /// The thread a sweep kills: runs `f` on a new model thread that, in a
    /// sweep's dying runs, stops forever before its k-th shim operation
    /// (see [`sweep`]). One victim per execution.
    pub fn victim<R, F>(f: F) -> Victim<R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let grave = DOOM.with(|d| {
            let mut g = d.grave.borrow_mut();
            assert!(!d.armed.replace(true), "one victim per execution");
            g.get_or_insert_with(Grave::new).clone()
        });
        let out = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (g, o) = (grave.clone(), out.clone());
        let handle = loom::thread::spawn(move || {
            let me = TID.with(|t| *t);
            DOOM.with(|d| {
                d.victim.set(me);
                d.steps.set(0);
            });
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(r) => {
                    let autopsy = DOOM.with(|d| {
                        d.victim.set(0);
                        d.max_steps.set(d.max_steps.get().max(d.steps.get()));
                        d.autopsy.borrow_mut().take()
                    });
                    drop(autopsy);
                    *o.lock().unwrap() = Some(r);
                    g.set(Fate::Done);
                }
                Err(p) if p.is::<Killed>() => DOOM.with(|d| d.ghost.set(0)),
                Err(p) => std::panic::resume_unwind(p),
            }
        });
        Victim {
            grave,
            out,
            _handle: handle,
        }
    }

    /// Runs `f` on the victim without counting its steps: it cannot die
    /// in there (setup that a real process would have done before the
    /// operation under test, e.g. attaching its end of a pipe).
    pub fn spare<R>(f: impl FnOnce() -> R) -> R {
        let armed = DOOM.with(|d| d.victim.replace(0));
        let r = f();
        DOOM.with(|d| d.victim.set(armed));
        r
    }

    /// Called by the victim: if it dies from now on, `look` runs at the
    /// instant of death (on the victim's thread, which takes no further
    /// step), and [`finding`] returns what it found. For checks that need
    /// the state the victim left, e.g. "the lock word still names it".
    pub fn at_death<F: FnOnce() -> u64 + 'static>(look: F) {
        DOOM.with(|d| *d.autopsy.borrow_mut() = Some(Box::new(look)));
    }

    /// What the [`at_death`] look found, once the victim died (else
    /// `None`). Read it after [`Victim::join`].
    pub fn finding() -> Option<u64> {
        DOOM.with(|d| d.finding.get())
    }

    /// The handle of a [`victim`].
    pub struct Victim<R> {
        grave: loom::sync::Arc<Grave>,
        out: std::sync::Arc<std::sync::Mutex<Option<R>>>,
        _handle: loom::thread::JoinHandle<()>,
    }

    impl<R> Victim<R> {
        /// Waits until the victim finished (its result) or died (`None`).
        /// Like waitpid: what the victim did before it stopped happens
        /// before this returns.
        pub fn join(self) -> Option<R> {
            match self.grave.wait_past(Fate::Running) {
                Fate::Done => self.out.lock().unwrap().take(),
                _ => None,
            }
        }
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

    /// Makes the calling model thread's timed waits block until woken even
    /// in a model whose timeouts fire (its liveness interval never lapses),
    /// for the rest of this execution: a thread that really sleeps, e.g.
    /// for a fair unlock to hand the lock to, among threads that poll.
    pub fn timed_waits_block() {
        let me = TID.with(|t| *t);
        BLOCKING.with(|b| b.borrow_mut().push(me));
    }

    /// The calling model thread's id, for [`set_unknown`].
    pub fn current_tid() -> u32 {
        TID.with(|t| *t)
    }
}

/// The most words [`wait_any`] sleeps on at once.
pub(crate) const WAIT_ANY_MAX: usize = 128;

/// `wait_any` under loom: a real multi-word sleep. Under one execution-wide
/// mutex it checks every word and, if none changed, sleeps on one
/// condition variable that every futex wake notifies (see
/// [`wake_any_sleepers`]): as `futex_waitv`, a change followed by a wake
/// either is seen by the check or wakes the sleep, so a lost wake-up is a
/// loom deadlock. A timed wait returns at once as timed out when timeouts
/// fire.
pub(crate) fn wait_any(words: &[(&Futex, u32)], until: Option<Duration>) -> bool {
    if step() {
        return true;
    }
    // The kernel compares each word's current value. A loom load may read
    // an older store (nothing orders the waker's change before it), and a
    // waker that found nobody asleep does not notify: so read with an RMW,
    // which loom always gives the latest value (it writes back the same
    // value and synchronizes nothing).
    let changed = || {
        words
            .iter()
            .any(|(f, v)| f.word.0.fetch_add(0, Ordering::Relaxed) != *v)
    };
    let any = ANY.with(|a| a.0.borrow().clone());
    let Some(any) = any.filter(|_| !(until.is_some() && timeouts_fire())) else {
        if changed() {
            return true;
        }
        loom::thread::yield_now();
        return !(until.is_some() && timeouts_fire());
    };
    let g = any.lock.lock().unwrap();
    if changed() {
        return true;
    }
    ANY_SLEEPERS.with(|n| n.set(n.get() + 1));
    let g = any.cv.wait(g).unwrap();
    ANY_SLEEPERS.with(|n| n.set(n.get() - 1));
    drop(g);
    true
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

/// As the real `Watch`, it ends the watch when dropped (here: nothing to
/// end), so that callers' `drop(watch)` means the same in both builds.
impl Drop for Watch {
    fn drop(&mut self) {}
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
