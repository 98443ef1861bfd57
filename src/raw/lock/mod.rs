//! `RawLock`: a robust, futex-based mutual-exclusion lock for shared memory.
//!
//! The lock is one 64-bit word that holds the owner's [`TaskStamp`] (thread
//! id and start time): the owner claims the lock *and* names itself with a
//! single CAS `0 → stamp`, so no crash can leave a held lock whose owner is
//! unknown, and a waiter can tell a dead owner from a live one even after
//! its id is reused. Sleepers wait on a separate 32-bit futex word, a wake-up
//! counter. No `pthread_mutex_t` lives in shared memory.
//!
//! # The words
//!
//! | bytes | field   | meaning                                                       |
//! |-------|---------|---------------------------------------------------------------|
//! | 0..4  | `wake`  | futex word: bumped by every unlock that must wake a sleeper   |
//! | 4..8  | `aux`   | bit 31 `DIED` (sticky owner-death notice); bits 0..31 count contended unlocks |
//! | 8..16 | `state` | the lock (below)                                              |
//!
//! | `state` bits | name       | meaning                                                  |
//! |--------------|------------|----------------------------------------------------------|
//! | 0..62        | stamp      | the owner's stamp (tid << 40 \| start time); 0: free     |
//! | 62           | `HANDOFF`  | free, but reserved for a thread that has slept; bits 0..40 then hold the hand-off time (ms) |
//! | 63           | `WAITERS`  | someone may be asleep on `wake`: unlock must wake        |
//!
//! | `state`                        | what it is                          | what a survivor does when the owner died |
//! |--------------------------------|-------------------------------------|------------------------------------------|
//! | `0` (or `WAITERS`)             | free                                | takes it                                 |
//! | `stamp` (`\| WAITERS`)         | held by the task `stamp` names      | a waiter finds the thread gone (or its id running with another start time), takes over |
//! | `HANDOFF \| WAITERS \| t`      | free, reserved for a woken sleeper  | any thread that has slept takes it; anyone takes it once it is 20 ms old (the woken sleeper died or is stuck) |
//! | stamp with thread id 0         | only a scribbler writes it          | taken over                               |
//!
//! # Paths
//!
//! - lock: one CAS `0 → stamp` (fast path), then a short spin, then sleep:
//!   read `wake`, set `WAITERS` with a CAS from the exact state judged, and
//!   futex-wait on `wake` for the value read first. Sleeps last at most
//!   20 ms (the liveness interval); after each timed-out sleep (and once more
//!   before giving up on a deadline) the waiter asks whether the owner's
//!   thread still runs (`sync::thread_alive`: only "no such thread" is dead,
//!   "unknown" is alive), and if not, takes the lock over with a CAS from the
//!   exact word it judged, and is told so (`owner_died`).
//! - unlock: one CAS `stamp → 0` when nobody waits; else a CAS that clears
//!   `WAITERS`, then `wake += 1` and one futex wake. Every 32nd contended
//!   unlock is a fair one: the state becomes `HANDOFF | WAITERS | now`,
//!   which only a thread that has slept may take, so a thread that relocks
//!   in a tight loop cannot starve the others (parking_lot's "eventual
//!   fairness", by count instead of by time). If the wake found nobody
//!   asleep, the hand-off is undone at once.
//! - no lost wake-up: a sleeper reads `wake` before its CAS that sets
//!   `WAITERS` (Release); the unlocker's CAS that clears `WAITERS` (Acquire)
//!   reads that CAS or a later one, so its `wake += 1` comes after the
//!   sleeper's read; the futex then either sees the new count (and does not
//!   sleep) or is already asleep when the wake comes.
//! - the takeover sets a sticky `DIED` bit in `aux`; every guard taken
//!   while it is set reports `owner_died`, and the first such guard to drop
//!   clears it (as `EOWNERDEAD` stays until `pthread_mutex_consistent`).
//!   Crate-internal one-shot users (`Array::get`, `Value::store`, …) leave
//!   it for the next guard, since they cannot repair anything.
//! - a relock by the holding thread is `Error::Deadlock`, decided by the
//!   thread's own record of the locks it holds (`sync::held_*`), never by
//!   the stamp alone: a peer can write our stamp (tid and start time are in
//!   `/proc`), and a forged "owner is you" is a foreign live owner: waited
//!   for (up to the caller's deadline), never taken, never an error.
//!
//! # Crash cases
//!
//! | killed …                                  | left behind                 | recovery |
//! |-------------------------------------------|-----------------------------|----------|
//! | before the claiming CAS                   | nothing                     | — |
//! | after it (anywhere while holding)         | `state` = its stamp         | waiters see the thread gone: takeover, `owner_died` |
//! | after a takeover CAS, before `DIED` is set| `state` = its stamp         | the next takeover sets `DIED` |
//! | asleep (its `WAITERS` left set)           | `WAITERS`                   | costs one wake syscall at the next unlock |
//! | woken by a fair unlock, before taking it  | `HANDOFF \| WAITERS \| t`   | taken by the next sleeper, or by anyone once 20 ms old |
//! | in unlock, after the CAS, before the wake | `wake` not bumped           | sleepers wake within 20 ms by their timeout |
//!
//! A live owner is never robbed: a takeover needs the owner's thread to be
//! gone (no such task, a zombie, or its id running with another start
//! time), and the CAS needs the state unchanged since it was judged. Taking
//! a stale hand-off robs nobody: a reserved lock has no holder, and its
//! late recipient, if alive, simply waits again.

