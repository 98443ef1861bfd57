//! `RawBarrier`: a reusable barrier for a fixed number of parties in any
//! processes (Python's `multiprocessing.Barrier`), which a party that dies
//! while the others wait breaks instead of hanging them (cpython#123899).
//!
//! # Layout
//!
//! `[state: u64][parties: u32][notify: u32][slot; parties]`, each slot
//! `[key: u64][stamp: u64]`: 16 + 16 × parties bytes, 8-aligned.
//!
//! # The state word
//!
//! | bits   | name       | meaning                                                        |
//! |--------|------------|----------------------------------------------------------------|
//! | 0..22  | `COUNT`    | parties arrived in this generation; while `TRIPPING`, the tripper's pid |
//! | 22     | `TRIPPING` | the last party arrived and runs the action; nobody is released yet |
//! | 23     | `BROKEN`   | broken (abort, timeout, a dead party, a failed action)         |
//! | 24..32 | `HIST`     | how the last 8 generations ended: bit `d` = generation `gen-1-d` tripped (1) or was reset (0) |
//! | 32..64 | `GEN`      | generation, +1 on every trip and every reset                   |
//!
//! | state                      | meaning                          | who moves it on                                 |
//! |----------------------------|----------------------------------|-------------------------------------------------|
//! | `gen g, count c < parties` | filling: `c` parties wait        | an arrival (`c+1`, or the trip), a break, reset |
//! | `gen g, TRIPPING, pid p`   | `p` runs the action              | `p` (trip, or break if it panics), a break, reset |
//! | `gen g, BROKEN`            | broken: every wait fails         | reset only                                      |
//!
//! # Algorithm
//!
//! *Arrive* (one CAS from the state read): `count c → c+1` returns index
//! `c`; the arrival that makes `c+1 == parties` trips instead, in the same
//! CAS: `gen+1`, count 0, `HIST` shifted with a 1. A last arriver that has
//! an action moves to `TRIPPING` with its pid, runs the action, and then
//! trips with a CAS from exactly that `TRIPPING` state (or breaks it, if
//! the action panicked). So exactly one party per generation gets each
//! index in `0..parties`, and exactly one gets 0. A party that finds the
//! barrier `TRIPPING` (more processes than parties) waits for the next
//! generation, as Python's `_enter` does.
//!
//! *Wait*: a waiter of generation `g` returns when `GEN` moved: released
//! (`Ok(index)`) if `HIST` says `g` tripped, `BrokenBarrier` if it was
//! reset (or if more than 8 generations passed while it slept, which only
//! extra processes or many resets can cause). It sleeps on `notify` (a
//! [`Notify`]: no syscall for a trip nobody sleeps through).
//!
//! *Who waits*: right after its arrival CAS a party records its process
//! stamp in slot `c` of its generation's bank, tagged with the generation
//! (`key = VALID | g`): a CAS from the slot's value it read, since it owns
//! slot `c` in `g` by its arrival. There are two banks of `parties` slots,
//! used by even and odd generations, so that a party that writes its slot
//! late (stalled after its arrival while its generation tripped) writes
//! where the next generation does not look (review finding: with one bank,
//! such a late write could hide a live party of the next generation from
//! the death watch, or name the released party in it, whose normal exit
//! then broke the barrier). Then it notifies, so that sleepers look again. A sleeper
//! registers a death watch (`sync::watch`) on its futex word for every
//! other stamp in slots `0..count` tagged `g` (and, while `TRIPPING`, for
//! the tripper's pid from the state word); when one of them is dead (only
//! "no such task"; unknown is alive) it breaks the barrier with a CAS from
//! exactly the state it judged, so a verdict about a generation that has
//! moved on fails its CAS and breaks nothing. A watch that cannot be set up
//! (unknown start time, no pidfd) makes the sleeper look every 20 ms.
//!
//! *Timeout* breaks the barrier (CAS from the state seen), as in Python;
//! every party then gets `BrokenBarrier`, the one that timed out too.
//! *Abort* sets `BROKEN`; *reset* starts generation `g+1` empty (a `HIST`
//! 0: the parties waiting in `g` get `BrokenBarrier`).
//!
//! # Crash cases
//!
//! | killed …                                   | left behind                         | survivors |
//! |--------------------------------------------|-------------------------------------|-----------|
//! | before its arrival CAS                     | nothing                             | wait for a party that never comes (as for any party that dies outside `wait`): a timeout |
//! | between arrival CAS and its slot write     | counted, unnamed                    | the barrier trips when the others arrive (the dead party "passed") |
//! | after its slot write, waiting              | counted, named                      | sleepers watching it are woken; sleepers that arrived earlier look at the latest after its notify (or within 1 s if it died before notifying): they break it |
//! | after its slot write, with nobody else waiting | counted, named                  | a later party that sleeps judges it and breaks the barrier; the one that arrives last trips it instead (the dead party's arrival counts, as Python's would) |
//! | last arriver, between `TRIPPING` and trip  | `TRIPPING` with its pid             | the watch (or the 20 ms look) on that pid: they break it |
//! | last arriver, after the trip CAS           | the trip, maybe not notified        | released at their next look (≤ 1 s) or by its death notice |
//! | in `abort`/`reset`/a break, after the CAS  | the new state, maybe not notified   | see it at their next look (≤ 1 s) |
//!
//! A slot is believed only with its generation's tag, so a stale slot of an
//! earlier generation (a party that left long ago, perhaps dead) is never
//! judged for this one. The remaining hazard needs more processes than
//! parties (or resets): a party of generation `g` stalled between its
//! arrival CAS and its slot write for *two* whole generations writes into
//! the bank of `g + 2`, where it can hide a party or be judged as one.
//! With exactly `parties` processes and no reset, `g + 1` cannot trip
//! without the stalled party, so this cannot happen. Tags are 32-bit
//! generations; a wrap needs 2^32 trips or resets within that same window.
//!
//! # Hostile bytes
//!
//! The state word is read once per step and checked (`COUNT` below
//! `parties`, a tripper pid that is not 0); an impossible one is
//! `Error::Corrupted`. `parties` is read once at attach and checked against
//! the region. Every CAS loop has a step budget. A scribbled slot can at
//! worst break the barrier (a "dead" stamp) or hide a party from the watch.

