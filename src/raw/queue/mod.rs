//! `RawQueue`: a bounded multi-producer, multi-consumer queue of messages of
//! up to `max_message` bytes, in shared memory, that survives any producer or
//! consumer dying at any instruction.
//!
//! This file holds the layout, the fast paths and the public calls;
//! [`recover`] holds the participant table, liveness and every recovery
//! step (what is done about a claim whose owner died, a skipped position, a
//! lagging index).
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue (per-slot sequence numbers, a `tail`
//! for producers and a `head` for consumers; see 1024cores.net, "Bounded
//! MPMC queue"), changed so that it survives SIGKILL: a producer or consumer
//! claims a *slot* with a CAS that writes its participant index into the
//! slot's state word, *before* it moves `tail`/`head`. Whoever sees a claimed
//! slot at `tail`/`head` helps move the index on, and whoever finds the
//! claimant dead undoes or skips the claim. So a process killed anywhere
//! leaves no hole that wedges the queue:
//!
//! - killed after claiming a slot to write (`WRITING`): the message was never
//!   acknowledged (put had not returned). Whoever finds the claimant dead
//!   turns the slot into `SKIP`, and the next one at the head steps over it.
//! - killed after claiming a slot to read (`READING`): the message is lost
//!   with the consumer it was handed to; the slot is freed for the next lap.
//! - killed between a claim and moving the index: others help the index on.
//!
//! Only the head frees a slot for its next lap (a consumer's release, or a
//! step over a `SKIP` at the head), so the tail can never get a lap ahead of
//! a lagging head, whatever is abandoned in between.
//!
//! # The slot state word (64 bits)
//!
//! | bits   | field    | meaning                                              |
//! |--------|----------|------------------------------------------------------|
//! | 0..40  | `pos`    | a position, modulo 2^40                              |
//! | 40..56 | `who`    | the claimant's participant index (claims only)       |
//! | 59     | LONG     | a zero-copy grant: may be held for long              |
//! | 60     | SKIP     | position `pos` was abandoned; step over it           |
//! | 62     | WRITING  | a producer is writing the message for `pos`          |
//! | 63     | READING  | a consumer is reading the message for `pos`          |
//!
//! Unclaimed, `pos == p` means "free for the producer of position p", and
//! `pos == p + 1` means "holds the message of position p" (Vyukov's
//! encoding). For a consumer at `head = h` and the slot `h % slots`:
//!
//! | state                  | meaning                      | consumer does                            |
//! |------------------------|------------------------------|------------------------------------------|
//! | `h + 1`                | message ready                | claims READING, moves head, reads, frees |
//! | `h`                    | nothing put yet              | `Empty` (waits briefly if a put of `h` is being given back) |
//! | `WRITING(h)` live      | being written                | waits briefly if later puts exist, else `Empty`; a LONG claim: `Empty` |
//! | `WRITING(h)` dead      | abandoned put                | `SKIP(h)`, then steps over it            |
//! | `SKIP(h)`              | abandoned put                | frees for `h + slots`, moves head        |
//! | `READING(h)`           | another consumer has it      | helps head on (frees it first if dead)   |
//! | `READING(h - slots)`   | last lap still being read    | `Empty` (nothing can be at `h` yet)      |
//! | anything of `h + slots`| head lags                    | helps head on                            |
//!
//! and for a producer at `tail = t`:
//!
//! | state                     | meaning                     | producer does                             |
//! |---------------------------|-----------------------------|-------------------------------------------|
//! | `t`                       | free                        | claims WRITING, moves tail, writes, publishes |
//! | anything of `t`, `t + slots` | tail lags                | helps tail on                             |
//! | `t - slots + 1`           | last lap's message unread   | `Full`                                    |
//! | `SKIP(t - slots)`         | last lap abandoned          | steps over it (it is at the head)         |
//! | `READING(t - slots)` live | last lap being read         | waits briefly (not for a LONG claim), then `Full` |
//! | `READING(t - slots)` dead | last lap's reader died      | frees the slot for `t`                    |
//! | `WRITING(t - slots)`      | the queue is full           | `Full`; if dead, `SKIP(t - slots)`        |
//!
//! A queue has more slots than its capacity ([`slots_for`]), so a producer
//! also checks the count: the positions in `[head, tail)` but the `SKIP`s
//! ([`RawQueue::live`]) must be fewer than the capacity. A `SKIP` keeps its
//! slot until the head passes it, not its room (issue 14, defect 15); the
//! spare slots are what lets it. A producer kept out by the count helps the
//! head on over anything that needs no consumer (a `SKIP`, a dead claim),
//! so a dead writer never keeps producers out (issue 14, defect 16).
//!
//! Every write that ends a claim (publish, release, give-back) is a CAS from
//! the exact claim word its owner wrote, and every recovery is a CAS from the
//! exact state its author saw: a mistaken "dead" verdict can make a CAS fail,
//! never overwrite another participant's state.
//!
//! Positions are 64-bit in `head`/`tail` and 40-bit in slots; comparisons
//! are modulo 2^40, which is exact while fewer than 2^39 messages are in
//! flight. The slot of a position is `pos % slots`, and the slot count is
//! not a power of two, so positions are exact below 2^64 (centuries of
//! traffic at any rate): a scribbled index near 2^64 makes the calls that
//! meet it `Corrupted`, never a panic or a write out of bounds.
//!
//! # Participants
//!
//! A claim names its process by an index into a table of participants in
//! the control block, each entry a process's pid and start time. Each handle
//! takes an entry of its own when it attaches (again after a `fork`, so that
//! a child's claims are its own), and gives it back when it drops. An entry
//! whose process is dead is reused only after every claim naming it has been
//! recovered, so a reused pid can neither keep a dead claim alive nor make a
//! live one look dead. See [`recover`].
//!
//! # Untrusted memory
//!
//! The configuration (slot count, capacity, message size, stride) is read and
//! validated once, at attach, and kept in the handle; later writes to it by
//! others change nothing here. A message length is read once under the
//! claim and checked against `max_message` and the caller's buffer before it
//! is used. Every claim loop has a budget of steps; a state that keeps
//! changing without the queue moving (a peer writing garbage) ends it with
//! [`Error::Corrupted`] rather than a loop without end.

mod api;
mod get;
mod grant;
mod holes;
mod lease;
mod links;
mod put;
mod recover;
mod wait;

pub use grant::{GetGrant, PutGrant};
pub use lease::Lease;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::error::{named_now, Error, Name, Origin, Result};
use crate::raw::notify::Notify;
use crate::raw::spin::{AdaptiveSpin, Spin};
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Ordering};

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
/// The kind a raw queue's errors name.
const RAW: &str = "RawQueue";
const ORIGIN: Origin = Origin::new(RAW, "");

