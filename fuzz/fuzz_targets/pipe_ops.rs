//! `RawPipe` on a 64-aligned heap region, driven by an arbitrary sequence
//! of operations on its two ends (as two processes would), with scribbles
//! over the shared bytes, checked against a model of the two rings.
//!
//! # Modes
//!
//! - `Init`: `init_in` a pipe of a fuzzer-chosen shape (end 0), apply `pre`
//!   edits to any byte, `attach` end 1 (if that fails, only end 0 is
//!   driven), then run the operations.
//! - `Raw`: fill a region of any length and alignment offset with fuzzer
//!   bytes (cycled), apply edits, `attach` end 1 over it. A misaligned or
//!   short region must be an `Err`; whatever attaches is then driven alone.
//!
//! # Operations
//!
//! Send, receive (`recv_timeout`, `recv_into_timeout` with small and large
//! buffers, `recv_ref_timeout`), `reserve_timeout` grants (committed,
//! committed short, or dropped), `poll`, the queries, `set_spin`, closing an
//! end (dropping it), and scribbles. A grant or a received reference is
//! held across one nested operation on the other end (a send, a receive, a
//! poll or a scribble). Timeouts are at most 2 ms, and at most
//! `TIMEOUT_BUDGET_US` in all per input.
//!
//! A message larger than the ring is streamed: its send returns only when
//! the receiver has taken all but the last ring's worth. So such a send
//! runs on a scoped thread while this thread receives. Each round of the
//! receive loop first looks whether the send has ended: once it has, every
//! byte it sent is in the ring, so the receives that follow must bring the
//! whole message (after any queued before it) without waiting, and a
//! `Timeout` then, with the send `Ok`, is a lost message. While clean, the
//! loop waits as long as the send runs (a clean stream that never ends is a
//! hang, which libFuzzer's `-timeout` reports). While dirty, a send still
//! running after `STREAM_WALL` is stalled (a hostile ring can stall it for
//! ever): the receiving end is dropped, which must end the send with an
//! error at once.
//!
//! # What is checked
//!
//! While nothing but configuration words (which the ends read only at
//! attach) has been changed in the region ("clean"), every result is
//! checked exactly against the model ([`Model`]): each ring's tail and head
//! as stream positions and its records (messages and the skip records that
//! a reservation at the ring's end writes), so a send is `Ok` exactly when
//! the ring has room and `Timeout` exactly when it has not; a receive
//! returns exactly the next message (bytes, order, no loss, no duplicate),
//! `BufferTooSmall` with its length, `Timeout` when nothing is there and
//! `Disconnected` once the peer closed and nothing is left;
//! `MessageTooLarge` and `InvalidArgument` (wrong direction, a reservation
//! larger than the ring) exactly when documented; no `Corrupted`.
//!
//! Once anything else was changed ("dirty"), only what holds for any bytes
//! is checked: no panic (any panic is a crash), no out-of-bounds access
//! (ASan), no hang (libFuzzer's `-timeout`, and the streamed send's bound),
//! every received length within `max_message` and the buffer,
//! `capacity()`/`max_message()` unchanged since attach, and no `Timeout`
//! before its duration.
#![no_main]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::{Direction, PipeLayout, RawPipe};
use shmkit::{Error, Result, Spin};

/// Operations per input.
const MAX_OPS: usize = 64;
/// Microseconds of timeouts per input, in all (keeps executions fast).
const TIMEOUT_BUDGET_US: u64 = 4_000;
/// How long this thread goes on receiving a streamed message over a dirty
/// pipe before it calls the send stalled (never while clean).
const STREAM_WALL: Duration = Duration::from_millis(10);
/// Each receive's timeout while a streamed message comes in.
const STREAM_RECV: Duration = Duration::from_millis(1);
/// Streamed sends per input.
const MAX_STREAMS: usize = 3;

// ---- where things are (`PipeCtl` in src/raw/pipe.rs; checked by `probe`) --

const CAPACITY_AT: usize = 0;
const MAX_MESSAGE_AT: usize = 8;
const DIRECTION_AT: usize = 16;
/// `ends[e]` (one cache line each): the 64-bit stamp, then the 32-bit flag.
const fn stamp_at(e: usize) -> usize {
    64 + 64 * e
}
const fn closed_at(e: usize) -> usize {
    72 + 64 * e
}
/// `rings[r]`: tail, head, readable, writable, a cache line each.
const fn tail_at(r: usize) -> usize {
    192 + 256 * r
}
const fn head_at(r: usize) -> usize {
    256 + 256 * r
}
const fn readable_at(r: usize) -> usize {
    320 + 256 * r
}
const fn writable_at(r: usize) -> usize {
    384 + 256 * r
}
/// The control block's size; the rings' bytes follow, present rings only.
const CTL_SIZE: usize = 704;
const CONFIG: [usize; 3] = [CAPACITY_AT, MAX_MESSAGE_AT, DIRECTION_AT];

