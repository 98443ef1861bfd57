//! `RawCondition`: a condition variable (Python's `Condition`) for threads
//! of any process, over a [`RawLock`] or [`RawRLock`] that the caller
//! holds, that survives the death of any waiter or notifier.
//!
//! # Algorithm
//!
//! A futex word `seq` (bumped by every notify that releases a waiter), a
//! ticket counter `next`, and a table of [`COND_SLOTS`] waiter slots. Every
//! change to the table that picks or places a waiter happens under the
//! user's lock; a waiter that leaves (timed out, or woken) clears its own
//! slot without it, by a CAS from the exact word it put there.
//!
//! - **wait** (lock held): claim a free slot with a CAS `0 → stamp` (the
//!   waiter's thread stamp), after writing a ticket (`next += 1`, the age
//!   order) and the waiter's pid beside it; read `seq`; release the lock
//!   (an `RLock` fully, its level kept); then, until notified or the
//!   deadline: read `seq`, look at the slot, sleep on `seq` for the value
//!   read (at most [`COND_RECHECK`] at a time). A slot `stamp | NOTIFIED` is
//!   consumed (CAS to 0) and the wait returns notified; a timed-out waiter
//!   leaves with a CAS `stamp → 0`, and if that CAS fails the slot was
//!   notified meanwhile, which is consumed instead: a timeout never loses a
//!   notification. Then re-acquire the lock (a dead holder's lock is taken
//!   over and reported) and restore the level.
//! - **notify(n)** (lock held): collect the slots that hold a waiting stamp,
//!   oldest ticket first; for each until `n` are released: a waiter whose
//!   process is gone (`sync::waiter_alive`: a cached pidfd of the waiter's
//!   process, checked against `/proc` once when opened, then one `poll(2)`;
//!   a thread older than the process under that pid is an earlier
//!   process's; only "no such task" is dead; a waiter of the notifier's
//!   own process is alive) has its slot freed and is skipped; otherwise CAS `stamp → stamp | NOTIFIED`. A failed CAS is a
//!   waiter that timed out and left: skipped. If any was released, `seq +=
//!   1` and wake all sleepers on `seq` (they sleep on one word; those not
//!   released look at their slot and sleep again). Notify never waits for a
//!   waiter to do anything: it is fire-and-forget.
//! - **no lost notify**: the waiter reads `seq` before each look at its slot
//!   and sleeps only while `seq` still holds that value; the notifier marks
//!   the slot before it bumps `seq` (Release; the waiter's load is
//!   Acquire), so a waiter either sees the mark or sleeps on a value the
//!   bump has changed (and then the wake comes after the bump).
//!
//! # Guarantee
//!
//! `notify(n)` releases exactly `min(n, W)` waiters, where `W` is the
//! number of waiters present when it runs (their `wait` took the lock
//! before the notifier did) that had not been released, had not timed out,
//! and were not known dead when it looked at them. A waiter returns
//! "notified" only if a notify released it (or a scribbler wrote its slot):
//! no wake beyond `n`. A waiter that dies while waiting neither blocks a
//! notifier nor receives a notification: the notifier finds its thread
//! gone and passes the notification to the next waiter. A waiter can absorb
//! a notification only by dying after the notifier judged it alive (the
//! instant between the liveness read and the CAS, or after it was
//! released and before it returned), or if its liveness could not be read
//! ("unknown" is alive): at most one notification per such waiter, ever,
//! since a released slot is never released again.
//!
//! # The words
//!
//! | field        | meaning                                                     |
//! |--------------|-------------------------------------------------------------|
//! | `seq`        | futex word, +1 by every notify that released someone         |
//! | `next`       | ticket counter: the wait order (oldest released first)       |
//! | slot `word`  | `0` free; `stamp` waiting; `stamp \| NOTIFIED` released       |
//! | slot `ticket`| the waiter's ticket, written before the word                |
//! | slot `pid`   | the waiter's process id (a notifier's own process is alive)  |
//!
//! | slot `word`          | what it is              | a dead owner's slot                            |
//! |----------------------|-------------------------|------------------------------------------------|
//! | `0`                  | free                    | —                                              |
//! | `stamp`              | waiting                 | freed by the next notify that reaches it, or by a waiter finding the table full |
//! | `stamp \| NOTIFIED`  | released, not yet back  | freed by a waiter finding the table full       |
//! | bit 63 set, or tid 0 | only a scribbler's      | freed by a waiter finding the table full       |
//!
//! # Crash cases
//!
//! | killed …                                     | left behind                | effect on survivors |
//! |----------------------------------------------|----------------------------|---------------------|
//! | waiter, before its slot CAS (lock held)      | the lock held              | lock takeover, reported |
//! | waiter, after it (lock held or not)          | a waiting slot             | the next notify frees it and releases a live waiter instead |
//! | waiter, released, before it consumed         | a released slot            | one notification absorbed (it was given while the waiter lived); the slot is reaped when the table fills |
//! | waiter, re-acquiring the lock                | nothing of the condition's | lock takeover if it got the lock |
//! | notifier, between marks                      | some slots released, `seq` not bumped; the lock held | released waiters notice by themselves within [`COND_RECHECK`]; lock takeover, reported to the next waiter or locker |
//! | notifier, after the bump, before the wake (a handle's guard defers the wake until it releases the lock) | as above | as above |
//!
//! Nothing read from the slots is trusted: a word that is not this
//! waiter's stamp makes its wait return early (a spurious wake-up, which
//! callers of a condition variable already loop on), and a table full of
//! scribbled slots that name live threads makes `wait` fail with
//! [`Error::Full`]. Every loop is bounded by [`COND_SLOTS`].

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Origin, Result};
use crate::raw::lock::RawLock;
use crate::raw::rlock::RawRLock;
use crate::raw::spin::Spin;
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Futex, Ordering, TaskStamp};

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
const ORIGIN: Origin = Origin::new("RawCondition", "");

