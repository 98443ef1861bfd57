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
//! A queue whose capacity is below its slot count also checks
//! `tail - head < capacity`; a producer kept out by that helps the head on
//! over anything that needs no consumer (a `SKIP`, a dead claim), so a dead
//! writer never keeps producers out (issue 14, defect 16).
//!
//! Every write that ends a claim (publish, release, give-back) is a CAS from
//! the exact claim word its owner wrote, and every recovery is a CAS from the
//! exact state its author saw: a mistaken "dead" verdict can make a CAS fail,
//! never overwrite another participant's state.
//!
//! Positions are 64-bit in `head`/`tail` (wrapping) and 40-bit in slots;
//! comparisons are modulo 2^40, which is exact while fewer than 2^39 messages
//! are in flight.
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

mod recover;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::raw::notify::Notify;
use crate::raw::spin::{AdaptiveSpin, Spin};
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Ordering};

use recover::{Patience, PROCS};

const POS_MASK: u64 = (1 << 40) - 1;
const WHO_SHIFT: u32 = 40;
const WHO_MASK: u64 = (1 << 16) - 1;
const LONG: u64 = 1 << 59;
const SKIP: u64 = 1 << 60;
const WRITING: u64 = 1 << 62;
const READING: u64 = 1 << 63;
/// The kind of a state: unclaimed (0), `SKIP`, `WRITING` or `READING`.
const KIND: u64 = SKIP | WRITING | READING;

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
const IN_FLIGHT: Duration = Duration::from_millis(2);

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
    closed: AtomicU32,
    /// Bumped after every change of `procs` (in the padding before `tail`:
    /// no field moved), so that a sleeper's death watch is made anew only
    /// when the participants changed.
    procs_epoch: AtomicU32,
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    not_empty: Line<Notify>,
    not_full: Line<Notify>,
    /// Participants: a process's [`TaskStamp`](crate::sync::TaskStamp), or 0.
    procs: [AtomicU64; PROCS],
    /// Each participant's process token (its pidfs inode), or 0 if unknown.
    tokens: [AtomicU64; PROCS],
}