pub use links::QueueRole;
use links::CLOSED;
use links::{BOTH, RECV, SEND};
use recover::{Patience, PROCS};

const POS_MASK: u64 = (1 << 40) - 1;
const WHO_SHIFT: u32 = 40;
const WHO_MASK: u64 = (1 << 16) - 1;
/// A leased message given back (its lease dropped, or its holder dead):
/// to be delivered again. Not a claim (no `who`).
const BACK: u64 = 1 << 58;
const LONG: u64 = 1 << 59;
const SKIP: u64 = 1 << 60;
/// On a `READING` claim: a lease, given back (not freed) if it ends
/// without an ack.
const LEASE: u64 = 1 << 61;
const WRITING: u64 = 1 << 62;
const READING: u64 = 1 << 63;
/// The kind of a state: unclaimed (0), `SKIP`, `BACK`, `WRITING` or
/// `READING`.
const KIND: u64 = SKIP | BACK | WRITING | READING;

/// Steps one claim call may take before the queue is reported corrupted.
/// Every step either sees the queue move (someone else succeeded) or waits
/// on a state that must change within a few steps; 2^16 steps without an
/// answer means the state is being rewritten by someone who does not follow
/// the protocol.
const BUDGET: u32 = if cfg!(loom) { 1_000 } else { 1 << 16 };

