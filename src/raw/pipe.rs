//! `RawPipe`: two single-producer single-consumer byte rings carrying
//! length-prefixed messages between two ends, with liveness of each end.
//!
//! # Layout
//!
//! A [`PipeCtl`] (configuration, one record per end, one control block per
//! ring) followed by the ring buffers: ring 0 carries messages from end 0
//! (the creator) to end 1, ring 1 the other way. A one-way pipe has one ring.
//!
//! # The ring
//!
//! `tail` (bytes ever written, by the writer) and `head` (bytes ever read,
//! by the reader) are 64-bit counters on their own cache lines; the buffer
//! is `capacity` bytes (a power of two), indexed modulo. Each side keeps a
//! cached copy of the other's counter and reloads it only when it looks
//! out of room or out of data, so a message costs one store of each counter
//! and no cache-line ping-pong beyond them (the "cached indices" SPSC of
//! Lamport, refined by Giacomoni et al.'s FastForward and by crossbeam's
//! and rtrb's rings).
//!
//! A message is a 4-byte little-endian length, then the bytes. A message
//! that fits in the ring is published with one `Release` store of `tail`
//! once all its bytes are in, so the reader sees it whole or not at all.
//! A larger one is streamed: the writer publishes as much as fits, waits
//! for room, and goes on; the reader collects the pieces in a buffer of its
//! own and delivers the message whole.
//!
//! # Untrusted memory and dead peers
//!
//! Counters read from shared memory are checked: `tail - head` must be
//! within `0..=capacity` and a length within `max_message`, else the read
//! is [`Error::Corrupted`]. Each end records its process (pid and start
//! time) and a `closed` flag; a blocked call wakes every
//! `LIVENESS_INTERVAL` (20 ms) to look whether its peer still lives.
//! A peer that closed or died leaves its sent messages readable; after the
//! last one, reads fail with [`Error::Disconnected`], and so do writes.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::raw::notify::Notify;
use crate::raw::spin::AdaptiveSpin;
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Ordering, TaskStamp};

/// The length prefix of every message.
const LEN_BYTES: usize = 4;

/// A length prefix that means "nothing more before the ring's start": written
/// so that a message reserved in place is contiguous.
const SKIP: u32 = u32::MAX;

/// The stream bytes of a message of `len` bytes: prefix, bytes, padding to 4.
fn record_len(len: usize) -> u64 {
    (LEN_BYTES + len.div_ceil(4) * 4) as u64
}

/// One cache line of its own.
#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Line<T>(T);

/// One end's record.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct EndCtl {
    /// The holder's process stamp; 0 until the end is opened.
    stamp: AtomicU64,
    /// Set when the holder drops its end.
    closed: AtomicU32,
}

/// One ring's counters and wake-ups.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RingCtl {
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    readable: Line<Notify>,
    writable: Line<Notify>,
}

/// Which way a pipe carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ends send and receive.
    Duplex,
    /// Only the creating end sends; the opening end only receives.
    CreatorSends,
    /// Only the opening end sends; the creating end only receives.
    OpenerSends,
}

impl Direction {
    fn code(self) -> u64 {
        match self {
            Direction::Duplex => 0,
            Direction::CreatorSends => 1,
            Direction::OpenerSends => 2,
        }
    }

    fn from_code(c: u64) -> Option<Direction> {
        Some(match c {
            0 => Direction::Duplex,
            1 => Direction::CreatorSends,
            2 => Direction::OpenerSends,
            _ => return None,
        })
    }

    /// Whether ring `r` (0: creator to opener, 1: the other way) exists.
    fn has_ring(self, r: usize) -> bool {
        match self {
            Direction::Duplex => true,
            Direction::CreatorSends => r == 0,
            Direction::OpenerSends => r == 1,
        }
    }
}

/// The control block at the start of a pipe's region.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct PipeCtl {
    capacity: AtomicU64,
    max_message: AtomicU64,
    direction: AtomicU64,
    ends: [EndCtl; 2],
    rings: [RingCtl; 2],
}

impl PipeCtl {
    pub(crate) fn new(layout: &PipeLayout) -> PipeCtl {
        PipeCtl {
            capacity: AtomicU64::new(layout.capacity as u64),
            max_message: AtomicU64::new(layout.max_message as u64),
            direction: AtomicU64::new(layout.direction.code()),
            ends: Default::default(),
            rings: Default::default(),
        }
    }
}

/// The shape of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeLayout {
    /// Bytes in each direction's ring (rounded up to a power of two, at
    /// least 64).
    pub capacity: usize,
    /// The largest message, in bytes (at most `u32::MAX`).
    pub max_message: usize,
    /// Which way messages go.
    pub direction: Direction,
}

impl PipeLayout {
    fn normalized(&self) -> Result<PipeLayout> {
        if self.capacity == 0 || self.capacity > 1 << 40 {
            return Err(Error::InvalidArgument(format!(
                "pipe capacity {} is not in 1..=2^40",
                self.capacity
            )));
        }
        if self.max_message > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "pipe max_message {} exceeds {}",
                self.max_message,
                u32::MAX
            )));
        }
        Ok(PipeLayout {
            capacity: self.capacity.max(64).next_power_of_two(),
            ..*self
        })
    }

    fn rings(&self) -> usize {
        (0..2).filter(|&r| self.direction.has_ring(r)).count()
    }

    /// Bytes a pipe of this shape needs.
    pub(crate) fn size(&self) -> Result<usize> {
        let l = self.normalized()?;
        l.capacity
            .checked_mul(l.rings())
            .and_then(|b| b.checked_add(std::mem::size_of::<PipeCtl>()))
            .filter(|&b| b <= crate::segment::MAX_LEN)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "a pipe of {} bytes per ring is too large",
                    l.capacity
                ))
            })
    }
}

