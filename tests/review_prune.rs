//! Hostile review of marks of use, `prune` and `replace_stale`: the promise
//! is that neither ever removes or replaces a segment that a live process
//! has open or is creating, whatever the timing, and that a stale one goes.
//!
//! The races that matter sit between two syscalls of the pruner, too
//! narrow to hit by chance. So the tests that show them run the pruner (or
//! the replacer) as a child under `ptrace(2)` and stop it at the exit of
//! one syscall, do the racing peer's step, and let it go on: deterministic,
//! no sleeping. Tests marked `#[ignore = "review: ..."]` fail on main.
//!
//! The tests take turns (`serial`): the tracer reaps with `waitpid(-1)`, so
//! no other child of this process may exist while one traces; and a global
//! `prune()` would take the stale segments other tests make on purpose.

// The ptrace driver reads x86_64 registers and syscall numbers.
#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
#![allow(clippy::disallowed_types)]

mod common;

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{dispatch, spawn, unique_name, watchdog, Cleanup};
use shmkit::{Error, Options, Segment};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn child() {
    dispatch(&[
        ("create_keep_exit", create_keep_exit),
        ("prune_name", prune_name_role),
        ("replace_stale", replace_stale_role),
        ("open_expect_not_found", open_expect_not_found),
        ("create_and_check", create_and_check),
        ("fork_hold_and_exit", fork_hold_and_exit),
        ("nobody_create_read_only", nobody_create_read_only),
        ("nobody_prune", nobody_prune),
        ("create_keep_pause", create_keep_pause),
    ]);
}

/// Creates segment `args[0]` (64 bytes), keeps it and exits: stale.
fn create_keep_exit(args: &[String]) {
    Segment::create(&args[0], 64).unwrap().keep();
}

/// Prunes the name `args[0]`, whatever it finds.
fn prune_name_role(args: &[String]) {
    let _ = shmkit::prune_name(&args[0], false);
}

/// `create_with(args[0], replace_stale)`; keeps what it made. Exits 3 if
/// the create fails (the tests say whether it may: it must not when the
/// name is taken by a stale segment or by nothing, and must when a live
/// segment took the name meanwhile).
fn replace_stale_role(args: &[String]) {
    let opts = Options::new().replace_stale(true);
    match Segment::create_with(&args[0], 64, &opts) {
        Ok(seg) => seg.keep(),
        Err(e) => {
            eprintln!("replace_stale create failed: {e}");
            std::process::exit(3);
        }
    }
}

/// Opens `args[0]`, which a pruner removes while this is stopped between
/// its `shm_open` and its mark: must be `NotFound`.
fn open_expect_not_found(args: &[String]) {
    match Segment::open(&args[0]) {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Creates `args[0]` and checks that its name still names it at the end.
fn create_and_check(args: &[String]) {
    let seg = Segment::create(&args[0], 64).unwrap();
    let again = Segment::open(&args[0]).unwrap();
    // SAFETY: only this process knows the segment's bytes matter.
    unsafe { seg.as_ptr().write(0x5A) };
    // SAFETY: as above.
    let seen = unsafe { again.as_ptr().read() };
    assert_eq!(seen, 0x5A, "the name lost its segment");
}

/// Creates `args[0]`, keeps it, forks a child that holds the inherited
/// handle (and dies of SIGALRM within 60 s, or of the test's SIGKILL),
/// writes the child's pid at payload offset 0, and exits: the creator is
/// dead, the segment is used.
fn fork_hold_and_exit(args: &[String]) {
    let seg = Segment::create(&args[0], 64).unwrap();
    seg.keep();
    // SAFETY: the child makes only async-signal-safe calls (alarm, pause)
    // and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::alarm(60);
            loop {
                libc::pause();
            }
        }
    }
    assert!(pid > 0, "fork failed");
    // SAFETY: nobody else writes the payload.
    unsafe { seg.as_ptr().cast::<i32>().write_unaligned(pid) };
    std::process::exit(0);
}

/// Becomes uid `args[1]` (when root), creates `args[0]` with mode 0400,
/// keeps it and exits.
fn nobody_create_read_only(args: &[String]) {
    become_user(&args[1]);
    Segment::create_with(&args[0], 64, &Options::new().mode(0o400))
        .unwrap()
        .keep();
}

