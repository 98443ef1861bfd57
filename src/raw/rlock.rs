//! `RawRLock`: a recursive robust lock (Python's `multiprocessing.RLock`)
//! that any thread of any process mapping it can take, and take again.
//!
//! # Algorithm
//!
//! A [`RawLock`] and nothing else in shared memory. The outermost
//! acquisition takes the lock and keeps it without a guard
//! (`RawLock::lock_kept`: the thread's own record of held locks says it
//! holds it). The owner's recursion level, and whether its outermost
//! acquisition took the lock over from a dead holder, live in the owner
//! thread itself (`sync::level_get`/`level_set`, a thread-local table):
//! only the owner needs them, and in shared memory they could be scribbled
//! by a peer, or written by a dying owner after the store that a
//! survivor's takeover synchronises with (the loom model found that one).
//! Ownership is decided by that record *and* the lock's stamp, never by
//! the stamp alone, which a peer can forge. A nested acquisition raises the
//! level; a release lowers it, and the one that reaches 0 unlocks. A
//! release by any other thread is [`Error::NotOwner`] and changes nothing.
//!
//! Owner death is the lock's: a waiter takes it over and is told
//! (`owner_died`), starting at level 1 (the dead owner's level died with
//! it). The lock's `DIED` mark stays until the told owner's outermost
//! release, as a guard's drop clears it for `Lock`.
//!
//! # Crash cases
//!
//! | killed …                        | left behind                   | recovery |
//! |---------------------------------|-------------------------------|----------|
//! | before the lock is taken        | nothing                       | — |
//! | holding it, at any level        | the lock held by its stamp    | takeover, `owner_died`, level 1 |
//! | in the last release, before the unlock | the lock held          | takeover, as above |
//!
//! Nothing here reads shared memory but the lock word, which `RawLock`
//! already treats as hostile.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::{Error, Origin, Result};
use crate::raw::lock::RawLock;
use crate::raw::spin::Spin;
use crate::sync;

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
const ORIGIN: Origin = Origin::new("RawRLock", "");

/// A recursive robust lock; see the module documentation.
#[repr(C)]
pub struct RawRLock {
    lock: RawLock,
}

impl Default for RawRLock {
    fn default() -> Self {
        RawRLock::new()
    }
}

impl fmt::Debug for RawRLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRLock")
            .field("owner_tid", &self.lock.owner_tid())
            .finish()
    }
}

/// How an acquisition went: whether it took the lock over from a holder
/// that died (the data it protects may need repair). Nested acquisitions by
/// the owner report `false`: the outermost one was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    /// See [`RawLockGuard::owner_died`](crate::raw::RawLockGuard::owner_died).
    pub owner_died: bool,
}

impl RawRLock {
    /// A free lock, for use within one process (or under loom).
    ///
    /// ```
    /// let l = shmkit::raw::RawRLock::new();
    /// assert!(!l.is_locked());
    /// ```
    pub fn new() -> RawRLock {
        RawRLock {
            lock: RawLock::new(),
        }
    }

