//! Linux: every OS call shmkit makes.
//!
//! Nothing outside `src/sys` calls libc. The futex wrappers take raw
//! addresses so that `src/sync` stays the only place that names atomics.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Largest name length (without the leading '/') we accept. Linux allows
/// NAME_MAX (255) for a file in /dev/shm; we keep a margin, as DESIGN.md says.
pub(crate) const NAME_MAX: usize = 200;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Creates a new shared-memory object `name` (which must start with '/'),
/// exclusively, with exactly `mode` (the umask cannot narrow or widen it),
/// and sets its length. On any failure after the object exists it is
/// unlinked again, so a failed create leaves nothing behind.
pub(crate) fn shm_create(name: &CStr, len: u64, mode: u32) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags and mode are plain integers.
    let fd = cvt(unsafe {
        libc::shm_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
        )
    })?;
    // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let setup = (|| {
        // SAFETY: `fd` is an open descriptor owned by this function.
        cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: as above; ftruncate only changes the object's length.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
        reserve(&fd, len)
    })();
    match setup {
        Ok(()) => Ok(File::from(fd)),
        Err(e) => {
            let _ = shm_unlink(name);
            Err(e)
        }
    }
}

/// Reserves the object's memory now (posix_fallocate), so that a full
/// /dev/shm is ENOSPC at create instead of a SIGBUS at the first touch of a
/// page later. Where the filesystem cannot reserve (EOPNOTSUPP, EINVAL,
/// ENOSYS on odd systems) the object is left sparse, as before.
fn reserve(fd: &OwnedFd, len: libc::off_t) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    loop {
        // SAFETY: `fd` is an open descriptor; posix_fallocate only allocates.
        let r = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) };
        match r {
            0 => return Ok(()),
            libc::EINTR => continue,
            libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS => return Ok(()),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Opens an existing shared-memory object, read-write or read-only.
pub(crate) fn shm_open(name: &CStr, writable: bool) -> io::Result<File> {
    let flags = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    } | libc::O_CLOEXEC;
    // SAFETY: `name` is a valid NUL-terminated string.
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0) })?;
    // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Removes the name of a shared-memory object. Mappings stay valid.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// Takes a `flock(2)` lock on `file`'s open file description without
/// waiting: shared (`LOCK_SH`) or exclusive (`LOCK_EX`). `Ok(false)` when a
/// conflicting lock is held (EWOULDBLOCK); `EINTR` is retried. The kernel
/// drops the lock when the last descriptor of the description closes, so
/// also when the process dies.
pub(crate) fn try_flock(file: &File, exclusive: bool) -> io::Result<bool> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    loop {
        // SAFETY: the descriptor is open for the life of `file`; flock
        // takes two integers and touches no memory of ours.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Releases the `flock(2)` lock held through `file`'s open file description.
pub(crate) fn funlock(file: &File) {
    // SAFETY: as in `try_flock`; LOCK_UN cannot block.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}

/// Where glibc and musl keep shared-memory objects: `shm_open("/x")` opens
/// `/dev/shm/x`.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// `stat(2)` of the object that the shared-memory name `name` (with its
/// leading '/') names now, without opening it and without allocating.
pub(crate) fn shm_stat(name: &CStr) -> io::Result<Stat> {
    let path = shm_path(name)?;
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated (the byte after the name is still 0:
    // the name holds no NUL and is at most NAME_MAX + 1 bytes); `st` is
    // writable.
    cvt(unsafe { libc::stat(path.as_ptr().cast(), &mut st) })?;
    Ok(Stat {
        len: st.st_size as u64,
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink as u64,
    })
}

/// The path of shared-memory name `name` (with its leading '/'), NUL
/// terminated, in a stack buffer.
fn shm_path(name: &CStr) -> io::Result<[u8; SHM_DIR.len() + NAME_MAX + 2]> {
    let name = name.to_bytes();
    let mut path = [0u8; SHM_DIR.len() + NAME_MAX + 2];
    if name.len() > NAME_MAX + 1 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    path[..SHM_DIR.len()].copy_from_slice(SHM_DIR.as_bytes());
    path[SHM_DIR.len()..SHM_DIR.len() + name.len()].copy_from_slice(name);
    Ok(path)
}

/// Renames shared-memory object `from` to `to` (names with their leading
/// '/'), atomically, failing with EEXIST if `to` exists
/// (`renameat2(RENAME_NOREPLACE)`).
pub(crate) fn shm_rename_noreplace(from: &CStr, to: &CStr) -> io::Result<()> {
    let (a, b) = (shm_path(from)?, shm_path(to)?);
    // SAFETY: both paths are NUL-terminated (`shm_path`: the byte after
    // each name is still 0); AT_FDCWD with absolute paths.
    cvt(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr().cast(),
            libc::AT_FDCWD,
            b.as_ptr().cast(),
            libc::RENAME_NOREPLACE,
        )
    })?;
    Ok(())
}

/// What `fstat` tells about an open object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) len: u64,
    pub(crate) uid: u32,
    pub(crate) mode: u32,
    /// The object's device and inode: equal for every mapping of it.
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// How many names it has: 0 once it was unlinked.
    pub(crate) nlink: u64,
}