/// How long a non-blocking call waits for a plain put or get that is in
/// flight at the head (or tail) before it says `Empty` (`Full`): a copy
/// takes nanoseconds, so only a claimant that stays preempted, or is stuck,
/// outlasts this. It spins for the first 50 µs, then yields the CPU.
#[cfg(not(fuzzing))]
const IN_FLIGHT: Duration = Duration::from_millis(2);
/// Under the fuzzer, a tenth of it: there nobody else copies, so only a
/// hostile state (a live stranger's claim) is waited for, and it is waited
/// for in full at every `try_` call. The same code runs; the fuzzer gets
/// through several times more inputs.
#[cfg(fuzzing)]
const IN_FLIGHT: Duration = Duration::from_micros(200);

#[inline]
fn p40(x: u64) -> u64 {
    x & POS_MASK
}

/// `a - b` as a signed 40-bit difference.
#[inline]
fn diff40(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & POS_MASK;
    ((d << 24) as i64) >> 24
}

#[inline]
fn claim(flag: u64, who: u32, pos: u64) -> u64 {
    flag | ((u64::from(who) & WHO_MASK) << WHO_SHIFT) | p40(pos)
}

#[inline]
fn claimant(s: u64) -> u32 {
    ((s >> WHO_SHIFT) & WHO_MASK) as u32
}

/// One cache line of its own.
#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Line<T>(T);

/// The control block at the start of a queue's region.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct QueueCtl {
    slots: Line<AtomicU64>,
    capacity: AtomicU64,
    max_message: AtomicU64,
    stride: AtomicU64,
    /// `CLOSED`, and the disconnect bits of [`links`].
    closed: AtomicU32,
    /// Bumped after every change of `procs` (in the padding before `tail`:
    /// no field moved), so that a sleeper's death watch is made anew only
    /// when the participants changed.
    procs_epoch: AtomicU32,
    /// A hint: how many `SKIP` positions may lie between the head and the
    /// tail (also in the padding). Raised before a `SKIP` is made, lowered
    /// after one is stepped over, and set back to 0 by whoever counts the
    /// positions and finds none; only ever a reason to count them
    /// ([`RawQueue::live`]), never believed as a count.
    holes: AtomicU64,
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    not_empty: Line<Notify>,
    not_full: Line<Notify>,
    /// Participants: a process's [`TaskStamp`](crate::sync::TaskStamp), or 0.
    procs: [AtomicU64; PROCS],
    /// Each participant's process token (its pidfs inode), or 0 if unknown.
    tokens: [AtomicU64; PROCS],
    /// Each participant's role (`SEND`, `RECV`, both), see [`links`].
    roles: [AtomicU32; PROCS],
    /// Hints for leases (see [`lease`]).
    lease: Line<LeaseHints>,
}

/// Hints, never counts: each is raised before the state it stands for is
/// made and lowered after it is gone, so it is at least the number of such
/// states (unless scribbled), and 0 means "there is none; do not look".
/// A process that dies between a state change and its hint leaves the hint
/// too high, which costs a look, never a wrong answer. Both live in one
/// word (lease claims in the low half, `BACK` states in the high half), so
/// that a get that finds the head empty pays one load for both.
#[repr(C)]
#[derive(Debug, Default)]
struct LeaseHints {
    word: AtomicU64,
}

const LEASE_ONE: u64 = 1;
const BACK_ONE: u64 = 1 << 32;

