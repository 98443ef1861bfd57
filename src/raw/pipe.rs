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

use crate::error::{Error, Result};
use crate::raw::notify::Notify;
use crate::raw::ring::{record_len, Out, RingCtl, Rx, Tx, LEN_BYTES, SKIP};
use crate::raw::spin::{AdaptiveSpin, Spin};
use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Futex, Ordering, Target, TaskStamp};

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

/// What an end knows of its peer, and how it waits for it.
/// How hard [`Peer::gone_by`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// The closed flag; the clock every 256th look; `/proc` rate-limited.
    Cheap,
    /// The closed flag; the clock; `/proc` rate-limited.
    Timed,
    /// The closed flag and `/proc`, now.
    Force,
}

#[derive(Debug)]
struct Peer<'a> {
    end: &'a EndCtl,
    gone: bool,
    /// The death watch on the peer's process, kept from one sleep to the
    /// next (registering costs a mutex and a few hash lookups, too much for
    /// every sleep of a ping-pong); made anew when the peer or the word
    /// slept on changes. The word lives in the pipe's memory, mapped for
    /// `'a`, which outlives this handle.
    watched: Option<PeerWatch>,
    /// How long a wait spins before it sleeps.
    spin: AdaptiveSpin,
    /// When the peer's liveness was last read (monotonic nanoseconds).
    last_check: u64,
    /// Unforced liveness looks since the handle was made.
    looks: u32,
}

/// The peer to watch for death: none before it has opened its end (stamp
/// 0). A zero stamp would be "unwatchable", and a sleeper waiting for a
/// peer to come would wake every liveness interval for nothing; the peer's
/// `attach` wakes the sleepers instead.
fn peer_targets(stamp: TaskStamp) -> Vec<Target> {
    if stamp.0 == 0 {
        Vec::new()
    } else {
        vec![Target::Process(stamp)]
    }
}

/// See [`Peer::watched`]: the word's address, the peer's stamp, the death
/// epoch when it was made, the watch.
struct PeerWatch {
    word: usize,
    stamp: u64,
    deaths: u64,
    watch: sync::Watch,
}

