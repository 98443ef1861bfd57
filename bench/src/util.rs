//! Plumbing shared by every measurement: bare POSIX shared memory, futex
//! calls, child processes that re-execute this binary with a role, and
//! statistics.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An error with a message.
pub fn err<T>(msg: impl Into<String>) -> Res<T> {
    Err(msg.into().into())
}

/// A name no other run or object uses (without the leading slash).
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmkit-bench-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------
// Bare shared memory (libc only, so peers are measured without shmkit).

/// A mapping of a named POSIX shared memory object.
pub struct Shm {
    ptr: *mut u8,
    len: usize,
    name: CString,
    owner: bool,
}

impl Shm {
    /// Creates `name` (no leading slash) with `len` zeroed bytes; unlinked on drop.
    pub fn create(name: &str, len: usize) -> Res<Shm> {
        let cname = CString::new(format!("/{name}"))?;
        // SAFETY: a valid C string; plain syscalls whose results we check.
        unsafe {
            let fd = libc::shm_open(
                cname.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error().into());
            }
            if libc::ftruncate(fd, len as libc::off_t) != 0 {
                let e = io::Error::last_os_error();
                libc::close(fd);
                libc::shm_unlink(cname.as_ptr());
                return Err(e.into());
            }
            let ptr = map(fd, len);
            libc::close(fd);
            let ptr = ptr.inspect_err(|_| {
                libc::shm_unlink(cname.as_ptr());
            })?;
            Ok(Shm {
                ptr,
                len,
                name: cname,
                owner: true,
            })
        }
    }

    /// Opens `name`, waiting up to 10 s for it to exist with a size.
    pub fn open(name: &str) -> Res<Shm> {
        let cname = CString::new(format!("/{name}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: a valid C string; plain syscalls whose results we check;
            // `st` is written by fstat before it is read.
            unsafe {
                let fd = libc::shm_open(cname.as_ptr(), libc::O_RDWR, 0);
                if fd >= 0 {
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::fstat(fd, &mut st) == 0 && st.st_size > 0 {
                        let len = st.st_size as usize;
                        let ptr = map(fd, len);
                        libc::close(fd);
                        return Ok(Shm {
                            ptr: ptr?,
                            len,
                            name: cname,
                            owner: false,
                        });
                    }
                    libc::close(fd);
                }
            }
            if Instant::now() > deadline {
                return err(format!("shared memory {name} did not appear"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The object at offset `off`.
    ///
    /// # Safety
    /// `T` must be valid for any bytes (atomics, integers), `off` aligned
    /// for `T` and `off + size_of::<T>() <= len`.
    pub unsafe fn at<T>(&self, off: usize) -> &T {
        debug_assert!(off + std::mem::size_of::<T>() <= self.len);
        // SAFETY: per the caller; the mapping lives as long as `self`.
        unsafe { &*(self.ptr.add(off) as *const T) }
    }
}

/// # Safety
/// `fd` must be an open shared memory object of at least `len` bytes.
unsafe fn map(fd: i32, len: usize) -> Res<*mut u8> {
    // SAFETY: per the caller; a fresh shared mapping, checked for failure.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error().into());
    }
    Ok(p.cast())
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; nothing borrowed from it outlives
        // `self` (the accessors borrow `self`).
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
            if self.owner {
                libc::shm_unlink(self.name.as_ptr());
            }
        }
    }
}

/// A value on a cache line of its own.
#[repr(C, align(64))]
pub struct Line<T>(pub T);

/// The control block every multi-process measurement shares: start and
/// stop flags, and per-participant counters.
#[repr(C)]
pub struct Ctl {
    pub stop: Line<AtomicU32>,
    pub ready: Line<AtomicU32>,
    pub go: Line<AtomicU32>,
    pub done: Line<AtomicU32>,
    pub counts: [Line<AtomicU64>; 16],
}

pub fn ctl(shm: &Shm) -> &Ctl {
    assert!(shm.len() >= std::mem::size_of::<Ctl>());
    // SAFETY: Ctl is atomics only (any bytes valid, zero is the start
    // state), the mapping is page-aligned and long enough (checked).
    unsafe { shm.at::<Ctl>(0) }
}

pub const CTL_LEN: usize = 4096;

/// Waits (sleeping in short steps) until `cond` holds or `limit` passes.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Res<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return err("timed out waiting for another process");
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// futex(2) on shared memory (no FUTEX_PRIVATE_FLAG).

pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        );
    }
}

pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as in `futex_wait`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        );
    }
}

// ---------------------------------------------------------------------------
// Child processes.

const ROLE_FLAG: &str = "--role";

/// The role and its arguments when this process is a child.
pub fn role_args() -> Option<(String, Vec<String>)> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(ROLE_FLAG) {
        Some((args.get(2)?.clone(), args[3..].to_vec()))
    } else {
        None
    }
}

/// How to start a child.
#[derive(Clone, Default)]
pub struct SpawnOpts {
    /// Pin the child to this CPU.
    pub cpu: Option<usize>,
    /// File descriptors the child inherits (their close-on-exec is cleared).
    pub fds: Vec<i32>,
    /// Kill the child (SIGALRM) after this many seconds.
    pub limit_secs: u32,
}

/// A running child: its protocol lines arrive on a channel.
pub struct Kid {
    pub pid: i32,
    pub role: String,
    lines: mpsc::Receiver<String>,
    exit: Option<(i32, u64)>,
}

/// Starts this binary again as `role` with `args`.
pub fn spawn(role: &str, args: &[String], opts: &SpawnOpts) -> Res<Kid> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(ROLE_FLAG)
        .arg(role)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let cpu = opts.cpu;
    let fds = opts.fds.clone();
    let limit = opts.limit_secs.max(1);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe syscalls (prctl, getppid, alarm, fcntl,
    // sched_setaffinity) on memory it owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() == 1 {
                libc::_exit(99);
            }
            // A pending alarm survives execve: the watchdog of a hung child.
            libc::alarm(limit);
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(c) = cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(c, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    Ok(Kid {
        pid: child.id() as i32,
        role: role.to_owned(),
        lines: rx,
        exit: None,
    })
}

/// What a child said: a value after `READY`, `RESULT` or `SKIP`.
pub enum Said {
    Ready(String),
    Result(String),
    Skip(String),
}

impl Kid {
    /// Reaps the child if it exited; remembers (status, max RSS KiB).
    pub fn poll_exit(&mut self) -> Option<(i32, u64)> {
        if self.exit.is_none() {
            let mut status = 0;
            // SAFETY: `ru` is written by wait4 before it is read.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: our own child's pid; valid out pointers.
            let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == self.pid {
                self.exit = Some((status, ru.ru_maxrss as u64));
            }
        }
        self.exit
    }