/// The header of each slot; the message bytes follow it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SlotHdr {
    state: AtomicU64,
    len: AtomicU32,
    _pad: AtomicU32,
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
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            not_empty: Line(Notify::new()),
            not_full: Line(Notify::new()),
            procs: std::array::from_fn(|_| AtomicU64::new(0)),
            tokens: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SlotHdr {
    pub(crate) fn new(i: u64) -> SlotHdr {
        SlotHdr {
            state: AtomicU64::new(i),
            len: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
        }
    }
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
        let slots = (self.capacity.max(2)).next_power_of_two() as u64;
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
    /// How long blocking calls spin before they sleep.
    spin: AdaptiveSpin,
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

/// A claimed position: the position and the exact claim word we wrote.
#[derive(Debug, Clone, Copy)]
struct Claim {
    pos: u64,
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
        if !slots.is_power_of_two() || !(2..=1 << 32).contains(&slots) {
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
            #[cfg(not(loom))]
            watched: std::sync::Mutex::new(Vec::new()),
            spin: AdaptiveSpin::new(),
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
            #[cfg(not(loom))]
            watched: std::sync::Mutex::new(Vec::new()),
            spin: AdaptiveSpin::new(),
        };
        q.me().expect("participant table of the heap queue");
        q
    }

    #[inline]
    fn hdr(&self, pos: u64) -> &SlotHdr {
        let i = (pos & (self.slots - 1)) as usize;
        let step = if self.stride == 0 { HDR } else { self.stride };
        // SAFETY: i < slots, and attach (or from_parts) checked that `slots`
        // headers at this step lie in the region; SlotHdr is all atomics.
        unsafe { &*self.hdrs.add(i * step).cast::<SlotHdr>() }
    }

    #[inline]
    fn data_of(&self, pos: u64) -> *mut u8 {
        let i = (pos & (self.slots - 1)) as usize;
        let step = if self.stride == 0 {
            self.max_message
        } else {
            self.stride
        };
        // SAFETY: as in `hdr`: `max_message` bytes at this offset lie in the
        // region.
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

    /// Positions between the head and the tail now (a snapshot): messages
    /// ready, being written or being read, and positions of abandoned
    /// grants that a later put had already passed (see
    /// [`Queue::reserve`](crate::Queue::reserve)). Never more than the
    /// capacity.
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
        (t.wrapping_sub(h) as i64).clamp(0, self.capacity as i64) as usize
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
        self.len() >= self.capacity as usize
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
    /// assert!(matches!(q.try_put(b"more"), Err(shmkit::Error::Closed)));
    /// assert_eq!(q.try_get()?, b"last");
    /// assert!(matches!(q.try_get(), Err(shmkit::Error::Closed)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn close(&self) {
        self.ctl.closed.store(1, Ordering::SeqCst);
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
        self.ctl.closed.load(Ordering::Acquire) != 0
    }

    // ---- put ------------------------------------------------------------

    /// Claims the slot for the next position, or says why not. `long`
    /// marks a zero-copy grant.
    fn claim_put(&self, long: bool, check_dead: bool) -> Result<Try<Claim>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let who = self.me()?;
        let ctl = self.ctl;
        let slots = self.slots as i64;
        let mut patience = Patience::default();
        let mut t = ctl.tail.0.load(Ordering::Relaxed);
        for _ in 0..BUDGET {
            if self.capacity < self.slots {
                let h = ctl.head.0.load(Ordering::Acquire);
                if t.wrapping_sub(h) as i64 >= self.capacity as i64 {
                    // Full by count, unless the head is held up by what
                    // needs no consumer (a skipped or dead put).
                    if !self.help_head(h, check_dead) {
                        let t2 = ctl.tail.0.load(Ordering::Relaxed);
                        if t2 == t {
                            return Ok(Try::Full);
                        }
                    }
                    t = ctl.tail.0.load(Ordering::Relaxed);
                    continue;
                }
            }
            let hdr = self.hdr(t);
            // SYNC POINT: Acquire pairs with the consumer's Release that freed
            // the slot, so its reads of the old message are done.
            let s = hdr.state.load(Ordering::Acquire);
            let d = diff40(s, t);
            let kind = s & KIND;
            match (kind, d) {
                (0, 0) if s == p40(t) => {
                    let mine = claim(WRITING | if long { LONG } else { 0 }, who, t);
                    // SYNC POINT: AcqRel: whoever sees our claim also sees
                    // our participant entry's token (stored before).
                    if hdr
                        .state
                        .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.help_tail(t);
                        return Ok(Try::Done(Claim { pos: t, word: mine }));
                    }
                }
                // Position t is taken (claimed, written, skipped, or read
                // and freed already): help the tail on.
                (0, _) if d == 1 || d == slots || d == slots + 1 => self.help_tail(t),
                (k, _) if k != 0 && (d == 0 || d == slots) => self.help_tail(t),
                // The message of t - slots is still there: full.
                (0, _) if d == 1 - slots => {
                    if ctl.tail.0.load(Ordering::Relaxed) == t {
                        return Ok(Try::Full);
                    }
                }
                // Position t - slots was abandoned: it is at the head; step
                // over it as a consumer would.
                (SKIP, _) if d == -slots => self.step_over(t.wrapping_sub(self.slots), s),
                (READING, _) if d == -slots => {
                    if self.claimant_dead(s, check_dead) {
                        // The reader of t - slots died: free the slot for t.
                        self.recover_claim(hdr, s);
                    } else if s & LONG == 0 && !patience.spent() {
                        // A plain get is copying the old message out: it
                        // takes nanoseconds unless its thread is preempted.
                        self.settle(hdr, s, &mut patience);
                    } else if ctl.tail.0.load(Ordering::Relaxed) == t {
                        return Ok(Try::Full);
                    }
                }
                // The put of t - slots is at the head: the queue is full.
                (WRITING, _) if d == -slots => {
                    if self.claimant_dead(s, check_dead) {
                        self.recover_claim(hdr, s);
                    } else if ctl.tail.0.load(Ordering::Relaxed) == t {
                        return Ok(Try::Full);
                    }
                }
                _ => sync::spin_loop(),
            }
            t = ctl.tail.0.load(Ordering::Relaxed);
        }
        Err(self.no_progress("tail", t))
    }

    /// Moves the tail past position `t` if it is still there.
    #[inline]
    fn help_tail(&self, t: u64) {
        let _ = self.ctl.tail.0.compare_exchange(
            t,
            t.wrapping_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Writes `len` bytes via `fill` into the claimed slot and publishes it.
    /// Fails (and nothing is published) if the claim is no longer ours.
    fn publish(&self, c: Claim, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<()> {
        let hdr = self.hdr(c.pos);
        // SAFETY: we hold the WRITING claim on this slot: no one else reads
        // or writes its data until we publish; len <= max_message, checked
        // by the caller, and the slot has max_message data bytes.
        fill(unsafe { std::slice::from_raw_parts_mut(self.data_of(c.pos), len) });
        hdr.len.store(len as u32, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the consumer's Acquire load of state.
        let r = hdr.state.compare_exchange(
            c.word,
            p40(c.pos.wrapping_add(1)),
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.ctl.not_empty.0.notify();
        r.map(drop).map_err(|_| Self::claim_lost("put", c.pos))
    }

    /// Gives the claimed slot up without a message. If no later position
    /// was claimed, the position itself is given back (the tail moves back
    /// over it, and the room is free at once); otherwise it becomes `SKIP`,
    /// which the head steps over.
    fn abandon(&self, c: Claim) {
        let hdr = self.hdr(c.pos);
        let free = p40(c.pos);
        if hdr
            .state
            .compare_exchange(c.word, free, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // Not ours any more: someone recovered it.
            return;
        }
        let back = self.ctl.tail.0.compare_exchange(
            c.pos.wrapping_add(1),
            c.pos,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        if back.is_err() {
            // A later position is claimed: leave a hole for the head to step
            // over. The CAS fails only if a producer took position `pos`
            // again in the meantime, which fills the hole.
            if hdr
                .state
                .compare_exchange(free, SKIP | free, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                let h = self.ctl.head.0.load(Ordering::Acquire);
                if h == c.pos {
                    self.step_over(h, SKIP | free);
                }
                self.ctl.not_empty.0.notify();
            }
        }
        self.ctl.not_full.0.notify();
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// Puts a copy of `msg` if there is room now.
    ///
    /// Like every `try_` call, it waits (for at most about 2 ms) for a get
    /// that is copying out the message of the slot it needs, so it says
    /// [`Error::Full`] only when the queue holds `capacity` positions, or
    /// when that get is stuck (its thread preempted, or a zero-copy
    /// [`GetGrant`] held open).
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::Closed`], [`Error::MessageTooLarge`] (and
    /// nothing is put), [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 1, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"one")?;
    /// assert!(matches!(q.try_put(b"two"), Err(shmkit::Error::Full)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put(&self, msg: &[u8]) -> Result<()> {
        self.put_until(msg, None)
    }

    /// Puts a copy of `msg`, waiting for room until `deadline` (`None`:
    /// only try once; `Some(Deadline::NEVER)`: as long as it takes).
    pub(crate) fn put_until(&self, msg: &[u8], deadline: Option<Deadline>) -> Result<()> {
        self.check_len(msg.len())?;
        // A claim taken from us by a mistaken recovery is retried at a new
        // position (the message is still ours to copy); a few such losses
        // in a row mean someone keeps writing over our claims.
        let mut attempt = 1;
        loop {
            let c = self.claim_put_until(false, deadline)?;
            match self.publish(c, msg.len(), |buf| buf.copy_from_slice(msg)) {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 3 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }

    fn claim_put_until(&self, long: bool, deadline: Option<Deadline>) -> Result<Claim> {
        self.wait_for(
            deadline,
            &self.ctl.not_full.0,
            || self.room_maybe(),
            |check_dead| self.claim_put(long, check_dead),
        )
    }

    /// The waiting shared by puts and gets: try `claim`; without a deadline,
    /// say why not (`Full`/`Empty`); else spin (adaptively), then sleep on
    /// `notify` until `maybe()` says to look again, for at most the liveness
    /// interval at a time, after which `claim` also reads the liveness of
    /// whoever blocks it. Never times out early.
    fn wait_for<T>(
        &self,
        deadline: Option<Deadline>,
        notify: &Notify,
        maybe: impl Fn() -> bool,
        claim: impl Fn(bool) -> Result<Try<T>>,
    ) -> Result<T> {
        let mut spun = false;
        let mut check_dead = false;
        let mut looked_at_dead = false;
        loop {
            let not_now = match claim(check_dead)? {
                Try::Done(v) => return Ok(v),
                Try::Full => Error::Full,
                Try::Empty => Error::Empty,
            };
            let Some(deadline) = deadline else {
                return Err(not_now);
            };
            if !spun {
                spun = true;
                let got = self.spin.spin(deadline, || match claim(false) {
                    Ok(Try::Done(v)) => Some(Ok(v)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                });
                match got {
                    Some(r) => return r,
                    None => continue,
                }
            }
            if deadline.expired() {
                // One last look, reading the liveness of whoever blocks us,
                // so that a zero timeout still steps over a dead claim.
                return match claim(true)? {
                    Try::Done(v) => Ok(v),
                    _ => Err(Error::Timeout),
                };
            }
            // Have a participant's exit wake us (see `sync::watch`): then
            // the sleep needs no short interval to notice a death.
            let deaths = sync::deaths();
            let (dead, interval) = self.watch_all(notify.futex());
            if dead && !looked_at_dead {
                // A participant is dead already: one look with liveness
                // (its entry may stay in the table long after).
                looked_at_dead = true;
                check_dead = true;
                continue;
            }
            let (until, is_deadline) = deadline.or_within(interval);
            let woken = notify.sleep(until, &maybe);
            if !woken && is_deadline {
                // One last look, then Timeout.
                return match claim(true)? {
                    Try::Done(v) => Ok(v),
                    _ => Err(Error::Timeout),
                };
            }
            check_dead = !woken || sync::deaths() != deaths;
        }
    }

    /// A cheap look: might a put succeed now (or should a sleeper wake)?
    /// Not while the slot at the tail still holds, or is being read or
    /// written for, the previous lap, or the count is full and the head
    /// holds nothing to step over: their owners notify when they are done
    /// (or are found dead at the next liveness check).
    fn room_maybe(&self) -> bool {
        if self.is_closed() {
            return true;
        }
        let t = self.ctl.tail.0.load(Ordering::Relaxed);
        if self.capacity < self.slots {
            let h = self.ctl.head.0.load(Ordering::Acquire);
            if t.wrapping_sub(h) as i64 >= self.capacity as i64 {
                return self.hdr(h).state.load(Ordering::Acquire) & KIND == SKIP;
            }
        }
        let s = self.hdr(t).state.load(Ordering::Acquire);
        let d = diff40(s, t);
        let busy = match s & KIND {
            0 => d == 1 - self.slots as i64,
            SKIP => false,
            _ => d == -(self.slots as i64),
        };
        !busy
    }

    // ---- get ------------------------------------------------------------

    /// Claims the message at the head: `Done((claim, len))`. `need` is
    /// checked against the length before claiming: a message longer than
    /// `need` is left in place ([`Error::BufferTooSmall`]).
    fn claim_get(
        &self,
        need: Option<usize>,
        long: bool,
        check_dead: bool,
    ) -> Result<Try<(Claim, usize)>> {
        let who = self.me()?;
        let ctl = self.ctl;
        let slots = self.slots as i64;
        let mut patience = Patience::default();
        let mut h = ctl.head.0.load(Ordering::Relaxed);
        for _ in 0..BUDGET {
            let hdr = self.hdr(h);
            // SYNC POINT: Acquire pairs with the producer's Release in `publish`.
            let s = hdr.state.load(Ordering::Acquire);
            let d = diff40(s, h);
            match (s & KIND, d) {
                (0, 1) if s == p40(h.wrapping_add(1)) => {
                    if let Some(cap) = need {
                        let len = hdr.len.load(Ordering::Relaxed) as usize;
                        if len > cap && len <= self.max_message {
                            // Make sure `len` is this message's: the state
                            // has not moved since we read it.
                            if hdr.state.load(Ordering::Acquire) == s {
                                return Err(Error::BufferTooSmall { needed: len });
                            }
                            h = ctl.head.0.load(Ordering::Relaxed);
                            continue;
                        }
                    }
                    let mine = claim(READING | if long { LONG } else { 0 }, who, h);
                    // SYNC POINT: AcqRel: whoever sees our claim also sees
                    // our participant entry's token (stored before).
                    if hdr
                        .state
                        .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        let _ = ctl.head.0.compare_exchange(
                            h,
                            h.wrapping_add(1),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        let c = Claim { pos: h, word: mine };
                        // The length, read once under our claim, checked
                        // here and then used: a rewrite after the check
                        // above is caught, never trusted.
                        let len = hdr.len.load(Ordering::Relaxed) as usize;
                        let fits = need.map_or(len <= self.max_message, |cap| len <= cap);
                        if len > self.max_message || !fits {
                            let _ = self.release(c);
                            return Err(Error::corrupted(
                                "",
                                format!(
                                    "message length {len} exceeds the maximum {} (or changed \
                                     while it was being claimed)",
                                    self.max_message
                                ),
                            ));
                        }
                        return Ok(Try::Done((c, len)));
                    }
                }
                (0, 0) if s == p40(h) => {
                    if ctl.head.0.load(Ordering::Relaxed) == h {
                        let t = ctl.tail.0.load(Ordering::Acquire);
                        if t.wrapping_sub(h) as i64 > 0 && !patience.spent() {
                            // Position h was claimed and is being given back
                            // (an abandoned grant): wait for that to finish.
                            self.settle(hdr, s, &mut patience);
                        } else {
                            return self.empty_or_closed(h);
                        }
                    }
                }
                (WRITING, 0) => {
                    if self.claimant_dead(s, check_dead) {
                        self.recover_claim(hdr, s);
                    } else if ctl.head.0.load(Ordering::Relaxed) == h {
                        let t = ctl.tail.0.load(Ordering::Acquire);
                        let later = t.wrapping_sub(h) as i64 > 1;
                        if s & LONG == 0 && later && !patience.spent() {
                            // A plain put is copying its message in, and
                            // later positions may be ready already: its copy
                            // takes nanoseconds unless it is preempted.
                            self.settle(hdr, s, &mut patience);
                        } else {
                            // Being written by a live producer: not there yet.
                            return Ok(Try::Empty);
                        }
                    }
                }
                // The consumer of h - slots has not freed the slot yet, so
                // nothing can have been put at h.
                (READING, _) if d == -slots && ctl.head.0.load(Ordering::Relaxed) == h => {
                    return self.empty_or_closed(h);
                }
                // A skipped position, a claimed read, or a head a lap behind.
                _ => {
                    if !self.help_head(h, check_dead) {
                        sync::spin_loop();
                    }
                }
            }
            h = ctl.head.0.load(Ordering::Relaxed);
        }
        Err(self.no_progress("head", h))
    }

    fn empty_or_closed<T>(&self, h: u64) -> Result<Try<T>> {
        if self.is_closed() && self.closed_and_drained(h) {
            Err(Error::Closed)
        } else {
            Ok(Try::Empty)
        }
    }

    /// After close: is there nothing left at or after `h`?
    fn closed_and_drained(&self, h: u64) -> bool {
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        t.wrapping_sub(h) as i64 <= 0
    }

    /// Frees the slot of our READING claim for the next lap. Fails if the
    /// claim is no longer ours (someone took it for a dead one's).
    fn release(&self, c: Claim) -> Result<()> {
        // SYNC POINT: Release pairs with the producer's Acquire in claim_put:
        // our reads of the message happen before its next write.
        let r = self.hdr(c.pos).state.compare_exchange(
            c.word,
            p40(c.pos.wrapping_add(self.slots)),
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.ctl.not_full.0.notify();
        r.map(drop).map_err(|_| Self::claim_lost("get", c.pos))
    }

    fn claim_get_until(
        &self,
        need: Option<usize>,
        long: bool,
        deadline: Option<Deadline>,
    ) -> Result<(Claim, usize)> {
        self.wait_for(
            deadline,
            &self.ctl.not_empty.0,
            || self.message_maybe(),
            |check_dead| self.claim_get(need, long, check_dead),
        )
    }

    /// Sets how long this handle's blocking calls spin before they sleep.
    ///
    /// ```
    /// # let layout = shmkit::raw::QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(shmkit::raw::RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the queue and is used only through it.
    /// let q = unsafe { shmkit::raw::RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.set_spin(shmkit::Spin::Never);
    /// assert_eq!(q.spin(), shmkit::Spin::Never);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.spin.set(spin);
    }

    /// This handle's spin setting.
    ///
    /// ```
    /// # let layout = shmkit::raw::QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(shmkit::raw::RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the queue and is used only through it.
    /// let q = unsafe { shmkit::raw::RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(q.spin(), shmkit::Spin::Adaptive);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spin(&self) -> Spin {
        self.spin.get()
    }

    // ---- readiness, for waiting on many ----------------------------------

    /// The word a waiter for "a message to get" sleeps on.
    pub(crate) fn get_notify(&self) -> &Notify {
        &self.ctl.not_empty.0
    }

    /// The word a waiter for "room to put" sleeps on.
    pub(crate) fn put_notify(&self) -> &Notify {
        &self.ctl.not_full.0
    }

    /// Whether a get would find something now: a message at the head, or
    /// the queue closed. First it helps the head over what needs no
    /// consumer (a skipped put; with `check_dead`, a put whose producer
    /// died), as a consumer would, so that such a position does not make
    /// the queue look ready.
    pub(crate) fn get_ready(&self, check_dead: bool) -> bool {
        self.help_head_a_little(check_dead);
        self.message_maybe()
    }

    /// Whether a put would find room now (or the queue closed). First it
    /// helps the head on (see `get_ready`) and, with `check_dead`, frees a
    /// last-lap slot at the tail whose reader or writer died, as a blocked
    /// producer would.
    pub(crate) fn put_ready(&self, check_dead: bool) -> bool {
        self.help_head_a_little(check_dead);
        if check_dead {
            let t = self.ctl.tail.0.load(Ordering::Relaxed);
            let hdr = self.hdr(t);
            let s = hdr.state.load(Ordering::Acquire);
            if s & KIND & (READING | WRITING) != 0
                && diff40(s, t) == -(self.slots as i64)
                && self.claimant_dead(s, true)
            {
                self.recover_claim(hdr, s);
                self.help_head_a_little(false);
            }
        }
        self.room_maybe()
    }

    /// A bounded number of `help_head` steps.
    fn help_head_a_little(&self, check_dead: bool) {
        for _ in 0..8 {
            let h = self.ctl.head.0.load(Ordering::Relaxed);
            if !self.help_head(h, check_dead) {
                break;
            }
        }
    }

    /// A cheap look: might a get succeed now (or should a sleeper wake)?
    /// Not while the slot at the head is free or being written: the
    /// producer notifies when it publishes (or is found dead at the next
    /// liveness check).
    fn message_maybe(&self) -> bool {
        if self.is_closed() {
            return true;
        }
        let h = self.ctl.head.0.load(Ordering::Relaxed);
        let s = self.hdr(h).state.load(Ordering::Acquire);
        let d = diff40(s, h);
        let waiting = match s & KIND {
            0 | WRITING => d == 0,
            READING => d == -(self.slots as i64),
            _ => false,
        };
        !waiting
    }

    /// Copies out the message of our claim and frees its slot. The bytes
    /// are copied into `out` before the slot is freed; if the claim turns
    /// out to have been taken from us meanwhile, they may be torn, and the
    /// call fails.
    fn take(&self, c: Claim, len: usize, out: &mut [u8]) -> Result<usize> {
        let dst = out
            .get_mut(..len)
            .ok_or(Error::BufferTooSmall { needed: len })?;
        // SAFETY: we hold the READING claim on this slot: its producer
        // published it (Release/Acquire) and nobody writes it until we free
        // it; len <= max_message was checked under the claim.
        let src = unsafe { std::slice::from_raw_parts(self.data_of(c.pos), len) };
        dst.copy_from_slice(src);
        self.release(c)?;
        Ok(len)
    }

    pub(crate) fn reserve_until(
        &self,
        len: usize,
        deadline: Option<Deadline>,
    ) -> Result<PutGrant<'_>> {
        self.check_len(len)?;
        let claim = self.claim_put_until(true, deadline)?;
        Ok(PutGrant {
            queue: self,
            claim,
            len,
            done: false,
        })
    }

    pub(crate) fn get_ref_until(&self, deadline: Option<Deadline>) -> Result<GetGrant<'_>> {
        let (claim, len) = self.claim_get_until(None, true, deadline)?;
        Ok(GetGrant {
            queue: self,
            claim,
            len,
        })
    }

    /// Reserves room for a message of `len` bytes if there is room now, to
    /// be written in place; see [`Queue::reserve`](crate::Queue::reserve).
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::Closed`], [`Error::MessageTooLarge`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// let mut g = q.try_reserve(2)?;
    /// g.copy_from_slice(b"ok");
    /// g.commit()?;
    /// assert_eq!(&*q.try_get_ref()?, b"ok");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_reserve(&self, len: usize) -> Result<PutGrant<'_>> {
        self.reserve_until(len, None)
    }

    /// Takes the next message in place if there is one now; see
    /// [`Queue::get_ref`](crate::Queue::get_ref).
    ///
    /// # Errors
    /// [`Error::Empty`]; [`Error::Closed`] once closed and drained.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert!(matches!(q.try_get_ref(), Err(shmkit::Error::Empty)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_ref(&self) -> Result<GetGrant<'_>> {
        self.get_ref_until(None)
    }

    /// Puts a copy of `msg`, waiting for room as long as it takes (see
    /// [`Queue::put`](crate::Queue::put)).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::MessageTooLarge`], [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.put(b"a")?;
    /// assert_eq!(q.get()?, b"a");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put(&self, msg: &[u8]) -> Result<()> {
        self.put_until(msg, Some(Deadline::NEVER))
    }

    /// Takes the next message, waiting as long as it takes (see
    /// [`Queue::get`](crate::Queue::get)).
    ///
    /// # Errors
    /// [`Error::Closed`] once closed and drained; [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.put(b"b")?;
    /// assert_eq!(q.get()?, b"b");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get(&self) -> Result<Vec<u8>> {
        self.get_until(Some(Deadline::NEVER))
    }

    /// Puts a copy of `msg`, waiting for room at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 1, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// use std::time::Duration;
    /// q.put_timeout(b"a", Duration::from_millis(1))?;
    /// assert!(matches!(q.put_timeout(b"b", Duration::from_millis(1)), Err(shmkit::Error::Timeout)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.put_until(msg, Some(Deadline::after(timeout)))
    }

    /// Takes the next message, waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 1, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// use std::time::Duration;
    /// assert!(matches!(q.get_timeout(Duration::from_millis(1)), Err(shmkit::Error::Timeout)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.get_until(Some(Deadline::after(timeout)))
    }

    /// Takes the next message if there is one now.
    ///
    /// Like every `try_` call, it waits (for at most about 2 ms) for a
    /// put that is copying in the message at the head while later messages
    /// are ready, so it says [`Error::Empty`] only when no message is ready
    /// at the head: nothing was put, or the put at the head is stuck (its
    /// thread preempted, or a zero-copy [`PutGrant`] held open).
    ///
    /// # Errors
    /// [`Error::Empty`]; [`Error::Closed`] once closed and drained;
    /// [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert!(matches!(q.try_get(), Err(shmkit::Error::Empty)));
    /// q.try_put(b"")?;
    /// assert_eq!(q.try_get()?, b"");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get(&self) -> Result<Vec<u8>> {
        self.get_until(None)
    }

    /// Copies the next message into `buf` if there is one now; returns its
    /// length. A message longer than `buf` stays queued.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::BufferTooSmall`] (the message stays),
    /// [`Error::Closed`] once closed and drained, [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"abc")?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(q.try_get_into(&mut buf)?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.get_into_until(buf, None)
    }

    pub(crate) fn get_until(&self, deadline: Option<Deadline>) -> Result<Vec<u8>> {
        let (c, len) = self.claim_get_until(None, false, deadline)?;
        let mut v = vec![0u8; len];
        self.take(c, len, &mut v)?;
        Ok(v)
    }

    pub(crate) fn get_into_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        let (c, len) = self.claim_get_until(Some(buf.len()), false, deadline)?;
        self.take(c, len, buf)
    }
}