    /// The bytes a `RawRLock` needs (16); align the region to 8.
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawRLock::required_size(), 16);
    /// ```
    pub const fn required_size() -> usize {
        std::mem::size_of::<RawRLock>()
    }

    /// Writes a free lock at `ptr` and returns it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and
    /// those bytes must be accessed only through `RawRLock`s (in any
    /// process) for `'a`. No other process may use it during this call.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small.
    ///
    /// ```
    /// let mut buf = [0u64; 2];
    /// // SAFETY: `buf` outlives `l` and is used only through it.
    /// let l = unsafe { shmkit::raw::RawRLock::init_in(buf.as_mut_ptr().cast(), 16)? };
    /// l.acquire()?;
    /// l.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawRLock> {
        super::check_region::<RawRLock>(ptr, len, "RawRLock")?;
        let p = ptr.cast::<RawRLock>();
        // SAFETY: aligned and large enough (checked), and the caller gives
        // us exclusive use of the region during initialisation.
        unsafe {
            p.write(RawRLock::new());
            Ok(&*p)
        }
    }

    /// Uses the lock another process initialised at `ptr`. Any bytes are
    /// accepted (a garbage lock word is a dead owner's, taken over).
    ///
    /// # Safety
    /// As for [`init_in`](RawRLock::init_in), except that the bytes have
    /// already been initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small.
    ///
    /// ```
    /// let mut buf = [0u64; 2];
    /// // SAFETY: `buf` outlives `l` and is used only through it.
    /// let l = unsafe { shmkit::raw::RawRLock::attach(buf.as_mut_ptr().cast(), 16)? };
    /// assert_eq!(l.level(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawRLock> {
        super::check_region::<RawRLock>(ptr, len, "RawRLock")?;
        // SAFETY: aligned and large enough (checked); every field is an
        // atomic integer, so any bit pattern is a valid value, and other
        // processes touch it only atomically (the caller's contract).
        Ok(unsafe { &*ptr.cast::<RawRLock>() })
    }

    /// Takes the lock, or raises the level if the calling thread owns it;
    /// waits as long as it takes (taking it over from a dead holder).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] past `u32::MAX` levels.
    ///
    /// ```
    /// let l = shmkit::raw::RawRLock::new();
    /// l.acquire()?;
    /// l.acquire()?;
    /// assert_eq!(l.level(), 2);
    /// l.release()?;
    /// l.release()?;
    /// assert!(!l.is_locked());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<Acquired> {
        self.acquire_in(None, None, Spin::Adaptive)
    }

    /// [`acquire`](RawRLock::acquire), or [`Error::Timeout`] once
    /// `timeout` has passed (never earlier).
    ///
    /// # Errors
    /// As `acquire`, and `Timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = shmkit::raw::RawRLock::new();
    /// l.acquire_timeout(Duration::from_millis(5))?;
    /// l.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Acquired> {
        self.acquire_in(None, Some(timeout), Spin::Adaptive)
    }

    /// [`acquire`](RawRLock::acquire) if that needs no waiting: `None` if
    /// another thread holds it.
    ///
    /// # Errors
    /// As `acquire`.
    ///
    /// ```
    /// let l = shmkit::raw::RawRLock::new();
    /// assert!(l.try_acquire()?.is_some());
    /// assert!(l.try_acquire()?.is_some()); // the owner, again
    /// l.release()?;
    /// l.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<Option<Acquired>> {
        self.try_acquire_in(None)
    }

    /// Lowers the calling thread's level; the release that reaches 0 lets
    /// the lock go.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold it (nothing
    /// changes).
    ///
    /// ```
    /// let l = shmkit::raw::RawRLock::new();
    /// assert!(matches!(l.release(), Err(shmkit::Error::NotOwner { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        self.release_in(None)
    }

    /// Takes it (or raises the level) and returns a guard that releases
    /// one level when dropped.
    ///
    /// # Errors
    /// As [`acquire`](RawRLock::acquire).
    ///
    /// ```
    /// let l = shmkit::raw::RawRLock::new();
    /// let outer = l.lock()?;
    /// let inner = l.lock()?;
    /// drop(outer); // any order: the last one lets go
    /// assert!(l.is_locked());
    /// drop(inner);
    /// assert!(!l.is_locked());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock(&self) -> Result<RawRLockGuard<'_>> {
        let a = self.acquire()?;
        Ok(RawRLockGuard {
            lock: self,
            object: None,
            owner_died: a.owner_died,
            _not_send: PhantomData,
        })
    }

    /// Whether some thread holds it (a snapshot).
    ///
    /// ```
    /// assert!(!shmkit::raw::RawRLock::new().is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// The calling thread's level: 0 unless it holds the lock.
    ///
    /// ```
    /// let l = shmkit::raw::RawRLock::new();
    /// let _g = l.lock()?;
    /// assert_eq!(l.level(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn level(&self) -> u32 {
        self.level_in(None)
    }

    /// The thread id of the holder, if any (a snapshot).
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawRLock::new().owner_tid(), None);
    /// ```
    pub fn owner_tid(&self) -> Option<u32> {
        self.lock.owner_tid()
    }

    // ---- for handles, which name the shared object ------------------------

    /// The lock underneath, for waiting on it being free.
    pub(crate) fn inner(&self) -> &RawLock {
        &self.lock
    }

    pub(crate) fn level_in(&self, object: Option<(u64, u64)>) -> u32 {
        if self.lock.held_by_me(object) {
            self.level_of(object).0
        } else {
            0
        }
    }

    pub(crate) fn acquire_in(
        &self,
        object: Option<(u64, u64)>,
        timeout: Option<Duration>,
        spin: Spin,
    ) -> Result<Acquired> {
        if let Some(a) = self.nest(object)? {
            return Ok(a);
        }
        let died = self.lock.lock_kept(object, timeout, spin)?;
        Ok(self.first(object, died))
    }

    pub(crate) fn try_acquire_in(&self, object: Option<(u64, u64)>) -> Result<Option<Acquired>> {
        if let Some(a) = self.nest(object)? {
            return Ok(Some(a));
        }
        Ok(self
            .lock
            .try_lock_kept(object)?
            .map(|died| self.first(object, died)))
    }

    pub(crate) fn release_in(&self, object: Option<(u64, u64)>) -> Result<()> {
        if !self.lock.held_by_me(object) {
            // Forgets stale records of ours, if any (a lock taken over by
            // another task since); changes nothing else.
            self.set_level(object, 0, false);
            return self.lock.unlock_kept(object, false).map(drop);
        }
        // One step down: a level of 1 (or none) is forgotten, and the lock
        // let go.
        match self.level_step(object, false) {
            (0 | 1, told) => self.lock.unlock_kept(object, told).map(drop),
            _ => Ok(()),
        }
    }

    /// Lets the lock go whatever the calling thread's level (a condition's
    /// wait); the level, to [`reacquire`](RawRLock::reacquire) with. A
    /// mark of a dead holder that this thread was told of is cleared, as by
    /// its outermost release.
    pub(crate) fn release_all(&self, object: Option<(u64, u64)>) -> Result<u32> {
        if !self.lock.held_by_me(object) {
            return Err(Error::NotOwner { origin: ORIGIN });
        }
        let (level, told) = self.level_of(object);
        self.set_level(object, 0, false);
        self.lock.unlock_kept(object, told)?;
        Ok(level.max(1))
    }

    /// Takes the lock back at `level` after [`release_all`](RawRLock::release_all);
    /// whether a dead holder's mark was found.
    pub(crate) fn reacquire(
        &self,
        object: Option<(u64, u64)>,
        level: u32,
        spin: Spin,
    ) -> Result<bool> {
        let died = self.lock.lock_kept(object, None, spin)?;
        self.set_level(object, level.max(1), died);
        Ok(died)
    }

    /// A nested acquisition, if the calling thread owns the lock.
    fn nest(&self, object: Option<(u64, u64)>) -> Result<Option<Acquired>> {
        if !self.lock.held_by_me(object) {
            return Ok(None);
        }
        match self.level_step(object, true) {
            (u32::MAX, _) => Err(Error::InvalidArgument(
                "RLock: acquired u32::MAX times by one thread".into(),
            )),
            // Held, with no level recorded (a guard-less `lock_kept` whose
            // record was lost in thread teardown): the one level it has.
            (0, told) => {
                self.set_level(object, 2, told);
                Ok(Some(Acquired { owner_died: false }))
            }
            _ => Ok(Some(Acquired { owner_died: false })),
        }
    }

    /// The outermost acquisition, once the lock is ours.
    fn first(&self, object: Option<(u64, u64)>, died: bool) -> Acquired {
        self.set_level(object, 1, died);
        Acquired { owner_died: died }
    }

    fn level_of(&self, object: Option<(u64, u64)>) -> (u32, bool) {
        sync::level_get(self.lock.key(object), sync::current_stamp().tid())
    }

    fn level_step(&self, object: Option<(u64, u64)>, up: bool) -> (u32, bool) {
        sync::level_step(self.lock.key(object), sync::current_stamp().tid(), up)
    }

    fn set_level(&self, object: Option<(u64, u64)>, level: u32, told: bool) {
        sync::level_set(
            self.lock.key(object),
            sync::current_stamp().tid(),
            level,
            told,
        );
    }
}

/// One level of a [`RawRLock`] held by this thread; released when dropped.
/// Not `Send`: the lock records the thread that holds it.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RawRLockGuard<'a> {
    lock: &'a RawRLock,
    object: Option<(u64, u64)>,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl RawRLockGuard<'_> {
    /// True when this acquisition took the lock over from a holder that
    /// died (only the outermost acquisition can be told).
    ///
    /// ```
    /// let l = shmkit::raw::RawRLock::new();
    /// assert!(!l.lock()?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    pub(crate) fn new_in(
        lock: &RawRLock,
        object: Option<(u64, u64)>,
        a: Acquired,
    ) -> RawRLockGuard<'_> {
        RawRLockGuard {
            lock,
            object,
            owner_died: a.owner_died,
            _not_send: PhantomData,
        }
    }
}

impl Drop for RawRLockGuard<'_> {
    fn drop(&mut self) {
        // A forked child's copy of its parent's guard is not ours: its
        // release is `NotOwner` and changes nothing.
        let _ = self.lock.release_in(self.object);
    }
}

impl fmt::Debug for RawRLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRLockGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
