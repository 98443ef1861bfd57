//! `RawQueue`: a bounded multi-producer, multi-consumer queue of messages of
//! up to `max_message` bytes, in shared memory, that survives any producer or
//! consumer dying at any instruction.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue (per-slot sequence numbers, a `tail`
//! for producers and a `head` for consumers; see 1024cores.net, "Bounded
//! MPMC queue"), changed in one way: a producer or consumer claims a *slot*
//! with a CAS that writes its pid into the slot's state word, *before* it
//! moves `tail`/`head`. Whoever sees a claimed slot at `tail`/`head` helps
//! move the index on, and whoever finds the claimant dead can undo or skip
//! the claim. So a process killed anywhere leaves no hole that wedges the
//! queue:
//!
//! - killed after claiming a slot to write (`WRITING`): the message was never
//!   acknowledged (put had not returned). A consumer that reaches it, or a
//!   producer a lap later, finds the pid dead and turns the slot into
//!   "free for the next lap", which consumers skip.
//! - killed after claiming a slot to read (`READING`): the message is lost
//!   with the consumer it was handed to; a producer a lap later frees it.
//! - killed between a claim and moving the index: others help the index on.
//!
//! # The slot state word (64 bits)
//!
//! | bits   | field    | meaning                                              |
//! |--------|----------|------------------------------------------------------|
//! | 0..40  | `pos`    | a position, modulo 2^40                              |
//! | 40..62 | `pid`    | the claimant's pid (claimed states only)             |
//! | 62     | WRITING  | a producer is writing the message for `pos`          |
//! | 63     | READING  | a consumer is reading the message for `pos`          |
//!
//! Unclaimed, `pos == p` means "free for the producer of position p", and
//! `pos == p + 1` means "holds the message of position p" (Vyukov's
//! encoding). For a consumer at `head = h` and the slot `h % slots`:
//!
//! | state               | meaning                         | consumer does                  |
//! |---------------------|---------------------------------|--------------------------------|
//! | `h + 1`             | message ready                   | claims READING, reads, frees   |
//! | `h`                 | nothing put yet                 | `Empty`                        |
//! | `WRITING(h)` live   | being written                   | `Empty` (for now)              |
//! | `WRITING(h)` dead   | abandoned put                   | skips it: state `h + slots`    |
//! | `READING(h)`        | another consumer has it         | helps `head` on (frees if dead)|
//! | `h + slots(+1)`, claims of `h + slots` | `head` lags | helps `head` on                |
//!
//! and symmetrically for a producer at `tail = t` (`t - slots + 1`: full;
//! `READING`/`WRITING(t - slots)` live: full, dead: freed for `t`).
//!
//! Positions are 64-bit in `head`/`tail` and 40-bit in slots; comparisons are
//! modulo 2^40, which is exact while fewer than 2^39 messages are in flight.
//!
//! # Untrusted memory
//!
//! The configuration (slot count, capacity, message size, stride) is read and
//! validated once, at attach, and kept in the handle; later writes to it by
//! others change nothing here. A message length is checked against
//! `max_message` before it is used. A state word that fits no case above is
//! looked at again; if neither it nor the index moves while we look, the
//! queue is reported [`Error::Corrupted`] rather than looped on.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::raw::notify::Notify;
use crate::raw::spin::AdaptiveSpin;
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Ordering, TaskStamp};

const POS_MASK: u64 = (1 << 40) - 1;
const PID_SHIFT: u32 = 40;
const PID_MASK: u64 = (1 << 22) - 1;
const WRITING: u64 = 1 << 62;
const READING: u64 = 1 << 63;
const FLAGS: u64 = WRITING | READING;

/// Entries in the table of participating processes (for start times).
/// Open addressing from `pid % PROCS`; entries are replaced, never cleared.
const PROCS: usize = if cfg!(loom) { 4 } else { 64 };

