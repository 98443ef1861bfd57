//! `RawQueue` on a 64-aligned heap region, driven by an arbitrary sequence
//! of operations through two handles (as two processes would), with
//! scribbles over the shared bytes, checked against a `VecDeque` model.
//!
//! # Modes
//!
//! - `Init`: `init_in` a queue of a fuzzer-chosen shape, apply `pre` edits,
//!   attach handle A, apply `mid` edits, attach handle B (if B's attach
//!   fails, its operations go to A), then run the operations.
//! - `Raw`: fill a region of any length and alignment offset with fuzzer
//!   bytes (cycled), apply edits, attach over it. A misaligned or short
//!   region must be an `Err`; whatever attaches is then driven as above.
//!
//! # What is checked
//!
//! While nothing has been changed in the region except by the queue itself
//! ("clean"), every result is checked exactly against the model (see
//! [`Model`]): FIFO order, `Empty`/`Full` only when the documented
//! semantics allow them, `len`/`is_empty`/`is_full` within what the model
//! allows, `Closed` after `close`, `MessageTooLarge`/`BufferTooSmall` with
//! the right numbers, and no `Corrupted` at all. A scribble or edit that
//! changes only *configuration* words (slot count, capacity, maximum
//! message, stride; found by probing, see [`Geometry`]) after both handles
//! attached keeps the run clean: the handles validated them at attach and
//! must not read them again.
//!
//! Once anything else was changed ("dirty"), only the invariants that hold
//! for any bytes are checked: no panic (any panic is a crash), no
//! out-of-bounds access (ASan), no hang (libFuzzer's `-timeout`), every
//! length returned is within the buffer and `max_message`, `capacity()` and
//! `max_message()` never change after attach, `len() <= capacity()`, and a
//! `Timeout` never comes before its duration.
//!
//! # Roles
//!
//! Handles A and B get a role at the start (`Init::roles`), and up to
//! `POOL` more handles are attached, given roles, used and dropped by the
//! operations (see `src/raw/queue/links.rs`). While clean, the model
//! (`Links`) says exactly when `is_disconnected` is true, when a
//! receive-only handle's get must say `Disconnected` (a sender has been,
//! no handle that sends is left, the queue is not closed, nothing is
//! queued, reserved, given back or leased) and when it may, and when a
//! send-only handle's put must. Dirty, role calls are only "`Ok` or an
//! error, never a panic".
//!
//! # Known defects
//!
//! `QUEUE_FUZZ_LENIENT` (comma-separated tags) relaxes the model for
//! defects that are already filed, so that the fuzzer can look past them:
//! see [`Lenient`]. Unset, every check is on.
#![no_main]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::{GetGrant, Lease, PutGrant, QueueLayout, QueueRole, RawQueue};
use shmkit::{Error, Result};

/// Operations per input.
const MAX_OPS: usize = 96;
/// Handles attached by the operations, at most at once.
const POOL: usize = 3;
/// Microseconds of timeouts per input, in all (keeps executions fast).
const TIMEOUT_BUDGET_US: u64 = 1_000;
/// The slot header size assumed to find slot headers for targeted edits
/// (`SlotHdr` in `src/raw/queue.rs`). A wrong guess only aims edits worse.
const HDR_GUESS: usize = 16;

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
        assert!(at + width <= self.len());
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
        assert!(at + width <= self.len());
        let old = self.read(at, width);
        let b = v.to_le_bytes();
        for (i, x) in b.iter().enumerate().take(width) {
            // SAFETY: in bounds (asserted). The queue accesses these bytes
            // only through atomics, and no queue call runs concurrently: this
            // is another process's plain store between two of our calls.
            unsafe { self.ptr.add(at + i).write_volatile(*x) };
        }
        old != self.read(at, width)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; every handle on it
        // has been dropped (they borrow the region).
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

// ---- where things are ----------------------------------------------------

/// What probing a reference queue (capacity 3, max_message 40: 4 slots of
/// stride 64) told us about the control block: which 8-byte words are
/// configuration (hold 4, 3, 40 or 64 and make `attach` fail when set to 0
/// or `u64::MAX`), and which are `tail` and `head` (the words that go from
/// 0 to 1 on the first put and the first get).
#[derive(Debug, Default)]
struct Geometry {
    ctl_size: usize,
    config: Vec<usize>,
    slots_at: Option<usize>,
    stride_at: Option<usize>,
    tail_at: Option<usize>,
    head_at: Option<usize>,
}

fn geometry() -> &'static Geometry {
    static G: OnceLock<Geometry> = OnceLock::new();
    G.get_or_init(probe_geometry)
}

fn probe_geometry() -> Geometry {
    let layout = QueueLayout {
        capacity: 3,
        max_message: 40,
    };
    let len = RawQueue::required_size(&layout).expect("reference size");
    let ctl_size = len - 4 * 64;
    let r = Region::new(len);
    let mut g = Geometry {
        ctl_size,
        ..Geometry::default()
    };
    // SAFETY: the region is ours, 64-aligned, `len` bytes, and outlives q.
    drop(unsafe { RawQueue::init_in(r.ptr, len, &layout) }.expect("reference init"));
    for at in (0..ctl_size).step_by(8) {
        let orig = r.read(at, 8);
        if ![4, 3, 40, 64].contains(&orig) {
            continue;
        }
        let mut is_config = false;
        for x in [0, u64::MAX] {
            r.write(at, 8, x);
            // SAFETY: as above.
            is_config |= unsafe { RawQueue::attach(r.ptr, len) }.is_err();
            r.write(at, 8, orig);
        }
        if is_config {
            g.config.push(at);
            match orig {
                4 => g.slots_at = Some(at),
                64 => g.stride_at = Some(at),
                _ => {}
            }
        }
    }
    let snap =
        |r: &Region| -> Vec<u64> { (0..ctl_size).step_by(8).map(|at| r.read(at, 8)).collect() };
    let one_up = |a: &[u64], b: &[u64]| -> Option<usize> {
        let v: Vec<usize> = (0..a.len()).filter(|&i| a[i] == 0 && b[i] == 1).collect();
        (v.len() == 1).then(|| v[0] * 8)
    };
    // SAFETY: as above.
    let q = unsafe { RawQueue::attach(r.ptr, len) }.expect("reference attach");
    let s0 = snap(&r);
    q.try_put(b"x").expect("reference put");
    let s1 = snap(&r);
    q.try_get().expect("reference get");
    let s2 = snap(&r);
    drop(q);
    g.tail_at = one_up(&s0, &s1);
    g.head_at = one_up(&s1, &s2);
    g
}

/// Slot count and stride of the queue in `r`, read from the configuration
/// words (`None` if they look wrong or were not found).
fn slot_geometry(r: &Region) -> Option<(usize, usize)> {
    let g = geometry();
    if g.ctl_size > r.len() {
        return None;
    }
    let slots = r.read(g.slots_at?, 8) as usize;
    let stride = r.read(g.stride_at?, 8) as usize;
    let ok = slots >= 2
        && stride >= HDR_GUESS
        && slots.checked_mul(stride)?.checked_add(g.ctl_size)? <= r.len();
    ok.then_some((slots, stride))
}