use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::notify::Notify;

mod party;
use crate::error::{Error, Origin, Result};
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Liveness, Ordering, Target, TaskStamp};
#[cfg(loom)]
pub use party::model;

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
const ORIGIN: Origin = Origin::new("RawBarrier", "");

const COUNT_MASK: u64 = (1 << 22) - 1;
const TRIPPING: u64 = 1 << 22;
const BROKEN: u64 = 1 << 23;
const HIST_SHIFT: u32 = 24;
const HIST_BITS: u32 = 8;
const HIST_MASK: u64 = ((1 << HIST_BITS) - 1) << HIST_SHIFT;
const GEN_SHIFT: u32 = 32;
/// A slot key: `VALID | gen`.
const VALID: u64 = 1 << 32;

/// The most parties a barrier can have.
///
/// ```
/// use shmkit::raw::{RawBarrier, MAX_PARTIES};
/// assert!(RawBarrier::required_size(MAX_PARTIES).is_ok());
/// assert!(RawBarrier::required_size(MAX_PARTIES + 1).is_err());
/// ```
pub const MAX_PARTIES: u32 = 65_535;

/// CAS failures or wake-ups without a sleep one call tolerates before it
/// calls the state corrupted (a peer rewriting it endlessly).
const BUDGET: u32 = 1 << 20;

fn gen(s: u64) -> u32 {
    (s >> GEN_SHIFT) as u32
}

fn hist(s: u64) -> u64 {
    (s & HIST_MASK) >> HIST_SHIFT
}

fn count(s: u64) -> u32 {
    (s & COUNT_MASK) as u32
}

/// Generation `gen(s)+1`, empty, with `tripped` shifted into the history.
fn next_gen(s: u64, tripped: bool) -> u64 {
    let h = ((hist(s) << 1) | u64::from(tripped)) & ((1 << HIST_BITS) - 1);
    (u64::from(gen(s).wrapping_add(1)) << GEN_SHIFT) | (h << HIST_SHIFT)
}

/// The fixed part at the start of the region.
#[repr(C)]
pub(crate) struct BarrierCtl {
    state: AtomicU64,
    parties: AtomicU32,
    notify: Notify,
}

impl BarrierCtl {
    fn new(parties: u32) -> BarrierCtl {
        BarrierCtl {
            state: AtomicU64::new(0),
            parties: AtomicU32::new(parties),
            notify: Notify::new(),
        }
    }
}