/// Becomes uid `args[1]` (when root) and prunes `args[0]`, which must go.
fn nobody_prune(args: &[String]) {
    become_user(&args[1]);
    let r = shmkit::prune_name(&args[0], false);
    assert!(
        matches!(r, Ok(Some(_))),
        "a stale read-only segment stayed: {r:?}"
    );
}

/// Creates `args[0]`, keeps it and drops the handle, writes this
/// process's pid as `/proc` shows it (the outermost pid namespace's) at
/// payload offset 0, and runs until killed (60 s at most).
fn create_keep_pause(args: &[String]) {
    let seg = Segment::create(&args[0], 64).unwrap();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let outer: i32 = stat.split(' ').next().unwrap().parse().unwrap();
    // SAFETY: nobody else writes the payload.
    unsafe { seg.as_ptr().cast::<i32>().write_unaligned(outer) };
    seg.keep();
    drop(seg);
    // SAFETY: plain syscalls.
    unsafe {
        libc::alarm(60);
        loop {
            libc::pause();
        }
    }
}

fn become_user(uid: &str) {
    let uid: u32 = uid.parse().unwrap();
    // SAFETY: plain syscalls.
    unsafe {
        if libc::getuid() != uid {
            assert_eq!(libc::setgid(uid), 0);
            assert_eq!(libc::setuid(uid), 0);
        }
    }
}

fn path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

fn exists(name: &str) -> bool {
    std::fs::symlink_metadata(path(name)).is_ok()
}

/// The inode the name `name` names now, if any.
fn ino(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path(name)).ok().map(|m| m.ino())
}

/// Makes `name` a stale segment: created by a child that exits.
fn make_stale(name: &str) {
    spawn("create_keep_exit", &[name]).join();
    let info = shmkit::inspect(name).unwrap();
    assert!(info.is_stale(), "{info:?}");
}

/// Writes a creator (pid, start time) into the header of `name`.
fn forge_creator(name: &str, pid: u32, start: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path(name))
        .unwrap();
    f.write_all_at(&pid.to_ne_bytes(), 44).unwrap();
    f.write_all_at(&start.to_ne_bytes(), 48).unwrap();
}

// ---- a minimal ptrace driver (x86_64 Linux) -------------------------------

/// A syscall the tracee just returned from.
#[derive(Debug)]
struct Exit {
    nr: i64,
    args: [u64; 6],
    ret: i64,
}

/// A child running a role under `ptrace`, every thread followed, stopped at
/// syscall entries and exits.
struct Tracee {
    pid: i32,
    /// Threads between a syscall's entry and exit stop.
    inside: HashSet<i32>,
    /// The thread left stopped by `run_until`, if any.
    held: Option<i32>,
    /// The exit status, once the process is gone.
    status: Option<i32>,
}

impl Tracee {
    /// Starts this test binary as a child running `role`, traced; it stops
    /// at its exec and is dead with this process (PTRACE_O_EXITKILL).
    fn spawn(role: &str, args: &[&str]) -> Tracee {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
            .env("SHMKIT_TEST_ROLE", role)
            .env("SHMKIT_TEST_ARGS", args.join("\u{1f}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe syscalls (ptrace, prctl).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let child = cmd
            .spawn()
            .expect("spawn a traced child (is ptrace allowed?)");
        let pid = child.id() as i32;
        // The child is reaped below with waitpid, not through `child`.
        std::mem::forget(child);
        let mut st = 0;
        // SAFETY: waitpid writes the status into `st`.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        assert_eq!(r, pid);
        assert!(libc::WIFSTOPPED(st), "no exec stop: {st:#x}");
        let opts =
            libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACECLONE;
        // SAFETY: `pid` is our stopped tracee; the options are flags.
        let r = unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts as libc::c_long) };
        assert_eq!(
            r,
            0,
            "PTRACE_SETOPTIONS: {}",
            std::io::Error::last_os_error()
        );
        let mut t = Tracee {
            pid,
            inside: HashSet::new(),
            held: None,
            status: None,
        };
        t.resume(pid, 0);
        t
    }