pub(crate) fn fstat(file: &File) -> io::Result<Stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the life of `file`; `st` is writable.
    cvt(unsafe { libc::fstat(file.as_raw_fd(), &mut st) })?;
    Ok(Stat {
        len: st.st_size as u64,
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink as u64,
    })
}

/// The real user id of this process.
/// The inode of the calling process's pid namespace (`/proc/self/ns/pid`),
/// which tells one namespace from another; `None` if it cannot be read.
pub(crate) fn pid_namespace() -> Option<u64> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated literal path; `st` is writable.
    let r = unsafe { libc::stat(c"/proc/self/ns/pid".as_ptr(), &mut st) };
    (r == 0).then_some(st.st_ino)
}

pub(crate) fn uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// The id of the calling thread (what `gettid(2)` returns).
pub(crate) fn gettid() -> u32 {
    // SAFETY: SYS_gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The id of this process.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Registers `f` to run in the child after every fork(2).
pub(crate) fn on_fork_child(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function that stays valid for the process's
    // life; pthread_atfork only records it.
    unsafe { libc::pthread_atfork(None, None, Some(f)) };
}

/// Microseconds since the last boot, or any base shared by every process on
/// this machine: `CLOCK_MONOTONIC`.
pub(crate) fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// An absolute CLOCK_MONOTONIC time as a `timespec` (saturating).
fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Waits while the 32-bit word at `addr` equals `expected`, until woken or
/// until `deadline` (absolute, on `CLOCK_MONOTONIC`, as from
/// [`monotonic_now`]). Returns `false` when the deadline passed, `true`
/// otherwise (woken, value changed, or spurious). `EINTR` is retried with
/// the same absolute deadline. The futex is shared (no `FUTEX_PRIVATE_FLAG`)
/// so that it works across processes.
///
/// # Safety
/// `addr` must point to a live, 4-byte-aligned `u32` that is only accessed
/// atomically, for the whole call.
pub(crate) unsafe fn futex_wait(
    addr: *const u32,
    expected: u32,
    deadline: Option<Duration>,
) -> bool {
    let ts = deadline.map(timespec);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    loop {
        // SAFETY: the caller guarantees `addr` is a live aligned u32; `ts_ptr`
        // is null or points at `ts`, alive for the call. FUTEX_WAIT_BITSET
        // takes an absolute CLOCK_MONOTONIC deadline.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr,
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if r == 0 {
            return true;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return false,
            // EAGAIN: the word no longer held `expected`.
            Some(libc::EAGAIN) => return true,
            e => {
                debug_assert!(false, "unexpected futex wait error {e:?}");
                return true;
            }
        }
    }
}

/// The most words one [`futex_waitv`] call can wait on (the kernel's
/// `FUTEX_WAITV_MAX`).
pub(crate) const FUTEX_WAITV_MAX: usize = 128;

/// What [`futex_waitv`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitvOutcome {
    /// Woken: by a wake of the word at this index, or (`None`) because a
    /// word no longer held its expected value, or was not mapped. Look
    /// again.
    Woken(Option<usize>),
    /// The deadline passed.
    TimedOut,
    /// The kernel has no `futex_waitv` (before Linux 5.16, or filtered out
    /// by a seccomp policy).
    Unsupported,
}

