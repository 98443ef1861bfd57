//! `RawLock`: a robust, futex-based mutual-exclusion lock for shared memory.
//!
//! The lock word is a futex that holds the owner's kernel thread id, as in
//! Drepper's "Futexes Are Tricky" mutex with the owner recorded (Linux's
//! robust-futex word has the same shape, without the kernel's help here).
//! Next to it, the owner records its [`TaskStamp`] (thread id and start
//! time), so that a waiter can tell a dead owner from a live one even after
//! the id is reused. No `pthread_mutex_t` lives in shared memory.
//!
//! # The word
//!
//! | bits   | name       | meaning                                                    |
//! |--------|------------|------------------------------------------------------------|
//! | 0..22  | `TID_MASK` | the owner's thread id (Linux ids are below 2^22)           |
//! | 29     | `HANDOFF`  | free, but reserved for a thread that has already slept     |
//! | 31     | `WAITERS`  | someone may be asleep on the futex: unlock must wake       |
//!
//! | word                   | state                                  | what a survivor does when the owner died |
//! |------------------------|----------------------------------------|------------------------------------------|
//! | `0`                    | free                                   | takes it                                 |
//! | `tid`                  | held, nobody asleep                    | a waiter finds `tid` dead, takes over    |
//! | `tid \| WAITERS`       | held, sleepers                         | same                                     |
//! | `HANDOFF \| WAITERS`   | free, reserved for a woken sleeper     | any thread that has slept takes it (the woken one may have died) |
//! | anything else          | only a scribbler writes it             | the id part names no live owner: taken over |
//!
//! # Paths
//!
//! - lock: one CAS `0 → tid` (fast path), then a short spin, then sleep on
//!   the futex with `WAITERS` set. Sleeps last at most
//!   20 ms (the liveness interval); after each timed-out sleep the waiter looks whether
//!   the owner still runs (`/proc/<tid>/stat`, start time compared), and if
//!   not, takes the lock over with a CAS from the exact word it saw, and is
//!   told so (`owner_died`).
//! - unlock: clear the stamp, then one CAS `tid → 0`; only if `WAITERS` was
//!   set does it wake one sleeper (one syscall). Every 32nd contended unlock
//!   is a fair one: the word becomes `HANDOFF | WAITERS`, which only a thread
//!   that has slept may take, so a thread that relocks in a tight loop cannot
//!   starve the others (parking_lot's "eventual fairness", by count instead
//!   of by time).
//! - the takeover sets a sticky `DIED` bit in `aux`; every guard taken
//!   while it is set reports `owner_died`, and the first such guard to drop
//!   clears it (as `EOWNERDEAD` stays until `pthread_mutex_consistent`).
//!   Crate-internal one-shot users (`Array::get`, `Value::store`, …) leave
//!   it for the next guard, since they cannot repair anything.
//! - a live owner is never robbed: the takeover needs the owner's thread to
//!   be gone (or a zombie), and the CAS needs the word unchanged since.

use std::fmt;
use std::marker::PhantomData;

use crate::error::{Error, Result};
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Futex, Ordering, TaskStamp};

const TID_MASK: u32 = (1 << 22) - 1;
/// In `aux`: a holder died, and no guard that reported it has dropped yet.
const DIED: u32 = 1 << 31;
const COUNT_MASK: u32 = DIED - 1;
const HANDOFF: u32 = 1 << 29;
const WAITERS: u32 = 1 << 31;

/// Every this many contended unlocks, hand the lock to a sleeper.
#[cfg(not(loom))]
const FAIR_EVERY: u32 = 32;
#[cfg(loom)]
const FAIR_EVERY: u32 = 2;

/// How many times `lock` spins before it sleeps.
const SPIN_LIMIT: u32 = 100;

/// A robust lock that any thread of any process mapping it can take.
///
/// 16 bytes, `repr(C)`, 8-byte aligned; all-zero bytes are an unlocked lock.
/// See the module documentation for the protocol. Use it through
/// [`Lock`](crate::Lock), or place it yourself with
/// [`init_in`](RawLock::init_in) / [`attach`](RawLock::attach).
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
    word: Futex,
    /// Bit 31: `DIED`, sticky until a guard that reported it drops; bits
    /// 0..31: contended unlocks, counted for the fair hand-off.
    aux: AtomicU32,
    owner: AtomicU64,
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