fn in_config(at: usize, width: usize) -> bool {
    let g = geometry();
    (at..at + width).all(|b| g.config.iter().any(|&c| (c..c + 8).contains(&b)))
}

// ---- the input -----------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    /// Any byte of the region.
    Byte(u16),
    /// Any 8-aligned word of the region.
    Word(u16),
    /// A configuration word (see `Geometry`).
    Config(u8),
    /// An 8-aligned word of the control block.
    Ctl(u8),
    /// A slot's state word.
    SlotState(u8),
    /// A slot's 32-bit length.
    SlotLen(u8),
    Head,
    Tail,
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
        capacity: u8,
        max_message: u8,
        /// Extra bytes after the queue (`% 129`).
        slack: u8,
        pre: Vec<Edit>,
        mid: Vec<Edit>,
        /// A's role (`% 3`: both, sender, receiver), and B's (`/ 3 % 3`).
        roles: u8,
    },
    Raw {
        /// Region length, `% 8192`.
        len: u16,
        /// Offset of the attach pointer from the 64-aligned start, `% 64`.
        offset: u8,
        fill: Vec<u8>,
        edits: Vec<Edit>,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    TryPut {
        b: bool,
        len: u8,
    },
    PutTimeout {
        b: bool,
        len: u8,
        us: u16,
    },
    TryGet {
        b: bool,
    },
    GetTimeout {
        b: bool,
        us: u16,
    },
    /// `try_get_into` with a buffer of `size` (`< 128`: `size % (max + 1)`;
    /// else `max + size - 128`).
    GetInto {
        b: bool,
        size: u8,
    },
    Reserve {
        b: bool,
        len: u8,
    },
    Commit {
        i: u8,
    },
    CommitLen {
        i: u8,
        len: u8,
    },
    /// Drop a reservation uncommitted.
    Abandon {
        i: u8,
    },
    GetRef {
        b: bool,
    },
    DropRef {
        i: u8,
    },
    /// `try_get_lease` (`us == 0`) or `get_lease_timeout`.
    GetLease {
        b: bool,
        us: u16,
    },
    Ack {
        i: u8,
    },
    Nack {
        i: u8,
    },
    /// Drop a lease without ack (gives it back, as `nack` does).
    DropLease {
        i: u8,
    },
    Join {
        b: bool,
        us: u16,
    },
    Close {
        b: bool,
    },
    Query {
        b: bool,
    },
    Scribble(Edit),
    /// Attach another handle (a pooled one, at most [`POOL`]) and give it
    /// the role `role % 3` (as for `Init::roles`; 0 leaves it both-ways).
    Open {
        role: u8,
    },
    /// `set_role` on pooled handle `k` (`role % 3`, as for `Init::roles`).
    SetRole {
        k: u8,
        role: u8,
    },
    /// Drop pooled handle `k`.
    Leave {
        k: u8,
    },
    /// `try_put` of `len` bytes (`put`) or `try_get` on pooled handle `k`.
    Pooled {
        k: u8,
        put: bool,
        len: u8,
    },
    /// `is_disconnected` of A (`k % (2 + pooled) == 0`), B (1) or a
    /// pooled handle.
    IsDisconnected {
        k: u8,
    },
}

/// With `QUEUE_FUZZ_TRACE` set, says on stderr the first time each role
/// case is reached in a clean run (to see that a run got there).
fn reached(what: &'static str) {
    static SEEN: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());
    static TRACE: OnceLock<bool> = OnceLock::new();
    if !*TRACE.get_or_init(|| std::env::var_os("QUEUE_FUZZ_TRACE").is_some()) {
        return;
    }
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&what) {
        seen.push(what);
        eprintln!("queue_ops: reached {what}");
    }
}

fn role_of(x: u8) -> QueueRole {
    match x % 3 {
        0 => QueueRole::Both,
        1 => QueueRole::Sender,
        _ => QueueRole::Receiver,
    }
}

fn sends(r: QueueRole) -> bool {
    r != QueueRole::Receiver
}

fn receives(r: QueueRole) -> bool {
    r != QueueRole::Sender
}

/// Roles and disconnect, as `src/raw/queue/links.rs` promises them for
/// handles of one live process: `EVER_SENDER` is set by the first handle
/// made send-only (`ever_send`), and "no sender" means no live handle
/// whose role includes sending (a both-ways handle counts, and every
/// handle counts from its attach, which takes its entry, to its drop).
#[derive(Debug, Default, Clone)]
struct Links {
    ever_send: bool,
    ever_recv: bool,
    /// Live handles whose role sends (`Sender` or `Both`).
    senders: usize,
    /// Live handles whose role receives.
    receivers: usize,
}

impl Links {
    fn join(&mut self, r: QueueRole) {
        self.senders += usize::from(sends(r));
        self.receivers += usize::from(receives(r));
        self.ever_send |= r == QueueRole::Sender;
        self.ever_recv |= r == QueueRole::Receiver;
    }

    fn leave(&mut self, r: QueueRole) {
        self.senders -= usize::from(sends(r));
        self.receivers -= usize::from(receives(r));
    }

    /// What `is_disconnected` says for a handle of role `r`.
    fn disconnected(&self, r: QueueRole) -> bool {
        match r {
            QueueRole::Both => false,
            QueueRole::Sender => self.ever_recv && self.receivers == 0,
            QueueRole::Receiver => self.ever_send && self.senders == 0,
        }
    }

    /// Whether a put on a handle of role `r` is told every receiver has
    /// gone (only a send-only handle is).
    fn put_gone(&self, r: QueueRole) -> bool {
        r == QueueRole::Sender && self.disconnected(r)
    }

    /// Whether a get on a handle of role `r` sees every sender gone (only
    /// a receive-only handle does; whether it says so depends on what is
    /// left, see `Model::check_get_as`).
    fn get_gone(&self, r: QueueRole) -> bool {
        r == QueueRole::Receiver && self.disconnected(r)
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: Mode,
    ops: Vec<Op>,
}

// ---- known defects ---------------------------------------------------------

/// Relaxations for filed defects (`QUEUE_FUZZ_LENIENT=15,2b`): each lets
/// the model accept what the defect makes the queue do, so that the fuzzer
/// finds other things.
#[derive(Debug, Default)]
struct Lenient {
    /// Issue 14 #9: `head`/`tail` near 2^64 overflow `t + 1` and the like
    /// (a panic in debug and fuzz builds). Edits keep both below 2^62.
    small_indices: bool,
    /// Issue 14 #2b: a reservation abandoned while an earlier position is
    /// still unread leaves `head` behind it, which later wedges the queue.
    /// Only the reservation at the head (the model's first entry) is
    /// dropped uncommitted; any other is committed instead.
    abandon_at_head_only: bool,
}

fn lenient() -> &'static Lenient {
    static L: OnceLock<Lenient> = OnceLock::new();
    L.get_or_init(|| {
        let v = std::env::var("QUEUE_FUZZ_LENIENT").unwrap_or_default();
        let has = |t: &str| v.split(',').any(|x| x.trim() == t);
        Lenient {
            small_indices: has("9"),
            abandon_at_head_only: has("2b"),
        }
    })
}