/// The kernel's `struct futex_waitv`.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32`: the words are 32 bits; no `FUTEX2_PRIVATE`, so they
/// are shared between processes.
const FUTEX2_SIZE_U32: u32 = 0x02;

/// Sleeps until any of `words` (address, expected value) no longer holds its
/// value or is woken, or until `deadline` (absolute, on `CLOCK_MONOTONIC`).
/// `EINTR` is retried with the same deadline. At most [`FUTEX_WAITV_MAX`]
/// words (more are cut to the first `FUTEX_WAITV_MAX`, which callers
/// prevent).
///
/// # Safety
/// Every address must point to a live, 4-byte-aligned `u32` that is only
/// accessed atomically, for the whole call.
pub(crate) unsafe fn futex_waitv(
    words: &[(*const u32, u32)],
    deadline: Option<Duration>,
) -> WaitvOutcome {
    if words.is_empty() {
        return WaitvOutcome::Woken(None);
    }
    let mut v = [const {
        FutexWaitv {
            val: 0,
            uaddr: 0,
            flags: 0,
            reserved: 0,
        }
    }; FUTEX_WAITV_MAX];
    let n = words.len().min(FUTEX_WAITV_MAX);
    for (slot, &(addr, val)) in v.iter_mut().zip(&words[..n]) {
        *slot = FutexWaitv {
            val: u64::from(val),
            uaddr: addr as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        };
    }
    let ts = deadline.map(timespec);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    loop {
        // SAFETY: `v[..n]` are initialised entries naming words the caller
        // guarantees live and atomic; `ts_ptr` is null or points at `ts`,
        // alive for the call. The deadline is absolute on CLOCK_MONOTONIC.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                v.as_ptr(),
                n as libc::c_uint,
                0 as libc::c_uint,
                ts_ptr,
                libc::CLOCK_MONOTONIC,
            )
        };
        if r >= 0 {
            return WaitvOutcome::Woken(Some(r as usize));
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return WaitvOutcome::TimedOut,
            Some(libc::EAGAIN) => return WaitvOutcome::Woken(None),
            // A word unmapped under the async waiter (a future dropped
            // with its object while the list was rebuilt): look again.
            Some(libc::EFAULT) => return WaitvOutcome::Woken(None),
            Some(libc::ENOSYS) | Some(libc::EPERM) => return WaitvOutcome::Unsupported,
            e => {
                debug_assert!(false, "unexpected futex_waitv error {e:?}");
                return WaitvOutcome::Unsupported;
            }
        }
    }
}

/// Wakes up to `n` threads waiting on `addr`; returns how many woke.
///
/// # Safety
/// `addr` must be 4-byte aligned. FUTEX_WAKE neither reads nor writes the
/// word: the kernel only looks the address up, and an address that is not
/// mapped (a word whose segment a leaked registration outlived) makes the
/// call fail with EFAULT, which is harmless and counts as "nobody woke".
pub(crate) unsafe fn futex_wake(addr: *const u32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as i32;
    // SAFETY: FUTEX_WAKE does not access the word (see above).
    let r = unsafe { libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAKE, n) };
    debug_assert!(
        r >= 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT),
        "futex wake failed: {}",
        io::Error::last_os_error()
    );
    r.max(0) as usize
}

/// What `/proc` says about a task (thread or process) id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The task runs (or sleeps); its start time in clock ticks since boot.
    Running(u64),
    /// No such task: `/proc` answered ENOENT or ESRCH, or the task is a
    /// zombie that will never run again (see [`probe_thread`] and
    /// [`probe_process`] for what counts).
    Gone,
    /// The OS did not answer (EMFILE, ENOMEM, EACCES, an unparsable line,
    /// ...). Callers treat this as "alive".
    Unknown,
}

