//! Regression tests for issue 14, defect 1: liveness answers "dead" only for
//! a task that is gone. A process that cannot read `/proc` (out of file
//! descriptors) must take every task it asks about for alive; a process whose
//! main thread exited while another thread runs is alive; a thread's stamp
//! computed while `/proc` was unreadable is not kept for the thread's life.
//!
//! Every test runs its parties as real processes (see `common`), under a
//! watchdog.

mod common;

use std::time::Duration;

use common::{dispatch, spawn, watchdog, Cleanup};
use shmkit::{Error, Event, Lock, Queue, Segment};

#[test]
fn child() {
    dispatch(&[
        ("hold_until_released", hold_until_released),
        ("waiter_out_of_fds", waiter_out_of_fds),
        ("reserve_and_hold", reserve_and_hold),
        ("consumer_out_of_fds", consumer_out_of_fds),
        ("leader_exits_thread_runs", leader_exits_thread_runs),
        ("stamp_while_out_of_fds", stamp_while_out_of_fds),
    ]);
}

const WATCHDOG: Duration = Duration::from_secs(60);
/// How long a parent waits for a child to reach a point before failing.
const REACH: Duration = Duration::from_secs(30);
/// Many liveness intervals (20 ms): a waiter looks at the holder again and
/// again in this time, and must find it alive every time.
const LOOK: Duration = Duration::from_millis(250);

/// Exit code of a child that got what a live task held.
const ROBBED: i32 = 3;

// ---------------------------------------------------------------- helpers

/// Descriptors opened to exhaust the table; closed (and the limit restored)
/// on drop.
struct Exhausted {
    fds: Vec<i32>,
    old: libc::rlimit,
}

/// Lowers RLIMIT_NOFILE and opens `/dev/null` until `open` fails with
/// EMFILE, then checks that `/proc/self/stat` cannot be opened either.
fn exhaust_fds() -> Exhausted {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let low = libc::rlimit {
        rlim_cur: 64.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: `low` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let mut fds = Vec::with_capacity(64);
    loop {
        // SAFETY: a NUL-terminated path and plain flags.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "open: {e}");
            break;
        }
        fds.push(fd);
    }
    let e = std::fs::read("/proc/self/stat").expect_err("/proc must be unreadable now");
    assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
    Exhausted { fds, old }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        for &fd in &self.fds {
            // SAFETY: `fd` was opened by `exhaust_fds` and is closed once.
            unsafe { libc::close(fd) };
        }
        // SAFETY: `old` is the limit read before.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.old) };
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// The state letter of `/proc/<pid>/stat`.
fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

// ---------------------------------------------------------------- roles

/// args: lock, held event, release event.
fn hold_until_released(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let release = Event::open(&args[2]).unwrap();
    let g = lock.lock().unwrap();
    held.set();
    release.wait().unwrap();
    drop(g);
}

/// args: lock. Out of descriptors, waits for the lock a live process holds:
/// must time out. Exits with [`ROBBED`] if it got the lock.
fn waiter_out_of_fds(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let _ex = exhaust_fds();
    match lock.lock_timeout(LOOK) {
        Err(Error::Timeout { .. }) => {}
        Ok(g) => {
            eprintln!("took a live holder's lock (owner_died {})", g.owner_died());
            std::process::exit(ROBBED);
        }
        Err(e) => panic!("lock_timeout: {e}"),
    };
}

/// args: queue, reserved event, commit event. Reserves a slot, holds it
/// (alive) until told, then commits "msg".
fn reserve_and_hold(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let reserved = Event::open(&args[1]).unwrap();
    let commit = Event::open(&args[2]).unwrap();
    let mut g = q.reserve(3).unwrap();
    g.copy_from_slice(b"msg");
    reserved.set();
    commit.wait().unwrap();
    g.commit().unwrap();
}

/// args: queue, timed-out event. Out of descriptors, waits for a message
/// while a live producer holds its slot (must time out, not skip it); then,
/// once the producer commits, must get the message.
fn consumer_out_of_fds(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let timed_out = Event::open(&args[1]).unwrap();
    let _ex = exhaust_fds();
    match q.get_timeout(LOOK) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("get_timeout with a slot claimed by a live producer: {other:?}"),
    }
    timed_out.set();
    match q.get_timeout(REACH) {
        Ok(m) => assert_eq!(m, b"msg"),
        Err(e) => {
            eprintln!("the live producer's message was lost: {e}");
            std::process::exit(ROBBED);
        }
    }
}

/// Runs on the main thread (sent there with tgkill): ends that thread alone.
extern "C" fn exit_this_thread(_: libc::c_int) {
    // SAFETY: SYS_exit ends only the calling thread and is async-signal-safe.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
}

/// args: segment, ready event, stop event. Creates (and keeps) the segment,
/// then makes the main thread exit alone (a signal handler on it calls
/// SYS_exit), so that the process's leader is a zombie while this thread
/// runs on until `stop`.
fn leader_exits_thread_runs(args: &[String]) {
    let me = std::process::id();
    assert_ne!(gettid(), me, "libtest runs the role on a thread of its own");
    let seg = Segment::create(&args[0], 64).unwrap();
    seg.keep();
    let ready = Event::open(&args[1]).unwrap();
    let stop = Event::open(&args[2]).unwrap();
    // SAFETY: an all-zero sigaction is valid; the handler only makes a
    // raw syscall; tgkill targets this process's main thread.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = exit_this_thread as *const () as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        assert_eq!(
            libc::syscall(
                libc::SYS_tgkill,
                me as libc::c_int,
                me as libc::c_int,
                libc::SIGUSR1
            ),
            0
        );
    }
    // Wait until the leader is a zombie, then say so.
    while proc_state(me) != Some('Z') {
        std::thread::sleep(Duration::from_millis(1));
    }
    ready.set();
    stop.wait().unwrap();
    std::process::exit(0);
}