/// How long a claim must look stuck before its claimant's liveness is read.
const STUCK: Duration = if cfg!(loom) {
    Duration::ZERO
} else {
    sync::LIVENESS_INTERVAL
};

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
fn claim(flag: u64, pid: u32, pos: u64) -> u64 {
    flag | ((u64::from(pid) & PID_MASK) << PID_SHIFT) | p40(pos)
}

#[inline]
fn claimant(s: u64) -> u32 {
    ((s >> PID_SHIFT) & PID_MASK) as u32
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
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    not_empty: Line<Notify>,
    not_full: Line<Notify>,
    procs: [AtomicU64; PROCS],
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
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            not_empty: Line(Notify::new()),
            not_full: Line(Notify::new()),
            procs: std::array::from_fn(|_| AtomicU64::new(0)),
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
#[derive(Debug)]
pub struct RawQueue<'a> {
    ctl: &'a QueueCtl,
    hdrs: *const u8,
    data: *mut u8,
    stride: usize,
    slots: u64,
    capacity: u64,
    max_message: usize,
    me: TaskStamp,
    /// The last claim seen blocking progress, and since when (nanoseconds
    /// of monotonic time), so that liveness is read only for a stuck claim.
    stuck: (AtomicU64, AtomicU64),
    /// How long blocking calls spin before they sleep.
    spin: AdaptiveSpin,
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

impl<'a> RawQueue<'a> {
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
    /// [`Error::InvalidArgument`] for a misaligned or short region;
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
            me: sync::current_process(),
            stuck: (AtomicU64::new(u64::MAX), AtomicU64::new(0)),
            spin: AdaptiveSpin::new(),
        };
        q.register();
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
        RawQueue {
            ctl,
            hdrs: hdrs.as_ptr().cast(),
            data,
            // Headers and data strides differ in this form; see `hdr`/`data_of`.
            stride: 0,
            slots,
            capacity: ctl.capacity.load(Ordering::Relaxed),
            max_message,
            me: sync::current_process(),
            stuck: (AtomicU64::new(u64::MAX), AtomicU64::new(0)),
            spin: AdaptiveSpin::new(),
        }
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

    /// Messages in the queue now (a snapshot; includes ones being written
    /// or read).
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

    // ---- liveness -------------------------------------------------------

    /// Records this process in the participants table, so that others can
    /// tell it from a later process with the same pid.
    fn register(&self) {
        let me = self.me;
        let start = (me.tid() as usize) % PROCS;
        for k in 0..PROCS {
            let e = &self.ctl.procs[(start + k) % PROCS];
            let cur = e.load(Ordering::Relaxed);
            if cur == me.0 {
                return;
            }
            let old = TaskStamp(cur);
            if (cur == 0 || old.tid() == me.tid() || !sync::task_alive(old.tid(), Some(old)))
                && e.compare_exchange(cur, me.0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // Table full: liveness of our claims falls back to the pid alone.
    }

    fn process_alive(&self, pid: u32) -> bool {
        let start = pid as usize % PROCS;
        let stamp = (0..PROCS)
            .map(|k| TaskStamp(self.ctl.procs[(start + k) % PROCS].load(Ordering::Relaxed)))
            .take_while(|s| s.0 != 0)
            .find(|s| s.tid() == pid && pid != 0);
        sync::task_alive(pid, stamp)
    }

    /// Whether the claimant of `s` is dead, read only once the same claim
    /// has blocked us for [`STUCK`] (or at once when `now` is true).
    fn claimant_dead(&self, s: u64, now: bool) -> bool {
        let pid = claimant(s);
        if pid == self.me.tid() {
            // Our own process: a thread of ours is mid-operation.
            return false;
        }
        if !now {
            let t = sync::now().as_nanos() as u64;
            if self.stuck.0.load(Ordering::Relaxed) != s {
                self.stuck.0.store(s, Ordering::Relaxed);
                self.stuck.1.store(t, Ordering::Relaxed);
                if !STUCK.is_zero() {
                    return false;
                }
            } else if t.saturating_sub(self.stuck.1.load(Ordering::Relaxed))
                < STUCK.as_nanos() as u64
            {
                return false;
            }
        }
        !self.process_alive(pid)
    }

    // ---- put ------------------------------------------------------------

    /// Claims the slot for the next position, or says why not.
    fn claim_put(&self, check_dead: bool) -> Result<Try<u64>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let ctl = self.ctl;
        let slots = self.slots as i64;
        let mut t = ctl.tail.0.load(Ordering::Relaxed);
        let mut unchanged = 0u32;
        let mut last = (t, u64::MAX);
        loop {
            if self.capacity < self.slots {
                let h = ctl.head.0.load(Ordering::Acquire);
                if t.wrapping_sub(h) as i64 >= self.capacity as i64 {
                    let t2 = ctl.tail.0.load(Ordering::Relaxed);
                    if t2 == t {
                        return Ok(Try::Full);
                    }
                    t = t2;
                    continue;
                }
            }
            let hdr = self.hdr(t);
            // SYNC POINT: Acquire pairs with the consumer's Release that freed
            // the slot, so its reads of the old message are done.
            let s = hdr.state.load(Ordering::Acquire);
            let d = diff40(s, t);
            match s & FLAGS {
                0 if d == 0 => {
                    let mine = claim(WRITING, self.me.tid(), t);
                    if hdr
                        .state
                        .compare_exchange(s, mine, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        let _ = ctl.tail.0.compare_exchange(
                            t,
                            t + 1,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        return Ok(Try::Done(t));
                    }
                }
                // Position t is taken (being written, or already written):
                // help the tail on.
                0 if d == 1 => {
                    let _ =
                        ctl.tail
                            .0
                            .compare_exchange(t, t + 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                WRITING if d == 0 => {
                    let _ =
                        ctl.tail
                            .0
                            .compare_exchange(t, t + 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                // The message of t - slots is still there: full.
                0 if d == 1 - slots => {
                    let t2 = ctl.tail.0.load(Ordering::Relaxed);
                    if t2 == t {
                        return Ok(Try::Full);
                    }
                }
                // Position t was put and is being read, or read (or skipped)
                // already: the tail lags.
                READING if d == 0 => {
                    let _ =
                        ctl.tail
                            .0
                            .compare_exchange(t, t + 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                0 if d == slots => {
                    let _ =
                        ctl.tail
                            .0
                            .compare_exchange(t, t + 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                // Someone is reading or writing position t - slots.
                READING | WRITING if d == -slots => {
                    if self.claimant_dead(s, check_dead) {
                        // Free the slot for position t: an abandoned put is
                        // skipped by consumers, an abandoned get is lost.
                        let _ = hdr.state.compare_exchange(
                            s,
                            p40(t),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    } else {
                        let t2 = ctl.tail.0.load(Ordering::Relaxed);
                        if t2 == t {
                            return Ok(Try::Full);
                        }
                    }
                }
                _ => {}
            }
            let t2 = ctl.tail.0.load(Ordering::Relaxed);
            if (t2, s) == last {
                unchanged += 1;
                if unchanged > 10_000 {
                    return Err(Error::corrupted(
                        "",
                        format!("queue slot state {s:#x} does not fit tail {t}"),
                    ));
                }
                sync::spin_loop();
            } else {
                unchanged = 0;
                last = (t2, s);
            }
            t = t2;
        }
    }

    /// Writes `len` bytes via `fill` into the claimed slot of position `t`
    /// and publishes it.
    fn publish(&self, t: u64, len: usize, fill: impl FnOnce(&mut [u8])) {
        let hdr = self.hdr(t);
        // SAFETY: we hold the WRITING claim on this slot: no one else reads
        // or writes its data until we publish; len <= max_message, checked
        // by the caller, and the slot has max_message data bytes.
        fill(unsafe { std::slice::from_raw_parts_mut(self.data_of(t), len) });
        hdr.len.store(len as u32, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the consumer's Acquire load of state.
        hdr.state.store(p40(t + 1), Ordering::Release);
        self.ctl.not_empty.0.notify();
    }

    /// Gives the claimed slot of position `t` up without a message: it
    /// becomes free for the next lap, and consumers skip position `t`.
    fn abandon(&self, t: u64) {
        self.hdr(t)
            .state
            .store(p40(t + self.slots), Ordering::Release);
        // If it is at the head, move the head past it (as a consumer would).
        let _ = self
            .ctl
            .head
            .0
            .compare_exchange(t, t + 1, Ordering::Relaxed, Ordering::Relaxed);
        self.ctl.not_empty.0.notify();
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
        let t = self.claim_put_until(deadline)?;
        self.publish(t, msg.len(), |buf| buf.copy_from_slice(msg));
        Ok(())
    }

    pub(crate) fn claim_put_until(&self, deadline: Option<Deadline>) -> Result<u64> {
        self.wait_for(
            deadline,
            &self.ctl.not_full.0,
            || self.room_maybe(),
            |check_dead| self.claim_put(check_dead),
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
                let got = self.spin.spin(|| match claim(false) {
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
                return Err(Error::Timeout);
            }
            let (until, is_deadline) = deadline.or_within(sync::LIVENESS_INTERVAL);
            let woken = notify.sleep(until, &maybe);
            if !woken && is_deadline {
                // One last look, then Timeout.
                return match claim(true)? {
                    Try::Done(v) => Ok(v),
                    _ => Err(Error::Timeout),
                };
            }
            check_dead = !woken;
        }
    }

    /// A cheap look: might a put succeed now (or should a sleeper wake)?
    /// Not while the slot at the tail still holds, or is being read or
    /// written for, the previous lap: its owner notifies when it is done
    /// (or is found dead at the next liveness check).
    fn room_maybe(&self) -> bool {
        if self.is_closed() {
            return true;
        }
        let t = self.ctl.tail.0.load(Ordering::Relaxed);
        let s = self.hdr(t).state.load(Ordering::Acquire);
        let d = diff40(s, t);
        let busy = match s & FLAGS {
            0 => d == 1 - self.slots as i64,
            _ => d == -(self.slots as i64),
        };
        !busy
            && (self.capacity == self.slots
                || (t.wrapping_sub(self.ctl.head.0.load(Ordering::Acquire)) as i64)
                    < self.capacity as i64)
    }

    // ---- get ------------------------------------------------------------

    /// Claims the message at the head: `Done((position, len))`.
    /// `need` is checked against the length before claiming: a message
    /// longer than `need` is left in place ([`Error::BufferTooSmall`]).
    fn claim_get(&self, need: Option<usize>, check_dead: bool) -> Result<Try<(u64, usize)>> {
        let ctl = self.ctl;
        let slots = self.slots as i64;
        let mut h = ctl.head.0.load(Ordering::Relaxed);
        let mut unchanged = 0u32;
        let mut last = (h, u64::MAX);
        loop {
            let hdr = self.hdr(h);
            // SYNC POINT: Acquire pairs with the producer's Release in `publish`.
            let s = hdr.state.load(Ordering::Acquire);
            let d = diff40(s, h);
            match s & FLAGS {
                0 if d == 1 => {
                    let len = hdr.len.load(Ordering::Relaxed) as usize;
                    if let Some(cap) = need {
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
                    let mine = claim(READING, self.me.tid(), h);
                    if hdr
                        .state
                        .compare_exchange(s, mine, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        let _ = ctl.head.0.compare_exchange(
                            h,
                            h + 1,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        // Re-read the length under our claim.
                        let len = hdr.len.load(Ordering::Relaxed) as usize;
                        if len > self.max_message {
                            self.release(h);
                            return Err(Error::corrupted(
                                "",
                                format!(
                                    "message length {len} exceeds the maximum {}",
                                    self.max_message
                                ),
                            ));
                        }
                        return Ok(Try::Done((h, len)));
                    }
                }
                0 if d == 0 => {
                    let h2 = ctl.head.0.load(Ordering::Relaxed);
                    if h2 == h {
                        return if self.is_closed() && self.closed_and_drained(h) {
                            Err(Error::Closed)
                        } else {
                            Ok(Try::Empty)
                        };
                    }
                }
                WRITING if d == 0 => {
                    if self.claimant_dead(s, check_dead) {
                        // An abandoned put: skip position h.
                        if hdr
                            .state
                            .compare_exchange(
                                s,
                                p40(h + self.slots),
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                        {
                            self.ctl.not_full.0.notify();
                        }
                        let _ = ctl.head.0.compare_exchange(
                            h,
                            h + 1,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    } else if ctl.head.0.load(Ordering::Relaxed) == h {
                        // Being written by a live producer: not there yet.
                        return Ok(Try::Empty);
                    }
                }
                READING if d == 0 => {
                    // Usually the reader has just claimed and is about to move
                    // the head; only a claim stuck for long is looked into.
                    if self.claimant_dead(s, check_dead)
                        && hdr
                            .state
                            .compare_exchange(
                                s,
                                p40(h + self.slots),
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                    {
                        self.ctl.not_full.0.notify();
                    }
                    let _ =
                        ctl.head
                            .0
                            .compare_exchange(h, h + 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                // The consumer of h - slots has not freed the slot yet, so
                // nothing can have been put at h.
                READING if d == -slots && ctl.head.0.load(Ordering::Relaxed) == h => {
                    return if self.is_closed() && self.closed_and_drained(h) {
                        Err(Error::Closed)
                    } else {
                        Ok(Try::Empty)
                    };
                }
                // The slot has moved past h (read, or skipped): head lags.
                0 if d == slots || d == slots + 1 => {
                    let _ =
                        ctl.head
                            .0
                            .compare_exchange(h, h + 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                READING | WRITING if d == slots => {
                    let _ =
                        ctl.head
                            .0
                            .compare_exchange(h, h + 1, Ordering::Relaxed, Ordering::Relaxed);
                }
                _ => {}
            }
            let h2 = ctl.head.0.load(Ordering::Relaxed);
            if (h2, s) == last {
                unchanged += 1;
                if unchanged > 10_000 {
                    return Err(Error::corrupted(
                        "",
                        format!("queue slot state {s:#x} does not fit head {h}"),
                    ));
                }
                sync::spin_loop();
            } else {
                unchanged = 0;
                last = (h2, s);
            }
            h = h2;
        }
    }

    /// After close: is there nothing left at or after `h`?
    fn closed_and_drained(&self, h: u64) -> bool {
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        t.wrapping_sub(h) as i64 <= 0
    }

    /// Frees the slot of position `h` that we hold READING.
    fn release(&self, h: u64) {
        // SYNC POINT: Release pairs with the producer's Acquire in claim_put:
        // our reads of the message happen before its next write.
        self.hdr(h)
            .state
            .store(p40(h + self.slots), Ordering::Release);
        self.ctl.not_full.0.notify();
    }

    pub(crate) fn claim_get_until(
        &self,
        need: Option<usize>,
        deadline: Option<Deadline>,
    ) -> Result<(u64, usize)> {
        self.wait_for(
            deadline,
            &self.ctl.not_empty.0,
            || self.message_maybe(),
            |check_dead| self.claim_get(need, check_dead),
        )
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
        let waiting = match s & FLAGS {
            0 => d == 0,
            WRITING => d == 0,
            _ => d == -(self.slots as i64),
        };
        !waiting
    }

    /// Copies out the message of the claimed position `h` and frees its slot.
    pub(crate) fn take(&self, h: u64, len: usize, out: &mut [u8]) {
        // SAFETY: we hold the READING claim on this slot: its producer
        // published it (Release/Acquire) and nobody writes it until we free
        // it; len <= max_message was checked under the claim.
        let src = unsafe { std::slice::from_raw_parts(self.data_of(h), len) };
        out[..len].copy_from_slice(src);
        self.release(h);
    }

    /// The message bytes of the claimed position `h`.
    ///
    /// # Safety
    /// The caller holds the READING claim on `h` (from `claim_get_until`)
    /// and frees it only after the slice is gone; `len` is what the claim
    /// returned.
    pub(crate) unsafe fn peek(&self, h: u64, len: usize) -> &[u8] {
        // SAFETY: the caller's contract, and len <= max_message.
        unsafe { std::slice::from_raw_parts(self.data_of(h), len) }
    }

    /// The first byte of the claimed position `t`'s slot (`max_message`
    /// bytes), to be written by the holder of the WRITING claim only.
    pub(crate) fn slot_ptr(&self, t: u64) -> *mut u8 {
        self.data_of(t)
    }

    pub(crate) fn publish_claimed(&self, t: u64, len: usize) {
        self.publish(t, len, |_| {});
    }

    pub(crate) fn abandon_claimed(&self, t: u64) {
        self.abandon(t);
    }

    pub(crate) fn release_claimed(&self, h: u64) {
        self.release(h);
    }

    pub(crate) fn reserve_until(
        &self,
        len: usize,
        deadline: Option<Deadline>,
    ) -> Result<PutGrant<'_>> {
        self.check_len(len)?;
        let pos = self.claim_put_until(deadline)?;
        Ok(PutGrant {
            queue: self,
            pos,
            len,
            done: false,
        })
    }

    pub(crate) fn get_ref_until(&self, deadline: Option<Deadline>) -> Result<GetGrant<'_>> {
        let (pos, len) = self.claim_get_until(None, deadline)?;
        Ok(GetGrant {
            queue: self,
            pos,
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
    /// g.commit();
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

    pub(crate) fn get_until(&self, deadline: Option<Deadline>) -> Result<Vec<u8>> {
        let (h, len) = self.claim_get_until(None, deadline)?;
        let mut v = vec![0u8; len];
        self.take(h, len, &mut v);
        Ok(v)
    }

    pub(crate) fn get_into_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        let (h, len) = self.claim_get_until(Some(buf.len()), deadline)?;
        self.take(h, len, buf);
        Ok(len)
    }
}

/// Room for one message, written in place; see [`Queue::reserve`](crate::Queue::reserve).
pub struct PutGrant<'a> {
    queue: &'a RawQueue<'a>,
    pos: u64,
    len: usize,
    done: bool,
}

impl PutGrant<'_> {
    /// Sends the message (all `len` bytes, as written).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut g = q.reserve(2)?;
    /// g[0] = 1;
    /// g[1] = 2;
    /// g.commit();
    /// assert_eq!(q.get()?, [1, 2]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit(mut self) {
        self.done = true;
        self.queue.publish_claimed(self.pos, self.len);
    }

    /// Sends only the first `len` bytes (at most the reserved length).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut g = q.reserve(16)?;
    /// g[..2].copy_from_slice(b"hi");
    /// g.commit_len(2);
    /// assert_eq!(q.get()?, b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit_len(mut self, len: usize) {
        self.len = len.min(self.len);
        self.commit();
    }
}

impl Deref for PutGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the WRITING claim on `pos` until commit or drop, so
        // nobody else touches the slot; len <= max_message (checked in
        // reserve), the slot's size.
        unsafe { std::slice::from_raw_parts(self.queue.slot_ptr(self.pos), self.len) }
    }
}

impl DerefMut for PutGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.queue.slot_ptr(self.pos), self.len) }
    }
}

impl Drop for PutGrant<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.queue.abandon_claimed(self.pos);
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
pub struct GetGrant<'a> {
    queue: &'a RawQueue<'a>,
    pos: u64,
    len: usize,
}

impl Deref for GetGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the READING claim on `pos` until drop; `len` is
        // what the claim returned.
        unsafe { self.queue.peek(self.pos, self.len) }
    }
}

impl Drop for GetGrant<'_> {
    fn drop(&mut self) {
        self.queue.release_claimed(self.pos);
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