/// How many threads can wait on one condition at once.
#[cfg(not(loom))]
pub const COND_SLOTS: usize = 64;
/// How many threads can wait on one condition at once (small under loom).
#[cfg(loom)]
pub const COND_SLOTS: usize = 3;

/// The longest a waiter sleeps before it looks at its slot by itself
/// (covers a notifier killed between marking a slot and waking).
pub const COND_RECHECK: Duration = Duration::from_secs(1);

/// In a slot word: released by a notify.
const NOTIFIED: u64 = 1 << 62;
/// In a slot word: never set by this protocol (a scribbler's).
const BAD: u64 = 1 << 63;
const STAMP_MASK: u64 = NOTIFIED - 1;

#[repr(C)]
struct Slot {
    word: AtomicU64,
    ticket: AtomicU32,
    pid: AtomicU32,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            word: AtomicU64::new(0),
            ticket: AtomicU32::new(0),
            pid: AtomicU32::new(0),
        }
    }
}

/// A condition variable over a lock the caller holds; see the module
/// documentation for the protocol and its guarantee.
///
/// 1032 bytes, `repr(C)`, 8-byte aligned; all-zero bytes are a condition
/// nobody waits on.
///
/// ```
/// use std::time::Duration;
/// use shmkit::raw::{RawCondition, RawLock};
///
/// let lock = RawLock::new();
/// let cond = RawCondition::new();
/// let g = lock.lock()?;
/// let w = cond.wait(&lock, Some(Duration::from_millis(1)))?;
/// assert!(w.timed_out);
/// assert_eq!(cond.notify(&lock, 1)?, 0); // nobody waits: nothing stored
/// drop(g);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
pub struct RawCondition {
    seq: Futex,
    next: AtomicU32,
    slots: [Slot; COND_SLOTS],
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<RawCondition>() == 8 + 16 * COND_SLOTS);
    assert!(std::mem::align_of::<RawCondition>() == 8);
};

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waited {
    /// The deadline passed before a notify released this waiter (for the
    /// predicate forms: before the predicate held). Never before the
    /// timeout.
    pub timed_out: bool,
    /// Re-acquiring the lock took it over from a holder that died, or found
    /// the mark such a takeover leaves (see
    /// [`RawLockGuard::owner_died`](crate::raw::RawLockGuard::owner_died)):
    /// the data it protects may need repair.
    pub owner_died: bool,
}

