//! A `WaitSet` over a `Queue`, both ends of a `Pipe`, an `Event` and a
//! `Lock`, each in a named segment that the fuzzer also maps itself and
//! scribbles (as a hostile peer would: futex words, lock states, counters,
//! anything), between waits and `try_` operations.
//!
//! Each input creates fresh objects (`/dev/shm/shmkit-fuzz-<pid>-w<n>*`,
//! removed at the end), then runs its operations: a wait builds a set of a
//! fuzzer-chosen subset of the interests (queue readable and writable, each
//! pipe end's readable and writable, event set, lock free) and calls
//! `wait_timeout` (at most 1 ms, and `TIMEOUT_BUDGET_US` in all), `poll`
//! or the free `wait`; the other operations are the objects' `try_` calls
//! and scribbles.
//!
//! What is checked, for any bytes: no panic, no out-of-bounds access
//! (ASan), no hang: every call returns `Ok` or `Err` within its timeout
//! plus `SLACK` (1 s: a generous bound for a loaded machine; libFuzzer's
//! `-timeout` catches the rest), a `Timeout` never comes before its
//! timeout, the keys a wait reports are keys of the set, and an empty set
//! is an error. While nothing has been scribbled, readiness is also checked
//! against what this process did: an event it set is reported set, a queue
//! it put a message into is readable, a message sent into a pipe makes the
//! other end readable.
#![no_main]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::Direction;
use shmkit::{Error, Event, Interest, Lock, LockGuard, Options, Pipe, PipeEnd, Queue, WaitSet};

/// Operations per input.
const MAX_OPS: usize = 48;
/// Microseconds of timeouts per input, in all.
const TIMEOUT_BUDGET_US: u64 = 1_500;
/// How much later than its timeout a call may return. Generous: on a
/// loaded machine (two cores shared by several fuzzers and builds) a
/// 0.4 ms wait was once seen to return after 233 ms, not reproducibly
/// (the same input then ran in 7 ms). A wait that sleeps through its
/// deadline for ever is caught here or by libFuzzer's `-timeout`.
const SLACK: Duration = Duration::from_secs(1);
const HEADER_LEN: usize = 64;

// ---- the objects' bytes --------------------------------------------------