// ---- the model -------------------------------------------------------------

#[derive(Debug, Clone)]
enum Entry {
    /// An open reservation (a `PutGrant` we hold), by id.
    Reserved(u64),
    Committed(Vec<u8>),
    /// A reservation dropped uncommitted that no get has stepped over yet
    /// (it takes no room, but keeps its slot: see `RawQueue::slots`).
    Abandoned,
}

/// The queue as one process alone must see it, in position (claim) order.
///
/// Semantics assumed (the docs of `Queue`/`RawQueue` and issue 14):
/// - A put or reservation takes the next position; a reservation's message
///   is sent by `commit`; one dropped uncommitted sends nothing and gives
///   its room back at once (#15).
/// - A get returns the first committed message. While an open reservation
///   precedes it (a grant held open is a "genuinely stuck" claim, #14), the
///   get may instead say `Empty` (`Timeout`); it may not return anything
///   else. With no committed message, `Empty`; after `close`, `Closed`
///   once nothing is reserved (while something is, `Empty` or `Closed`).
/// - A put (or reserve) is `Full` when committed + reserved messages reach
///   the capacity; `Ok` when below it and no grant of either kind is held;
///   with a grant held, `Ok` or `Full` (a held `GetGrant` keeps its slot).
/// - `len()` is within [committed + reserved, that + held `GetGrant`s].
/// - Leases (`Lease`): a message taken under a lease is held like a
///   `GetGrant` (it keeps its slot); `ack` ends it for good; `nack` or a
///   drop puts it in `given_back`. A given-back message is delivered again
///   to a later get (of any kind) whenever the queue gets to it: when the
///   head has nothing committed, or in place at its ring position once
///   producers lap round to it, so at any time a get may return either the
///   model's front or any given-back message; with given-back messages
///   waiting and nothing committed (and no reservation open before which
///   one put again in place could wait), a get must return one of them,
///   never `Empty` or `Closed`. An acked message is never delivered again.
///   A given-back message put again in place takes room and a slot, which
///   the model does not place: while any may be (`ring_unknown`), the
///   ring-full checks are off and a put may say `Full`.
/// - `join` is `Ok` exactly when nothing is committed or reserved, no
///   lease is held and nothing is given back; else `Timeout`.
#[derive(Debug)]
struct Model {
    entries: VecDeque<Entry>,
    held_refs: usize,
    /// Leases held (also counted in `held_refs`).
    held_leases: usize,
    /// Messages given back and not yet delivered again (a multiset).
    given_back: Vec<Vec<u8>>,
    /// A given-back message may have been put again in place: the ring's
    /// occupancy is not known exactly (see the semantics above).
    ring_unknown: bool,
    closed: bool,
    capacity: usize,
    slots: usize,
    max: usize,
    links: Links,
}

/// A get's outcome, whatever the call.
#[derive(Debug)]
enum Got {
    Msg(Vec<u8>),
    TooSmall(usize),
    Empty,
    Timeout,
    Closed,
    Disconnected,
    // Read by `Debug`, in assertion messages.
    #[allow(dead_code)]
    Other(String),
}

