//! `RawPipe`: two single-producer single-consumer byte rings carrying
//! length-prefixed messages between two ends, with liveness of each end.
//!
//! # Layout
//!
//! A [`PipeCtl`] (configuration, one record per end, one control block per
//! ring) followed by the ring buffers: ring 0 carries messages from end 0
//! (the creator) to end 1, ring 1 the other way. A one-way pipe has one ring.
//! The ring protocol and its checks are in [`ring`](super::ring).
//!
//! # Untrusted memory and dead peers
//!
//! The configuration is read once at attach, checked against the region,
//! and kept in the handle: later writes to it change nothing. Counters and
//! lengths are checked as `ring` describes; a bad one is [`Error::Corrupted`].
//! Each end records its process (pid and start time) and a `closed` flag; a
//! blocked call wakes every `LIVENESS_INTERVAL` (20 ms) to look whether its
//! peer still lives. A peer that closed or died leaves its sent messages
//! readable; after the last one, reads fail with [`Error::Disconnected`],
//! and so do writes.
//!
//! # Ownership and fork
//!
//! An end belongs to the process that attached it. A child created by
//! fork(2) inherits the handle but not the end: every call there fails with
//! [`Error::InvalidArgument`], a grant inherited there commits or releases
//! nothing, and dropping the handle there does not close the end, so the
//! parent goes on using it. (Handing the end over at the child's first use
//! would leave the parent's copy working too, two writers on one SPSC ring;
//! and the parent's drop of its copy would close the child's end.)

use std::time::Duration;

mod grant;
mod peer;
mod recv;
mod send;

use grant::RefInner;
pub use grant::{RawRecvRef, RawSendGrant};
use peer::{peer_targets, Peer};

use crate::error::{Error, Origin, Result};
use crate::raw::notify::Notify;
use crate::raw::ring::{record_len, Out, RingCtl, Rx, Tx, LEN_BYTES, SKIP};
use crate::raw::spin::{AdaptiveSpin, Spin};
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Futex, Ordering, Target, TaskStamp};

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
const ORIGIN: Origin = Origin::new("RawPipe", "");

