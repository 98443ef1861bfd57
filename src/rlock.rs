//! `RLock`: a named recursive lock shared by processes, robust to a dead
//! holder.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, OrNamed, Result};
use crate::handle::{named_create, named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::spin::{AdaptiveSpin, Spin};
use crate::raw::wait::Source;
use crate::raw::{RawRLock, RawRLockGuard};
use crate::segment::{Options, Spec};
use crate::waitset::{Interest, Waitable};

/// A recursive lock shared by every process that opens its name (Python's
/// `multiprocessing.RLock`), built on [`RawRLock`].
///
/// The thread that holds it may take it again; it is free once every
/// acquisition has been released. Owner identity is per thread (of any
/// process). A release by a thread that does not hold it is
/// [`Error::NotOwner`](crate::Error::NotOwner) and changes nothing. If the
/// holder dies (even by SIGKILL), the next locker takes it over and is
/// told ([`RLockGuard::owner_died`]), as with [`Lock`](crate::Lock).
///
/// Two ways to use it: guards ([`lock`](RLock::lock), each releasing one
/// level when dropped, in any order), or Python's explicit
/// [`acquire`](RLock::acquire) and [`release`](RLock::release).
///
/// ```
/// use shmkit::RLock;
///
/// let lock = RLock::create_unique()?;
/// let other = RLock::open(lock.name())?; // as another process would
/// let outer = lock.lock()?;
/// let inner = lock.lock()?; // the same thread again
/// assert_eq!(lock.level(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!other.is_locked());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct RLock {
    named: Named<RawRLock>,
    spin: AdaptiveSpin,
}

/// One level of an [`RLock`] held by this thread; released when dropped.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    inner: RawRLockGuard<'a>,
}

impl RLockGuard<'_> {
    /// True when this acquisition took the lock over from a thread or
    /// process that died holding it (only an outermost acquisition can be
    /// told); the data it protects may need repair.
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// assert!(!lock.lock()?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.inner.owner_died()
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("name", &self.name())
            .field("owner_tid", &self.raw().owner_tid())
            .field("level", &self.level())
            .finish()
    }
}

impl Core for RawRLock {
    type View = &'static RawRLock;

    fn spec() -> Spec {
        Spec::of(Kind::RLock)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, _created: bool) -> Result<Self::View> {
        // SAFETY: the caller's contract is `RawRLock::attach`'s, which
        // checks alignment and length.
        unsafe { RawRLock::attach(p, len) }.map_err(|e| crate::Error::corrupted("", e.to_string()))
    }
}

named_handle! {
    impl RLock {
        what: "recursive lock",
        path: "shmkit::RLock",
        make: "shmkit::RLock::create_unique()?",
        open_errors: "[`Error::Corrupted`](crate::Error::Corrupted) for a payload too short for a recursive lock",
    }
}

named_create! {
    impl RLock {
        what: "recursive lock",
        path: "shmkit::RLock",
        state: " free",
    }
}

impl RLock {
    fn create_inner(name: Option<&str>, opts: &Options) -> Result<RLock> {
        let init = |p: *mut u8, len: usize| {
            // SAFETY: `p` is the fresh segment's payload of `len` bytes,
            // 64-aligned, not yet published, so nobody else uses it.
            unsafe { RawRLock::init_in(p, len) }.map(drop)
        };
        Named::create(name, 0, RawRLock::required_size(), opts, init).map(RLock::from_named)
    }

    fn from_named(named: Named<RawRLock>) -> RLock {
        RLock {
            named,
            spin: AdaptiveSpin::new(),
        }
    }

    fn named(&self) -> &Named<RawRLock> {
        &self.named
    }