impl RawLock {
    /// An unlocked lock, for use within one process (or under loom).
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// assert!(!lock.is_locked());
    /// ```
    pub fn new() -> RawLock {
        RawLock {
            word: Futex::new(0),
            aux: AtomicU32::new(0),
            owner: AtomicU64::new(0),
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
        let w = self.word.word().load(Ordering::Relaxed);
        w != 0 && w & HANDOFF == 0
    }

    /// The thread id of the holder, if any (a snapshot).
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// assert_eq!(lock.owner_tid(), None);
    /// ```
    pub fn owner_tid(&self) -> Option<u32> {
        let w = self.word.word().load(Ordering::Relaxed);
        (w != 0 && w & HANDOFF == 0).then_some(w & TID_MASK)
    }

    /// Takes the lock, waiting as long as it takes. If the holder died, the
    /// lock is taken over within about 20 ms (the liveness interval) and the guard's
    /// [`owner_died`](RawLockGuard::owner_died) is true.
    ///
    /// # Errors
    /// [`Error::Deadlock`] if the calling thread already holds it.
    ///
    /// ```
    /// let lock = shmkit::raw::RawLock::new();
    /// let g = lock.lock()?;
    /// assert!(matches!(lock.lock(), Err(shmkit::Error::Deadlock)));
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn lock(&self) -> Result<RawLockGuard<'_>> {
        self.lock_until(Deadline::NEVER)
    }

