//! [`WaitSet`] and [`wait`]: waiting on many queues, pipes and events at
//! once, with one sleep (`futex_waitv(2)`) and no polling loop.

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, Origin, Result};
use crate::raw::wait::{self, Source};
use crate::sync::Deadline;

/// Something a [`WaitSet`] can wait for: a message in a queue or pipe, room
/// to put or send, an event being set. Get one from
/// [`Queue::readable`](crate::Queue::readable),
/// [`Queue::writable`](crate::Queue::writable),
/// [`PipeEnd::readable`](crate::PipeEnd::readable),
/// [`PipeEnd::writable`](crate::PipeEnd::writable) or
/// [`Event::set_interest`](crate::Event::set_interest) or
/// [`Lock::free_interest`](crate::Lock::free_interest) or
/// [`process::Child::exit_interest`](crate::process::Child::exit_interest),
/// or pass the handle itself (a queue or pipe end stands for "readable", an
/// event for "set", a lock for "free", a child process for "exited").
///
/// ```
/// let q = shmkit::Queue::create_unique(4, 64)?;
/// let mut ws = shmkit::WaitSet::new();
/// let room = ws.add(q.writable())?;
/// assert!(ws.poll()?.contains(room));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Interest<'a> {
    src: Source<'a>,
}

impl<'a> Interest<'a> {
    pub(crate) fn new(src: Source<'a>) -> Interest<'a> {
        Interest { src }
    }

    /// Whether it is ready now, by a cheap look (no liveness read, except
    /// for a process's exit, which only `/proc` can tell).
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// assert!(!ev.set_interest().is_ready());
    /// ev.set();
    /// assert!(ev.set_interest().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_ready(&self) -> bool {
        self.src.ready(false)
    }
}

impl fmt::Debug for Interest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.src {
            Source::QueueGet(_) => "queue readable",
            Source::QueuePut(_) => "queue writable",
            Source::PipeRecv(_) => "pipe readable",
            Source::PipeSend(..) => "pipe writable",
            Source::Event(_) => "event set",
            Source::Lock(_) => "lock free",
            #[cfg(not(loom))]
            Source::Exit(_) => "process exited",
        };
        f.debug_tuple("Interest").field(&what).finish()
    }
}

/// A handle that can be waited on with [`wait`] or a [`WaitSet`].
///
/// Implemented by [`Queue`](crate::Queue) and [`PipeEnd`](crate::PipeEnd)
/// (a message to take), [`Event`](crate::Event) (set),
/// [`Lock`](crate::Lock) (free), and [`Interest`]
/// (anything more specific).
///
/// ```
/// use shmkit::Waitable;
/// let q = shmkit::Queue::create_unique(4, 64)?;
/// q.put(b"job")?;
/// assert!(q.interest().is_ready());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub trait Waitable {
    /// What waiting on `self` waits for.
    fn interest(&self) -> Interest<'_>;
}

impl Waitable for Interest<'_> {
    fn interest(&self) -> Interest<'_> {
        *self
    }
}

impl<'a, W: Waitable + ?Sized> From<&'a W> for Interest<'a> {
    fn from(w: &'a W) -> Interest<'a> {
        w.interest()
    }
}

/// Names an entry of a [`WaitSet`]: what [`WaitSet::add`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(usize);

impl Key {
    /// The entry's position: 0 for the first one added, and so on.
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// let mut ws = shmkit::WaitSet::new();
    /// assert_eq!(ws.add(&ev)?.index(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn index(self) -> usize {
        self.0
    }
}

/// The entries of a [`WaitSet`] that were ready, in the order they were added.
///
/// ```
/// let (a, b) = (shmkit::Event::create_unique()?, shmkit::Event::create_unique()?);
/// b.set();
/// let mut ws = shmkit::WaitSet::new();
/// let (ka, kb) = (ws.add(&a)?, ws.add(&b)?);
/// let ready = ws.wait()?;
/// assert!(ready.contains(kb) && !ready.contains(ka));
/// assert_eq!(ready.iter().collect::<Vec<_>>(), [kb]);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    keys: Vec<usize>,
}

impl Ready {
    /// Whether the entry `key` was ready.
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// let mut ws = shmkit::WaitSet::new();
    /// let k = ws.add(&ev)?;
    /// assert!(!ws.poll()?.contains(k));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn contains(&self, key: Key) -> bool {
        self.keys.binary_search(&key.0).is_ok()
    }

    /// The ready entries, in the order they were added.
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// ev.set();
    /// let mut ws = shmkit::WaitSet::new();
    /// let k = ws.add(&ev)?;
    /// assert_eq!(ws.wait()?.iter().next(), Some(k));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Key> + '_ {
        self.keys.iter().map(|&i| Key(i))
    }

    /// How many entries were ready.
    ///
    /// ```
    /// let ws = shmkit::WaitSet::new();
    /// # let _ = ws;
    /// assert_eq!(shmkit::Ready::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no entry was ready (only from [`WaitSet::poll`]).
    ///
    /// ```
    /// assert!(shmkit::Ready::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Waits on many queues, pipe ends, events and locks at once: Python's