/// The writing half of a ring, with its process-local cache.
#[derive(Debug)]
struct Tx {
    ring: usize,
    data: *mut u8,
    tail: u64,
    head_cache: u64,
}

/// The reading half of a ring, with its process-local cache and a message
/// being streamed in.
#[derive(Debug)]
struct Rx {
    ring: usize,
    data: *mut u8,
    head: u64,
    tail_cache: u64,
    /// A message larger than the ring, being collected: (bytes, expected).
    partial: Option<(Vec<u8>, usize)>,
}

/// One end of a pipe in memory the caller manages. Build it with
/// [`RawPipe::init_in`] (end 0) or [`RawPipe::attach`] (end 1).
#[derive(Debug)]
pub struct RawPipe<'a> {
    ctl: &'a PipeCtl,
    side: usize,
    capacity: u64,
    max_message: usize,
    direction: Direction,
    tx: Option<Tx>,
    rx: Option<Rx>,
    peer_gone: bool,
    /// How long a wait spins before it sleeps.
    spin: AdaptiveSpin,
    /// When the peer's liveness was last read (monotonic nanoseconds).
    last_check: u64,
    /// Unforced liveness looks since the handle was made.
    looks: u32,
}

// The handle is used by one thread at a time (`&mut self` for every
// transfer); moving it to another thread changes nothing in the protocol.
// SAFETY: its pointers point into the region the caller of init_in/attach
// keeps mapped for 'a; nothing in it is tied to a thread.
unsafe impl Send for RawPipe<'_> {}