impl Model {
    fn committed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::Committed(_)))
            .count()
    }

    fn reserved(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::Reserved(_)))
            .count()
    }

    /// Every slot of the ring holds a position: abandoned positions,
    /// which cost no capacity, have taken the spare slots too.
    fn ring_full(&self) -> bool {
        self.entries.len() >= self.slots
    }

    /// The ring is full for certain: also without the abandoned positions
    /// at the front, which any put or get may step over at any time (the
    /// model drops them only at a get).
    fn ring_surely_full(&self) -> bool {
        let lead = self
            .entries
            .iter()
            .take_while(|e| matches!(e, Entry::Abandoned))
            .count();
        self.entries.len() - lead >= self.slots
    }

    /// After any change: a given-back message may be in the ring only
    /// while some are given back, or until the abandoned positions the
    /// model kept behind it are stepped over.
    fn settle_ring(&mut self) {
        if self.given_back.is_empty() && !self.entries.iter().any(|e| matches!(e, Entry::Abandoned))
        {
            self.ring_unknown = false;
        }
    }

    /// A get on a handle of role `role`: `Disconnected` where the links
    /// allow it (else as [`check_get_any`](Model::check_get_any)). Returns
    /// whether the message was a given-back one.
    fn check_get_as(
        &mut self,
        role: QueueRole,
        got: &Got,
        buf: Option<usize>,
        timed: bool,
        what: &str,
    ) -> bool {
        // Nothing left that could still be got: no message, no position
        // reserved, nothing given back, no lease that could come back, and
        // not closed (a closed, drained queue says `Closed` first).
        let nothing_left = !self.closed
            && self.committed() == 0
            && self.reserved() == 0
            && self.given_back.is_empty()
            && self.held_leases == 0;
        let may = self.links.get_gone(role) && nothing_left;
        // Abandoned positions the model kept may still lie between head
        // and tail (the core then says `Empty`): certain only without them.
        let must = may && self.entries.is_empty();
        if matches!(got, Got::Disconnected) {
            assert!(
                may,
                "{what} on a {role:?} handle: Disconnected, but the model says no; model {self:?}"
            );
            reached(if must {
                "a get told Disconnected (certain)"
            } else {
                "a get told Disconnected (allowed)"
            });
            self.entries.clear();
            self.settle_ring();
            return false;
        }
        assert!(
            !must,
            "{what} on a {role:?} handle: got {got:?}, but every sender has gone and nothing is left; model {self:?}"
        );
        self.check_get_any(got, buf, timed, what)
    }

    /// A put (or reserve) on a handle of role `role`: `Disconnected` once
    /// every receiver has gone (after the length check, before any other),
    /// else as [`check_put`](Model::check_put).
    fn check_put_as(
        &self,
        role: QueueRole,
        len: usize,
        r: &Result<()>,
        timed: bool,
        what: &str,
    ) -> bool {
        if self.links.put_gone(role) && !self.closed && len <= self.max {
            assert!(
                matches!(r, Err(Error::Disconnected { .. })),
                "{what} of {len} bytes on a {role:?} handle: got {r:?}, but every receiver has gone; model {self:?}"
            );
            reached("a put told Disconnected");
            return false;
        }
        self.check_put(len, r, timed, what)
    }

    /// Checks a get's outcome as [`check_get`](Model::check_get) does,
    /// allowing any given-back message too (see the semantics above).
    /// Returns whether the message was a given-back one.
    fn check_get_any(&mut self, got: &Got, buf: Option<usize>, timed: bool, what: &str) -> bool {
        if self.given_back.is_empty() {
            self.check_get(got, buf, timed, what);
            self.settle_ring();
            return false;
        }
        let front = self.front().map(|(i, blocked)| {
            let Entry::Committed(m) = &self.entries[i] else {
                unreachable!()
            };
            (m.clone(), blocked)
        });
        let fits = |m: &Vec<u8>| buf.map_or(true, |b| m.len() <= b);
        let is_front = match (got, &front) {
            (Got::Msg(v), Some((m, _))) => v == m && fits(m),
            (Got::TooSmall(n), Some((m, _))) => !fits(m) && *n == m.len(),
            _ => false,
        };
        if is_front {
            self.check_get(got, buf, timed, what);
            self.settle_ring();
            return false;
        }
        let back = match got {
            Got::Msg(v) => self.given_back.iter().position(|m| m == v && fits(m)),
            Got::TooSmall(n) => self
                .given_back
                .iter()
                .position(|m| !fits(m) && m.len() == *n),
            _ => None,
        };
        match back {
            Some(k) => {
                if matches!(got, Got::Msg(_)) {
                    self.given_back.swap_remove(k);
                }
                self.ring_unknown = true;
            }
            None => {
                // Nothing delivered: only when a reservation may hold up
                // the head before all of them, or before the front.
                let not_now = if timed {
                    matches!(got, Got::Timeout)
                } else {
                    matches!(got, Got::Empty)
                };
                let blocked = front.as_ref().map_or(self.reserved() > 0, |f| f.1);
                assert!(
                    not_now && blocked,
                    "{what}: got {got:?}, but {} message(s) were given back; model {self:?}",
                    self.given_back.len()
                );
            }
        }
        self.prune_leading_abandoned();
        self.settle_ring();
        matches!(got, Got::Msg(_))
    }

    /// Positions taken, as far as room is concerned.
    fn occupied(&self) -> usize {
        self.committed() + self.reserved()
    }

    /// The first committed message: (index, whether an open reservation
    /// comes before it).
    fn front(&self) -> Option<(usize, bool)> {
        let mut blocked = false;
        for (i, e) in self.entries.iter().enumerate() {
            match e {
                Entry::Reserved(_) => blocked = true,
                Entry::Committed(_) => return Some((i, blocked)),
                Entry::Abandoned => {}
            }
        }
        None
    }

    /// Checks a get's outcome (`buf`: the buffer of a `get_into`) and
    /// applies it. `timed`: `Timeout` instead of `Empty`.
    fn check_get(&mut self, got: &Got, buf: Option<usize>, timed: bool, what: &str) {
        let not_now = |g: &Got| {
            if timed {
                matches!(g, Got::Timeout)
            } else {
                matches!(g, Got::Empty)
            }
        };
        match self.front() {
            Some((i, blocked)) => {
                let Entry::Committed(m) = &self.entries[i] else {
                    unreachable!()
                };
                let ok = match got {
                    Got::Msg(v) => v == m && buf.map_or(true, |b| m.len() <= b),
                    Got::TooSmall(n) => buf.is_some_and(|b| m.len() > b) && *n == m.len(),
                    g => blocked && not_now(g),
                };
                assert!(
                    ok,
                    "{what}: got {got:?}, but the model's front is {m:?} (blocked by a reservation: {blocked}); model {self:?}"
                );
                if !matches!(got, Got::Msg(_)) {
                    self.prune_leading_abandoned();
                }
                if let Got::Msg(_) = got {
                    // It is taken, and whatever was abandoned before it has
                    // been stepped over.
                    self.entries = std::mem::take(&mut self.entries)
                        .into_iter()
                        .enumerate()
                        .filter(|(j, e)| *j > i || (*j < i && !matches!(e, Entry::Abandoned)))
                        .map(|(_, e)| e)
                        .collect();
                }
            }
            None => {
                let ok = if self.closed && self.reserved() == 0 && self.held_leases == 0 {
                    matches!(got, Got::Closed)
                } else if self.closed && self.reserved() == 0 {
                    // A held lease may yet be given back: `Closed` is said
                    // only once none is held.
                    not_now(got)
                } else if self.closed {
                    matches!(got, Got::Closed) || not_now(got)
                } else {
                    not_now(got)
                };
                assert!(
                    ok,
                    "{what}: got {got:?}, but the model holds no committed message; model {self:?}"
                );
                self.prune_leading_abandoned();
            }
        }
    }

    /// A get that found nothing (or only a reservation) has stepped over
    /// the abandoned positions before it.
    fn prune_leading_abandoned(&mut self) {
        while matches!(self.entries.front(), Some(Entry::Abandoned)) {
            self.entries.pop_front();
        }
    }

    /// Index of the open reservation `id`.
    fn reserved_at(&self, id: u64) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| matches!(e, Entry::Reserved(x) if *x == id))
    }

    /// The reservation `id` was dropped uncommitted. At the head it moves
    /// the head on (is gone); elsewhere it waits to be stepped over.
    fn abandon(&mut self, id: u64) {
        match self.reserved_at(id) {
            Some(0) => {
                self.entries.pop_front();
            }
            // The last position: the tail moves back over it.
            Some(i) if i + 1 == self.entries.len() => {
                self.entries.pop_back();
            }
            Some(i) => self.entries[i] = Entry::Abandoned,
            None => {}
        }
    }

    /// Which outcomes a put (or reserve) of `len` bytes may have: checks
    /// `r` (`Ok(())` for success) and says whether it succeeded.
    fn check_put(&self, len: usize, r: &Result<()>, timed: bool, what: &str) -> bool {
        let full = |r: &Result<()>| {
            if timed {
                matches!(r, Err(Error::Timeout { .. }))
            } else {
                matches!(r, Err(Error::Full { .. }))
            }
        };
        let too_large = |r: &Result<()>| matches!(r, Err(Error::MessageTooLarge { len: l, max: m, .. }) if *l == len && *m == self.max);
        let closed = |r: &Result<()>| matches!(r, Err(Error::Closed { .. }));
        let grants = self.reserved() + self.held_refs + self.given_back.len();
        let may_be_full = grants > 0 || self.ring_full() || self.ring_unknown;
        let ok = if len > self.max {
            too_large(r) || (self.closed && closed(r))
        } else if self.closed {
            closed(r)
        } else if self.occupied() >= self.capacity {
            full(r)
        } else if !may_be_full {
            r.is_ok()
        } else {
            r.is_ok() || full(r)
        };
        assert!(ok, "{what} of {len} bytes: got {r:?}; model {self:?}");
        r.is_ok()
    }

    /// Checks `len()`, `is_empty()`, `is_full()`.
    fn check_counts(&self, len: usize, empty: bool, full: bool) {
        let mut lo = self.occupied();
        let mut hi = lo + self.held_refs + self.given_back.len();
        hi = hi.min(self.capacity);
        lo = lo.min(hi);
        assert!(
            (lo..=hi).contains(&len),
            "len() is {len}, the model allows {lo}..={hi}; model {self:?}"
        );
        assert!(
            !(empty && lo > 0) && !(!empty && hi == 0),
            "is_empty() is {empty}, the model allows len {lo}..={hi}; model {self:?}"
        );
        let ring = self.ring_full();
        let surely = self.ring_surely_full();
        let unknown = self.ring_unknown;
        assert!(
            !(full && hi < self.capacity && !ring && !unknown)
                && !(!full && (lo >= self.capacity || (surely && !unknown))),
            "is_full() is {full}, the model allows len {lo}..={hi} of {}; model {self:?}",
            self.capacity
        );
    }
}

// ---- the run -----------------------------------------------------------------