use std::fmt;
use std::marker::PhantomData;

use crate::error::{Error, Origin, Result};
use crate::raw::spin::Spin;
use crate::sync::{
    self, AtomicU32, AtomicU64, Deadline, Futex, HeldKey, Ordering, Target, TaskStamp,
};

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
const ORIGIN: Origin = Origin::new("RawLock", "");

/// In `aux`: a holder died, and no guard that reported it has dropped yet.
const DIED: u32 = 1 << 31;
const COUNT_MASK: u32 = DIED - 1;
/// In `state`: the owner's stamp.
const STAMP_MASK: u64 = (1 << 62) - 1;
const HANDOFF: u64 = 1 << 62;
const WAITERS: u64 = 1 << 63;
/// In a `HANDOFF` state: the hand-off time, monotonic milliseconds mod 2^40.
const TIME_MASK: u64 = (1 << 40) - 1;

/// Every this many contended unlocks, hand the lock to a sleeper.
#[cfg(not(loom))]
const FAIR_EVERY: u32 = 32;
#[cfg(loom)]
const FAIR_EVERY: u32 = 2;

/// How many times `lock` spins before it sleeps.
const SPIN_LIMIT: u32 = 100;

/// How many CAS races `try_lock` runs before it says "busy" (a state that
/// keeps changing under it is contention or a scribbler, not a free lock).
const TRY_LIMIT: u32 = 64;

/// A robust lock that any thread of any process mapping it can take.
///
/// 16 bytes, `repr(C)`, 8-byte aligned; all-zero bytes are an unlocked lock.
/// See the module documentation for the protocol. Use it through
/// [`Lock`](crate::Lock), or place it yourself with
/// [`init_in`](RawLock::init_in) / [`attach`](RawLock::attach).
///
/// The calling thread's record of the locks it holds names a `RawLock` by
/// its address: a second mapping of the same memory at another address is
/// not recognised as "already held", and a relock through it waits instead
/// of failing with [`Error::Deadlock`]. The handles ([`Lock`](crate::Lock),
/// [`Value`](crate::Value), [`Array`](crate::Array)) name their lock by the
/// shared object as well, so they detect that case too.
///
/// ```
/// let lock = shmkit::raw::RawLock::new();
/// let g = lock.lock()?;
/// assert!(!g.owner_died());
/// assert!(lock.try_lock()?.is_none());
/// drop(g);
/// assert!(lock.try_lock()?.is_some());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
pub struct RawLock {
    /// The futex sleepers wait on: a count of wake-ups.
    wake: Futex,
    /// Bit 31: `DIED`, sticky until a guard that reported it drops; bits
    /// 0..31: contended unlocks, counted for the fair hand-off.
    aux: AtomicU32,
    /// The lock: owner stamp, `HANDOFF`, `WAITERS`.
    state: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<RawLock>() == 16);
    assert!(std::mem::align_of::<RawLock>() == 8);
};

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}

