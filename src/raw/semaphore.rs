//! `RawSemaphore`: a counting semaphore for shared memory (Python's
//! `multiprocessing.Semaphore` and `BoundedSemaphore`) whose permits taken
//! through a guard come back to the pool when their holder's process dies.
//!
//! # Algorithm
//!
//! One 64-bit `state` word holds the count of free permits *and* one bit
//! per entry of a table of guard holders, so that taking a permit and
//! recording who holds it is one CAS:
//!
//! | `state` bits | name      | meaning                                                    |
//! |--------------|-----------|------------------------------------------------------------|
//! | 0..32        | count     | free permits (at most [`MAX_VALUE`] by any shmkit call)    |
//! | 32..32+`SLOTS` | held    | bit `i`: table entry `i` holds a permit                    |
//! | 63           | `WAITERS` | someone may sleep on `wake`: a release must wake           |
//!
//! The table, `slots`, has [`HOLDER_SLOTS`] 64-bit entries, each 0 (free) or
//! the [`TaskStamp`] (pid and start time) of the process that reserved it.
//!
//! - guarded acquire: reserve a free entry `i` (CAS `0 → me`), then one CAS
//!   on `state`: `count - 1` and set bit `i`. The guard holds entry `i`.
//! - guard release: one CAS on `state`: `count + 1`, clear bit `i` (and
//!   `WAITERS`, waking the sleepers if it was set); then free the entry
//!   (CAS `me → 0`).
//! - `keep` (the permit is the caller's without a guard, Python's
//!   `acquire()`): clear bit `i` with the count unchanged, free the entry.
//! - `release(n)`: `count + n` (checked against the bound for a bounded
//!   semaphore and against [`MAX_VALUE`] for any), Python's counting.
//!   Nothing checks that the caller took a permit: a semaphore has no
//!   owner (SEM-01).
//! - table full (every entry reserved): the guarded acquire still succeeds
//!   with a plain decrement, and its guard says so
//!   ([`RawSemaphoreGuard::is_protected`] is false): that permit is not
//!   death-protected (it is lost if its process dies, as in Python).
//!   Before giving up on the table the acquirer frees entries whose
//!   process is dead (see recovery), so only live holders fill it.
//! - recovery, by a waiter that finds the count 0 (after a sleep that a
//!   death notice or the liveness interval ended, and once before
//!   `try_acquire` says no), or by an acquirer that finds the table full:
//!   for each entry `s` naming a process that is dead (only "no such
//!   task", or its pid running with another start time; "unknown" is
//!   alive), it reads `state` *after* that verdict: bit set, the dead
//!   process held a permit: take it over with one CAS of the entry
//!   `s → me` (the recoverer now holds that permit through entry `i`; its
//!   guard's [`recovered`](RawSemaphoreGuard::recovered) is true); bit
//!   clear, a reservation that took no permit (or already gave it back):
//!   free the entry with a CAS `s → 0`. Every recovery write is a CAS from
//!   the dead stamp, which no live process ever writes again, so a wrong
//!   verdict can at worst fail a CAS, never rob a live holder.
//! - sleep: read `wake`, see count 0, set `WAITERS` by a CAS from that
//!   exact state (Release), and futex-wait on `wake`, watching the
//!   processes of the protected holders (`sync::watch`: their exit wakes
//!   `wake` at once), for at most the watcher's interval (1 s when every
//!   holder is watched, else the 20 ms liveness interval). A release whose
//!   CAS clears `WAITERS` (AcqRel) bumps `wake` and wakes every sleeper:
//!   waking all means a woken sleeper that dies or times out cannot
//!   swallow the wake of another (RawLock's "no lost wake-up" argument
//!   applies unchanged: the sleeper reads `wake` before its CAS).
//! - a timed acquire whose deadline passed looks once more, with
//!   recovery, before it says `Timeout`: a permit free at the deadline is
//!   taken, and never does a call return before its deadline with none.
//!
//! # States of an entry, and what a survivor does
//!
//! | entry `i`      | bit `i` | what it is                                   | its process dead: |
//! |----------------|---------|----------------------------------------------|-------------------|
//! | 0              | clear   | free                                         | — |
//! | stamp          | clear   | reserved, no permit (acquiring, or releasing after giving it back) | the entry is freed |
//! | stamp          | set     | a guard's permit                             | taken over by a waiter, CAS `stamp → its own` |
//! | 0              | set     | only a scribbler writes it                   | the entry is skipped by acquirers; its bit is never cleared |
//!
//! # Crash cases
//!
//! | killed …                                         | left behind                  | recovery |
//! |--------------------------------------------------|------------------------------|----------|
//! | after reserving an entry, before the count CAS   | entry reserved, bit clear    | freed; no permit was taken |
//! | holding a guarded permit                         | entry, bit set               | the permit goes to a waiter (takeover) |
//! | in a guard's release, after the count CAS        | entry reserved, bit clear    | freed; the permit was given back |
//! | in `keep`, after clearing the bit                | entry reserved, bit clear    | freed; the permit stays taken (it was kept) |
//! | holding a plain permit (kept, or the table full) | the count one lower          | none: Python's counting semantics (SEM-08) |
//! | asleep                                           | `WAITERS`                    | one spurious wake at the next release |
//! | in a release, after its CAS, before the wake     | sleepers not woken           | they look again within their interval (≤ 1 s) |
//! | recovering, after the takeover CAS               | the entry names the recoverer | the recoverer is dead: recovered again |
//!
//! Everything read from shared memory is read once and checked: a count
//! above [`MAX_VALUE`] makes every release fail with
//! [`Error::TooManyReleases`] (it never wraps); a bit set over a free entry
//! makes acquirers skip that entry; garbage stamps are judged by liveness
//! like any other (a stamp naming no process is dead). Nothing loops on a
//! word a scribbler keeps changing: `try_acquire` gives up after a bounded
//! number of CAS races, blocking calls sleep between rounds.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Origin, Result};
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Futex, Ordering, Target, TaskStamp};

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
const ORIGIN: Origin = Origin::new("RawSemaphore", "");