/// `multiprocessing.connection.wait`, crossbeam's `Select`, iceoryx2's
/// WaitSet.
///
/// Add what to wait for, then [`wait`](WaitSet::wait),
/// [`wait_timeout`](WaitSet::wait_timeout) or
/// [`wait_deadline`](WaitSet::wait_deadline): they return every entry that
/// is ready. It is level-triggered, like poll(2): an entry is ready when
/// the matching `try_` call would not say [`Error::Empty`] or
/// [`Error::Full`] at that moment, or would say [`Error::Closed`] or
/// [`Error::Disconnected`]. A closed queue, a pipe whose peer closed its
/// end or whose process died, are ready, so nobody waits on a corpse (a
/// death is seen within the liveness interval, 20 ms). Another consumer may
/// take a message between the wait and your `try_` call: on `Empty`, wait
/// again.
///
/// The wait is one `futex_waitv(2)` over the entries' words (Linux 5.16
/// and later), so it costs no CPU while nothing happens. At most 128
/// entries (the kernel's limit for one call); more are refused with
/// [`Error::InvalidArgument`]. On older kernels it sleeps on the first
/// entry's word in slices of 2 ms and looks at the others between slices.
///
/// A set borrows what it waits on. Since a [`PipeEnd`](crate::PipeEnd)
/// receives through `&mut self`, build the set where you wait, as crossbeam's
/// `Select` is built: it is cheap (no syscall).
///
/// ```
/// use std::time::Duration;
/// use shmkit::{Event, Pipe, Queue, WaitSet};
///
/// let jobs = Queue::create_unique(16, 256)?;
/// let mut control = Pipe::create_unique()?;
/// let shutdown = Event::create_unique()?;
/// jobs.put(b"job 1")?;
/// shutdown.set();
/// loop {
///     let mut ws = WaitSet::new();
///     let (j, c, s) = (ws.add(&jobs)?, ws.add(&control)?, ws.add(&shutdown)?);
///     let ready = ws.wait_timeout(Duration::from_secs(10))?;
///     if ready.contains(j) {
///         if let Ok(job) = jobs.try_get() {
///             assert_eq!(job, b"job 1");
///         }
///     }
///     if ready.contains(c) {
///         let _msg = control.recv_timeout(Duration::ZERO);
///     }
///     if ready.contains(s) && jobs.is_empty() {
///         break;
///     }
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Default)]
pub struct WaitSet<'a> {
    sources: Vec<Source<'a>>,
    ready: Vec<usize>,
}

impl fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitSet")
            .field("entries", &self.sources.len())
            .finish()
    }
}