impl fmt::Debug for RawLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawLock")
            .field("owner_tid", &self.owner_tid())
            .finish()
    }
}

/// What a locker makes of a state it read.
enum Verdict {
    /// Take it with a CAS from that state; `true`: over a dead owner.
    Take(bool),
    /// Held (or reserved) by someone else: wait.
    Busy,
    /// Held by the calling thread.
    Deadlock,
}

/// The monotonic clock in milliseconds, mod 2^40.
fn now_ms() -> u64 {
    (sync::now().as_millis() as u64) & TIME_MASK
}

/// Whether a `HANDOFF` state is old enough that its woken recipient should
/// have taken it (a time in the future, only a scribbler's, counts as old).
fn handoff_stale(w: u64) -> bool {
    let age = now_ms().wrapping_sub(w & TIME_MASK) & TIME_MASK;
    age >= sync::LIVENESS_INTERVAL.as_millis() as u64
}

impl RawLock {
    /// An unlocked lock, for use within one process (or under loom).
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// assert!(!lock.is_locked());
    /// ```
    pub fn new() -> RawLock {
        RawLock {
            wake: Futex::new(0),
            aux: AtomicU32::new(0),
            state: AtomicU64::new(0),
        }
    }

    /// Under loom: an unlocked lock whose next contended unlock is a fair
    /// hand-off (as if `FAIR_EVERY - 1` contended unlocks had happened), so
    /// that a model reaches the hand-off in one round.
    #[cfg(loom)]
    pub fn new_fair_next() -> RawLock {
        RawLock {
            wake: Futex::new(0),
            aux: AtomicU32::new(FAIR_EVERY - 1),
            state: AtomicU64::new(0),
        }
    }

