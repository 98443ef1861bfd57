//! Test support: unique names, child processes that re-execute this test
//! binary with a role, and watchdogs so that no test can hang CI.
//!
//! A test file that starts children defines one `#[test] fn child()` that
//! calls [`dispatch`]: in the parent it returns at once; in a child started
//! by [`spawn`] it runs the named role and exits the process.
#![allow(dead_code, clippy::disallowed_types)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "SHMKIT_TEST_ROLE";
const ARGS_ENV: &str = "SHMKIT_TEST_ARGS";
const SEP: char = '\u{1f}';

/// How long any single child may run before the test kills it and fails.
pub const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// A segment name no other test, run or process will use.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "shmkit-t-{tag}-{}-{}-{t:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the named segments when dropped, pass or fail (names that are
/// already gone are fine).
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmkit::unlink(n);
        }
    }
}

/// A child process running a role; killed if dropped while running.
pub struct Proc {
    child: Option<Child>,
    role: String,
}

impl Proc {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the child to exit (killing it after [`CHILD_LIMIT`]) and
    /// returns its exit code; panics if it was killed by a signal.
    pub fn wait(mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + CHILD_LIMIT;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st
                    .code()
                    .unwrap_or_else(|| panic!("child {} died by a signal: {st:?}", self.role));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child {} ran past {CHILD_LIMIT:?}: killed", self.role);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits and asserts a zero exit code.
    pub fn join(self) {
        let role = self.role.clone();
        let code = self.wait();
        assert_eq!(code, 0, "child {role} failed with exit code {code}");
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts this test binary again as a child running `role` with `args`.
/// The child dies with its parent thread (PR_SET_PDEATHSIG), so a failed or
/// killed test leaves no process behind.
pub fn spawn(role: &str, args: &[&str]) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role)
        .env(ARGS_ENV, args.join(&SEP.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe syscalls (prctl, getppid).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() == 1 {
                // The parent died before prctl took effect.
                libc::_exit(99);
            }
            Ok(())
        })
    };
    Proc {
        child: Some(cmd.spawn().expect("spawn child")),
        role: role.into(),
    }
}

/// A role a child can play: its name and what it does with its arguments.
pub type Role<'a> = (&'a str, fn(&[String]));

/// In a child: runs the role named in the environment with its arguments,
/// then exits the process (0 on return, 101 on panic). In the parent: returns.
pub fn dispatch(roles: &[Role]) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let args: Vec<String> = std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .split(SEP)
        .map(str::to_owned)
        .collect();
    let f = roles
        .iter()
        .find(|(r, _)| *r == role)
        .unwrap_or_else(|| panic!("unknown role {role}"))
        .1;
    let code = match std::panic::catch_unwind(|| f(&args)) {
        Ok(()) => 0,
        Err(_) => 101,
    };
    std::process::exit(code);
}

/// Aborts the whole test process if the returned guard is not dropped
/// within `limit`, so a hang fails CI instead of stalling it.
pub fn watchdog(limit: Duration) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: test {name} ran past {limit:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

/// See [`watchdog`].
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
/// For waiting on another process's progress, never for hiding a race.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    cond()
}

// ---- torture support (appended for the torture and scribbler tests) -----

/// A small deterministic generator (xorshift64*), seeded per test and trial.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed`, mixed with `stream` so that trials differ.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// The seed from `var` if set (decimal or 0x-hex), else one from the clock;
/// printed either way so that a failure can be replayed.
pub fn seed_from_env(var: &str, test: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => {
            let s = s.trim();
            s.strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16))
                .unwrap_or_else(|| s.parse())
                .unwrap_or_else(|e| panic!("{var}={s}: {e}"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("{test}: seed {seed} (replay with {var}={seed})");
    seed
}

/// A count from the environment variable `var`, else `default`.
pub fn count_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{var}={s}: {e}"))
        })
        .unwrap_or(default)
}

/// `n` shared 64-bit words in a raw segment, for bookkeeping that must
/// survive a SIGKILL of the process writing it (each word is atomic; no
/// lock is involved, so the bookkeeping itself cannot wedge).
pub struct Words {
    seg: shmkit::Segment,
    n: usize,
}

impl Words {
    /// Creates `n` zeroed words under a unique name.
    pub fn create(n: usize) -> Words {
        let seg = shmkit::Segment::create_unique(n.max(1) * 8).expect("create words");
        Words { seg, n }
    }