/// Checks the offsets above against a real pipe once, so that a layout
/// change fails loudly instead of aiming every targeted edit wrong.
fn probe() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let layout = PipeLayout {
            capacity: 64,
            max_message: 100,
            direction: Direction::Duplex,
        };
        let len = RawPipe::required_size(&layout).expect("reference size");
        assert_eq!(len, CTL_SIZE + 2 * 64, "PipeCtl changed size");
        let r = Region::new(len);
        // SAFETY: the region is ours, 64-aligned, `len` bytes, and outlives
        // both ends (dropped at the end of this block, before it).
        let mut a = unsafe { RawPipe::init_in(r.ptr, len, &layout) }.expect("reference init");
        assert_eq!(r.read(CAPACITY_AT, 8), 64, "capacity offset");
        assert_eq!(r.read(MAX_MESSAGE_AT, 8), 100, "max_message offset");
        assert_eq!(r.read(DIRECTION_AT, 8), 0, "direction offset");
        assert_ne!(r.read(stamp_at(0), 8), 0, "end 0 stamp offset");
        // SAFETY: as above.
        let mut b = unsafe { RawPipe::attach(r.ptr, len) }.expect("reference attach");
        assert_ne!(r.read(stamp_at(1), 8), 0, "end 1 stamp offset");
        a.send_timeout(b"x", Duration::ZERO)
            .expect("reference send");
        assert_eq!(r.read(tail_at(0), 8), 8, "ring 0 tail offset");
        assert_eq!(r.read(CTL_SIZE, 5), 0x78_0000_0001, "ring 0 data offset");
        b.recv_timeout(Duration::ZERO).expect("reference recv");
        assert_eq!(r.read(head_at(0), 8), 8, "ring 0 head offset");
        b.send_timeout(b"yz", Duration::ZERO)
            .expect("reference send back");
        assert_eq!(r.read(tail_at(1), 8), 8, "ring 1 tail offset");
        assert_eq!(r.read(CTL_SIZE + 64, 4), 2, "ring 1 data offset");
        drop(b);
        assert_eq!(r.read(closed_at(1), 4), 1, "end 1 closed offset");
        drop(a);
        assert_eq!(r.read(closed_at(0), 4), 1, "end 0 closed offset");
    });
}

// ---- the region ----------------------------------------------------------

/// A zeroed heap region aligned to 64, of exactly `len` bytes (so that ASan
/// sees any access past its end).
struct Region {
    ptr: *mut u8,
    layout: Layout,
}

impl Region {
    fn new(len: usize) -> Region {
        let layout = Layout::from_size_align(len.max(1), 64).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Region { ptr, layout }
    }

    fn len(&self) -> usize {
        self.layout.size()
    }

    fn read(&self, at: usize, width: usize) -> u64 {
        assert!(at + width <= self.len() && width <= 8);
        let mut b = [0u8; 8];
        for (i, x) in b.iter_mut().enumerate().take(width) {
            // SAFETY: in bounds (asserted); a volatile read, like a peer's.
            *x = unsafe { self.ptr.add(at + i).read_volatile() };
        }
        u64::from_le_bytes(b)
    }

