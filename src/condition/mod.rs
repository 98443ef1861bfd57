//! `Condition`: a named condition variable shared by processes, over a
//! lock of its own or a given [`Lock`]/[`RLock`], robust to the death of
//! any waiter, notifier or lock holder.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, OrNamed, Origin, Result};
use crate::handle::{named_handle, Core, Named};
use crate::lock::Lock;
use crate::raw::header::Kind;
use crate::raw::spin::{AdaptiveSpin, Spin};
use crate::raw::{CondLock, RawCondition, RawLock, RawRLock, Waited};
use crate::rlock::RLock;
use crate::segment::{Options, Spec};
use crate::sync::{self, AtomicU64, Deadline, Ordering};

/// Payload layout: the own lock, the condition, the given lock's name.
const COND_OFF: usize = 64;
const NAME_OFF: usize = COND_OFF + RawCondition::required_size();
/// Words of the name block: the length, then 200 bytes.
const NAME_WORDS: usize = 1 + 25;
const PAYLOAD: usize = NAME_OFF + NAME_WORDS * 8;
const NAME_MAX: usize = 200;

/// The header's `aux`: which lock the condition is used with.
const OWN_RLOCK: u64 = 1;
const OWN_LOCK: u64 = 2;
const BY_NAME_LOCK: u64 = 3;
const BY_NAME_RLOCK: u64 = 4;

/// The lock a [`Condition`] is made over (see
/// [`Condition::create_over`]): a [`Lock`] or an [`RLock`] handle, which
/// the condition keeps.
///
/// ```
/// let lock = shmkit::Lock::create_unique()?;
/// let _over: shmkit::ConditionLock = lock.into();
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub enum ConditionLock {
    /// A plain lock: a thread holding it must not take it again.
    Lock(Lock),
    /// A recursive lock: `wait` releases every level and restores them.
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(l: Lock) -> ConditionLock {
        ConditionLock::Lock(l)
    }
}

impl From<RLock> for ConditionLock {
    fn from(l: RLock) -> ConditionLock {
        ConditionLock::RLock(l)
    }
}

/// What the attached payload holds.
pub(crate) struct CondView {
    cond: &'static RawCondition,
    lock: Own,
}