/// args: lock, held event, release event. A new thread first takes and
/// releases the lock while `/proc` is unreadable (so its stamp cannot be
/// read), then, with descriptors back, holds the lock until told.
fn stamp_while_out_of_fds(args: &[String]) {
    let lock = Lock::open(&args[0]).unwrap();
    let held = Event::open(&args[1]).unwrap();
    let release = Event::open(&args[2]).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            {
                let _ex = exhaust_fds();
                drop(lock.lock().unwrap());
            }
            std::fs::read("/proc/self/stat").expect("descriptors are back");
            let g = lock.lock().unwrap();
            held.set();
            release.wait().unwrap();
            drop(g);
        });
    });
}

// ---------------------------------------------------------------- tests

/// Before the fix: the waiter's failed read of `/proc/<holder>/stat` (EMFILE)
/// said "dead", and it took the lock: two guards at once.
#[test]
fn a_waiter_out_of_fds_never_takes_a_live_holders_lock() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let release = Event::create_unique().unwrap();
    let holder = spawn(
        "hold_until_released",
        &[lock.name(), held.name(), release.name()],
    );
    assert!(held.wait_timeout(REACH).unwrap(), "holder never took it");
    let code = spawn("waiter_out_of_fds", &[lock.name()]).wait();
    release.set();
    holder.join();
    assert_eq!(
        code, 0,
        "the waiter out of fds failed (3: took the live holder's lock)"
    );
    let g = lock.try_lock().unwrap().expect("free again");
    assert!(!g.owner_died(), "nobody died");
}

/// Before the fix: the consumer out of fds took the live producer for dead
/// and skipped its slot; the producer's commit then went nowhere, the
/// message was never delivered, and the queue said Full/Corrupted after.
#[test]
fn a_consumer_out_of_fds_never_skips_a_live_producers_slot() {
    let _w = watchdog(WATCHDOG);
    let q = Queue::create_unique(2, 8).unwrap();
    let reserved = Event::create_unique().unwrap();
    let commit = Event::create_unique().unwrap();
    let timed_out = Event::create_unique().unwrap();
    let producer = spawn(
        "reserve_and_hold",
        &[q.name(), reserved.name(), commit.name()],
    );
    assert!(
        reserved.wait_timeout(REACH).unwrap(),
        "producer never reserved"
    );
    let consumer = spawn("consumer_out_of_fds", &[q.name(), timed_out.name()]);
    assert!(
        timed_out.wait_timeout(REACH).unwrap(),
        "the consumer never timed out"
    );
    commit.set();
    producer.join();
    let code = consumer.wait();
    assert_eq!(
        code, 0,
        "consumer failed (3: the live producer's message was lost)"
    );
    // The queue works on: empty, with room.
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    q.try_put(b"x").unwrap();
    assert_eq!(q.try_get().unwrap(), b"x");
}

/// Before the fix: a process whose main thread had exited (state Z) was
/// dead, although its other thread ran on.
#[test]
fn a_process_whose_main_thread_exited_is_alive_while_a_thread_runs() {
    let _w = watchdog(WATCHDOG);
    let name = common::unique_name("zleader");
    let _c = Cleanup(vec![name.clone()]);
    let ready = Event::create_unique().unwrap();
    let stop = Event::create_unique().unwrap();
    let kid = spawn(
        "leader_exits_thread_runs",
        &[&name, ready.name(), stop.name()],
    );
    let pid = kid.pid();
    assert!(ready.wait_timeout(REACH).unwrap(), "child never got ready");
    assert_eq!(proc_state(pid), Some('Z'), "the leader is a zombie");
    let seg = Segment::open(&name).unwrap();
    assert_eq!(seg.creator_pid(), pid);
    assert!(seg.creator_alive(), "a thread of the creator still runs");
    assert!(shmkit::inspect(&name).unwrap().creator_alive);
    stop.set();
    kid.join();
    assert!(!seg.creator_alive(), "the creator exited and was reaped");
}

/// Before the fix: the stamp computed while `/proc` was unreadable (start 0)
/// was cached for the thread's life, and a waiter that could read `/proc`
/// saw a start time that did not match: "dead", two guards at once.
#[test]
fn a_stamp_that_could_not_be_read_is_not_kept() {
    let _w = watchdog(WATCHDOG);
    let lock = Lock::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let release = Event::create_unique().unwrap();
    let kid = spawn(
        "stamp_while_out_of_fds",
        &[lock.name(), held.name(), release.name()],
    );
    assert!(held.wait_timeout(REACH).unwrap(), "child never took it");
    let robbed = match lock.lock_timeout(LOOK) {
        Err(Error::Timeout { .. }) => false,
        Ok(g) => {
            drop(g);
            true
        }
        Err(e) => panic!("lock_timeout: {e}"),
    };
    release.set();
    let code = kid.wait();
    assert!(!robbed, "took the lock of a live holder");
    assert_eq!(code, 0, "the holder failed");
}