impl std::fmt::Debug for PeerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerWatch")
            .field("stamp", &self.stamp)
            .finish_non_exhaustive()
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
                    Error::Disconnected
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
            peer: Peer {
                end: &ctl.ends[1 - side],
                gone: false,
                watched: None,
                spin: AdaptiveSpin::new(),
                last_check: 0,
                looks: 0,
            },
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

    // ---- send -----------------------------------------------------------

    fn tx(&mut self) -> Result<&mut Tx<'a>> {
        self.tx
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("this pipe end is receive-only".into()))
    }

    fn check_send(&mut self, len: usize) -> Result<()> {
        self.check_owned()?;
        if len > self.max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_message,
            });
        }
        self.tx()?;
        if self.peer.gone(false) {
            return Err(Error::Disconnected);
        }
        Ok(())
    }

    /// Sends `msg`, waiting for room until `deadline`. A message larger than
    /// the ring is streamed; once its first bytes are in, it is finished
    /// whatever the deadline (a half-sent message cannot be taken back).
    pub(crate) fn send_until(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.check_send(msg.len())?;
        let (cap, peer) = (self.capacity, &mut self.peer);
        let tx = self.tx.as_mut().expect("check_send checked");
        let header = (msg.len() as u32).to_le_bytes();
        let total = record_len(msg.len());
        if total <= cap {
            // Whole: wait for room for all of it, publish once.
            room(peer, tx, total, deadline)?;
            tx.write_at(0, &header)?;
            tx.write_at(LEN_BYTES, msg)?;
            tx.advance(total);
            tx.publish();
            return Ok(());
        }
        // Streamed: the length first (the deadline holds until then), then
        // the bytes as room appears, then the padding.
        room(peer, tx, LEN_BYTES, deadline)?;
        tx.write_at(0, &header)?;
        tx.advance(LEN_BYTES);
        tx.publish();
        let mut sent = 0;
        while sent < msg.len() {
            room(peer, tx, 1, Deadline::NEVER)?;
            // `free() <= cap`, so `n` fits in the ring.
            let n = (tx.free() as usize).min(msg.len() - sent);
            tx.write_at(0, &msg[sent..sent + n])?;
            tx.advance(n as u64);
            sent += n;
            tx.publish();
        }
        let pad = total - LEN_BYTES - msg.len() as u64;
        if pad > 0 {
            room(peer, tx, pad, Deadline::NEVER)?;
            tx.advance(pad);
            tx.publish();
        }
        Ok(())
    }

    /// Reserves `len` contiguous bytes in the ring for a message written in
    /// place, waiting for room until `deadline`; returns the stream
    /// position of its first byte. The message must fit in the ring.
    pub(crate) fn reserve_until(&mut self, len: usize, deadline: Deadline) -> Result<u64> {
        self.check_send(len)?;
        let cap = self.capacity;
        let total = record_len(len);
        if total > cap {
            return Err(Error::InvalidArgument(format!(
                "a message of {len} bytes does not fit in this pipe's {cap}-byte ring: send it by copy",
            )));
        }
        let peer = &mut self.peer;
        let tx = self.tx.as_mut().expect("check_send checked");
        let at = tx.tail_offset();
        if at + total > cap {
            // Would wrap: pad to the ring's start with a skip record.
            let skip = cap - at;
            room(peer, tx, skip, deadline)?;
            tx.write_at(0, &SKIP.to_le_bytes())?;
            tx.advance(skip);
            tx.publish();
        }
        room(peer, tx, total, deadline)?;
        Ok(tx.tail().wrapping_add(LEN_BYTES))
    }

    /// The reserved bytes at stream position `pos` (from `reserve_until`).
    pub(crate) fn reserved(&self, pos: u64, len: usize) -> (*mut u8, usize) {
        let tx = self.tx.as_ref().expect("reserve_until checked");
        tx.reserved(pos, len)
            .expect("reserve_until made it contiguous")
    }

    /// Publishes the message of `len` bytes reserved at `pos`. Does nothing
    /// in a process the end does not belong to.
    pub(crate) fn commit(&mut self, pos: u64, len: usize) {
        if !self.owned() {
            return;
        }
        let tx = self.tx.as_mut().expect("reserve_until checked");
        debug_assert_eq!(pos, tx.tail().wrapping_add(LEN_BYTES));
        // A 4-byte write always fits in the ring.
        let _ = tx.write_at(0, &(len as u32).to_le_bytes());
        tx.advance(record_len(len));
        tx.publish();
    }

    // ---- receive --------------------------------------------------------

    fn check_recv(&self) -> Result<()> {
        self.check_owned()?;
        if self.rx.is_none() {
            return Err(Error::InvalidArgument("this pipe end is send-only".into()));
        }
        Ok(())
    }

    /// Waits for the next whole message; checks its length, read once,
    /// against `need` (the caller's buffer) before anything is consumed.
    fn complete_until(&mut self, need: Option<usize>, deadline: Deadline) -> Result<usize> {
        self.check_recv()?;
        let rx = self.rx.as_mut().expect("check_recv checked");
        let step = move |rx: &mut Rx<'_>| -> Result<Option<usize>> {
            let Some(len) = rx.peek_len()? else {
                return Ok(None);
            };
            if let Some(cap) = need {
                if len > cap {
                    return Err(Error::BufferTooSmall { needed: len });
                }
            }
            Ok(rx.try_complete(len)?.then_some(len))
        };
        if let Some(len) = step(rx)? {
            return Ok(len);
        }
        let mut got = None;
        let notify = &rx.ctl().readable.0;
        self.peer.wait(notify, deadline, || {
            got = step(rx)?;
            Ok(got.is_some())
        })?;
        Ok(got.expect("wait returns Ok only when complete"))
    }

    pub(crate) fn recv_until(&mut self, deadline: Deadline) -> Result<Vec<u8>> {
        let len = self.complete_until(None, deadline)?;
        let rx = self.rx.as_mut().expect("complete_until checked");
        Ok(rx.take(len, Out::Vec)?.expect("Out::Vec gives a Vec"))
    }

    pub(crate) fn recv_into_until(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let len = self.complete_until(Some(buf.len()), deadline)?;
        let rx = self.rx.as_mut().expect("complete_until checked");
        rx.take(len, Out::Buf(buf))?;
        Ok(len)
    }

    /// Waits for the next whole message and leaves it in place: returns
    /// `Ok((pos, len))` for a message contiguous in the ring (read it with
    /// `in_ring`, then `release_in_ring`), or the message itself when it is
    /// not contiguous (wrapped or streamed), already consumed.
    pub(crate) fn recv_ref_until(
        &mut self,
        deadline: Deadline,
    ) -> Result<std::result::Result<(u64, usize), Vec<u8>>> {
        let len = self.complete_until(None, deadline)?;
        let rx = self.rx.as_mut().expect("complete_until checked");
        Ok(match rx.in_place(len) {
            Some(pos) => Ok((pos, len)),
            None => Err(rx.take(len, Out::Vec)?.expect("Out::Vec gives a Vec")),
        })
    }

    /// The bytes of the in-place message at `pos` (from `recv_ref_until`).
    pub(crate) fn in_ring(&self, pos: u64, len: usize) -> (*mut u8, usize) {
        let rx = self.rx.as_ref().expect("recv_ref_until checked");
        rx.bytes_at(pos, len)
            .expect("recv_ref_until found it contiguous")
    }

    /// Consumes the in-place message at `pos` (from `recv_ref_until`). Does
    /// nothing in a process the end does not belong to.
    pub(crate) fn release_in_ring(&mut self, _pos: u64, len: usize) {
        if self.owned() {
            let rx = self.rx.as_mut().expect("recv_ref_until checked");
            rx.release_in_place(len);
        }
    }

    /// Waits until a message can be read (without consuming it), or the
    /// deadline passes (`Ok(false)`).
    pub(crate) fn poll_until(&mut self, deadline: Deadline) -> Result<bool> {
        self.check_recv()?;
        let rx = self.rx.as_mut().expect("check_recv checked");
        if rx.peek_len()?.is_some() {
            return Ok(true);
        }
        let notify = &rx.ctl().readable.0;
        match self
            .peer
            .wait(notify, deadline, || Ok(rx.peek_len()?.is_some()))
        {
            Ok(()) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
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
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<RawSendGrant<'_, 'a>> {
        self.reserve_grant(len, Deadline::after(timeout))
    }

    /// [`reserve_timeout`](RawPipe::reserve_timeout) without a timeout.
    pub(crate) fn reserve_grant(
        &mut self,
        len: usize,
        deadline: Deadline,
    ) -> Result<RawSendGrant<'_, 'a>> {
        let pos = self.reserve_until(len, deadline)?;
        Ok(RawSendGrant {
            end: self,
            pos,
            len,
        })
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
                inner: RefInner::Ring {
                    end: self,
                    pos,
                    len,
                },
            },
            Err(v) => RawRecvRef {
                inner: RefInner::Owned(v),
            },
        })
    }

    /// Marks this end closed and wakes the peer. Called on drop; does
    /// nothing in a process the end does not belong to.
    pub(crate) fn close(&self) {
        if !self.owned() {
            return;
        }
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
        self.peer.gone(true)
    }
}