impl Drop for RawQueue<'_> {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Room for one message, written in place; see [`Queue::reserve`](crate::Queue::reserve).
///
/// The bytes are the slot's own, in shared memory: this process holds the
/// slot's claim, so no process that follows the protocol reads or writes
/// them until the grant is committed or dropped. A hostile or buggy process
/// can still write them at any time; the grant then holds what it wrote,
/// never memory outside the slot.
pub struct PutGrant<'a> {
    queue: &'a RawQueue<'a>,
    claim: Claim,
    len: usize,
    done: bool,
}

impl PutGrant<'_> {
    /// Sends the message (all `len` bytes, as written).
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the claim was taken from this process (which
    /// only a peer that wrote over the queue, or a wrong liveness verdict,
    /// can do): the message is not sent.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut g = q.reserve(2)?;
    /// g[0] = 1;
    /// g[1] = 2;
    /// g.commit()?;
    /// assert_eq!(q.get()?, [1, 2]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.queue.publish(self.claim, self.len, |_| {})
    }

    /// Sends only the first `len` bytes (at most the reserved length).
    ///
    /// # Errors
    /// As for [`commit`](PutGrant::commit).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut g = q.reserve(16)?;
    /// g[..2].copy_from_slice(b"hi");
    /// g.commit_len(2)?;
    /// assert_eq!(q.get()?, b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit_len(mut self, len: usize) -> Result<()> {
        self.len = len.min(self.len);
        self.commit()
    }
}