fn message(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (8 * (i % 8))) as u8 ^ (i / 8) as u8)
        .collect()
}

fn to_got(r: Result<Vec<u8>>) -> Got {
    match r {
        Ok(v) => Got::Msg(v),
        Err(e) => err_got(e),
    }
}

fn err_got(e: Error) -> Got {
    match e {
        Error::Empty { .. } => Got::Empty,
        Error::Timeout { .. } => Got::Timeout,
        Error::Closed { .. } => Got::Closed,
        Error::Disconnected { .. } => Got::Disconnected,
        Error::BufferTooSmall { needed, .. } => Got::TooSmall(needed),
        e => Got::Other(e.to_string()),
    }
}

struct HeldPut<'q> {
    g: PutGrant<'q>,
    id: u64,
    /// The handle's max_message (for the dirty-mode bound).
    data: Vec<u8>,
}

struct HeldRef<'q> {
    g: GetGrant<'q>,
    max: usize,
    expect: Option<Vec<u8>>,
}

struct HeldLease<'q> {
    l: Lease<'q>,
    max: usize,
    /// The message, when clean at the take.
    expect: Option<Vec<u8>>,
}

/// One handle and what it validated at attach.
struct Handle<'q> {
    q: RawQueue<'q>,
    capacity: usize,
    max: usize,
    role: QueueRole,
}

impl<'q> Handle<'q> {
    fn new(q: RawQueue<'q>) -> Handle<'q> {
        let (capacity, max) = (q.capacity(), q.max_message());
        Handle {
            q,
            capacity,
            max,
            role: QueueRole::Both,
        }
    }

    /// Gives the handle `role`; false if `set_role` failed.
    fn set_role(&mut self, role: QueueRole) -> bool {
        let ok = self.q.set_role(role).is_ok();
        if ok {
            self.role = role;
        }
        ok
    }

    /// What holds for any bytes.
    fn check_invariants(&self) {
        assert_eq!(
            self.q.capacity(),
            self.capacity,
            "capacity() changed after attach"
        );
        assert_eq!(
            self.q.max_message(),
            self.max,
            "max_message() changed after attach"
        );
        let len = self.q.len();
        assert!(
            len <= self.capacity,
            "len() {len} exceeds capacity {}",
            self.capacity
        );
    }
}

struct Run<'r> {
    region: &'r Region,
    /// Slot count and stride, for targeted edits.
    slots: Option<(usize, usize)>,
    clean: bool,
    budget_us: u64,
    seq: u64,
    /// Where handles attach (for the pooled ones).
    base: *mut u8,
    base_len: usize,
    /// A configuration word was changed (a new attach would see it).
    config_touched: bool,
}

impl Run<'_> {
    /// Applies an edit; marks the run dirty if it changed anything outside
    /// the configuration words (or anything at all when `config_ok` is
    /// false).
    /// Returns whether it changed bytes, all of them configuration words.
    fn edit(&mut self, e: Edit, config_ok: bool) -> bool {
        let len = self.region.len();
        let g = geometry();
        let word = |i: usize| -> Option<(usize, usize)> {
            let words = len / 8;
            (words > 0).then(|| ((i % words) * 8, 8))
        };
        let slot = |i: usize, off: usize, w: usize| -> Option<(usize, usize)> {
            let (slots, stride) = self.slots?;
            let at = g.ctl_size + (i % slots) * stride + off;
            (at + w <= len).then_some((at, w))
        };
        let at = match e.target {
            Target::Byte(i) => (len > 0).then(|| (usize::from(i) % len, 1)),
            Target::Word(i) => word(usize::from(i)),
            Target::Config(i) if !g.config.is_empty() => {
                Some((g.config[usize::from(i) % g.config.len()], 8))
            }
            Target::Config(i) | Target::Ctl(i) => word(usize::from(i) % (g.ctl_size / 8)),
            Target::SlotState(i) => slot(usize::from(i), 0, 8),
            Target::SlotLen(i) => slot(usize::from(i), 8, 4),
            Target::Head => g.head_at.map(|a| (a, 8)),
            Target::Tail => g.tail_at.map(|a| (a, 8)),
        };
        let Some((at, w)) = at.filter(|&(a, w)| a + w <= len) else {
            return false;
        };
        let old = self.region.read(at, w);
        let v = match e.val {
            Val::Set(v) => v,
            Val::Add(d) => old.wrapping_add(d as i64 as u64),
            Val::Xor(b) => old ^ (1u64 << (b % (8 * w as u8))),
            Val::Copy(i) => match word(usize::from(i)) {
                Some((from, _)) => self.region.read(from, 8),
                None => return false,
            },
        };
        let mut changed = self.region.write(at, w, v);
        if lenient().small_indices {
            for idx in [g.head_at, g.tail_at].into_iter().flatten() {
                if at < idx + 8 && idx < at + w && idx + 8 <= len {
                    let x = self.region.read(idx, 8);
                    self.region.write(idx, 8, x & ((1 << 62) - 1));
                    changed = true;
                }
            }
        }
        let config = in_config(at, w);
        if changed && !(config_ok && config) {
            self.clean = false;
        }
        changed && config
    }

    fn timeout(&mut self, us: u16) -> Duration {
        let t = u64::from(us % 2001).min(self.budget_us);
        self.budget_us -= t;
        Duration::from_micros(t)
    }

    fn next_message(&mut self, len: usize) -> Vec<u8> {
        self.seq += 1;
        message(self.seq, len)
    }
}

fn check_timeout<T: std::fmt::Debug>(r: &Result<T>, start: Instant, t: Duration, what: &str) {
    if let Err(Error::Timeout { .. }) = r {
        let e = start.elapsed();
        assert!(e >= t, "{what}: Timeout after {e:?}, before its {t:?}");
    }
}