    fn resume(&mut self, tid: i32, sig: i32) {
        // SAFETY: `tid` is a stopped thread of our tracee (ESRCH if it died
        // meanwhile, which is fine to ignore).
        unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, sig as libc::c_long) };
    }

    /// Reads a NUL-terminated string at `addr` in the tracee.
    fn string(&self, addr: u64) -> String {
        let mem = std::fs::File::open(format!("/proc/{}/mem", self.pid)).unwrap();
        let mut buf = [0u8; 512];
        let n = mem.read_at(&mut buf, addr).unwrap_or(0);
        let end = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    /// Runs the tracee until a thread returns from a syscall for which
    /// `hit` says yes, and leaves that thread stopped there (true); false
    /// if the process exited first.
    fn run_until(&mut self, mut hit: impl FnMut(&Tracee, &Exit) -> bool) -> bool {
        if let Some(tid) = self.held.take() {
            self.resume(tid, 0);
        }
        while self.status.is_none() {
            let mut st = 0;
            // SAFETY: waitpid writes the status into `st`.
            let tid = unsafe { libc::waitpid(-1, &mut st, libc::__WALL) };
            assert!(tid > 0, "waitpid: {}", std::io::Error::last_os_error());
            if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                self.inside.remove(&tid);
                if tid == self.pid {
                    self.status = Some(st);
                }
                continue;
            }
            if !libc::WIFSTOPPED(st) {
                continue;
            }
            let sig = libc::WSTOPSIG(st);
            if sig == libc::SIGTRAP | 0x80 {
                if self.inside.insert(tid) {
                    self.resume(tid, 0);
                    continue;
                }
                self.inside.remove(&tid);
                // SAFETY: an all-zero register set is a valid value.
                let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
                // SAFETY: `tid` is stopped; GETREGS fills `regs`.
                let r = unsafe {
                    libc::ptrace(
                        libc::PTRACE_GETREGS,
                        tid,
                        0,
                        &mut regs as *mut libc::user_regs_struct,
                    )
                };
                if r == 0 {
                    let exit = Exit {
                        nr: regs.orig_rax as i64,
                        args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
                        ret: regs.rax as i64,
                    };
                    if hit(self, &exit) {
                        self.held = Some(tid);
                        return true;
                    }
                }
                self.resume(tid, 0);
            } else if sig == libc::SIGTRAP || sig == libc::SIGSTOP {
                // A ptrace event (clone) or a new thread's first stop.
                self.resume(tid, 0);
            } else {
                self.resume(tid, sig);
            }
        }
        false
    }

    /// Lets the tracee run to its end; its exit code, or a panic if a
    /// signal killed it.
    fn finish(&mut self) -> i32 {
        assert!(!self.run_until(|_, _| false));
        let st = self.status.unwrap();
        assert!(
            libc::WIFEXITED(st),
            "the traced child died by signal {}",
            libc::WTERMSIG(st)
        );
        libc::WEXITSTATUS(st)
    }

    /// Whether `e` is a successful stat-family call on `path`.
    fn stat_of(&self, e: &Exit, path: &str) -> bool {
        let at = match e.nr {
            libc::SYS_stat | libc::SYS_lstat => e.args[0],
            libc::SYS_newfstatat | libc::SYS_statx => e.args[1],
            _ => return false,
        };
        e.ret == 0 && self.string(at) == path
    }

    /// Whether `e` is an open of `path`, returning `ret`-like results as
    /// `want` says.
    fn open_of(&self, e: &Exit, path: &str) -> Option<(u64, i64)> {
        let (at, flags) = match e.nr {
            libc::SYS_open => (e.args[0], e.args[1]),
            libc::SYS_openat => (e.args[1], e.args[2]),
            _ => return None,
        };
        (self.string(at) == path).then_some((flags, e.ret))
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: kill takes a pid and a signal.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            while self.status.is_none() {
                let mut st = 0;
                // SAFETY: as in `run_until`.
                let tid = unsafe { libc::waitpid(-1, &mut st, libc::__WALL) };
                if tid <= 0 {
                    break;
                }
                if tid == self.pid && (libc::WIFEXITED(st) || libc::WIFSIGNALED(st)) {
                    self.status = Some(st);
                }
            }
        }
    }
}

// ---- defects ---------------------------------------------------------------