impl LeaseHints {
    /// (lease claims, `BACK` states) that may be in the slots.
    fn get(&self) -> (u64, u64) {
        let w = self.word.load(Ordering::Acquire);
        (w & 0xFFFF_FFFF, w >> 32)
    }

    fn raise(&self, one: u64) {
        self.word.fetch_add(one, Ordering::AcqRel);
    }

    fn lower(&self, one: u64) {
        self.word.fetch_sub(one, Ordering::AcqRel);
    }
}

/// The header of each slot; the message bytes follow it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SlotHdr {
    state: AtomicU64,
    len: AtomicU32,
    /// How many leases this message has been given under (0 until the
    /// first): written by the producer (0) and by each lease's claimant,
    /// under their claims.
    deliveries: AtomicU32,
}

const HDR: usize = std::mem::size_of::<SlotHdr>();

impl QueueCtl {
    pub(crate) fn new(slots: u64, capacity: u64, max_message: u64, stride: u64) -> QueueCtl {
        QueueCtl {
            slots: Line(AtomicU64::new(slots)),
            capacity: AtomicU64::new(capacity),
            max_message: AtomicU64::new(max_message),
            stride: AtomicU64::new(stride),
            closed: AtomicU32::new(0),
            procs_epoch: AtomicU32::new(0),
            holes: AtomicU64::new(0),
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            not_empty: Line(Notify::new()),
            not_full: Line(Notify::new()),
            procs: std::array::from_fn(|_| AtomicU64::new(0)),
            tokens: std::array::from_fn(|_| AtomicU64::new(0)),
            roles: std::array::from_fn(|_| AtomicU32::new(0)),
            lease: Line(LeaseHints::default()),
        }
    }
}

impl SlotHdr {
    pub(crate) fn new(i: u64) -> SlotHdr {
        SlotHdr {
            state: AtomicU64::new(i),
            len: AtomicU32::new(0),
            deliveries: AtomicU32::new(0),
        }
    }
}

/// The slots of a queue of `capacity`: the capacity, plus an eighth of it
/// (at least one) for positions abandoned behind an open or unread one.
/// Such a position holds its slot until the head passes it, but not its
/// room: up to this many of them cost no capacity (issue 14, defect 15).
pub(crate) fn slots_for(capacity: u64) -> u64 {
    (capacity + (capacity / 8).max(1)).max(2)
}

/// The shape of a queue: what `required_size` and `init_in` need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLayout {
    /// How many messages fit.
    pub capacity: usize,
    /// The largest message, in bytes.
    pub max_message: usize,
}

impl QueueLayout {
    /// Checks the numbers and derives slot count and stride.
    pub(crate) fn derive(&self) -> Result<(u64, u64)> {
        if self.capacity == 0 || self.capacity > (1 << 32) {
            return Err(Error::InvalidArgument(format!(
                "queue capacity {} is not in 1..=2^32",
                self.capacity
            )));
        }
        if self.max_message > u32::MAX as usize - 64 {
            return Err(Error::InvalidArgument(format!(
                "max_message {} exceeds {}",
                self.max_message,
                u32::MAX - 64
            )));
        }
        let slots = slots_for(self.capacity as u64);
        let stride = (HDR + self.max_message).div_ceil(64) as u64 * 64;
        Ok((slots, stride))
    }

    /// Bytes a queue of this shape needs, or an error if it is too large.
    pub(crate) fn size(&self) -> Result<usize> {
        let (slots, stride) = self.derive()?;
        slots
            .checked_mul(stride)
            .and_then(|b| b.checked_add(std::mem::size_of::<QueueCtl>() as u64))
            .and_then(|b| usize::try_from(b).ok())
            .filter(|&b| b <= crate::segment::MAX_LEN)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "a queue of {} messages of {} bytes is too large",
                    self.capacity, self.max_message
                ))
            })
    }
}

