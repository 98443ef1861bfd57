//! Named shared-memory segments: create, open, validate, unlink.

use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Name, Origin, Result};
use crate::raw::header::{Fingerprint, Header, HeaderError, HeaderFields, Kind, HEADER_LEN};
use crate::sync::{self, TaskStamp};
use crate::sys;

mod prune;

use prune::remove_if_stale;
pub use prune::{inspect, inspect_with, list, prune, prune_dry_run, prune_name, SegmentInfo};

/// The largest segment shmkit will try to create: 64 TiB, well inside the
/// 47-bit user address space of x86_64 and aarch64 Linux.
pub const MAX_LEN: usize = 1 << 46;

/// How long `open` waits, by default, for a creator to finish initialising.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks a segment name: 1..=200 bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
/// Returns the name the OS sees (with a leading '/').
pub(crate) fn os_name(name: &str) -> Result<CString> {
    let bad = |reason| Error::InvalidName {
        name: name.into(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > sys::NAME_MAX {
        return Err(bad("longer than 200 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("'.' and '..' are not names"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(match c {
            '/' => "contains '/'",
            '\0' => "contains NUL",
            _ => "contains a character outside [A-Za-z0-9._-]",
        }));
    }
    // Cannot fail: the name was just checked to hold no NUL.
    CString::new(format!("/{name}")).map_err(|_| bad("contains NUL"))
}

/// Options for creating and opening segments, and every object built on one.
///
/// ```
/// use shmkit::{Options, Segment};
///
/// let opts = Options::new().mode(0o640);
/// let seg = Segment::create_unique_with(4096, &opts)?;
/// assert_eq!(seg.mode()?, 0o640);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    mode: u32,
    allow_other_owner: bool,
    init_timeout: Duration,
    replace_stale: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// Mode 0600, same owner only, a 2 s wait for initialisation, no
    /// replacing of stale segments.
    pub fn new() -> Options {
        Options {
            mode: 0o600,
            allow_other_owner: false,
            init_timeout: DEFAULT_INIT_TIMEOUT,
            replace_stale: false,
        }
    }

    /// The permission bits of a created segment, exactly (the umask does not
    /// apply). Only the low 9 bits are used.
    ///
    /// ```
    /// let opts = shmkit::Options::new().mode(0o660);
    /// # let _ = opts;
    /// ```
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = mode & 0o777;
        self
    }

    /// Whether `open` accepts a segment owned by another user (default: no,
    /// it fails with [`Error::PermissionDenied`]).
    ///
    /// ```
    /// let opts = shmkit::Options::new().allow_other_owner(true);
    /// # let _ = opts;
    /// ```
    pub fn allow_other_owner(mut self, allow: bool) -> Options {
        self.allow_other_owner = allow;
        self
    }

    /// How long `open` waits for a creator that has not finished
    /// initialising the segment.
    ///
    /// ```
    /// let opts = shmkit::Options::new().init_timeout(std::time::Duration::from_millis(500));
    /// # let _ = opts;
    /// ```
    pub fn init_timeout(mut self, timeout: Duration) -> Options {
        self.init_timeout = timeout;
        self
    }

    /// Whether `create` of a name that is taken by a *stale* segment
    /// replaces it instead of failing with [`Error::AlreadyExists`]
    /// (default: no). Stale means what [`prune`] removes: a shmkit segment
    /// of this user whose creator is dead and that no live process has
    /// open. A segment that any live process uses is never replaced, so
    /// `create` still fails for it. This is what a server restarted after
    /// a crash wants for its well-known names.
    ///
    /// ```
    /// use shmkit::{Options, Segment};
    ///
    /// let opts = Options::new().replace_stale(true);
    /// let name = format!("shmkit-doc-replace-{}", std::process::id());
    /// let seg = Segment::create_with(&name, 8, &opts)?;
    /// // Its creator (this process) lives: not stale, so not replaced.
    /// assert!(matches!(
    ///     Segment::create_with(&name, 8, &opts),
    ///     Err(shmkit::Error::AlreadyExists { .. })
    /// ));
    /// # drop(seg);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn replace_stale(mut self, replace: bool) -> Options {
        self.replace_stale = replace;
        self
    }
}