    /// Writes the low `width` bytes of `v` at `at`, as another process's
    /// stores would. Returns whether any byte changed.
    fn write(&self, at: usize, width: usize, v: u64) -> bool {
        assert!(at + width <= self.len() && width <= 8);
        let old = self.read(at, width);
        let b = v.to_le_bytes();
        for (i, x) in b.iter().enumerate().take(width) {
            // SAFETY: in bounds (asserted). No pipe call runs concurrently
            // (scribbles happen only between calls, never while a streamed
            // send's thread runs): this is another process's plain store
            // between two of our calls.
            unsafe { self.ptr.add(at + i).write_volatile(*x) };
        }
        old != self.read(at, width)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; every end on it has
        // been dropped (they borrow the region).
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

// ---- the input -----------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    /// Any byte of the region.
    Byte(u16),
    /// Any 8-aligned word of the region.
    Word(u16),
    /// A configuration word.
    Config(u8),
    Stamp(bool),
    Closed(bool),
    Tail(bool),
    Head(bool),
    Readable(bool),
    Writable(bool),
    /// A byte of a ring's data.
    Data(bool, u16),
    /// The length prefix at a ring's current head (the next record).
    NextLen(bool),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Val {
    Set(u64),
    Add(i16),
    Xor(u8),
    /// The value of another word (8-aligned index).
    Copy(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Edit {
    target: Target,
    val: Val,
}

#[derive(Arbitrary, Debug)]
enum Mode {
    Init {
        /// `64 << (capacity % 4)`.
        capacity: u8,
        /// `% 1100`.
        max_message: u16,
        direction: u8,
        /// Extra bytes after the pipe (`% 129`).
        slack: u8,
        pre: Vec<Edit>,
    },
    Raw {
        /// Region length, `% 4096`.
        len: u16,
        /// Offset of the attach pointer from the 64-aligned start, `% 64`.
        offset: u8,
        fill: Vec<u8>,
        /// Zero end 1's stamp first (else `attach` mostly says `InUse`).
        free_end: bool,
        edits: Vec<Edit>,
    },
}

/// An operation on the other end while a grant or reference is held.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Nested {
    Nothing,
    Send { len: u16 },
    Recv,
    Poll,
    Scribble(Edit),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Finish {
    Commit,
    CommitLen(u16),
    Abandon,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// `send_timeout` of `len % (max + 3)` bytes (`None`: zero timeout).
    /// A message larger than the ring is streamed (see the module
    /// documentation); `how` picks the receive call that takes it.
    Send {
        side: bool,
        len: u16,
        us: Option<u16>,
        how: u8,
    },
    Recv {
        side: bool,
        us: Option<u16>,
    },
    /// `recv_into_timeout` with a buffer of `size` (`< 128`:
    /// `size % (max + 1)`; else `max + size - 128`).
    RecvInto {
        side: bool,
        size: u8,
        us: Option<u16>,
    },
    RecvRef {
        side: bool,
        us: Option<u16>,
        then: Nested,
    },
    Reserve {
        side: bool,
        len: u16,
        us: Option<u16>,
        then: Nested,
        finish: Finish,
    },
    Poll {
        side: bool,
        us: Option<u16>,
    },
    Query {
        side: bool,
    },
    Close {
        side: bool,
    },
    SetSpin {
        side: bool,
        spin: u8,
    },
    Scribble(Edit),
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: Mode,
    ops: Vec<Op>,
}

// ---- the model -------------------------------------------------------------

fn record_len(len: usize) -> u64 {
    4 + (len as u64).div_ceil(4) * 4
}

#[derive(Debug)]
enum Rec {
    /// A message, and the stream position after its record.
    Msg(Vec<u8>, u64),
    /// A skip record, and the stream position after it.
    Skip(u64),
}

/// One ring as its two ends must see it: stream positions and records.
#[derive(Debug, Default)]
struct Ring {
    tail: u64,
    head: u64,
    recs: VecDeque<Rec>,
}

impl Ring {
    fn free(&self, cap: u64) -> u64 {
        cap - (self.tail - self.head)
    }

    /// A receive looked at the ring: skip records before the next message
    /// are consumed.
    fn peeked(&mut self) {
        while let Some(Rec::Skip(end)) = self.recs.front() {
            self.head = *end;
            self.recs.pop_front();
        }
    }

    fn front(&self) -> Option<&Vec<u8>> {
        match self.recs.front() {
            Some(Rec::Msg(m, _)) => Some(m),
            _ => None,
        }
    }

    fn consume_front(&mut self) {
        match self.recs.pop_front() {
            Some(Rec::Msg(_, end)) => self.head = end,
            r => panic!("model: consumed {r:?}, not a message"),
        }
    }

    fn push_msg(&mut self, m: Vec<u8>) {
        self.tail += record_len(m.len());
        self.recs.push_back(Rec::Msg(m, self.tail));
    }

    fn push_skip(&mut self, n: u64) {
        self.tail += n;
        self.recs.push_back(Rec::Skip(self.tail));
    }
}

/// An outcome, whatever the call.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Ok,
    Timeout,
    TooLarge { len: usize, max: usize },
    TooSmall(usize),
    BadArg,
    Disconnected,
    Other(String),
}

fn got<T>(r: &Result<T>) -> Got {
    match r {
        Ok(_) => Got::Ok,
        Err(Error::Timeout { .. }) => Got::Timeout,
        Err(Error::MessageTooLarge { len, max, .. }) => Got::TooLarge {
            len: *len,
            max: *max,
        },
        Err(Error::BufferTooSmall { needed, .. }) => Got::TooSmall(*needed),
        Err(Error::InvalidArgument(_)) => Got::BadArg,
        Err(Error::Disconnected { .. }) => Got::Disconnected,
        Err(e) => Got::Other(e.to_string()),
    }
}

/// The pipe as one process holding both ends must see it. Ring `r` carries
/// messages from end `r` to end `1 - r`.
#[derive(Debug)]
struct Model {
    rings: [Ring; 2],
    closed: [bool; 2],
    cap: u64,
    max: usize,
    dir: Direction,
}

fn has_ring(dir: Direction, r: usize) -> bool {
    match dir {
        Direction::Duplex => true,
        Direction::CreatorSends => r == 0,
        Direction::OpenerSends => r == 1,
    }
}

impl Model {
    /// What a send of `len` bytes from end `s` says before it looks for room.
    fn send_pre(&self, s: usize, len: usize) -> Option<Got> {
        if len > self.max {
            Some(Got::TooLarge { len, max: self.max })
        } else if !has_ring(self.dir, s) {
            Some(Got::BadArg)
        } else if self.closed[1 - s] {
            Some(Got::Disconnected)
        } else {
            None
        }
    }

    /// The outcome of a whole (not streamed) send; applies it.
    fn send(&mut self, s: usize, msg: &[u8]) -> Got {
        if let Some(g) = self.send_pre(s, msg.len()) {
            return g;
        }
        let ring = &mut self.rings[s];
        if ring.free(self.cap) >= record_len(msg.len()) {
            ring.push_msg(msg.to_vec());
            Got::Ok
        } else {
            Got::Timeout
        }
    }

    /// The outcome of a receive on end `s` into a buffer of `buf` bytes
    /// (`None`: a Vec), and the message it must return. Does not consume.
    fn recv(&mut self, s: usize, buf: Option<usize>) -> (Got, Option<Vec<u8>>) {
        let r = 1 - s;
        if !has_ring(self.dir, r) {
            return (Got::BadArg, None);
        }
        let ring = &mut self.rings[r];
        ring.peeked();
        match ring.front() {
            Some(m) if buf.is_some_and(|b| m.len() > b) => (Got::TooSmall(m.len()), None),
            Some(m) => (Got::Ok, Some(m.clone())),
            None if self.closed[r] => (Got::Disconnected, None),
            None => (Got::Timeout, None),
        }
    }

    /// The outcome of a reservation of `len` bytes on end `s`; applies the
    /// skip record it writes.
    fn reserve(&mut self, s: usize, len: usize) -> Got {
        if let Some(g) = self.send_pre(s, len) {
            return g;
        }
        let total = record_len(len);
        if total > self.cap {
            return Got::BadArg;
        }
        let cap = self.cap;
        let ring = &mut self.rings[s];
        let at = ring.tail % cap;
        if at + total > cap {
            let skip = cap - at;
            if ring.free(cap) < skip {
                return Got::Timeout;
            }
            ring.push_skip(skip);
        }
        if ring.free(cap) < total {
            return Got::Timeout;
        }
        Got::Ok
    }
}

// ---- the run -----------------------------------------------------------------

fn message(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (8 * (i % 8))) as u8 ^ (i / 8) as u8)
        .collect()
}

fn check_timeout<T>(r: &Result<T>, start: Instant, t: Duration, what: &str) {
    if let Err(Error::Timeout { .. }) = r {
        let e = start.elapsed();
        assert!(e >= t, "{what}: Timeout after {e:?}, before its {t:?}");
    }
}

/// What each end validated at attach.
#[derive(Debug, Clone, Copy)]
struct Shape {
    cap: u64,
    max: usize,
    dir: Direction,
}

fn shape(p: &RawPipe<'_>) -> Shape {
    Shape {
        cap: p.capacity() as u64,
        max: p.max_message(),
        dir: p.direction(),
    }
}

struct Run<'r> {
    region: &'r Region,
    ends: [Option<RawPipe<'r>>; 2],
    shapes: [Option<Shape>; 2],
    model: Model,
    clean: bool,
    budget_us: u64,
    seq: u64,
    streams: usize,
}

/// The two elements of `a`, `s` first.
fn pair<T>(a: &mut [T; 2], s: usize) -> (&mut T, &mut T) {
    let (l, r) = a.split_at_mut(1);
    if s == 0 {
        (&mut l[0], &mut r[0])
    } else {
        (&mut r[0], &mut l[0])
    }
}

impl Run<'_> {
    /// Applies an edit; marks the run dirty if it changed anything outside
    /// the configuration words (or anything at all when `config_ok` is
    /// false). Scribbles happen only between calls.
    fn edit(&mut self, e: Edit, config_ok: bool) {
        let len = self.region.len();
        let words = len / 8;
        let word = |i: usize| (words > 0).then(|| ((i % words) * 8, 8));
        let e01 = |b: bool| usize::from(b);
        // Where ring `r`'s bytes start, by the model's shape (the region's
        // configuration words may say anything by now).
        let cap = self.model.cap as usize;
        let dir = self.model.dir;
        let data = |r: usize| -> usize {
            let idx = if r == 1 && has_ring(dir, 0) { 1 } else { 0 };
            CTL_SIZE + idx * cap
        };
        let at = match e.target {
            Target::Byte(i) => (len > 0).then(|| (usize::from(i) % len, 1)),
            Target::Word(i) => word(usize::from(i)),
            Target::Config(i) => Some((CONFIG[usize::from(i) % CONFIG.len()], 8)),
            Target::Stamp(b) => Some((stamp_at(e01(b)), 8)),
            Target::Closed(b) => Some((closed_at(e01(b)), 4)),
            Target::Tail(b) => Some((tail_at(e01(b)), 8)),
            Target::Head(b) => Some((head_at(e01(b)), 8)),
            Target::Readable(b) => Some((readable_at(e01(b)), 4)),
            Target::Writable(b) => Some((writable_at(e01(b)), 4)),
            Target::Data(b, i) => Some((data(e01(b)) + usize::from(i) % cap.max(1), 1)),
            Target::NextLen(b) => {
                let r = e01(b);
                let h = head_at(r);
                (h + 8 <= len && cap > 0).then(|| {
                    let head = self.region.read(h, 8) as usize;
                    (data(r) + (head % cap) / 4 * 4, 4)
                })
            }
        };
        let Some((at, w)) = at.filter(|&(a, w)| a + w <= len) else {
            return;
        };
        let old = self.region.read(at, w);
        let v = match e.val {
            Val::Set(v) => v,
            Val::Add(d) => old.wrapping_add(d as i64 as u64),
            Val::Xor(b) => old ^ (1u64 << (b % (8 * w as u8))),
            Val::Copy(i) => match word(usize::from(i)) {
                Some((from, _)) => self.region.read(from, 8),
                None => return,
            },
        };
        let changed = self.region.write(at, w, v);
        let config = (at..at + w).all(|b| CONFIG.iter().any(|&c| (c..c + 8).contains(&b)));
        if changed && !(config_ok && config) {
            self.clean = false;
        }
    }

