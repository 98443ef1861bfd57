//! The lock held without a guard: a recursive lock's outermost level
//! (`RawRLock`).

use super::*;

impl RawLock {
    // ---- held without a guard (a recursive lock's outermost level) ------

    /// Takes the lock (as `lock_in`) for a holder that keeps it without a
    /// guard: the calling thread's record says it holds it until
    /// [`unlock_kept`](RawLock::unlock_kept). Whether a dead holder's mark
    /// is on it (see [`RawLockGuard::owner_died`]).
    pub(crate) fn lock_kept(
        &self,
        object: Option<(u64, u64)>,
        timeout: Option<std::time::Duration>,
        spin: Spin,
    ) -> Result<bool> {
        let g = self.lock_in(object, timeout, spin)?;
        let died = g.owner_died();
        // The guard's drop would unlock: the holder keeps the lock, and
        // the record of it, until `unlock_kept`.
        std::mem::forget(g);
        Ok(died)
    }

    /// [`lock_kept`](RawLock::lock_kept) without waiting: `None` if busy.
    pub(crate) fn try_lock_kept(&self, object: Option<(u64, u64)>) -> Result<Option<bool>> {
        Ok(self.try_lock_in(object)?.map(|g| {
            let died = g.owner_died();
            std::mem::forget(g);
            died
        }))
    }

    /// Whether the calling thread holds the lock: its own record says so
    /// and the lock names it (a forged stamp alone does not count, nor a
    /// record of a lock that someone took over since).
    pub(crate) fn held_by_me(&self, object: Option<(u64, u64)>) -> bool {
        let me = sync::current_stamp();
        if !sync::held_contains(self.key(object), me.tid()) {
            return false;
        }
        let w = self.state.load(Ordering::Relaxed);
        w & HANDOFF == 0 && w & STAMP_MASK == me.0
    }

    /// Releases a lock taken with [`lock_kept`](RawLock::lock_kept) by the
    /// calling thread; `told`: that acquisition reported a dead holder, so
    /// the mark is cleared (as a guard that reported it does on drop).
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold it (nothing
    /// changes, except that a stale record of a lock taken over by another
    /// task is forgotten).
    ///
    /// The record forgotten is the lock's, through whichever handle it was
    /// taken (another mapping of the segment); its key is returned, so that
    /// a condition's wait can restore it as it was.
    pub(crate) fn unlock_kept(&self, object: Option<(u64, u64)>, told: bool) -> Result<HeldKey> {
        let me = sync::current_stamp();
        let key = self.key(object);
        if !self.held_by_me(object) {
            sync::held_forget(key, me.tid());
            return Err(Error::NotOwner { origin: ORIGIN });
        }
        let record = sync::held_forget(key, me.tid()).unwrap_or(key);
        if told {
            self.aux.fetch_and(!DIED, Ordering::Relaxed);
        }
        self.unlock(me.0);
        Ok(record)
    }

    /// After [`lock_kept`](RawLock::lock_kept) through this mapping: the
    /// record it made is named `record` again, the key a release
    /// ([`unlock_kept`](RawLock::unlock_kept)) returned, so that a guard
    /// of another handle, which forgets its record by its own address,
    /// finds it (a condition's wait under that guard).
    pub(crate) fn rekey_kept(&self, object: Option<(u64, u64)>, record: HeldKey) {
        let key = self.key(object);
        if record != key {
            let tid = sync::current_stamp().tid();
            sync::held_forget(key, tid);
            sync::held_insert(record, tid);
        }
    }
}