/// A named POSIX shared-memory segment with a shmkit header.
///
/// The creating handle removes the name when it is dropped, unless told to
/// [`keep`](Segment::keep) it; every mapping, in this process or another,
/// stays valid after that. Segments are created with mode 0600 unless the
/// [`Options`] say otherwise.
///
/// The bytes after the header (`len()` of them, at [`as_ptr`](Segment::as_ptr))
/// are shared with every process that opens the segment, so Rust references
/// to them are only as sound as the protocol the processes follow. The typed
/// objects ([`Value`](crate::Value), [`Lock`](crate::Lock), …) are built on
/// this and need none of that care.
///
/// # Who uses a segment
///
/// Every handle keeps the segment's file descriptor open for its whole life
/// and holds a shared `flock(2)` lock on it: a mark of use that the kernel
/// drops when the handle drops or its process dies, however it dies. So
/// whether any process still uses a segment has an exact answer
/// ([`SegmentInfo::in_use`]), and [`prune`] and
/// [`Options::replace_stale`] never remove a segment that a live process
/// has open. The cost is one descriptor per handle (every typed object
/// holds one `Segment`): a process that keeps thousands of handles open
/// needs a `RLIMIT_NOFILE` to match. The descriptor is close-on-exec, as
/// the mapping goes at exec too. A handle inherited across `fork(2)` shares
/// its parent's descriptor and so its mark: the segment counts as used
/// while either process lives (both map it), and the mark goes only when
/// both copies are gone. Processes that map a segment by other means (an
/// older shmkit, their own `mmap`) leave no mark and are not seen.
///
/// ```
/// use shmkit::Segment;
///
/// let seg = Segment::create_unique(4096)?;
/// let other = Segment::open(seg.name())?;
/// // SAFETY: nothing else touches these bytes while this runs.
/// unsafe { seg.as_ptr().write(42) };
/// // SAFETY: as above; `other` maps the same object.
/// assert_eq!(unsafe { other.as_ptr().read() }, 42);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Segment {
    name: String,
    /// The name as errors' [`Origin`]s carry it (made once, copied into
    /// each).
    origin_name: Name,
    map: MmapRaw,
    /// The object's descriptor, open (and, for a handle that marks its use,
    /// holding `LOCK_SH`) for the handle's life; after `map`, so that the
    /// mapping goes first.
    file: File,
    /// Whether dropping the handle unlinks the name (the creator's, until
    /// `keep`).
    owner: sync::Flag,
    /// The object's device and inode, if `fstat` told them: what tells two
    /// mappings of one object from mappings of two (see `object_id`).
    id: Option<(u64, u64)>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("unlink_on_drop", &self.owner.get())
            .finish()
    }
}

/// Unlinks a name unless disarmed: a create that fails half way leaves nothing.
struct UnlinkGuard<'a>(Option<&'a CString>);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.0 {
            let _ = sys::shm_unlink(n);
        }
    }
}

fn unique_name() -> String {
    format!("shmkit-{:016x}", sys::random_u64())
}