enum Own {
    RLock(&'static RawRLock),
    Lock(&'static RawLock),
    /// Another segment's lock, by name (`true`: an RLock).
    ByName(bool, String),
}

/// The condition's segment (a marker for [`Core`]).
pub(crate) struct CondCore;

impl Core for CondCore {
    type View = CondView;

    fn spec() -> Spec {
        Spec::of(Kind::Condition)
    }

    unsafe fn attach(p: *mut u8, len: usize, aux: u64, _created: bool) -> Result<CondView> {
        let bad = |d: String| Error::corrupted("", d);
        if len < PAYLOAD {
            return Err(bad(format!(
                "condition payload of {len} bytes, not {PAYLOAD}"
            )));
        }
        // SAFETY: `p` is the 64-aligned payload of `len >= PAYLOAD` bytes,
        // mapped while the view lives (the caller's contract), so every
        // offset below is in bounds and aligned; all of it is atomics.
        unsafe {
            let cond = RawCondition::attach(p.add(COND_OFF), RawCondition::required_size())
                .map_err(|e| bad(e.to_string()))?;
            let lock = match aux {
                OWN_RLOCK => Own::RLock(
                    RawRLock::attach(p, RawRLock::required_size())
                        .map_err(|e| bad(e.to_string()))?,
                ),
                OWN_LOCK => Own::Lock(
                    RawLock::attach(p, RawLock::required_size()).map_err(|e| bad(e.to_string()))?,
                ),
                BY_NAME_LOCK | BY_NAME_RLOCK => {
                    let words = &*p.add(NAME_OFF).cast::<[AtomicU64; NAME_WORDS]>();
                    Own::ByName(aux == BY_NAME_RLOCK, read_name(words).map_err(bad)?)
                }
                _ => return Err(bad(format!("condition lock mode {aux}"))),
            };
            Ok(CondView { cond, lock })
        }
    }
}

/// Reads the given lock's name once, word by word, and checks it is text
/// of at most 200 bytes (the lock's `open` validates it as a name).
fn read_name(words: &[AtomicU64; NAME_WORDS]) -> std::result::Result<String, String> {
    let len = words[0].load(Ordering::Relaxed);
    if len == 0 || len > NAME_MAX as u64 {
        return Err(format!("condition lock name length {len}"));
    }
    let mut bytes = Vec::with_capacity(NAME_MAX);
    for w in &words[1..] {
        bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    bytes.truncate(len as usize);
    String::from_utf8(bytes).map_err(|_| "condition lock name is not text".to_owned())
}

fn write_name(words: &[AtomicU64; NAME_WORDS], name: &str) {
    let b = name.as_bytes();
    words[0].store(b.len() as u64, Ordering::Relaxed);
    for (i, w) in words[1..].iter().enumerate() {
        let mut chunk = [0u8; 8];
        for (j, c) in chunk.iter_mut().enumerate() {
            *c = b.get(i * 8 + j).copied().unwrap_or(0);
        }
        w.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
    }
}

/// What a new condition is made over.
enum Make {
    OwnRLock,
    OwnLock,
    Given(ConditionLock),
}

/// The lock in use, resolved.
enum Held {
    RLock(&'static RawRLock),
    Lock(&'static RawLock),
    GivenLock(Lock),
    GivenRLock(RLock),
}

/// A condition variable shared by every process that opens its name
/// (Python's `multiprocessing.Condition`), over a lock of its own (an
/// [`RLock`], as Python's default) or a given [`Lock`] or [`RLock`].
///
/// Hold the lock ([`lock`](Condition::lock), or Python's
/// [`acquire`](Condition::acquire)), then `wait` (which releases it while
/// asleep and takes it back before returning) or `notify`. The guard's
/// methods cannot be called without the lock; the same methods on the
/// `Condition` check it and fail with
/// [`Error::NotOwner`](crate::Error::NotOwner).
///
/// Beyond Python: `notify` never waits for a waiter (Python's does, and
/// hangs on a dead one), a waiter that dies while waiting neither blocks a
/// notifier nor takes a notification from a live waiter (see
/// [`RawCondition`] for the exact guarantee), and a waiter that takes the
/// lock back from a holder that died is told ([`Waited::owner_died`]).
/// At most [`COND_SLOTS`](crate::raw::COND_SLOTS) (64) threads wait at
/// once; more is [`Error::Full`](crate::Error::Full).
///
/// ```
/// use std::time::Duration;
/// use shmkit::{Condition, Value};
///
/// let cond = Condition::create_unique()?;
/// let ready = Value::<u32>::create_unique(0)?;
/// let (c2, r2) = (Condition::open(cond.name())?, Value::<u32>::open(ready.name())?);
/// let t = std::thread::spawn(move || -> shmkit::Result<()> {
///     let g = c2.lock()?; // as another process would
///     r2.store(1);
///     g.notify_all()?;
///     Ok(())
/// });
/// let mut g = cond.lock()?;
/// let w = g.wait_for_timeout(|| ready.load() == 1, Duration::from_secs(10))?;
/// assert!(!w.timed_out);
/// drop(g);
/// t.join().unwrap()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Condition {
    named: Named<CondCore>,
    held: Held,
    spin: AdaptiveSpin,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("name", &self.name())
            .field("waiting", &self.waiting())
            .finish()
    }
}

named_handle! {
    names impl Condition {
        what: "condition",
        make: "shmkit::Condition::create_unique()?",
    }
}

impl Condition {
    /// Creates a condition named `name` over a lock of its own, an
    /// [`RLock`] (Python's default).
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName),
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists), and the other
    /// errors of [`Segment::create`](crate::Segment::create).
    ///
    /// ```
    /// # let name = format!("shmkit-doc-cond-{}", std::process::id());
    /// let c = shmkit::Condition::create(&name)?;
    /// assert_eq!(c.name(), name);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str) -> Result<Condition> {
        Condition::create_inner(Some(name), &Options::new(), Make::OwnRLock)
    }