/// A pruner checks, under its `LOCK_EX`, that the name still names the
/// stale object it holds (`shm_stat`), then unlinks *by name*. A peer that
/// unlinks the stale name by hand (`shmkit::unlink`, `shmkit rm`, the
/// "unlink, then create" start of a server without `replace_stale`) and
/// creates a fresh segment under it between those two syscalls has its
/// live, just-made segment unlinked by the pruner. Here the pruner stops
/// right after its `stat` and the peer is this test.
#[test]
fn prune_never_unlinks_a_live_segment_made_after_its_name_check() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("toctou");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let p = path(&name);
    let mut pruner = Tracee::spawn("prune_name", &[&name]);
    assert!(
        pruner.run_until(|t, e| t.stat_of(e, &p)),
        "the pruner never checked the name"
    );
    // The pruner holds LOCK_EX on the stale object and has seen the name
    // name it. The peer removes the stale name and makes its own segment.
    shmkit::unlink(&name).unwrap();
    let live = Segment::create(&name, 64).unwrap();
    let mine = ino(&name).unwrap();
    assert_eq!(pruner.finish(), 0);
    assert_eq!(
        ino(&name),
        Some(mine),
        "the pruner unlinked a segment whose creator lives and holds it"
    );
    drop(live);
}

/// The same window in `replace_stale`: the replacer checks the name under
/// its lock, a peer unlinks the stale name by hand and creates its own
/// segment, and the replacer then unlinks the peer's live segment and puts
/// its own under the name. Here the replacer stops right after its `stat`.
#[test]
fn replace_stale_never_replaces_a_live_segment_made_after_its_name_check() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("toctourepl");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let p = path(&name);
    let mut replacer = Tracee::spawn("replace_stale", &[&name]);
    assert!(
        replacer.run_until(|t, e| t.stat_of(e, &p)),
        "the replacer never checked the name"
    );
    shmkit::unlink(&name).unwrap();
    let live = Segment::create(&name, 64).unwrap();
    let mine = ino(&name).unwrap();
    let code = replacer.finish();
    assert_eq!(
        ino(&name),
        Some(mine),
        "a replacer (exit code {code}) replaced a segment whose creator lives and holds it"
    );
    assert_eq!(
        code, 3,
        "the replacer's create must fail: a live segment has the name"
    );
    drop(live);
}

/// `create` with `replace_stale` finds the name taken (EEXIST), then asks
/// `remove_if_stale` to remove it; if a pruner removed the stale segment
/// in between, `remove_if_stale` finds nothing and `create` fails with
/// `AlreadyExists { dead_creator: None }` for a name that is free. A server
/// restarted at the moment a `shmkit prune` cron job runs fails to start.
/// Here the replacer stops right after its failed `O_CREAT|O_EXCL`.
#[test]
fn replace_stale_creates_when_a_pruner_removed_the_stale_segment_first() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("replrace");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let p = path(&name);
    let mut replacer = Tracee::spawn("replace_stale", &[&name]);
    assert!(
        replacer.run_until(|t, e| {
            t.open_of(e, &p).is_some_and(|(flags, ret)| {
                flags & libc::O_CREAT as u64 != 0 && ret == -i64::from(libc::EEXIST)
            })
        }),
        "the replacer never tried to create"
    );
    let removed = shmkit::prune_name(&name, false).unwrap();
    assert!(removed.is_some(), "the segment was not stale");
    assert_eq!(
        replacer.finish(),
        0,
        "create(replace_stale) failed although the name was free"
    );
    assert!(exists(&name));
}

/// `prune` (and `inspect`, `list`) map the first bytes of *every* object in
/// `/dev/shm` of this user that is long enough, shmkit's or not, and read
/// them. If the object's owner shrinks it between the `fstat` and the read
/// (any program may resize its own shared memory), the pruner dies of
/// SIGBUS: one program resizing its buffer kills `shmkit prune`. Here the
/// pruner stops right after it read the length of a foreign file, which
/// its owner (this test) then truncates. (Fixed: the pruner reads the
/// header with `pread`, and a short read means "not shmkit's".)
#[test]
fn a_foreign_object_shrunk_under_a_pruner_does_not_kill_it() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("shrink");
    let _c = Cleanup(vec![name.clone()]);
    let p = path(&name);
    std::fs::write(&p, vec![7u8; 8192]).unwrap();
    let mut pruner = Tracee::spawn("prune_name", &[&name]);
    let mut fd = None;
    assert!(
        pruner.run_until(|t, e| {
            if let Some((_, ret)) = t.open_of(e, &p) {
                if ret >= 0 {
                    fd = Some(ret as u64);
                }
                return false;
            }
            // Right after it learnt the length (then it maps the header,
            // or reads it): any stat call on the descriptor.
            let stat = [libc::SYS_fstat, libc::SYS_newfstatat, libc::SYS_statx];
            stat.contains(&e.nr) && e.ret == 0 && fd == Some(e.args[0])
        }),
        "the pruner never looked at the file's length"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(pruner.finish(), 0);
    assert!(exists(&name), "a foreign file was removed");
}