impl Drop for RawPipe<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits until the ring has `want` free bytes (deadline permitting).
fn room(peer: &mut Peer<'_>, tx: &mut Tx<'_>, want: u64, deadline: Deadline) -> Result<()> {
    if tx.free() >= want {
        return Ok(());
    }
    tx.refresh()?;
    if tx.free() >= want {
        return Ok(());
    }
    let notify = &tx.ctl().writable.0;
    peer.wait(notify, deadline, || {
        tx.refresh()?;
        Ok(tx.free() >= want)
    })
}

impl Peer<'_> {
    /// Whether the other end is gone (closed, or its process died). Unless
    /// `force`, the closed flag is read every time but the clock only every
    /// 256th time, and `/proc` at most once per `LIVENESS_INTERVAL / 4`.
    fn gone(&mut self, force: bool) -> bool {
        self.gone_by(if force { Look::Force } else { Look::Cheap })
    }

    /// [`gone`](Peer::gone) without the every-256th-look count: the clock
    /// every time, `/proc` at most once per `LIVENESS_INTERVAL / 4`.
    fn gone_timed(&mut self) -> bool {
        self.gone_by(Look::Timed)
    }

    fn gone_by(&mut self, look: Look) -> bool {
        if self.gone {
            return true;
        }
        if self.end.closed.load(Ordering::Acquire) != 0 {
            self.gone = true;
            return true;
        }
        let stamp = TaskStamp(self.end.stamp.load(Ordering::Acquire));
        if stamp.0 == 0 {
            // Not opened yet: nobody to be disconnected from.
            return false;
        }
        if look == Look::Cheap {
            // Off the hot path: a clock read only every 256th look.
            self.looks = self.looks.wrapping_add(1);
            if self.looks % 256 != 0 {
                return false;
            }
        }
        let now = sync::now().as_nanos() as u64;
        if look != Look::Force
            && now.saturating_sub(self.last_check) < (sync::LIVENESS_INTERVAL / 4).as_nanos() as u64
        {
            return false;
        }
        self.last_check = now;
        if !sync::task_alive(stamp.tid(), Some(stamp)) {
            self.gone = true;
        }
        self.gone
    }

    /// Has the peer's exit wake sleepers on `word` (see [`Peer::watched`]):
    /// whether the watch found it dead already, and how long a sleep may
    /// last before it looks for itself. The kept watch is made anew after
    /// any death the watcher saw since it was made: a death between two
    /// sleeps woke nobody, and only a fresh registration reports it.
    fn watch_peer(&mut self, word: &Futex, stamp: TaskStamp) -> (bool, std::time::Duration) {
        let addr = word as *const Futex as usize;
        let deaths = sync::deaths();
        let same = self
            .watched
            .as_ref()
            .is_some_and(|w| w.word == addr && w.stamp == stamp.0 && w.deaths == deaths);
        if !same {
            // Unregister the old one before the new one registers.
            self.watched = None;
            self.watched = Some(PeerWatch {
                word: addr,
                stamp: stamp.0,
                deaths,
                watch: sync::watch(word, &peer_targets(stamp)),
            });
        }
        let w = &self.watched.as_ref().expect("set above").watch;
        (w.dead, w.interval())
    }

    /// Spins (adaptively, unless the deadline has passed), then sleeps on
    /// `notify` until `ready()` holds, the deadline passes (`Timeout`) or
    /// the peer is gone (`Disconnected`). Every round does a bounded amount
    /// of work (`ready` is bounded), so a call with a passed deadline
    /// returns after one round whatever a peer writes.
    fn wait(
        &mut self,
        notify: &Notify,
        deadline: Deadline,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        if !deadline.expired() {
            // Spin first (adaptively, see `AdaptiveSpin`): a reply often
            // comes within a microsecond.
            let got = self.spin.spin(deadline, || match ready() {
                Ok(false) => None,
                r => Some(r),
            });
            match got {
                Some(Ok(_)) => return Ok(()),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        let mut force_check = false;
        // A watch that finds the peer dead forces one liveness read per
        // call; if that read disagrees (the peer alive, or unknown), the
        // call sleeps with the short interval rather than loop.
        let mut looked_at_dead = false;
        loop {
            if self.gone(force_check) {
                // Last look: the peer may have sent before it went.
                if ready()? {
                    return Ok(());
                }
                return Err(Error::Disconnected);
            }
            if deadline.expired() {
                if ready()? {
                    return Ok(());
                }
                // Time's up: a peer that died says so rather than Timeout
                // (as a WaitSet reported it ready), with `/proc` read at
                // most once per LIVENESS_INTERVAL / 4.
                return Err(if self.gone_timed() {
                    Error::Disconnected
                } else {
                    Error::Timeout
                });
            }
            // Have the peer's exit wake us (see `sync::watch`): then the
            // sleep needs no short interval to notice a death.
            let deaths = sync::deaths();
            // (Under loom nothing is watched: skip the load, which would
            // only multiply the interleavings to explore.)
            let stamp = if cfg!(loom) {
                TaskStamp(0)
            } else {
                TaskStamp(self.end.stamp.load(Ordering::Acquire))
            };
            let (dead, interval) = self.watch_peer(notify.futex(), stamp);
            if dead && !looked_at_dead {
                looked_at_dead = true;
                force_check = true;
                continue;
            }
            let interval = if dead {
                sync::LIVENESS_INTERVAL
            } else {
                interval
            };
            let (until, is_deadline) = deadline.or_within(interval);
            let mut r = Ok(false);
            let peer = self.end;
            let woken = notify.sleep(until, || {
                r = ready();
                // A close that came before we set the sleepers bit must not
                // be slept through (its wake-all is already spent).
                !matches!(r, Ok(false)) || peer.closed.load(Ordering::Acquire) != 0
            });
            if r? {
                return Ok(());
            }
            if ready()? {
                return Ok(());
            }
            if !woken && is_deadline || deadline.expired() {
                // The top of the loop says Timeout, or Disconnected if the
                // peer died meanwhile (as a WaitSet would report it ready).
                continue;
            }
            force_check = !woken || sync::deaths() != deaths;
        }
    }
}

/// Room for one message in a pipe's ring, written in place; see
/// [`RawPipe::reserve_timeout`]. Dropping it sends nothing.
///
/// The slice is the ring's shared memory. Its bounds were fixed when it was
/// reserved and never leave the ring. A well-behaved peer does not touch
/// these bytes until they are committed; a hostile process that maps the
/// pipe can read them early or change them while you write, so the message
/// delivered is whatever the ring holds at commit. It cannot make you read
/// or write anything outside the ring.
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
        let (p, len) = self.end.reserved(self.pos, self.len);
        // SAFETY: (pos, len) came from reserve_until on this end, which made
        // them contiguous inside the ring and free; the grant borrows the
        // end mutably, so nothing was sent over them since. A well-behaved
        // reader does not touch free bytes; a hostile one can only change
        // their values (see the type's documentation).
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

impl std::ops::DerefMut for RawSendGrant<'_, '_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let (p, len) = self.end.reserved(self.pos, self.len);
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }
}

impl std::fmt::Debug for RawSendGrant<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSendGrant")
            .field("len", &self.len)
            .finish()
    }
}

/// A received message, in place in the ring when possible; consumed when
/// dropped. See [`RawPipe::recv_ref_timeout`].
///
/// In place, the slice is the ring's shared memory. Its bounds were checked
/// once, when it was received, and never leave the ring; a well-behaved
/// writer does not touch these bytes until this value drops. A hostile
/// process that maps the pipe can still change them while you read: you may
/// see bytes change between two reads (so validate a private copy, not the
/// slice, if the peer is not trusted), but never memory outside the ring.
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
            RefInner::Ring { end, pos, len } => {
                let (p, len) = end.in_ring(*pos, *len);
                // SAFETY: (pos, len) came from recv_ref_until on this end,
                // which found them contiguous inside the ring, published and
                // not released; we borrow the end mutably until drop releases
                // them, so a well-behaved writer does not touch them. A
                // hostile one can only change their values (see the type's
                // documentation).
                unsafe { std::slice::from_raw_parts(p, len) }
            }
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
        f.debug_struct("RawRecvRef")
            .field("len", &self.len())
            .finish()
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
