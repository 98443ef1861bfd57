//! The crate's one error type.

use std::fmt;
use std::io;

/// Which object an operation's error came from, and which operation: the
/// object's kind (`"Queue"`, `"Lock"`, ...), its segment name, and the
/// method called (`"try_get"`, `"recv_timeout"`, ...).
///
/// Every error that reports an operation's outcome ([`Error::Timeout`],
/// [`Error::Empty`], [`Error::Closed`], ...) carries one, so that a message
/// says what it is about: `Queue "jobs": try_get: empty`. A raw core on
/// memory the caller manages ([`raw`](crate::raw)) knows no name: its errors
/// carry the core's kind and operation and no name.
///
/// It is `Copy`: making one for the error of a `try_` call is a copy of a
/// few words, never an allocation or a reference count. A name of up to 46
/// bytes (every [`create_unique`](crate::Queue::create_unique) name, and
/// most chosen ones) is held in place; a longer one is kept once per
/// process when a handle first creates or opens it.
///
/// ```
/// let q = shmkit::Queue::create_unique(4, 64)?;
/// let e = q.try_get().unwrap_err();
/// let origin = e.origin().unwrap();
/// assert_eq!(origin.kind(), "Queue");
/// assert_eq!(origin.name(), Some(q.name()));
/// assert_eq!(origin.operation(), "try_get");
/// assert_eq!(origin.to_string(), format!("Queue {:?} try_get", q.name()));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    kind: &'static str,
    name: Name,
    operation: &'static str,
}

/// The longest name an [`Origin`] holds in place.
const INLINE: usize = 46;

/// An object's name as an [`Origin`] holds it: `Copy`, so that naming an
/// error is a copy of a few words, with no allocation and no atomic
/// reference count (an `Arc<str>` was measured: the locked increment and
/// decrement of its count doubled the cost of an empty queue's `try_get`).
/// A name of up to [`INLINE`] bytes is held in place; a longer one is
/// interned: one copy per distinct long name for the life of the process
/// (see [`intern`]). A handle makes it once, when it creates or opens its
/// segment, and its errors copy it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Name {
    /// No name: a raw core on the caller's memory, or unknown.
    None,
    /// Up to [`INLINE`] bytes of a `str` (the rest zero).
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A longer name, interned.
    Interned(&'static str),
}

/// The one copy of `name` this process keeps for errors' origins: names
/// longer than [`INLINE`] bytes are rare (segment names are at most 200
/// bytes, `create_unique` ones 23), and each distinct one is kept once, so
/// what this holds is bounded by the distinct long names the process uses.
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.into());
    names.insert(n);
    n
}

impl Name {
    /// `name` in place if short enough, else interned (which may allocate,
    /// once per distinct name: this is for creating and opening).
    pub(crate) fn new(name: &str) -> Name {
        Name::inline(name).unwrap_or_else(|| Name::Interned(intern(name)))
    }

    fn inline(name: &str) -> Option<Name> {
        let len = u8::try_from(name.len())
            .ok()
            .filter(|&l| usize::from(l) <= INLINE)?;
        let mut bytes = [0; INLINE];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Name::Inline { len, bytes })
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Name::None => None,
            // Whole `str`s only are stored, so this never fails.
            Name::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).ok(),
            Name::Interned(s) => Some(s),
        }
    }
}

/// As a struct of its accessors (the name as a string).
impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("kind", &self.kind)
            .field("name", &self.name())
            .field("operation", &self.operation)
            .finish()
    }
}

impl Origin {
    /// Nothing known: no kind, no name, no operation (its `Display` is
    /// empty, and an error carrying it prints as before). Errors made where
    /// no object is involved carry it.
    ///
    /// ```
    /// let e = shmkit::Error::Timeout { origin: shmkit::Origin::UNKNOWN };
    /// assert_eq!(e.to_string(), "timed out");
    /// ```
    pub const UNKNOWN: Origin = Origin {
        kind: "",
        name: Name::None,
        operation: "",
    };