    /// Names this lock and operation `op` in an error (for `or_named`).
    #[inline]
    pub(crate) fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.named().at("RLock", op)
    }

    #[inline]
    pub(crate) fn raw(&self) -> &'static RawRLock {
        self.named.view()
    }

    pub(crate) fn object_id(&self) -> Option<(u64, u64)> {
        self.named.seg().object_id()
    }

    fn guard(&self, a: crate::raw::Acquired) -> RLockGuard<'_> {
        RLockGuard {
            inner: RawRLockGuard::new_in(self.raw(), self.object_id(), a),
        }
    }

    /// Takes the lock (or one more level of it, if this thread holds it),
    /// waiting as long as it takes but taking it over from a dead holder.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) past
    /// `u32::MAX` levels.
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// let a = lock.lock()?;
    /// let b = lock.lock()?;
    /// assert_eq!(lock.level(), 2);
    /// # drop((a, b));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock(&self) -> Result<RLockGuard<'_>> {
        let a = self
            .raw()
            .acquire_in(self.object_id(), None, self.spin.get())
            .or_named(self.at("lock"))?;
        Ok(self.guard(a))
    }

    /// [`lock`](RLock::lock), or [`Error::Timeout`](crate::Error::Timeout)
    /// once `timeout` has passed (never earlier). A nested acquisition by
    /// the holder never waits.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = shmkit::RLock::create_unique()?;
    /// let g = lock.lock_timeout(Duration::from_millis(5))?;
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>> {
        let a = self
            .raw()
            .acquire_in(self.object_id(), Some(timeout), self.spin.get())
            .or_named(self.at("lock_timeout"))?;
        Ok(self.guard(a))
    }

    /// [`lock`](RLock::lock) if that needs no waiting: `None` while another
    /// thread holds it.
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// let g = lock.try_lock()?.expect("free");
    /// let again = lock.try_lock()?.expect("ours");
    /// # drop((g, again));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_lock(&self) -> Result<Option<RLockGuard<'_>>> {
        Ok(self
            .raw()
            .try_acquire_in(self.object_id())
            .or_named(self.at("try_lock"))?
            .map(|a| self.guard(a)))
    }

    /// Python's `acquire()`: takes one level without a guard; whether it
    /// took the lock over from a dead holder. Pair it with
    /// [`release`](RLock::release).
    ///
    /// # Errors
    /// As [`lock`](RLock::lock); with `Some(timeout)`, also
    /// [`Error::Timeout`](crate::Error::Timeout).
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// assert!(!lock.acquire(None)?);
    /// lock.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        Ok(self
            .raw()
            .acquire_in(self.object_id(), timeout, self.spin.get())
            .or_named(self.at("acquire"))?
            .owner_died)
    }

    /// Python's `release()`: lets one level go; the last lets the lock go.
    ///
    /// # Errors
    /// [`Error::NotOwner`](crate::Error::NotOwner) if this thread does not
    /// hold it (nothing changes).
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// assert!(matches!(lock.release(), Err(shmkit::Error::NotOwner { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        self.raw()
            .release_in(self.object_id())
            .or_named(self.at("release"))
    }

    /// How many times this thread holds it: 0 unless it is the owner.
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// assert_eq!(lock.level(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn level(&self) -> u32 {
        self.raw().level_in(self.object_id())
    }

    /// Whether some thread holds it now (a snapshot).
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// let g = lock.lock()?;
    /// assert!(lock.is_locked());
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// Sets how this handle's blocking calls spin before they sleep, as
    /// [`Lock::set_spin`](crate::Lock::set_spin).
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// lock.set_spin(shmkit::Spin::Never);
    /// assert_eq!(lock.spin(), shmkit::Spin::Never);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.spin.set(spin);
    }

    /// This handle's spin setting.
    ///
    /// ```
    /// assert_eq!(shmkit::RLock::create_unique()?.spin(), shmkit::Spin::Adaptive);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spin(&self) -> Spin {
        self.spin.get()
    }

    /// "The lock is free (or its holder died)": for a
    /// [`WaitSet`](crate::WaitSet) or [`wait`](crate::wait). Passing
    /// `&rlock` means the same. Being ready does not reserve it.
    ///
    /// ```
    /// let lock = shmkit::RLock::create_unique()?;
    /// assert!(lock.free_interest().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn free_interest(&self) -> Interest<'_> {
        Interest::new(Source::Lock(self.raw().inner()))
    }
}

/// Waiting on a recursive lock waits for it to be free.
impl Waitable for RLock {
    fn interest(&self) -> Interest<'_> {
        self.free_interest()
    }
}
