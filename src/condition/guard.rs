//! `ConditionGuard`: the lock of a `Condition`, held, with the methods
//! that wait and notify through it.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::Condition;
use crate::error::{Error, OrNamed, Origin, Result};
use crate::raw::{RawCondition, Waited};
use crate::sync::Deadline;

/// The lock of a [`Condition`], held by this thread: wait and notify
/// through it. Dropping it releases the lock (one level of an `RLock`).
/// Not `Send`: the lock records the thread that holds it.
///
/// ```
/// use std::time::Duration;
/// let cond = shmkit::Condition::create_unique()?;
/// let mut g = cond.lock()?;
/// let w = g.wait_timeout(Duration::from_millis(1))?;
/// assert!(w.timed_out);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    owner_died: bool,
    /// A notify through this guard released waiters whose wake-up is
    /// issued once the lock is let go (by a wait or the drop).
    wake: std::cell::Cell<bool>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

impl<'a> ConditionGuard<'a> {
    pub(super) fn new(cond: &'a Condition, owner_died: bool) -> ConditionGuard<'a> {
        ConditionGuard {
            cond,
            owner_died,
            wake: std::cell::Cell::new(false),
            _not_send: PhantomData,
        }
    }

    /// True when the lock was last taken (by [`lock`](Condition::lock) or
    /// by a wait taking it back) over a holder that died; the data it
    /// protects may need repair.
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// assert!(!cond.lock()?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    fn note(&mut self, w: Result<Waited>) -> Result<Waited> {
        let w = w?;
        self.owner_died = w.owner_died;
        Ok(w)
    }

    /// [`Condition::wait`], with the lock this guard holds.
    ///
    /// # Errors
    /// [`Error::Full`](crate::Error::Full) if 64 threads already wait.
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// let other = shmkit::Condition::open(cond.name())?;
    /// let mut g = cond.lock()?;
    /// let t = std::thread::spawn(move || {
    ///     while other.waiting() == 0 { std::thread::yield_now(); }
    ///     other.lock().and_then(|g| g.notify(1))
    /// });
    /// assert!(!g.wait()?.timed_out);
    /// drop(g);
    /// assert_eq!(t.join().unwrap()?, 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait(&mut self) -> Result<Waited> {
        let w = self.cond.wait_waking(Deadline::NEVER, self.wake.take());
        self.note(w.or_named(self.cond.at("wait")))
    }

    /// [`Condition::wait_timeout`], with the lock this guard holds.
    ///
    /// # Errors
    /// As [`wait`](ConditionGuard::wait).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// let mut g = cond.lock()?;
    /// assert!(g.wait_timeout(std::time::Duration::ZERO)?.timed_out);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Waited> {
        let w = self
            .cond
            .wait_waking(Deadline::after(timeout), self.wake.take());
        self.note(w.or_named(self.cond.at("wait_timeout")))
    }

    /// [`Condition::wait_for`], with the lock this guard holds.
    ///
    /// # Errors
    /// As [`wait`](ConditionGuard::wait).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// let mut g = cond.lock()?;
    /// assert!(!g.wait_for(|| true)?.timed_out);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_for(&mut self, pred: impl FnMut() -> bool) -> Result<Waited> {
        let w = self.cond.wait_for_waking(pred, Deadline::NEVER, &self.wake);
        self.note(w.or_named(self.cond.at("wait_for")))
    }

    /// [`Condition::wait_for_timeout`], with the lock this guard holds.
    ///
    /// # Errors
    /// As [`wait`](ConditionGuard::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = shmkit::Condition::create_unique()?;
    /// let mut g = cond.lock()?;
    /// assert!(g.wait_for_timeout(|| false, Duration::from_millis(5))?.timed_out);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_for_timeout(
        &mut self,
        pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<Waited> {
        let w = self
            .cond
            .wait_for_waking(pred, Deadline::after(timeout), &self.wake);
        self.note(w.or_named(self.cond.at("wait_for_timeout")))
    }

    /// [`Condition::notify`], with the lock this guard holds.
    ///
    /// # Errors
    /// None while the guard holds the lock (the `Result` is `notify`'s).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// assert_eq!(cond.lock()?.notify(3)?, 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn notify(&self, n: usize) -> Result<usize> {
        let c = self.cond;
        if !RawCondition::held(c.cond_lock()) {
            return Err(Error::NotOwner {
                origin: Origin::UNKNOWN,
            })
            .or_named(c.at("notify"));
        }
        // The wake-up waits until this guard lets the lock go, so that the
        // released waiters find it free instead of sleeping on it.
        let released = c.raw().notify_deferred(n);
        if released > 0 {
            self.wake.set(true);
        }
        Ok(released)
    }

    /// [`Condition::notify_all`], with the lock this guard holds.
    ///
    /// # Errors
    /// As [`notify`](ConditionGuard::notify).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// assert_eq!(cond.lock()?.notify_all()?, 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn notify_all(&self) -> Result<usize> {
        self.notify(usize::MAX).or_named(self.cond.at("notify_all"))
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        // A forked child's copy of its parent's guard is not ours: the
        // release is `NotOwner` and changes nothing.
        let _ = self.cond.release();
        if self.wake.get() {
            self.cond.raw().wake();
        }
    }
}