/// A second, writable mapping of a segment's file: the hostile peer's view.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(name: &str) -> Map {
        let path = std::ffi::CString::new(format!("/dev/shm/{name}")).expect("no NUL");
        // SAFETY: a valid C string; the descriptor is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open {name}: {}", std::io::Error::last_os_error());
        // SAFETY: an all-zero stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open; st is writable.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0, "fstat {name}");
        let len = st.st_size as usize;
        // SAFETY: a fresh shared mapping of the whole file; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        // SAFETY: fd is ours; the mapping keeps the file.
        unsafe { libc::close(fd) };
        assert!(ptr != libc::MAP_FAILED, "mmap {name}");
        Map {
            ptr: ptr.cast(),
            len,
        }
    }

    fn read(&self, at: usize, width: usize) -> u64 {
        let mut b = [0u8; 8];
        for (i, x) in b.iter_mut().enumerate().take(width) {
            // SAFETY: `at + width <= len` (callers clamp); volatile, as
            // another process's load.
            *x = unsafe { self.ptr.add(at + i).read_volatile() };
        }
        u64::from_le_bytes(b)
    }

    /// Writes the low `width` bytes of `v` at `at`; whether anything changed.
    fn write(&self, at: usize, width: usize, v: u64) -> bool {
        let old = self.read(at, width);
        for (i, x) in v.to_le_bytes().iter().enumerate().take(width) {
            // SAFETY: in bounds (callers clamp). The handles touch these
            // bytes only through atomics, and no handle call runs now: this
            // is another process's store between two of our calls.
            unsafe { self.ptr.add(at + i).write_volatile(*x) };
        }
        old != self.read(at, width)
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; nothing borrows it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ---- the input -----------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Obj {
    Queue,
    Pipe,
    Event,
    Lock,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Where {
    /// An 8-aligned word of the payload, `% 128`.
    Word(u8),
    /// A 4-aligned word of the payload (futex words are 32-bit), `% 256`.
    Half(u8),
    /// Any byte of the file, header included.
    Byte(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Val {
    Set(u64),
    Add(i16),
    Xor(u8),
    /// All ones (`u32::MAX`, `u64::MAX`): a common hostile value.
    Ones,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Scribble {
    obj: Obj,
    at: Where,
    val: Val,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum How {
    Timeout(u16),
    Poll,
    /// The free function `shmkit::wait`.
    Free(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// Wait on the interests whose bits are set in `mask` (`msg`: the
    /// length a pipe's writable interest asks room for).
    Wait {
        mask: u16,
        msg: u16,
        how: How,
    },
    QueuePut(u8),
    QueueGet,
    Send {
        end: bool,
        len: u8,
    },
    Recv {
        end: bool,
    },
    Set,
    Clear,
    TryLock,
    Unlock,
    /// Drop a pipe end (the other one then sees its peer gone).
    ClosePipe {
        end: bool,
    },
    IsReady(u8),
    Scribble(Scribble),
}

#[derive(Arbitrary, Debug)]
struct Input {
    queue_capacity: u8,
    queue_max: u8,
    pipe_capacity: u8,
    pipe_direction: u8,
    ops: Vec<Op>,
}

// ---- the run -----------------------------------------------------------------

fn fresh_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmkit-fuzz-{}-w{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Objects {
    queue: Queue,
    ends: [Option<PipeEnd>; 2],
    event: Event,
    lock: Lock,
}

fn create(input: &Input) -> (Objects, [Map; 4]) {
    let base = fresh_name();
    let opts = Options::new().init_timeout(Duration::from_millis(100));
    let queue = Queue::create(
        &format!("{base}q"),
        1 + usize::from(input.queue_capacity % 8),
        usize::from(input.queue_max % 64),
    )
    .expect("Queue::create");
    let dir = match input.pipe_direction % 4 {
        1 => Direction::CreatorSends,
        2 => Direction::OpenerSends,
        _ => Direction::Duplex,
    };
    let e0 = Pipe::builder()
        .capacity(64 << (input.pipe_capacity % 3))
        .max_message(100)
        .direction(dir)
        .create(&format!("{base}p"))
        .expect("Pipe::create");
    let e1 = Pipe::open_with(&format!("{base}p"), &opts).expect("Pipe::open");
    let event = Event::create(&format!("{base}e")).expect("Event::create");
    let lock = Lock::create(&format!("{base}l")).expect("Lock::create");
    let maps = [
        Map::new(queue.name()),
        Map::new(e0.name()),
        Map::new(event.name()),
        Map::new(lock.name()),
    ];
    let objs = Objects {
        queue,
        ends: [Some(e0), Some(e1)],
        event,
        lock,
    };
    (objs, maps)
}

struct Run<'o> {
    maps: &'o [Map; 4],
    clean: bool,
    budget_us: u64,
}

impl Run<'_> {
    fn scribble(&mut self, s: Scribble) {
        let m = &self.maps[s.obj as usize];
        let (at, w) = match s.at {
            Where::Word(i) => (HEADER_LEN + 8 * usize::from(i % 128), 8),
            Where::Half(i) => (HEADER_LEN + 4 * usize::from(i), 4),
            Where::Byte(i) => (usize::from(i) % m.len, 1),
        };
        if at + w > m.len {
            return;
        }
        let old = m.read(at, w);
        let v = match s.val {
            Val::Set(v) => v,
            Val::Add(d) => old.wrapping_add(d as i64 as u64),
            Val::Xor(b) => old ^ (1 << (u32::from(b) % (8 * w as u32))),
            Val::Ones => u64::MAX,
        };
        if m.write(at, w, v) {
            self.clean = false;
        }
    }

    fn timeout(&mut self, us: u16) -> Duration {
        let t = u64::from(us % 1001).min(self.budget_us);
        self.budget_us -= t;
        Duration::from_micros(t)
    }
}

/// Checks a call's duration against its timeout.
fn timed<T>(what: &str, t: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    let e = start.elapsed();
    assert!(
        e <= t + SLACK,
        "{what}: returned after {e:?}, timeout {t:?}"
    );
    r
}

fn check_timeout<T>(what: &str, r: &shmkit::Result<T>, start: Instant, t: Duration) {
    if let Err(Error::Timeout { .. }) = r {
        let e = start.elapsed();
        assert!(e >= t, "{what}: Timeout after {e:?}, before its {t:?}");
    }
}

fuzz_target!(|input: Input| {
    let (objs, maps) = create(&input);
    let Objects {
        queue,
        mut ends,
        event,
        lock,
    } = objs;
    let (q, ev, lk) = (&queue, &event, &lock);
    let mut guard: Option<LockGuard<'_>> = None;
    // What this process alone did (checked while clean): messages in the
    // queue, messages sent by each pipe end and not yet received, the event.
    let mut queued = 0usize;
    let mut sent = [0usize; 2];
    let mut event_set = false;
    let mut run = Run {
        maps: &maps,
        clean: true,
        budget_us: TIMEOUT_BUDGET_US,
    };
    let qmax = q.max_message();

    for op in input.ops.iter().take(MAX_OPS) {
        match *op {
            Op::Wait { mask, msg, how } => {
                let msg = usize::from(msg) % 300;
                let mut list: Vec<Interest<'_>> = Vec::new();
                // Which entries this process knows to be ready.
                let mut known: Vec<bool> = Vec::new();
                if mask & 1 != 0 {
                    list.push(q.readable());
                    known.push(queued > 0);
                }
                if mask & 2 != 0 {
                    list.push(q.writable());
                    known.push(false);
                }
                for (i, e) in ends.iter().enumerate() {
                    if let Some(e) = e {
                        if mask & (4 << (2 * i)) != 0 {
                            list.push(e.readable());
                            known.push(sent[1 - i] > 0);
                        }
                        if mask & (8 << (2 * i)) != 0 {
                            list.push(e.writable(msg));
                            known.push(false);
                        }
                    }
                }
                if mask & 64 != 0 {
                    list.push(ev.set_interest());
                    known.push(event_set);
                }
                if mask & 128 != 0 {
                    list.push(lk.free_interest());
                    known.push(false);
                }
                if !run.clean {
                    known.iter_mut().for_each(|k| *k = false);
                }
                let mut ws = WaitSet::new();
                // Each key, and whether its entry is known ready.
                let mut keys = Vec::new();
                for (it, &k) in list.iter().zip(&known) {
                    // A pipe end's wrong direction is refused; nothing else.
                    match ws.add(*it) {
                        Ok(key) => keys.push((key, k)),
                        Err(Error::InvalidArgument(_)) => {}
                        Err(e) => panic!("WaitSet::add: {e}"),
                    }
                }
                let must_be_ready = keys.iter().any(|&(_, k)| k);
                let check = |ready: &shmkit::Ready, what: &str| {
                    for k in ready.iter() {
                        assert!(k.index() < keys.len(), "{what}: a key not in the set");
                    }
                    for &(key, k) in &keys {
                        assert!(!k || ready.contains(key), "{what}: a ready entry left out");
                    }
                };
                match how {
                    How::Timeout(us) => {
                        let t = run.timeout(us);
                        let start = Instant::now();
                        let r = timed("wait_timeout", t, || ws.wait_timeout(t));
                        check_timeout("wait_timeout", &r, start, t);
                        match &r {
                            Ok(ready) => {
                                assert!(!ready.is_empty(), "wait_timeout: Ok with nothing ready");
                                check(ready, "wait_timeout");
                            }
                            Err(Error::InvalidArgument(_)) => {
                                assert!(ws.is_empty(), "wait_timeout: InvalidArgument: {r:?}")
                            }
                            Err(_) => {}
                        }
                        if must_be_ready {
                            assert!(r.is_ok(), "wait_timeout: {r:?}, but something is ready");
                        }
                    }
                    How::Poll => {
                        let r = timed("poll", Duration::ZERO, || ws.poll());
                        if let Ok(ready) = &r {
                            check(ready, "poll");
                        }
                        if must_be_ready {
                            assert!(r.is_ok(), "poll: {r:?}, but something is ready");
                        }
                    }
                    How::Free(us) => {
                        let t = run.timeout(us);
                        let objs_dyn: Vec<&dyn shmkit::Waitable> =
                            list.iter().map(|i| i as &dyn shmkit::Waitable).collect();
                        let start = Instant::now();
                        let r = timed("wait", t, || shmkit::wait(&objs_dyn, Some(t)));
                        check_timeout("wait", &r, start, t);
                        if let Ok(v) = &r {
                            for &i in v {
                                assert!(i < list.len(), "wait: index {i} of {}", list.len());
                            }
                            // `wait` takes every entry (none is refused);
                            // known-ready ones must be among them.
                            if list.len() == keys.len() {
                                for (i, &(_, k)) in keys.iter().enumerate() {
                                    assert!(!k || v.contains(&i), "wait: a ready entry left out");
                                }
                            }
                        }
                        if must_be_ready && list.len() == keys.len() {
                            assert!(r.is_ok(), "wait: {r:?}, but something is ready");
                        }
                    }
                }
            }
            Op::QueuePut(n) => {
                let msg = vec![n; usize::from(n) % (qmax + 2)];
                let r = q.try_put(&msg);
                if r.is_ok() {
                    queued += 1;
                }
            }
            Op::QueueGet => {
                if let Ok(v) = q.try_get() {
                    assert!(v.len() <= qmax, "Queue::try_get: {} bytes", v.len());
                    queued = queued.saturating_sub(1);
                }
            }
            Op::Send { end, len } => {
                let s = usize::from(end);
                if let Some(e) = ends[s].as_mut() {
                    // Short enough for any ring: never streamed.
                    let msg = vec![len; usize::from(len) % 40];
                    let r = timed("send_timeout", Duration::ZERO, || {
                        e.send_timeout(&msg, Duration::ZERO)
                    });
                    if r.is_ok() {
                        sent[s] += 1;
                    }
                }
            }
            Op::Recv { end } => {
                let s = usize::from(end);
                if let Some(e) = ends[s].as_mut() {
                    let r = timed("recv_timeout", Duration::ZERO, || {
                        e.recv_timeout(Duration::ZERO)
                    });
                    if let Ok(v) = &r {
                        assert!(v.len() <= 100, "PipeEnd::recv: {} bytes", v.len());
                        sent[1 - s] = sent[1 - s].saturating_sub(1);
                    }
                }
            }
            Op::Set => {
                ev.set();
                event_set = true;
            }
            Op::Clear => {
                ev.clear();
                event_set = false;
            }
            Op::TryLock => {
                if guard.is_none() {
                    if let Ok(Some(g)) = timed("try_lock", Duration::ZERO, || lk.try_lock()) {
                        guard = Some(g);
                    }
                }
            }
            Op::Unlock => drop(guard.take()),
            Op::ClosePipe { end } => {
                ends[usize::from(end)] = None;
            }
            Op::IsReady(i) => {
                let _ = match i % 5 {
                    0 => q.readable().is_ready(),
                    1 => q.writable().is_ready(),
                    2 => ev.set_interest().is_ready(),
                    3 => lk.free_interest().is_ready(),
                    _ => ends
                        .iter()
                        .flatten()
                        .any(|e| e.readable().is_ready() || e.writable(8).is_ready()),
                };
            }
            Op::Scribble(s) => run.scribble(s),
        }
    }
    drop(guard);
    drop(ends);
    drop(run);
    drop(maps);
});