/// How many guard holders the table records. 30 entries: the table and the
/// count share one 64-bit word.
#[cfg(not(loom))]
pub const HOLDER_SLOTS: usize = 30;
/// Under loom, two entries (a full table is then easy to reach).
#[cfg(loom)]
pub const HOLDER_SLOTS: usize = 2;

/// The largest count a semaphore can have (POSIX's `SEM_VALUE_MAX` on
/// Linux): `create` refuses more, and `release` past it is an error.
pub const MAX_VALUE: u32 = i32::MAX as u32;

const COUNT_MASK: u64 = 0xFFFF_FFFF;
const HELD_SHIFT: u32 = 32;
const WAITERS: u64 = 1 << 63;

/// In `flags`: a bounded semaphore (releases past `limit` are errors).
const BOUNDED: u32 = 1;

/// How many CAS races a non-blocking call runs before it says "none".
const TRY_LIMIT: u32 = 64;

fn held_bit(i: usize) -> u64 {
    1 << (HELD_SHIFT as usize + i)
}

fn count(w: u64) -> u32 {
    (w & COUNT_MASK) as u32
}

/// A counting semaphore that any thread of any process mapping it can use;
/// see the module documentation.
///
/// `repr(C)`, 8-byte aligned, [`required_size`](RawSemaphore::required_size)
/// bytes. Use it through [`Semaphore`](crate::Semaphore) /
/// [`BoundedSemaphore`](crate::BoundedSemaphore), or place it yourself with
/// [`init_in`](RawSemaphore::init_in) / [`attach`](RawSemaphore::attach).
///
/// ```
/// let s = shmkit::raw::RawSemaphore::new(2, false)?;
/// let a = s.acquire()?;
/// let b = s.acquire()?;
/// assert!(s.try_acquire()?.is_none());
/// drop(a);
/// assert_eq!(s.value(), 1);
/// # drop(b);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
pub struct RawSemaphore {
    /// The futex sleepers wait on: a count of wake-ups.
    wake: Futex,
    /// Bit 0: `BOUNDED`.
    flags: AtomicU32,
    /// The initial value: the most the count may reach when bounded.
    limit: AtomicU32,
    _pad: AtomicU32,
    /// Count, held bits, `WAITERS` (see the module documentation).
    state: AtomicU64,
    /// The guard holders: 0 or a process stamp.
    slots: [AtomicU64; HOLDER_SLOTS],
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<RawSemaphore>() == 24 + 8 * HOLDER_SLOTS);
    assert!(std::mem::align_of::<RawSemaphore>() == 8);
    assert!(HELD_SHIFT as usize + HOLDER_SLOTS <= 63);
};