impl Deref for PutGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the WRITING claim on the slot until commit or drop,
        // so no process that follows the protocol touches it; len <=
        // max_message (checked in reserve), the slot's size. A hostile
        // writer can change the bytes, not the bounds.
        unsafe { std::slice::from_raw_parts(self.queue.data_of(self.claim.pos), self.len) }
    }
}

impl DerefMut for PutGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.queue.data_of(self.claim.pos), self.len) }
    }
}

impl Drop for PutGrant<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.queue.abandon(self.claim);
        }
    }
}

impl fmt::Debug for PutGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutGrant").field("len", &self.len).finish()
    }
}

/// A message read in place; its slot is freed when this drops. See
/// [`Queue::get_ref`](crate::Queue::get_ref).
///
/// The bytes are the slot's own, in shared memory. While the grant lives,
/// this process holds the slot's claim, so no process that follows the
/// protocol writes them. A hostile or buggy process can: the reader then
/// sees bytes that change under it (copy them out first if that matters),
/// never memory outside the slot, whose bounds were checked once, under the
/// claim.
pub struct GetGrant<'a> {
    queue: &'a RawQueue<'a>,
    claim: Claim,
    len: usize,
}

impl Deref for GetGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the READING claim on the slot until drop; `len` is
        // what the claim returned, checked against max_message (the slot's
        // size) under the claim.
        unsafe { std::slice::from_raw_parts(self.queue.data_of(self.claim.pos), self.len) }
    }
}

impl Drop for GetGrant<'_> {
    fn drop(&mut self) {
        // A claim taken from us meanwhile is someone else's now: nothing to
        // free.
        let _ = self.queue.release(self.claim);
    }
}

impl fmt::Debug for GetGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetGrant").field("len", &self.len).finish()
    }
}

/// Builds a queue on the heap for loom models: control block, headers, data.
#[cfg(loom)]
pub mod model {
    use super::*;

    /// A heap queue; `handle()` gives a `RawQueue` over it.
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
