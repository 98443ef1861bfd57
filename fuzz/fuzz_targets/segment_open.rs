//! Arbitrary segment contents, opened as every kind of object and used.
//!
//! Each run writes bytes to a fresh `/dev/shm/shmkit-fuzz-<pid>-<n>` (what a
//! buggy, hostile or crashed peer could leave there), then opens that name
//! as `Segment`, `Lock`, `Event`, `Value<u64>`, `Value<[u8; 3]>`,
//! `Array<u32>`, `Array<u8>`, `Queue` and `Pipe`, and reads it with
//! `inspect_with` (and, now and then, `list`). Every open must be `Ok` or
//! `Err`, never a crash; whatever opens is then used by a fuzzer-chosen
//! sequence of operations, checked against what one process alone must
//! observe (a stored value reads back, `set` makes `is_set`, ...), and
//! `inspect` must have named its kind. The name is removed at the end of
//! every run.
//!
//! To reach deep states the input may start from a *valid* object of a
//! chosen kind (created for real, its bytes read from /dev/shm) and then
//! edit bytes, header fields (the layout is documented at the top of
//! `src/raw/header.rs`) and the length.
//!
//! One edit is always undone: a lock `state` word (the 64-bit word at
//! payload offset 8, see `src/raw/lock.rs`) whose owner stamp names a
//! *live* task (its thread id runs, with the stamp's start time or with the
//! start time unknown) is cleared of its stamp, since a live owner may
//! legitimately hold a lock forever and the untimed locks inside
//! `Value`/`Array` would then wait forever (not a bug, but a hang for the
//! fuzzer). That includes this thread: a forged "owner is you" is a
//! foreign live owner, waited for. A stamp of a dead task, or of a live id
//! with another start time, is left for the takeover path.
#![no_main]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::Direction;
use shmkit::{Array, Barrier, Error, Event, Lock, Options, Pipe, Queue, Segment, Value};

const HEADER_LEN: usize = 64;
/// Largest file the fuzzer may make.
const MAX_FILE: usize = 16 * 1024;
/// Where the lock's 64-bit `state` word is in the file: the payload starts
/// with the `RawLock` (`wake` u32, `aux` u32, `state` u64).
const LOCK_STATE_AT: usize = HEADER_LEN + 8;
/// In `state`: the owner stamp (`STAMP_MASK`), tid above bit 40.
const STAMP_MASK: u64 = (1 << 62) - 1;
const HANDOFF: u64 = 1 << 62;
const START_BITS: u32 = 40;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Template {
    Segment(u8),
    Lock,
    Event,
    ValueU64(u64),
    ValueBytes3([u8; 3]),
    ArrayU32(u8),
    ArrayU8(u8),
    Queue {
        capacity: u8,
        max_message: u8,
    },
    Pipe {
        capacity: u16,
        max_message: u16,
        direction: u8,
    },
    /// A barrier of `1 + n % 8` parties.
    Barrier(u8),
}

#[derive(Arbitrary, Debug)]
enum Base {
    Bytes(Vec<u8>),
    Valid(Template),
}

/// Header and lock fields, by offset and width.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Field {
    Magic,
    Version,
    Kind,
    TypeSize,
    TypeAlign,
    TypeHash,
    TotalLen,
    State,
    CreatorPid,
    CreatorStart,
    Aux,
    /// `RawLock::wake`, the futex word.
    LockWake,
    /// `RawLock::aux`: `DIED` and the contended-unlock count.
    LockAux,
    /// `RawLock::state`: owner stamp, `HANDOFF`, `WAITERS`.
    LockState,
    /// A pipe's end-1 stamp (payload offset 128), 0 until it is opened.
    PipeEnd1Stamp,
    /// A queue's or pipe's first words after its configuration.
    Payload(u8),
}

