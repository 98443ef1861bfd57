//! `Event`: a named manual-reset event shared by processes.

use std::fmt;
use std::time::Duration;

use crate::error::Result;
#[cfg(not(loom))]
use crate::future::Waiter;
use crate::handle::{named_create, named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::wait::Source;
use crate::raw::RawEvent;
use crate::segment::{Options, Spec};
use crate::waitset::{Interest, Waitable};
#[cfg(not(loom))]
use std::future::Future;
#[cfg(not(loom))]
use std::task::Poll;

/// A manual-reset event shared by every process that opens its name
/// (Python's `multiprocessing.Event`), built on [`RawEvent`].
///
/// [`set`](Event::set) raises the flag and wakes every waiter (with nobody
/// waiting it makes no syscall); [`clear`](Event::clear) lowers it;
/// [`wait`](Event::wait) returns at once while it is up.
///
/// ```
/// use std::time::Duration;
/// use shmkit::Event;
///
/// let ev = Event::create_unique()?;
/// let same = Event::open(ev.name())?; // as another process would
/// assert!(!same.wait_timeout(Duration::from_millis(1))?);
/// ev.set();
/// same.wait()?;
/// assert!(same.is_set());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Event(Named<RawEvent>);

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("set", &self.is_set())
            .finish()
    }
}

impl Core for RawEvent {
    type View = &'static RawEvent;

    fn spec() -> Spec {
        Spec::of(Kind::Event)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, _created: bool) -> Result<Self::View> {
        // SAFETY: the caller's contract (an initialised payload of `len`
        // bytes, mapped while the view lives) is `RawEvent::attach`'s;
        // `attach` checks alignment and length, so a payload too short for
        // the core (a forged header) is an error here, not a panic later.
        unsafe { RawEvent::attach(p, len) }.map_err(|e| crate::Error::corrupted("", e.to_string()))
    }
}

named_handle! {
    impl Event {
        what: "event",
        path: "shmkit::Event",
        make: "shmkit::Event::create_unique()?",
        open_errors: "[`Error::Corrupted`](crate::Error::Corrupted) for a payload too short for an event",
    }
}

named_create! {
    impl Event {
        what: "event",
        path: "shmkit::Event",
        state: " cleared",
    }
}

impl Event {
    fn create_inner(name: Option<&str>, opts: &Options) -> Result<Event> {
        let init = |p: *mut u8, len: usize| {
            // SAFETY: `p` is the fresh segment's payload of `len` bytes,
            // 64-aligned, not yet published, so nobody else uses it.
            unsafe { RawEvent::init_in(p, len) }.map(drop)
        };
        Named::create(name, 0, RawEvent::required_size(), opts, init).map(Event)
    }

    fn from_named(n: Named<RawEvent>) -> Event {
        Event(n)
    }

    fn named(&self) -> &Named<RawEvent> {
        &self.0
    }

    #[inline]
    fn raw(&self) -> &'static RawEvent {
        self.0.view()
    }

    /// Raises the flag and wakes every waiter.
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// ev.set();
    /// assert!(ev.is_set());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set(&self) {
        self.raw().set();
    }

    /// Lowers the flag.
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// ev.set();
    /// ev.clear();
    /// assert!(!ev.is_set());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn clear(&self) {
        self.raw().clear();
    }

    /// Whether the flag is up.
    ///
    /// ```
    /// assert!(!shmkit::Event::create_unique()?.is_set());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.raw().is_set()
    }

    /// Waits until the flag is up; returns at once if it is.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a corrupted event.
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// ev.set();
    /// ev.wait()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait(&self) -> Result<()> {
        self.raw().wait();
        Ok(())
    }

    /// Waits until the flag is up or `timeout` passed; `Ok(false)` on
    /// timeout, which never comes early.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ev = shmkit::Event::create_unique()?;
    /// assert!(!ev.wait_timeout(Duration::from_millis(2))?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.raw().wait_timeout(timeout))
    }

    /// [`wait`](Event::wait) as a future: resolves once the flag is up,
    /// without blocking the executor's thread. Runtime-agnostic.
    ///
    /// ```
    /// # use std::future::Future;
    /// let ev = shmkit::Event::create_unique()?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut wait = std::pin::pin!(ev.wait_async());
    /// assert!(wait.as_mut().poll(&mut cx).is_pending());
    /// ev.set();
    /// assert!(wait.as_mut().poll(&mut cx).is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn wait_async(&self) -> impl Future<Output = ()> + '_ {
        let mut w = Waiter::new();
        std::future::poll_fn(move |cx| {
            if self.raw().is_set() {
                w.done();
                return Poll::Ready(());
            }
            let armed = self.raw().arm();
            if self.raw().is_set() {
                w.done();
                return Poll::Ready(());
            }
            w.sleep(cx, &[(self.raw().futex(), armed)], &[]);
            Poll::Pending
        })
    }

    /// "The flag is up": for a [`WaitSet`](crate::WaitSet) or
    /// [`wait`](crate::wait). Passing `&event` means the same.
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// assert!(!ev.set_interest().is_ready());
    /// ev.set();
    /// assert!(ev.set_interest().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_interest(&self) -> Interest<'_> {
        Interest::new(Source::Event(self.raw()))
    }
}

/// Waiting on an event waits for it to be set: [`Event::set_interest`].
impl Waitable for Event {
    fn interest(&self) -> Interest<'_> {
        self.set_interest()
    }
}