impl fmt::Debug for RawSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSemaphore")
            .field("value", &self.value())
            .field("bounded", &self.is_bounded())
            .field("limit", &self.limit())
            .field("protected_holders", &self.protected_holders())
            .finish()
    }
}

/// A permit taken: through table entry `slot` (death-protected) or not
/// (`NO_SLOT`). Two bytes, so that guards stay small to move.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permit {
    slot: u8,
    recovered: bool,
}

const NO_SLOT: u8 = u8::MAX;

impl Permit {
    fn new(slot: Option<usize>, recovered: bool) -> Permit {
        Permit {
            slot: slot.map_or(NO_SLOT, |i| i as u8),
            recovered,
        }
    }

    fn slot(self) -> Option<usize> {
        (self.slot != NO_SLOT).then_some(usize::from(self.slot))
    }

    /// As a guard holds it: `PRESENT`, `recovered` at bit 8, the slot below.
    fn word(self) -> u64 {
        PRESENT | u64::from(self.recovered) << 8 | u64::from(self.slot)
    }

    /// The permit of [`word`](Permit::word)'s low 32 bits, `None` for 0.
    fn from_word(w: u32) -> Option<Permit> {
        (u64::from(w) & PRESENT != 0).then_some(Permit {
            slot: w as u8,
            recovered: w & 1 << 8 != 0,
        })
    }
}

/// In [`Permit::word`]: a permit is there.
const PRESENT: u64 = 1 << 9;

/// What one look at the semaphore found.
enum Look {
    Got(Permit),
    /// No free permit; the state seen.
    Zero(u64),
    /// Lost every CAS race of a bounded attempt.
    Busy,
}