fn run_ops<'q>(run: &mut Run<'_>, a: &'q Handle<'q>, b: Option<&'q Handle<'q>>, ops: &[Op]) {
    let mut model = Model {
        entries: VecDeque::new(),
        held_refs: 0,
        held_leases: 0,
        given_back: Vec::new(),
        ring_unknown: false,
        closed: a.q.is_closed(),
        capacity: a.capacity,
        slots: a.q.slots(),
        max: a.max,
        links: Links::default(),
    };
    model.links.join(a.role);
    if let Some(b) = b {
        model.links.join(b.role);
    }
    let mut pool: Vec<Handle<'q>> = Vec::new();
    if let Some(b) = b {
        if (b.capacity, b.max) != (a.capacity, a.max) {
            run.clean = false;
        }
    }
    // A clean run starts from a fresh queue, so it is empty.
    let mut puts: Vec<HeldPut<'q>> = Vec::new();
    let mut refs: Vec<HeldRef<'q>> = Vec::new();
    let mut leases: Vec<HeldLease<'q>> = Vec::new();
    let mut next_id = 0u64;
    let pick = |use_b: bool| -> &'q Handle<'q> {
        match (use_b, b) {
            (true, Some(b)) => b,
            _ => a,
        }
    };

    for op in ops.iter().take(MAX_OPS) {
        match *op {
            Op::TryPut { b, len } | Op::PutTimeout { b, len, .. } => {
                let h = pick(b);
                let len = usize::from(len) % (h.max + 3);
                let msg = run.next_message(len);
                let (r, timed) = match *op {
                    Op::PutTimeout { us, .. } => {
                        let t = run.timeout(us);
                        let start = Instant::now();
                        let r = h.q.put_timeout(&msg, t);
                        check_timeout(&r, start, t, "put_timeout");
                        (r, true)
                    }
                    _ => (h.q.try_put(&msg), false),
                };
                if let Err(Error::MessageTooLarge { max, .. }) = &r {
                    assert_eq!(*max, h.max, "MessageTooLarge names another maximum");
                    assert!(len > h.max, "MessageTooLarge for {len} <= {}", h.max);
                }
                if run.clean && !model.given_back.is_empty() {
                    model.ring_unknown = true;
                }
                if run.clean && model.check_put_as(h.role, len, &r, timed, "put") {
                    model.entries.push_back(Entry::Committed(msg));
                }
            }
            Op::TryGet { b } | Op::GetTimeout { b, .. } => {
                let h = pick(b);
                let (r, timed) = match *op {
                    Op::GetTimeout { us, .. } => {
                        let t = run.timeout(us);
                        let start = Instant::now();
                        let r = h.q.get_timeout(t);
                        check_timeout(&r, start, t, "get_timeout");
                        (r, true)
                    }
                    _ => (h.q.try_get(), false),
                };
                if let Ok(v) = &r {
                    assert!(
                        v.len() <= h.max,
                        "a get returned {} bytes, max_message {}",
                        v.len(),
                        h.max
                    );
                }
                if run.clean {
                    model.check_get_as(h.role, &to_got(r), None, timed, "get");
                }
            }
            Op::GetInto { b, size } => {
                let h = pick(b);
                let n = if size < 128 {
                    usize::from(size) % (h.max + 1)
                } else {
                    h.max + usize::from(size - 128)
                };
                // Poisoned, so that bytes not written are told from bytes
                // written.
                let mut buf = vec![0xa5u8; n];
                let r = h.q.try_get_into(&mut buf).map(|k| {
                    assert!(k <= n, "try_get_into: {k} bytes into {n}");
                    assert!(k <= h.max, "try_get_into: {k} bytes, max_message {}", h.max);
                    buf[..k].to_vec()
                });
                if run.clean {
                    model.check_get_as(h.role, &to_got(r), Some(n), false, "try_get_into");
                }
            }
            Op::Reserve { b, len } => {
                let h = pick(b);
                let len = usize::from(len) % (h.max + 3);
                let r = h.q.try_reserve(len);
                let unit = r.as_ref().map(|_| ()).map_err(clone_err);
                if let Err(Error::MessageTooLarge { max, .. }) = &r {
                    assert_eq!(*max, h.max, "MessageTooLarge names another maximum");
                }
                if run.clean && !model.given_back.is_empty() {
                    model.ring_unknown = true;
                }
                let ok = run.clean && model.check_put_as(h.role, len, &unit, false, "try_reserve");
                if let Ok(mut g) = r {
                    assert_eq!(g.len(), len, "a grant of {} bytes for {len}", g.len());
                    let data = run.next_message(len);
                    g.copy_from_slice(&data);
                    next_id += 1;
                    if ok {
                        model.entries.push_back(Entry::Reserved(next_id));
                    }
                    puts.push(HeldPut {
                        g,
                        id: next_id,
                        data,
                    });
                }
            }
            Op::Commit { i } | Op::CommitLen { i, .. } | Op::Abandon { i } => {
                if puts.is_empty() {
                    continue;
                }
                let p = puts.remove(usize::from(i) % puts.len());
                let pos = model.reserved_at(p.id);
                let mut op = *op;
                if matches!(op, Op::Abandon { .. }) && !may_abandon(run, pos) {
                    op = Op::Commit { i: 0 };
                }
                let sent = match op {
                    // A commit fails (the message is not sent) only when
                    // the claim was taken from us: never while clean.
                    Op::Commit { .. } => {
                        let r = p.g.commit();
                        assert!(r.is_ok() || !run.clean, "commit: {r:?}");
                        r.ok().map(|()| p.data)
                    }
                    Op::CommitLen { len, .. } => {
                        let n = usize::from(len).min(p.data.len());
                        let r = p.g.commit_len(usize::from(len));
                        assert!(r.is_ok() || !run.clean, "commit_len: {r:?}");
                        r.ok().map(|()| p.data[..n].to_vec())
                    }
                    _ => {
                        drop(p.g);
                        None
                    }
                };
                match (pos, sent) {
                    (Some(pos), Some(m)) => model.entries[pos] = Entry::Committed(m),
                    (Some(_), None) => model.abandon(p.id),
                    (None, _) => {}
                }
            }
            Op::GetRef { b } => {
                let h = pick(b);
                let r = h.q.try_get_ref();
                let got = match &r {
                    Ok(g) => {
                        assert!(
                            g.len() <= h.max,
                            "a GetGrant of {} bytes, max_message {}",
                            g.len(),
                            h.max
                        );
                        Got::Msg(g.to_vec())
                    }
                    Err(e) => err_got(clone_err(e)),
                };
                if run.clean {
                    model.check_get_as(h.role, &got, None, false, "try_get_ref");
                }
                if let Ok(g) = r {
                    let expect = match (run.clean, got) {
                        (true, Got::Msg(m)) => {
                            model.held_refs += 1;
                            Some(m)
                        }
                        _ => None,
                    };
                    refs.push(HeldRef {
                        g,
                        max: h.max,
                        expect,
                    });
                }
            }
            Op::DropRef { i } => {
                if refs.is_empty() {
                    continue;
                }
                let r = refs.remove(usize::from(i) % refs.len());
                drop_ref(run, &mut model, r);
            }
            Op::GetLease { b, us } => {
                let h = pick(b);
                let (r, timed) = if us == 0 {
                    (h.q.try_get_lease(), false)
                } else {
                    let t = run.timeout(us);
                    let start = Instant::now();
                    let r = h.q.get_lease_timeout(t);
                    check_timeout(&r, start, t, "get_lease_timeout");
                    (r, true)
                };
                let got = match &r {
                    Ok(l) => {
                        assert!(
                            l.len() <= h.max,
                            "a Lease of {} bytes, max_message {}",
                            l.len(),
                            h.max
                        );
                        assert!(
                            l.deliveries() >= 1 || !run.clean,
                            "a lease's deliveries is 0"
                        );
                        Got::Msg(l.to_vec())
                    }
                    Err(e) => err_got(clone_err(e)),
                };
                let back = run.clean && model.check_get_as(h.role, &got, None, timed, "get_lease");
                if let Ok(l) = r {
                    // Messages shorter than 8 bytes are not unique (`message`
                    // puts the sequence number in the first 8 bytes): two
                    // equal ones, one given back and one fresh, cannot be
                    // told apart by their bytes, so which of them this is
                    // (and so its flag) is only checked for unique ones.
                    let unique = matches!(&got, Got::Msg(m) if m.len() >= 8);
                    if run.clean && unique {
                        // A given-back message was leased before; a fresh
                        // one (not equal to any given back) was not.
                        let Got::Msg(m) = &got else { unreachable!() };
                        if back {
                            assert!(
                                l.redelivered(),
                                "a given-back message not marked redelivered"
                            );
                        } else if !model.given_back.contains(m) {
                            assert_eq!(l.deliveries(), 1, "a fresh message's first lease");
                        }
                    }
                    let expect = match (run.clean, got) {
                        (true, Got::Msg(m)) => {
                            model.held_refs += 1;
                            model.held_leases += 1;
                            Some(m)
                        }
                        _ => None,
                    };
                    leases.push(HeldLease {
                        l,
                        max: h.max,
                        expect,
                    });
                }
            }
            Op::Ack { i } | Op::Nack { i } | Op::DropLease { i } => {
                if leases.is_empty() {
                    continue;
                }
                let l = leases.remove(usize::from(i) % leases.len());
                end_lease(run, &mut model, l, *op);
            }
            Op::Join { b, us } => {
                let h = pick(b);
                let t = run.timeout(us);
                let start = Instant::now();
                let r = h.q.join_timeout(t);
                check_timeout(&r, start, t, "join_timeout");
                if run.clean {
                    let done = model.occupied() == 0
                        && model.held_leases == 0
                        && model.given_back.is_empty();
                    let ok = if done {
                        r.is_ok()
                    } else {
                        matches!(r, Err(Error::Timeout { .. }))
                    };
                    assert!(
                        ok,
                        "join_timeout: {r:?}, done by the model: {done}; model {model:?}"
                    );
                } else if let Err(e) = &r {
                    assert!(
                        matches!(e, Error::Timeout { .. } | Error::Corrupted { .. }),
                        "join_timeout: {e:?}"
                    );
                }
            }
            Op::Close { b } => {
                pick(b).q.close();
                model.closed = true;
            }
            Op::Query { b } => {
                let h = pick(b);
                let (len, empty, full, closed) =
                    (h.q.len(), h.q.is_empty(), h.q.is_full(), h.q.is_closed());
                if run.clean {
                    model.check_counts(len, empty, full);
                    assert_eq!(closed, model.closed, "is_closed()");
                }
            }
            Op::Scribble(e) => {
                run.config_touched |= run.edit(e, true);
            }
            Op::Open { role } => {
                if pool.len() >= POOL {
                    continue;
                }
                // SAFETY: `base` is where A attached: the region outlives
                // every handle and is used only through them and edits.
                match unsafe { RawQueue::attach(run.base, run.base_len) } {
                    Ok(q) => {
                        let mut h = Handle::new(q);
                        if run.config_touched || (h.capacity, h.max) != (a.capacity, a.max) {
                            run.clean = false;
                        }
                        model.links.join(h.role);
                        let new = role_of(role);
                        if new != QueueRole::Both {
                            let ok = h.set_role(new);
                            assert!(
                                ok || !run.clean,
                                "set_role({new:?}) on a clean queue failed"
                            );
                            if ok {
                                model.links.leave(QueueRole::Both);
                                model.links.join(new);
                            }
                        }
                        pool.push(h);
                    }
                    Err(e) => assert!(
                        !run.clean || run.config_touched,
                        "attach over a clean queue failed: {e}"
                    ),
                }
            }
            Op::SetRole { k, role } => {
                if pool.is_empty() {
                    continue;
                }
                let i = usize::from(k) % pool.len();
                let (old, new) = (pool[i].role, role_of(role));
                let ok = pool[i].set_role(new);
                assert!(
                    ok || !run.clean,
                    "set_role({new:?}) on a clean queue failed"
                );
                if ok {
                    model.links.leave(old);
                    model.links.join(new);
                }
            }
            Op::Leave { k } => {
                if pool.is_empty() {
                    continue;
                }
                let h = pool.swap_remove(usize::from(k) % pool.len());
                model.links.leave(h.role);
                drop(h);
            }
            Op::Pooled { k, put, len } => {
                if pool.is_empty() {
                    continue;
                }
                let h = &pool[usize::from(k) % pool.len()];
                if put {
                    let len = usize::from(len) % (h.max + 3);
                    let msg = run.next_message(len);
                    let r = h.q.try_put(&msg);
                    if run.clean && !model.given_back.is_empty() {
                        model.ring_unknown = true;
                    }
                    if run.clean && model.check_put_as(h.role, len, &r, false, "pooled try_put") {
                        model.entries.push_back(Entry::Committed(msg));
                    }
                } else {
                    let r = h.q.try_get();
                    if let Ok(v) = &r {
                        assert!(v.len() <= h.max, "a get returned {} bytes", v.len());
                    }
                    if run.clean {
                        model.check_get_as(h.role, &to_got(r), None, false, "pooled try_get");
                    }
                }
            }
            Op::IsDisconnected { k } => {
                let h = match usize::from(k) % (2 + pool.len()) {
                    0 => a,
                    1 => pick(true),
                    i => &pool[i - 2],
                };
                let d = h.q.is_disconnected();
                if run.clean {
                    if d {
                        reached("is_disconnected() true");
                    }
                    assert_eq!(
                        d,
                        model.links.disconnected(h.role),
                        "is_disconnected() of a {:?} handle; links {:?}",
                        h.role,
                        model.links
                    );
                }
            }
        }
        for h in &pool {
            h.check_invariants();
        }
        a.check_invariants();
        if let Some(b) = b {
            b.check_invariants();
        }
        if run.clean {
            for p in &puts {
                assert_eq!(&*p.g, &p.data[..], "a reservation's bytes changed");
            }
            for l in &leases {
                if let Some(m) = &l.expect {
                    assert_eq!(&*l.l, &m[..], "a held lease's bytes changed");
                }
            }
        }
    }

    // Give everything back, then drain: what is left must come out in order,
    // and the queue must then take and give a message again.
    for h in pool.drain(..) {
        model.links.leave(h.role);
    }
    let was_clean = run.clean;
    for p in puts.drain(..) {
        let pos = model.reserved_at(p.id);
        if may_abandon(run, pos) {
            drop(p.g);
            model.abandon(p.id);
        } else {
            let r = p.g.commit();
            assert!(r.is_ok() || !run.clean, "commit: {r:?}");
            if let Some(pos) = pos {
                model.entries[pos] = Entry::Committed(p.data);
            }
        }
    }
    for r in refs.drain(..) {
        drop_ref(run, &mut model, r);
    }
    for l in leases.drain(..) {
        end_lease(run, &mut model, l, Op::DropLease { i: 0 });
    }
    let limit = a.capacity + 4 + model.given_back.len();
    for _ in 0..limit {
        let r = a.q.try_get();
        let stop = !matches!(r, Ok(_));
        if let Ok(v) = &r {
            assert!(v.len() <= a.max);
        }
        if was_clean {
            model.check_get_as(a.role, &to_got(r), None, false, "drain: try_get");
        }
        if stop {
            break;
        }
    }
    if was_clean {
        assert_eq!(
            model.committed(),
            0,
            "drain left messages behind; model {model:?}"
        );
        assert!(
            model.given_back.is_empty(),
            "drain left given-back messages behind; model {model:?}"
        );
        model.check_counts(a.q.len(), a.q.is_empty(), a.q.is_full());
        if !model.closed {
            let msg = run.next_message(a.max.min(3));
            let r = a.q.try_put(&msg);
            if model.links.put_gone(a.role) {
                assert!(
                    matches!(r, Err(Error::Disconnected { .. })),
                    "drained queue, every receiver gone: try_put says {r:?}"
                );
                return;
            }
            assert!(r.is_ok(), "drained queue: try_put says {r:?}");
            let got = b.unwrap_or(a).q.try_get();
            assert_eq!(
                got.ok().as_deref(),
                Some(&msg[..]),
                "drained queue: the next message is lost"
            );
        }
    }
}