impl Segment {
    /// Maps the first `len` bytes of `file` as the segment `name` (`owner`:
    /// whether dropping it removes the name).
    fn map(
        name: &str,
        file: File,
        len: usize,
        id: Option<(u64, u64)>,
        owner: bool,
    ) -> Result<Segment> {
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| Error::from_os(e, name))?;
        Ok(Segment {
            name: name.into(),
            origin_name: Name::new(name),
            map,
            id,
            file,
            owner: sync::Flag::new(owner),
        })
    }

    /// Creates a segment of `len` payload bytes (zeroed) named `name`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] before any syscall; [`Error::InvalidArgument`]
    /// for a length of 0 or over [`MAX_LEN`]; [`Error::AlreadyExists`].
    ///
    /// ```
    /// let seg = shmkit::Segment::create("shmkit-doc-create", 100)?;
    /// assert_eq!(seg.len(), 100);
    /// assert_eq!(seg.name(), "shmkit-doc-create");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str, len: usize) -> Result<Segment> {
        Segment::create_with(name, len, &Options::new())
    }

    /// [`create`](Segment::create) with [`Options`].
    ///
    /// ```
    /// let seg = shmkit::Segment::create_with("shmkit-doc-cw", 8, &shmkit::Options::new().mode(0o640))?;
    /// assert_eq!(seg.mode()?, 0o640);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(name: &str, len: usize, opts: &Options) -> Result<Segment> {
        Segment::create_kind(name, Spec::RAW, len, opts, |_, _| Ok(()))
    }

    /// Creates a segment under a fresh random name (`shmkit-` and 16 hex
    /// digits); pass [`name`](Segment::name) to other processes.
    ///
    /// ```
    /// let seg = shmkit::Segment::create_unique(64)?;
    /// assert!(seg.name().starts_with("shmkit-"));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique(len: usize) -> Result<Segment> {
        Segment::create_unique_with(len, &Options::new())
    }

    /// [`create_unique`](Segment::create_unique) with [`Options`].
    ///
    /// ```
    /// let seg = shmkit::Segment::create_unique_with(64, &shmkit::Options::new())?;
    /// # let _ = seg;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique_with(len: usize, opts: &Options) -> Result<Segment> {
        Segment::create_unique_kind(Spec::RAW, len, opts, |_, _| Ok(()))
    }

    /// Creates a segment and lets `init` fill its payload before any other
    /// process can open it: `open` waits (up to its
    /// [`init_timeout`](Options::init_timeout)) until `init` has returned.
    /// If `init` fails, the segment is removed and the error returned.
    ///
    /// ```
    /// let seg = shmkit::Segment::create_init(&format!("shmkit-doc-init-{}", std::process::id()), 4, &shmkit::Options::new(), |bytes| {
    ///     bytes.copy_from_slice(b"abcd");
    ///     Ok(())
    /// })?;
    /// let other = shmkit::Segment::open(seg.name())?;
    /// // SAFETY: nobody writes the segment while we read it.
    /// assert_eq!(unsafe { std::slice::from_raw_parts(other.as_ptr(), 4) }, b"abcd");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_init(
        name: &str,
        len: usize,
        opts: &Options,
        init: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Segment> {
        Segment::create_kind(name, Spec::RAW, len, opts, |p, len| {
            // SAFETY: `p` is the payload of `len` bytes of a segment whose
            // header is not yet published: no opener touches it until then.
            init(unsafe { std::slice::from_raw_parts_mut(p, len) })
        })
    }

    /// Opens an existing plain segment.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::WrongKind`] if it holds a typed object;
    /// [`Error::Corrupted`], [`Error::VersionMismatch`] for a bad header;
    /// [`Error::PermissionDenied`] if another user owns it;
    /// [`Error::CreatorDied`] if its creator died before finishing it.
    ///
    /// ```
    /// let a = shmkit::Segment::create_unique(10)?;
    /// let b = shmkit::Segment::open(a.name())?;
    /// assert_eq!(b.len(), 10);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Segment> {
        Segment::open_with(name, &Options::new())
    }

    /// [`open`](Segment::open) with [`Options`].
    ///
    /// ```
    /// let a = shmkit::Segment::create_unique(10)?;
    /// let b = shmkit::Segment::open_with(a.name(), &shmkit::Options::new().allow_other_owner(true))?;
    /// # let _ = b;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, opts: &Options) -> Result<Segment> {
        Segment::open_kind(name, Spec::RAW, opts).map(|(seg, _)| seg)
    }

    /// The name, as passed to `open` (no leading '/').
    ///
    /// ```
    /// let seg = shmkit::Segment::create("shmkit-doc-name", 1)?;
    /// assert_eq!(seg.name(), "shmkit-doc-name");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as errors' [`Origin`]s carry it (cloning it allocates
    /// nothing).
    pub(crate) fn origin_name(&self) -> &Name {
        &self.origin_name
    }

    /// The number of payload bytes (the header is not counted).
    ///
    /// ```
    /// assert_eq!(shmkit::Segment::create_unique(5)?.len(), 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.map.len() - HEADER_LEN
    }

    /// Always false: a segment has at least one payload byte.
    ///
    /// ```
    /// assert!(!shmkit::Segment::create_unique(1)?.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first payload byte, 64-byte aligned. Valid for [`len`](Segment::len)
    /// bytes while `self` lives. Other processes may read and write these
    /// bytes at any time; what is sound to do with them is up to the protocol
    /// the processes follow.
    ///
    /// ```
    /// let seg = shmkit::Segment::create_unique(8)?;
    /// assert_eq!(seg.as_ptr() as usize % 64, 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: the mapping is at least HEADER_LEN + 1 bytes long (checked at
        // create and open), so the offset stays inside it.
        unsafe { self.map.as_mut_ptr().add(HEADER_LEN) }
    }

    /// Keeps the name after this handle drops (by default the creating
    /// handle unlinks it). Remove it later with [`unlink`](crate::unlink).
    ///
    /// ```
    /// let seg = shmkit::Segment::create("shmkit-doc-keep", 8)?;
    /// seg.keep();
    /// drop(seg);
    /// shmkit::unlink("shmkit-doc-keep")?; // still there
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn keep(&self) {
        self.owner.set(false);
    }

    /// Whether dropping this handle unlinks the name.
    ///
    /// ```
    /// let seg = shmkit::Segment::create_unique(8)?;
    /// assert!(seg.unlinks_on_drop());
    /// assert!(!shmkit::Segment::open(seg.name())?.unlinks_on_drop());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn unlinks_on_drop(&self) -> bool {
        self.owner.get()
    }

    /// The pid of the process that created the segment.
    ///
    /// ```
    /// let seg = shmkit::Segment::create_unique(8)?;
    /// assert_eq!(seg.creator_pid(), std::process::id());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn creator_pid(&self) -> u32 {
        self.header().creator().0
    }

    /// Whether the process that created the segment still runs (a reused
    /// pid does not count: its start time must match too).
    ///
    /// ```
    /// let seg = shmkit::Segment::create_unique(8)?;
    /// assert!(seg.creator_alive());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn creator_alive(&self) -> bool {
        let (pid, start) = self.header().creator();
        creator_alive(pid, start)
    }

    /// The segment's permission bits, as the OS reports them now.
    ///
    /// ```
    /// assert_eq!(shmkit::Segment::create_unique(8)?.mode()?, 0o600);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn mode(&self) -> Result<u32> {
        Ok(sys::fstat(&self.file)?.mode & 0o777)
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts page-aligned with at least HEADER_LEN
        // bytes; `Header` is all atomics, so any bytes are a valid value and
        // concurrent writes by other processes are atomic accesses.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    /// The mapped object's identity (device, inode), the same for every
    /// mapping of it in this process; `None` if `fstat` failed at create.
    /// The Lock, Value and Array handles name their lock by it, so that a
    /// relock through a second handle on the same object is told apart from
    /// a peer's forged "owner is you".
    pub(crate) fn object_id(&self) -> Option<(u64, u64)> {
        self.id
    }

    /// Creates a segment of `kind` with `payload_len` bytes, lets `init` fill
    /// the payload, then publishes the header.
    pub(crate) fn create_kind(
        name: &str,
        spec: Spec,
        payload_len: usize,
        opts: &Options,
        init: impl FnOnce(*mut u8, usize) -> Result<()>,
    ) -> Result<Segment> {
        let cname = os_name(name)?;
        if payload_len == 0 || payload_len > MAX_LEN - HEADER_LEN {
            return Err(Error::InvalidArgument(format!(
                "segment {name:?}: length {payload_len} is not in 1..={}",
                MAX_LEN - HEADER_LEN
            )));
        }
        let total = HEADER_LEN + payload_len;
        let mut replaced = 0;
        let file = loop {
            match sys::shm_create(&cname, total as u64, opts.mode) {
                Ok(file) => break file,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    // A few rounds: another replacer may win each race, and
                    // then its segment lives and is not replaced.
                    if opts.replace_stale && replaced < 4 {
                        replaced += 1;
                        match remove_if_stale(&cname, name, false) {
                            // Removed: the name is free (unless another
                            // creator wins it first).
                            Ok(Some(_)) => continue,
                            // Not removed by us, but the name is free now:
                            // a pruner removed the stale segment first.
                            Ok(None)
                                if matches!(sys::shm_stat(&cname),
                                    Err(e) if e.raw_os_error() == Some(libc::ENOENT)) =>
                            {
                                continue
                            }
                            _ => {}
                        }
                    }
                    return Err(Error::AlreadyExists {
                        name: name.into(),
                        dead_creator: remove_if_stale(&cname, name, true)
                            .ok()
                            .flatten()
                            .map(|info| info.creator_pid),
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    return Err(Error::NoSpace {
                        name: name.into(),
                        size: total as u64,
                    })
                }
                Err(e) => return Err(Error::from_os(e, name)),
            }
        };
        let mut guard = UnlinkGuard(Some(&cname));
        // Before the header names a creator nothing can think the segment
        // stale (a pruner skips a header with no creator), so marking it
        // now, not in the same step as creating it, is safe.
        mark_use(&file, name, "create", mark_deadline(opts))?;
        let id = sys::fstat(&file).ok().map(|st| (st.dev, st.ino));
        let seg = Segment::map(name, file, total, id, true)?;
        let header = seg.header();
        // An unknown start time (0, /proc did not answer) names the pid only.
        let me = sync::current_process();
        header.claim(me.tid(), creator_start_word(me.start()));
        header.write(&HeaderFields::new(
            spec.kind,
            spec.fingerprint,
            total as u64,
            spec.aux,
        ));
        init(seg.as_ptr(), payload_len)?;
        header.publish();
        guard.0 = None;
        Ok(seg)
    }

    pub(crate) fn create_unique_kind(
        spec: Spec,
        payload_len: usize,
        opts: &Options,
        init: impl Fn(*mut u8, usize) -> Result<()>,
    ) -> Result<Segment> {
        loop {
            match Segment::create_kind(&unique_name(), spec, payload_len, opts, &init) {
                Err(Error::AlreadyExists { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Opens a segment that must hold `spec.kind` with payload type
    /// `spec.fingerprint`; returns it with the header's `aux` field, which
    /// the caller must validate.
    pub(crate) fn open_kind(name: &str, spec: Spec, opts: &Options) -> Result<(Segment, u64)> {
        Segment::open_fields(name, spec, opts, true).map(|(seg, f)| (seg, f.aux))
    }

    /// As [`Segment::open_kind`], returning the header fields it validated
    /// (read once: another process may rewrite the header at any time, so
    /// nothing may read it again and expect the same answer). `mark`: whether
    /// the handle marks its use (every handle but `inspect`'s, which only
    /// looks).
    fn open_fields(
        name: &str,
        spec: Spec,
        opts: &Options,
        mark: bool,
    ) -> Result<(Segment, HeaderFields)> {
        let cname = os_name(name)?;
        let (file, mut first) = open_file(&cname, name, mark, mark_deadline(opts))?;
        let deadline = sync::Deadline::after(opts.init_timeout);
        let mut pause = Duration::from_micros(50);
        let mut wait = || {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        };
        // Wait until the creator has given the object its length.
        let st = loop {
            let st = match first.take() {
                Some(st) => st,
                None => sys::fstat(&file).map_err(|e| Error::from_os(e, name))?,
            };
            if st.uid != sys::uid() && !opts.allow_other_owner {
                return Err(Error::PermissionDenied {
                    name: name.into(),
                    reason: format!(
                        "owned by uid {}, not {} (see Options::allow_other_owner)",
                        st.uid,
                        sys::uid()
                    ),
                });
            }
            if st.len != 0 {
                break st;
            }
            if deadline.expired() {
                return Err(Error::corrupted(
                    name,
                    "the segment is empty and nobody initialised it",
                ));
            }
            wait();
        };
        let len = usize::try_from(st.len)
            .ok()
            .filter(|&l| l > HEADER_LEN && l <= MAX_LEN)
            .ok_or_else(|| {
                Error::corrupted(
                    name,
                    format!("length {} cannot hold a header and a payload", st.len),
                )
            })?;
        let seg = Segment::map(name, file, len, Some((st.dev, st.ino)), false)?;
        let header = seg.header();
        let fields = loop {
            if let Some(f) = header.read() {
                break f;
            }
            let (pid, start) = header.creator();
            if pid != 0 && !creator_alive(pid, start) {
                return Err(Error::CreatorDied {
                    name: name.into(),
                    pid,
                });
            }
            if deadline.expired() {
                return Err(if pid == 0 {
                    Error::corrupted(name, "not initialised, and no creator recorded")
                } else {
                    Error::Timeout {
                        origin: Origin::of_str("Segment", name, "open"),
                    }
                });
            }
            wait();
        };
        let (kind, fp) = if spec.any {
            // Inspecting: any kind and payload type, as long as it is shmkit's
            // (a bad magic is reported by `check` below).
            match Kind::from_code(fields.kind) {
                Some(k) => (k, fields.fingerprint),
                None if fields.magic == crate::raw::header::MAGIC => {
                    return Err(Error::corrupted(
                        name,
                        format!("unknown kind {}", fields.kind),
                    ))
                }
                None => (Kind::Raw, fields.fingerprint),
            }
        } else {
            (spec.kind, spec.fingerprint)
        };
        Header::check(&fields, kind, fp, len as u64).map_err(|e| match e {
            HeaderError::BadMagic => Error::corrupted(name, "bad magic: not a shmkit segment"),
            HeaderError::Version(v) => Error::VersionMismatch {
                name: name.into(),
                expected: crate::raw::header::FORMAT_VERSION,
                found: v,
            },
            HeaderError::Kind(k) => Error::WrongKind {
                name: name.into(),
                expected: kind.name(),
                found: Header::kind_name(k),
            },
            HeaderError::Type => Error::TypeMismatch {
                name: name.into(),
                expected: spec.type_name,
            },
            HeaderError::Length(l) => Error::corrupted(
                name,
                format!("the header says {l} bytes, the segment has {len}"),
            ),
        })?;
        Ok((seg, fields))
    }
}

/// What a typed object asks of its segment's header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    pub(crate) fingerprint: Fingerprint,
    /// The payload type's name, for messages.
    pub(crate) type_name: &'static str,
    /// Written at create; ignored by `open_kind`, which returns it.
    pub(crate) aux: u64,
    /// Accept any kind and payload type (for `inspect`).
    pub(crate) any: bool,
}

impl Spec {
    const RAW: Spec = Spec::of(Kind::Raw);

    pub(crate) const fn of(kind: Kind) -> Spec {
        Spec {
            kind,
            fingerprint: Fingerprint::NONE,
            type_name: "no payload type",
            aux: 0,
            any: false,
        }
    }

    pub(crate) fn typed<T>(kind: Kind, aux: u64) -> Spec {
        Spec {
            kind,
            fingerprint: Fingerprint::of::<T>(),
            type_name: std::any::type_name::<T>(),
            aux,
            any: false,
        }
    }
}

/// How long taking a mark of use may wait for a pruner's or a prober's
/// `LOCK_EX` (held for microseconds) at least, whatever the
/// [`Options::init_timeout`]: so that an open with a zero timeout does not
/// fail because `shmkit ls` looked at the segment at that moment.
const MARK_GRACE: Duration = Duration::from_millis(100);

/// The deadline for taking a mark of use: `init_timeout`, or
/// [`MARK_GRACE`] if that is longer.
fn mark_deadline(opts: &Options) -> sync::Deadline {
    sync::Deadline::after(opts.init_timeout.max(MARK_GRACE))
}

/// Marks `file` as used by this process: `LOCK_SH`, waiting (up to
/// `deadline`) only while a pruner holds its brief `LOCK_EX`.
fn mark_use(file: &File, name: &str, op: &'static str, deadline: sync::Deadline) -> Result<()> {
    let mut pause = Duration::from_micros(50);
    loop {
        match sys::try_flock(file, false) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(Error::from_os(e, name)),
        }
        if deadline.expired() {
            return Err(Error::Timeout {
                origin: Origin::of_str("Segment", name, op),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Opens the object `cname` names, read-write, and with `mark` marks it
/// used. Returns what `fstat` said of it when it checked that the name
/// still names it (with `mark`).
///
/// A pruner holds `LOCK_EX` while it unlinks, so once the mark is held no
/// pruner can remove the object; but one may have removed it between the
/// `shm_open` and the lock. So the marked object must still have its name:
/// if it has none (`fstat`'s link count is 0: unlinked), open the name
/// again, which finds a new segment made under it or fails with
/// [`Error::NotFound`]. The link count costs no syscall beyond the `fstat`
/// that `open` makes anyway; it tells "unlinked" from "named" exactly, short
/// of a hard link made to the object under another name by hand (and a
/// process that can do that can remove the name itself).
fn open_file(
    cname: &CStr,
    name: &str,
    mark: bool,
    deadline: sync::Deadline,
) -> Result<(File, Option<sys::Stat>)> {
    loop {
        let file = sys::shm_open(cname, true).map_err(|e| Error::from_os(e, name))?;
        if !mark {
            return Ok((file, None));
        }
        mark_use(&file, name, "open", deadline)?;
        let st = sys::fstat(&file).map_err(|e| Error::from_os(e, name))?;
        if st.nlink != 0 {
            return Ok((file, Some(st)));
        }
        if deadline.expired() {
            return Err(Error::Timeout {
                origin: Origin::of_str("Segment", name, "open"),
            });
        }
    }
}

/// Whether any process holds a mark of use on the object behind `file`
/// (which must not hold one itself). `None` when `flock` failed, or when
/// an exclusive holder (a pruner) would not let go (see [`take_unused`]).
fn probe_use(file: &File) -> Option<bool> {
    match take_unused(file) {
        Ok(Some(true)) => {
            sys::funlock(file);
            Some(false)
        }
        Ok(Some(false)) => Some(true),
        Ok(None) | Err(_) => None,
    }
}

/// Takes `LOCK_EX` on `file` if no process marks the object used:
/// `Some(true)` holding it, `Some(false)` when a mark is held, `None` when
/// it could not be told within about 100 ms.
///
/// A failed `LOCK_EX` alone does not say "used": another prober or a
/// pruner may hold a brief `LOCK_EX` of its own. So after a failure, a
/// `LOCK_SH` attempt tells the two apart: it fails only against an
/// exclusive holder (then wait a little and start again), and succeeds
/// against marks (shared holders). Marks answer the same way every time;
/// only three rounds in a row of "shared holders only" count as used, so
/// an exclusive holder that let go between our two attempts is not taken
/// for a user.
fn take_unused(file: &File) -> std::io::Result<Option<bool>> {
    let deadline = sync::Deadline::after(Duration::from_millis(100));
    let mut pause = Duration::from_micros(20);
    let mut shared_only = 0;
    loop {
        if sys::try_flock(file, true)? {
            return Ok(Some(true));
        }
        if sys::try_flock(file, false)? {
            sys::funlock(file);
            shared_only += 1;
            if shared_only == 3 {
                return Ok(Some(false));
            }
            continue;
        }
        shared_only = 0;
        if deadline.expired() {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// The bits of the header's `creator_start` word that hold the start time;
/// the bits above hold [`ns_tag`]. Start times are clock ticks since boot:
/// 2^40 of them at 100 Hz is over 300 years.
const START_BITS: u32 = 40;

/// A tag of this process's pid namespace, 1..2^24, kept in the high bits of
/// the header's `creator_start` word: a creator's pid means nothing to a
/// process in another pid namespace (a container sharing `/dev/shm`), whose
/// `/proc` would call it dead or take it for someone else. 0: the
/// namespace could not be read (the creator is then judged by pid alone,
/// as before the tag).
fn ns_tag() -> u64 {
    static TAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        sys::pid_namespace().map_or(0, |ino| ino % ((1 << (64 - START_BITS)) - 1) + 1)
    })
}

/// What `create` records as the creator's start: its start time and its
/// pid namespace's tag (a start time that does not fit is recorded as
/// unknown, 0).
fn creator_start_word(start: u64) -> u64 {
    if start >> START_BITS != 0 {
        return 0;
    }
    start | ns_tag() << START_BITS
}

/// Whether the creator recorded in a header may be alive. A creator in
/// another pid namespace is unknown, so alive: its pid cannot be looked up
/// here, and unknown never counts as dead.
fn creator_alive(pid: u32, word: u64) -> bool {
    let tag = word >> START_BITS;
    if tag != 0 && tag != ns_tag() {
        return true;
    }
    let start = word & ((1 << START_BITS) - 1);
    let stamp = (start != 0).then(|| TaskStamp::new(pid, start));
    sync::task_alive(pid, stamp)
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owner.get() {
            if let Ok(n) = os_name(&self.name) {
                let _ = sys::shm_unlink(&n);
            }
        }
    }
}

/// Removes the segment `name`. Processes that have it mapped keep using it;
/// the name is free for a new segment at once.
///
/// # Errors
/// [`Error::InvalidName`]; [`Error::NotFound`] if there is no such segment
/// (also when it was already removed).
///
/// ```
/// let seg = shmkit::Segment::create("shmkit-doc-unlink", 8)?;
/// seg.keep();
/// shmkit::unlink("shmkit-doc-unlink")?;
/// assert!(matches!(shmkit::unlink("shmkit-doc-unlink"), Err(shmkit::Error::NotFound { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn unlink(name: &str) -> Result<()> {
    let cname = os_name(name)?;
    sys::shm_unlink(&cname).map_err(|e| Error::from_os(e, name))
}