    /// The bytes a `RawLock` needs (16); align the region to 8.
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawLock::required_size(), 16);
    /// ```
    pub const fn required_size() -> usize {
        std::mem::size_of::<RawLock>()
    }

    /// Writes an unlocked lock at `ptr` and returns it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and
    /// those bytes must be accessed only through `RawLock`s (in any process)
    /// for `'a`. No other process may be using the lock while it is
    /// initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small.
    ///
    /// ```
    /// let mut buf = [0u64; 2];
    /// // SAFETY: `buf` outlives `lock` and is used only through it.
    /// let lock = unsafe { shmkit::raw::RawLock::init_in(buf.as_mut_ptr().cast(), 16)? };
    /// drop(lock.lock()?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawLock> {
        super::check_region::<RawLock>(ptr, len, "RawLock")?;
        let p = ptr.cast::<RawLock>();
        // SAFETY: the region is aligned and large enough (checked above), and
        // the caller gives us exclusive use of it during initialisation.
        unsafe {
            p.write(RawLock::new());
            Ok(&*p)
        }
    }

    /// Uses the lock another process initialised at `ptr`. Any bytes are
    /// accepted: a garbage word is treated as held by a dead owner and
    /// taken over.
    ///
    /// # Safety
    /// As for [`init_in`](RawLock::init_in), except that the bytes have
    /// already been initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small.
    ///
    /// ```
    /// let mut buf = [0u64; 2];
    /// // SAFETY: `buf` outlives `lock` and is used only through it.
    /// let lock = unsafe { shmkit::raw::RawLock::attach(buf.as_mut_ptr().cast(), 16)? };
    /// assert!(!lock.is_locked());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawLock> {
        super::check_region::<RawLock>(ptr, len, "RawLock")?;
        // SAFETY: aligned and large enough (checked); every field is an
        // atomic integer, so any bit pattern is a valid value, and other
        // processes only touch it atomically (the caller's contract).
        Ok(unsafe { &*ptr.cast::<RawLock>() })
    }

    /// Whether some thread holds the lock now (a snapshot).
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// let g = lock.lock()?;
    /// assert!(lock.is_locked());
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.owner_tid().is_some()
    }

    /// The thread id of the holder, if any (a snapshot).
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// assert_eq!(lock.owner_tid(), None);
    /// ```
    pub fn owner_tid(&self) -> Option<u32> {
        let w = self.state.load(Ordering::Relaxed);
        (w & HANDOFF == 0 && w & STAMP_MASK != 0).then(|| TaskStamp(w & STAMP_MASK).tid())
    }

    /// Takes the lock, waiting as long as it takes. If the holder died, the
    /// lock is taken over within about 20 ms (the liveness interval) and the
    /// guard's [`owner_died`](RawLockGuard::owner_died) is true.
    ///
    /// # Errors
    /// [`Error::Deadlock`] if the calling thread already holds it.
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// let g = lock.lock()?;
    /// assert!(matches!(lock.lock(), Err(shmkit::Error::Deadlock { .. })));
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn lock(&self) -> Result<RawLockGuard<'_>> {
        self.lock_until(self.key(None), Deadline::NEVER, Spin::Adaptive)
    }

    /// Takes the lock, or fails with [`Error::Timeout`] once `timeout` has
    /// passed (never earlier). A dead holder's lock is taken over even with
    /// no time left, as by [`try_lock`](RawLock::try_lock).
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Deadlock`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = shmkit::raw::RawLock::new();
    /// let g = lock.lock_timeout(Duration::from_millis(10))?;
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn lock_timeout(&self, timeout: std::time::Duration) -> Result<RawLockGuard<'_>> {
        self.lock_until(self.key(None), Deadline::after(timeout), Spin::Adaptive)
    }

    /// [`lock`](RawLock::lock) (`timeout` `None`) or
    /// [`lock_timeout`](RawLock::lock_timeout), spinning as `spin` says
    /// before it sleeps. [`Spin::Adaptive`] is what `lock` does: up to 100
    /// looks (a microsecond or two) while nobody sleeps on the lock;
    /// [`Spin::Never`] sleeps at once; [`Spin::UpTo`] looks for up to that
    /// long while nobody sleeps.
    ///
    /// # Errors
    /// As `lock` and `lock_timeout`.
    ///
    /// ```
    /// use shmkit::Spin;
    /// let lock = shmkit::raw::RawLock::new();
    /// let g = lock.lock_with(None, Spin::Never)?;
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock_with(
        &self,
        timeout: Option<std::time::Duration>,
        spin: Spin,
    ) -> Result<RawLockGuard<'_>> {
        self.lock_in(None, timeout, spin)
    }

    /// Takes the lock if it is free, its holder is dead, or it is a
    /// hand-off whose woken recipient did not take it within 20 ms; never
    /// waits. `None` also when the calling thread holds it.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a corrupted lock.
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// let g = lock.try_lock()?.expect("free");
    /// assert!(lock.try_lock()?.is_none());
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_lock(&self) -> Result<Option<RawLockGuard<'_>>> {
        self.try_lock_in(None)
    }

    /// This lock's name in the calling thread's record of held locks:
    /// its address, and the shared object it lives in if the caller knows.
    pub(crate) fn key(&self, object: Option<(u64, u64)>) -> HeldKey {
        HeldKey {
            addr: self as *const RawLock as usize,
            object,
        }
    }

    /// [`try_lock`](RawLock::try_lock) for a lock in the shared object
    /// `object` (see [`crate::segment::Segment::object_id`]).
    pub(crate) fn try_lock_in(
        &self,
        object: Option<(u64, u64)>,
    ) -> Result<Option<RawLockGuard<'_>>> {
        self.try_lock_as(object, false, true)
    }

    /// [`try_lock_in`](RawLock::try_lock_in) for a caller that has waited
    /// (`slept`: a `lock_async` future woken by the lock's word): it may
    /// take a fresh hand-off, which is reserved for a waiter, and keeps
    /// `WAITERS` set, as `lock_slow` does once it has slept, since the
    /// unlock that woke it cleared the bit while others may still sleep.
    /// `check_owner`: read the owner's liveness (`/proc`) if it holds it.
    pub(crate) fn try_lock_as(
        &self,
        object: Option<(u64, u64)>,
        slept: bool,
        check_owner: bool,
    ) -> Result<Option<RawLockGuard<'_>>> {
        let me = sync::current_stamp();
        let key = self.key(object);
        let mut w = self.state.load(Ordering::Relaxed);
        for _ in 0..TRY_LIMIT {
            let died = match self.judge(w, me, key, slept, check_owner) {
                Verdict::Take(died) => died,
                Verdict::Busy | Verdict::Deadlock => return Ok(None),
            };
            let new = me.0
                | if slept || died || w & HANDOFF != 0 {
                    WAITERS
                } else {
                    w & WAITERS
                };
            // SYNC POINT: Acquire pairs with the Release of the unlock.
            match self
                .state
                .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(Some(self.acquired(me, key, died))),
                Err(cur) => w = cur,
            }
        }
        Ok(None)
    }

    /// [`lock_timeout`](RawLock::lock_timeout) (or `lock` for `None`) for a
    /// lock in the shared object `object`.
    #[inline]
    pub(crate) fn lock_in(
        &self,
        object: Option<(u64, u64)>,
        timeout: Option<std::time::Duration>,
        spin: Spin,
    ) -> Result<RawLockGuard<'_>> {
        let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
        self.lock_until(self.key(object), deadline, spin)
    }

    /// Takes the lock for one read or write by crate internals that cannot
    /// repair data: a dead holder's mark is left for the next guard.
    pub(crate) fn lock_one_shot(&self, object: Option<(u64, u64)>) -> Result<RawLockGuard<'_>> {
        let mut g = self.lock_until(self.key(object), Deadline::NEVER, Spin::Adaptive)?;
        g.defer_owner_died();
        Ok(g)
    }

    #[inline]
    fn lock_until(&self, key: HeldKey, deadline: Deadline, spin: Spin) -> Result<RawLockGuard<'_>> {
        let me = sync::current_stamp();
        // SYNC POINT: Acquire pairs with the Release in `unlock`.
        if self
            .state
            .compare_exchange(0, me.0, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(self.acquired(me, key, false));
        }
        self.lock_slow(me, key, deadline, spin)
    }

    /// Spins while nobody sleeps (the holder may be about to let go), as
    /// `spin` allows; the guard if the lock came free and was taken.
    fn spin_for_it(
        &self,
        me: TaskStamp,
        key: HeldKey,
        spin: Spin,
        deadline: Deadline,
    ) -> Option<RawLockGuard<'_>> {
        let (looks, until) = match spin {
            Spin::Never => return None,
            Spin::Adaptive => (SPIN_LIMIT, deadline.at()),
            Spin::UpTo(d) if d.is_zero() => return None,
            // Never past the caller's deadline.
            Spin::UpTo(d) => {
                let end = sync::now().saturating_add(d);
                (u32::MAX, Some(deadline.at().map_or(end, |t| t.min(end))))
            }
        };
        for i in 0..looks {
            let w = self.state.load(Ordering::Relaxed);
            if w == 0 {
                // SYNC POINT: Acquire pairs with the Release in `unlock`.
                if self
                    .state
                    .compare_exchange(0, me.0, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(self.acquired(me, key, false));
                }
                continue;
            }
            if w & WAITERS != 0 {
                return None;
            }
            if let Some(u) = until {
                // Under loom the clock stands still: the look count ends it.
                if (i % 32 == 31 && sync::now() >= u) || (cfg!(loom) && i >= SPIN_LIMIT) {
                    return None;
                }
            }
            sync::spin_loop();
        }
        None
    }

    #[cold]
    fn lock_slow(
        &self,
        me: TaskStamp,
        key: HeldKey,
        deadline: Deadline,
        spin: Spin,
    ) -> Result<RawLockGuard<'_>> {
        if let Some(g) = self.spin_for_it(me, key, spin, deadline) {
            return Ok(g);
        }
        let mut slept = false;
        let mut check_owner = false;
        let mut last_checked = false;
        let mut deadline_hit = false;
        let mut looked_at_dead = false;
        loop {
            // Read the wake count before judging the state (see "no lost
            // wake-up" in the module docs).
            let seq = self.wake.word().load(Ordering::Acquire);
            let w = self.state.load(Ordering::Relaxed);
            match self.judge(w, me, key, slept, check_owner) {
                Verdict::Take(died) => {
                    // Once we have slept, or over a dead owner or a
                    // hand-off, others may be asleep: keep WAITERS set.
                    let keep = if slept || died || w & HANDOFF != 0 {
                        WAITERS
                    } else {
                        w & WAITERS
                    };
                    // SYNC POINT: Acquire pairs with the Release of the unlock.
                    if self
                        .state
                        .compare_exchange(w, me.0 | keep, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Ok(self.acquired(me, key, died));
                    }
                    continue;
                }
                Verdict::Deadlock => return Err(Error::Deadlock { origin: ORIGIN }),
                Verdict::Busy => {}
            }
            if deadline_hit || deadline.expired() {
                if !last_checked {
                    // A dead holder (or a stale hand-off) is taken even by
                    // a call that has no time left to wait, as by try_lock.
                    check_owner = true;
                    last_checked = true;
                    continue;
                }
                return Err(Error::Timeout { origin: ORIGIN });
            }
            // SYNC POINT: Release, so that the unlocker that reads this CAS
            // (Acquire) bumps `wake` after our read of it above.
            if self
                .state
                .compare_exchange(w, w | WAITERS, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Have the owner thread's exit wake us (see `sync::watch`), so
            // that the sleep needs no short interval to notice its death.
            // A hand-off has no owner: its age is what we wait for.
            let deaths = sync::deaths();
            let owner = TaskStamp(w & STAMP_MASK);
            let watch = (w & HANDOFF == 0 && owner.0 != 0)
                .then(|| sync::watch(&self.wake, &[Target::Thread(owner)]));
            if watch.as_ref().is_some_and(|w| w.dead) && !looked_at_dead {
                looked_at_dead = true;
                check_owner = true;
                continue;
            }
            let interval = watch
                .as_ref()
                .map_or(sync::LIVENESS_INTERVAL, |w| w.interval());
            let (until, is_deadline) = deadline.or_within(interval);
            let woken = {
                // Registered until the sleep ends.
                let _watch = watch;
                self.wake.wait(seq, until)
            };
            slept = true;
            check_owner = !woken || sync::deaths() != deaths;
            deadline_hit = !woken && is_deadline;
        }
    }

    /// What a locker `me` that saw `w` may do. `slept`: it has slept in this
    /// call (may take a hand-off); `check_owner`: it may read the owner's
    /// liveness (a `/proc` read).
    fn judge(
        &self,
        w: u64,
        me: TaskStamp,
        key: HeldKey,
        slept: bool,
        check_owner: bool,
    ) -> Verdict {
        if w & HANDOFF != 0 {
            return if slept || handoff_stale(w) {
                Verdict::Take(false)
            } else {
                Verdict::Busy
            };
        }
        let owner = TaskStamp(w & STAMP_MASK);
        if owner.0 == 0 {
            return Verdict::Take(false);
        }
        if owner.tid() == 0 {
            // No task has id 0: only a scribbler writes this.
            return Verdict::Take(true);
        }
        if owner.tid() == me.tid() {
            if !owner.could_be(me) {
                // Our id, another start time: a dead task whose id we have.
                return Verdict::Take(true);
            }
            if sync::held_contains(key, me.tid()) {
                return Verdict::Deadlock;
            }
            // Our stamp, but we hold no such lock: a forgery. We are alive,
            // so the "owner" is too: wait, as for any live owner.
            return Verdict::Busy;
        }
        if check_owner && !sync::thread_alive(owner.tid(), Some(owner)) {
            return Verdict::Take(true);
        }
        Verdict::Busy
    }

    #[inline]
    fn acquired(&self, me: TaskStamp, key: HeldKey, took_over: bool) -> RawLockGuard<'_> {
        // `aux` is only written by holders, so the lock orders these.
        let owner_died = if took_over {
            self.aux.fetch_or(DIED, Ordering::Relaxed);
            true
        } else {
            self.aux.load(Ordering::Relaxed) & DIED != 0
        };
        sync::held_insert(key, me.tid());
        // A thread id is below 2^22 (Linux's PID_MAX_LIMIT), so a stamp
        // (id << 40 | start) leaves bits 62 and 63 for the guard's flags.
        debug_assert_eq!(me.0 & !STAMP_MASK, 0, "a stamp above bit 61");
        RawLockGuard {
            lock: self,
            word: me.0 | (u64::from(owner_died) * OWNER_DIED),
            _not_send: PhantomData,
        }
    }

    #[inline]
    fn unlock(&self, me: u64) {
        // SYNC POINT: Release pairs with the Acquire of the next locker.
        if self
            .state
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow(me);
        }
    }

    #[cold]
    fn unlock_slow(&self, me: u64) {
        // Count contended unlocks (we hold the lock: no other writer of aux).
        let a = self.aux.load(Ordering::Relaxed);
        let n = (a.wrapping_add(1)) & COUNT_MASK;
        self.aux.store((a & DIED) | n, Ordering::Relaxed);
        let mut w = self.state.load(Ordering::Relaxed);
        let (fair, new) = loop {
            if w & HANDOFF != 0 || w & STAMP_MASK != me {
                // Not ours any more: only a scribbler can have done this.
                return;
            }
            // Only a waiter sets WAITERS: without it nobody needs the hand-off.
            let fair = n % FAIR_EVERY == 0 && w & WAITERS != 0;
            let new = if fair {
                HANDOFF | WAITERS | now_ms()
            } else {
                0
            };
            // SYNC POINT: Release hands the data to the next holder; Acquire
            // orders our `wake` bump after the sleepers' reads of it.
            match self
                .state
                .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break (fair, new),
                Err(cur) => w = cur,
            }
        };
        if w & WAITERS == 0 {
            return;
        }
        self.wake.word().fetch_add(1, Ordering::Release);
        let woke = self.wake.wake_one();
        if fair
            && woke == 0
            && self
                .state
                .compare_exchange(new, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // Nobody was asleep after all (WAITERS is kept set
            // conservatively): the lock is free again, and whoever went to
            // sleep on the reserved state meanwhile must look again.
            self.wake.word().fetch_add(1, Ordering::Release);
            self.wake.wake_one();
        }
    }
}