    /// Takes the lock, or fails with [`Error::Timeout`] once `timeout` has
    /// passed (never earlier).
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
        self.lock_until(Deadline::after(timeout))
    }

    /// Takes the lock if it is free (or its holder is dead), without waiting.
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
        let me = sync::current_stamp();
        let word = self.word.word();
        let mut w = word.load(Ordering::Relaxed);
        loop {
            let (new, died) = if w == 0 {
                (me.tid(), false)
            } else if w & HANDOFF == 0 && w & TID_MASK != me.tid() && !self.owner_alive(w) {
                (me.tid() | (w & WAITERS), true)
            } else {
                return Ok(None);
            };
            match word.compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(Some(self.acquired(me, died))),
                Err(cur) => w = cur,
            }
        }
    }

    #[inline]
    fn lock_until(&self, deadline: Deadline) -> Result<RawLockGuard<'_>> {
        let me = sync::current_stamp();
        // SYNC POINT: Acquire pairs with the Release in `unlock`.
        if self
            .word
            .word()
            .compare_exchange(0, me.tid(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(self.acquired(me, false));
        }
        self.lock_slow(me, deadline)
    }

    #[cold]
    fn lock_slow(&self, me: TaskStamp, deadline: Deadline) -> Result<RawLockGuard<'_>> {
        let word = self.word.word();
        // Spin while nobody sleeps: the holder may be about to let go.
        for _ in 0..SPIN_LIMIT {
            let w = word.load(Ordering::Relaxed);
            if w == 0 {
                if word
                    .compare_exchange(0, me.tid(), Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(self.acquired(me, false));
                }
                continue;
            }
            if w & WAITERS != 0 {
                break;
            }
            sync::spin_loop();
        }
        let mut slept = false;
        let mut check_owner = false;
        let mut owner_checked = false;
        let mut deadline_hit = false;
        loop {
            let w = word.load(Ordering::Relaxed);
            let take = match self.may_take(w, me, slept)? {
                Some(died) => Some(died),
                // After a timed-out sleep, or before giving up: is the
                // holder still there?
                None if check_owner && w & HANDOFF == 0 => {
                    owner_checked = true;
                    (!self.owner_alive(w)).then_some(true)
                }
                None => None,
            };
            if let Some(died) = take {
                // Keep WAITERS set: others may still be asleep.
                if word
                    .compare_exchange(w, me.tid() | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(self.acquired(me, died));
                }
                continue;
            }
            if deadline_hit || deadline.expired() {
                if !owner_checked {
                    // A dead holder is taken over even by a call that has
                    // no time left to wait, as by `try_lock`.
                    check_owner = true;
                    owner_checked = true;
                    continue;
                }
                return Err(Error::Timeout);
            }
            if w & WAITERS == 0
                && word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let (until, is_deadline) = deadline.or_within(sync::LIVENESS_INTERVAL);
            let woken = self.word.wait(w | WAITERS, until);
            slept = true;
            check_owner = !woken;
            deadline_hit = !woken && is_deadline;
        }
    }

    /// Takes the lock for one read or write by crate internals that cannot
    /// repair data: a dead holder's mark is left for the next guard.
    pub(crate) fn lock_one_shot(&self) -> Result<RawLockGuard<'_>> {
        let mut g = self.lock()?;
        g.defer_owner_died();
        Ok(g)
    }

    /// Whether a waiter that saw `w` may take the lock now: `Some(owner_died)`.
    fn may_take(&self, w: u32, me: TaskStamp, slept: bool) -> Result<Option<bool>> {
        if w == 0 {
            return Ok(Some(false));
        }
        if w & HANDOFF != 0 {
            return Ok(slept.then_some(false));
        }
        if w & TID_MASK == me.tid() {
            // Held by our thread id: by us, or by a dead thread whose id we
            // inherited (we are here, so we are not between CAS and stamp).
            // (A stamp with an unknown start time may be ours: never guess "dead".)
            if TaskStamp(self.owner.load(Ordering::Relaxed)).could_be(me) {
                return Err(Error::Deadlock);
            }
            return Ok(Some(true));
        }
        Ok(None)
    }

    fn owner_alive(&self, w: u32) -> bool {
        let stamp = TaskStamp(self.owner.load(Ordering::Relaxed));
        sync::task_alive(w & TID_MASK, Some(stamp))
    }

    #[inline]
    fn acquired(&self, me: TaskStamp, took_over: bool) -> RawLockGuard<'_> {
        self.owner.store(me.0, Ordering::Relaxed);
        // `aux` is only written by holders, so the lock orders these.
        let owner_died = if took_over {
            self.aux.fetch_or(DIED, Ordering::Relaxed);
            true
        } else {
            self.aux.load(Ordering::Relaxed) & DIED != 0
        };
        RawLockGuard {
            lock: self,
            tid: me.tid(),
            owner_died,
            defer: false,
            _not_send: PhantomData,
        }
    }

    #[inline]
    fn unlock(&self, me: u32) {
        self.owner.store(0, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire of the next locker.
        if self
            .word
            .word()
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow(me);
        }
    }

    #[cold]
    fn unlock_slow(&self, me: u32) {
        let word = self.word.word();
        // Count contended unlocks (we hold the lock: no other writer of aux).
        let a = self.aux.load(Ordering::Relaxed);
        let n = (a.wrapping_add(1)) & COUNT_MASK;
        self.aux.store((a & DIED) | n, Ordering::Relaxed);
        let fair = n % FAIR_EVERY == 0;
        let new = if fair { HANDOFF | WAITERS } else { 0 };
        let mut w = word.load(Ordering::Relaxed);
        loop {
            if w & TID_MASK != me || w & HANDOFF != 0 {
                // Not ours any more: only a scribbler can have done this.
                return;
            }
            match word.compare_exchange(w, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        if w & WAITERS != 0 {
            let woke = self.word.wake_one();
            if fair && woke == 0 {
                // Nobody was asleep after all (WAITERS is kept set
                // conservatively): do not keep the lock reserved for no one.
                if word
                    .compare_exchange(new, 0, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    // Someone may have gone to sleep on the reserved word
                    // meanwhile; let it look again.
                    self.word.wake_one();
                }
            }
        } else if fair {
            // Only a waiter sets WAITERS, and none had: release for real.
            let _ = word.compare_exchange(new, 0, Ordering::Release, Ordering::Relaxed);
        }
    }
}

/// Proof that this thread holds a [`RawLock`]; unlocks on drop.
///
/// Not `Send`: the lock records the thread that holds it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RawLockGuard<'a> {
    lock: &'a RawLock,
    /// The holder's thread id (what the word holds).
    tid: u32,
    owner_died: bool,
    /// Leave the "a holder died" mark for the next guard: set by crate
    /// internals that lock for one read or write and cannot repair.
    defer: bool,
    _not_send: PhantomData<*const ()>,
}

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
        self.owner_died
    }

    /// Keeps the "a holder died" mark for the next guard, for callers that
    /// take the lock for one read or write and cannot repair the data.
    pub(crate) fn defer_owner_died(&mut self) {
        self.defer = true;
    }
}

impl Drop for RawLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.owner_died && !self.defer {
            // The holder that was told has had its chance to repair.
            self.lock.aux.fetch_and(!DIED, Ordering::Relaxed);
        }
        self.lock.unlock(self.tid);
    }
}

impl fmt::Debug for RawLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawLockGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