    fn timeout(&mut self, us: Option<u16>) -> Duration {
        let t = u64::from(us.unwrap_or(0) % 2001).min(self.budget_us);
        self.budget_us -= t;
        Duration::from_micros(t)
    }

    fn next_message(&mut self, len: usize) -> Vec<u8> {
        self.seq += 1;
        message(self.seq, len)
    }

    /// What holds for any bytes.
    fn check_invariants(&self) {
        for (e, s) in self.ends.iter().zip(&self.shapes) {
            if let (Some(e), Some(s)) = (e, s) {
                assert_eq!(e.capacity() as u64, s.cap, "capacity() changed");
                assert_eq!(e.max_message(), s.max, "max_message() changed");
                assert_eq!(e.direction(), s.dir, "direction() changed");
            }
        }
    }

    fn max_of(&self, s: usize) -> usize {
        self.shapes[s].map_or(0, |x| x.max)
    }

    /// A whole send from end `s` (the message fits in the ring).
    fn send(&mut self, s: usize, msg: &[u8], t: Duration) {
        let Some(end) = self.ends[s].as_mut() else {
            return;
        };
        let start = Instant::now();
        let r = end.send_timeout(msg, t);
        check_timeout(&r, start, t, "send_timeout");
        if let Err(Error::MessageTooLarge { len, max, .. }) = &r {
            assert_eq!((*len, *max), (msg.len(), self.max_of(s)), "MessageTooLarge");
        }
        if self.clean {
            let want = self.model.send(s, msg);
            assert_eq!(got(&r), want, "send of {} bytes from end {s}", msg.len());
        }
    }