/// Proof that this thread holds a [`RawLock`]; unlocks on drop.
///
/// Not `Send`: the lock records the thread that holds it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RawLockGuard<'a> {
    lock: &'a RawLock,
    /// The holder's stamp (what `state` holds, below bit 62) and, above
    /// it, `OWNER_DIED` and `DEFER`. One word, so that the guard is two
    /// words, which a `Result` or `Option` of it moves in registers: a
    /// guard of a stamp and two `bool`s (and the held-lock key, 56 bytes in
    /// all) was copied through memory three times per `Lock::lock`, each
    /// copy reading whole what had just been stored field by field, which
    /// stalled on the store buffer.
    word: u64,
    _not_send: PhantomData<*const ()>,
}

/// In [`RawLockGuard::word`]: this acquisition reports a dead holder.
const OWNER_DIED: u64 = 1 << 62;
/// In [`RawLockGuard::word`]: leave the "a holder died" mark for the next
/// guard (set by crate internals that lock for one read or write and cannot
/// repair).
const DEFER: u64 = 1 << 63;

impl RawLockGuard<'_> {
    /// True when this acquisition took the lock over from a thread or
    /// process that died holding it — or when an earlier acquisition did and
    /// no guard that reported it has been dropped since (the mark stays
    /// until a holder that was told lets go). The data the lock protects may
    /// be half updated; this holder should repair it.
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// assert!(!lock.lock()?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.word & OWNER_DIED != 0
    }

    /// Keeps the "a holder died" mark for the next guard, for callers that
    /// take the lock for one read or write and cannot repair the data.
    pub(crate) fn defer_owner_died(&mut self) {
        self.word |= DEFER;
    }
}

impl Drop for RawLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let stamp = self.word & STAMP_MASK;
        let tid = TaskStamp(stamp).tid();
        sync::held_remove(self.lock as *const RawLock as usize, tid);
        if sync::current_stamp().tid() != tid {
            // A forked child's copy of its parent's guard: the lock is the
            // parent thread's, not ours to release.
            return;
        }
        if self.word & (OWNER_DIED | DEFER) == OWNER_DIED {
            // The holder that was told has had its chance to repair.
            self.lock.aux.fetch_and(!DIED, Ordering::Relaxed);
        }
        self.lock.unlock(stamp);
    }
}

impl fmt::Debug for RawLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawLockGuard")
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

mod kept;
mod ready;
#[cfg(all(test, not(loom)))]
pub(crate) mod tests;
