//! `Lock`: a named lock shared by processes, robust to a dead holder.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, OrNamed, Result};
#[cfg(not(loom))]
use crate::future::Waiter;
use crate::handle::{named_create, named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::spin::{AdaptiveSpin, Spin};
use crate::raw::wait::Source;
use crate::raw::{RawLock, RawLockGuard};
use crate::segment::{Options, Spec};
use crate::waitset::{Interest, Waitable};
#[cfg(not(loom))]
use std::future::Future;
#[cfg(not(loom))]
use std::task::Poll;

/// A lock shared by every process that opens its name (Python's
/// `multiprocessing.Lock`), built on [`RawLock`].
///
/// If a holder dies (even by SIGKILL), the next locker gets the lock within
/// about 20 ms of the death, and its guard's
/// [`owner_died`](LockGuard::owner_died) is true. A live holder, however
/// slow, is never robbed. The lock is not recursive: locking it again from
/// the thread that holds it is [`Error::Deadlock`](crate::Error::Deadlock).
///
/// ```
/// use shmkit::Lock;
///
/// let lock = Lock::create_unique()?;
/// let same = Lock::open(lock.name())?; // as another process would
/// {
///     let guard = lock.lock()?;
///     assert!(!guard.owner_died());
///     assert!(same.try_lock()?.is_none());
/// }
/// assert!(same.try_lock()?.is_some());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Lock {
    named: Named<RawLock>,
    /// This handle's spin setting (only its mode is used).
    spin: AdaptiveSpin,
}

/// Holds a [`Lock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    inner: RawLockGuard<'a>,
}

impl LockGuard<'_> {
    /// True when this acquisition took the lock over from a thread or
    /// process that died holding it; the data it protects may need repair.
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// assert!(!lock.lock()?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.inner.owner_died()
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name())
            .field("owner_tid", &self.raw().owner_tid())
            .finish()
    }
}

impl Core for RawLock {
    type View = &'static RawLock;

    fn spec() -> Spec {
        Spec::of(Kind::Lock)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, _created: bool) -> Result<Self::View> {
        // SAFETY: the caller's contract is `RawLock::attach`'s, which checks
        // alignment and length: a payload too short for the core (a forged
        // header) is an error here, not a panic later.
        unsafe { RawLock::attach(p, len) }.map_err(|e| crate::Error::corrupted("", e.to_string()))
    }
}

named_handle! {
    impl Lock {
        what: "lock",
        path: "shmkit::Lock",
        make: "shmkit::Lock::create_unique()?",
        open_errors: "[`Error::Corrupted`](crate::Error::Corrupted) for a payload too short for a lock",
    }
}

named_create! {
    impl Lock {
        what: "lock",
        path: "shmkit::Lock",
        state: "n unlocked",
    }
}

impl Lock {
    fn create_inner(name: Option<&str>, opts: &Options) -> Result<Lock> {
        let init = |p: *mut u8, len: usize| {
            // SAFETY: `p` is the fresh segment's payload of `len` bytes,
            // 64-aligned, not yet published, so nobody else uses it.
            unsafe { RawLock::init_in(p, len) }.map(drop)
        };
        Named::create(name, 0, RawLock::required_size(), opts, init).map(Lock::from_named)
    }

    fn from_named(named: Named<RawLock>) -> Lock {
        Lock {
            named,
            spin: AdaptiveSpin::new(),
        }
    }

    fn named(&self) -> &Named<RawLock> {
        &self.named
    }