    /// The next protocol line, watching `others` for an early death.
    pub fn next(&mut self, limit: Duration, others: &mut [&mut Kid]) -> Res<Said> {
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => {
                    if let Some(v) = line.strip_prefix("READY ") {
                        return Ok(Said::Ready(v.to_owned()));
                    }
                    if let Some(v) = line.strip_prefix("RESULT ") {
                        return Ok(Said::Result(v.to_owned()));
                    }
                    if let Some(v) = line.strip_prefix("SKIP ") {
                        return Ok(Said::Skip(v.to_owned()));
                    }
                    eprintln!("[{}] {line}", self.role);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = self.wait(Duration::from_secs(5)).map(|x| x.0);
                    return err(format!(
                        "child {} ended without answering ({})",
                        self.role,
                        describe_status(st)
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            for o in others.iter_mut() {
                if let Some((st, _)) = o.poll_exit() {
                    if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
                        return err(format!(
                            "child {} failed ({})",
                            o.role,
                            describe_status(Some(st))
                        ));
                    }
                }
            }
            if Instant::now() > deadline {
                return err(format!("child {} did not answer in {limit:?}", self.role));
            }
        }
    }

    /// Waits for the exit; (status, max RSS in KiB).
    pub fn wait(&mut self, limit: Duration) -> Option<(i32, u64)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(x) = self.poll_exit() {
                return Some(x);
            }
            if Instant::now() > deadline {
                self.kill();
                return self.poll_exit();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for a clean exit and returns the peak RSS (KiB).
    pub fn finish(&mut self, limit: Duration) -> Res<u64> {
        match self.wait(limit) {
            Some((st, rss)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(rss),
            other => err(format!(
                "child {} failed ({})",
                self.role,
                describe_status(other.map(|x| x.0))
            )),
        }
    }

    /// Sends SIGKILL and returns at once (the child is reaped later).
    pub fn sigkill(&self) {
        if self.exit.is_none() {
            // SAFETY: our own unreaped child, so the pid is not reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// The scheduler state of the child's main thread (`R`, `S`, `D`, …,
    /// from /proc), if it can be read.
    pub fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{0}/task/{0}/stat", self.pid)).ok()?;
        // "pid (comm) S …": the comm may hold spaces or parentheses.
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    pub fn kill(&mut self) {
        if self.exit.is_none() {
            // SAFETY: our own unreaped child, so the pid is not reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.poll_exit().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe_status(st: Option<i32>) -> String {
    match st {
        None => "still running".into(),
        Some(s) if libc::WIFEXITED(s) => format!("exit code {}", libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) => format!("killed by signal {}", libc::WTERMSIG(s)),
        Some(s) => format!("status {s:#x}"),
    }
}

/// The CPUs this process may run on (its affinity mask).
pub fn cpus() -> Vec<usize> {
    // SAFETY: `set` is plain data written by sched_getaffinity before it
    // is read.
    let (r, set) = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let r = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (r, set)
    };
    if r != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// CLOCK_MONOTONIC in ns: one clock for every process of the machine (an
/// `Instant` cannot cross a process boundary).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Closes a file descriptor the parent no longer needs.
pub fn close(fd: i32) {
    // SAFETY: an fd this process opened and no longer uses.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------------------
// Statistics.

/// Median, p99 and friends of one set of samples.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub median: f64,
    /// The 90th percentile (the 10th for rates).
    #[serde(default)]
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Stats of `v`; `high_is_tail` picks which end p99 describes (the slow
/// end: high for times, low for rates).
pub fn stats(v: &mut [f64], high_is_tail: bool) -> Stats {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let q = |p: f64| -> f64 {
        let i = ((n as f64 - 1.0) * p).round() as usize;
        v[i.min(n - 1)]
    };
    Stats {
        median: q(0.5),
        p90: if high_is_tail { q(0.90) } else { q(0.10) },
        p99: if high_is_tail { q(0.99) } else { q(0.01) },
        mean: v.iter().sum::<f64>() / n as f64,
        min: v[0],
        max: v[n - 1],
        n,
    }
}

/// The median cost of reading the monotonic clock, in ns.
pub fn clock_cost_ns() -> f64 {
    let mut v: Vec<f64> = (0..2001)
        .map(|_| {
            let a = Instant::now();
            let b = Instant::now();
            (b - a).as_nanos() as f64
        })
        .collect();
    stats(&mut v, true).median
}

/// Prints one protocol line and flushes.
pub fn say(kind: &str, value: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{kind} {value}");
    let _ = out.flush();
}

pub fn parse<T: std::str::FromStr>(args: &[String], i: usize) -> Res<T>
where
    T::Err: std::fmt::Display,
{
    let s = args.get(i).ok_or_else(|| format!("missing argument {i}"))?;
    s.parse::<T>()
        .map_err(|e| format!("bad argument {i} ({s:?}): {e}").into())
}