/// Maps the errno of a failed open/read of a `/proc` file: only "no such
/// task" means gone.
fn probe_errno(errno: i32) -> Probe {
    match errno {
        libc::ENOENT | libc::ESRCH => Probe::Gone,
        _ => Probe::Unknown,
    }
}

/// Writes `parts` (strings and ids) into `buf` as a NUL-terminated path.
fn proc_path<'a>(buf: &'a mut [u8; 64], parts: &[Result<&str, u32>]) -> &'a CStr {
    let mut n = 0;
    for p in parts {
        let mut digits = [0u8; 10];
        let bytes: &[u8] = match *p {
            Ok(s) => s.as_bytes(),
            Err(mut id) => {
                let mut i = digits.len();
                loop {
                    i -= 1;
                    digits[i] = b'0' + (id % 10) as u8;
                    id /= 10;
                    if id == 0 {
                        break;
                    }
                }
                &digits[i..]
            }
        };
        buf[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    }
    buf[n] = 0;
    // Cannot fail: one NUL, at the end (ids and the literals hold none).
    CStr::from_bytes_with_nul(&buf[..=n]).unwrap_or(c"/")
}

/// Reads the state letter and start time from a `/proc/.../stat` file,
/// with no heap allocation: `Err(probe)` when it cannot be read.
fn read_stat(path: &CStr) -> Result<(u8, u64), Probe> {
    let fd = loop {
        // SAFETY: `path` is NUL-terminated; plain flags.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            break fd;
        }
        let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::EINTR {
            return Err(probe_errno(e));
        }
    };
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut buf = [0u8; 1024];
    let mut n = 0;
    let complete = loop {
        if n == buf.len() {
            break false;
        }
        // SAFETY: `buf[n..]` is writable for its length; `fd` is open.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r == 0 {
            break true;
        }
        if r < 0 {
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e == libc::EINTR {
                continue;
            }
            return Err(probe_errno(e));
        }
        n += r as usize;
    };
    let mut line = &buf[..n];
    if !complete {
        // Drop a field cut off by the end of the buffer.
        let cut = line
            .iter()
            .rposition(|b| b.is_ascii_whitespace())
            .unwrap_or(0);
        line = &line[..cut];
    }
    parse_stat(line).ok_or(Probe::Unknown)
}

/// Whether the thread `tid` runs. A thread whose stat says `Z` or `X` is
/// gone: it will never run (nor unlock anything) again, even when it is a
/// thread-group leader whose group lingers on (its other threads are not
/// this thread). `/proc/<tid>` answers for any thread id, listed or not.
pub(crate) fn probe_thread(tid: u32) -> Probe {
    if tid == 0 {
        return Probe::Gone;
    }
    let mut p = [0u8; 64];
    match read_stat(proc_path(&mut p, &[Ok("/proc/"), Err(tid), Ok("/stat")])) {
        Ok((b'Z' | b'X', _)) => Probe::Gone,
        Ok((_, start)) => Probe::Running(start),
        Err(probe) => probe,
    }
}

/// Whether the process `pid` runs, that is, any thread of it. A leader in
/// state `Z`/`X` whose other threads still run is a running process (with
/// the leader's start time, which is the process's); a zombie leader with
/// no other thread left is gone.
pub(crate) fn probe_process(pid: u32) -> Probe {
    if pid == 0 {
        return Probe::Gone;
    }
    let mut p = [0u8; 64];
    let start = match read_stat(proc_path(&mut p, &[Ok("/proc/"), Err(pid), Ok("/stat")])) {
        Ok((b'Z' | b'X', start)) => start,
        Ok((_, start)) => return Probe::Running(start),
        Err(probe) => return probe,
    };
    // The leader is a zombie: look for another thread that runs. Rare, so
    // the directory walk may allocate.
    let dir = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(d) => d,
        Err(e) => return probe_errno(e.raw_os_error().unwrap_or(0)),
    };
    let mut unknown = false;
    for entry in dir {
        let Ok(entry) = entry else {
            unknown = true;
            continue;
        };
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if tid == pid {
            continue;
        }
        let mut q = [0u8; 64];
        let path = proc_path(
            &mut q,
            &[Ok("/proc/"), Err(pid), Ok("/task/"), Err(tid), Ok("/stat")],
        );
        match read_stat(path) {
            Ok((b'Z' | b'X', _)) | Err(Probe::Gone) => {}
            Ok(_) => return Probe::Running(start),
            Err(_) => unknown = true,
        }
    }
    if unknown {
        Probe::Unknown
    } else {
        Probe::Gone
    }
}