impl<'a> WaitSet<'a> {
    /// An empty set.
    ///
    /// ```
    /// assert!(shmkit::WaitSet::new().is_empty());
    /// ```
    pub fn new() -> WaitSet<'a> {
        WaitSet::default()
    }

    /// Adds something to wait for: a handle (`&queue`, `&pipe_end`,
    /// `&event`) or an [`Interest`] (`queue.writable()`, ...). Returns the
    /// key under which [`Ready`] reports it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] past 128 entries, or for what can never
    /// happen (the readable side of a send-only pipe end, the writable side
    /// of a receive-only one).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// let mut ws = shmkit::WaitSet::new();
    /// let get = ws.add(&q)?;
    /// let put = ws.add(q.writable())?;
    /// assert_ne!(get, put);
    /// assert_eq!(ws.len(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn add(&mut self, what: impl Into<Interest<'a>>) -> Result<Key> {
        let src = what.into().src;
        if self.sources.len() >= wait::MAX_SOURCES {
            return Err(wait::too_many(self.sources.len() + 1));
        }
        src.check()?;
        self.sources.push(src);
        Ok(Key(self.sources.len() - 1))
    }

    /// How many entries the set has.
    ///
    /// ```
    /// assert_eq!(shmkit::WaitSet::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether the set has no entries.
    ///
    /// ```
    /// assert!(shmkit::WaitSet::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Waits as long as it takes for at least one entry to be ready.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on an empty set (it would wait forever).
    ///
    /// ```
    /// let ev = shmkit::Event::create_unique()?;
    /// ev.set();
    /// let mut ws = shmkit::WaitSet::new();
    /// let k = ws.add(&ev)?;
    /// assert!(ws.wait()?.contains(k));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait(&mut self) -> Result<Ready> {
        if self.sources.is_empty() {
            return Err(Error::InvalidArgument(
                "wait on an empty WaitSet would never return".into(),
            ));
        }
        self.wait_until(Deadline::NEVER)
    }

    /// Waits until at least one entry is ready, or `timeout` passed.
    ///
    /// # Errors
    /// [`Error::Timeout`] when nothing was ready in time (never before
    /// `timeout`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let ev = shmkit::Event::create_unique()?;
    /// let mut ws = shmkit::WaitSet::new();
    /// ws.add(&ev)?;
    /// let r = ws.wait_timeout(Duration::from_millis(5));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Ready> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Waits until at least one entry is ready, or `deadline`.
    ///
    /// # Errors
    /// [`Error::Timeout`] when nothing was ready by `deadline`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = shmkit::Queue::create_unique(1, 8)?;
    /// q.put(b"x")?;
    /// let mut ws = shmkit::WaitSet::new();
    /// let k = ws.add(&q)?;
    /// let ready = ws.wait_deadline(Instant::now() + Duration::from_secs(1))?;
    /// assert!(ready.contains(k));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<Ready> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_until(Deadline::after(left))
    }

    /// The entries ready now, without waiting (a dead peer's entry included:
    /// this reads liveness). Empty when none is.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 8)?;
    /// let mut ws = shmkit::WaitSet::new();
    /// let k = ws.add(&q)?;
    /// assert!(ws.poll()?.is_empty());
    /// q.put(b"x")?;
    /// assert!(ws.poll()?.contains(k));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn poll(&mut self) -> Result<Ready> {
        match self.wait_until(Deadline::after(Duration::ZERO)) {
            Err(Error::Timeout { .. }) => Ok(Ready::default()),
            r => r,
        }
    }

    /// [`wait`](WaitSet::wait) as a future: resolves with the ready
    /// entries without blocking the executor's thread. Runtime-agnostic.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on an empty set.
    ///
    /// ```
    /// # use std::future::Future;
    /// let ev = shmkit::Event::create_unique()?;
    /// let mut ws = shmkit::WaitSet::new();
    /// let k = ws.add(&ev)?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut wait = std::pin::pin!(ws.wait_async());
    /// assert!(wait.as_mut().poll(&mut cx).is_pending());
    /// ev.set();
    /// let std::task::Poll::Ready(r) = wait.as_mut().poll(&mut cx) else { panic!() };
    /// assert!(r?.contains(k));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn wait_async(&mut self) -> impl std::future::Future<Output = Result<Ready>> + '_ {
        // The future's state, dropped field by field in this order: the
        // waiter's registrations first, so that the async waiter thread
        // has left the words before the pass-on (`wait::LockWakes`) looks
        // at a lock's wake count; an unlock between the two would go to
        // the thread, and nobody would pass it on.
        struct State<'s, 'a> {
            w: crate::future::Waiter,
            guard: wait::LockWakes<'s, 'a>,
            /// The lock sources armed by the last poll, with their counts.
            locks: Vec<(&'a crate::raw::RawLock, u32)>,
        }
        let mut st = State {
            w: crate::future::Waiter::new(),
            guard: wait::LockWakes::new(&self.sources),
            locks: Vec::new(),
        };
        let ready = &mut self.ready;
        std::future::poll_fn(move |cx| {
            let State { w, guard, locks } = &mut st;
            let sources = guard.sources();
            // Woken since the last poll: give up a fair hand-off sent here.
            wait::undo_handoffs(locks);
            if sources.is_empty() {
                return std::task::Poll::Ready(Err(Error::InvalidArgument(
                    "wait on an empty WaitSet would never return".into(),
                )));
            }
            let check_dead = w.check_dead();
            if wait::poll_once(sources, check_dead, ready) {
                w.done();
                return std::task::Poll::Ready(Ok(Ready {
                    keys: ready.clone(),
                }));
            }
            let (words, targets) = wait::arm_all(sources, locks);
            if wait::poll_once(sources, false, ready) {
                w.done();
                return std::task::Poll::Ready(Ok(Ready {
                    keys: ready.clone(),
                }));
            }
            w.sleep(cx, &words, &targets);
            std::task::Poll::Pending
        })
    }

    fn wait_until(&mut self, deadline: Deadline) -> Result<Ready> {
        if wait::wait(&self.sources, deadline, &mut self.ready)? {
            Ok(Ready {
                keys: self.ready.clone(),
            })
        } else {
            Err(Error::Timeout {
                origin: Origin::new("WaitSet", "wait"),
            })
        }
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` (`None`:
/// as long as it takes), and returns the indices of those that are, in
/// order. Python's `multiprocessing.connection.wait`; like it, an empty
/// list means the timeout passed. See [`WaitSet`] for what "ready" means.
///
/// # Errors
/// [`Error::InvalidArgument`] for more than 128 objects, for what can never
/// be ready (see [`WaitSet::add`]), or for no objects and no timeout.
///
/// ```
/// use std::time::Duration;
/// use shmkit::Waitable;
///
/// let q = shmkit::Queue::create_unique(4, 64)?;
/// let ev = shmkit::Event::create_unique()?;
/// ev.set();
/// let ready = shmkit::wait(&[&q as &dyn Waitable, &ev], Some(Duration::from_secs(1)))?;
/// assert_eq!(ready, [1]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let mut ws = WaitSet::new();
    for o in objects {
        ws.add(o.interest())?;
    }
    let r = match timeout {
        Some(t) => ws.wait_timeout(t),
        None => ws.wait(),
    };
    match r {
        Ok(ready) => Ok(ready.keys),
        Err(Error::Timeout { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