/// Whether a reservation at model index `pos` may be dropped uncommitted
/// (see `Lenient::abandon_at_head_only`).
fn may_abandon(run: &Run<'_>, pos: Option<usize>) -> bool {
    !lenient().abandon_at_head_only || !run.clean || pos == Some(0)
}

fn drop_ref(run: &Run<'_>, model: &mut Model, r: HeldRef<'_>) {
    assert!(r.g.len() <= r.max);
    // Touch every byte (ASan checks the bounds).
    let _sum: u64 = r.g.iter().map(|&x| u64::from(x)).sum();
    if let Some(m) = &r.expect {
        if run.clean {
            assert_eq!(&*r.g, &m[..], "a held GetGrant's bytes changed");
        }
        model.held_refs -= 1;
    }
    drop(r.g);
}

/// Ends a held lease: `Op::Ack`, `Op::Nack` or (any other) a drop.
fn end_lease(run: &Run<'_>, model: &mut Model, l: HeldLease<'_>, how: Op) {
    assert!(l.l.len() <= l.max);
    // Touch every byte (ASan checks the bounds).
    let _sum: u64 = l.l.iter().map(|&x| u64::from(x)).sum();
    if let (Some(m), true) = (&l.expect, run.clean) {
        assert_eq!(&*l.l, &m[..], "a held lease's bytes changed");
    }
    let r = match how {
        Op::Ack { .. } => l.l.ack(),
        Op::Nack { .. } => l.l.nack(),
        _ => {
            drop(l.l);
            Ok(())
        }
    };
    assert!(r.is_ok() || !run.clean, "ending a lease: {r:?}");
    if let Some(m) = l.expect {
        model.held_refs -= 1;
        model.held_leases -= 1;
        if !matches!(how, Op::Ack { .. }) {
            model.given_back.push(m);
        }
    }
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::Full { origin } => Error::Full { origin: *origin },
        Error::Empty { origin } => Error::Empty { origin: *origin },
        Error::Timeout { origin } => Error::Timeout { origin: *origin },
        Error::Closed { origin } => Error::Closed { origin: *origin },
        Error::Disconnected { origin } => Error::Disconnected { origin: *origin },
        Error::MessageTooLarge { len, max, origin } => Error::MessageTooLarge {
            len: *len,
            max: *max,
            origin: *origin,
        },
        Error::BufferTooSmall { needed, origin } => Error::BufferTooSmall {
            needed: *needed,
            origin: *origin,
        },
        e => Error::InvalidArgument(format!("(other) {e}")),
    }
}