    /// Checks a received message (or outcome) on end `s` against the model
    /// and consumes it there. `buf`: the `recv_into` buffer size.
    fn received(&mut self, s: usize, r: &Result<Vec<u8>>, buf: Option<usize>, what: &str) {
        if let Ok(v) = r {
            assert!(v.len() <= self.max_of(s), "{what}: {} bytes", v.len());
            if let Some(b) = buf {
                assert!(v.len() <= b, "{what}: {} bytes into {b}", v.len());
            }
        }
        if !self.clean {
            return;
        }
        let (want, msg) = self.model.recv(s, buf);
        assert_eq!(got(r), want, "{what} on end {s}; model {:?}", self.model);
        if let Ok(v) = r {
            assert_eq!(Some(v), msg.as_ref(), "{what} on end {s}: wrong bytes");
            self.model.rings[1 - s].consume_front();
        }
    }

    fn recv(&mut self, s: usize, t: Duration) {
        let Some(end) = self.ends[s].as_mut() else {
            return;
        };
        let start = Instant::now();
        let r = end.recv_timeout(t);
        check_timeout(&r, start, t, "recv_timeout");
        self.received(s, &r, None, "recv_timeout");
    }

    fn recv_into(&mut self, s: usize, size: u8, t: Duration) {
        let max = self.max_of(s);
        let Some(end) = self.ends[s].as_mut() else {
            return;
        };
        let n = if size < 128 {
            usize::from(size) % (max + 1)
        } else {
            max + usize::from(size - 128)
        };
        // Poisoned, so that bytes not written are told from bytes written.
        let mut buf = vec![0xa5u8; n];
        let start = Instant::now();
        let r = end.recv_into_timeout(&mut buf, t);
        check_timeout(&r, start, t, "recv_into_timeout");
        let r = r.map(|k| {
            assert!(k <= n, "recv_into_timeout: {k} bytes into {n}");
            buf[..k].to_vec()
        });
        self.received(s, &r, Some(n), "recv_into_timeout");
    }

    fn poll(&mut self, s: usize, t: Duration) {
        let Some(end) = self.ends[s].as_mut() else {
            return;
        };
        let start = Instant::now();
        let r = end.poll(t);
        if r.as_ref().is_ok_and(|&ready| !ready) {
            let e = start.elapsed();
            assert!(e >= t, "poll: false after {e:?}, before its {t:?}");
        }
        if !self.clean {
            return;
        }
        let (want, _) = self.model.recv(s, None);
        let seen = match &r {
            Ok(true) => Got::Ok,
            Ok(false) => Got::Timeout,
            Err(_) => got(&r),
        };
        assert_eq!(seen, want, "poll on end {s}; model {:?}", self.model);
    }

    /// A nested operation on end `o` while the other end holds a grant or
    /// a reference.
    fn nested(&mut self, o: usize, n: Nested, other: &mut Option<RawPipe<'_>>) {
        let Some(end) = other.as_mut() else {
            if let Nested::Scribble(e) = n {
                self.edit(e, true);
            }
            return;
        };
        match n {
            Nested::Nothing => {}
            Nested::Send { len } => {
                let max = self.max_of(o);
                let len = usize::from(len) % (max + 3);
                let cap = self.shapes[o].map_or(0, |x| x.cap);
                if len <= max && record_len(len) > cap {
                    return; // would stream: not without a receiver
                }
                let msg = self.next_message(len);
                let r = end.send_timeout(&msg, Duration::ZERO);
                if self.clean {
                    let want = self.model.send(o, &msg);
                    assert_eq!(got(&r), want, "nested send from end {o}");
                }
            }
            Nested::Recv => {
                let r = end.recv_timeout(Duration::ZERO);
                self.received(o, &r, None, "nested recv");
            }
            Nested::Poll => {
                let r = end.poll(Duration::ZERO);
                if self.clean {
                    let (want, _) = self.model.recv(o, None);
                    let seen = match &r {
                        Ok(true) => Got::Ok,
                        Ok(false) => Got::Timeout,
                        Err(_) => got(&r),
                    };
                    assert_eq!(seen, want, "nested poll on end {o}");
                }
            }
            Nested::Scribble(e) => self.edit(e, true),
        }
    }

    fn recv_ref(&mut self, s: usize, t: Duration, then: Nested) {
        let mut ends = std::mem::take(&mut self.ends);
        let (mine, other) = pair(&mut ends, s);
        if let Some(end) = mine.as_mut() {
            let start = Instant::now();
            let r = end.recv_ref_timeout(t);
            check_timeout(&r, start, t, "recv_ref_timeout");
            let copy = r.as_ref().map(|g| g.to_vec()).map_err(|e| clone_err(e));
            self.received_ref(s, &copy);
            if let Ok(g) = r {
                // Whether the message is read in place (consumed on drop) or
                // was copied out (consumed already).
                let in_place = self.clean && {
                    let ring = &self.model.rings[1 - s];
                    let at = (ring.head + 4) % self.model.cap;
                    g.len() as u64 <= self.model.cap - at
                };
                if self.clean && !in_place {
                    self.model.rings[1 - s].consume_front();
                }
                self.nested(1 - s, then, other);
                // Touch every byte (ASan checks the bounds).
                let sum: u64 = g.iter().map(|&x| u64::from(x)).sum();
                std::hint::black_box(sum);
                if self.clean {
                    assert_eq!(&*g, &copy.as_ref().unwrap()[..], "a held RecvRef changed");
                }
                drop(g);
                if self.clean && in_place {
                    self.model.rings[1 - s].consume_front();
                }
            }
        }
        self.ends = ends;
    }

