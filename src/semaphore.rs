//! `Semaphore` and `BoundedSemaphore`: named counting semaphores shared by
//! processes, whose guarded permits come back when their holder dies.
//!
//! Both are a [`Named`] segment over one [`RawSemaphore`] (kind
//! `Semaphore`; the core's `BOUNDED` flag tells them apart, so each type
//! opens only its own). The methods are written once, by `sem_handle!`.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, OrNamed, Result};
use crate::handle::{named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::{RawSemaphore, RawSemaphoreGuard};
use crate::segment::{Options, Spec};

/// The core of a [`Semaphore`] segment.
pub(crate) struct PlainCore;
/// The core of a [`BoundedSemaphore`] segment.
pub(crate) struct BoundedCore;

/// Attaches to a semaphore payload, checking that it is bounded or not as
/// the handle expects.
///
/// # Safety
/// As [`Core::attach`].
unsafe fn attach_sem(p: *mut u8, len: usize, bounded: bool) -> Result<&'static RawSemaphore> {
    // SAFETY: the caller's contract is `RawSemaphore::attach`'s, which
    // checks alignment and length.
    let s =
        unsafe { RawSemaphore::attach(p, len) }.map_err(|e| Error::corrupted("", e.to_string()))?;
    if s.is_bounded() != bounded {
        let name = |b| if b { "BoundedSemaphore" } else { "Semaphore" };
        return Err(Error::WrongKind {
            name: String::new(),
            expected: name(bounded),
            found: name(!bounded).into(),
        });
    }
    Ok(s)
}

impl Core for PlainCore {
    type View = &'static RawSemaphore;

    fn spec() -> Spec {
        Spec::of(Kind::Semaphore)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, _created: bool) -> Result<Self::View> {
        // SAFETY: the caller's contract, passed on.
        unsafe { attach_sem(p, len, false) }
    }
}

impl Core for BoundedCore {
    type View = &'static RawSemaphore;

    fn spec() -> Spec {
        Spec::of(Kind::Semaphore)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, _created: bool) -> Result<Self::View> {
        // SAFETY: the caller's contract, passed on.
        unsafe { attach_sem(p, len, true) }
    }
}

fn create_sem<C: Core<View = &'static RawSemaphore>>(
    name: Option<&str>,
    value: u32,
    bounded: bool,
    opts: &Options,
) -> Result<Named<C>> {
    // Refused before any segment is made.
    RawSemaphore::new(value, bounded)?;
    let init = move |p: *mut u8, len: usize| {
        // SAFETY: `p` is the fresh segment's payload of `len` bytes,
        // 64-aligned, not yet published, so nobody else uses it.
        unsafe { RawSemaphore::init_in(p, len, value, bounded) }.map(drop)
    };
    Named::create(name, 0, RawSemaphore::required_size(), opts, init)
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; given back when
/// dropped.
///
/// While the semaphore's table of holders has room (30 entries), the
/// permit is *protected*: if this process dies holding it, a waiter takes
/// it over. [`keep`](SemaphoreGuard::keep) turns it into a plain permit
/// (Python's `acquire()`), given back by
/// [`release`](Semaphore::release).
///
/// `Send`: a semaphore has no owner thread, so a guard may be dropped on
/// another thread of the process that took it.
///
/// ```
/// let sem = shmkit::Semaphore::create_unique(1)?;
/// let g = sem.acquire()?;
/// assert!(g.is_protected());
/// assert!(!g.recovered());
/// drop(g);
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    inner: RawSemaphoreGuard<'a>,
}

impl SemaphoreGuard<'_> {
    /// Whether the permit comes back to the pool if this process dies:
    /// false when the table of holders was full when it was taken (it is
    /// then a plain permit, lost with its process as in Python).
    ///
    /// ```
    /// let sem = shmkit::Semaphore::create_unique(1)?;
    /// assert!(sem.acquire()?.is_protected());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_protected(&self) -> bool {
        self.inner.is_protected()
    }

    /// Whether this permit was taken over from a process that died holding
    /// it (whatever that process guarded with it may be half done).
    ///
    /// ```
    /// let sem = shmkit::Semaphore::create_unique(1)?;
    /// assert!(!sem.acquire()?.recovered());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recovered(&self) -> bool {
        self.inner.recovered()
    }

    /// Keeps the permit without a guard, as Python's `acquire()` does: it
    /// is given back by a [`release`](Semaphore::release) (of any process),
    /// and is no longer death-protected.
    ///
    /// ```
    /// let sem = shmkit::Semaphore::create_unique(1)?;
    /// sem.acquire()?.keep();
    /// assert_eq!(sem.value(), 0);
    /// sem.release(1)?;
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn keep(self) {
        self.inner.keep();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("protected", &self.is_protected())
            .field("recovered", &self.recovered())
            .finish()
    }
}

