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
        Ok(())
    })();
    match setup {
        Ok(()) => Ok(File::from(fd)),
        Err(e) => {
            let _ = shm_unlink(name);
            Err(e)
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

/// What `fstat` tells about an open object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) len: u64,
    pub(crate) uid: u32,
    pub(crate) mode: u32,
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
    })
}

/// The real user id of this process.
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
    let ts = deadline.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
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

/// Wakes up to `n` threads waiting on `addr`; returns how many woke.
///
/// # Safety
/// `addr` must point to a live, 4-byte-aligned `u32`.
pub(crate) unsafe fn futex_wake(addr: *const u32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as i32;
    // SAFETY: the caller guarantees `addr` is live; FUTEX_WAKE does not write to it.
    let r = unsafe { libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAKE, n) };
    debug_assert!(r >= 0, "futex wake failed: {}", io::Error::last_os_error());
    r.max(0) as usize
}

/// The start time (in clock ticks since boot) of process or thread `id`, or
/// `None` when no such task is running (gone, or a zombie that has stopped
/// running). Together with the id this names a task uniquely, even after the
/// id is reused.
pub(crate) fn task_start_time(id: u32) -> Option<u64> {
    if id == 0 {
        return None;
    }
    let stat = std::fs::read(format!("/proc/{id}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses the state and field 22 (`starttime`) of /proc/<id>/stat. The
/// command name is in parentheses and may contain anything, so the fields
/// are found after the last ')'.
fn parse_stat(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    // Z: zombie, X: dead. Neither will ever release anything.
    if state == "Z" || state == "X" {
        return None;
    }
    // `state` is field 3; starttime is field 22.
    fields.nth(18)?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = b"1234 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_stat(line), Some(777));
        let zombie = b"1234 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_stat(zombie), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn this_thread_is_alive() {
        assert!(task_start_time(gettid()).is_some());
        assert!(task_start_time(getpid()).is_some());
        assert!(task_start_time(0).is_none());
    }
}