// ---- what holds ------------------------------------------------------------

/// Two pruners and a replacer at the same stale segment, the second one
/// stopped while the first removes it: the late one finds the name gone or
/// naming another object, and never removes the replacer's new segment.
/// Here pruner A stops right after its `stat` check (holding `LOCK_EX`);
/// B (this test) cannot take the lock and leaves the segment; A removes it.
#[test]
fn a_second_pruner_leaves_what_the_first_holds() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("twoprune");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let p = path(&name);
    let mut a = Tracee::spawn("prune_name", &[&name]);
    assert!(a.run_until(|t, e| t.stat_of(e, &p)));
    // A holds LOCK_EX: B must not judge (it cannot tell), nor remove.
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert_eq!(shmkit::inspect(&name).unwrap().in_use, None);
    assert!(!shmkit::inspect(&name).unwrap().is_stale());
    // A replacer in the meantime must not replace it either.
    assert!(matches!(
        Segment::create_with(&name, 64, &Options::new().replace_stale(true)),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(a.finish(), 0);
    assert!(!exists(&name), "A removed the stale segment");
}

/// An opener that has called `shm_open` but not yet taken its mark, while
/// a pruner removes the segment, finds the name gone (`NotFound`), never a
/// removed segment. The opener is stopped right after its `openat`.
#[test]
fn an_opener_stopped_before_its_mark_gets_not_found_after_a_prune() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("openstop");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let p = path(&name);
    let mut opener = Tracee::spawn("open_expect_not_found", &[&name]);
    assert!(opener.run_until(|t, e| t.open_of(e, &p).is_some_and(|(_, ret)| ret >= 0)));
    assert!(shmkit::prune_name(&name, false).unwrap().is_some());
    assert_eq!(opener.finish(), 0);
}

/// A live process holding `LOCK_EX` on a stale-looking segment for as long
/// as it likes (a foreign program, or a pruner stopped by ^Z) blocks
/// neither `prune_name` nor `inspect`: they give up ("cannot tell"), and
/// "cannot tell" is never stale.
#[test]
fn a_lock_held_forever_makes_prune_give_up_not_hang() {
    let _w = watchdog(Duration::from_secs(60));
    let _s = serial();
    let name = unique_name("exforever");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let f = std::fs::File::open(path(&name)).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open descriptor.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    let info = shmkit::inspect(&name).unwrap();
    assert_eq!(info.in_use, None);
    assert!(!info.is_stale());
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert!(!shmkit::prune_dry_run()
        .unwrap()
        .iter()
        .any(|s| s.name == name));
    assert!(exists(&name));
    drop(f);
    assert!(shmkit::prune_name(&name, false).unwrap().is_some());
}

/// Scribbled creators: pid 0 (looks mid-create) and a live process's pid
/// with an unknown start time are never judged dead, so never removed
/// even with no user; a live pid with a wrong start time is dead (a reused
/// pid), and then the segment goes only if nobody holds it.
#[test]
fn scribbled_creators_never_make_a_used_or_live_segment_stale() {
    let _w = watchdog(Duration::from_secs(60));
    let _s = serial();
    let name = unique_name("scribble");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let me = std::process::id();
    for (pid, start) in [(0, 0), (me, 0), (1, 0)] {
        forge_creator(&name, pid, start);
        assert_eq!(
            shmkit::prune_name(&name, false).unwrap(),
            None,
            "{pid}/{start}"
        );
        assert!(exists(&name));
    }
    // This process's pid with a start time it never had: dead, but held.
    forge_creator(&name, me, 1);
    let held = Segment::open(&name).unwrap();
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert!(matches!(
        Segment::create_with(&name, 64, &Options::new().replace_stale(true)),
        Err(Error::AlreadyExists {
            dead_creator: None,
            ..
        })
    ));
    drop(held);
    assert!(shmkit::prune_name(&name, false).unwrap().is_some());
}

