//! `RawEvent`: a manual-reset event (Python's `Event`) on one futex word.
//!
//! # The word
//!
//! | bits  | name      | meaning                                                |
//! |-------|-----------|--------------------------------------------------------|
//! | 0     | `SET`     | the flag                                               |
//! | 1     | `WAITERS` | someone may be asleep: `set` must wake                 |
//! | 2..32 | `GEN`     | generation: +1 on every `set` that raises the flag     |
//!
//! `wait` returns true once the flag is up, or once the generation moved
//! since it started: a waiter asleep when `set` ran returns true even if
//! `clear` came right after (as Python's `Event.wait` does, since it was
//! notified). `set` on a raised flag, or with nobody asleep, makes no
//! syscall. Any bit pattern is a valid state, so a scribbled word can make
//! waiters return early or sleep, never misbehave otherwise.

use std::fmt;
use std::time::Duration;

use crate::error::Result;
use crate::sync::{Deadline, Futex, Ordering};

const SET: u32 = 1;
const WAITERS: u32 = 2;
const GEN_ONE: u32 = 4;
const GEN_MASK: u32 = !(SET | WAITERS);

/// A manual-reset event that threads of any process mapping it can wait on.
///
/// 4 bytes, `repr(C)`; all-zero bytes are a cleared event.
///
/// ```
/// let ev = shmkit::raw::RawEvent::new();
/// assert!(!ev.is_set());
/// ev.set();
/// assert!(ev.wait_timeout(std::time::Duration::ZERO));
/// ev.clear();
/// assert!(!ev.is_set());
/// ```
#[repr(C)]
pub struct RawEvent {
    word: Futex,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RawEvent>() == 4);

impl Default for RawEvent {
    fn default() -> Self {
        RawEvent::new()
    }
}

impl fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEvent")
            .field("set", &self.is_set())
            .finish()
    }
}

impl RawEvent {
    /// A cleared event, for use within one process (or under loom).
    ///
    /// ```
    /// assert!(!shmkit::raw::RawEvent::new().is_set());
    /// ```
    pub fn new() -> RawEvent {
        RawEvent {
            word: Futex::new(0),
        }
    }

    /// The bytes a `RawEvent` needs (4); align the region to 4.
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawEvent::required_size(), 4);
    /// ```
    pub const fn required_size() -> usize {
        std::mem::size_of::<RawEvent>()
    }

    /// Writes a cleared event at `ptr` and returns it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and
    /// those bytes must be accessed only through `RawEvent`s (in any
    /// process) for `'a`. Nobody may use the event while it is initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if the
    /// region is misaligned or too small.
    ///
    /// ```
    /// let mut buf = [0u32; 1];
    /// // SAFETY: `buf` outlives `ev` and is used only through it.
    /// let ev = unsafe { shmkit::raw::RawEvent::init_in(buf.as_mut_ptr().cast(), 4)? };
    /// ev.set();
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawEvent> {
        super::check_region::<RawEvent>(ptr, len, "RawEvent")?;
        let p = ptr.cast::<RawEvent>();
        // SAFETY: aligned and large enough (checked), and exclusively ours
        // while we initialise it (the caller's contract).
        unsafe {
            p.write(RawEvent::new());
            Ok(&*p)
        }
    }

    /// Uses the event initialised at `ptr`. Any bytes are a valid event.
    ///
    /// # Safety
    /// As for [`init_in`](RawEvent::init_in), except that the bytes are
    /// already initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if the
    /// region is misaligned or too small.
    ///
    /// ```
    /// let mut buf = [1u32; 1];
    /// // SAFETY: `buf` outlives `ev` and is used only through it.
    /// let ev = unsafe { shmkit::raw::RawEvent::attach(buf.as_mut_ptr().cast(), 4)? };
    /// assert!(ev.is_set());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawEvent> {
        super::check_region::<RawEvent>(ptr, len, "RawEvent")?;
        // SAFETY: aligned and large enough (checked); a single atomic u32,
        // valid for any bit pattern, only accessed atomically by anyone.
        Ok(unsafe { &*ptr.cast::<RawEvent>() })
    }

    /// Whether the flag is up.
    ///
    /// ```
    /// let ev = shmkit::raw::RawEvent::new();
    /// ev.set();
    /// assert!(ev.is_set());
    /// ```
    #[inline]
    pub fn is_set(&self) -> bool {
        self.word.word().load(Ordering::Acquire) & SET != 0
    }

    /// Raises the flag and wakes every waiter. With nobody asleep, or the
    /// flag already up, no syscall.
    ///
    /// ```
    /// let ev = shmkit::raw::RawEvent::new();
    /// ev.set();
    /// ev.set();
    /// assert!(ev.is_set());
    /// ```
    #[inline]
    pub fn set(&self) {
        let word = self.word.word();
        let mut w = word.load(Ordering::Relaxed);
        loop {
            if w & SET != 0 {
                return;
            }
            let new = ((w & GEN_MASK).wrapping_add(GEN_ONE) & GEN_MASK) | SET;
            // SYNC POINT: Release pairs with the Acquire loads in `wait`/`is_set`.
            match word.compare_exchange_weak(w, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        if w & WAITERS != 0 {
            self.word.wake_all();
        }
    }

    /// Registers a waiter on several words at once (see `raw::wait`): sets
    /// `WAITERS`, so that the next `set` wakes, and returns the value to
    /// sleep on with [`futex`](RawEvent::futex). Ready means `is_set`.
    pub(crate) fn arm(&self) -> u32 {
        self.word.word().fetch_or(WAITERS, Ordering::Acquire) | WAITERS
    }

    /// The event's futex word.
    pub(crate) fn futex(&self) -> &Futex {
        &self.word
    }

    /// Lowers the flag.
    ///
    /// ```
    /// let ev = shmkit::raw::RawEvent::new();
    /// ev.set();
    /// ev.clear();
    /// assert!(!ev.is_set());
    /// ```
    #[inline]
    pub fn clear(&self) {
        self.word.word().fetch_and(!SET, Ordering::Relaxed);
    }

    /// Waits until the flag is up (returns at once if it is).
    ///
    /// ```
    /// let ev = shmkit::raw::RawEvent::new();
    /// ev.set();
    /// ev.wait();
    /// ```
    pub fn wait(&self) {
        self.wait_until(Deadline::NEVER);
    }

    /// Waits until the flag is up or `timeout` passed; returns whether it
    /// was set (false on timeout, never before `timeout`).
    ///
    /// ```
    /// let ev = shmkit::raw::RawEvent::new();
    /// assert!(!ev.wait_timeout(std::time::Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Deadline::after(timeout))
    }

    pub(crate) fn wait_until(&self, deadline: Deadline) -> bool {
        let word = self.word.word();
        let start = word.load(Ordering::Acquire);
        if start & SET != 0 {
            return true;
        }
        let gen = start & GEN_MASK;
        loop {
            let w = word.load(Ordering::Acquire);
            if w & SET != 0 || w & GEN_MASK != gen {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            if w & WAITERS == 0
                && word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // No liveness interval: an event has no owner to outlive.
            let (until, is_deadline) = deadline.or_within(Duration::MAX);
            if !self.word.wait(w | WAITERS, until) && is_deadline {
                let w = word.load(Ordering::Acquire);
                return w & SET != 0 || w & GEN_MASK != gen;
            }
        }
    }
}