/// Parses the state (field 3) and field 22 (`starttime`) of
/// /proc/<id>/stat. The command name is in parentheses and may contain
/// anything, so the fields are found after the last ')'.
fn parse_stat(stat: &[u8]) -> Option<(u8, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if state.len() != 1 {
        return None;
    }
    // `state` is field 3; starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state.as_bytes()[0], start))
}

/// The pidfs inode number of process `pid` (Linux 6.9 and later give every
/// process its own, never reused while the system runs), or `None` when it
/// cannot be read: no such process, no pidfd_open(2), or any other error.
/// On older kernels every pidfd has the same inode, so equal numbers say
/// nothing there; only different numbers tell two processes apart.
pub(crate) fn pidfs_ino(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok().filter(|&p| p > 0)?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for this call; `st` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    Some(st.st_ino as u64)
}

/// Fresh random bytes from the kernel, for unique names.
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is a valid writable buffer of its length.
    let r = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if r != buf.len() as isize {
        // Fall back on something that differs between calls and processes.
        let t = monotonic_now().as_nanos() as u64;
        return t ^ (u64::from(getpid()) << 32) ^ u64::from(gettid());
    }
    u64::from_ne_bytes(buf)
}

// ---- death notice: pidfds and epoll ---------------------------------------

/// `PIDFD_THREAD` (Linux 6.9): a pidfd for one thread rather than its
/// thread group; it becomes readable when that thread exits.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// Opens a pidfd for process `pid` (`thread` false) or for thread `pid`
/// (`thread` true, Linux 6.9+). It becomes readable when the process (every
/// thread of it) or the thread has exited. `None` when the kernel refused
/// (no such task, no pidfd support, out of descriptors, ...).
pub(crate) fn pidfd_open(pid: u32, thread: bool) -> Option<OwnedFd> {
    let flags = if thread { PIDFD_THREAD } else { 0 };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, flags) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a descriptor the kernel just gave us, owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Whether the task behind pidfd `fd` has exited (the pidfd is readable),
/// without waiting; `None` if `poll(2)` failed.
pub(crate) fn pidfd_exited(fd: &OwnedFd) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; timeout 0.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    if r < 0 {
        None
    } else {
        Some(r > 0 && p.revents & (libc::POLLIN | libc::POLLHUP) != 0)
    }
}