/// Names at the limit (200 bytes) are pruned like any other; longer names
/// and names with characters outside the set are never touched; nor is a
/// symbolic link in `/dev/shm` that points at a stale segment (the link
/// is not a segment, and the target is pruned under its own name only).
#[test]
fn names_at_the_limit_and_links_are_handled() {
    let _w = watchdog(Duration::from_secs(60));
    let _s = serial();
    let base = unique_name("lim");
    let long = format!("{base}{}", "x".repeat(200 - base.len()));
    assert_eq!(long.len(), 200);
    let longer = format!("{long}y");
    let odd = format!("{base}+odd");
    let link = format!("{base}-link");
    let target = unique_name("lim-target");
    let _c = Cleanup(vec![
        long.clone(),
        longer.clone(),
        odd.clone(),
        link.clone(),
        target.clone(),
    ]);
    make_stale(&long);
    make_stale(&target);
    // Copies of a stale segment under names shmkit cannot have.
    for n in [&longer, &odd] {
        std::fs::copy(path(&target), path(n)).unwrap();
    }
    std::os::unix::fs::symlink(path(&target), path(&link)).unwrap();
    let dry = shmkit::prune_dry_run().unwrap();
    assert!(dry.iter().any(|s| s.name == long));
    assert!(!dry
        .iter()
        .any(|s| s.name == longer || s.name == odd || s.name == link));
    assert!(!matches!(shmkit::prune_name(&link, false), Ok(Some(_))));
    assert!(exists(&link) && exists(&target));
    assert!(shmkit::prune_name(&long, false).unwrap().is_some());
    assert!(!exists(&long));
    assert!(exists(&longer) && exists(&odd));
    let _ = std::fs::remove_file(path(&longer));
    let _ = std::fs::remove_file(path(&odd));
    let _ = std::fs::remove_file(path(&link));
}

/// A creator stopped between its `O_CREAT|O_EXCL` and its mark (the object
/// still has no length), and again right after its mark (no creator in the
/// header yet), is neither pruned nor replaced, and ends up with its
/// segment under its name.
#[test]
fn a_creator_stopped_before_and_after_its_mark_is_left_alone() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("midcreate");
    let _c = Cleanup(vec![name.clone()]);
    let p = path(&name);
    let mut creator = Tracee::spawn("create_and_check", &[&name]);
    assert!(creator.run_until(|t, e| {
        t.open_of(e, &p)
            .is_some_and(|(flags, ret)| flags & libc::O_CREAT as u64 != 0 && ret >= 0)
    }));
    let replace = Options::new().replace_stale(true);
    for _ in 0..2 {
        assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
        assert!(shmkit::prune_dry_run()
            .unwrap()
            .iter()
            .all(|s| s.name != name));
        assert!(matches!(
            Segment::create_with(&name, 64, &replace),
            Err(Error::AlreadyExists {
                dead_creator: None,
                ..
            })
        ));
        assert!(exists(&name));
        if !creator.run_until(|_, e| e.nr == libc::SYS_flock && e.ret == 0) {
            break;
        }
    }
    assert_eq!(creator.finish(), 0);
}

/// A zombie creator (exited, not yet reaped) is dead: its unused segment
/// is stale and goes.
#[test]
fn a_zombie_creators_unused_segment_is_stale() {
    let _w = watchdog(Duration::from_secs(60));
    let _s = serial();
    let name = unique_name("zombie");
    let _c = Cleanup(vec![name.clone()]);
    let child = spawn("create_keep_exit", &[&name]);
    // SAFETY: an all-zero siginfo is a valid value; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our child to exit, leaving it a zombie (WNOWAIT).
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            child.pid(),
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(r, 0);
    let seen = shmkit::inspect(&name).unwrap();
    assert!(!seen.creator_alive && seen.is_stale(), "{seen:?}");
    assert!(shmkit::prune_name(&name, false).unwrap().is_some());
    child.join();
}

/// The creator exits while a child it forked holds the inherited handle:
/// the segment is used, so neither pruned nor replaced, until the child
/// is gone too.
#[test]
fn a_forked_child_keeps_its_dead_parents_segment() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("orphan");
    let _c = Cleanup(vec![name.clone()]);
    spawn("fork_hold_and_exit", &[&name]).join();
    let bytes = std::fs::read(path(&name)).unwrap();
    let holder = i32::from_ne_bytes(bytes[64..68].try_into().unwrap());
    assert!(holder > 0);
    let info = shmkit::inspect(&name).unwrap();
    assert!(!info.creator_alive);
    assert_eq!(info.in_use, Some(true));
    assert!(!info.is_stale());
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert!(matches!(
        Segment::create_with(&name, 64, &Options::new().replace_stale(true)),
        Err(Error::AlreadyExists {
            dead_creator: None,
            ..
        })
    ));
    // SAFETY: kill takes a pid and a signal; `holder` is the forked child.
    assert_eq!(unsafe { libc::kill(holder, libc::SIGKILL) }, 0);
    assert!(common::wait_for(Duration::from_secs(30), || {
        shmkit::inspect(&name).unwrap().in_use == Some(false)
    }));
    assert!(shmkit::prune_name(&name, false).unwrap().is_some());
}