    /// An origin without a name: operation `operation` on an object of kind
    /// `kind` (a raw core on memory the caller manages).
    ///
    /// ```
    /// let o = shmkit::Origin::new("RawQueue", "try_get");
    /// assert_eq!(o.name(), None);
    /// assert_eq!(o.to_string(), "RawQueue try_get");
    /// ```
    pub const fn new(kind: &'static str, operation: &'static str) -> Origin {
        Origin {
            kind,
            name: Name::None,
            operation,
        }
    }

    /// Operation `operation` on the object of kind `kind` in segment
    /// `name` (a copy of the handle's [`Name`]: no allocation).
    pub(crate) fn named(kind: &'static str, name: &Name, operation: &'static str) -> Origin {
        Origin {
            kind,
            name: *name,
            operation,
        }
    }

    /// As [`named`](Origin::named), from a plain name (a long one
    /// allocates: for paths that may, such as opening a segment).
    pub(crate) fn of_str(kind: &'static str, name: &str, operation: &'static str) -> Origin {
        Origin {
            kind,
            name: Name::new(name),
            operation,
        }
    }

    /// The kind of object (`"Queue"`, `"PipeSender"`, `"RawLock"`, ...),
    /// or `""` if unknown.
    ///
    /// ```
    /// assert_eq!(shmkit::Origin::new("Lock", "lock").kind(), "Lock");
    /// ```
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The object's segment name, or `None` for an object in memory the
    /// caller manages (or unknown).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// let e = q.get_timeout(std::time::Duration::ZERO).unwrap_err();
    /// assert_eq!(e.origin().unwrap().name(), Some(q.name()));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_str()
    }

    /// The operation that failed (`"try_get"`, `"wait_timeout"`, ...), or
    /// `""` if unknown.
    ///
    /// ```
    /// assert_eq!(shmkit::Origin::new("Lock", "lock").operation(), "lock");
    /// ```
    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