impl Field {
    fn at(self) -> (usize, usize) {
        match self {
            Field::Magic => (0, 8),
            Field::Version => (8, 4),
            Field::Kind => (12, 4),
            Field::TypeSize => (16, 4),
            Field::TypeAlign => (20, 4),
            Field::TypeHash => (24, 8),
            Field::TotalLen => (32, 8),
            Field::State => (40, 4),
            Field::CreatorPid => (44, 4),
            Field::CreatorStart => (48, 8),
            Field::Aux => (56, 8),
            Field::LockWake => (64, 4),
            Field::LockAux => (68, 4),
            Field::LockState => (LOCK_STATE_AT, 8),
            Field::PipeEnd1Stamp => (HEADER_LEN + 128, 8),
            Field::Payload(i) => (HEADER_LEN + 8 * usize::from(i % 96), 8),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Byte { at: u16, v: u8 },
    Field(Field, u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Resize {
    /// Cut `n % 64` bytes off the end.
    Trim(u8),
    /// Append `n` zero bytes.
    Grow(u8),
    /// Exactly `n % (MAX_FILE + 1)` bytes.
    To(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Lock,
    TryLock,
    Unlock,
    Set,
    Clear,
    IsSet,
    WaitZero,
    Load,
    Store(u64),
    FetchAdd(u64),
    Swap(u64),
    Cas(u64, u64),
    /// Take the object's lock, write through the guard, drop it.
    Guard(u64),
    Get(u16),
    Put(u16, u32),
    ToVec,
    Info,
}

#[derive(Arbitrary, Debug)]
struct Input {
    base: Base,
    /// First, a new length (zero-extended or cut).
    resize: Option<Resize>,
    edits: Vec<Edit>,
    /// After the edits, set `total_len` to the file's length, so that a
    /// resize is not simply caught by the length check.
    fix_total_len: bool,
    ops: Vec<Op>,
}

fn pid() -> u32 {
    std::process::id()
}

fn fresh_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmkit-fuzz-{}-{tag}{}",
        pid(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the name when dropped, whatever happened.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}

/// The bytes of a real object of kind `t`, as its creator left them.
fn template_bytes(t: Template) -> Vec<u8> {
    let name = fresh_name("t");
    let _cleanup = Unlink(name.clone());
    let read = || std::fs::read(format!("/dev/shm/{name}")).unwrap_or_default();
    // Each object is alive (mapped, not yet unlinked) while it is read.
    let bytes = match t {
        Template::Segment(n) => Segment::create(&name, 1 + usize::from(n)).map(|_s| read()),
        Template::Lock => Lock::create(&name).map(|_l| read()),
        Template::Event => Event::create(&name).map(|_e| read()),
        Template::ValueU64(v) => Value::<u64>::create(&name, v).map(|_v| read()),
        Template::ValueBytes3(v) => Value::<[u8; 3]>::create(&name, v).map(|_v| read()),
        Template::ArrayU32(n) => Array::<u32>::create(&name, usize::from(n), 7).map(|_a| read()),
        Template::ArrayU8(n) => Array::<u8>::create(&name, usize::from(n), 7).map(|_a| read()),
        Template::Queue {
            capacity,
            max_message,
        } => Queue::create(
            &name,
            1 + usize::from(capacity % 16),
            usize::from(max_message),
        )
        .map(|_q| read()),
        Template::Pipe {
            capacity,
            max_message,
            direction,
        } => Pipe::builder()
            .capacity(64 + usize::from(capacity % 1024))
            .max_message(usize::from(max_message % 2048))
            .direction(match direction % 3 {
                0 => Direction::Duplex,
                1 => Direction::CreatorSends,
                _ => Direction::OpenerSends,
            })
            .create(&name)
            .map(|_p| read()),
        Template::Barrier(n) => Barrier::create(&name, 1 + u32::from(n % 8)).map(|_b| read()),
    };
    bytes.unwrap_or_else(|e| panic!("creating a {t:?} failed: {e}"))
}

fn put(bytes: &mut [u8], at: usize, width: usize, v: u64) {
    let le = v.to_le_bytes();
    for i in 0..width {
        if let Some(b) = bytes.get_mut(at + i) {
            *b = le[i];
        }
    }
}

/// Field 22 (`starttime`) of /proc/<tid>/stat, masked as a stamp keeps it.
fn start_time(tid: u64) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{tid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let start: u64 = rest.split_ascii_whitespace().nth(19)?.parse().ok()?;
    Some(start & ((1 << START_BITS) - 1))
}

/// A lock state naming a live task (this thread included: a forged "owner
/// is you" is waited for, not taken) would make an untimed lock wait for as
/// long as that task lives: clear the stamp bits.
fn defuse_live_owner(bytes: &mut [u8]) {
    let Some(w) = bytes.get(LOCK_STATE_AT..LOCK_STATE_AT + 8) else {
        return;
    };
    let w = u64::from_le_bytes(w.try_into().unwrap());
    if w & HANDOFF != 0 {
        // Free (reserved for a sleeper; stale within 20 ms): no owner.
        return;
    }
    let stamp = w & STAMP_MASK;
    let (tid, start) = (stamp >> START_BITS, stamp & ((1 << START_BITS) - 1));
    if tid == 0 {
        return;
    }
    let live = match start_time(tid) {
        Some(s) => start == 0 || s == start,
        // Unreadable but present: count it as live.
        None => std::path::Path::new(&format!("/proc/{tid}")).exists(),
    };
    if live {
        put(bytes, LOCK_STATE_AT, 8, w & !STAMP_MASK);
    }
}

fn build(input: &Input) -> Vec<u8> {
    let mut bytes = match &input.base {
        Base::Bytes(b) => b.clone(),
        Base::Valid(t) => template_bytes(*t),
    };
    bytes.truncate(MAX_FILE);
    match input.resize {
        None => {}
        Some(Resize::Trim(n)) => bytes.truncate(bytes.len().saturating_sub(usize::from(n % 64))),
        Some(Resize::Grow(n)) => bytes.resize((bytes.len() + usize::from(n)).min(MAX_FILE), 0),
        Some(Resize::To(n)) => bytes.resize(usize::from(n) % (MAX_FILE + 1), 0),
    }
    for e in input.edits.iter().take(32) {
        match *e {
            Edit::Byte { at, v } => {
                if !bytes.is_empty() {
                    let at = usize::from(at) % bytes.len();
                    bytes[at] = v;
                }
            }
            Edit::Field(f, v) => {
                let (at, width) = f.at();
                put(&mut bytes, at, width, v);
            }
        }
    }
    if input.fix_total_len {
        let len = bytes.len() as u64;
        put(&mut bytes, 32, 8, len);
    }
    defuse_live_owner(&mut bytes);
    bytes
}

fn use_lock(l: &Lock, ops: &[Op]) {
    let mut guards = Vec::new();
    for op in ops {
        match op {
            Op::Lock => match l.lock_timeout(Duration::from_millis(1)) {
                Ok(g) => {
                    assert!(guards.is_empty(), "took a lock this thread holds");
                    guards.push(g);
                }
                // Deadlock also when the bytes name this thread as owner.
                Err(shmkit::Error::Deadlock { .. }) => {}
                Err(shmkit::Error::Timeout { .. }) => {
                    assert!(guards.is_empty(), "Timeout on our own lock")
                }
                Err(e) => panic!("Lock::lock_timeout: {e}"),
            },
            Op::TryLock => match l.try_lock() {
                Ok(Some(g)) => {
                    assert!(guards.is_empty(), "try_lock took a lock this thread holds");
                    guards.push(g);
                }
                Ok(None) => {}
                Err(e) => panic!("Lock::try_lock: {e}"),
            },
            Op::Unlock => drop(guards.pop()),
            _ => {}
        }
        if !guards.is_empty() {
            assert!(l.is_locked(), "holding a guard, yet not locked");
        }
    }
}

/// A barrier over any bytes: every call returns (a lone party's wait is
/// bounded by its timeout), with `Ok`, `BrokenBarrier` or `Corrupted`.
fn use_barrier(b: &Barrier, ops: &[Op]) {
    let parties = b.parties();
    assert!(parties >= 1);
    for op in ops {
        match op {
            Op::Set => b.abort(),
            Op::Clear => b.reset(),
            Op::IsSet => {
                let _ = (b.broken(), b.n_waiting(), format!("{b:?}"));
            }
            Op::WaitZero => match b.wait_timeout(Duration::from_micros(100)) {
                Ok(i) => assert!(i < parties as usize),
                Err(Error::BrokenBarrier { .. }) | Err(Error::Corrupted { .. }) => {}
                Err(e) => panic!("barrier wait: {e}"),
            },
            _ => {}
        }
    }
}

fn use_event(e: &Event, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Set => {
                e.set();
                assert!(e.is_set());
            }
            Op::Clear => {
                e.clear();
                assert!(!e.is_set());
            }
            Op::IsSet => {
                let _ = e.is_set();
            }
            Op::WaitZero => {
                let before = e.is_set();
                assert_eq!(e.wait_timeout(Duration::ZERO).unwrap(), before);
            }
            _ => {}
        }
    }
}

fn use_value_u64(v: &Value<u64>, ops: &[Op]) {
    let mut model = v.load();
    for op in ops {
        match *op {
            Op::Load => assert_eq!(v.load(), model),
            Op::Store(x) => {
                v.store(x);
                model = x;
            }
            Op::FetchAdd(x) => {
                assert_eq!(v.fetch_add(x), model);
                model = model.wrapping_add(x);
            }
            Op::Swap(x) => {
                assert_eq!(v.swap(x), model);
                model = x;
            }
            Op::Cas(cur, new) => {
                let r = v.compare_exchange(cur, new);
                if cur == model {
                    assert_eq!(r, Ok(model));
                    model = new;
                } else {
                    assert_eq!(r, Err(model));
                }
            }
            Op::Guard(x) => {
                if let Ok(mut g) = v.lock() {
                    assert_eq!(*g, model);
                    *g = x;
                    drop(g);
                    model = x;
                }
            }
            _ => {}
        }
    }
    assert_eq!(v.load(), model);
}

fn use_value_bytes3(v: &Value<[u8; 3]>, ops: &[Op]) {
    let mut model = v.load();
    for op in ops {
        match *op {
            Op::Load => assert_eq!(v.load(), model),
            Op::Store(x) => {
                let b = [x as u8, (x >> 8) as u8, (x >> 16) as u8];
                v.store(b);
                model = b;
            }
            Op::Guard(x) => {
                if let Ok(mut g) = v.lock() {
                    assert_eq!(*g, model);
                    g[0] = x as u8;
                    model[0] = x as u8;
                }
            }
            _ => {}
        }
    }
    assert_eq!(v.load(), model);
}

fn use_array<T>(a: &Array<T>, ops: &[Op], from: fn(u32) -> T)
where
    T: bytemuck::Pod + PartialEq + std::fmt::Debug,
{
    let mut model = a.to_vec();
    assert_eq!(model.len(), a.len());
    for op in ops {
        match *op {
            Op::Get(i) => assert_eq!(a.get(usize::from(i)), model.get(usize::from(i)).copied()),
            Op::Put(i, x) => {
                let i = usize::from(i);
                match a.set(i, from(x)) {
                    Ok(()) => {
                        assert!(i < model.len(), "set out of bounds succeeded");
                        model[i] = from(x);
                    }
                    Err(shmkit::Error::InvalidArgument(_)) => assert!(i >= model.len()),
                    // The bytes may name this thread as the lock's owner.
                    Err(shmkit::Error::Deadlock { .. }) => {}
                    Err(e) => panic!("Array::set: {e}"),
                }
            }
            Op::ToVec => assert_eq!(a.to_vec(), model),
            Op::Guard(x) => {
                if let Ok(mut g) = a.lock() {
                    assert_eq!(&g[..], &model[..]);
                    if let Some(first) = g.first_mut() {
                        *first = from(x as u32);
                        model[0] = from(x as u32);
                    }
                }
            }
            Op::Info => assert_eq!(a.len(), model.len()),
            _ => {}
        }
    }
    assert_eq!(a.to_vec(), model);
}

/// A queue over whatever bytes opened: every call returns, lengths stay
/// within what the handle validated at open.
fn use_queue(q: &Queue, ops: &[Op]) {
    let (cap, max) = (q.capacity(), q.max_message());
    for op in ops {
        match *op {
            Op::Put(n, x) => {
                let msg = vec![x as u8; usize::from(n) % (max + 2)];
                if let Err(shmkit::Error::MessageTooLarge { len, max: m, .. }) = q.try_put(&msg) {
                    assert_eq!((len, m), (msg.len(), max));
                }
            }
            Op::Get(n) => {
                if n % 2 == 0 {
                    if let Ok(v) = q.try_get() {
                        assert!(v.len() <= max, "Queue::try_get: {} bytes", v.len());
                    }
                } else {
                    let mut buf = vec![0u8; usize::from(n) % (max + 2)];
                    if let Ok(k) = q.try_get_into(&mut buf) {
                        assert!(k <= buf.len());
                    }
                }
            }
            Op::WaitZero => {
                let _ = q.get_timeout(Duration::from_micros(100));
            }
            Op::Set => q.close(),
            Op::Info | Op::IsSet => {
                let n = q.len();
                assert!(n <= cap, "Queue::len {n} > capacity {cap}");
                let _ = (q.is_empty(), q.is_full(), q.is_closed());
            }
            _ => {}
        }
        assert_eq!((q.capacity(), q.max_message()), (cap, max));
    }
}

/// Pipe end 1 over whatever bytes opened. Only messages that fit in any
/// ring (64 bytes) are sent: a streamed one to a peer the bytes say is
/// alive would wait for it for ever.
fn use_pipe(p: &mut shmkit::PipeEnd, ops: &[Op]) {
    let (cap, max) = (p.capacity(), p.max_message());
    for op in ops {
        match *op {
            Op::Put(n, x) => {
                let msg = vec![x as u8; usize::from(n) % 33];
                if let Err(shmkit::Error::MessageTooLarge { len, max: m, .. }) =
                    p.send_timeout(&msg, Duration::ZERO)
                {
                    assert_eq!((len, m), (msg.len(), max));
                }
            }
            Op::Get(n) => {
                if n % 2 == 0 {
                    if let Ok(v) = p.recv_timeout(Duration::ZERO) {
                        assert!(v.len() <= max, "PipeEnd::recv: {} bytes", v.len());
                    }
                } else {
                    let mut buf = vec![0u8; usize::from(n) % (max + 2)];
                    if let Ok(k) = p.recv_into_timeout(&mut buf, Duration::ZERO) {
                        assert!(k <= buf.len());
                    }
                }
            }
            Op::WaitZero => {
                let _ = p.poll(Duration::from_micros(100));
            }
            _ => {}
        }
        assert_eq!((p.capacity(), p.max_message()), (cap, max));
    }
}

fuzz_target!(|input: Input| {
    let bytes = build(&input);
    let name = fresh_name("");
    let _cleanup = Unlink(name.clone());
    std::fs::write(format!("/dev/shm/{name}"), &bytes).expect("write /dev/shm");
    let opts = Options::new().init_timeout(Duration::from_micros(100));
    let ops: Vec<Op> = input.ops.iter().take(64).copied().collect();

    let info = shmkit::inspect_with(&name, &opts);
    if let Ok(i) = &info {
        assert_eq!(i.name, name);
        assert_eq!(i.len, bytes.len(), "inspect: len");
    }
    // The kind `inspect` must have seen for an open of `kind` to succeed.
    let saw = |kind: &str| match &info {
        Ok(i) => assert_eq!(i.kind, kind, "opened as {kind}, inspect says {}", i.kind),
        Err(e) => panic!("opened as {kind}, but inspect failed: {e}"),
    };
    {
        // `list` reads every segment in /dev/shm: now and then only.
        static RUNS: AtomicU32 = AtomicU32::new(0);
        if RUNS.fetch_add(1, Ordering::Relaxed) % 256 == 0 {
            let _ = shmkit::list();
        }
    }

    if let Ok(s) = Segment::open_with(&name, &opts) {
        saw("Segment");
        assert_eq!(s.len() + HEADER_LEN, bytes.len());
        assert!(!s.unlinks_on_drop());
        let _ = (s.creator_pid(), s.creator_alive(), s.mode());
    }
    if let Ok(l) = Lock::open_with(&name, &opts) {
        saw("Lock");
        use_lock(&l, &ops);
    }
    if let Ok(e) = Event::open_with(&name, &opts) {
        saw("Event");
        use_event(&e, &ops);
    }
    if let Ok(v) = Value::<u64>::open_with(&name, &opts) {
        saw("Value");
        use_value_u64(&v, &ops);
    }
    if let Ok(v) = Value::<[u8; 3]>::open_with(&name, &opts) {
        saw("Value");
        use_value_bytes3(&v, &ops);
    }
    if let Ok(a) = Array::<u32>::open_with(&name, &opts) {
        saw("Array");
        use_array(&a, &ops, |x| x);
    }
    if let Ok(a) = Array::<u8>::open_with(&name, &opts) {
        saw("Array");
        use_array(&a, &ops, |x| x as u8);
    }
    if let Ok(q) = Queue::open_with(&name, &opts) {
        saw("Queue");
        use_queue(&q, &ops);
    }
    if let Ok(b) = Barrier::open_with(&name, &opts) {
        saw("Barrier");
        use_barrier(&b, &ops);
    }
    if let Ok(mut p) = Pipe::open_with(&name, &opts) {
        saw("Pipe");
        use_pipe(&mut p, &ops);
    }
});