    /// Like `received` for a reference, without consuming in the model.
    fn received_ref(&mut self, s: usize, r: &Result<Vec<u8>>) {
        if let Ok(v) = r {
            assert!(v.len() <= self.max_of(s), "recv_ref: {} bytes", v.len());
        }
        if !self.clean {
            return;
        }
        let (want, msg) = self.model.recv(s, None);
        assert_eq!(got(r), want, "recv_ref on end {s}; model {:?}", self.model);
        if let Ok(v) = r {
            assert_eq!(Some(v), msg.as_ref(), "recv_ref on end {s}: wrong bytes");
        }
    }

    fn reserve(&mut self, s: usize, len: u16, t: Duration, then: Nested, finish: Finish) {
        let max = self.max_of(s);
        let len = usize::from(len) % (max + 3);
        let data = self.next_message(len);
        let mut ends = std::mem::take(&mut self.ends);
        let (mine, other) = pair(&mut ends, s);
        if let Some(end) = mine.as_mut() {
            let start = Instant::now();
            let r = end.reserve_timeout(len, t);
            check_timeout(&r, start, t, "reserve_timeout");
            if let Err(Error::MessageTooLarge { len: l, max: m, .. }) = &r {
                assert_eq!((*l, *m), (len, max), "reserve: MessageTooLarge");
            }
            if self.clean {
                let want = self.model.reserve(s, len);
                assert_eq!(
                    got(&r),
                    want,
                    "reserve of {len} on end {s}; model {:?}",
                    self.model
                );
            }
            if let Ok(mut g) = r {
                assert_eq!(g.len(), len, "a grant of {} bytes for {len}", g.len());
                g.copy_from_slice(&data);
                self.nested(1 - s, then, other);
                if self.clean {
                    assert_eq!(&*g, &data[..], "a held grant's bytes changed");
                }
                let sent = match finish {
                    Finish::Commit => {
                        g.commit();
                        Some(len)
                    }
                    Finish::CommitLen(n) => {
                        let n = usize::from(n) % (len + 2);
                        g.commit_len(n);
                        Some(n.min(len))
                    }
                    Finish::Abandon => {
                        drop(g);
                        None
                    }
                };
                if let (true, Some(n)) = (self.clean, sent) {
                    self.model.rings[s].push_msg(data[..n].to_vec());
                }
            }
        }
        self.ends = ends;
    }

    /// A send of `len` bytes from end `s` that may need streaming.
    fn send_any(&mut self, s: usize, len: u16, us: Option<u16>, how: u8) {
        let max = self.max_of(s);
        let Some(shape) = self.shapes[s] else {
            return;
        };
        if self.ends[s].is_none() {
            return;
        }
        let len = usize::from(len) % (max + 3);
        let msg = self.next_message(len);
        let t = self.timeout(us);
        let streams = len <= max && record_len(len) > shape.cap;
        // Inline when it cannot block past its timeout: it fits, or it
        // fails before it looks for room.
        let fails_early = self.clean && self.model.send_pre(s, len).is_some();
        if !streams || fails_early {
            if streams {
                // A failing streamed send, checked like a whole one.
                let end = self.ends[s].as_mut().expect("checked");
                let r = end.send_timeout(&msg, t);
                let want = self.model.send_pre(s, len).expect("fails early");
                assert_eq!(got(&r), want, "streamed send of {len} from end {s}");
            } else {
                self.send(s, &msg, t);
            }
            return;
        }
        // Streaming needs a receiver; a dirty pipe could keep one from ever
        // finishing, so the receiving end is dropped after STREAM_WALL.
        if self.ends[1 - s].is_none() || self.streams >= MAX_STREAMS {
            return;
        }
        self.streams += 1;
        self.stream(s, msg, t, how);
    }