impl<'a> RawPipe<'a> {
    /// The bytes a pipe of `layout` needs (align the region to 64).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero or too large capacity.
    ///
    /// ```
    /// use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// let n = RawPipe::required_size(&PipeLayout { capacity: 4096, max_message: 1 << 20, direction: Direction::Duplex })?;
    /// assert!(n >= 2 * 4096);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn required_size(layout: &PipeLayout) -> Result<usize> {
        layout.size()
    }

    /// Initialises a pipe in the region and returns its end 0.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`,
    /// used only through `RawPipe` handles for `'a`, and nobody may use it
    /// while it is initialised.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad layout, a misaligned or short
    /// region.
    ///
    /// ```
    /// use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// let layout = PipeLayout { capacity: 4096, max_message: 1 << 20, direction: Direction::Duplex };
    /// let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// // SAFETY: the segment outlives both ends and is used only through them.
    /// let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// // SAFETY: as above.
    /// let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// a.send(b"ping")?;
    /// assert_eq!(b.recv()?, b"ping");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn init_in(ptr: *mut u8, len: usize, layout: &PipeLayout) -> Result<RawPipe<'a>> {
        // SAFETY: the caller's contract.
        unsafe { RawPipe::init_only(ptr, len, layout)? };
        // SAFETY: as above; the control block is initialised.
        unsafe { RawPipe::attach_side(ptr, len, 0) }
    }

    /// Writes the control block only (no end is taken).
    ///
    /// # Safety
    /// As for `init_in`.
    pub(crate) unsafe fn init_only(ptr: *mut u8, len: usize, layout: &PipeLayout) -> Result<()> {
        let l = layout.normalized()?;
        let need = l.size()?;
        super::check_region::<PipeCtl>(ptr, len, "RawPipe")?;
        if len < need {
            return Err(Error::InvalidArgument(format!(
                "RawPipe: region of {len} bytes is smaller than the {need} it needs"
            )));
        }
        // SAFETY: aligned and large enough (checked); exclusively ours now.
        unsafe { ptr.cast::<PipeCtl>().write(PipeCtl::new(&l)) };
        Ok(())
    }

    /// Takes end 0 of a pipe made by `init_only`.
    ///
    /// # Safety
    /// As for `attach`; only the creator may take end 0, once.
    pub(crate) unsafe fn attach_creator(ptr: *mut u8, len: usize) -> Result<RawPipe<'a>> {
        // SAFETY: the caller's contract.
        unsafe { RawPipe::attach_side(ptr, len, 0) }
    }

    /// Opens end 1 of the pipe initialised at `ptr`.
    ///
    /// # Safety
    /// As for [`init_in`](RawPipe::init_in), except that the bytes are
    /// already initialised (any bytes are accepted; a bad configuration is
    /// an error).
    ///
    /// # Errors
    /// [`Error::InUse`] if end 1 is held by a live process;
    /// [`Error::Disconnected`] if it was held and is gone;
    /// [`Error::Corrupted`] for an impossible configuration.
    ///
    /// ```
    /// use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// // SAFETY: the segment outlives the ends and is used only through them.
    /// let _a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// // SAFETY: as above.
    /// let _b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// // SAFETY: as above.
    /// assert!(matches!(unsafe { RawPipe::attach(seg.as_ptr(), seg.len()) }, Err(shmkit::Error::InUse { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<RawPipe<'a>> {
        // SAFETY: the caller's contract.
        unsafe { RawPipe::attach_side(ptr, len, 1) }
    }

    /// # Safety
    /// As for `attach`.
    unsafe fn attach_side(ptr: *mut u8, len: usize, side: usize) -> Result<RawPipe<'a>> {
        super::check_region::<PipeCtl>(ptr, len, "RawPipe")?;
        // SAFETY: aligned and large enough (checked); all atomics.
        let ctl = unsafe { &*ptr.cast::<PipeCtl>() };
        let capacity = ctl.capacity.load(Ordering::Relaxed);
        let max_message = ctl.max_message.load(Ordering::Relaxed);
        let bad = |what: String| Err(Error::corrupted("", format!("pipe configuration: {what}")));
        let Some(direction) = Direction::from_code(ctl.direction.load(Ordering::Relaxed)) else {
            return bad("direction".into());
        };
        if !capacity.is_power_of_two() || !(64..=1 << 40).contains(&capacity) {
            return bad(format!("capacity {capacity}"));
        }
        if max_message > u64::from(u32::MAX) {
            return bad(format!("max_message {max_message}"));
        }
        let layout = PipeLayout {
            capacity: capacity as usize,
            max_message: max_message as usize,
            direction,
        };
        match layout.size() {
            Ok(n) if n <= len => {}
            _ => return bad(format!("rings of {capacity} bytes do not fit in {len}")),
        }
        let me = sync::current_process();
        let end = &ctl.ends[side];
        if side == 0 {
            end.stamp.store(me.0, Ordering::Release);
        } else if let Err(cur) =
            end.stamp
                .compare_exchange(0, me.0, Ordering::AcqRel, Ordering::Acquire)
        {
            let holder = TaskStamp(cur);
            return Err(
                if end.closed.load(Ordering::Acquire) == 0
                    && sync::task_alive(holder.tid(), Some(holder))
                {
                    Error::InUse {
                        name: String::new(),
                    }
                } else {
                    Error::Disconnected
                },
            );
        }
        // Ring data follows the control block, in ring order, present rings only.
        let mut offset = std::mem::size_of::<PipeCtl>();
        let mut ring_data = [std::ptr::null_mut(); 2];
        for (r, d) in ring_data.iter_mut().enumerate() {
            if direction.has_ring(r) {
                // SAFETY: layout.size() <= len (checked), so each present
                // ring's bytes lie inside the region.
                *d = unsafe { ptr.add(offset) };
                offset += capacity as usize;
            }
        }
        let (out_ring, in_ring) = (side, 1 - side);
        let tx = direction.has_ring(out_ring).then(|| {
            let tail = ctl.rings[out_ring].tail.0.load(Ordering::Acquire);
            Tx {
                ring: out_ring,
                data: ring_data[out_ring],
                tail,
                head_cache: ctl.rings[out_ring].head.0.load(Ordering::Acquire),
            }
        });
        let rx = direction.has_ring(in_ring).then(|| {
            let head = ctl.rings[in_ring].head.0.load(Ordering::Acquire);
            Rx {
                ring: in_ring,
                data: ring_data[in_ring],
                head,
                tail_cache: head,
                partial: None,
            }
        });
        Ok(RawPipe {
            ctl,
            side,
            capacity,
            max_message: max_message as usize,
            direction,
            tx,
            rx,
            peer_gone: false,
            spin: AdaptiveSpin::new(),
            last_check: 0,
            looks: 0,
        })
    }

    /// The largest message, in bytes.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # let layout = PipeLayout { capacity: 64, max_message: 100, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the end.
    /// # let a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(a.max_message(), 100);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The bytes of each ring.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # let layout = PipeLayout { capacity: 100, max_message: 100, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the end.
    /// # let a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(a.capacity(), 128);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Which way the pipe carries messages.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether this end can send.
    pub fn can_send(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether this end can receive.
    pub fn can_recv(&self) -> bool {
        self.rx.is_some()
    }

    // ---- peers ----------------------------------------------------------

    /// Whether the other end is gone (closed, or its process died). Unless
    /// `force`, the closed flag is read every time but the clock only every
    /// 256th time, and `/proc` at most once per `LIVENESS_INTERVAL / 4`.
    fn peer_gone(&mut self, force: bool) -> bool {
        if self.peer_gone {
            return true;
        }
        let peer = &self.ctl.ends[1 - self.side];
        if peer.closed.load(Ordering::Acquire) != 0 {
            self.peer_gone = true;
            return true;
        }
        let stamp = TaskStamp(peer.stamp.load(Ordering::Acquire));
        if stamp.0 == 0 {
            // Not opened yet: nobody to be disconnected from.
            return false;
        }
        if !force {
            // Off the hot path: a clock read only every 256th look.
            self.looks = self.looks.wrapping_add(1);
            if self.looks % 256 != 0 {
                return false;
            }
        }
        let now = sync::now().as_nanos() as u64;
        if !force
            && now.saturating_sub(self.last_check) < (sync::LIVENESS_INTERVAL / 4).as_nanos() as u64
        {
            return false;
        }
        self.last_check = now;
        if !sync::task_alive(stamp.tid(), Some(stamp)) {
            self.peer_gone = true;
        }
        self.peer_gone
    }

    /// Spins (adaptively), then sleeps on `notify` until `ready()` holds,
    /// the deadline passes (`Timeout`) or the peer is gone (`Disconnected`).
    fn wait(
        &mut self,
        readable: bool,
        deadline: Deadline,
        mut ready: impl FnMut(&mut Self) -> Result<bool>,
    ) -> Result<()> {
        // Spin first (adaptively, see `AdaptiveSpin`): a reply often comes
        // within a microsecond.
        let spin = std::mem::replace(&mut self.spin, AdaptiveSpin::new());
        let got = spin.spin(|| match ready(self) {
            Ok(false) => None,
            r => Some(r),
        });
        self.spin = spin;
        match got {
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        let mut force_check = false;
        loop {
            if self.peer_gone(force_check) {
                // Last look: the peer may have sent before it went.
                if ready(self)? {
                    return Ok(());
                }
                return Err(Error::Disconnected);
            }
            let (until, is_deadline) = deadline.or_within(sync::LIVENESS_INTERVAL);
            // We read ring `1 - side` and write ring `side`.
            let ring = if readable { 1 - self.side } else { self.side };
            let ctl = self.ctl;
            let rc = &ctl.rings[ring];
            let notify = if readable {
                &rc.readable.0
            } else {
                &rc.writable.0
            };
            let mut r = Ok(false);
            let peer = &ctl.ends[1 - self.side];
            let woken = notify.sleep(until, || {
                r = ready(self);
                // A close that came before we set the sleepers bit must not
                // be slept through (its wake-all is already spent).
                !matches!(r, Ok(false)) || peer.closed.load(Ordering::Acquire) != 0
            });
            if r? {
                return Ok(());
            }
            if ready(self)? {
                return Ok(());
            }
            if !woken && is_deadline || deadline.expired() {
                return Err(Error::Timeout);
            }
            force_check = !woken;
        }
    }

    // ---- send -----------------------------------------------------------

    fn tx_free(&self, tx: &Tx) -> u64 {
        self.capacity - (tx.tail - tx.head_cache)
    }

    /// Reloads the reader's counter; checks it.
    fn refresh_head(&self, tx: &mut Tx) -> Result<()> {
        let head = self.ctl.rings[tx.ring].head.0.load(Ordering::Acquire);
        if tx.tail.wrapping_sub(head) > self.capacity {
            return Err(Error::corrupted(
                "",
                format!(
                    "pipe ring head {head} is not within a ring of tail {}",
                    tx.tail
                ),
            ));
        }
        tx.head_cache = head;
        Ok(())
    }

    /// Waits until the ring has `want` free bytes (deadline permitting).
    fn room(&mut self, tx: &mut Tx, want: u64, deadline: Deadline) -> Result<()> {
        if self.tx_free(tx) >= want {
            return Ok(());
        }
        self.refresh_head(tx)?;
        if self.tx_free(tx) >= want {
            return Ok(());
        }
        self.wait(false, deadline, |me| {
            me.refresh_head(tx)?;
            Ok(me.tx_free(tx) >= want)
        })
    }

    /// Copies `src` into the ring at stream position `pos`.
    fn copy_in(&self, data: *mut u8, pos: u64, src: &[u8]) {
        let cap = self.capacity as usize;
        let at = (pos % self.capacity) as usize;
        let first = src.len().min(cap - at);
        // The caller checked that these bytes are free (not published to the
        // reader, or already released by it), so nobody else touches them.
        // SAFETY: `data` is this ring's `capacity` bytes; at + first <= cap,
        // and the rest (src.len() <= cap) wraps to the start.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(at), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), data, src.len() - first);
        }
    }

    fn publish(&self, tx: &Tx) {
        let rc = &self.ctl.rings[tx.ring];
        // SYNC POINT: Release pairs with the reader's Acquire load of tail.
        rc.tail.0.store(tx.tail, Ordering::Release);
        rc.readable.0.notify();
    }

    fn take_tx(&mut self) -> Result<Tx> {
        self.tx
            .take()
            .ok_or_else(|| Error::InvalidArgument("this pipe end is receive-only".into()))
    }

    fn check_send(&mut self, len: usize) -> Result<()> {
        if len > self.max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_message,
            });
        }
        if self.peer_gone(false) {
            return Err(Error::Disconnected);
        }
        Ok(())
    }

    /// Sends `msg`, waiting for room until `deadline`. A message larger than
    /// the ring is streamed; once its first bytes are in, it is finished
    /// whatever the deadline (a half-sent message cannot be taken back).
    pub(crate) fn send_until(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.check_send(msg.len())?;
        let mut tx = self.take_tx()?;
        let r = self.send_inner(&mut tx, msg, deadline);
        self.tx = Some(tx);
        r
    }

    fn send_inner(&mut self, tx: &mut Tx, msg: &[u8], deadline: Deadline) -> Result<()> {
        let header = (msg.len() as u32).to_le_bytes();
        let total = record_len(msg.len());
        if total <= self.capacity {
            // Whole: wait for room for all of it, publish once.
            self.room(tx, total, deadline)?;
            self.copy_in(tx.data, tx.tail, &header);
            self.copy_in(tx.data, tx.tail + LEN_BYTES as u64, msg);
            tx.tail += total;
            self.publish(tx);
            return Ok(());
        }
        // Streamed: the length first (the deadline holds until then), then
        // the bytes as room appears, then the padding.
        self.room(tx, LEN_BYTES as u64, deadline)?;
        self.copy_in(tx.data, tx.tail, &header);
        tx.tail += LEN_BYTES as u64;
        self.publish(tx);
        let mut sent = 0;
        while sent < msg.len() {
            self.room(tx, 1, Deadline::NEVER)?;
            let n = (self.tx_free(tx) as usize).min(msg.len() - sent);
            self.copy_in(tx.data, tx.tail, &msg[sent..sent + n]);
            tx.tail += n as u64;
            sent += n;
            self.publish(tx);
        }
        let pad = total - LEN_BYTES as u64 - msg.len() as u64;
        if pad > 0 {
            self.room(tx, pad, Deadline::NEVER)?;
            tx.tail += pad;
            self.publish(tx);
        }
        Ok(())
    }

    /// Reserves `len` contiguous bytes in the ring for a message written in
    /// place, waiting for room until `deadline`; returns the stream
    /// position of its first byte. The message must fit in the ring.
    pub(crate) fn reserve_until(&mut self, len: usize, deadline: Deadline) -> Result<u64> {
        self.check_send(len)?;
        let total = record_len(len);
        if total > self.capacity {
            return Err(Error::InvalidArgument(format!(
                "a message of {len} bytes does not fit in this pipe's {}-byte ring: send it by copy",
                self.capacity
            )));
        }
        let mut tx = self.take_tx()?;
        let r = (|| {
            let at = tx.tail % self.capacity;
            if at + total > self.capacity {
                // Would wrap: pad to the ring's start with a skip record.
                let skip = self.capacity - at;
                self.room(&mut tx, skip, deadline)?;
                self.copy_in(tx.data, tx.tail, &SKIP.to_le_bytes());
                tx.tail += skip;
                self.publish(&tx);
            }
            self.room(&mut tx, total, deadline)?;
            Ok(tx.tail + LEN_BYTES as u64)
        })();
        self.tx = Some(tx);
        r
    }

    /// The reserved bytes at stream position `pos` (from `reserve_until`).
    ///
    /// # Safety
    /// `pos` and `len` must come from `reserve_until` on this end, with no
    /// send or commit since.
    pub(crate) unsafe fn reserved_mut(&mut self, pos: u64, len: usize) -> &mut [u8] {
        let tx = self.tx.as_ref().expect("reserve_until checked");
        let at = (pos % self.capacity) as usize;
        // SAFETY: reserve_until made `len` bytes at `at` contiguous and free,
        // and nothing is published over them until commit.
        unsafe { std::slice::from_raw_parts_mut(tx.data.add(at), len) }
    }

    /// The reserved bytes at stream position `pos`, to read.
    ///
    /// # Safety
    /// As for `reserved_mut`.
    pub(crate) unsafe fn reserved_ptr(&self, pos: u64, len: usize) -> &[u8] {
        let tx = self.tx.as_ref().expect("reserve_until checked");
        let at = (pos % self.capacity) as usize;
        // SAFETY: as in `reserved_mut`.
        unsafe { std::slice::from_raw_parts(tx.data.add(at), len) }
    }

    /// Publishes the message of `len` bytes reserved at `pos`.
    pub(crate) fn commit(&mut self, pos: u64, len: usize) {
        let mut tx = self.tx.take().expect("reserve_until checked");
        debug_assert_eq!(pos, tx.tail + LEN_BYTES as u64);
        self.copy_in(tx.data, tx.tail, &(len as u32).to_le_bytes());
        tx.tail += record_len(len);
        self.publish(&tx);
        self.tx = Some(tx);
    }

    // ---- receive --------------------------------------------------------

    fn rx_avail(&self, rx: &Rx) -> u64 {
        rx.tail_cache - rx.head
    }

    fn refresh_tail(&self, rx: &mut Rx) -> Result<()> {
        let tail = self.ctl.rings[rx.ring].tail.0.load(Ordering::Acquire);
        if tail.wrapping_sub(rx.head) > self.capacity {
            return Err(Error::corrupted(
                "",
                format!(
                    "pipe ring tail {tail} is not within a ring of head {}",
                    rx.head
                ),
            ));
        }
        rx.tail_cache = tail;
        Ok(())
    }

    /// Whether `n` bytes are readable, reloading the writer's counter if needed.
    fn readable(&self, rx: &mut Rx, n: u64) -> Result<bool> {
        if self.rx_avail(rx) >= n {
            return Ok(true);
        }
        self.refresh_tail(rx)?;
        Ok(self.rx_avail(rx) >= n)
    }

    fn copy_out(&self, data: *const u8, pos: u64, dst: &mut [u8]) {
        let cap = self.capacity as usize;
        let at = (pos % self.capacity) as usize;
        let first = dst.len().min(cap - at);
        // SAFETY: `data` is this ring's `capacity` bytes; the caller checked
        // that these bytes were published (Acquire on tail) and not yet
        // released (head), so the writer does not touch them.
        unsafe {
            std::ptr::copy_nonoverlapping(data.add(at), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, dst.as_mut_ptr().add(first), dst.len() - first);
        }
    }

    fn release(&self, rx: &Rx) {
        let rc = &self.ctl.rings[rx.ring];
        // SYNC POINT: Release pairs with the writer's Acquire load of head:
        // our reads of these bytes happen before it overwrites them.
        rc.head.0.store(rx.head, Ordering::Release);
        rc.writable.0.notify();
    }

    fn take_rx(&mut self) -> Result<Rx> {
        self.rx
            .take()
            .ok_or_else(|| Error::InvalidArgument("this pipe end is send-only".into()))
    }

    /// The length of the next message, without consuming it, once its
    /// length prefix is readable (or it is being streamed in). Skip records
    /// are consumed on the way.
    fn peek_len(&self, rx: &mut Rx) -> Result<Option<usize>> {
        if let Some(p) = &rx.partial {
            return Ok(Some(p.1));
        }
        loop {
            if !self.readable(rx, LEN_BYTES as u64)? {
                return Ok(None);
            }
            let mut h = [0u8; LEN_BYTES];
            self.copy_out(rx.data, rx.head, &mut h);
            let len = u32::from_le_bytes(h);
            if len == SKIP {
                let skip = self.capacity - rx.head % self.capacity;
                if skip % 4 != 0 || !self.readable(rx, skip)? {
                    return if skip % 4 != 0 {
                        Err(Error::corrupted("", "misaligned pipe record"))
                    } else {
                        Ok(None)
                    };
                }
                rx.head += skip;
                self.release(rx);
                continue;
            }
            let len = len as usize;
            if len > self.max_message {
                return Err(Error::corrupted(
                    "",
                    format!(
                        "pipe message length {len} exceeds the maximum {}",
                        self.max_message
                    ),
                ));
            }
            return Ok(Some(len));
        }
    }

    /// Tries to complete the next message: `Some(len)` when it is whole —
    /// in `rx.partial` if streamed, else still in the ring after its prefix.
    fn try_complete(&self, rx: &mut Rx) -> Result<Option<usize>> {
        let Some(len) = self.peek_len(rx)? else {
            return Ok(None);
        };
        let total = record_len(len);
        if rx.partial.is_none() && total <= self.capacity {
            return Ok(self.readable(rx, total)?.then_some(len));
        }
        // Streamed: take the prefix once, then whatever is there.
        if rx.partial.is_none() {
            rx.head += LEN_BYTES as u64;
            self.release(rx);
            rx.partial = Some((Vec::with_capacity(len), len));
        }
        loop {
            let (data, head) = (rx.data, rx.head);
            let p = rx.partial.as_mut().expect("set above");
            let missing = p.1 - p.0.len();
            if missing == 0 {
                // The padding after the bytes.
                let pad = total - LEN_BYTES as u64 - len as u64;
                if !self.readable(rx, pad)? {
                    return Ok(None);
                }
                rx.head += pad;
                self.release(rx);
                return Ok(Some(len));
            }
            let avail = (rx.tail_cache - head) as usize;
            if avail == 0 {
                if !self.readable(rx, 1)? {
                    return Ok(None);
                }
                continue;
            }
            let n = avail.min(missing);
            let old = p.0.len();
            p.0.resize(old + n, 0);
            self.copy_out(data, head, &mut p.0[old..]);
            rx.head += n as u64;
            self.release(rx);
        }
    }

    /// Takes the completed message of `len` bytes (see `try_complete`).
    fn take(&self, rx: &mut Rx, len: usize, out: Out<'_>) -> Option<Vec<u8>> {
        if let Some((buf, _)) = rx.partial.take() {
            return match out {
                Out::Vec => Some(buf),
                Out::Buf(dst) => {
                    dst[..len].copy_from_slice(&buf);
                    None
                }
            };
        }
        let at = rx.head + LEN_BYTES as u64;
        let r = match out {
            Out::Vec => {
                let mut v = vec![0u8; len];
                self.copy_out(rx.data, at, &mut v);
                Some(v)
            }
            Out::Buf(dst) => {
                self.copy_out(rx.data, at, &mut dst[..len]);
                None
            }
        };
        rx.head += record_len(len);
        self.release(rx);
        r
    }

    /// Waits for the next whole message; checks `need` (the caller's buffer)
    /// before anything is consumed.
    fn complete_until(
        &mut self,
        rx: &mut Rx,
        need: Option<usize>,
        deadline: Deadline,
    ) -> Result<usize> {
        let check = |len: usize| match need {
            Some(cap) if len > cap => Err(Error::BufferTooSmall { needed: len }),
            _ => Ok(()),
        };
        if let Some(len) = self.peek_len(rx)? {
            check(len)?;
        }
        if let Some(len) = self.try_complete(rx)? {
            return Ok(len);
        }
        let mut got = None;
        self.wait(true, deadline, |me| {
            if let Some(len) = me.peek_len(rx)? {
                check(len)?;
            }
            got = me.try_complete(rx)?;
            Ok(got.is_some())
        })?;
        Ok(got.expect("wait returns Ok only when complete"))
    }

    pub(crate) fn recv_until(&mut self, deadline: Deadline) -> Result<Vec<u8>> {
        let mut rx = self.take_rx()?;
        let r = self.complete_until(&mut rx, None, deadline).map(|len| {
            self.take(&mut rx, len, Out::Vec)
                .expect("Out::Vec gives a Vec")
        });
        self.rx = Some(rx);
        r
    }

    pub(crate) fn recv_into_until(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let mut rx = self.take_rx()?;
        let r = self
            .complete_until(&mut rx, Some(buf.len()), deadline)
            .inspect(|&len| {
                self.take(&mut rx, len, Out::Buf(buf));
            });
        self.rx = Some(rx);
        r
    }

    /// Waits for the next whole message and leaves it in place: returns
    /// `Ok((pos, len))` for a message contiguous in the ring (read it with
    /// `in_ring`, then `release_in_ring`), or the message itself when it is
    /// not contiguous (wrapped or streamed), already consumed.
    pub(crate) fn recv_ref_until(
        &mut self,
        deadline: Deadline,
    ) -> Result<std::result::Result<(u64, usize), Vec<u8>>> {
        let mut rx = self.take_rx()?;
        let r = self.complete_until(&mut rx, None, deadline).map(|len| {
            let at = rx.head + LEN_BYTES as u64;
            if rx.partial.is_none() && (at % self.capacity) + len as u64 <= self.capacity {
                Ok((at, len))
            } else {
                Err(self
                    .take(&mut rx, len, Out::Vec)
                    .expect("Out::Vec gives a Vec"))
            }
        });
        self.rx = Some(rx);
        r
    }

    /// The bytes of the in-place message at `pos`.
    ///
    /// # Safety
    /// `(pos, len)` must come from `recv_ref_until` on this end, not yet
    /// released.
    pub(crate) unsafe fn in_ring(&self, pos: u64, len: usize) -> &[u8] {
        let rx = self.rx.as_ref().expect("recv_ref_until checked");
        // SAFETY: recv_ref_until found these bytes contiguous, published and
        // not released: the writer does not touch them until we release.
        unsafe { std::slice::from_raw_parts(rx.data.add((pos % self.capacity) as usize), len) }
    }

    /// Consumes the in-place message at `pos` (from `recv_ref_until`).
    pub(crate) fn release_in_ring(&mut self, pos: u64, len: usize) {
        let mut rx = self.rx.take().expect("recv_ref_until checked");
        debug_assert_eq!(pos, rx.head + LEN_BYTES as u64);
        rx.head += record_len(len);
        self.release(&rx);
        self.rx = Some(rx);
    }

    /// Waits until a message can be read (without consuming it), or the
    /// deadline passes (`Ok(false)`).
    pub(crate) fn poll_until(&mut self, deadline: Deadline) -> Result<bool> {
        let mut rx = self.take_rx()?;
        let r = (|| {
            if self.peek_len(&mut rx)?.is_some() {
                return Ok(true);
            }
            match self.wait(true, deadline, |me| Ok(me.peek_len(&mut rx)?.is_some())) {
                Ok(()) => Ok(true),
                Err(Error::Timeout) => Ok(false),
                Err(e) => Err(e),
            }
        })();
        self.rx = Some(rx);
        r
    }

    /// Sends `msg`, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Disconnected`],
    /// [`Error::InvalidArgument`] on a receive-only end.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, Deadline::NEVER)
    }

    /// Receives the next message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::Disconnected`] after the last message of a peer that is
    /// gone; [`Error::Corrupted`].
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.recv_until(Deadline::NEVER)
    }

    /// Sends `msg`, waiting for room at most `timeout` ([`Error::Timeout`],
    /// never earlier; `Duration::ZERO` does not wait). A message larger than
    /// the ring, once its first bytes are in, is finished whatever the
    /// timeout.
    ///
    /// # Errors
    /// As [`send`](RawPipe::send), and [`Error::Timeout`].
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let _b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// a.send_timeout(&[1; 40], Duration::ZERO)?;
    /// assert!(matches!(a.send_timeout(&[2; 40], Duration::ZERO), Err(shmkit::Error::Timeout)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(msg, Deadline::after(timeout))
    }

    /// Receives the next message, waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier; `Duration::ZERO` does not wait).
    ///
    /// # Errors
    /// As [`recv`](RawPipe::recv), and [`Error::Timeout`].
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// assert!(matches!(b.recv_timeout(Duration::ZERO), Err(shmkit::Error::Timeout)));
    /// a.send(b"x")?;
    /// assert_eq!(b.recv_timeout(Duration::ZERO)?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_until(Deadline::after(timeout))
    }

    /// Receives the next message into `buf`, waiting at most `timeout`;
    /// returns its length. A message longer than `buf` stays queued
    /// ([`Error::BufferTooSmall`] says how long it is).
    ///
    /// # Errors
    /// As [`recv_timeout`](RawPipe::recv_timeout), and
    /// [`Error::BufferTooSmall`].
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// a.send(b"hello")?;
    /// let mut small = [0u8; 2];
    /// assert!(matches!(b.recv_into_timeout(&mut small, Duration::ZERO), Err(shmkit::Error::BufferTooSmall { needed: 5 })));
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.recv_into_timeout(&mut buf, Duration::ZERO)?, 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_into_until(buf, Deadline::after(timeout))
    }

    /// Waits up to `timeout` for a message to be readable; never consumes
    /// one. `Ok(false)` on timeout.
    ///
    /// # Errors
    /// [`Error::Disconnected`] when the peer is gone and nothing is left;
    /// [`Error::Corrupted`]; [`Error::InvalidArgument`] on a send-only end.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// assert!(!b.poll(Duration::ZERO)?);
    /// a.send(b"")?;
    /// assert!(b.poll(Duration::ZERO)?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Duration) -> Result<bool> {
        self.poll_until(Deadline::after(timeout))
    }

    /// Reserves room for a message of `len` bytes, to be written in place,
    /// waiting for room at most `timeout`. The message must fit in the ring.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`]; [`Error::InvalidArgument`] for a message
    /// larger than the ring or on a receive-only end;
    /// [`Error::Disconnected`]; [`Error::Timeout`]; [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// let mut g = a.reserve_timeout(2, Duration::ZERO)?;
    /// g.copy_from_slice(b"ok");
    /// g.commit();
    /// assert_eq!(&*b.recv_ref_timeout(Duration::ZERO)?, b"ok");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<RawSendGrant<'_, 'a>> {
        self.reserve_grant(len, Deadline::after(timeout))
    }

    /// [`reserve_timeout`](RawPipe::reserve_timeout) without a timeout.
    pub(crate) fn reserve_grant(&mut self, len: usize, deadline: Deadline) -> Result<RawSendGrant<'_, 'a>> {
        let pos = self.reserve_until(len, deadline)?;
        Ok(RawSendGrant { end: self, pos, len })
    }

    /// Receives the next message in place, waiting at most `timeout`
    /// (zero-copy when it lies whole and contiguous in the ring; a wrapped
    /// or streamed message is copied out). It is consumed when the returned
    /// value drops.
    ///
    /// # Errors
    /// As [`recv_timeout`](RawPipe::recv_timeout).
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// a.send(b"look")?;
    /// assert_eq!(&*b.recv_ref_timeout(Duration::ZERO)?, b"look");
    /// assert!(matches!(b.recv_ref_timeout(Duration::ZERO), Err(shmkit::Error::Timeout)));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RawRecvRef<'_, 'a>> {
        self.recv_ref_grant(Deadline::after(timeout))
    }

    pub(crate) fn recv_ref_grant(&mut self, deadline: Deadline) -> Result<RawRecvRef<'_, 'a>> {
        Ok(match self.recv_ref_until(deadline)? {
            Ok((pos, len)) => RawRecvRef {
                inner: RefInner::Ring { end: self, pos, len },
            },
            Err(v) => RawRecvRef {
                inner: RefInner::Owned(v),
            },
        })
    }

    /// Marks this end closed and wakes the peer. Called on drop.
    pub(crate) fn close(&self) {
        self.ctl.ends[self.side].closed.store(1, Ordering::Release);
        for rc in &self.ctl.rings {
            rc.readable.0.notify_all();
            rc.writable.0.notify_all();
        }
    }

    /// Whether the other end is gone (dropped, or its process died). Reads
    /// `/proc` at most now and then.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// let b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// assert!(!a.is_disconnected());
    /// drop(b);
    /// assert!(a.is_disconnected());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_disconnected(&mut self) -> bool {
        self.peer_gone(true)
    }
}