/// A handle on a queue in memory that the caller manages. Build it with
/// [`RawQueue::init_in`] or [`RawQueue::attach`]; the configuration is
/// validated then and kept here.
///
/// Each handle is one participant: it takes an entry in the queue's
/// participant table when it is made (and again in a child after `fork`),
/// and gives it back when it drops. A queue has room for 256 participants
/// at once (handles in live processes); making one more fails with
/// [`Error::InvalidArgument`].
#[derive(Debug)]
pub struct RawQueue<'a> {
    ctl: &'a QueueCtl,
    hdrs: *const u8,
    data: *mut u8,
    stride: usize,
    slots: u64,
    capacity: u64,
    max_message: usize,
    /// The process stamp this handle registered under (0 while someone is
    /// registering it anew), and its participant index.
    reg_stamp: AtomicU64,
    reg_idx: AtomicU32,
    /// The last claim seen blocking progress, and since when (nanoseconds
    /// of monotonic time), so that liveness is read only for a stuck claim.
    stuck: (AtomicU64, AtomicU64),
    /// The head as this handle last read it, for puts: the head only moves
    /// on, so a tail less than `capacity` past it has room by count without
    /// a read of the consumers' line.
    seen_head: sync::Hint,
    /// When this handle last looked for dead leases on its own (see
    /// `lease::dead_scan_due`), in nanoseconds of monotonic time.
    lease_scan: sync::Hint,
    /// How long blocking calls spin before they sleep.
    spin: AdaptiveSpin,
    /// This handle's role (`SEND`, `RECV`, both), see [`links`].
    role: u32,
    /// Calls since, and the time of, this handle's last unprompted look
    /// for a gone side (see `links`).
    link_looks: sync::Hint,
    link_looked: sync::Hint,
    /// The death watches of this handle's sleepers, per word slept on,
    /// kept from one sleep to the next (see `recover::QueueWatch`).
    #[cfg(not(loom))]
    watched: std::sync::Mutex<Vec<recover::QueueWatch>>,
}

// SAFETY: the handle holds only pointers into memory that every thread and
// process accesses through atomics or under slot claims; nothing in it is
// tied to a thread.
unsafe impl Send for RawQueue<'_> {}
// SAFETY: as above; all shared state is atomics.
unsafe impl Sync for RawQueue<'_> {}

/// What a non-blocking attempt found.
enum Try<T> {
    Done(T),
    Full,
    Empty,
}

/// A claimed position: the position, its slot and the exact claim word we
/// wrote.
#[derive(Debug, Clone, Copy)]
struct Claim {
    pos: u64,
    /// `slot_of(pos)`, computed once.
    slot: usize,
    word: u64,
}

impl<'a> RawQueue<'a> {
    /// The bytes of the control block, the least any queue's region holds.
    pub(crate) fn ctl_size() -> usize {
        std::mem::size_of::<QueueCtl>()
    }