    /// Names this lock and operation `op` in an error (for `or_named`).
    #[inline]
    pub(crate) fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.named().at("Lock", op)
    }

    pub(crate) fn object_id(&self) -> Option<(u64, u64)> {
        self.named.seg().object_id()
    }

    #[inline]
    pub(crate) fn raw(&self) -> &'static RawLock {
        self.named.view()
    }

    /// Takes the lock, waiting as long as it takes (but taking it over from
    /// a dead holder).
    ///
    /// # Errors
    /// [`Error::Deadlock`](crate::Error::Deadlock) if this thread holds it.
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// let guard = lock.lock()?;
    /// drop(guard);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.raw()
            .lock_in(self.object_id(), None, self.spin.get())
            .map(|inner| LockGuard { inner })
            .or_named(self.at("lock"))
    }

    /// Takes the lock if that needs no waiting.
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// let g = lock.try_lock()?.expect("free");
    /// assert!(lock.try_lock()?.is_none());
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_lock(&self) -> Result<Option<LockGuard<'_>>> {
        Ok(self
            .raw()
            .try_lock_in(self.object_id())
            .or_named(self.at("try_lock"))?
            .map(|inner| LockGuard { inner }))
    }

    /// Takes the lock, or fails with [`Error::Timeout`](crate::Error::Timeout)
    /// after `timeout` (never earlier).
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = shmkit::Lock::create_unique()?;
    /// let g = lock.lock_timeout(Duration::from_millis(5))?;
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.raw()
            .lock_in(self.object_id(), Some(timeout), self.spin.get())
            .map(|inner| LockGuard { inner })
            .or_named(self.at("lock_timeout"))
    }

    /// Sets how this handle's blocking calls ([`lock`](Lock::lock),
    /// [`lock_timeout`](Lock::lock_timeout)) spin before they sleep:
    /// [`Spin::Adaptive`] (the default) looks up to 100 times (a
    /// microsecond or two) while nobody sleeps on the lock,
    /// [`Spin::Never`] sleeps at once, [`Spin::UpTo`] looks for up to that
    /// long while nobody sleeps. Other handles of the lock, in this process
    /// or others, keep their own setting.
    ///
    /// ```
    /// use shmkit::Spin;
    /// let lock = shmkit::Lock::create_unique()?;
    /// lock.set_spin(Spin::Never);
    /// assert_eq!(lock.spin(), Spin::Never);
    /// drop(lock.lock()?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.spin.set(spin);
    }

    /// This handle's spin setting (see [`set_spin`](Lock::set_spin)).
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// assert_eq!(lock.spin(), shmkit::Spin::Adaptive);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spin(&self) -> Spin {
        self.spin.get()
    }

    /// Whether someone holds the lock now (a snapshot).
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// assert!(!lock.is_locked());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// [`lock`](Lock::lock) as a future: waits for the lock without
    /// blocking the executor's thread, and takes over from a dead holder as
    /// `lock` does. Runtime-agnostic. The guard is not `Send`: hold it on
    /// one thread (a current-thread runtime, or across no `.await` on a
    /// work-stealing one).
    ///
    /// # Errors
    /// As [`lock`](Lock::lock).
    ///
    /// ```
    /// # use std::future::Future;
    /// let lock = shmkit::Lock::create_unique()?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut take = std::pin::pin!(lock.lock_async());
    /// let std::task::Poll::Ready(g) = take.as_mut().poll(&mut cx) else { panic!() };
    /// assert!(!g?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn lock_async(&self) -> impl Future<Output = Result<LockGuard<'_>>> + '_ {
        // An unlock wakes one sleeper; the async waiter thread may have
        // taken that wake-up for us. A future dropped without the lock
        // passes it on, so that a locker asleep does not lose it (see
        // `RawLock::pass_wake`).
        struct PassOn<'a> {
            lock: &'a RawLock,
            since: u32,
            taken: bool,
        }
        impl Drop for PassOn<'_> {
            fn drop(&mut self) {
                if !self.taken {
                    self.lock.pass_wake(self.since);
                }
            }
        }
        // The future's state, dropped field by field in this order: the
        // waiter's registration first, so that the async waiter thread has
        // left the lock's word before the pass-on looks at the wake count
        // (an unlock between the two would otherwise go to the thread, and
        // nobody would pass it on).
        struct State<'a> {
            w: Waiter,
            pass: PassOn<'a>,
            /// Pending once: woken by the lock's word, it has waited.
            slept: bool,
        }
        let raw = self.raw();
        let object = self.object_id();
        let mut st = State {
            w: Waiter::new(),
            pass: PassOn {
                lock: raw,
                since: raw.wake_seq(),
                taken: false,
            },
            slept: false,
        };
        std::future::poll_fn(move |cx| {
            let st = &mut st;
            let check_dead = st.w.check_dead();
            // Never spins (this is the executor's thread) and, once it has
            // waited, takes a hand-off and keeps `WAITERS` for the lockers
            // behind it (see `RawLock::try_lock_as`).
            let slept = st.slept;
            let attempt = |check_owner: bool| match raw.try_lock_as(object, slept, check_owner) {
                Ok(None) => None,
                Ok(Some(inner)) => Some(Ok(LockGuard { inner })),
                Err(e) => Some(Err(e).or_named(self.at("lock_async"))),
            };
            if let Some(r) = attempt(check_dead) {
                st.w.done();
                st.pass.taken = r.is_ok();
                return Poll::Ready(r);
            }
            let (word, armed) = raw.arm();
            if let Some(r) = attempt(false) {
                st.w.done();
                st.pass.taken = r.is_ok();
                return Poll::Ready(r);
            }
            st.w.sleep(cx, &[(word, armed)], &raw.owner_target());
            st.slept = true;
            Poll::Pending
        })
    }

    /// "The lock is free": for a [`WaitSet`](crate::WaitSet) or
    /// [`wait`](crate::wait). Ready when [`try_lock`](Lock::try_lock)
    /// would take it: free, or its holder died. Passing `&lock` means the
    /// same. Being ready does not reserve it: take it with `try_lock`.
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// assert!(lock.free_interest().is_ready());
    /// let g = lock.lock()?;
    /// assert!(!lock.free_interest().is_ready());
    /// drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn free_interest(&self) -> Interest<'_> {
        Interest::new(Source::Lock(self.raw()))
    }
}