/// The methods `Semaphore` and `BoundedSemaphore` share, with docs whose
/// examples use `$path`.
macro_rules! sem_handle {
    ($ty:ident, $core:ty, $bounded:literal, $path:literal, $what:literal) => {
        impl $ty {
            #[doc = concat!("Creates a ", $what, " named `name` with `value` free permits (0 is allowed).")]
            ///
            /// # Errors
            /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if
            /// `value` exceeds [`raw::MAX_VALUE`](crate::raw::MAX_VALUE);
            /// [`Error::InvalidName`](crate::Error::InvalidName),
            /// [`Error::AlreadyExists`](crate::Error::AlreadyExists), and the
            /// other errors of [`Segment::create`](crate::Segment::create).
            ///
            /// ```
            #[doc = concat!("# let name = format!(\"shmkit-doc-", stringify!($ty), "-{}\", std::process::id());")]
            #[doc = concat!("let sem = ", $path, "::create(&name, 3)?;")]
            /// assert_eq!(sem.value(), 3);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn create(name: &str, value: u32) -> Result<Self> {
                create_sem(Some(name), value, $bounded, &Options::new()).map(Self)
            }

            #[doc = concat!("[`create`](Self::create) with [`Options`](crate::Options) (mode, ...).")]
            ///
            /// # Errors
            /// As [`create`](Self::create).
            ///
            /// ```
            #[doc = concat!("# let name = format!(\"shmkit-doc-", stringify!($ty), "w-{}\", std::process::id());")]
            #[doc = concat!("let sem = ", $path, "::create_with(&name, 1, &shmkit::Options::new().mode(0o600))?;")]
            /// # let _ = sem;
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn create_with(name: &str, value: u32, opts: &Options) -> Result<Self> {
                create_sem(Some(name), value, $bounded, opts).map(Self)
            }

            #[doc = concat!("Creates a ", $what, " with `value` free permits under a fresh unique name.")]
            ///
            /// # Errors
            /// As [`create`](Self::create), except for the name.
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(2)?;")]
            /// assert!(sem.name().starts_with("shmkit-"));
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn create_unique(value: u32) -> Result<Self> {
                create_sem(None, value, $bounded, &Options::new()).map(Self)
            }

            fn from_named(named: Named<$core>) -> Self {
                Self(named)
            }

            fn named(&self) -> &Named<$core> {
                &self.0
            }

            /// Names this semaphore and operation `op` in an error (for
            /// `or_named`).
            #[inline]
            fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
                self.0.at(stringify!($ty), op)
            }

            #[inline]
            fn raw(&self) -> &'static RawSemaphore {
                self.0.view()
            }

            fn wrap(&self, inner: RawSemaphoreGuard<'static>) -> SemaphoreGuard<'_> {
                SemaphoreGuard { inner }
            }

            /// Takes a permit, waiting as long as it takes (Python's
            /// `acquire()`, as a guard). A permit that a dead process held
            /// through a guard is taken over promptly (its exit wakes the
            /// waiter); the guard's
            /// [`recovered`](SemaphoreGuard::recovered) says so.
            ///
            /// # Errors
            /// None today; the `Result` leaves room for one.
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(1)?;")]
            /// let g = sem.acquire()?;
            /// assert_eq!(sem.value(), 0);
            /// drop(g);
            /// assert_eq!(sem.value(), 1);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
                self.raw().acquire().map(|g| self.wrap(g))
                .or_named(self.at("acquire"))
            }

            /// [`acquire`](Self::acquire), or
            /// [`Error::Timeout`](crate::Error::Timeout) once `timeout` has
            /// passed (never earlier; Python's `acquire(timeout=...)`).
            ///
            /// # Errors
            /// `Timeout`.
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let sem = ", $path, "::create_unique(0)?;")]
            /// let r = sem.acquire_timeout(Duration::from_millis(10));
            /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>> {
                self.raw().acquire_timeout(timeout).map(|g| self.wrap(g))
                .or_named(self.at("acquire_timeout"))
            }

            /// A permit if one is free now (or a dead holder's can be taken
            /// over); `None` otherwise (Python's `acquire(False)`). When none
            /// is free it asks the OS whether each process in the table of
            /// holders still runs (a `/proc` read each), so a tight polling
            /// loop on an empty semaphore is better written as
            /// [`acquire_timeout`](Self::acquire_timeout), which sleeps.
            ///
            /// # Errors
            /// None today; the `Result` leaves room for one.
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(1)?;")]
            /// let g = sem.try_acquire()?.expect("one is free");
            /// assert!(sem.try_acquire()?.is_none());
            /// # drop(g);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn try_acquire(&self) -> Result<Option<SemaphoreGuard<'_>>> {
                Ok(self
                    .raw()
                    .try_acquire()
                    .or_named(self.at("try_acquire"))?
                    .map(|g| self.wrap(g)))
            }

            /// Adds `n` permits and wakes the waiters (Python's
            /// `release(n)`). Any process may release; nothing checks that
            /// it took a permit.
            ///
            /// # Errors
            /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for
            /// `n == 0`;
            /// [`Error::TooManyReleases`](crate::Error::TooManyReleases) if
            /// the count would pass its bound (a bounded semaphore's
            /// initial value) or [`raw::MAX_VALUE`](crate::raw::MAX_VALUE).
            /// Nothing changes then.
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(1)?;")]
            /// assert!(matches!(sem.release(0), Err(shmkit::Error::InvalidArgument(_))));
            /// sem.acquire()?.keep(); // a permit without a guard
            /// sem.release(1)?;
            /// assert_eq!(sem.value(), 1);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn release(&self, n: u32) -> Result<()> {
                self.raw().release(n)
                .or_named(self.at("release"))
            }

            /// Gives back now the guarded permits of holders that died, and
            /// returns how many. An acquirer that finds no permit free does
            /// this by itself; until then [`value`](Self::value) counts a
            /// dead holder's permit as held.
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(2)?;")]
            /// assert_eq!(sem.reclaim(), 0);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn reclaim(&self) -> u32 {
                self.raw().reclaim()
            }

            /// The free permits now (a snapshot; Python's `get_value()`). A
            /// permit whose holder died counts as held until an acquirer
            /// or [`reclaim`](Self::reclaim) gives it back.
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(2)?;")]
            /// assert_eq!(sem.value(), 2);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn value(&self) -> u32 {
                self.raw().value()
            }

            /// The value it was created with.
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(2)?;")]
            /// let g = sem.acquire()?;
            /// assert_eq!(sem.initial_value(), 2);
            /// # drop(g);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn initial_value(&self) -> u32 {
                self.raw().limit()
            }

            /// How many permits are held through guards that come back if
            /// their process dies (a snapshot).
            ///
            /// ```
            #[doc = concat!("let sem = ", $path, "::create_unique(2)?;")]
            /// let g = sem.acquire()?;
            /// assert_eq!(sem.protected_holders(), 1);
            /// # drop(g);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn protected_holders(&self) -> u32 {
                self.raw().protected_holders()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.name())
                    .field("value", &self.value())
                    .field("initial_value", &self.initial_value())
                    .finish()
            }
        }
    };
}