/// The lock a [`RawCondition`] is used with: a [`RawLock`] or a
/// [`RawRLock`], held by the calling thread.
///
/// ```
/// use shmkit::raw::{CondLock, RawLock, RawRLock};
/// let (l, r) = (RawLock::new(), RawRLock::new());
/// let _a: CondLock<'_> = (&l).into();
/// let _b: CondLock<'_> = (&r).into();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CondLock<'a> {
    kind: LockKind<'a>,
    object: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy)]
enum LockKind<'a> {
    Lock(&'a RawLock),
    RLock(&'a RawRLock),
}

impl<'a> From<&'a RawLock> for CondLock<'a> {
    fn from(l: &'a RawLock) -> CondLock<'a> {
        CondLock {
            kind: LockKind::Lock(l),
            object: None,
        }
    }
}

impl<'a> From<&'a RawRLock> for CondLock<'a> {
    fn from(l: &'a RawRLock) -> CondLock<'a> {
        CondLock {
            kind: LockKind::RLock(l),
            object: None,
        }
    }
}

/// What a wait released and must restore: an `RLock`'s level, and a plain
/// lock's record as it was (it may have been made through another mapping
/// of the lock, by a guard that forgets it by that address).
struct Saved {
    level: u32,
    record: Option<sync::HeldKey>,
}

impl<'a> CondLock<'a> {
    /// A lock in the shared object `object` (the handles' key).
    pub(crate) fn in_object(self, object: Option<(u64, u64)>) -> CondLock<'a> {
        CondLock { object, ..self }
    }

    fn held(&self) -> bool {
        match self.kind {
            LockKind::Lock(l) => l.held_by_me(self.object),
            LockKind::RLock(r) => r.inner().held_by_me(self.object),
        }
    }

    /// Lets the lock go entirely. A plain lock taken through a handle
    /// (which records, like an `RLock`'s level, whether its acquisition was
    /// told of a dead holder) clears the mark if it was told.
    fn release(&self) -> Result<Saved> {
        match self.kind {
            LockKind::Lock(l) => {
                let key = l.key(self.object);
                let tid = sync::current_stamp().tid();
                let (level, told) = sync::level_get(key, tid);
                sync::level_set(key, tid, 0, false);
                let record = l.unlock_kept(self.object, told)?;
                Ok(Saved {
                    level,
                    record: Some(record),
                })
            }
            LockKind::RLock(r) => Ok(Saved {
                level: r.release_all(self.object)?,
                record: None,
            }),
        }
    }

    /// Takes it back, as deep as it was; whether a dead holder's mark was
    /// found.
    fn reacquire(&self, saved: Saved, spin: Spin) -> Result<bool> {
        match self.kind {
            LockKind::Lock(l) => {
                let died = l.lock_kept(self.object, None, spin)?;
                if let Some(record) = saved.record {
                    l.rekey_kept(self.object, record);
                }
                if saved.level > 0 {
                    let tid = sync::current_stamp().tid();
                    sync::level_set(l.key(self.object), tid, 1, died);
                }
                Ok(died)
            }
            LockKind::RLock(r) => r.reacquire(self.object, saved.level, spin),
        }
    }
}

/// A claimed slot.
struct Ticket {
    idx: usize,
    word: u64,
    seq: u32,
}

impl Default for RawCondition {
    fn default() -> Self {
        RawCondition::new()
    }
}

impl fmt::Debug for RawCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCondition")
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// Whether a slot word is a waiter's that a notify may release.
fn is_waiting(w: u64) -> bool {
    w != 0 && w & (NOTIFIED | BAD) == 0
}

/// Whether the waiter `stamp`, of process `pid`, is a thread of the calling
/// process `me` (alive, since we are): the same pid, and a thread that
/// started no earlier than the process (a dead process whose pid we now
/// have started its threads before us; within one clock tick the two cannot
/// be told apart, as everywhere start times are used).
fn ours(me: TaskStamp, pid: u32, stamp: TaskStamp) -> bool {
    pid == me.tid() && me.start_known() && stamp.start_known() && stamp.start() >= me.start()
}