/// Waiting on a lock waits for it to be free: [`Lock::free_interest`].
impl Waitable for Lock {
    fn interest(&self) -> Interest<'_> {
        self.free_interest()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::future::Future;
    use std::sync::mpsc;
    use std::task::{Context, Waker};

    use super::*;
    use crate::raw::lock::tests::holder;
    use crate::sys::test_support::{asleep, threads_named, until};

    /// The async waiter asleep on its current list: asleep, then (after
    /// time enough for a kick that came just before to be handled) asleep
    /// again. A thread found asleep right after a kick may not have left
    /// its old list yet.
    fn settled(what: &str) {
        until(what, async_waiter_asleep);
        std::thread::sleep(Duration::from_millis(20));
        until(what, async_waiter_asleep);
    }

    /// A waker that records that it was woken.
    pub(crate) struct Woken(std::sync::Mutex<bool>);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            *self.0.lock().unwrap() = true;
        }
    }

    impl Woken {
        pub(crate) fn take(&self) -> bool {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    /// Polls (`poll` says whether the future is pending) until the
    /// future's registration is in the waiter thread's list and the thread
    /// asleep on it: a poll whose registration was fired meanwhile (a death
    /// notice from an earlier test fires every registration) is repeated.
    /// Returns the waker's flag.
    fn park(mut poll: impl FnMut(&mut Context<'_>) -> bool) -> std::sync::Arc<Woken> {
        let flag = std::sync::Arc::new(Woken(Default::default()));
        let waker = Waker::from(flag.clone());
        loop {
            flag.take();
            assert!(poll(&mut Context::from_waker(&waker)), "not pending");
            settled("the async waiter asleep");
            if !flag.take() {
                return flag;
            }
        }
    }

    fn async_waiter_asleep() -> bool {
        let t = threads_named("shmkit-async");
        !t.is_empty() && t.iter().all(|&t| asleep(t))
    }

    /// Regression: a pending `lock_async` future dropped left the async
    /// waiter thread asleep on the lock's wake word. An unlock's single
    /// wake-up then went to that thread (which had nobody to tell) instead
    /// of a locker asleep behind it, who slept on until its own timer.
    #[test]
    fn a_dropped_lock_future_leaves_no_sleeper_on_the_lock() {
        let lock = Lock::create_unique().unwrap();
        let raw = lock.raw();
        std::thread::scope(|s| {
            let (cmd_tx, ev_rx) = holder(s, raw);
            {
                let mut cx = Context::from_waker(Waker::noop());
                let mut fut = std::pin::pin!(lock.lock_async());
                assert!(fut.as_mut().poll(&mut cx).is_pending());
                until("the async waiter asleep", async_waiter_asleep);
            }
            until("the async waiter asleep again", async_waiter_asleep);
            let (tid_tx, tid_rx) = mpsc::channel();
            let locker = s.spawn(move || {
                tid_tx.send(crate::sys::gettid()).unwrap();
                drop(raw.lock().unwrap());
            });
            let locker_tid = tid_rx.recv().unwrap();
            until("the locker asleep", || asleep(locker_tid));
            cmd_tx.send(()).unwrap();
            ev_rx.recv().unwrap();
            assert_eq!(
                raw.wake_word().wake_one(),
                0,
                "a locker was left asleep on a free lock"
            );
            locker.join().unwrap();
            cmd_tx.send(()).unwrap();
        });
    }

    /// Review: a `lock_async` future whose word the unlock's single
    /// wake-up went to takes the lock with `try_lock`, which keeps no
    /// `WAITERS` (the unlock cleared it). A locker asleep behind the future
    /// is then never woken: the future's unlock is a fast one. The locker
    /// sleeps on a free lock until its own timer.
    #[test]
    fn review_a_lock_future_that_took_the_wake_up_leaves_no_locker_asleep() {
        // Other tests share the waiter thread and may take it off the word
        // at the wrong moment: try until the unlock did wake it.
        for _ in 0..20 {
            if let Some((left_asleep, took)) = lock_future_took_the_wake_up_attempt() {
                assert!(
                    !left_asleep,
                    "a locker was left asleep on a free lock (it took {took:?})"
                );
                return;
            }
        }
        panic!("setup: the unlock never woke the waiter thread");
    }

    /// One attempt: `None` if the unlock woke the locker (not the waiter
    /// thread); else whether the locker was left asleep, and how long its
    /// lock took.
    fn lock_future_took_the_wake_up_attempt() -> Option<(bool, Duration)> {
        let lock = Lock::create_unique().unwrap();
        let raw = lock.raw();
        std::thread::scope(|s| {
            let (cmd_tx, ev_rx) = holder(s, raw);
            let noop = Waker::from(std::sync::Arc::new(Woken(Default::default())));
            let mut cx = Context::from_waker(&noop);
            let mut fut = Box::pin(lock.lock_async());
            // The async waiter is queued on the wake word first.
            park(|cx| fut.as_mut().poll(cx).is_pending());
            let (tid_tx, tid_rx) = mpsc::channel();
            let locker = s.spawn(move || {
                tid_tx.send(crate::sys::gettid()).unwrap();
                let t = std::time::Instant::now();
                drop(raw.lock().unwrap());
                t.elapsed()
            });
            let locker_tid = tid_rx.recv().unwrap();
            until("the locker asleep", || asleep(locker_tid));
            // The unlock wakes the first sleeper queued: the async waiter.
            cmd_tx.send(()).unwrap();
            ev_rx.recv().unwrap();
            let g = loop {
                if let std::task::Poll::Ready(g) = fut.as_mut().poll(&mut cx) {
                    break g.unwrap();
                }
                std::thread::yield_now();
            };
            let setup = !locker.is_finished();
            drop(g);
            drop(fut);
            settled("the async waiter asleep again");
            let left_asleep = asleep(locker_tid) && raw.wake_word().wake_one() == 1;
            let took = locker.join().unwrap();
            cmd_tx.send(()).unwrap();
            setup.then_some((left_asleep, took))
        })
    }

    /// Review: a fair unlock whose single wake-up goes to the async waiter
    /// thread (a `lock_async` future queued first) hands the lock to that
    /// future, but the future takes with `try_lock`, which refuses a fresh
    /// hand-off (only "a thread that has slept" may take it). The future
    /// stays pending; nothing wakes it when the hand-off goes stale, so it
    /// waits for the waiter thread's one-second repoll on a lock that is
    /// free and reserved for it. Deterministic: the first poll after the
    /// wake-up must take it.
    #[test]
    fn review_a_lock_future_woken_by_a_fair_unlock_takes_the_hand_off() {
        // Other tests share the waiter thread and may take it off the word
        // at the wrong moment (the fair unlock then finds nobody asleep and
        // undoes its hand-off): try until the hand-off went to the thread.
        for _ in 0..20 {
            if let Some((first_ready, took)) = fair_hand_off_attempt() {
                assert!(
                    first_ready,
                    "the future woken by a fair unlock did not take the hand-off (it could after {took:?})"
                );
                return;
            }
        }
        panic!("setup: the fair unlock never handed the lock to the waiter thread");
    }

    /// One attempt: `None` if the unlock was not a hand-off to the waiter
    /// thread; else whether the first poll took it, and when it could.
    fn fair_hand_off_attempt() -> Option<(bool, Duration)> {
        let lock = Lock::create_unique().unwrap();
        let raw = lock.raw();
        crate::raw::lock::tests::contended_unlocks(raw, 31);
        std::thread::scope(|s| {
            let (cmd_tx, ev_rx) = holder(s, raw);
            let mut fut = Box::pin(lock.lock_async());
            let woken = park(|cx| fut.as_mut().poll(cx).is_pending());
            // The 32nd contended unlock: a fair one, waking the waiter thread.
            cmd_tx.send(()).unwrap();
            ev_rx.recv().unwrap();
            let unlocked = std::time::Instant::now();
            if raw.free_ready(false) {
                // Not a hand-off to a sleeper: the thread was off the word.
                drop(fut);
                cmd_tx.send(()).unwrap();
                return None;
            }
            until("the future woken", || woken.take());
            let noop = Waker::from(std::sync::Arc::new(Woken(Default::default())));
            let mut cx = Context::from_waker(&noop);
            let first_ready = match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(g) => {
                    drop(g.unwrap());
                    true
                }
                std::task::Poll::Pending => false,
            };
            // Let it finish either way, to say how long it took.
            if !first_ready {
                loop {
                    std::thread::sleep(Duration::from_millis(1));
                    if let std::task::Poll::Ready(g) = fut.as_mut().poll(&mut cx) {
                        drop(g.unwrap());
                        break;
                    }
                }
            }
            let took = unlocked.elapsed();
            drop(fut);
            cmd_tx.send(()).unwrap();
            Some((first_ready, took))
        })
    }

    #[test]
    fn review_a_dropped_wait_set_future_passes_a_wake_up_it_took_after_looking() {
        // Other tests share the waiter thread and may kick it off the word
        // at the wrong moment: try until the unlock did wake it.
        for _ in 0..20 {
            if let Some(left_asleep) = dropped_wait_set_future_attempt() {
                assert!(!left_asleep, "a locker was left asleep on a free lock");
                return;
            }
        }
        panic!("setup: the unlock never woke the waiter thread");
    }

    /// One attempt: `None` if the unlock woke the locker (not the waiter
    /// thread); else whether the locker was left asleep.
    fn dropped_wait_set_future_attempt() -> Option<bool> {
        let lock = Lock::create_unique().unwrap();
        let raw = lock.raw();
        let dropping = &std::sync::Mutex::new(false);
        std::thread::scope(|s| {
            let (cmd_tx, ev_rx) = holder(s, raw);
            let mut set = crate::WaitSet::new();
            set.add(&lock).unwrap();
            let mut fut = Box::pin(set.wait_async());
            park(|cx| fut.as_mut().poll(cx).is_pending());
            let (tid_tx, tid_rx) = mpsc::channel();
            let locker = s.spawn(move || {
                tid_tx.send(crate::sys::gettid()).unwrap();
                drop(raw.lock().unwrap());
            });
            let locker_tid = tid_rx.recv().unwrap();
            until("the locker asleep", || asleep(locker_tid));
            let main_tid = crate::sys::gettid();
            let (held_tx, held_rx) = mpsc::channel();
            let z = s.spawn(move || {
                let g = crate::sync::reactor::tests::hold_state();
                held_tx.send(()).unwrap();
                // The drop below has looked at the wake count and waits
                // for the mutex to remove the registration.
                until("the dropper blocked", || {
                    *dropping.lock().unwrap() && asleep(main_tid)
                });
                // The unlock wakes the first sleeper queued: the waiter
                // thread, still on the word.
                cmd_tx.send(()).unwrap();
                ev_rx.recv().unwrap();
                let locker_slept_on = asleep(locker_tid);
                drop(g);
                (cmd_tx, locker_slept_on)
            });
            held_rx.recv().unwrap();
            *dropping.lock().unwrap() = true;
            drop(fut);
            let (cmd_tx, setup) = z.join().unwrap();
            settled("the async waiter asleep again");
            let left_asleep = asleep(locker_tid) && raw.wake_word().wake_one() == 1;
            locker.join().unwrap();
            cmd_tx.send(()).unwrap();
            setup.then_some(left_asleep)
        })
    }
}