/// A counting semaphore shared by every process that opens its name
/// (Python's `multiprocessing.Semaphore`), built on [`RawSemaphore`].
///
/// [`acquire`](Semaphore::acquire) waits for a free permit and returns a
/// guard that gives it back when dropped; [`release`](Semaphore::release)
/// adds permits (unbounded upward, as in Python, up to
/// [`raw::MAX_VALUE`](crate::raw::MAX_VALUE)). Unlike Python's, a permit
/// held through a guard by a process that dies (even by SIGKILL) comes
/// back to the pool: a waiter takes it over, woken by the death. The table
/// of guard holders has 30 entries; a guard taken while it is full works
/// but is not protected ([`SemaphoreGuard::is_protected`]).
///
/// ```
/// use shmkit::Semaphore;
///
/// let sem = Semaphore::create_unique(2)?;
/// let other = Semaphore::open(sem.name())?; // as another process would
/// let a = sem.acquire()?;
/// let b = other.acquire()?;
/// assert!(sem.try_acquire()?.is_none());
/// drop(a);
/// assert_eq!(other.value(), 1);
/// # drop(b);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Semaphore(Named<PlainCore>);

/// A semaphore whose count never passes its initial value (Python's
/// `multiprocessing.BoundedSemaphore`): a release that would is
/// [`Error::TooManyReleases`](crate::Error::TooManyReleases) and changes
/// nothing, checked in shared memory, so every handle of every process
/// sees the same bound. Otherwise as [`Semaphore`].
///
/// ```
/// use shmkit::{BoundedSemaphore, Error};
///
/// let sem = BoundedSemaphore::create_unique(1)?;
/// sem.acquire()?.keep();
/// sem.release(1)?;
/// assert!(matches!(sem.release(1), Err(Error::TooManyReleases { limit: 1, .. })));
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct BoundedSemaphore(Named<BoundedCore>);

sem_handle!(
    Semaphore,
    PlainCore,
    false,
    "shmkit::Semaphore",
    "semaphore"
);
sem_handle!(
    BoundedSemaphore,
    BoundedCore,
    true,
    "shmkit::BoundedSemaphore",
    "bounded semaphore"
);

named_handle! {
    impl Semaphore {
        what: "semaphore",
        path: "shmkit::Semaphore",
        make: "shmkit::Semaphore::create_unique(1)?",
        open_errors: "[`Error::WrongKind`](crate::Error::WrongKind) also for a `BoundedSemaphore`, [`Error::Corrupted`](crate::Error::Corrupted) for a payload too short for a semaphore",
    }
}

named_handle! {
    impl BoundedSemaphore {
        what: "bounded semaphore",
        path: "shmkit::BoundedSemaphore",
        make: "shmkit::BoundedSemaphore::create_unique(1)?",
        open_errors: "[`Error::WrongKind`](crate::Error::WrongKind) also for a plain `Semaphore`, [`Error::Corrupted`](crate::Error::Corrupted) for a payload too short for a semaphore",
    }
}