impl RawSemaphore {
    /// A semaphore with `value` permits (bounded by `value` if `bounded`),
    /// for use within one process (or under loom).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `value` exceeds [`MAX_VALUE`].
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(0, false)?;
    /// assert_eq!(s.value(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn new(value: u32, bounded: bool) -> Result<RawSemaphore> {
        check_value(value)?;
        Ok(RawSemaphore {
            wake: Futex::new(0),
            flags: AtomicU32::new(if bounded { BOUNDED } else { 0 }),
            limit: AtomicU32::new(value),
            _pad: AtomicU32::new(0),
            state: AtomicU64::new(u64::from(value)),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// The bytes a `RawSemaphore` needs (264); align the region to 8.
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawSemaphore::required_size(), 264);
    /// ```
    pub const fn required_size() -> usize {
        std::mem::size_of::<RawSemaphore>()
    }

    /// Writes a semaphore with `value` permits at `ptr` and returns it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and
    /// those bytes must be accessed only through `RawSemaphore`s (in any
    /// process) for `'a`. No other process may use it during this call.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small,
    /// or `value` exceeds [`MAX_VALUE`].
    ///
    /// ```
    /// let mut buf = [0u64; 33];
    /// // SAFETY: `buf` outlives `s` and is used only through it.
    /// let s = unsafe { shmkit::raw::RawSemaphore::init_in(buf.as_mut_ptr().cast(), 264, 3, true)? };
    /// assert_eq!(s.value(), 3);
    /// assert!(s.is_bounded());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in<'a>(
        ptr: *mut u8,
        len: usize,
        value: u32,
        bounded: bool,
    ) -> Result<&'a RawSemaphore> {
        super::check_region::<RawSemaphore>(ptr, len, "RawSemaphore")?;
        let s = RawSemaphore::new(value, bounded)?;
        let p = ptr.cast::<RawSemaphore>();
        // SAFETY: aligned and large enough (checked), and the caller gives
        // us exclusive use of the region during initialisation.
        unsafe {
            p.write(s);
            Ok(&*p)
        }
    }

    /// Uses the semaphore another process initialised at `ptr`. Any bytes
    /// are accepted (see the module documentation for what garbage does).
    ///
    /// # Safety
    /// As for [`init_in`](RawSemaphore::init_in), except that the bytes have
    /// already been initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small.
    ///
    /// ```
    /// let mut buf = [0u64; 33];
    /// // SAFETY: `buf` outlives `s` and is used only through it.
    /// let s = unsafe { shmkit::raw::RawSemaphore::attach(buf.as_mut_ptr().cast(), 264)? };
    /// assert_eq!(s.value(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawSemaphore> {
        super::check_region::<RawSemaphore>(ptr, len, "RawSemaphore")?;
        // SAFETY: aligned and large enough (checked); every field is an
        // atomic integer, so any bit pattern is a valid value, and other
        // processes touch it only atomically (the caller's contract).
        Ok(unsafe { &*ptr.cast::<RawSemaphore>() })
    }

    /// The free permits now (a snapshot; Python's `get_value`).
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(2, false)?;
    /// let g = s.acquire()?;
    /// assert_eq!(s.value(), 1);
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn value(&self) -> u32 {
        count(self.state.load(Ordering::Relaxed))
    }

    /// Gives back now the guarded permits of holders that died, and
    /// returns how many. An acquirer that finds no permit free does this by
    /// itself, one permit at a time; until then [`value`](Self::value)
    /// counts a dead holder's permit as held. Reads the liveness of every
    /// holder in the table.
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(2, false)?;
    /// let g = s.acquire()?;
    /// assert_eq!(s.reclaim(), 0); // its holder, this process, lives
    /// assert_eq!(s.value(), 1);
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reclaim(&self) -> u32 {
        let me = sync::current_process();
        let mut n = 0;
        // Each round takes over one dead holder's permit and gives it back
        // (bounded by the table: a taken entry is ours, not dead).
        for _ in 0..HOLDER_SLOTS {
            match self.recover(me) {
                Recovered::Took(p) => {
                    self.give_back(p, me);
                    n += 1;
                }
                Recovered::Freed => continue,
                Recovered::Nothing => break,
            }
        }
        n
    }

    /// Whether releases past the initial value are refused.
    ///
    /// ```
    /// assert!(shmkit::raw::RawSemaphore::new(1, true)?.is_bounded());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_bounded(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & BOUNDED != 0
    }

    /// The initial value: the bound of a bounded semaphore.
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawSemaphore::new(4, true)?.limit(), 4);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// How many permits are held through guards that the table records
    /// (death-protected), a snapshot.
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(2, false)?;
    /// let g = s.acquire()?;
    /// assert_eq!(s.protected_holders(), 1);
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn protected_holders(&self) -> u32 {
        let w = self.state.load(Ordering::Relaxed);
        ((w >> HELD_SHIFT) & ((1 << HOLDER_SLOTS) - 1)).count_ones()
    }

    /// Takes a permit, waiting as long as it takes; a permit held through a
    /// guard by a process that died is taken over.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for one.
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(1, false)?;
    /// let g = s.acquire()?;
    /// assert!(g.is_protected());
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline(always)]
    pub fn acquire(&self) -> Result<RawSemaphoreGuard<'_>> {
        self.acquire_until(Deadline::NEVER).map(|p| self.guard(p))
    }

    /// [`acquire`](RawSemaphore::acquire), or [`Error::Timeout`] once
    /// `timeout` has passed (never earlier).
    ///
    /// # Errors
    /// [`Error::Timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = shmkit::raw::RawSemaphore::new(0, false)?;
    /// assert!(matches!(s.acquire_timeout(Duration::from_millis(5)), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RawSemaphoreGuard<'_>> {
        self.acquire_until(Deadline::after(timeout))
            .map(|p| self.guard(p))
    }

    /// A permit if one is free now (or a dead holder's can be taken over);
    /// `None` otherwise.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for one.
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(1, false)?;
    /// let g = s.try_acquire()?.expect("one free");
    /// assert!(s.try_acquire()?.is_none());
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<Option<RawSemaphoreGuard<'_>>> {
        Ok(self.try_permit().map(|p| self.guard(p)))
    }

    /// Adds `n` permits and wakes the sleepers (Python's `release(n)`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `n == 0`;
    /// [`Error::TooManyReleases`] if the count would pass the bound (a
    /// bounded semaphore's initial value) or [`MAX_VALUE`]: nothing changes.
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(1, true)?;
    /// let g = s.acquire()?;
    /// g.keep();
    /// s.release(1)?;
    /// assert!(matches!(s.release(1), Err(shmkit::Error::TooManyReleases { limit: 1, .. })));
    /// assert_eq!(s.value(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn release(&self, n: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::InvalidArgument(
                "Semaphore::release: n must be one or more".into(),
            ));
        }
        let limit = if self.is_bounded() {
            self.limit().min(MAX_VALUE)
        } else {
            MAX_VALUE
        };
        let mut w = self.state.load(Ordering::Relaxed);
        loop {
            let c = match count(w).checked_add(n) {
                Some(c) if c <= limit => c,
                _ => {
                    return Err(Error::TooManyReleases {
                        limit,
                        origin: ORIGIN,
                    })
                }
            };
            let new = (w & !COUNT_MASK & !WAITERS) | u64::from(c);
            // SYNC POINT: Release hands the permit over; Acquire orders our
            // `wake` bump after the sleepers' reads of it.
            match self
                .state
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        self.wake_if(w);
        Ok(())
    }

    // ---- internals ---------------------------------------------------------

    #[inline]
    /// The guard of permit `p`, just taken by this process.
    pub(crate) fn guard(&self, p: Permit) -> RawSemaphoreGuard<'_> {
        RawSemaphoreGuard {
            sem: self,
            word: p.word() | u64::from(sync::fork_gen()) << 32,
        }
    }

    fn wake_if(&self, old: u64) {
        if old & WAITERS != 0 {
            self.wake.word().fetch_add(1, Ordering::Release);
            self.wake.wake_all();
        }
    }

    /// One bounded look: take a free permit (through a table entry if one
    /// can be had), or report none.
    #[inline]
    fn look(&self, me: TaskStamp) -> Look {
        let mut w = self.state.load(Ordering::Relaxed);
        let mut slot: Option<usize> = None;
        let mut reserved = false;
        for _ in 0..TRY_LIMIT {
            if count(w) == 0 {
                if let Some(i) = slot {
                    self.unreserve(i);
                }
                return Look::Zero(w);
            }
            if !reserved {
                reserved = true;
                slot = match self.reserve(me) {
                    Ok(s) => s,
                    Err(p) => return Look::Got(p),
                };
            }
            if let Some(i) = slot.filter(|&i| w & held_bit(i) != 0) {
                // A bit set over a free entry: a scribbler's. Skip it.
                self.unreserve(i);
                slot = None;
            }
            let new = (w - 1) | slot.map_or(0, held_bit);
            // SYNC POINT: Acquire pairs with the Release of a release.
            match self
                .state
                .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Look::Got(Permit::new(slot, false)),
                Err(cur) => w = cur,
            }
        }
        if let Some(i) = slot {
            self.unreserve(i);
        }
        Look::Busy
    }

    /// Reserves a free table entry for `me`: `Ok(None)` if the table is
    /// full of live holders; `Err(permit)` if clearing it found a dead
    /// holder's permit, now ours.
    fn reserve(&self, me: TaskStamp) -> std::result::Result<Option<usize>, Permit> {
        // Processes start their scans at different entries (threads of one
        // process share a start; a lost CAS moves on to the next entry).
        let start = me.tid() as usize % HOLDER_SLOTS;
        for round in 0..2 {
            for k in 0..HOLDER_SLOTS {
                let i = (start + k) % HOLDER_SLOTS;
                if self.slots[i].load(Ordering::Relaxed) == 0
                    && self.slots[i]
                        .compare_exchange(0, me.0, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok(Some(i));
                }
            }
            if round == 0 {
                match self.recover(me) {
                    Recovered::Took(p) => return Err(p),
                    Recovered::Freed => {}
                    Recovered::Nothing => break,
                }
            }
        }
        Ok(None)
    }

    /// Frees our own entry `i`. A plain store: while we run, nobody else
    /// writes an entry that names us (a recoverer needs us dead).
    fn unreserve(&self, i: usize) {
        self.slots[i].store(0, Ordering::Release);
    }

    /// Looks for entries of dead processes: takes the first dead holder's
    /// permit over, freeing dead reservations on the way.
    fn recover(&self, me: TaskStamp) -> Recovered {
        let mut freed = false;
        for i in 0..HOLDER_SLOTS {
            let s = self.slots[i].load(Ordering::Acquire);
            if s == 0 || s == me.0 {
                continue;
            }
            let stamp = TaskStamp(s);
            if sync::task_alive(stamp.tid(), Some(stamp)) {
                continue;
            }
            // Read after the verdict: the dead process's last CAS on
            // `state`, if any, is in what we read.
            let w = self.state.load(Ordering::Acquire);
            if w & held_bit(i) != 0 {
                // SYNC POINT: from the exact dead stamp: fails, robbing
                // nobody, if anyone else recovered it first.
                if self.slots[i]
                    .compare_exchange(s, me.0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Recovered::Took(Permit::new(Some(i), true));
                }
            } else if self.slots[i]
                .compare_exchange(s, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                freed = true;
            }
        }
        if freed {
            Recovered::Freed
        } else {
            Recovered::Nothing
        }
    }

    /// The processes whose guarded permits a sleeper waits for.
    fn holder_targets(&self, w: u64, me: TaskStamp) -> Vec<Target> {
        let mut t = Vec::new();
        for i in 0..HOLDER_SLOTS {
            if w & held_bit(i) == 0 {
                continue;
            }
            let s = self.slots[i].load(Ordering::Relaxed);
            let target = Target::Process(TaskStamp(s));
            if s != 0 && s != me.0 && !t.contains(&target) {
                t.push(target);
            }
        }
        t
    }

    #[inline]
    pub(crate) fn try_permit(&self) -> Option<Permit> {
        let me = sync::current_process();
        match self.look(me) {
            Look::Got(p) => Some(p),
            Look::Busy => None,
            Look::Zero(_) => match self.recover(me) {
                Recovered::Took(p) => Some(p),
                _ => None,
            },
        }
    }

    #[inline(always)]
    pub(crate) fn acquire_until(&self, deadline: Deadline) -> Result<Permit> {
        let me = sync::current_process();
        if let Look::Got(p) = self.look(me) {
            return Ok(p);
        }
        self.acquire_slow(me, deadline)
    }

    #[cold]
    fn acquire_slow(&self, me: TaskStamp, deadline: Deadline) -> Result<Permit> {
        let mut check_dead = false;
        let mut last_checked = false;
        let mut deadline_hit = false;
        let mut looked_at_dead = false;
        loop {
            // Read the wake count before judging the state (no lost wake-up).
            let seq = self.wake.word().load(Ordering::Acquire);
            let w = match self.look(me) {
                Look::Got(p) => return Ok(p),
                Look::Busy => {
                    sync::yield_now();
                    continue;
                }
                Look::Zero(w) => w,
            };
            if check_dead {
                check_dead = false;
                if let Recovered::Took(p) = self.recover(me) {
                    return Ok(p);
                }
            }
            if deadline_hit || deadline.expired() {
                if !last_checked {
                    // A dead holder's permit is taken even by a call that
                    // has no time left, as by try_acquire.
                    check_dead = true;
                    last_checked = true;
                    continue;
                }
                return Err(Error::Timeout { origin: ORIGIN });
            }
            // SYNC POINT: Release, so that the releaser that reads this CAS
            // (Acquire) bumps `wake` after our read of it above.
            if self
                .state
                .compare_exchange(w, w | WAITERS, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let deaths = sync::deaths();
            let watch = sync::watch(&self.wake, &self.holder_targets(w, me));
            if watch.dead && !looked_at_dead {
                looked_at_dead = true;
                check_dead = true;
                continue;
            }
            let (until, is_deadline) = deadline.or_within(watch.interval());
            let woken = {
                // Registered until the sleep ends.
                let _watch = watch;
                self.wake.wait(seq, until)
            };
            check_dead = !woken || sync::deaths() != deaths;
            deadline_hit = !woken && is_deadline;
        }
    }

    /// Gives back a guard's permit (taken through entry `slot`, or plain).
    fn give_back(&self, p: Permit, me: TaskStamp) {
        let Some(i) = p.slot() else {
            // A plain permit: an ordinary release (a scribbled count at
            // the bound loses the permit rather than wrapping).
            let _ = self.release(1);
            return;
        };
        if self.slots[i].load(Ordering::Relaxed) != me.0 {
            // Not ours any more: only a scribbler can have done this.
            return;
        }
        // A bounded semaphore's count never passes its bound; an unbounded
        // one's only saturates (a scribbled count past MAX_VALUE stays an
        // error for `release`, and is not rewritten here).
        let limit = if self.is_bounded() {
            self.limit().min(MAX_VALUE)
        } else {
            COUNT_MASK as u32
        };
        let mut w = self.state.load(Ordering::Relaxed);
        loop {
            if w & held_bit(i) == 0 {
                // Cleared under us: only a scribbler does that.
                break;
            }
            // Never past the bound (or MAX_VALUE): a permit released
            // meanwhile by someone who did not hold one (`release(n)`, as
            // Python allows up to the bound) already filled the place this
            // one would go back to, so it is dropped, not added.
            let c = count(w).saturating_add(1).min(limit);
            let new = (w & !COUNT_MASK & !WAITERS & !held_bit(i)) | u64::from(c);
            // SYNC POINT: as in `release`.
            match self
                .state
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.wake_if(w);
                    break;
                }
                Err(cur) => w = cur,
            }
        }
        self.unreserve(i);
    }

    /// Turns a guard's permit into a plain one (kept by the caller).
    fn keep_permit(&self, p: Permit, me: TaskStamp) {
        let Some(i) = p.slot() else { return };
        if self.slots[i].load(Ordering::Relaxed) != me.0 {
            return;
        }
        self.state.fetch_and(!held_bit(i), Ordering::Relaxed);
        self.unreserve(i);
    }
}

