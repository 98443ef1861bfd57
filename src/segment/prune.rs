//! Finding and removing what is left behind: [`inspect`], [`list`] and the
//! pruner ([`prune`], [`prune_name`], and `Options::replace_stale`'s
//! removal of a stale segment). The marks of use they judge by are in the
//! parent module.

use std::ffi::{CStr, CString};
use std::time::Duration;

use super::{creator_alive, os_name, probe_use, take_unused, Options, Segment, Spec, MAX_LEN};
use crate::error::{Error, Result};
use crate::raw::header::{Header, Kind, HEADER_LEN, MAGIC};
use crate::sync;
use crate::sys;

/// What [`inspect`] finds in a segment's header, and what the OS says
/// about the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: String,
    /// What it holds (`"Lock"`, `"Queue"`, …; `"uninitialised"` for a
    /// segment whose creator died before finishing it, as [`prune`]
    /// reports).
    pub kind: &'static str,
    /// Its whole length in bytes, header included.
    pub len: usize,
    /// The pid of the process that created it.
    pub creator_pid: u32,
    /// Whether that process still runs (a reused pid does not count).
    pub creator_alive: bool,
    /// The permission bits (`0o600` by default).
    pub mode: u32,
    /// The user id that owns it.
    pub owner_uid: u32,
    /// Whether any live process has it open through a shmkit handle (see
    /// [Who uses a segment](Segment#who-uses-a-segment)): `Some(true)` when
    /// one does, `Some(false)` when none does, `None` when the OS could not
    /// tell (the `flock(2)` probe failed).
    pub in_use: Option<bool>,
}

impl SegmentInfo {
    /// Whether the segment is stale: its creator is dead and no live
    /// process uses it, so [`prune`] would remove it. `in_use == None`
    /// (unknown) counts as used.
    ///
    /// ```
    /// let seg = shmkit::Segment::create_unique(8)?;
    /// let info = shmkit::inspect(seg.name())?;
    /// assert_eq!(info.in_use, Some(true)); // `seg` marks it
    /// assert!(!info.is_stale());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_stale(&self) -> bool {
        !self.creator_alive && self.in_use == Some(false)
    }
}

/// Reads the header of the shmkit segment `name`, whatever it holds: what it
/// is, how large, who made it, whether that process lives and whether any
/// process uses the segment. For finding segments left behind by a process
/// that was killed. `inspect` itself leaves no mark of use.
///
/// # Errors
/// As [`Segment::open`], except that any kind is accepted.
///
/// ```
/// let lock = shmkit::Lock::create_unique()?;
/// let info = shmkit::inspect(lock.name())?;
/// assert_eq!(info.kind, "Lock");
/// assert_eq!(info.creator_pid, std::process::id());
/// assert!(info.creator_alive);
/// assert_eq!(info.in_use, Some(true));
/// assert_eq!(info.mode, 0o600);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn inspect(name: &str) -> Result<SegmentInfo> {
    inspect_with(name, &Options::new())
}

/// [`inspect`] with options: [`Options::init_timeout`] bounds the wait for a
/// segment whose creator (alive) has not finished initialising it, which
/// `inspect` waits for up to [`DEFAULT_INIT_TIMEOUT`](super::DEFAULT_INIT_TIMEOUT).
///
/// # Errors
/// As [`inspect`].
///
/// ```
/// use std::time::Duration;
/// let q = shmkit::Queue::create_unique(4, 16)?;
/// let opts = shmkit::Options::new().init_timeout(Duration::from_millis(1));
/// let info = shmkit::inspect_with(q.name(), &opts)?;
/// assert_eq!(info.kind, "Queue");
/// assert!(info.creator_alive);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn inspect_with(name: &str, opts: &Options) -> Result<SegmentInfo> {
    let spec = Spec {
        any: true,
        ..Spec::RAW
    };
    // The fields validated at open, never a second read (issue 14, defect
    // 5: a header rewritten in between made a re-read's `expect` panic).
    // No mark of use: the probe below must not count this handle.
    let (seg, fields) = Segment::open_fields(name, spec, opts, false)?;
    let (pid, start) = seg.header().creator();
    let st = sys::fstat(&seg.file).map_err(|e| Error::from_os(e, name))?;
    Ok(SegmentInfo {
        name: name.into(),
        kind: Kind::from_code(fields.kind).map_or("unknown", Kind::name),
        len: seg.map.len(),
        creator_pid: pid,
        creator_alive: creator_alive(pid, start),
        mode: st.mode & 0o777,
        owner_uid: st.uid,
        in_use: probe_use(&seg.file),
    })
}