/// Another user's segment, stale by every other measure, is never touched
/// (needs root to make one; otherwise only the check itself runs).
#[test]
fn another_users_stale_segment_is_left_alone() {
    let _w = watchdog(Duration::from_secs(60));
    let _s = serial();
    let name = unique_name("otheruser");
    let _c = Cleanup(vec![name.clone()]);
    make_stale(&name);
    let c = CString::new(path(&name)).unwrap();
    // SAFETY: `c` is a NUL-terminated path.
    if unsafe { libc::chown(c.as_ptr(), 65534, 65534) } != 0 {
        eprintln!("not root: cannot give the segment to another user");
        return;
    }
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert!(shmkit::prune_dry_run()
        .unwrap()
        .iter()
        .all(|s| s.name != name));
    assert!(exists(&name));
}

/// A stale segment whose mode has no owner-write bit (`mode(0o400)`) can
/// never be pruned: the pruner opens it read-write, which fails (EACCES),
/// though it only reads the header and takes a lock. Made and pruned as
/// uid 65534 when run as root (root would pass the permission check).
#[test]
fn a_stale_read_only_segment_is_pruned() {
    let _w = watchdog(Duration::from_secs(60));
    let _s = serial();
    let name = unique_name("rdonly");
    let _c = Cleanup(vec![name.clone()]);
    // SAFETY: getuid cannot fail.
    let uid = if unsafe { libc::getuid() } == 0 {
        65534
    } else {
        // SAFETY: as above.
        unsafe { libc::getuid() }
    }
    .to_string();
    spawn("nobody_create_read_only", &[&name, &uid]).join();
    assert!(exists(&name));
    spawn("nobody_prune", &[&name, &uid]).join();
    assert!(!exists(&name));
}

/// A creator in another pid namespace (a container sharing `/dev/shm`, as
/// with `--ipc=host` or a pod's shared memory volume) records its pid in
/// *its* namespace, and its start time read from a `/proc` that shows
/// another namespace. A pruner outside asks `/proc` about that pid: here no
/// such task, so "dead", and the kept segment of a creator that runs is
/// removed. Needs root (or CAP_SYS_ADMIN) and unshare(1).
#[test]
fn a_creator_in_another_pid_namespace_is_not_judged_dead() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("pidns");
    let _c = Cleanup(vec![name.clone()]);
    // An inner pid that names no task out here.
    let inner = (40_000..400_000)
        .step_by(997)
        .find(|n| !std::path::Path::new(&format!("/proc/{n}")).exists())
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "echo {} > /proc/sys/kernel/ns_last_pid && \"$0\" --exact child --nocapture \
         --test-threads=1 -q; :",
        inner - 1
    );
    let mut ns = Command::new("unshare")
        .args(["--pid", "--fork", "sh", "-c", &script])
        .arg(&exe)
        .env("SHMKIT_TEST_ROLE", "create_keep_pause")
        .env("SHMKIT_TEST_ARGS", &name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("unshare(1)");
    let ready = common::wait_for(Duration::from_secs(30), || {
        std::fs::read(path(&name)).is_ok_and(|b| b.len() >= 68 && b[64..68] != [0; 4])
            && shmkit::inspect(&name).is_ok()
    });
    if !ready {
        let _ = ns.kill();
        let _ = ns.wait();
        panic!("the creator in a new pid namespace did not start (unshare needs root)");
    }
    let bytes = std::fs::read(path(&name)).unwrap();
    let outer = i32::from_ne_bytes(bytes[64..68].try_into().unwrap());
    let info = shmkit::inspect(&name).unwrap();
    let removed = shmkit::prune_name(&name, false).unwrap();
    // SAFETY: kill takes a pid and a signal; `outer` is the creator.
    unsafe { libc::kill(outer, libc::SIGKILL) };
    let _ = ns.wait();
    assert_eq!(info.creator_pid, inner as u32, "{info:?}");
    assert!(
        removed.is_none(),
        "pruned while its creator (pid {outer} here, {inner} in its namespace) runs: {info:?}"
    );
}