/// One waiting party: its process stamp and the generation it waits in.
#[repr(C)]
pub(crate) struct Slot {
    key: AtomicU64,
    stamp: AtomicU64,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            key: AtomicU64::new(0),
            stamp: AtomicU64::new(0),
        }
    }
}

const CTL_LEN: usize = std::mem::size_of::<BarrierCtl>();
const SLOT_LEN: usize = std::mem::size_of::<Slot>();
#[cfg(not(loom))]
const _: () = assert!(CTL_LEN == 16 && SLOT_LEN == 16);

/// A barrier for `parties` parties in any processes; see the module
/// documentation. A handle over the region (`Copy`).
///
/// ```
/// let mut buf = vec![0u64; shmkit::raw::RawBarrier::required_size(1)? / 8];
/// // SAFETY: `buf` outlives `b` and is used only through it.
/// let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), buf.len() * 8, 1)? };
/// assert_eq!(b.wait()?, 0); // one party: never blocks
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct RawBarrier<'a> {
    ctl: &'a BarrierCtl,
    slots: &'a [Slot],
    parties: u32,
}

impl fmt::Debug for RawBarrier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawBarrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

fn check_parties(parties: u32) -> Result<()> {
    if parties == 0 || parties > MAX_PARTIES {
        return Err(Error::InvalidArgument(format!(
            "a barrier needs 1..={MAX_PARTIES} parties (parties must be > 0), not {parties}"
        )));
    }
    Ok(())
}

/// What a waiter learnt from one look at the state.
enum Look {
    /// Keep waiting.
    Wait,
    /// Done: released with this result.
    Done(Result<usize>),
}