/// Every shmkit segment of this user in `/dev/shm` (objects that are not
/// shmkit's, or not readable, are skipped), for finding leftovers:
/// [`prune`] removes the stale ones ([`SegmentInfo::is_stale`]).
///
/// # Errors
/// [`Error::Io`] if `/dev/shm` cannot be read.
///
/// ```
/// let q = shmkit::Queue::create_unique(2, 8)?;
/// let all = shmkit::list()?;
/// assert!(all.iter().any(|s| s.name == q.name() && s.kind == "Queue"));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn list() -> Result<Vec<SegmentInfo>> {
    let opts = Options::new().init_timeout(Duration::ZERO);
    let mut out = Vec::new();
    for name in shm_names()? {
        // Only what carries shmkit's magic is opened (and mapped): a
        // mapping of anyone else's object would raise SIGBUS if its owner
        // shrank it while we read.
        if !looks_like_shmkit(&name) {
            continue;
        }
        if let Ok(info) = inspect_with(&name, &opts) {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes every stale shmkit segment of this user: those whose creator is
/// dead (a reused pid does not count as alive) and that no live process has
/// open ([`SegmentInfo::is_stale`]), including segments whose creator died
/// before finishing them. Returns what it removed, sorted by name.
///
/// A segment that a live process uses is never removed, even when its
/// creator is long dead; nor one another user owns, one whose use cannot be
/// told, or one that is not shmkit's. Each removal holds an exclusive
/// `flock(2)` on the object while it unlinks the name, and an opener that
/// raced with it finds the name gone ([`Error::NotFound`]) rather than a
/// removed segment. Only the name goes: a process that still maps the
/// object keeps its mapping. A process that maps a segment without a
/// shmkit handle (an older shmkit without marks of use, its own `mmap`) is
/// not seen.
///
/// # Errors
/// [`Error::Io`] if `/dev/shm` cannot be read. A segment that cannot be
/// looked at is skipped.
///
/// ```no_run
/// // Not run as a doctest: it would remove other programs' stale segments.
/// let seg = shmkit::Segment::create_unique(8)?;
/// let removed = shmkit::prune()?;
/// // This process made `seg` and lives: it is not stale.
/// assert!(removed.iter().all(|s| s.name != seg.name()));
/// for s in &removed {
///     println!("removed {} (a {}, creator pid {})", s.name, s.kind, s.creator_pid);
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn prune() -> Result<Vec<SegmentInfo>> {
    prune_all(false)
}

/// What [`prune`] would remove now, removing nothing.
///
/// # Errors
/// As [`prune`].
///
/// ```
/// let seg = shmkit::Segment::create_unique(8)?;
/// let stale = shmkit::prune_dry_run()?;
/// assert!(stale.iter().all(|s| s.is_stale() && s.name != seg.name()));
/// assert!(shmkit::inspect(seg.name()).is_ok());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn prune_dry_run() -> Result<Vec<SegmentInfo>> {
    prune_all(true)
}

/// [`prune`] for one name: removes the segment `name` if it is stale, and
/// returns what it removed; `None` if it is not stale (or not shmkit's, not
/// this user's, or not there). With `dry_run`, removes nothing and says
/// what it would remove. For a program that owns a few well-known names
/// and should not touch anybody else's.
///
/// # Errors
/// [`Error::InvalidName`]; an OS error looking at the segment.
///
/// ```
/// let seg = shmkit::Segment::create(&format!("shmkit-doc-prune-{}", std::process::id()), 8)?;
/// // Its creator lives: not stale.
/// assert_eq!(shmkit::prune_name(seg.name(), false)?, None);
/// assert_eq!(shmkit::prune_name("shmkit-doc-no-such-segment", true)?, None);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn prune_name(name: &str, dry_run: bool) -> Result<Option<SegmentInfo>> {
    let cname = os_name(name)?;
    remove_if_stale(&cname, name, dry_run)
}