    fn stream(&mut self, s: usize, msg: Vec<u8>, t: Duration, how: u8) {
        let r = 1 - s;
        let mut tx = self.ends[s].take().expect("checked");
        let free_before = self.model.rings[s].free(self.model.cap);
        let tail_before = self.model.rings[s].tail;
        let rx_max = self.max_of(r);
        let mut big_got = false;
        let mut dropped_rx = false;
        let clean = self.clean;
        let msg = &msg[..];
        let (tx, res) = std::thread::scope(|sc| {
            let h = sc.spawn(move || {
                let start = Instant::now();
                let res = tx.send_timeout(msg, t);
                check_timeout(&res, start, t, "streamed send_timeout");
                (tx, res)
            });
            let start = Instant::now();
            while !big_got {
                // Whether the send had ended before this round's receive
                // began: then all its bytes are in the ring. (`is_finished`
                // may load with `Relaxed`; the fence makes that load pair
                // with the thread's last release, the drop of its share of
                // the result, so that this receive sees those bytes.)
                let finished = h.is_finished();
                fence(Ordering::Acquire);
                // The wall is looked at only while the send still runs, and
                // the decision is acted on at once: a send that ends after
                // this look is cut off by the drop, not mistaken for one
                // that ended in time (the drop marks the run dirty).
                if !finished && !clean && start.elapsed() >= STREAM_WALL {
                    // Stalled: dropping the receiving end must end the send.
                    self.ends[r] = None;
                    dropped_rx = true;
                    break;
                }
                let rx = self.ends[r].as_mut().expect("present");
                let got_now: Result<Vec<u8>> = match how % 3 {
                    0 => rx.recv_timeout(STREAM_RECV),
                    1 => {
                        let mut buf = vec![0u8; rx_max];
                        rx.recv_into_timeout(&mut buf, STREAM_RECV).map(|k| {
                            assert!(k <= rx_max, "recv_into: {k} bytes into {rx_max}");
                            buf.truncate(k);
                            buf
                        })
                    }
                    _ => rx.recv_ref_timeout(STREAM_RECV).map(|g| g.to_vec()),
                };
                match &got_now {
                    Ok(v) => {
                        assert!(v.len() <= rx_max, "streamed recv: {} bytes", v.len());
                        if clean {
                            let ring = &mut self.model.rings[s];
                            ring.peeked();
                            match ring.front() {
                                Some(m) => {
                                    assert_eq!(v, m, "streamed recv: a queued message");
                                    ring.consume_front();
                                }
                                None => {
                                    assert!(v == msg, "streamed recv: not the streamed message");
                                    big_got = true;
                                }
                            }
                        }
                    }
                    Err(Error::Timeout { .. }) => {
                        if clean {
                            let ring = &mut self.model.rings[s];
                            ring.peeked();
                            assert!(
                                ring.front().is_none(),
                                "streamed recv: Timeout with a message queued"
                            );
                        }
                        if finished {
                            break;
                        }
                    }
                    Err(e) => {
                        assert!(!clean, "streamed recv: {e}");
                        break;
                    }
                }
            }
            if !big_got && !dropped_rx && !h.is_finished() {
                // A receive failed while the send ran (only a dirty pipe
                // gets here: a clean one's errors fail above); the send may
                // wait for ever for room: cut it off.
                assert!(!clean, "a clean stream's receive loop ended early");
                self.ends[r] = None;
                dropped_rx = true;
            }
            h.join().expect("the streaming thread panicked")
        });
        self.ends[s] = Some(tx);
        if dropped_rx {
            // The stream is cut: what the ring holds is unknown now.
            self.model.closed[r] = true;
            // (The send may still have finished Ok just before the drop.)
            self.clean = false;
            drop(res);
            return;
        }
        if !clean {
            return;
        }
        match got(&res) {
            Got::Ok => {
                // The loop ended on a receive that found nothing after the
                // send had ended.
                assert!(big_got, "a streamed send returned Ok; the message was lost");
                let ring = &mut self.model.rings[s];
                assert!(ring.recs.is_empty(), "streamed: records left {ring:?}");
                ring.tail = tail_before + record_len(msg.len());
                ring.head = ring.tail;
            }
            Got::Timeout => {
                assert!(!big_got, "a streamed send timed out, but its message came");
                assert!(free_before < 4, "a streamed send timed out with room");
            }
            g => panic!("streamed send: {g:?}"),
        }
    }

    fn query(&mut self, s: usize) {
        let Some(end) = self.ends[s].as_mut() else {
            return;
        };
        let _ = (end.can_send(), end.can_recv(), end.spin());
        let gone = end.is_disconnected();
        if self.clean {
            assert_eq!(end.can_send(), has_ring(self.model.dir, s), "can_send");
            assert_eq!(end.can_recv(), has_ring(self.model.dir, 1 - s), "can_recv");
            assert_eq!(gone, self.model.closed[1 - s], "is_disconnected on end {s}");
        }
    }