    /// The bytes a queue of `layout` needs (align the region to 64).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero capacity or sizes too large.
    ///
    /// ```
    /// use shmkit::raw::{QueueLayout, RawQueue};
    /// let n = RawQueue::required_size(&QueueLayout { capacity: 8, max_message: 64 })?;
    /// assert!(n >= 8 * 64);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn required_size(layout: &QueueLayout) -> Result<usize> {
        layout.size()
    }

    /// Initialises an empty queue of `layout` in the region and returns a
    /// handle on it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`,
    /// accessed only through `RawQueue` handles (in any process) for `'a`,
    /// and nobody may use it while it is initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the region is misaligned or too small,
    /// or the layout is invalid.
    ///
    /// ```
    /// use shmkit::raw::{QueueLayout, RawQueue};
    /// let layout = QueueLayout { capacity: 4, max_message: 16 };
    /// let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// // SAFETY: the segment outlives `q` and is used only through it.
    /// let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"hi")?;
    /// assert_eq!(q.try_get()?, b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in(ptr: *mut u8, len: usize, layout: &QueueLayout) -> Result<RawQueue<'a>> {
        let need = layout.size()?;
        super::check_region::<QueueCtl>(ptr, len, "RawQueue")?;
        if len < need {
            return Err(Error::InvalidArgument(format!(
                "RawQueue: region of {len} bytes is smaller than the {need} it needs"
            )));
        }
        let (slots, stride) = layout.derive()?;
        // SAFETY: aligned and large enough for the control block and every
        // slot (checked above); the caller gives us exclusive use for now.
        unsafe {
            ptr.cast::<QueueCtl>().write(QueueCtl::new(
                slots,
                layout.capacity as u64,
                layout.max_message as u64,
                stride,
            ));
            let base = ptr.add(std::mem::size_of::<QueueCtl>());
            for i in 0..slots {
                base.add((i * stride) as usize)
                    .cast::<SlotHdr>()
                    .write(SlotHdr::new(i));
            }
            RawQueue::attach(ptr, len)
        }
    }

    /// A handle on the queue another process initialised at `ptr`. The
    /// configuration is read once and validated against `len`.
    ///
    /// # Safety
    /// As for [`init_in`](RawQueue::init_in), except that the bytes are
    /// already initialised (any bytes are accepted: a bad configuration is an
    /// error, bad states are reported as they are met).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a misaligned or short region, or when
    /// 256 live participants hold every entry of the participant table;
    /// [`Error::Corrupted`] for an impossible configuration.
    ///
    /// ```
    /// use shmkit::raw::{QueueLayout, RawQueue};
    /// let layout = QueueLayout { capacity: 4, max_message: 16 };
    /// let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// // SAFETY: the segment outlives both handles and is used only through them.
    /// let a = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// // SAFETY: as above.
    /// let b = unsafe { RawQueue::attach(seg.as_ptr(), seg.len())? };
    /// a.try_put(b"x")?;
    /// assert_eq!(b.len(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<RawQueue<'a>> {
        super::check_region::<QueueCtl>(ptr, len, "RawQueue")?;
        // SAFETY: aligned and large enough for the control block (checked);
        // it is all atomics, valid for any bytes.
        let ctl = unsafe { &*ptr.cast::<QueueCtl>() };
        let slots = ctl.slots.0.load(Ordering::Relaxed);
        let capacity = ctl.capacity.load(Ordering::Relaxed);
        let max_message = ctl.max_message.load(Ordering::Relaxed);
        let stride = ctl.stride.load(Ordering::Relaxed);
        let bad = |what: String| Err(Error::corrupted("", format!("queue configuration: {what}")));
        if !(2..=slots_for(1 << 32)).contains(&slots) {
            return bad(format!("slot count {slots}"));
        }
        if capacity == 0 || capacity > slots {
            return bad(format!("capacity {capacity} for {slots} slots"));
        }
        if max_message > u64::from(u32::MAX)
            || stride < HDR as u64 + max_message
            || stride % 64 != 0
        {
            return bad(format!("stride {stride} for messages of {max_message}"));
        }
        let total = slots
            .checked_mul(stride)
            .and_then(|b| b.checked_add(std::mem::size_of::<QueueCtl>() as u64));
        if total.map_or(true, |t| t > len as u64) {
            return bad(format!(
                "{slots} slots of {stride} bytes do not fit in {len}"
            ));
        }
        // SAFETY: the slots lie inside the region (checked just above).
        let base = unsafe { ptr.add(std::mem::size_of::<QueueCtl>()) };
        let q = RawQueue {
            ctl,
            hdrs: base,
            // SAFETY: HDR < stride, so inside the first slot.
            data: unsafe { base.add(HDR) },
            stride: stride as usize,
            slots,
            capacity,
            max_message: max_message as usize,
            reg_stamp: AtomicU64::new(0),
            reg_idx: AtomicU32::new(0),
            stuck: (AtomicU64::new(u64::MAX), AtomicU64::new(0)),
            seen_head: sync::Hint::default(),
            lease_scan: sync::Hint::default(),
            #[cfg(not(loom))]
            watched: std::sync::Mutex::new(Vec::new()),
            spin: AdaptiveSpin::new(),
            role: BOTH,
            link_looks: sync::Hint::default(),
            link_looked: sync::Hint::default(),
        };
        q.me()?;
        Ok(q)
    }

    /// A handle over a control block and slot headers built on the heap,
    /// for loom models and tests. `hdrs` holds `slots` headers; `data` holds
    /// `slots * max_message` bytes.
    ///
    /// # Safety
    /// `ctl`, `hdrs` and `data` must outlive the handle, with the sizes above.
    #[cfg(loom)]
    pub(crate) unsafe fn from_parts(
        ctl: &'a QueueCtl,
        hdrs: &'a [SlotHdr],
        data: *mut u8,
    ) -> RawQueue<'a> {
        let slots = ctl.slots.0.load(Ordering::Relaxed);
        let max_message = ctl.max_message.load(Ordering::Relaxed) as usize;
        assert_eq!(hdrs.len() as u64, slots);
        assert_eq!(HDR, std::mem::size_of::<SlotHdr>());
        let q = RawQueue {
            ctl,
            hdrs: hdrs.as_ptr().cast(),
            data,
            // Headers and data strides differ in this form; see `hdr`/`data_of`.
            stride: 0,
            slots,
            capacity: ctl.capacity.load(Ordering::Relaxed),
            max_message,
            reg_stamp: AtomicU64::new(0),
            reg_idx: AtomicU32::new(0),
            stuck: (AtomicU64::new(u64::MAX), AtomicU64::new(0)),
            seen_head: sync::Hint::default(),
            lease_scan: sync::Hint::default(),
            #[cfg(not(loom))]
            watched: std::sync::Mutex::new(Vec::new()),
            spin: AdaptiveSpin::new(),
            role: BOTH,
            link_looks: sync::Hint::default(),
            link_looked: sync::Hint::default(),
        };
        q.me().expect("participant table of the heap queue");
        q
    }

    /// The slot of position `pos`. Slot counts need not be powers of two
    /// (see [`slots_for`]), so this is a division: a claim computes it once
    /// and keeps it ([`Claim::slot`]).
    #[inline]
    fn slot_of(&self, pos: u64) -> usize {
        (pos % self.slots) as usize
    }

    #[inline]
    fn hdr(&self, pos: u64) -> &SlotHdr {
        self.hdr_at(self.slot_of(pos))
    }

    /// The header of slot `i`, which must be below `slots` (from
    /// [`slot_of`](RawQueue::slot_of)).
    #[inline]
    fn hdr_at(&self, i: usize) -> &SlotHdr {
        debug_assert!((i as u64) < self.slots);
        let step = if self.stride == 0 { HDR } else { self.stride };
        // SAFETY: i < slots (every index comes from `slot_of`), and attach
        // (or from_parts) checked that `slots` headers at this step lie in
        // the region; SlotHdr is all atomics.
        unsafe { &*self.hdrs.add(i * step).cast::<SlotHdr>() }
    }

    /// The message bytes of slot `i` (below `slots`, as for `hdr_at`).
    #[inline]
    fn data_at(&self, i: usize) -> *mut u8 {
        debug_assert!((i as u64) < self.slots);
        let step = if self.stride == 0 {
            self.max_message
        } else {
            self.stride
        };
        // SAFETY: as in `hdr_at`: `max_message` bytes at this offset lie in
        // the region.
        unsafe { self.data.add(i * step) }
    }

    /// How many messages fit.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 3, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(q.capacity(), 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// How many slots the ring has: the capacity plus an eighth of it (at
    /// least one). A grant dropped uncommitted while a later position is
    /// taken leaves its position for the head to step over; it costs no
    /// capacity ([`len`](RawQueue::len) does not count it), but keeps its
    /// slot until then. So up to `slots() - capacity()` such positions
    /// waiting behind an open grant or an unread message cost nothing;
    /// beyond that a put says `Full` until consumers pass them.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 16, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(q.slots(), 18);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn slots(&self) -> usize {
        self.slots as usize
    }

    /// The largest message, in bytes.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 3, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(q.max_message(), 8);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Messages in the queue now (a snapshot): ready, being written or
    /// being read. A position whose grant was dropped uncommitted (see
    /// [`Queue::reserve`](crate::Queue::reserve)) is not counted, even
    /// while it waits behind an earlier one for the head to pass it. Never
    /// more than the capacity.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 3, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"a")?;
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        let h = self.ctl.head.0.load(Ordering::Acquire);
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        self.live(h, t).min(self.capacity) as usize
    }

    /// Whether the queue looks empty now.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 3, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert!(q.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue looks full now.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 1, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"a")?;
    /// assert!(q.is_full());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        let h = self.ctl.head.0.load(Ordering::Acquire);
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        !self.room_by_count(h, t) || t.wrapping_sub(h) >= self.slots
    }

    /// Closes the queue: later puts fail with [`Error::Closed`], gets drain
    /// what is left and then fail with `Closed`, and every blocked caller
    /// wakes.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"last")?;
    /// q.close();
    /// assert!(matches!(q.try_put(b"more"), Err(shmkit::Error::Closed { .. })));
    /// assert_eq!(q.try_get()?, b"last");
    /// assert!(matches!(q.try_get(), Err(shmkit::Error::Closed { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn close(&self) {
        self.ctl.closed.fetch_or(CLOSED, Ordering::SeqCst);
        self.ctl.not_empty.0.notify_all();
        self.ctl.not_full.0.notify_all();
    }

    /// Whether the queue was closed.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert!(!q.is_closed());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.ctl.closed.load(Ordering::Acquire) & CLOSED != 0
    }
}