fn prune_all(dry_run: bool) -> Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    for name in shm_names()? {
        let Ok(cname) = os_name(&name) else { continue };
        if let Ok(Some(info)) = remove_if_stale(&cname, &name, dry_run) {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The names in `/dev/shm` that are valid segment names.
fn shm_names() -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(sys::SHM_DIR)? {
        let Ok(name) = entry?.file_name().into_string() else {
            continue;
        };
        if os_name(&name).is_ok() {
            out.push(name);
        }
    }
    Ok(out)
}

/// Removes the segment `cname` names if it is stale (see [`prune`]), or with
/// `dry_run` only says whether it is. `Ok(None)`: not stale, not shmkit's,
/// not this user's, or gone.
///
/// The header is judged first without a lock, so that a segment whose
/// creator lives (nearly all of them) is never locked at all; only a
/// candidate is locked, and judged again under the lock.
pub(super) fn remove_if_stale(
    cname: &CStr,
    name: &str,
    dry_run: bool,
) -> Result<Option<SegmentInfo>> {
    // Read-only: `flock` works on any descriptor, and a stale segment its
    // creator made read-only (mode 0400) is judged like any other.
    let file = match sys::shm_open(cname, false) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::from_os(e, name)),
    };
    let st = sys::fstat(&file).map_err(|e| Error::from_os(e, name))?;
    if st.uid != sys::uid() {
        return Ok(None);
    }
    // A shorter object cannot be shmkit's, or is being given its length.
    let Some(len) = usize::try_from(st.len)
        .ok()
        .filter(|&l| l > HEADER_LEN && l <= MAX_LEN)
    else {
        return Ok(None);
    };
    let Some(copy) = HeaderCopy::read(&file) else {
        return Ok(None); // shrunk since the fstat: not shmkit's, or going
    };
    let (published, fields) = copy.header().read_any();
    let creator = copy.header().creator();
    // No creator recorded: being created right now, or not shmkit's.
    if fields.magic != MAGIC || creator.0 == 0 || creator_alive(creator.0, creator.1) {
        return Ok(None);
    }
    // Held until `file` closes at return: while it is, nobody can mark the
    // object used, and no other pruner can remove it.
    if take_unused(&file).map_err(|e| Error::from_os(e, name))? != Some(true) {
        return Ok(None); // in use, or it could not be told
    }
    // The name must still name the object we hold: between our open and
    // our lock, another pruner may have removed it and a creator made a
    // new one, which is not ours to judge. And the creator must be the
    // dead one judged above (a dead task stays dead).
    match sys::shm_stat(cname) {
        Ok(now) if (now.dev, now.ino) == (st.dev, st.ino) => {}
        _ => return Ok(None),
    }
    if HeaderCopy::read(&file).map(|c| c.header().creator()) != Some(creator) {
        return Ok(None);
    }
    let info = SegmentInfo {
        name: name.into(),
        kind: if published {
            Kind::from_code(fields.kind).map_or("unknown", Kind::name)
        } else {
            "uninitialised"
        },
        len,
        creator_pid: creator.0,
        creator_alive: false,
        mode: st.mode & 0o777,
        owner_uid: st.uid,
        in_use: Some(false),
    };
    if !dry_run && !unlink_if_same(cname, (st.dev, st.ino)).map_err(|e| Error::from_os(e, name))? {
        return Ok(None);
    }
    Ok(Some(info))
}

/// Unlinks `cname` only if it names the object `id` (device, inode);
/// whether it did. An unlink by name after a check of the name would race
/// with a process that unlinks the name and creates a new segment under it
/// in between: so the name is first renamed to a private one (atomic), the
/// object now under the private name is checked, and unlinked if it is
/// `id`; if it is not, it goes back under its name. In that race the new
/// segment is missing from its name for the few microseconds between the
/// two renames; and if yet another process created the name meanwhile, it
/// stays under the private name (its users keep it mapped; a later prune
/// removes it once stale).
fn unlink_if_same(cname: &CStr, id: (u64, u64)) -> std::io::Result<bool> {
    // One name per thread and moment (a thread prunes one object at a
    // time; the time tells it from a name a crashed pruner left behind).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let private = CString::new(format!(
        "/.shmkit-pruning-{}-{nanos}",
        sync::current_stamp().tid()
    ))
    .expect("no NUL in formatted numbers");
    match sys::shm_rename_noreplace(cname, &private) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    }
    match sys::shm_stat(&private) {
        Ok(now) if (now.dev, now.ino) == id => {
            sys::shm_unlink(&private)?;
            Ok(true)
        }
        _ => {
            let _ = sys::shm_rename_noreplace(&private, cname);
            Ok(false)
        }
    }
}

/// Whether the object `name` is longer than a header and its header, read
/// with `pread`, carries shmkit's magic.
fn looks_like_shmkit(name: &str) -> bool {
    let Ok(cname) = os_name(name) else {
        return false;
    };
    let Ok(file) = sys::shm_open(&cname, false) else {
        return false;
    };
    let long_enough = sys::fstat(&file).is_ok_and(|st| st.len > HEADER_LEN as u64);
    long_enough && HeaderCopy::read(&file).is_some_and(|c| c.header().read_any().1.magic == MAGIC)
}

/// A private copy of an object's first [`HEADER_LEN`] bytes, read with
/// `pread`: a pruner looks at objects that may be anyone's, and a mapping
/// of one would raise SIGBUS if its owner shrank it in the meantime.
#[repr(C, align(64))]
struct HeaderCopy([u8; HEADER_LEN]);

// (Under loom a `Header`'s atomics are loom's, larger; segments are not
// used there.)
#[cfg(not(loom))]
const _: () = assert!(
    std::mem::size_of::<HeaderCopy>() == std::mem::size_of::<Header>()
        && std::mem::align_of::<HeaderCopy>() >= std::mem::align_of::<Header>()
);

impl HeaderCopy {
    /// `None` if the object is shorter than a header now.
    fn read(file: &std::fs::File) -> Option<HeaderCopy> {
        use std::os::unix::fs::FileExt;
        let mut c = HeaderCopy([0; HEADER_LEN]);
        file.read_exact_at(&mut c.0, 0).ok()?;
        Some(c)
    }

    fn header(&self) -> &Header {
        // SAFETY: the copy is as large as a `Header` and at least as
        // aligned (checked at compile time above); `Header` is all atomic
        // integers, so any bytes are a valid value; and the copy is ours
        // alone, borrowed for as long as the reference lives.
        unsafe { &*(self.0.as_ptr() as *const Header) }
    }
}