    /// Opens words created by [`Words::create`].
    pub fn open(name: &str) -> Words {
        let seg = shmkit::Segment::open(name).expect("open words");
        let n = seg.len() / 8;
        Words { seg, n }
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The number of words.
    pub fn len(&self) -> usize {
        self.n
    }

    fn at(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(i < self.n, "word {i} of {}", self.n);
        // SAFETY: the payload is 64-aligned and holds `n` words; only these
        // tests' processes touch it, and only through atomics.
        unsafe {
            &*(self
                .seg
                .as_ptr()
                .cast::<std::sync::atomic::AtomicU64>()
                .add(i))
        }
    }

    /// Reads word `i`.
    pub fn get(&self, i: usize) -> u64 {
        self.at(i).load(Ordering::SeqCst)
    }

    /// Writes word `i`.
    pub fn set(&self, i: usize, v: u64) {
        self.at(i).store(v, Ordering::SeqCst)
    }

    /// Adds to word `i`, returning the old value.
    pub fn add(&self, i: usize, v: u64) -> u64 {
        self.at(i).fetch_add(v, Ordering::SeqCst)
    }
}

impl Proc {
    /// Waits up to `limit` for the child to exit. `Ok(code)` on an exit,
    /// `Err(what)` if it died by a signal or ran past `limit` (then it is
    /// killed and reaped).
    pub fn wait_deadline(mut self, limit: Duration) -> Result<i32, String> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st
                    .code()
                    .ok_or_else(|| format!("child {} died by a signal: {st:?}", self.role));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "child {} ran past {limit:?} (hung): killed",
                    self.role
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Whether the child has exited (it is not reaped by this).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(Some(_)))
    }
}

// ---- a queue on the heap (for the fuzz findings and the lease review) ----

use std::alloc::{alloc_zeroed, dealloc, Layout};

use shmkit::raw::{QueueLayout, RawQueue};

/// A zeroed heap region aligned to 64.
pub struct Region {
    ptr: *mut u8,
    layout: Layout,
}

impl Region {
    pub fn for_queue(capacity: usize, max_message: usize) -> (Region, QueueLayout) {
        let ql = QueueLayout {
            capacity,
            max_message,
        };
        let len = RawQueue::required_size(&ql).unwrap();
        let layout = Layout::from_size_align(len, 64).unwrap();
        // SAFETY: a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        (Region { ptr, layout }, ql)
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn init(&self, ql: &QueueLayout) -> RawQueue<'_> {
        // SAFETY: the region is 64-aligned, `len` bytes, outlives the handle
        // (borrowed), and is used only through handles and `read`/`write`.
        unsafe { RawQueue::init_in(self.ptr, self.len(), ql) }.unwrap()
    }

    pub fn attach(&self) -> RawQueue<'_> {
        // SAFETY: as in `init`.
        unsafe { RawQueue::attach(self.ptr, self.len()) }.unwrap()
    }

    pub fn words(&self) -> Vec<u64> {
        (0..self.len() / 8).map(|i| self.read(i * 8)).collect()
    }

    pub fn read(&self, at: usize) -> u64 {
        assert!(at + 8 <= self.len() && at % 8 == 0);
        // SAFETY: in bounds and aligned (asserted); a peer's plain read.
        unsafe { self.ptr.add(at).cast::<u64>().read_volatile() }
    }

    /// A store by another process, between two calls of ours.
    pub fn write(&self, at: usize, v: u64) {
        assert!(at + 8 <= self.len() && at % 8 == 0);
        // SAFETY: in bounds and aligned (asserted); no queue call runs now.
        unsafe { self.ptr.add(at).cast::<u64>().write_volatile(v) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout; the handles borrowed `self`.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// A whole shmkit object (header included) mapped a second time, as a peer
/// process that reads and writes over it would: the reviews' scribbler.
pub struct Mapped(memmap2::MmapRaw);

impl Mapped {
    /// `/dev/shm/<name>`, mapped read-write.
    pub fn open(name: &str) -> Mapped {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        Mapped(memmap2::MmapRaw::map_raw(&file).unwrap())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.0.as_mut_ptr()
    }

    /// The 64-bit word at byte `at` (8-aligned, in bounds: asserted).
    pub fn read(&self, at: usize) -> u64 {
        assert!(at + 8 <= self.len() && at % 8 == 0);
        // SAFETY: in bounds and aligned (asserted); the mapping lives as
        // long as `self`.
        unsafe { self.as_mut_ptr().add(at).cast::<u64>().read_volatile() }
    }

    /// Writes the 64-bit word at byte `at`, as another process would.
    pub fn write(&self, at: usize, v: u64) {
        assert!(at + 8 <= self.len() && at % 8 == 0);
        // SAFETY: in bounds and aligned (asserted); the word is one the
        // object's users access atomically, as another process writes it.
        unsafe { self.as_mut_ptr().add(at).cast::<u64>().write_volatile(v) }
    }

    /// Every 64-bit word of the object.
    pub fn words(&self) -> Vec<u64> {
        (0..self.len() / 8).map(|i| self.read(i * 8)).collect()
    }
}

/// The calling thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid(2) has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}