impl<'a> RawBarrier<'a> {
    /// The bytes a barrier of `parties` parties needs; align the region to 8.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 parties or more than [`MAX_PARTIES`].
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawBarrier::required_size(4)?, 16 + 2 * 4 * 16);
    /// assert!(shmkit::raw::RawBarrier::required_size(0).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn required_size(parties: u32) -> Result<usize> {
        check_parties(parties)?;
        Ok(CTL_LEN + SLOT_LEN * 2 * parties as usize)
    }

    /// Writes an empty barrier for `parties` parties at `ptr` and returns it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and
    /// those bytes must be accessed only through `RawBarrier`s (in any
    /// process) for `'a`. Nobody may use the barrier while it is initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad party count, or a region that is
    /// misaligned or smaller than [`required_size`](Self::required_size).
    ///
    /// ```
    /// let mut buf = vec![0u64; shmkit::raw::RawBarrier::required_size(3)? / 8];
    /// // SAFETY: `buf` outlives `b` and is used only through it.
    /// let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), buf.len() * 8, 3)? };
    /// assert_eq!(b.parties(), 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in(ptr: *mut u8, len: usize, parties: u32) -> Result<RawBarrier<'a>> {
        let need = Self::required_size(parties)?;
        super::check_region::<BarrierCtl>(ptr, len, "RawBarrier")?;
        if len < need {
            return Err(Error::InvalidArgument(format!(
                "RawBarrier: region of {len} bytes is smaller than the {need} that {parties} parties need"
            )));
        }
        // SAFETY: aligned and large enough for the control block and
        // `parties` slots (checked), and exclusively ours while we
        // initialise it (the caller's contract).
        unsafe {
            ptr.cast::<BarrierCtl>().write(BarrierCtl::new(parties));
            let slots = ptr.add(CTL_LEN).cast::<Slot>();
            for i in 0..2 * parties as usize {
                slots.add(i).write(Slot::new());
            }
            Self::attach(ptr, len)
        }
    }

    /// Uses the barrier initialised at `ptr`. `parties` is read once and
    /// checked against `len`.
    ///
    /// # Safety
    /// As for [`init_in`](Self::init_in), except that the bytes are already
    /// initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a misaligned or short region,
    /// [`Error::Corrupted`] for a party count that is 0, too large, or more
    /// than the region holds.
    ///
    /// ```
    /// let mut buf = vec![0u64; shmkit::raw::RawBarrier::required_size(2)? / 8];
    /// // SAFETY: `buf` outlives both handles and is used only through them.
    /// unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), buf.len() * 8, 2)? };
    /// // SAFETY: as above; initialised just now.
    /// let b = unsafe { shmkit::raw::RawBarrier::attach(buf.as_mut_ptr().cast(), buf.len() * 8)? };
    /// assert_eq!(b.parties(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<RawBarrier<'a>> {
        super::check_region::<BarrierCtl>(ptr, len, "RawBarrier")?;
        // SAFETY: aligned and large enough for the control block (checked);
        // it is atomics only, valid for any bit pattern.
        let ctl = unsafe { &*ptr.cast::<BarrierCtl>() };
        let parties = ctl.parties.load(Ordering::Relaxed);
        let need = Self::required_size(parties)
            .map_err(|_| Error::corrupted("", format!("barrier of {parties} parties")))?;
        if len < need {
            return Err(Error::corrupted(
                "",
                format!("barrier of {parties} parties needs {need} bytes, the region has {len}"),
            ));
        }
        // SAFETY: `parties` slots fit in the region (checked against the
        // count read once, which we keep); slots are atomics only.
        let slots = unsafe {
            std::slice::from_raw_parts(ptr.add(CTL_LEN).cast::<Slot>(), 2 * parties as usize)
        };
        Ok(RawBarrier {
            ctl,
            slots,
            parties,
        })
    }

    /// Builds a handle over parts (the loom model's heap barrier).
    #[cfg(loom)]
    pub(crate) fn from_parts(ctl: &'a BarrierCtl, slots: &'a [Slot]) -> RawBarrier<'a> {
        RawBarrier {
            ctl,
            slots,
            parties: (slots.len() / 2) as u32,
        }
    }

    /// The number of parties.
    ///
    /// ```
    /// # let mut buf = vec![0u64; 18];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 144, 4)? };
    /// assert_eq!(b.parties(), 4);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// How many parties wait now (0 while broken or tripping).
    ///
    /// ```
    /// # let mut buf = vec![0u64; 18];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 144, 4)? };
    /// assert_eq!(b.n_waiting(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        let s = self.ctl.state.load(Ordering::Acquire);
        if s & (BROKEN | TRIPPING) != 0 {
            0
        } else {
            count(s).min(self.parties)
        }
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// # let mut buf = vec![0u64; 18];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 144, 4)? };
    /// b.abort();
    /// assert!(b.broken());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn broken(&self) -> bool {
        self.ctl.state.load(Ordering::Acquire) & BROKEN != 0
    }

    /// Breaks the barrier: every party waiting now, and every `wait` until
    /// a [`reset`](Self::reset), gets [`Error::BrokenBarrier`].
    ///
    /// ```
    /// # let mut buf = vec![0u64; 18];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 144, 4)? };
    /// b.abort();
    /// assert!(matches!(b.wait(), Err(shmkit::Error::BrokenBarrier { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn abort(&self) {
        let mut s = self.ctl.state.load(Ordering::Relaxed);
        for _ in 0..BUDGET {
            if s & BROKEN != 0 {
                break;
            }
            match self.ctl.state.compare_exchange(
                s,
                s | BROKEN,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        self.ctl.notify.notify();
    }

    /// Returns the barrier to empty and not broken; parties waiting now get
    /// [`Error::BrokenBarrier`].
    ///
    /// ```
    /// # let mut buf = vec![0u64; 6];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 48, 1)? };
    /// b.abort();
    /// b.reset();
    /// assert!(!b.broken());
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reset(&self) {
        let mut s = self.ctl.state.load(Ordering::Relaxed);
        for _ in 0..BUDGET {
            match self.ctl.state.compare_exchange(
                s,
                next_gen(s, false),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        self.ctl.notify.notify();
    }

    /// Waits until all parties have called `wait`; returns this party's
    /// arrival index in `0..parties` (exactly one party per trip gets 0).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken (abort,
    /// reset, a timeout, a waiting party that died) before it trips;
    /// [`Error::Corrupted`] for an impossible state.
    ///
    /// ```
    /// # let mut buf = vec![0u64; 6];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 48, 1)? };
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait(&self) -> Result<usize> {
        self.wait_until(Deadline::NEVER, None)
    }

    /// [`wait`](Self::wait) for at most `timeout`; a timeout breaks the
    /// barrier (Python's semantics) and is reported as
    /// [`Error::BrokenBarrier`], to every party.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    /// [`Error::Timeout`](crate::Error::Timeout) (and nothing breaks) if the
    /// timeout passed while this call waited for the previous trip's action
    /// to finish: it was not a party of that trip yet.
    ///
    /// ```
    /// # let mut buf = vec![0u64; 10];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 80, 2)? };
    /// let r = b.wait_timeout(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::BrokenBarrier { .. })));
    /// assert!(b.broken());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_until(Deadline::after(timeout), None)
    }

    /// [`wait`](Self::wait) with an action: if this party arrives last,
    /// it runs `action` once before any party is released. If `action`
    /// panics the barrier breaks (the others get
    /// [`Error::BrokenBarrier`]) and the panic continues in this party.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// # let mut buf = vec![0u64; 6];
    /// # // SAFETY: `buf` outlives `b` and is used only through it.
    /// # let b = unsafe { shmkit::raw::RawBarrier::init_in(buf.as_mut_ptr().cast(), 48, 1)? };
    /// let ran = std::cell::Cell::new(0);
    /// b.wait_with(None, &|| ran.set(ran.get() + 1))?;
    /// assert_eq!(ran.get(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_with(&self, timeout: Option<Duration>, action: &dyn Fn()) -> Result<usize> {
        let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
        self.wait_until(deadline, Some(action))
    }

    pub(crate) fn wait_until(
        &self,
        deadline: Deadline,
        action: Option<&dyn Fn()>,
    ) -> Result<usize> {
        let me = sync::current_process();
        let mut s = self.ctl.state.load(Ordering::Acquire);
        let mut budget = BUDGET;
        loop {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| Error::corrupted("", "barrier state keeps changing"))?;
            if s & BROKEN != 0 {
                return Err(Error::BrokenBarrier { origin: ORIGIN });
            }
            if s & TRIPPING != 0 {
                // Full: the next generation starts once the tripper is done.
                self.check(s)?;
                match self.sleep(s, gen(s), None, deadline, me)? {
                    Look::Done(r) => return r,
                    Look::Wait => {
                        s = self.ctl.state.load(Ordering::Acquire);
                        continue;
                    }
                }
            }
            let c = self.check(s)?;
            let g = gen(s);
            if c + 1 == self.parties {
                let Some(action) = action else {
                    // SYNC POINT: AcqRel: the trip publishes every party's
                    // work before it to the released ones (they Acquire).
                    match self.ctl.state.compare_exchange(
                        s,
                        next_gen(s, true),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            self.ctl.notify.notify();
                            return Ok(c as usize);
                        }
                        Err(cur) => {
                            s = cur;
                            continue;
                        }
                    }
                };
                let tripping = (s & !COUNT_MASK) | TRIPPING | u64::from(me.tid());
                if let Err(cur) = self.ctl.state.compare_exchange(
                    s,
                    tripping,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    s = cur;
                    continue;
                }
                self.record(c, g, me);
                self.ctl.notify.notify();
                return self.run_action(tripping, c, action);
            }
            // SYNC POINT: AcqRel, as for the trip.
            match self
                .ctl
                .state
                .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.record(c, g, me);
                    self.ctl.notify.notify();
                    return self.wait_trip(g, c as usize, deadline, me);
                }
                Err(cur) => s = cur,
            }
        }
    }

    /// The count of a filling state, or the tripper's pid of a `TRIPPING`
    /// one, checked.
    fn check(&self, s: u64) -> Result<u32> {
        let c = count(s);
        if s & TRIPPING != 0 {
            if c == 0 {
                return Err(Error::corrupted("", "barrier tripping with no tripper"));
            }
        } else if c >= self.parties {
            return Err(Error::corrupted(
                "",
                format!("barrier of {} parties has {c} waiting", self.parties),
            ));
        }
        Ok(c)
    }

    /// The last arriver with an action: runs it in `TRIPPING`, then trips
    /// (or breaks) with a CAS from exactly that state.
    fn run_action(&self, tripping: u64, index: u32, action: &dyn Fn()) -> Result<usize> {
        let ran = catch_unwind(AssertUnwindSafe(action));
        let next = if ran.is_ok() {
            next_gen(tripping, true)
        } else {
            tripping | BROKEN
        };
        let moved =
            self.ctl
                .state
                .compare_exchange(tripping, next, Ordering::AcqRel, Ordering::Acquire);
        self.ctl.notify.notify();
        match (ran, moved) {
            (Err(p), _) => resume_unwind(p),
            (Ok(()), Ok(_)) => Ok(index as usize),
            // Broken or reset while the action ran.
            (Ok(()), Err(_)) => Err(Error::BrokenBarrier { origin: ORIGIN }),
        }
    }

    /// A party that arrived in generation `g` with `index` waits for the trip.
    fn wait_trip(&self, g: u32, index: usize, deadline: Deadline, me: TaskStamp) -> Result<usize> {
        let mut s = self.ctl.state.load(Ordering::Acquire);
        let mut budget = BUDGET;
        loop {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| Error::corrupted("", "barrier state keeps changing"))?;
            match self.sleep(s, g, Some(index), deadline, me)? {
                Look::Done(r) => return r,
                Look::Wait => s = self.ctl.state.load(Ordering::Acquire),
            }
        }
    }

    /// What the state `s` means for a party that arrived in generation `g`
    /// with `index` (`None`: one that waits for the tripper to finish, which
    /// the caller handles when the generation moves).
    fn outcome(&self, s: u64, g: u32, index: Option<usize>) -> Option<Result<usize>> {
        if gen(s) != g {
            let index = index?;
            let d = gen(s).wrapping_sub(g).wrapping_sub(1);
            let tripped = d < HIST_BITS && (hist(s) >> d) & 1 == 1;
            return Some(if tripped {
                Ok(index)
            } else {
                Err(Error::BrokenBarrier { origin: ORIGIN })
            });
        }
        if s & BROKEN != 0 {
            return Some(Err(Error::BrokenBarrier { origin: ORIGIN }));
        }
        None
    }

    /// One round of waiting from state `s` (of generation `g`): decides,
    /// or judges the waiting parties, or sleeps once. `Look::Wait`: look at
    /// the state again.
    fn sleep(
        &self,
        s: u64,
        g: u32,
        index: Option<usize>,
        deadline: Deadline,
        me: TaskStamp,
    ) -> Result<Look> {
        let mut s = s;
        let mut check_dead = false;
        let mut looked_at_dead = false;
        let mut last_look = false;
        let mut deadline_hit = false;
        let mut budget = BUDGET;
        loop {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| Error::corrupted("", "barrier state keeps changing"))?;
            if index.is_none() && gen(s) != g {
                // A party waiting for a tripper: the new generation began.
                return Ok(Look::Wait);
            }
            if let Some(r) = self.outcome(s, g, index) {
                return Ok(Look::Done(r));
            }
            self.check(s)?;
            if check_dead {
                check_dead = false;
                if self.any_dead(s, g, me) {
                    // A verdict about exactly `s`: if the barrier moved on,
                    // the CAS fails and nothing breaks.
                    if self.break_from(s) {
                        return Ok(Look::Done(Err(Error::BrokenBarrier { origin: ORIGIN })));
                    }
                    // The state moved on: judge again from the new one.
                    check_dead = true;
                    s = self.ctl.state.load(Ordering::Acquire);
                    continue;
                }
            }
            if deadline_hit || deadline.expired() {
                if !last_look {
                    // A dead party is reported as such even at the deadline.
                    last_look = true;
                    check_dead = true;
                    continue;
                }
                if index.is_none() {
                    // Waiting for another generation's tripper: not a party
                    // of it, so its timeout breaks nothing (in Python it
                    // would wait for the action without a timeout).
                    return Ok(Look::Done(Err(Error::Timeout { origin: ORIGIN })));
                }
                if self.break_from(s) {
                    return Ok(Look::Done(Err(Error::BrokenBarrier { origin: ORIGIN })));
                }
                s = self.ctl.state.load(Ordering::Acquire);
                continue;
            }
            let armed = self.ctl.notify.arm();
            let now = self.ctl.state.load(Ordering::Acquire);
            if now != s {
                s = now;
                continue;
            }
            let targets = self.targets(s, g, me);
            let deaths = sync::deaths();
            let watch = sync::watch(self.ctl.notify.futex(), &targets);
            if watch.dead && !looked_at_dead {
                looked_at_dead = true;
                check_dead = true;
                continue;
            }
            let (until, is_deadline) = deadline.or_within(watch.interval());
            let woken = {
                // Registered until the sleep ends.
                let _watch = watch;
                self.ctl.notify.futex().wait(armed, until)
            };
            check_dead = !woken || sync::deaths() != deaths;
            deadline_hit = !woken && is_deadline;
            s = self.ctl.state.load(Ordering::Acquire);
        }
    }

    /// Breaks the barrier from exactly state `s`; true if this call did.
    fn break_from(&self, s: u64) -> bool {
        let ok = self
            .ctl
            .state
            .compare_exchange(s, s | BROKEN, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ok {
            self.ctl.notify.notify();
        }
        ok
    }
}