enum Recovered {
    Took(Permit),
    Freed,
    Nothing,
}

fn check_value(value: u32) -> Result<()> {
    if value > MAX_VALUE {
        return Err(Error::InvalidArgument(format!(
            "Semaphore: initial value {value} exceeds the largest, {MAX_VALUE}"
        )));
    }
    Ok(())
}

/// A permit of a [`RawSemaphore`]; given back when dropped. `Send`: a
/// semaphore has no owner thread, and the table names the process.
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct RawSemaphoreGuard<'a> {
    sem: &'a RawSemaphore,
    /// The permit ([`Permit::word`]; 0 once given back or kept) and, above
    /// bit 32, the fork generation of the process that took it (a forked
    /// child's copy gives nothing back): one word, so that the guard is two
    /// words and moves in registers. A guard of an `Option<Permit>` and a
    /// stamp was copied through memory, each copy reading whole what had
    /// just been stored byte by byte (a store-forwarding stall each).
    word: u64,
}

impl RawSemaphoreGuard<'_> {
    /// The permit, if not given back or kept yet.
    fn permit(&self) -> Option<Permit> {
        Permit::from_word(self.word as u32)
    }

    /// Takes the permit out if this process took it (in a forked child's
    /// copy of its parent's guard the permit is the parent's to give back:
    /// `None`).
    fn take_mine(&mut self) -> Option<Permit> {
        let p = self.permit()?;
        let gen = (self.word >> 32) as u32;
        self.word = 0;
        (gen == sync::fork_gen()).then_some(p)
    }

    /// Whether the table records this permit, so that it comes back to the
    /// pool if this process dies (false when the table was full).
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(1, false)?;
    /// assert!(s.acquire()?.is_protected());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_protected(&self) -> bool {
        self.permit().is_some_and(|p| p.slot().is_some())
    }

    /// Whether this permit was taken over from a process that died
    /// holding it.
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(1, false)?;
    /// assert!(!s.acquire()?.recovered());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recovered(&self) -> bool {
        self.permit().is_some_and(|p| p.recovered)
    }

    /// Keeps the permit without a guard (Python's `acquire()`): give it
    /// back later with [`RawSemaphore::release`]. A kept permit is not
    /// death-protected.
    ///
    /// ```
    /// let s = shmkit::raw::RawSemaphore::new(1, false)?;
    /// s.acquire()?.keep();
    /// assert_eq!(s.value(), 0);
    /// s.release(1)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn keep(mut self) {
        if let Some(p) = self.take_mine() {
            self.sem.keep_permit(p, sync::current_process());
        }
    }
}

impl Drop for RawSemaphoreGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.take_mine() {
            self.sem.give_back(p, sync::current_process());
        }
    }
}

impl fmt::Debug for RawSemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSemaphoreGuard")
            .field("protected", &self.is_protected())
            .field("recovered", &self.recovered())
            .finish()
    }
}