impl Drop for RawPipe<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Room for one message in a pipe's ring, written in place; see
/// [`RawPipe::reserve_timeout`]. Dropping it sends nothing.
pub struct RawSendGrant<'g, 'a> {
    end: &'g mut RawPipe<'a>,
    pos: u64,
    len: usize,
}

impl RawSendGrant<'_, '_> {
    /// Sends the message.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// a.reserve_timeout(0, Duration::ZERO)?.commit();
    /// assert_eq!(b.recv()?, b"");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit(self) {
        self.end.commit(self.pos, self.len);
    }

    /// Sends only the first `len` bytes (at most the reserved length).
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # use std::time::Duration;
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let mut a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// # let mut b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// let mut g = a.reserve_timeout(10, Duration::ZERO)?;
    /// g[..2].copy_from_slice(b"ok");
    /// g.commit_len(2);
    /// assert_eq!(b.recv()?, b"ok");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit_len(self, len: usize) {
        self.end.commit(self.pos, len.min(self.len));
    }
}

impl std::ops::Deref for RawSendGrant<'_, '_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: (pos, len) came from reserve_until on this end, and the
        // grant borrows the end mutably, so nothing was sent since.
        unsafe { self.end.reserved_ptr(self.pos, self.len) }
    }
}

impl std::ops::DerefMut for RawSendGrant<'_, '_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`.
        unsafe { self.end.reserved_mut(self.pos, self.len) }
    }
}

impl std::fmt::Debug for RawSendGrant<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSendGrant").field("len", &self.len).finish()
    }
}

/// A received message, in place in the ring when possible; consumed when
/// dropped. See [`RawPipe::recv_ref_timeout`].
pub struct RawRecvRef<'g, 'a> {
    inner: RefInner<'g, 'a>,
}

enum RefInner<'g, 'a> {
    Ring {
        end: &'g mut RawPipe<'a>,
        pos: u64,
        len: usize,
    },
    Owned(Vec<u8>),
}

impl std::ops::Deref for RawRecvRef<'_, '_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.inner {
            // SAFETY: (pos, len) came from recv_ref_until on this end, which
            // we borrow mutably until we release it in drop.
            RefInner::Ring { end, pos, len } => unsafe { end.in_ring(*pos, *len) },
            RefInner::Owned(v) => v,
        }
    }
}

impl Drop for RawRecvRef<'_, '_> {
    fn drop(&mut self) {
        if let RefInner::Ring { end, pos, len } = &mut self.inner {
            end.release_in_ring(*pos, *len);
        }
    }
}

impl std::fmt::Debug for RawRecvRef<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRecvRef").field("len", &self.len()).finish()
    }
}

enum Out<'b> {
    Vec,
    Buf(&'b mut [u8]),
}

/// Builds a pipe on the heap for loom models.
#[cfg(loom)]
pub mod model {
    use super::*;

    /// A pipe's region on the heap, 64-byte aligned.
    pub struct HeapPipe {
        ptr: *mut u8,
        layout: std::alloc::Layout,
    }

    // SAFETY: the region is used only through RawPipe ends, whose shared
    // state is loom atomics and whose ring bytes are guarded by the protocol
    // the model checks.
    unsafe impl Sync for HeapPipe {}
    // SAFETY: as above.
    unsafe impl Send for HeapPipe {}

    impl HeapPipe {
        /// A duplex pipe of `capacity` bytes per ring and messages up to
        /// `max_message`.
        pub fn new(capacity: usize, max_message: usize) -> HeapPipe {
            let pl = PipeLayout {
                capacity,
                max_message,
                direction: Direction::Duplex,
            };
            let size = pl.size().unwrap();
            let layout = std::alloc::Layout::from_size_align(size, 64).unwrap();
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            // SAFETY: fresh, aligned, large enough, and exclusively ours.
            unsafe { RawPipe::init_only(ptr, size, &pl).unwrap() };
            HeapPipe { ptr, layout }
        }

        /// End 0 (the creator's), for the calling model thread.
        pub fn end0(&self) -> RawPipe<'_> {
            // SAFETY: the region lives as long as `self`; end 0 is taken once
            // per model by its caller's contract.
            unsafe { RawPipe::attach_creator(self.ptr, self.layout.size()).unwrap() }
        }

        /// End 1, for the calling model thread.
        pub fn end1(&self) -> RawPipe<'_> {
            // SAFETY: the region lives as long as `self`.
            unsafe { RawPipe::attach(self.ptr, self.layout.size()).unwrap() }
        }
    }

    impl Drop for HeapPipe {
        fn drop(&mut self) {
            // SAFETY: `ptr` holds the PipeCtl written by init_only, and was
            // allocated with `layout`; no end outlives `self`.
            unsafe {
                std::ptr::drop_in_place(self.ptr.cast::<PipeCtl>());
                std::alloc::dealloc(self.ptr, self.layout);
            }
        }
    }
}