fuzz_target!(|input: Input| {
    let _ = geometry();
    match input.mode {
        Mode::Init {
            capacity,
            max_message,
            slack,
            pre,
            mid,
            roles,
        } => {
            let layout = QueueLayout {
                capacity: usize::from(capacity % 9) + 1,
                max_message: usize::from(max_message % 100),
            };
            let need = RawQueue::required_size(&layout).expect("small layouts fit");
            let region = Region::new(need + usize::from(slack % 129));
            // SAFETY: the region is ours, 64-aligned, long enough, outlives
            // every handle (declared before them) and is used only through
            // handles and `Region::write` between calls.
            drop(unsafe { RawQueue::init_in(region.ptr, region.len(), &layout) }.expect("init_in"));
            let mut run = Run {
                region: &region,
                slots: slot_geometry(&region),
                clean: true,
                budget_us: TIMEOUT_BUDGET_US,
                seq: 0,
                base: region.ptr,
                base_len: region.len(),
                config_touched: false,
            };
            for e in pre.iter().take(16) {
                run.edit(*e, false);
            }
            // SAFETY: as above.
            let mut a = match unsafe { RawQueue::attach(region.ptr, region.len()) } {
                Ok(q) => Handle::new(q),
                Err(e) => {
                    assert!(!run.clean, "attach over a fresh queue failed: {e}");
                    return;
                }
            };
            let mut mid_touched_config = false;
            for e in mid.iter().take(16) {
                // Config-only edits keep A clean; B must then not attach
                // with another configuration.
                mid_touched_config |= run.edit(*e, true);
            }
            // SAFETY: as above.
            let mut b = unsafe { RawQueue::attach(region.ptr, region.len()) }
                .ok()
                .map(Handle::new);
            if b.is_none() {
                assert!(
                    !run.clean || mid_touched_config,
                    "a second attach over a clean queue failed"
                );
            } else if mid_touched_config {
                run.clean = false;
            }
            if run.clean {
                assert_eq!((a.capacity, a.max), (layout.capacity, layout.max_message));
            }
            run.config_touched = mid_touched_config;
            let ok = a.set_role(role_of(roles))
                & b.as_mut().is_none_or(|b| b.set_role(role_of(roles / 3)));
            assert!(ok || !run.clean, "set_role on a clean queue failed");
            run_ops(&mut run, &a, b.as_ref(), &input.ops);
        }
        Mode::Raw {
            len,
            offset,
            fill,
            edits,
        } => {
            let len = usize::from(len) % 8192;
            let offset = usize::from(offset % 64).min(len);
            let region = Region::new(len);
            if !fill.is_empty() {
                for i in 0..len {
                    region.write(i, 1, u64::from(fill[i % fill.len()]));
                }
            }
            let mut run = Run {
                region: &region,
                slots: slot_geometry(&region),
                clean: false,
                budget_us: TIMEOUT_BUDGET_US,
                seq: 0,
                base: region.ptr,
                base_len: len,
                config_touched: false,
            };
            for e in edits.iter().take(16) {
                run.edit(*e, false);
            }
            // SAFETY: `offset <= len`: the sub-region lies in the region, which
            // outlives the handles and is used only through them and edits.
            let p = unsafe { region.ptr.add(offset) };
            let n = len - offset;
            run.base = p;
            run.base_len = n;
            // SAFETY: as above.
            let a = unsafe { RawQueue::attach(p, n) };
            if offset % 64 != 0 {
                assert!(a.is_err(), "attach at a misaligned address succeeded");
                return;
            }
            let Ok(a) = a else { return };
            let a = Handle::new(a);
            // SAFETY: as above.
            let b = unsafe { RawQueue::attach(p, n) }.ok().map(Handle::new);
            run.slots = slot_geometry(&region);
            run_ops(&mut run, &a, b.as_ref(), &input.ops);
        }
    }
});