    fn run_ops(&mut self, ops: &[Op]) {
        let side = |b: bool| usize::from(b);
        for op in ops.iter().take(MAX_OPS) {
            match *op {
                Op::Send {
                    side: b,
                    len,
                    us,
                    how,
                } => self.send_any(side(b), len, us, how),
                Op::Recv { side: b, us } => {
                    let t = self.timeout(us);
                    self.recv(side(b), t);
                }
                Op::RecvInto { side: b, size, us } => {
                    let t = self.timeout(us);
                    self.recv_into(side(b), size, t);
                }
                Op::RecvRef { side: b, us, then } => {
                    let t = self.timeout(us);
                    self.recv_ref(side(b), t, then);
                }
                Op::Reserve {
                    side: b,
                    len,
                    us,
                    then,
                    finish,
                } => {
                    let t = self.timeout(us);
                    self.reserve(side(b), len, t, then, finish);
                }
                Op::Poll { side: b, us } => {
                    let t = self.timeout(us);
                    self.poll(side(b), t);
                }
                Op::Query { side: b } => self.query(side(b)),
                Op::Close { side: b } => {
                    if self.ends[side(b)].take().is_some() {
                        self.model.closed[side(b)] = true;
                    }
                }
                Op::SetSpin { side: b, spin } => {
                    if let Some(end) = self.ends[side(b)].as_ref() {
                        let sp = match spin % 3 {
                            0 => Spin::Adaptive,
                            1 => Spin::Never,
                            // (`UpTo(0)` is `Never`.)
                            _ => Spin::UpTo(Duration::from_micros(1 + u64::from(spin) % 50)),
                        };
                        end.set_spin(sp);
                        assert_eq!(end.spin(), sp, "spin()");
                    }
                }
                Op::Scribble(e) => self.edit(e, true),
            }
            self.check_invariants();
        }
        // Drain: what is left comes out in order, once.
        for s in 0..2 {
            for _ in 0..64 {
                let Some(end) = self.ends[s].as_mut() else {
                    break;
                };
                let r = end.recv_timeout(Duration::ZERO);
                let stop = r.is_err();
                self.received(s, &r, None, "drain");
                if stop {
                    break;
                }
            }
        }
        if self.clean {
            for s in 0..2 {
                if has_ring(self.model.dir, s) && self.ends[1 - s].is_some() {
                    assert!(
                        self.model.rings[s].front().is_none(),
                        "drain left messages behind; model {:?}",
                        self.model
                    );
                }
            }
        }
        // Drop end 1 before end 0 (as declared), then the region.
        self.ends[1] = None;
        self.ends[0] = None;
    }
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::Timeout { origin } => Error::Timeout { origin: *origin },
        Error::Disconnected { origin } => Error::Disconnected { origin: *origin },
        Error::Full { origin } => Error::Full { origin: *origin },
        Error::Empty { origin } => Error::Empty { origin: *origin },
        Error::MessageTooLarge { len, max, origin } => Error::MessageTooLarge {
            len: *len,
            max: *max,
            origin: *origin,
        },
        Error::BufferTooSmall { needed, origin } => Error::BufferTooSmall {
            needed: *needed,
            origin: *origin,
        },
        Error::InvalidArgument(s) => Error::InvalidArgument(s.clone()),
        e => Error::Corrupted {
            name: String::new(),
            detail: format!("(other) {e}"),
        },
    }
}

fuzz_target!(|input: Input| {
    probe();
    match input.mode {
        Mode::Init {
            capacity,
            max_message,
            direction,
            slack,
            pre,
        } => {
            let dir = match direction % 4 {
                1 => Direction::CreatorSends,
                2 => Direction::OpenerSends,
                _ => Direction::Duplex,
            };
            let layout = PipeLayout {
                capacity: 64 << (capacity % 4),
                max_message: usize::from(max_message % 1100),
                direction: dir,
            };
            let need = RawPipe::required_size(&layout).expect("small layouts fit");
            let region = Region::new(need + usize::from(slack % 129));
            // SAFETY: the region is ours, 64-aligned, long enough, outlives
            // every end (the run, which holds them, is dropped first) and is
            // used only through the ends and `Region::write` between calls.
            let e0 =
                unsafe { RawPipe::init_in(region.ptr, region.len(), &layout) }.expect("init_in");
            let mut run = Run {
                region: &region,
                shapes: [Some(shape(&e0)), None],
                ends: [Some(e0), None],
                model: Model {
                    rings: Default::default(),
                    closed: [false; 2],
                    cap: layout.capacity as u64,
                    max: layout.max_message,
                    dir,
                },
                clean: true,
                budget_us: TIMEOUT_BUDGET_US,
                seq: 0,
                streams: 0,
            };
            for e in pre.iter().take(16) {
                run.edit(*e, false);
            }
            // SAFETY: as above.
            match unsafe { RawPipe::attach(region.ptr, region.len()) } {
                Ok(e1) => {
                    let sh = shape(&e1);
                    if run.clean {
                        assert_eq!(
                            (sh.cap, sh.max, sh.dir),
                            (run.model.cap, run.model.max, dir),
                            "end 1 attached with another shape"
                        );
                    }
                    run.shapes[1] = Some(sh);
                    run.ends[1] = Some(e1);
                }
                Err(e) => {
                    assert!(!run.clean, "attach over a fresh pipe failed: {e}");
                    run.model.closed[1] = true;
                }
            }
            run.run_ops(&input.ops);
        }
        Mode::Raw {
            len,
            offset,
            fill,
            free_end,
            edits,
        } => {
            let len = usize::from(len) % 4096;
            let offset = usize::from(offset % 64).min(len);
            let region = Region::new(len);
            if !fill.is_empty() {
                for i in 0..len {
                    region.write(i, 1, u64::from(fill[i % fill.len()]));
                }
            }
            let mut run = Run {
                region: &region,
                ends: [None, None],
                shapes: [None, None],
                model: Model {
                    rings: Default::default(),
                    closed: [true; 2],
                    cap: 64,
                    max: 0,
                    dir: Direction::Duplex,
                },
                clean: false,
                budget_us: TIMEOUT_BUDGET_US,
                seq: 0,
                streams: 0,
            };
            for e in edits.iter().take(16) {
                run.edit(*e, false);
            }
            if free_end && offset + stamp_at(1) + 8 <= len {
                region.write(offset + stamp_at(1), 8, 0);
            }
            // SAFETY: `offset <= len`: the sub-region lies in the region,
            // which outlives the end and is used only through it and edits.
            let p = unsafe { region.ptr.add(offset) };
            // SAFETY: as above.
            let e1 = unsafe { RawPipe::attach(p, len - offset) };
            if offset % 64 != 0 {
                assert!(e1.is_err(), "attach at a misaligned address succeeded");
                return;
            }
            let Ok(e1) = e1 else { return };
            let sh = shape(&e1);
            run.model.cap = sh.cap;
            run.model.max = sh.max;
            run.model.dir = sh.dir;
            run.shapes[1] = Some(sh);
            run.ends[1] = Some(e1);
            run.run_ops(&input.ops);
        }
    }
});