/// `Queue "jobs" try_get`: the kind, the quoted name and the operation,
/// each left out when unknown.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if !self.kind.is_empty() {
            f.write_str(self.kind)?;
            sep = " ";
        }
        if let Some(name) = self.name() {
            write!(f, "{sep}{name:?}")?;
            sep = " ";
        }
        if !self.operation.is_empty() {
            write!(f, "{sep}{}", self.operation)?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in shmkit, as variants a caller can act on.
///
/// Where a segment is involved its name is carried, so that the message says
/// which segment and what was expected. An operation's outcome
/// ([`Timeout`](Error::Timeout), [`Full`](Error::Full),
/// [`Empty`](Error::Empty), [`Closed`](Error::Closed), ...) carries an
/// [`Origin`]: the object's kind and name and the method called, read with
/// [`origin`](Error::origin) and printed first (`Queue "jobs": try_get:
/// empty`), so that an error passed up with `?` still says what it is
/// about. Match those variants with `{ .. }` (or bind `origin`).
///
/// ```
/// use shmkit::{Error, Segment};
///
/// match Segment::open("shmkit-doc-no-such-segment") {
///     Err(Error::NotFound { name }) => assert_eq!(name, "shmkit-doc-no-such-segment"),
///     other => panic!("unexpected {other:?}"),
/// }
/// let q = shmkit::Queue::create_unique(4, 64)?;
/// match q.try_get() {
///     Err(e @ Error::Empty { .. }) => {
///         assert_eq!(e.to_string(), format!("Queue {:?}: try_get: empty", q.name()))
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The name is not 1..=200 bytes of `[A-Za-z0-9._-]`, or is `.` or `..`.
    InvalidName {
        /// The name as given (lossily, if it was not UTF-8).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An argument is out of range (a zero length, an index past the end, …).
    InvalidArgument(String),
    /// A segment of this name already exists.
    AlreadyExists {
        /// The segment's name.
        name: String,
        /// `Some(pid)` when the segment in the way is stale: its creator
        /// (process `pid`) is dead and no live process uses it, so
        /// [`prune`](crate::prune) would remove it and
        /// [`Options::replace_stale`](crate::Options::replace_stale) would
        /// replace it. The message then says so.
        dead_creator: Option<u32>,
    },
    /// No segment of this name exists.
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// The OS refused access, or the segment belongs to another user and the
    /// caller did not allow that.
    PermissionDenied {
        /// The segment's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The segment holds another kind of object (a `Lock` opened as a `Queue`).
    WrongKind {
        /// The segment's name.
        name: String,
        /// The kind the caller asked for.
        expected: &'static str,
        /// The kind the segment holds (or its raw code if unknown).
        found: String,
    },
    /// The segment holds the right kind but of another payload type
    /// (a `Value<u64>` opened as `Value<u32>`).
    TypeMismatch {
        /// The segment's name.
        name: String,
        /// The type the caller asked for.
        expected: &'static str,
    },
    /// The segment was made by an incompatible version of shmkit.
    VersionMismatch {
        /// The segment's name.
        name: String,
        /// The format version this build understands.
        expected: u32,
        /// The format version found.
        found: u32,
    },
    /// Shared memory holds something impossible: a bad magic number, a length
    /// that does not fit, an index out of range. Another process wrote it, or
    /// the segment is not shmkit's.
    Corrupted {
        /// The segment's name (empty for memory the caller manages).
        name: String,
        /// What was found wrong.
        detail: String,
    },
    /// The operation did not complete before its deadline.
    Timeout {
        /// The object and the operation that timed out.
        origin: Origin,
    },
    /// A non-blocking put found no room.
    Full {
        /// The object and the operation that found it full.
        origin: Origin,
    },
    /// A non-blocking get found nothing.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// match q.try_get() {
    ///     Err(shmkit::Error::Empty { origin }) => assert_eq!(origin.operation(), "try_get"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    Empty {
        /// The object and the operation that found it empty.
        origin: Origin,
    },
    /// The message is larger than the largest the object was made for.
    MessageTooLarge {
        /// The object and the operation.
        origin: Origin,
        /// The message's length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The buffer cannot hold the next message; the message stays queued.
    BufferTooSmall {
        /// The object and the operation.
        origin: Origin,
        /// The length of the message.
        needed: usize,
    },
    /// A typed receive (`get_value`, `recv_value`, their `try_`/timeout
    /// forms) took a message whose length is not the type's: too long or
    /// too short alike, the message is consumed and its bytes are here, so
    /// nothing is lost and later typed receives are not held up by it.
    WrongSize {
        /// The object and the operation.
        origin: Origin,
        /// The size of the type asked for.
        expected: usize,
        /// The message taken.
        message: Vec<u8>,
    },
    /// The other end is gone (dropped, or its process died) and nothing
    /// more will arrive.
    Disconnected {
        /// The object and the operation that found the other end gone.
        origin: Origin,
    },
    /// The object was closed.
    Closed {
        /// The object and the operation that found it closed.
        origin: Origin,
    },
    /// The object is already in use by a live process (a second `Pipe::open`).
    InUse {
        /// The segment's name.
        name: String,
    },
    /// The calling thread already holds this lock; waiting would never end.
    Deadlock {
        /// The lock and the operation.
        origin: Origin,
    },
    /// The calling thread does not hold the lock it tried to release (an
    /// [`RLock`](crate::RLock) released by a thread that does not own it);
    /// nothing changed.
    NotOwner {
        /// The lock and the operation.
        origin: Origin,
    },
    /// A release would raise a semaphore's count past its limit: a
    /// [`BoundedSemaphore`](crate::BoundedSemaphore)'s initial value
    /// (Python's "semaphore or lock released too many times"), or the
    /// largest count any semaphore can hold
    /// ([`raw::MAX_VALUE`](crate::raw::MAX_VALUE)). Nothing changed.
    TooManyReleases {
        /// The semaphore and the operation.
        origin: Origin,
        /// The most the count may reach.
        limit: u32,
    },
    /// The [`Barrier`](crate::Barrier) is broken, or broke while this party
    /// waited: it was aborted or reset, a party's wait timed out, a waiting
    /// party's process died, or the action panicked (Python's
    /// `BrokenBarrierError`). [`Barrier::reset`](crate::Barrier::reset)
    /// makes it usable again.
    ///
    /// ```
    /// let b = shmkit::Barrier::create_unique(2)?;
    /// b.abort();
    /// let e = b.wait().unwrap_err();
    /// assert!(matches!(e, shmkit::Error::BrokenBarrier { .. }));
    /// assert_eq!(e.to_string(), format!("Barrier {:?}: wait: the barrier is broken", b.name()));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    BrokenBarrier {
        /// The barrier and the operation.
        origin: Origin,
    },
    /// The segment's creator died before it finished initialising it.
    CreatorDied {
        /// The segment's name.
        name: String,
        /// The creator's process id.
        pid: u32,
    },
    /// There is not enough shared memory (a full `/dev/shm`) for a segment
    /// of `size` bytes, header included. shmkit reserves a segment's memory
    /// when it creates it, so that a full `/dev/shm` is this error at create
    /// and never a SIGBUS later; nothing is left behind.
    ///
    /// ```
    /// use shmkit::{Error, Segment};
    ///
    /// // Far more than any /dev/shm holds (but under shmkit's 64 TiB limit).
    /// match Segment::create_unique(1 << 45) {
    ///     Err(Error::NoSpace { size, .. }) => assert!(size > 1 << 45),
    ///     Err(Error::InvalidArgument(_)) => {} // or the kernel refused the length
    ///     Ok(_) => {} // a filesystem that cannot reserve (see ARCHITECTURE.md)
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    NoSpace {
        /// The segment's name.
        name: String,
        /// The segment's whole length in bytes.
        size: u64,
    },
    /// An OS call failed in a way not covered above.
    Io(io::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Naming an error in place: the handles' `self.raw().op(..).or_named(self.at("op"))`.
/// Unlike `map_err`, the `Result` is not taken apart and rebuilt: an `Ok`
/// passes through untouched (a test of the tag), and an error has its
/// origin overwritten where it lies, by the cold
/// [`set_origin`](Error::set_origin).
pub(crate) trait OrNamed<T> {
    /// The result, its error (if any) named by `name`.
    fn or_named(self, name: impl FnOnce(&mut Error)) -> Result<T>;
}

impl<T> OrNamed<T> for Result<T> {
    #[inline(always)]
    fn or_named(mut self, name: impl FnOnce(&mut Error)) -> Result<T> {
        if let Err(e) = &mut self {
            name(e);
        }
        self
    }
}

/// A non-blocking call's answer, named: a core says `Ok(None)` when nothing
/// can be done now, and that becomes `not_now` (`Error::Empty` or
/// `Error::Full`) of operation `op` on the object of kind `kind` named
/// `name`, built once, where it is returned; a core's own error is named in
/// place. Measured on an empty queue's `try_get`: an error made inside the
/// core and renamed on the way up (a 112-byte value copied through four
/// frames, and read back while its fields were still being stored) cost
/// 1.3–1.6× this.
#[inline(always)]
pub(crate) fn named_now<T>(
    r: Result<Option<T>>,
    kind: &'static str,
    name: &Name,
    op: &'static str,
    not_now: fn(Origin) -> Error,
) -> Result<T> {
    match r {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(not_now(Origin::named(kind, name, op))),
        Err(mut e) => {
            e.set_origin(kind, name, op);
            Err(e)
        }
    }
}

impl Error {
    /// `Error::Empty` of `origin` (for [`named_now`]).
    pub(crate) fn empty(origin: Origin) -> Error {
        Error::Empty { origin }
    }

    /// `Error::Full` of `origin` (for [`named_now`]).
    pub(crate) fn full(origin: Origin) -> Error {
        Error::Full { origin }
    }
}

/// The `origin` field of the variants that carry one, through `&` or
/// `&mut` alike (written once for [`Error::origin`] and `origin_mut`).
macro_rules! origin_of {
    ($e:expr) => {
        match $e {
                Error::Timeout { origin }
                | Error::Full { origin }
                | Error::Empty { origin }
                | Error::MessageTooLarge { origin, .. }
                | Error::BufferTooSmall { origin, .. }
                | Error::WrongSize { origin, .. }
                | Error::Disconnected { origin }
                | Error::Closed { origin }
                | Error::Deadlock { origin }
                | Error::NotOwner { origin }
                | Error::TooManyReleases { origin, .. }
                | Error::BrokenBarrier { origin } => Some(origin),
                _ => None,
        }
    };
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::AlreadyExists {
                name,
                dead_creator: None,
            } => write!(f, "segment {name:?} already exists"),
            Error::AlreadyExists {
                name,
                dead_creator: Some(pid),
            } => write!(
                f,
                "segment {name:?} already exists, left behind by process {pid}, which died, \
                 and used by no live process: remove it with shmkit::prune() (or `shmkit prune`), \
                 or create with Options::replace_stale(true)"
            ),
            Error::NotFound { name } => write!(f, "segment {name:?} does not exist"),
            Error::PermissionDenied { name, reason } => {
                write!(f, "permission denied on segment {name:?}: {reason}")
            }
            Error::WrongKind {
                name,
                expected,
                found,
            } => write!(
                f,
                "segment {name:?} holds {} {found}, expected {} {expected}",
                article(found),
                article(expected)
            ),
            Error::TypeMismatch { name, expected } => write!(
                f,
                "segment {name:?} holds another payload type, expected {expected}"
            ),
            Error::VersionMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "segment {name:?} has format version {found}, this build reads version {expected}"
            ),
            Error::Corrupted { name, detail } => {
                write!(f, "segment {name:?} is corrupted: {detail}")
            }
            Error::Timeout { origin } => at(f, origin, format_args!("timed out")),
            Error::Full { origin } => at(f, origin, format_args!("full")),
            Error::Empty { origin } => at(f, origin, format_args!("empty")),
            Error::MessageTooLarge { origin, len, max } => at(
                f,
                origin,
                format_args!("message of {len} bytes exceeds the maximum of {max} bytes"),
            ),
            Error::BufferTooSmall { origin, needed } => at(
                f,
                origin,
                format_args!("buffer too small: the message needs {needed} bytes"),
            ),
            Error::WrongSize {
                origin,
                expected,
                message,
            } => at(
                f,
                origin,
                format_args!(
                    "a message of {} bytes is not a value of {expected} bytes",
                    message.len()
                ),
            ),
            Error::Disconnected { origin } => {
                at(f, origin, format_args!("the other end is disconnected"))
            }
            Error::Closed { origin } => at(f, origin, format_args!("closed")),
            Error::InUse { name } => write!(
                f,
                "segment {name:?} is in use by a live process (a pipe's second end is \
                 already open: each end opens once, so open a new pipe per peer)"
            ),
            Error::Deadlock { origin } => at(
                f,
                origin,
                format_args!("the calling thread already holds this lock"),
            ),
            Error::NotOwner { origin } => at(
                f,
                origin,
                format_args!("the calling thread does not hold this lock"),
            ),
            Error::TooManyReleases { origin, limit } => at(
                f,
                origin,
                format_args!(
                    "semaphore released too many times: its count would pass its limit, {limit}"
                ),
            ),
            Error::BrokenBarrier { origin } => at(f, origin, format_args!("the barrier is broken")),
            Error::CreatorDied { name, pid } => write!(
                f,
                "segment {name:?} was never initialised: its creator (pid {pid}) died"
            ),
            Error::NoSpace { name, size } => write!(
                f,
                "no space in /dev/shm for segment {name:?} of {size} bytes"
            ),
            Error::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// What to do about a segment this user may not open: its owner and mode,
/// and the option that lets others in (when `/dev/shm` tells them).
fn permission_hint(e: io::Error, name: &str) -> String {
    let st = std::ffi::CString::new(format!("/{name}"))
        .ok()
        .and_then(|c| crate::sys::shm_stat(&c).ok());
    match st {
        Some(st) => format!(
            "{e}; it is owned by uid {} with mode {:04o}, and this process runs as uid {}: \
             its creator can let others in with Options::mode (e.g. 0o660 and a shared group), \
             and Options::allow_other_owner lets a process open another user's segment",
            st.uid,
            st.mode & 0o7777,
            crate::sys::uid()
        ),
        None => e.to_string(),
    }
}

/// `Kind "name": operation: what`, or just `what` when nothing is known of
/// the origin.
fn at(f: &mut fmt::Formatter<'_>, origin: &Origin, what: fmt::Arguments<'_>) -> fmt::Result {
    // `Queue "jobs": try_get: `, each part left out when unknown.
    let mut sep = "";
    if !origin.kind.is_empty() {
        f.write_str(origin.kind)?;
        sep = " ";
    }
    if let Some(name) = origin.name() {
        write!(f, "{sep}{name:?}")?;
        sep = " ";
    }
    if !sep.is_empty() {
        f.write_str(": ")?;
    }
    if !origin.operation.is_empty() {
        write!(f, "{}: ", origin.operation)?;
    }
    f.write_fmt(what)
}

/// "a" or "an", for a kind name in a message ("an Event", "a Lock").
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U' | 'a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

impl Error {
    /// The object and the operation an operation's outcome is about (for
    /// [`Timeout`](Error::Timeout), [`Empty`](Error::Empty),
    /// [`Closed`](Error::Closed), ... ), or `None` for an error that names
    /// its segment otherwise ([`NotFound`](Error::NotFound), ...) or none.
    ///
    /// ```
    /// let lock = shmkit::Lock::create_unique()?;
    /// let _held = lock.lock()?;
    /// let e = lock.lock().unwrap_err(); // this thread holds it already
    /// let origin = e.origin().unwrap();
    /// assert_eq!((origin.kind(), origin.operation()), ("Lock", "lock"));
    /// assert_eq!(origin.name(), Some(lock.name()));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn origin(&self) -> Option<&Origin> {
        origin_of!(self)
    }

    fn origin_mut(&mut self) -> Option<&mut Origin> {
        origin_of!(self)
    }

    /// Sets the origin to operation `operation` on the `kind` object in
    /// segment `name` (the raw cores do not know names); other errors are
    /// unchanged. For the error path only, and in place (see
    /// [`OrNamed`]): a copy of a few words, no allocation.
    #[cold]
    #[inline(never)]
    pub(crate) fn set_origin(&mut self, kind: &'static str, name: &Name, operation: &'static str) {
        if let Some(o) = self.origin_mut() {
            *o = Origin::named(kind, name, operation);
        }
    }

    /// Maps an OS error on segment `name` to the matching variant.
    pub(crate) fn from_os(e: io::Error, name: &str) -> Error {
        match e.raw_os_error() {
            Some(libc::EEXIST) => Error::AlreadyExists {
                name: name.into(),
                dead_creator: None,
            },
            Some(libc::ENOENT) => Error::NotFound { name: name.into() },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
                name: name.into(),
                reason: permission_hint(e, name),
            },
            Some(libc::EINVAL) | Some(libc::EFBIG) | Some(libc::ENOMEM) | Some(libc::ENOSPC) => {
                Error::InvalidArgument(format!("segment {name:?}: {e}"))
            }
            _ => Error::Io(e),
        }
    }

    pub(crate) fn corrupted(name: &str, detail: impl Into<String>) -> Error {
        Error::Corrupted {
            name: name.into(),
            detail: detail.into(),
        }
    }
}