/// One end's record.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct EndCtl {
    /// The holder's process stamp; 0 until the end is opened.
    stamp: AtomicU64,
    /// Set when the holder drops its end.
    closed: AtomicU32,
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
    /// The largest message, in bytes (at most `u32::MAX - 1`).
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
        if self.max_message >= SKIP as usize {
            return Err(Error::InvalidArgument(format!(
                "pipe max_message {} exceeds {}",
                self.max_message,
                SKIP - 1
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

/// One end of a pipe in memory the caller manages. Build it with
/// [`RawPipe::init_in`] (end 0) or [`RawPipe::attach`] (end 1).
///
/// An end belongs to the process that made it: in a child created by
/// fork(2), every call fails with [`Error::InvalidArgument`] and dropping
/// the handle leaves the end open for the parent.
#[derive(Debug)]
pub struct RawPipe<'a> {
    ctl: &'a PipeCtl,
    side: usize,
    /// The pid of the process this end belongs to.
    owner: u32,
    capacity: u64,
    max_message: usize,
    direction: Direction,
    tx: Option<Tx<'a>>,
    rx: Option<Rx<'a>>,
    peer: Peer<'a>,
    /// After [`split`](RawPipe::split): shared by the two halves, so that
    /// the end is closed when the last of them drops.
    halves: Option<std::sync::Arc<()>>,
}

// The handle is used by one thread at a time (`&mut self` for every
// transfer); moving it to another thread changes nothing in the protocol.
// SAFETY: its pointers point into the region the caller of init_in/attach
// keeps mapped for 'a; nothing in it is tied to a thread.
unsafe impl Send for RawPipe<'_> {}

impl<'a> RawPipe<'a> {
    /// The bytes of the control block, the least any pipe's region holds.
    pub(crate) fn ctl_size() -> usize {
        std::mem::size_of::<PipeCtl>()
    }

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
        // The configuration is read once, here, and checked against `len`.
        let capacity = ctl.capacity.load(Ordering::Relaxed);
        let max_message = ctl.max_message.load(Ordering::Relaxed);
        let bad = |what: String| Err(Error::corrupted("", format!("pipe configuration: {what}")));
        let Some(direction) = Direction::from_code(ctl.direction.load(Ordering::Relaxed)) else {
            return bad("direction".into());
        };
        if !capacity.is_power_of_two() || !(64..=1 << 40).contains(&capacity) {
            return bad(format!("capacity {capacity}"));
        }
        if max_message >= u64::from(SKIP) {
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
        // The counters this end takes over, checked as at every reload,
        // before the end is claimed (a refused attach claims nothing).
        let (out_ring, in_ring) = (side, 1 - side);
        let tx = match direction.has_ring(out_ring) {
            true => Some(Tx::attach(
                &ctl.rings[out_ring],
                ring_data[out_ring],
                capacity,
            )?),
            false => None,
        };
        let rx = match direction.has_ring(in_ring) {
            true => Some(Rx::attach(
                &ctl.rings[in_ring],
                ring_data[in_ring],
                capacity,
                max_message as usize,
            )?),
            false => None,
        };
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
                    Error::Disconnected { origin: ORIGIN }
                },
            );
        }
        if side == 1 {
            // Sleepers of the creator's end watch the peer they saw when
            // they went to sleep: none yet. Have them look again (and watch
            // us). With nobody asleep this costs no syscall.
            for r in &ctl.rings {
                r.readable.0.notify();
                r.writable.0.notify();
            }
        }
        Ok(RawPipe {
            ctl,
            side,
            owner: me.tid(),
            capacity,
            max_message: max_message as usize,
            direction,
            tx,
            rx,
            peer: Peer::of(&ctl.ends[1 - side]),
            halves: None,
        })
    }

    /// Splits this end into a sending half (`tx` only) and a receiving half
    /// (`rx` only), each with its own wait state, for two threads. The end
    /// is closed when both halves have dropped. A half that lacks the
    /// direction says so as a one-way end does (`InvalidArgument`).
    pub(crate) fn split(mut self) -> (RawPipe<'a>, RawPipe<'a>) {
        let halves = std::sync::Arc::new(());
        let half = |tx, rx| RawPipe {
            ctl: self.ctl,
            side: self.side,
            owner: self.owner,
            capacity: self.capacity,
            max_message: self.max_message,
            direction: self.direction,
            tx,
            rx,
            peer: Peer::of(&self.ctl.ends[1 - self.side]),
            halves: Some(halves.clone()),
        };
        let (tx, rx) = (self.tx.take(), self.rx.take());
        let pair = (half(tx, None), half(None, rx));
        // This handle holds a share too while it drops: it closes nothing.
        self.halves = Some(halves);
        pair
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

    // ---- ownership and peers ---------------------------------------------

    /// Whether the calling process is the one this end belongs to (not a
    /// child forked since).
    fn owned(&self) -> bool {
        sync::current_process().tid() == self.owner
    }

    fn check_owned(&self) -> Result<()> {
        if self.owned() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "this pipe end belongs to process {}; a forked child must open a pipe of its own",
            self.owner
        )))
    }

    /// Sets how long this end's blocking calls spin before they sleep.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the end and is used only through it.
    /// let a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// a.set_spin(shmkit::Spin::Never);
    /// assert_eq!(a.spin(), shmkit::Spin::Never);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.peer.spin.set(spin);
    }

    /// This end's spin setting.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the end and is used only through it.
    /// let a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(a.spin(), shmkit::Spin::Adaptive);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spin(&self) -> Spin {
        self.peer.spin.get()
    }

    // ---- readiness, for waiting on many ----------------------------------

    /// The word a waiter for "a message to receive" sleeps on.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a send-only end.
    pub(crate) fn recv_notify(&self) -> Result<&'a Notify> {
        self.rx
            .as_ref()
            .map(|rx| &rx.ctl().readable.0)
            .ok_or_else(|| Error::InvalidArgument("this pipe end is send-only".into()))
    }

    /// The word a waiter for "room to send" sleeps on.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a receive-only end.
    pub(crate) fn send_notify(&self) -> Result<&'a Notify> {
        self.tx
            .as_ref()
            .map(|tx| &tx.ctl().writable.0)
            .ok_or_else(|| Error::InvalidArgument("this pipe end is receive-only".into()))
    }

    /// Whether a receive would not say "nothing yet" now: bytes have been
    /// sent, the peer closed its end, or (`check_dead`) its process died.
    /// Also true in a process this end does not belong to (every call there
    /// fails at once).
    pub(crate) fn recv_ready(&self, check_dead: bool) -> bool {
        let Some(rx) = self.rx.as_ref() else {
            return true;
        };
        rx.has_bytes() || !self.owned() || self.peer_gone_now(check_dead)
    }

    /// Whether a send of `len` bytes would not wait for room now: the ring
    /// has room for it (or, for a message larger than the ring, is empty
    /// enough to start streaming it: any room at all), or the peer is gone.
    pub(crate) fn send_ready(&self, len: usize, check_dead: bool) -> bool {
        let Some(tx) = self.tx.as_ref() else {
            return true;
        };
        let want = record_len(len.min(self.max_message))
            .min(self.capacity)
            .max(1);
        tx.room_now(want) || !self.owned() || self.peer_gone_now(check_dead)
    }

    /// The process a waiter on this end waits for (see `sync::watch`).
    pub(crate) fn watch_targets(&self) -> Vec<Target> {
        peer_targets(TaskStamp(self.peer.end.stamp.load(Ordering::Acquire)))
    }

    /// The peer's end is closed, or (`check_dead`) its process is gone.
    fn peer_gone_now(&self, check_dead: bool) -> bool {
        let end = self.peer.end;
        if self.peer.gone || end.closed.load(Ordering::Acquire) != 0 {
            return true;
        }
        if !check_dead {
            return false;
        }
        let stamp = TaskStamp(end.stamp.load(Ordering::Acquire));
        stamp.0 != 0 && !sync::task_alive(stamp.tid(), Some(stamp))
    }
}

impl Drop for RawPipe<'_> {
    fn drop(&mut self) {
        // A half closes the end only as the last of the two (exactly one
        // `into_inner` gets the value).
        if self
            .halves
            .take()
            .map_or(true, |h| std::sync::Arc::into_inner(h).is_some())
        {
            self.close();
        }
    }
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