impl Drop for RawQueue<'_> {
    fn drop(&mut self) {
        self.unregister();
    }
}
/// Builds a queue on the heap for loom models: control block, headers, data.
#[cfg(loom)]
pub mod model {
    use super::*;

    /// A heap queue; `handle()` gives a `RawQueue` over it.
    // The message bytes are reached through raw pointers, as in shared
    // memory, not through a cell's API: std's `UnsafeCell` only makes the
    // heap bytes writable behind `&self`.
    #[allow(clippy::disallowed_types)]
    pub struct HeapQueue {
        ctl: QueueCtl,
        hdrs: Vec<SlotHdr>,
        data: Box<[std::cell::UnsafeCell<u8>]>,
    }

    // SAFETY: the data bytes are only accessed under slot claims, which the
    // model checks; everything else is loom atomics.
    unsafe impl Sync for HeapQueue {}

    impl HeapQueue {
        /// A queue of `capacity` messages of up to `max_message` bytes.
        pub fn new(capacity: usize, max_message: usize) -> HeapQueue {
            let (slots, _) = QueueLayout {
                capacity,
                max_message,
            }
            .derive()
            .unwrap();
            #[allow(clippy::disallowed_types)]
            HeapQueue {
                ctl: QueueCtl::new(slots, capacity as u64, max_message as u64, 0),
                hdrs: (0..slots).map(SlotHdr::new).collect(),
                data: (0..slots as usize * max_message.max(1))
                    .map(|_| std::cell::UnsafeCell::new(0))
                    .collect(),
            }
        }

        /// A handle for the calling model thread.
        pub fn handle(&self) -> RawQueue<'_> {
            // SAFETY: the parts live as long as `self`, with the sizes
            // `from_parts` needs.
            unsafe { RawQueue::from_parts(&self.ctl, &self.hdrs, self.data.as_ptr() as *mut u8) }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