impl RawCondition {
    /// A condition nobody waits on, for use within one process (or under
    /// loom).
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawCondition::new().waiting(), 0);
    /// ```
    pub fn new() -> RawCondition {
        RawCondition {
            seq: Futex::new(0),
            next: AtomicU32::new(0),
            slots: std::array::from_fn(|_| Slot::new()),
        }
    }

    /// The bytes a `RawCondition` needs (1032); align the region to 8.
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawCondition::required_size(), 1032);
    /// ```
    pub const fn required_size() -> usize {
        std::mem::size_of::<RawCondition>()
    }

    /// Writes a condition nobody waits on at `ptr` and returns it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and
    /// those bytes must be accessed only through `RawCondition`s (in any
    /// process) for `'a`. Nobody may use it while it is initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small.
    ///
    /// ```
    /// use shmkit::raw::RawCondition;
    /// let mut buf = vec![0u64; RawCondition::required_size() / 8];
    /// // SAFETY: `buf` outlives `c` and is used only through it.
    /// let c = unsafe { RawCondition::init_in(buf.as_mut_ptr().cast(), RawCondition::required_size())? };
    /// assert_eq!(c.waiting(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawCondition> {
        super::check_region::<RawCondition>(ptr, len, "RawCondition")?;
        let p = ptr.cast::<RawCondition>();
        // SAFETY: aligned and large enough (checked), and exclusively ours
        // while we initialise it (the caller's contract).
        unsafe {
            p.write(RawCondition::new());
            Ok(&*p)
        }
    }

    /// Uses the condition initialised at `ptr`. Any bytes are accepted: a
    /// scribbled slot costs a spurious wake-up or a slot, nothing else.
    ///
    /// # Safety
    /// As for [`init_in`](RawCondition::init_in), except that the bytes are
    /// already initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small.
    ///
    /// ```
    /// use shmkit::raw::RawCondition;
    /// let mut buf = vec![u64::MAX; RawCondition::required_size() / 8];
    /// // SAFETY: `buf` outlives `c` and is used only through it.
    /// let c = unsafe { RawCondition::attach(buf.as_mut_ptr().cast(), RawCondition::required_size())? };
    /// assert_eq!(c.waiting(), 0); // garbage slots are nobody's
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach<'a>(ptr: *mut u8, len: usize) -> Result<&'a RawCondition> {
        super::check_region::<RawCondition>(ptr, len, "RawCondition")?;
        // SAFETY: aligned and large enough (checked); every field is an
        // atomic integer, valid for any bit pattern, and other processes
        // touch it only atomically (the caller's contract).
        Ok(unsafe { &*ptr.cast::<RawCondition>() })
    }

    /// How many threads wait and have not been released (a snapshot).
    ///
    /// ```
    /// assert_eq!(shmkit::raw::RawCondition::new().waiting(), 0);
    /// ```
    pub fn waiting(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| is_waiting(s.word.load(Ordering::Relaxed)))
            .count()
    }

    /// Releases `lock` (which the calling thread holds; an `RLock` entirely),
    /// waits until a notify releases this thread or `timeout` passes
    /// (`None`: no deadline), and takes the lock back (as deep as it was)
    /// before it returns, whatever happened.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold `lock`
    /// (nothing changes); [`Error::Full`] if [`COND_SLOTS`] threads already
    /// wait (the lock is not released).
    ///
    /// ```
    /// use shmkit::raw::{RawCondition, RawRLock};
    /// let (lock, cond) = (RawRLock::new(), RawCondition::new());
    /// assert!(matches!(cond.wait(&lock, None), Err(shmkit::Error::NotOwner { .. })));
    /// let g = lock.lock()?;
    /// let w = cond.wait(&lock, Some(std::time::Duration::ZERO))?;
    /// assert!(w.timed_out && !w.owner_died);
    /// assert_eq!(lock.level(), 1);
    /// drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait<'l>(
        &self,
        lock: impl Into<CondLock<'l>>,
        timeout: Option<Duration>,
    ) -> Result<Waited> {
        let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
        // Under loom a spin is a hundred yields: models sleep at once.
        let spin = if cfg!(loom) {
            Spin::Never
        } else {
            Spin::Adaptive
        };
        self.wait_in(lock.into(), deadline, spin, false)
    }

    /// Releases up to `n` of the threads waiting now (oldest first) and
    /// returns how many; skips (and frees the slot of) any whose thread is
    /// gone. Never waits for a waiter. With nobody waiting, nothing is
    /// stored for later waiters.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold `lock`.
    ///
    /// ```
    /// use shmkit::raw::{RawCondition, RawLock};
    /// let (lock, cond) = (RawLock::new(), RawCondition::new());
    /// assert!(matches!(cond.notify(&lock, 1), Err(shmkit::Error::NotOwner { .. })));
    /// let g = lock.lock()?;
    /// assert_eq!(cond.notify(&lock, usize::MAX)?, 0);
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn notify<'l>(&self, lock: impl Into<CondLock<'l>>, n: usize) -> Result<usize> {
        if !lock.into().held() {
            return Err(Error::NotOwner { origin: ORIGIN });
        }
        Ok(self.notify_held(n))
    }

    /// [`wait`](RawCondition::wait) for the handles: `spin` is used to take
    /// the lock back; `wake_first`: a notify by this holder deferred its
    /// wake-up ([`notify_deferred`](RawCondition::notify_deferred)), issued
    /// here once the lock is released.
    pub(crate) fn wait_in(
        &self,
        lock: CondLock<'_>,
        deadline: Deadline,
        spin: Spin,
        wake_first: bool,
    ) -> Result<Waited> {
        if !lock.held() {
            return Err(Error::NotOwner { origin: ORIGIN });
        }
        let t = match self.enqueue() {
            Ok(t) => t,
            Err(e) => {
                if wake_first {
                    // Early (the lock is still held), never lost.
                    self.wake();
                }
                return Err(e);
            }
        };
        let saved = match lock.release() {
            Ok(s) => s,
            Err(e) => {
                // Not reached while `held` said yes; leave no slot behind.
                let _ = self.slots[t.idx].word.compare_exchange(
                    t.word,
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                return Err(e);
            }
        };
        if wake_first {
            self.wake();
        }
        let notified = self.await_release(&t, deadline);
        let owner_died = lock.reacquire(saved, spin)?;
        Ok(Waited {
            timed_out: !notified,
            owner_died,
        })
    }

    /// Claims a free slot (the lock is held), reaping dead owners' slots
    /// once if none is free.
    fn enqueue(&self) -> Result<Ticket> {
        let me = sync::current_stamp();
        let pid = sync::current_process().tid();
        let word = me.0 & STAMP_MASK;
        for reaped in [false, true] {
            for (idx, s) in self.slots.iter().enumerate() {
                if s.word.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                let ticket = self.next.fetch_add(1, Ordering::Relaxed);
                s.ticket.store(ticket, Ordering::Relaxed);
                s.pid.store(pid, Ordering::Relaxed);
                // SYNC POINT: Release publishes the ticket and pid to the
                // notifier's Acquire load of the word.
                if s.word
                    .compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    // Under the lock: no notify can run between the claim
                    // and this read, so a notify that sees the slot bumps
                    // `seq` past this value.
                    let seq = self.seq.word().load(Ordering::Acquire);
                    return Ok(Ticket { idx, word, seq });
                }
            }
            if !reaped {
                self.reap();
            }
        }
        Err(Error::Full { origin: ORIGIN })
    }

    /// Frees the slots of dead waiters (waiting or released) and scribbled
    /// ones, each by a CAS from the word judged.
    fn reap(&self) {
        for s in &self.slots {
            let w = s.word.load(Ordering::Relaxed);
            if w == 0 {
                continue;
            }
            let stamp = TaskStamp(w & STAMP_MASK);
            let dead =
                w & BAD != 0 || stamp.tid() == 0 || !sync::thread_alive(stamp.tid(), Some(stamp));
            if dead {
                let _ = s
                    .word
                    .compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }

    /// Waits (the lock released) until the slot is released or the
    /// deadline; whether it was released (a scribbled slot counts as a
    /// spurious release).
    fn await_release(&self, t: &Ticket, deadline: Deadline) -> bool {
        let slot = &self.slots[t.idx];
        let mut seq = t.seq;
        let mut deadline_hit = false;
        loop {
            // SYNC POINT: Acquire pairs with the notifier's Release CAS.
            let w = slot.word.load(Ordering::Acquire);
            if w == t.word | NOTIFIED {
                let _ = slot
                    .word
                    .compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
                return true;
            }
            if w != t.word {
                // Not ours any more: only a scribbler does that.
                return true;
            }
            if deadline_hit || deadline.expired() {
                // Leave; if a notify released us meanwhile the CAS fails
                // and the next look consumes it.
                if slot
                    .word
                    .compare_exchange(w, 0, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return false;
                }
                continue;
            }
            let (until, is_deadline) = deadline.or_within(COND_RECHECK);
            deadline_hit = !self.seq.wait(seq, until) && is_deadline;
            // SYNC POINT: Acquire pairs with the notifier's Release bump,
            // so the next look at the slot sees its mark.
            seq = self.seq.word().load(Ordering::Acquire);
        }
    }

    /// `notify` once ownership is checked.
    pub(crate) fn notify_held(&self, n: usize) -> usize {
        let released = self.notify_deferred(n);
        if released > 0 {
            self.wake();
        }
        released
    }

    /// Wakes the sleepers of `seq` (they look at their slots).
    pub(crate) fn wake(&self) {
        self.seq.wake_all();
    }

    /// `notify_held` without the wake-up: the caller issues
    /// [`wake`](RawCondition::wake) once it has released the lock, so
    /// that the released waiters do not wake only to sleep on the lock
    /// (a holder killed in between: they notice within [`COND_RECHECK`]).
    pub(crate) fn notify_deferred(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let next = self.next.load(Ordering::Relaxed);
        let me = sync::current_process();
        // (age, index, word), oldest first.
        let mut cands = [(0u32, 0usize, 0u64); COND_SLOTS];
        let mut k = 0;
        for (idx, s) in self.slots.iter().enumerate() {
            // SYNC POINT: Acquire pairs with the waiter's Release claim.
            let w = s.word.load(Ordering::Acquire);
            if is_waiting(w) {
                let age = next.wrapping_sub(s.ticket.load(Ordering::Relaxed));
                cands[k] = (age, idx, w);
                k += 1;
            }
        }
        let cands = &mut cands[..k];
        cands.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut released = 0;
        for &(_, idx, w) in cands.iter() {
            if released == n {
                break;
            }
            let s = &self.slots[idx];
            let stamp = TaskStamp(w);
            let alive = stamp.tid() != 0
                && (ours(me, s.pid.load(Ordering::Relaxed), stamp)
                    || sync::waiter_alive(s.pid.load(Ordering::Relaxed), stamp));
            if !alive {
                // A dead waiter: free its slot, give its turn to the next.
                let _ = s
                    .word
                    .compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
                continue;
            }
            // SYNC POINT: Release; the waiter's Acquire load sees the mark.
            if s.word
                .compare_exchange(w, w | NOTIFIED, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                released += 1;
            }
        }
        if released > 0 {
            // SYNC POINT: Release pairs with the waiters' Acquire loads of
            // `seq`: a waiter that sees the bump sees the marks before it.
            self.seq.word().fetch_add(1, Ordering::Release);
        }
        released
    }

    /// Under loom, for models: the state of the slot naming thread `tid`
    /// (0: none, 1: waiting, 2: released, not yet consumed).
    #[cfg(loom)]
    pub fn slot_state(&self, tid: u32) -> u8 {
        for s in &self.slots {
            let w = s.word.load(Ordering::Relaxed);
            if w != 0 && w & BAD == 0 && TaskStamp(w & STAMP_MASK).tid() == tid {
                return if w & NOTIFIED != 0 { 2 } else { 1 };
            }
        }
        0
    }

    /// Whether `lock` is held by the calling thread (for the handles).
    pub(crate) fn held(lock: CondLock<'_>) -> bool {
        lock.held()
    }
}