    /// [`create`](Condition::create) with [`Options`] (mode, ...).
    ///
    /// # Errors
    /// As [`create`](Condition::create).
    ///
    /// ```
    /// # let name = format!("shmkit-doc-condw-{}", std::process::id());
    /// let c = shmkit::Condition::create_with(&name, &shmkit::Options::new().mode(0o600))?;
    /// # let _ = c;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(name: &str, opts: &Options) -> Result<Condition> {
        Condition::create_inner(Some(name), opts, Make::OwnRLock)
    }

    /// Creates a condition over a lock of its own under a fresh unique name.
    ///
    /// # Errors
    /// As [`create`](Condition::create), except for the name.
    ///
    /// ```
    /// let c = shmkit::Condition::create_unique()?;
    /// assert!(c.name().starts_with("shmkit-"));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique() -> Result<Condition> {
        Condition::create_inner(None, &Options::new(), Make::OwnRLock)
    }

    /// Creates a condition named `name` (a unique name for `None`) used
    /// with the given lock, which it keeps (if that is the lock's creating
    /// handle, the lock's name goes when the condition drops, unless it was
    /// [`kept`](Lock::keep)). The lock's name is recorded, so that
    /// [`open`](Condition::open) opens the same lock.
    ///
    /// # Errors
    /// As [`create`](Condition::create).
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// let cond = shmkit::Condition::create_over(None, lock)?;
    /// let g = cond.lock()?;
    /// assert_eq!(g.notify(1)?, 0);
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_over(name: Option<&str>, lock: impl Into<ConditionLock>) -> Result<Condition> {
        Condition::create_inner(name, &Options::new(), Make::Given(lock.into()))
    }

    /// Creates a condition named `name` (a unique name for `None`) over a
    /// plain, non-recursive lock of its own: cheaper than an `RLock`, but
    /// taking it again from the thread that holds it is
    /// [`Error::Deadlock`](crate::Error::Deadlock).
    ///
    /// # Errors
    /// As [`create`](Condition::create).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_plain(None)?;
    /// let g = cond.lock()?;
    /// assert!(matches!(cond.lock(), Err(shmkit::Error::Deadlock { .. })));
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_plain(name: Option<&str>) -> Result<Condition> {
        Condition::create_inner(name, &Options::new(), Make::OwnLock)
    }

    fn create_inner(name: Option<&str>, opts: &Options, make: Make) -> Result<Condition> {
        let (aux, lock_name) = match &make {
            Make::OwnRLock => (OWN_RLOCK, None),
            Make::OwnLock => (OWN_LOCK, None),
            Make::Given(ConditionLock::Lock(l)) => (BY_NAME_LOCK, Some(l.name().to_owned())),
            Make::Given(ConditionLock::RLock(l)) => (BY_NAME_RLOCK, Some(l.name().to_owned())),
        };
        let init = |p: *mut u8, len: usize| {
            if len < PAYLOAD {
                return Err(Error::InvalidArgument("condition payload too short".into()));
            }
            // SAFETY: `p` is the fresh segment's 64-aligned payload of
            // `len >= PAYLOAD` bytes, not yet published: nobody else uses it.
            unsafe {
                RawRLock::init_in(p, RawRLock::required_size())?;
                RawCondition::init_in(p.add(COND_OFF), RawCondition::required_size())?;
                if let Some(n) = &lock_name {
                    write_name(&*p.add(NAME_OFF).cast::<[AtomicU64; NAME_WORDS]>(), n);
                }
            }
            Ok(())
        };
        let named = Named::create(name, aux, PAYLOAD, opts, init)?;
        let held = match make {
            Make::OwnRLock | Make::OwnLock => Condition::own(&named)?,
            Make::Given(ConditionLock::Lock(l)) => Held::GivenLock(l),
            Make::Given(ConditionLock::RLock(l)) => Held::GivenRLock(l),
        };
        Ok(Condition::from_parts(named, held))
    }

    fn own(named: &Named<CondCore>) -> Result<Held> {
        match &named.view().lock {
            Own::RLock(r) => Ok(Held::RLock(r)),
            Own::Lock(l) => Ok(Held::Lock(l)),
            Own::ByName(rec, name) => Ok(if *rec {
                Held::GivenRLock(RLock::open(name)?)
            } else {
                Held::GivenLock(Lock::open(name)?)
            }),
        }
    }

    fn from_parts(named: Named<CondCore>, held: Held) -> Condition {
        Condition {
            named,
            held,
            spin: AdaptiveSpin::new(),
        }
    }

    /// Opens the condition another process (or this one) created as
    /// `name`, and the lock it is used with.
    ///
    /// # Errors
    /// [`Error::WrongKind`](crate::Error::WrongKind) if `name` holds
    /// another kind of object, [`Error::Corrupted`](crate::Error::Corrupted)
    /// for a payload that is not a condition's, the errors of opening its
    /// lock (a given lock whose name is gone: `NotFound`), and those of
    /// [`Segment::open`](crate::Segment::open).
    ///
    /// ```
    /// let made = shmkit::Condition::create_unique()?;
    /// let again = shmkit::Condition::open(made.name())?;
    /// assert_eq!(again.name(), made.name());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Condition> {
        Condition::open_with(name, &Options::new())
    }

    /// [`open`](Condition::open) with [`Options`] (also used to open the
    /// lock of a condition made over a given one).
    ///
    /// # Errors
    /// As [`open`](Condition::open).
    ///
    /// ```
    /// let made = shmkit::Condition::create_unique()?;
    /// let again = shmkit::Condition::open_with(made.name(), &shmkit::Options::new())?;
    /// # let _ = again;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, opts: &Options) -> Result<Condition> {
        let named = Named::<CondCore>::open(name, opts)?;
        let held = match &named.view().lock {
            Own::ByName(rec, lock) => {
                let r = if *rec {
                    RLock::open_with(lock, opts).map(Held::GivenRLock)
                } else {
                    Lock::open_with(lock, opts).map(Held::GivenLock)
                };
                r.map_err(|e| match e {
                    Error::InvalidName { .. } => {
                        Error::corrupted(name, "the recorded lock name is not a name")
                    }
                    e => e,
                })?
            }
            _ => Condition::own(&named)?,
        };
        Ok(Condition::from_parts(named, held))
    }

    fn named(&self) -> &Named<CondCore> {
        &self.named
    }

    /// Names this condition and operation `op` in an error (for `or_named`).
    #[inline]
    pub(crate) fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.named().at("Condition", op)
    }

    fn raw(&self) -> &'static RawCondition {
        self.named.view().cond
    }

    fn cond_lock(&self) -> CondLock<'_> {
        let own = self.named.seg().object_id();
        match &self.held {
            Held::RLock(r) => CondLock::from(*r).in_object(own),
            Held::Lock(l) => CondLock::from(*l).in_object(own),
            Held::GivenLock(l) => CondLock::from(l.raw()).in_object(l.object_id()),
            Held::GivenRLock(l) => CondLock::from(l.raw()).in_object(l.object_id()),
        }
    }

    /// Takes one level of the lock; whether a dead holder's mark was found.
    fn acquire_in(&self, timeout: Option<Duration>) -> Result<bool> {
        let spin = self.spin.get();
        match &self.held {
            Held::RLock(r) => Ok(r
                .acquire_in(self.named.seg().object_id(), timeout, spin)?
                .owner_died),
            Held::GivenRLock(l) => l.acquire(timeout),
            Held::Lock(l) => kept_lock(l, self.named.seg().object_id(), timeout, spin),
            Held::GivenLock(l) => kept_lock(l.raw(), l.object_id(), timeout, spin),
        }
    }

    /// Python's `acquire()`: takes the lock (one more level of an `RLock`
    /// this thread holds) without a guard, waiting up to `timeout` (`None`:
    /// as long as it takes); whether it took the lock over from a holder
    /// that died. Pair it with [`release`](Condition::release).
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout);
    /// [`Error::Deadlock`](crate::Error::Deadlock) for a plain [`Lock`]
    /// this thread holds.
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// assert!(!cond.acquire(None)?);
    /// assert_eq!(cond.notify(1)?, 0);
    /// cond.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        self.acquire_in(timeout).or_named(self.at("acquire"))
    }

    /// Python's `release()`: lets one level of the lock go.
    ///
    /// # Errors
    /// [`Error::NotOwner`](crate::Error::NotOwner) if this thread does not
    /// hold it (nothing changes).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// assert!(matches!(cond.release(), Err(shmkit::Error::NotOwner { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        match &self.held {
            Held::RLock(r) => r.release_in(self.named.seg().object_id()),
            Held::GivenRLock(l) => l.release(),
            Held::Lock(l) => kept_unlock(l, self.named.seg().object_id()),
            Held::GivenLock(l) => kept_unlock(l.raw(), l.object_id()),
        }
        .or_named(self.at("release"))
    }

    /// Takes the lock and returns a guard whose methods wait and notify;
    /// dropping it releases the lock (one level of an `RLock`).
    ///
    /// # Errors
    /// As [`acquire`](Condition::acquire) with no timeout.
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// let g = cond.lock()?;
    /// assert!(!g.owner_died());
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock(&self) -> Result<ConditionGuard<'_>> {
        let died = self.acquire_in(None).or_named(self.at("lock"))?;
        Ok(self.guard(died))
    }

    /// [`lock`](Condition::lock), or
    /// [`Error::Timeout`](crate::Error::Timeout) once `timeout` has passed
    /// (never earlier).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// let g = cond.lock_timeout(std::time::Duration::from_millis(5))?;
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>> {
        let died = self
            .acquire_in(Some(timeout))
            .or_named(self.at("lock_timeout"))?;
        Ok(self.guard(died))
    }

    fn guard(&self, owner_died: bool) -> ConditionGuard<'_> {
        ConditionGuard::new(self, owner_died)
    }

    fn wait_until(&self, deadline: Deadline) -> Result<Waited> {
        self.wait_waking(deadline, false)
    }

    fn wait_waking(&self, deadline: Deadline, wake_first: bool) -> Result<Waited> {
        self.raw()
            .wait_in(self.cond_lock(), deadline, self.spin.get(), wake_first)
    }

    /// Python's `wait()`: releases the lock (every level of an `RLock`),
    /// sleeps until a notify releases this thread, and takes the lock back
    /// (as deep as it was) before returning. `timed_out` is always false
    /// here, except after a scribbled slot (a spurious wake-up).
    ///
    /// # Errors
    /// [`Error::NotOwner`](crate::Error::NotOwner) if this thread does not
    /// hold the lock; [`Error::Full`](crate::Error::Full) if 64 threads
    /// already wait.
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// assert!(matches!(cond.wait(), Err(shmkit::Error::NotOwner { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait(&self) -> Result<Waited> {
        self.wait_until(Deadline::NEVER).or_named(self.at("wait"))
    }

    /// [`wait`](Condition::wait) for at most `timeout`: `timed_out` once it
    /// passed (never earlier) with no notify for this thread. The lock is
    /// held again either way.
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = shmkit::Condition::create_unique()?;
    /// cond.acquire(None)?;
    /// assert!(cond.wait_timeout(Duration::from_millis(10))?.timed_out);
    /// cond.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Waited> {
        self.wait_until(Deadline::after(timeout))
            .or_named(self.at("wait_timeout"))
    }

    /// Python's `wait_for(predicate)`: waits until `pred` (called with the
    /// lock held) is true; returns at once if it already is.
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// cond.acquire(None)?;
    /// assert!(!cond.wait_for(|| true)?.timed_out);
    /// cond.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_for(&self, pred: impl FnMut() -> bool) -> Result<Waited> {
        self.wait_for_until(pred, Deadline::NEVER)
            .or_named(self.at("wait_for"))
    }

    /// [`wait_for`](Condition::wait_for) for at most `timeout`: `timed_out`
    /// if the predicate was still false when it passed (never earlier).
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = shmkit::Condition::create_unique()?;
    /// cond.acquire(None)?;
    /// assert!(cond.wait_for_timeout(|| false, Duration::from_millis(10))?.timed_out);
    /// cond.release()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_for_timeout(
        &self,
        pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<Waited> {
        self.wait_for_until(pred, Deadline::after(timeout))
            .or_named(self.at("wait_for_timeout"))
    }

    fn wait_for_until(&self, pred: impl FnMut() -> bool, deadline: Deadline) -> Result<Waited> {
        self.wait_for_waking(pred, deadline, &std::cell::Cell::new(false))
    }

    /// `wait_for`; `wake`: a guard's deferred wake-up, issued by the first
    /// wait (left for the guard if the predicate needs none).
    fn wait_for_waking(
        &self,
        mut pred: impl FnMut() -> bool,
        deadline: Deadline,
        wake: &std::cell::Cell<bool>,
    ) -> Result<Waited> {
        if !RawCondition::held(self.cond_lock()) {
            return Err(Error::NotOwner {
                origin: Origin::UNKNOWN,
            });
        }
        let mut owner_died = false;
        loop {
            if pred() {
                return Ok(Waited {
                    timed_out: false,
                    owner_died,
                });
            }
            if deadline.expired() {
                return Ok(Waited {
                    timed_out: true,
                    owner_died,
                });
            }
            owner_died |= self.wait_waking(deadline, wake.take())?.owner_died;
        }
    }

    /// Python's `notify(n)`: releases up to `n` of the threads waiting now
    /// (oldest first) and returns how many. Never waits for them; a waiter
    /// whose process died is skipped. Nothing is kept for later waiters.
    ///
    /// # Errors
    /// [`Error::NotOwner`](crate::Error::NotOwner) if this thread does not
    /// hold the lock.
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// assert!(matches!(cond.notify(1), Err(shmkit::Error::NotOwner { .. })));
    /// let g = cond.lock()?;
    /// assert_eq!(cond.notify(1)?, 0);
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn notify(&self, n: usize) -> Result<usize> {
        if !RawCondition::held(self.cond_lock()) {
            return Err(Error::NotOwner {
                origin: Origin::UNKNOWN,
            })
            .or_named(self.at("notify"));
        }
        Ok(self.raw().notify_held(n))
    }

    /// Python's `notify_all()`: releases every thread waiting now.
    ///
    /// # Errors
    /// As [`notify`](Condition::notify).
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// let g = cond.lock()?;
    /// assert_eq!(cond.notify_all()?, 0);
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn notify_all(&self) -> Result<usize> {
        self.notify(usize::MAX).or_named(self.at("notify_all"))
    }

    /// How many threads wait and have not been notified (a snapshot).
    ///
    /// ```
    /// assert_eq!(shmkit::Condition::create_unique()?.waiting(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn waiting(&self) -> usize {
        self.raw().waiting()
    }

    /// Sets how this handle spins before it sleeps when it takes the lock,
    /// as [`Lock::set_spin`].
    ///
    /// ```
    /// let cond = shmkit::Condition::create_unique()?;
    /// cond.set_spin(shmkit::Spin::Never);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.spin.set(spin);
    }
}

/// Takes a plain lock without a guard, recording (as an `RLock`'s level)
/// whether it was told of a dead holder, so that the release can clear it.
fn kept_lock(
    l: &RawLock,
    object: Option<(u64, u64)>,
    timeout: Option<Duration>,
    spin: Spin,
) -> Result<bool> {
    let died = l.lock_kept(object, timeout, spin)?;
    sync::level_set(l.key(object), sync::current_stamp().tid(), 1, died);
    Ok(died)
}

fn kept_unlock(l: &RawLock, object: Option<(u64, u64)>) -> Result<()> {
    let key = l.key(object);
    let tid = sync::current_stamp().tid();
    let (_, told) = sync::level_get(key, tid);
    if l.held_by_me(object) {
        sync::level_set(key, tid, 0, false);
    }
    l.unlock_kept(object, told).map(drop)
}

mod guard;
pub use guard::ConditionGuard;