/// A new epoll instance (close-on-exec).
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers are passed.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to `ep` for readability, with `data` returned by [`epoll_wait`].
pub(crate) fn epoll_add(ep: &OwnedFd, fd: &OwnedFd, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: data,
    };
    // SAFETY: both descriptors are open (borrowed); `ev` is a valid event
    // for the call.
    let r =
        unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes `fd` from `ep` (closing `fd` does it too; this is for clarity
/// when the descriptor is kept).
pub(crate) fn epoll_del(ep: &OwnedFd, fd: &OwnedFd) {
    // SAFETY: both descriptors are open; EPOLL_CTL_DEL ignores the event.
    unsafe {
        libc::epoll_ctl(
            ep.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            std::ptr::null_mut(),
        )
    };
}

/// Waits on `ep` for at most `timeout_ms` (-1: as long as it takes);
/// returns the `data` of each ready descriptor in `out` (cleared first).
/// A timeout or `EINTR` returns with `out` empty.
pub(crate) fn epoll_wait(ep: &OwnedFd, out: &mut Vec<u64>, timeout_ms: i32) {
    const N: usize = 64;
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; N];
    out.clear();
    // SAFETY: `evs` has room for N events and lives for the call.
    let n = unsafe {
        libc::epoll_wait(
            ep.as_raw_fd(),
            evs.as_mut_ptr(),
            N as libc::c_int,
            timeout_ms,
        )
    };
    for ev in evs.iter().take(n.max(0) as usize) {
        let data = ev.u64;
        out.push(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = b"1234 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_stat(line), Some((b'S', 777)));
        let zombie = b"1234 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_stat(zombie), Some((b'Z', 777)));
        assert_eq!(parse_stat(b"garbage"), None);
        // Cut before field 22: no answer, never a wrong one.
        assert_eq!(
            parse_stat(b"1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18"),
            None
        );
    }

    #[test]
    fn only_no_such_task_is_gone() {
        assert_eq!(probe_errno(libc::ENOENT), Probe::Gone);
        assert_eq!(probe_errno(libc::ESRCH), Probe::Gone);
        for e in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::EACCES,
            libc::EPERM,
            0,
        ] {
            assert_eq!(probe_errno(e), Probe::Unknown, "errno {e}");
        }
    }

    #[test]
    fn builds_paths_without_allocating() {
        let mut b = [0u8; 64];
        let p = proc_path(
            &mut b,
            &[
                Ok("/proc/"),
                Err(0),
                Ok("/task/"),
                Err(4194304),
                Ok("/stat"),
            ],
        );
        assert_eq!(p.to_bytes(), b"/proc/0/task/4194304/stat");
    }

    #[test]
    fn this_thread_is_alive() {
        assert!(matches!(probe_thread(gettid()), Probe::Running(_)));
        assert!(matches!(probe_process(getpid()), Probe::Running(_)));
        assert_eq!(probe_thread(0), Probe::Gone);
        assert_eq!(probe_process(0), Probe::Gone);
        // Above pid_max: no such task.
        assert_eq!(probe_process(u32::MAX), Probe::Gone);
    }
}

/// In a child between fork(2) and exec(2): asks the kernel to SIGKILL this
/// process when the thread that forked it exits, then leaves at once if
/// the parent `parent` is gone already (the signal would never come).
/// Async-signal-safe: only `prctl`, `getppid` and `_exit`.
pub(crate) fn die_with_parent(parent: u32) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes two integers and touches
    // no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid cannot fail; _exit ends the process without running
    // anything (async-signal-safe).
    unsafe {
        if libc::getppid() as u32 != parent {
            libc::_exit(1);
        }
    }
    Ok(())
}

/// Sends SIGTERM to process `pid` (kill(2)).
pub(crate) fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes a pid and a signal number; it touches no memory.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Test support: what unit tests need to see of threads and futexes.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::{Duration, Instant};

    /// Test support: whether thread `tid` of this process is asleep inside one
    /// of the syscalls `nrs` (read from `/proc/self/task/<tid>/stat` and
    /// `.../syscall`). A thread found asleep in `futex(2)` or `futex_waitv(2)`
    /// is queued on its words: a wake-up from now on reaches it.
    pub(crate) fn asleep_in(tid: u32, nrs: &[libc::c_long]) -> bool {
        let dir = format!("/proc/self/task/{tid}");
        let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) else {
            return false;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim().chars().next());
        if state != Some('S') {
            return false;
        }
        let Ok(sc) = std::fs::read_to_string(format!("{dir}/syscall")) else {
            return false;
        };
        let nr = sc
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<libc::c_long>().ok());
        nr.is_some_and(|n| nrs.contains(&n))
    }

    /// Test support: the ids of this process's threads named `name`.
    pub(crate) fn threads_named(name: &str) -> Vec<u32> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
            for e in rd.flatten() {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                if comm.trim_end() == name {
                    if let Some(t) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                        v.push(t);
                    }
                }
            }
        }
        v
    }

    /// Test support: the futex syscalls a sleeper can be found in.
    pub(crate) const FUTEX_SYSCALLS: [libc::c_long; 2] = [libc::SYS_futex, libc::SYS_futex_waitv];

    /// Whether thread `tid` of this process is asleep on a futex.
    pub(crate) fn asleep(tid: u32) -> bool {
        asleep_in(tid, &FUTEX_SYSCALLS)
    }

    /// Polls `cond` until it holds (the state of other threads, which
    /// nothing signals); panics after 30 s, the watchdog.
    pub(crate) fn until(what: &str, cond: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "watchdog: never {what}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
