//! [`ForkLocal`]: a value built once per fork generation of the process.

use std::sync::atomic::AtomicPtr;

use super::Ordering;

/// A process-wide value built on first use and leaked (never freed), built
/// anew in a child after `fork`: the child never touches the inherited one,
/// whose threads do not exist there and whose mutexes a parent thread may
/// have held at the fork. Lock-free, so it is safe to reach from a forked
/// child of a multi-threaded process.
pub(crate) struct ForkLocal<T: 'static> {
    ptr: AtomicPtr<(u32, T)>,
}

impl<T: Send + Sync + 'static> ForkLocal<T> {
    pub(crate) const fn new() -> ForkLocal<T> {
        ForkLocal {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This fork generation's value, built by `make` if there is none yet.
    /// When two threads race to build it, one value is kept and the other
    /// dropped (so `make` must not publish anything itself).
    pub(crate) fn get_or_try_init<E>(
        &'static self,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<&'static T, E> {
        let gen = super::fork_gen();
        let cur = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here always comes from `Box::leak`
        // below and is never freed, so it is valid for 'static.
        if let Some((g, v)) = unsafe { cur.as_ref() } {
            if *g == gen {
                return Ok(v);
            }
        }
        let fresh = Box::into_raw(Box::new((gen, make()?)));
        match self
            .ptr
            .compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: `fresh` was just leaked from a Box and is now
            // published; it is never freed.
            Ok(_) => Ok(unsafe { &(*fresh).1 }),
            Err(other) => {
                // SAFETY: `fresh` was never published: we own it.
                let ours = unsafe { Box::from_raw(fresh) };
                // SAFETY: as above, a published pointer is never freed.
                match unsafe { other.as_ref() } {
                    Some((g, v)) if *g == gen => Ok(v),
                    // Another generation's (only in a race with a fork):
                    // keep ours, unpublished, for this call alone.
                    _ => Ok(&Box::leak(ours).1),
                }
            }
        }
    }
}
