//! `Barrier`: a named barrier for a fixed number of parties in any
//! processes.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, OrNamed, Result};
use crate::handle::{named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::RawBarrier;
use crate::segment::{Options, Spec};
use crate::sync::Deadline;

/// A barrier for `parties` parties in any processes (Python's
/// `multiprocessing.Barrier`), built on [`RawBarrier`].
///
/// Each party calls [`wait`](Barrier::wait); once `parties` of them have,
/// all are released together and the barrier is ready for the next round
/// (it is reusable). `wait` returns the arrival index, `0..parties`:
/// exactly one party per round gets 0. An [action](Barrier::with_action)
/// runs once per round, in the last party to arrive, before anyone is
/// released. A barrier is *broken* by [`abort`](Barrier::abort), a
/// [timeout](Barrier::wait_timeout), an action that panics, or, unlike
/// Python's (cpython#123899), the death of a process that waits in it:
/// every waiting party then gets [`Error::BrokenBarrier`] promptly instead
/// of hanging. [`reset`](Barrier::reset) makes it usable again.
///
/// ```
/// use shmkit::Barrier;
///
/// let b = Barrier::create_unique(2)?;
/// let name = b.name().to_owned();
/// let other = std::thread::spawn(move || {
///     let b = Barrier::open(&name)?; // as another process would
///     b.wait()
/// });
/// let mine = b.wait()?;
/// let theirs = other.join().unwrap()?;
/// assert_eq!(mine + theirs, 1); // indices 0 and 1
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Barrier {
    named: Named<RawBarrier<'static>>,
    action: Option<Box<dyn Fn() + Send + Sync>>,
    timeout: Option<Duration>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("name", &self.name())
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Core for RawBarrier<'static> {
    type View = RawBarrier<'static>;

    fn spec() -> Spec {
        Spec::of(Kind::Barrier)
    }

    unsafe fn attach(p: *mut u8, len: usize, aux: u64, _created: bool) -> Result<Self::View> {
        // SAFETY: the caller's contract (an initialised payload of `len`
        // bytes, mapped while the view lives) is `RawBarrier::attach`'s,
        // which checks alignment, length and the party count.
        let b = unsafe { RawBarrier::attach(p, len) }
            .map_err(|e| Error::corrupted("", e.to_string()))?;
        if u64::from(b.parties()) != aux {
            return Err(Error::corrupted(
                "",
                format!(
                    "barrier header says {aux} parties, its payload {}",
                    b.parties()
                ),
            ));
        }
        Ok(b)
    }
}

named_handle! {
    impl Barrier {
        what: "barrier",
        path: "shmkit::Barrier",
        make: "shmkit::Barrier::create_unique(2)?",
        open_errors: "[`Error::Corrupted`](crate::Error::Corrupted) for a payload that does not hold the barrier its header promises",
    }
}

impl Barrier {
    /// Creates an empty barrier for `parties` parties named `name`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 parties (or more than
    /// [`MAX_PARTIES`](crate::raw::MAX_PARTIES)),
    /// [`Error::InvalidName`], [`Error::AlreadyExists`], and the other
    /// errors of [`Segment::create`](crate::Segment::create).
    ///
    /// ```
    /// # let name = format!("shmkit-doc-barrier-{}", std::process::id());
    /// let b = shmkit::Barrier::create(&name, 3)?;
    /// assert_eq!(b.parties(), 3);
    /// assert!(matches!(
    ///     shmkit::Barrier::create_unique(0),
    ///     Err(shmkit::Error::InvalidArgument(_))
    /// ));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str, parties: u32) -> Result<Barrier> {
        Self::create_inner(Some(name), parties, &Options::new())
    }

    /// [`create`](Barrier::create) with [`Options`] (mode, ...).
    ///
    /// # Errors
    /// As [`create`](Barrier::create).
    ///
    /// ```
    /// # let name = format!("shmkit-doc-barrierw-{}", std::process::id());
    /// let b = shmkit::Barrier::create_with(&name, 2, &shmkit::Options::new().mode(0o600))?;
    /// assert_eq!(b.parties(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(name: &str, parties: u32, opts: &Options) -> Result<Barrier> {
        Self::create_inner(Some(name), parties, opts)
    }

    /// Creates an empty barrier for `parties` parties under a fresh unique
    /// name.
    ///
    /// # Errors
    /// As [`create`](Barrier::create), except for the name.
    ///
    /// ```
    /// let b = shmkit::Barrier::create_unique(4)?;
    /// assert!(b.name().starts_with("shmkit-"));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique(parties: u32) -> Result<Barrier> {
        Self::create_inner(None, parties, &Options::new())
    }

    fn create_inner(name: Option<&str>, parties: u32, opts: &Options) -> Result<Barrier> {
        let size = RawBarrier::required_size(parties)?;
        let init = |p: *mut u8, len: usize| {
            // SAFETY: `p` is the fresh segment's payload of `len` bytes,
            // 64-aligned, not yet published, so nobody else uses it.
            unsafe { RawBarrier::init_in(p, len, parties) }.map(drop)
        };
        Named::create(name, u64::from(parties), size, opts, init).map(Barrier::from_named)
    }

    fn from_named(named: Named<RawBarrier<'static>>) -> Barrier {
        Barrier {
            named,
            action: None,
            timeout: None,
        }
    }

    fn named(&self) -> &Named<RawBarrier<'static>> {
        &self.named
    }

    /// Names this barrier and operation `op` in an error (for `or_named`).
    #[inline]
    pub(crate) fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.named().at("Barrier", op)
    }

    #[inline]
    fn raw(&self) -> &RawBarrier<'static> {
        self.named.view()
    }

    /// This handle's action: when a `wait` through this handle arrives
    /// last, it runs `action` once before any party is released. If the
    /// action panics, the barrier breaks (the others get
    /// [`Error::BrokenBarrier`]) and the panic continues in this party.
    /// Each process sets its own (closures do not cross processes); only
    /// the last arriver's runs.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    ///
    /// let runs = Arc::new(AtomicU32::new(0));
    /// let r = runs.clone();
    /// let b = shmkit::Barrier::create_unique(1)?.with_action(move || {
    ///     r.fetch_add(1, Ordering::SeqCst);
    /// });
    /// b.wait()?;
    /// b.wait()?;
    /// assert_eq!(runs.load(Ordering::SeqCst), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn with_action(mut self, action: impl Fn() + Send + Sync + 'static) -> Barrier {
        self.action = Some(Box::new(action));
        self
    }

    /// This handle's default timeout for [`wait`](Barrier::wait) (Python's
    /// `Barrier(n, timeout=...)`); `None` waits for as long as it takes.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = shmkit::Barrier::create_unique(2)?.with_timeout(Some(Duration::from_millis(1)));
    /// assert!(matches!(b.wait(), Err(shmkit::Error::BrokenBarrier { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Barrier {
        self.timeout = timeout;
        self
    }

    /// Waits until all parties have called `wait` (for at most the
    /// [default timeout](Barrier::with_timeout), if set); returns this
    /// party's arrival index in `0..parties`, exactly one party per round
    /// getting 0.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is broken, or breaks before
    /// all parties arrive: [`abort`](Barrier::abort),
    /// [`reset`](Barrier::reset), a timeout (its own or another party's),
    /// a waiting party's process that died, a panicking action.
    /// [`Error::Corrupted`] if the shared state is impossible.
    ///
    /// ```
    /// let b = shmkit::Barrier::create_unique(1)?;
    /// assert_eq!(b.wait()?, 0);
    /// assert_eq!(b.wait()?, 0); // reusable
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait(&self) -> Result<usize> {
        self.wait_deadline(self.timeout.map_or(Deadline::NEVER, Deadline::after))
            .or_named(self.at("wait"))
    }

    /// [`wait`](Barrier::wait) for at most `timeout`. As in Python, a
    /// timeout breaks the barrier: this party and every other one gets
    /// [`Error::BrokenBarrier`] (it never comes before `timeout`).
    ///
    /// # Errors
    /// As [`wait`](Barrier::wait).
    /// [`Error::Timeout`](crate::Error::Timeout) (and nothing breaks) if the
    /// timeout passed while this call waited for the previous trip's action
    /// to finish: it was not a party of that trip yet.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = shmkit::Barrier::create_unique(2)?;
    /// assert!(matches!(b.wait_timeout(Duration::from_millis(1)), Err(shmkit::Error::BrokenBarrier { .. })));
    /// assert!(b.broken());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_deadline(Deadline::after(timeout))
            .or_named(self.at("wait_timeout"))
    }

    fn wait_deadline(&self, deadline: Deadline) -> Result<usize> {
        let action = self.action.as_deref().map(|a| a as &dyn Fn());
        self.raw()
            .wait_until(deadline, action)
            .map_err(|e| match e {
                Error::Corrupted { detail, .. } => Error::corrupted(self.name(), detail),
                e => e,
            })
    }

    /// Breaks the barrier: the parties waiting now, and every `wait` until
    /// a [`reset`](Barrier::reset), get [`Error::BrokenBarrier`].
    ///
    /// ```
    /// let b = shmkit::Barrier::create_unique(3)?;
    /// b.abort();
    /// assert!(b.broken());
    /// assert!(matches!(b.wait(), Err(shmkit::Error::BrokenBarrier { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn abort(&self) {
        self.raw().abort();
    }

    /// Returns the barrier to empty and not broken; parties waiting now get
    /// [`Error::BrokenBarrier`].
    ///
    /// ```
    /// let b = shmkit::Barrier::create_unique(1)?;
    /// b.abort();
    /// b.reset();
    /// assert!(!b.broken());
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reset(&self) {
        self.raw().reset();
    }

    /// How many parties wait now (0 while broken, or while the last one
    /// runs the action).
    ///
    /// ```
    /// let b = shmkit::Barrier::create_unique(2)?;
    /// assert_eq!(b.n_waiting(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        self.raw().n_waiting()
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// let b = shmkit::Barrier::create_unique(2)?;
    /// assert!(!b.broken());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn broken(&self) -> bool {
        self.raw().broken()
    }

    /// The number of parties.
    ///
    /// ```
    /// assert_eq!(shmkit::Barrier::create_unique(5)?.parties(), 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn parties(&self) -> u32 {
        self.raw().parties()
    }
}
