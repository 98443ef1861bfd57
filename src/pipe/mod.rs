//! `Pipe`: a named two-ended message channel between two processes.

mod split;

pub use split::{PipeIter, PipeReceiver, PipeSender};

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, OrNamed, Result};
#[cfg(not(loom))]
use crate::future::Waiter;
use crate::handle::{named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::wait::Source;
use crate::raw::Spin;
use crate::raw::{Direction, PipeLayout, RawPipe, RawRecvRef, RawSendGrant};
use crate::segment::{Options, Spec};
use crate::sync::Deadline;
use crate::waitset::{Interest, Waitable};
#[cfg(not(loom))]
use std::future::Future;
#[cfg(not(loom))]
use std::task::Poll;

/// Bytes in each direction's ring, by default.
pub const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;
/// The largest message, by default.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Creates and opens pipes (Python's `multiprocessing.Pipe`, across
/// unrelated processes): [`Pipe::create`] makes one end, [`Pipe::open`]
/// the other.
///
/// ```
/// use shmkit::Pipe;
///
/// let mut parent = Pipe::create_unique()?;
/// let mut child = Pipe::open(parent.name())?; // in the other process
/// parent.send(b"ping")?;
/// assert_eq!(child.recv()?, b"ping");
/// child.send(b"pong")?;
/// assert_eq!(parent.recv()?, b"pong");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Creates a duplex pipe named `name` with default settings and returns
    /// the creating end.
    ///
    /// # Errors
    /// As [`Segment::create`](crate::Segment::create).
    ///
    /// ```
    /// # let name = format!("shmkit-doc-pipe-{}", std::process::id());
    /// let end = shmkit::Pipe::create(&name)?;
    /// assert_eq!(end.name(), name);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str) -> Result<PipeEnd> {
        Pipe::builder().create(name)
    }

    /// Creates a duplex pipe under a fresh unique name.
    ///
    /// ```
    /// let end = shmkit::Pipe::create_unique()?;
    /// assert!(end.name().starts_with("shmkit-"));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique() -> Result<PipeEnd> {
        Pipe::builder().create_unique()
    }

    /// Opens the other end of the pipe named `name`.
    ///
    /// # Errors
    /// [`Error::InUse`] if that end is held by a live process;
    /// [`Error::Disconnected`] if it was held and its holder is gone (a pipe
    /// end is opened once); the errors of [`Segment::open`](crate::Segment::open).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let b = shmkit::Pipe::open(a.name())?;
    /// assert!(matches!(shmkit::Pipe::open(a.name()), Err(shmkit::Error::InUse { .. })));
    /// # drop(b);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<PipeEnd> {
        Pipe::open_with(name, &Options::new())
    }

    /// [`open`](Pipe::open) with [`Options`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let b = shmkit::Pipe::open_with(a.name(), &shmkit::Options::new())?;
    /// # drop(b);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_with(name: &str, opts: &Options) -> Result<PipeEnd> {
        Named::open(name, opts).map(PipeEnd)
    }

    /// A builder for the ring capacity, the largest message, the direction
    /// and the mode.
    ///
    /// ```
    /// let end = shmkit::Pipe::builder().capacity(4096).max_message(1 << 20).create_unique()?;
    /// assert_eq!(end.capacity(), 4096);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn builder() -> PipeBuilder {
        PipeBuilder {
            layout: PipeLayout {
                capacity: DEFAULT_PIPE_CAPACITY,
                max_message: DEFAULT_MAX_MESSAGE,
                direction: Direction::Duplex,
            },
            opts: Options::new(),
        }
    }
}

/// Settings for a new pipe; see [`Pipe::builder`].
#[derive(Debug, Clone)]
pub struct PipeBuilder {
    layout: PipeLayout,
    opts: Options,
}

impl PipeBuilder {
    /// Bytes in each direction's ring (rounded up to a power of two, at
    /// least 64; default 64 KiB). Messages larger than this still pass,
    /// streamed through in pieces.
    ///
    /// ```
    /// let b = shmkit::Pipe::builder().capacity(1000);
    /// assert_eq!(b.create_unique()?.capacity(), 1024);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn capacity(mut self, bytes: usize) -> PipeBuilder {
        self.layout.capacity = bytes;
        self
    }

    /// The largest message (default 64 MiB, at most `u32::MAX - 1`). 0 is
    /// allowed: only empty messages can be sent (a pipe of signals), and a
    /// longer one is [`Error::MessageTooLarge`].
    ///
    /// ```
    /// let end = shmkit::Pipe::builder().max_message(10).create_unique()?;
    /// assert_eq!(end.max_message(), 10);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(mut self, bytes: usize) -> PipeBuilder {
        self.layout.max_message = bytes;
        self
    }

    /// Which way messages go (default [`Direction::Duplex`]).
    ///
    /// ```
    /// use shmkit::Direction;
    /// let mut w = shmkit::Pipe::builder().direction(Direction::CreatorSends).create_unique()?;
    /// let mut r = shmkit::Pipe::open(w.name())?;
    /// w.send(b"one way")?;
    /// assert!(r.send(b"no").is_err());
    /// assert_eq!(r.recv()?, b"one way");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn direction(mut self, direction: Direction) -> PipeBuilder {
        self.layout.direction = direction;
        self
    }

    /// Segment options (mode, …).
    ///
    /// ```
    /// let end = shmkit::Pipe::builder().options(shmkit::Options::new().mode(0o640)).create_unique()?;
    /// # drop(end);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn options(mut self, opts: Options) -> PipeBuilder {
        self.opts = opts;
        self
    }

    fn create_inner(&self, name: Option<&str>) -> Result<PipeEnd> {
        let layout = self.layout;
        let size = RawPipe::required_size(&layout)?;
        let init = |p: *mut u8, len: usize| {
            // SAFETY: `p` is the fresh, unpublished payload of `len` bytes.
            unsafe { RawPipe::init_only(p, len, &layout) }
        };
        Named::create(name, 0, size, &self.opts, init).map(PipeEnd)
    }

    /// Creates the pipe named `name`; returns the creating end.
    ///
    /// ```
    /// # let name = format!("shmkit-doc-pipeb-{}", std::process::id());
    /// let end = shmkit::Pipe::builder().create(&name)?;
    /// # drop(end);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(&self, name: &str) -> Result<PipeEnd> {
        self.create_inner(Some(name))
    }

    /// Creates the pipe under a fresh unique name.
    ///
    /// ```
    /// let end = shmkit::Pipe::builder().create_unique()?;
    /// # drop(end);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique(&self) -> Result<PipeEnd> {
        self.create_inner(None)
    }
}

/// One end of a [`Pipe`].
///
/// Messages keep their boundaries, arrive in order, and may be empty. A
/// message larger than the ring is streamed through it and arrives whole.
/// When the other end is dropped or its process dies, this end still gets
/// every message already sent, then [`Error::Disconnected`]; sending fails
/// with `Disconnected`. Blocking calls look now and then whether the peer
/// lives, so none waits forever on a dead process.
///
/// Transfers take `&mut self`: one end is used by one thread at a time.
///
/// An end belongs to the process that created or opened it. A child made
/// by fork(2) inherits the value but not the end: there every call fails
/// with [`Error::InvalidArgument`], and dropping it does not close the end,
/// so the parent goes on using it. A forked child opens a pipe of its own.
pub struct PipeEnd(Named<RawPipe<'static>>);

impl Core for RawPipe<'static> {
    type View = RawPipe<'static>;

    fn spec() -> Spec {
        Spec::of(Kind::Pipe)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, created: bool) -> Result<Self::View> {
        if len < RawPipe::ctl_size() {
            return Err(Error::corrupted(
                "",
                format!("a payload of {len} bytes cannot hold a pipe"),
            ));
        }
        // SAFETY: the caller's contract is `RawPipe::attach`'s. The payload
        // is used only through RawPipe ends; only the creator takes end 0.
        unsafe {
            if created {
                RawPipe::attach_creator(p, len)
            } else {
                RawPipe::attach(p, len)
            }
        }
    }
}

named_handle! {
    names impl PipeEnd {
        what: "pipe",
        make: "shmkit::Pipe::create_unique()?",
    }
}

impl fmt::Debug for PipeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeEnd")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("direction", &self.raw().direction())
            .finish()
    }
}

impl PipeEnd {
    fn named(&self) -> &Named<RawPipe<'static>> {
        &self.0
    }

    pub(super) fn named_mut(&mut self) -> &mut Named<RawPipe<'static>> {
        &mut self.0
    }

    /// Names this pipe and operation `op` in an error (for `or_named`).
    #[inline]
    fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.0.at("Pipe", op)
    }

    #[inline]
    fn raw(&self) -> &RawPipe<'static> {
        self.0.view()
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut RawPipe<'static> {
        self.0.view_mut()
    }

    /// Sends a copy of `msg`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] (nothing is sent); [`Error::Disconnected`];
    /// [`Error::InvalidArgument`] on a receive-only end.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send(b"")?;
    /// assert_eq!(b.recv()?, b"");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.raw_mut()
            .send_until(msg, Deadline::NEVER)
            .or_named(self.at("send"))
    }

    /// Sends a copy of `msg`, waiting for room at most `timeout`
    /// ([`Error::Timeout`], never earlier). A message larger than the ring,
    /// once started, is finished whatever the timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// a.send(&[0; 40])?;
    /// assert!(matches!(a.send_timeout(&[0; 40], Duration::from_millis(5)), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.raw_mut()
            .send_until(msg, Deadline::after(timeout))
            .or_named(self.at("send_timeout"))
    }

    /// [`send_timeout`](PipeEnd::send_timeout) until `deadline` (a
    /// deadline already past tries once).
    ///
    /// # Errors
    /// As [`send_timeout`](PipeEnd::send_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_deadline(b"x", Instant::now() + Duration::from_secs(1))?;
    /// assert_eq!(b.recv()?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_deadline(&mut self, msg: &[u8], deadline: std::time::Instant) -> Result<()> {
        self.send_timeout(msg, crate::queue::until(deadline))
            .or_named(self.at("send_deadline"))
    }

    /// [`recv_timeout`](PipeEnd::recv_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`recv_timeout`](PipeEnd::recv_timeout).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let r = a.recv_deadline(std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_deadline(&mut self, deadline: std::time::Instant) -> Result<Vec<u8>> {
        self.recv_timeout(crate::queue::until(deadline))
            .or_named(self.at("recv_deadline"))
    }

    /// [`recv_into_timeout`](PipeEnd::recv_into_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`recv_into_timeout`](PipeEnd::recv_into_timeout).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let r = a.recv_into_deadline(&mut [0; 8], std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_into_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: std::time::Instant,
    ) -> Result<usize> {
        self.recv_into_timeout(buf, crate::queue::until(deadline))
            .or_named(self.at("recv_into_deadline"))
    }

    /// Receives the next message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::Disconnected`] after the last message of a peer that is gone;
    /// [`Error::Corrupted`]; [`Error::InvalidArgument`] on a send-only end.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// b.send(b"hi")?;
    /// drop(b);
    /// assert_eq!(a.recv()?, b"hi");
    /// assert!(matches!(a.recv(), Err(shmkit::Error::Disconnected { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.raw_mut()
            .recv_until(Deadline::NEVER)
            .or_named(self.at("recv"))
    }

    /// Receives the next message, waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// assert!(matches!(a.recv_timeout(Duration::from_millis(5)), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.raw_mut()
            .recv_until(Deadline::after(timeout))
            .or_named(self.at("recv_timeout"))
    }

    /// Receives the next message into `buf`, waiting as long as it takes;
    /// returns its length. If `buf` is too small, the message stays queued
    /// and the call fails with [`Error::BufferTooSmall`] saying how long it is.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send(b"hello")?;
    /// let mut small = [0u8; 3];
    /// assert!(matches!(b.recv_into(&mut small), Err(shmkit::Error::BufferTooSmall { needed: 5, .. })));
    /// let mut buf = [0u8; 8];
    /// let n = b.recv_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"hello");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.raw_mut()
            .recv_into_until(buf, Deadline::NEVER)
            .or_named(self.at("recv_into"))
    }

    /// [`recv_into`](PipeEnd::recv_into) waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let mut buf = [0u8; 8];
    /// assert!(matches!(a.recv_into_timeout(&mut buf, Duration::from_millis(1)), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.raw_mut()
            .recv_into_until(buf, Deadline::after(timeout))
            .or_named(self.at("recv_into_timeout"))
    }

    /// Waits up to `timeout` for a message to be readable; never consumes
    /// one. `Ok(false)` on timeout (never earlier); [`Error::Disconnected`]
    /// when the peer is gone and nothing is left.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// assert!(!b.poll(Duration::ZERO)?);
    /// a.send(b"")?;
    /// assert!(b.poll(Duration::ZERO)?);
    /// assert!(b.poll(Duration::ZERO)?);
    /// assert_eq!(b.recv()?, b"");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Duration) -> Result<bool> {
        self.raw_mut()
            .poll_until(Deadline::after(timeout))
            .or_named(self.at("poll"))
    }

    /// [`poll`](PipeEnd::poll) until `deadline`: `Ok(false)` once it has
    /// passed (never earlier) with nothing readable.
    ///
    /// # Errors
    /// As [`poll`](PipeEnd::poll).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// assert!(!b.poll_deadline(std::time::Instant::now())?);
    /// a.send(b"x")?;
    /// assert!(b.poll_deadline(std::time::Instant::now())?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn poll_deadline(&mut self, deadline: std::time::Instant) -> Result<bool> {
        self.poll(crate::queue::until(deadline))
            .or_named(self.at("poll_deadline"))
    }

    /// Reserves room for a message of `len` bytes and gives it to be written
    /// in place (zero-copy), waiting for room as long as it takes. Sent by
    /// [`SendGrant::commit`]; dropping the grant sends nothing. The message
    /// must fit in the ring.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`]; [`Error::InvalidArgument`] for a message
    /// larger than the ring; [`Error::Disconnected`].
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let mut g = a.reserve(3)?;
    /// g.copy_from_slice(b"abc");
    /// g.commit();
    /// assert_eq!(&*b.recv_ref()?, b"abc");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<SendGrant<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "reserve");
        raw.reserve_grant(len, Deadline::NEVER)
            .map(SendGrant)
            .or_named(at)
    }

    /// Receives the next message in place (zero-copy when it lies whole and
    /// contiguous in the ring; a streamed or wrapped message is copied out).
    /// It is consumed when the returned value drops.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send(b"look")?;
    /// let msg = b.recv_ref()?;
    /// assert_eq!(&*msg, b"look");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_ref(&mut self) -> Result<RecvRef<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "recv_ref");
        raw.recv_ref_grant(Deadline::NEVER)
            .map(RecvRef)
            .or_named(at)
    }

    /// [`reserve`](PipeEnd::reserve) if the ring has room now, else
    /// [`Error::Full`] (nothing is reserved).
    ///
    /// # Errors
    /// As [`reserve`](PipeEnd::reserve), and `Full`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.try_reserve(40)?.commit();
    /// assert!(matches!(a.try_reserve(40), Err(shmkit::Error::Full { .. })));
    /// assert_eq!(b.recv()?.len(), 40);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_reserve(&mut self, len: usize) -> Result<SendGrant<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "try_reserve");
        split::now_or(
            raw.reserve_grant(len, Deadline::after(Duration::ZERO)),
            |origin| Error::Full { origin },
        )
        .map(SendGrant)
        .or_named(at)
    }

    /// [`reserve`](PipeEnd::reserve), waiting for room at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`reserve`](PipeEnd::reserve), and `Timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.reserve_timeout(40, Duration::from_millis(5))?.commit();
    /// let r = a.reserve_timeout(40, Duration::from_millis(5));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// assert_eq!(b.recv()?.len(), 40);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<SendGrant<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "reserve_timeout");
        raw.reserve_grant(len, Deadline::after(timeout))
            .map(SendGrant)
            .or_named(at)
    }

    /// [`reserve_timeout`](PipeEnd::reserve_timeout) until `deadline` (a
    /// deadline already past tries once).
    ///
    /// # Errors
    /// As [`reserve_timeout`](PipeEnd::reserve_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let mut g = a.reserve_deadline(2, Instant::now() + Duration::from_secs(1))?;
    /// g.copy_from_slice(b"ok");
    /// g.commit();
    /// assert_eq!(b.recv()?, b"ok");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_deadline(
        &mut self,
        len: usize,
        deadline: std::time::Instant,
    ) -> Result<SendGrant<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "reserve_deadline");
        raw.reserve_grant(len, Deadline::after(crate::queue::until(deadline)))
            .map(SendGrant)
            .or_named(at)
    }

    /// [`recv_ref`](PipeEnd::recv_ref) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// # Errors
    /// As [`recv`](PipeEnd::recv), and `Empty`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// assert!(matches!(b.try_recv_ref(), Err(shmkit::Error::Empty { .. })));
    /// a.send(b"look")?;
    /// assert_eq!(&*b.try_recv_ref()?, b"look");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_ref(&mut self) -> Result<RecvRef<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "try_recv_ref");
        split::now_or(
            raw.recv_ref_grant(Deadline::after(Duration::ZERO)),
            |origin| Error::Empty { origin },
        )
        .map(RecvRef)
        .or_named(at)
    }

    /// [`recv_ref`](PipeEnd::recv_ref), waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`recv`](PipeEnd::recv), and `Timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let r = b.recv_ref_timeout(Duration::from_millis(5)).map(drop);
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// a.send(b"look")?;
    /// assert_eq!(&*b.recv_ref_timeout(Duration::from_secs(1))?, b"look");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvRef<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "recv_ref_timeout");
        raw.recv_ref_grant(Deadline::after(timeout))
            .map(RecvRef)
            .or_named(at)
    }

    /// [`recv_ref_timeout`](PipeEnd::recv_ref_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`recv_ref_timeout`](PipeEnd::recv_ref_timeout).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let r = a.recv_ref_deadline(std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_ref_deadline(&mut self, deadline: std::time::Instant) -> Result<RecvRef<'_>> {
        let (raw, at) = self.0.view_mut_at("Pipe", "recv_ref_deadline");
        raw.recv_ref_grant(Deadline::after(crate::queue::until(deadline)))
            .map(RecvRef)
            .or_named(at)
    }

    /// Sends the bytes of a plain-data value.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_value(&(3.5f64))?;
    /// assert_eq!(b.recv_value::<f64>()?, 3.5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_value<T: Pod>(&mut self, value: &T) -> Result<()> {
        self.send(bytemuck::bytes_of(value))
            .or_named(self.at("send_value"))
    }

    /// Receives the next message as a plain-data value, waiting as long as
    /// it takes.
    ///
    /// # Errors
    /// As [`recv`](PipeEnd::recv), and [`Error::WrongSize`] for a message
    /// whose length is not `T`'s, longer or shorter: it is consumed and its
    /// bytes are in the error (the same rule as
    /// [`Queue::get_value`](crate::Queue::get_value)).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_value(&[1u16, 2, 3])?;
    /// assert_eq!(b.recv_value::<[u16; 3]>()?, [1, 2, 3]);
    /// a.send(b"longer than a u16")?;
    /// assert!(matches!(b.recv_value::<u16>(), Err(shmkit::Error::WrongSize { expected: 2, .. })));
    /// a.send_value(&9u16)?;
    /// assert_eq!(b.recv_value::<u16>()?, 9);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_value<T: Pod>(&mut self) -> Result<T> {
        crate::typed::take(self, |e, b| e.recv_into(b), |e| e.recv())
            .or_named(self.at("recv_value"))
    }

    /// [`recv_value`](PipeEnd::recv_value) waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_value`](PipeEnd::recv_value), and [`Error::Timeout`].
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let r = a.recv_value_timeout::<u8>(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_value_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T> {
        crate::typed::take(
            self,
            |e, b| e.recv_into_timeout(b, timeout),
            |e| e.recv_timeout(timeout),
        )
        .or_named(self.at("recv_value_timeout"))
    }

    /// [`recv_value_timeout`](PipeEnd::recv_value_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`recv_value_timeout`](PipeEnd::recv_value_timeout).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_value(&9u16)?;
    /// assert_eq!(b.recv_value_deadline::<u16>(std::time::Instant::now())?, 9);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_value_deadline<T: Pod>(&mut self, deadline: std::time::Instant) -> Result<T> {
        crate::typed::take(
            self,
            |e, b| e.recv_into_deadline(b, deadline),
            |e| e.recv_deadline(deadline),
        )
        .or_named(self.at("recv_value_deadline"))
    }

    /// [`recv_value`](PipeEnd::recv_value) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// # Errors
    /// As [`try_recv`](PipeEnd::try_recv).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// assert!(matches!(b.try_recv_value::<u8>(), Err(shmkit::Error::Empty { .. })));
    /// a.send_value(&5u8)?;
    /// assert_eq!(b.try_recv_value::<u8>()?, 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_value<T: Pod>(&mut self) -> Result<T> {
        crate::typed::take(self, |e, b| e.try_recv_into(b), |e| e.try_recv())
            .or_named(self.at("try_recv_value"))
    }

    /// [`send_value`](PipeEnd::send_value) waiting for room at most
    /// `timeout`.
    ///
    /// # Errors
    /// As [`send_timeout`](PipeEnd::send_timeout).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_value_timeout(&1u32, std::time::Duration::from_millis(1))?;
    /// assert_eq!(b.recv_value::<u32>()?, 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_value_timeout<T: Pod>(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.send_timeout(bytemuck::bytes_of(value), timeout)
            .or_named(self.at("send_value_timeout"))
    }

    /// [`send_value_timeout`](PipeEnd::send_value_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`send_timeout`](PipeEnd::send_timeout).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_value_deadline(&1u32, std::time::Instant::now())?; // room now: no wait
    /// assert_eq!(b.recv_value::<u32>()?, 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_value_deadline<T: Pod>(
        &mut self,
        value: &T,
        deadline: std::time::Instant,
    ) -> Result<()> {
        self.send_deadline(bytemuck::bytes_of(value), deadline)
            .or_named(self.at("send_value_deadline"))
    }

    /// [`send_value`](PipeEnd::send_value) if there is room now, else
    /// [`Error::Full`].
    ///
    /// # Errors
    /// As [`try_send`](PipeEnd::try_send).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.try_send_value(&2u64)?;
    /// assert_eq!(b.recv_value::<u64>()?, 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send_value<T: Pod>(&mut self, value: &T) -> Result<()> {
        self.try_send(bytemuck::bytes_of(value))
            .or_named(self.at("try_send_value"))
    }

    /// Sends a copy of `msg` if the ring has room for all of it now, else
    /// [`Error::Full`] (nothing is sent). A message larger than the whole
    /// ring is never sent this way (it is streamed: use
    /// [`send`](PipeEnd::send)).
    ///
    /// # Errors
    /// As [`send`](PipeEnd::send), and `Full`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.try_send(&[0; 40])?;
    /// assert!(matches!(a.try_send(&[0; 40]), Err(shmkit::Error::Full { .. })));
    /// assert_eq!(b.try_recv()?.len(), 40);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        match self
            .raw_mut()
            .send_until(msg, Deadline::after(Duration::ZERO))
        {
            Err(Error::Timeout { origin }) => Err(Error::Full { origin }),
            r => r,
        }
        .or_named(self.at("try_send"))
    }

    /// Receives the next message if one is there now, else
    /// [`Error::Empty`].
    ///
    /// # Errors
    /// As [`recv`](PipeEnd::recv), and `Empty`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// assert!(matches!(b.try_recv(), Err(shmkit::Error::Empty { .. })));
    /// a.send(b"x")?;
    /// assert_eq!(b.try_recv()?, b"x");
    /// drop(a);
    /// assert!(matches!(b.try_recv(), Err(shmkit::Error::Disconnected { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        match self.raw_mut().recv_until(Deadline::after(Duration::ZERO)) {
            Err(Error::Timeout { origin }) => Err(Error::Empty { origin }),
            r => r,
        }
        .or_named(self.at("try_recv"))
    }

    /// [`recv_into`](PipeEnd::recv_into) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// # Errors
    /// As [`recv_into`](PipeEnd::recv_into), and `Empty`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let mut buf = [0u8; 8];
    /// assert!(matches!(b.try_recv_into(&mut buf), Err(shmkit::Error::Empty { .. })));
    /// a.send(b"hi")?;
    /// assert_eq!(b.try_recv_into(&mut buf)?, 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self
            .raw_mut()
            .recv_into_until(buf, Deadline::after(Duration::ZERO))
        {
            Err(Error::Timeout { origin }) => Err(Error::Empty { origin }),
            r => r,
        }
        .or_named(self.at("try_recv_into"))
    }

    /// [`send`](PipeEnd::send) as a future: waits for room without
    /// blocking the executor's thread. Runtime-agnostic. Dropping it before
    /// it finishes sends nothing. A message larger than the ring is
    /// streamed, and once its first bytes are in the future finishes it
    /// before it returns (a half-sent message cannot be taken back): for
    /// such messages it can block the executor's thread while the peer
    /// drains the ring.
    ///
    /// # Errors
    /// As [`send`](PipeEnd::send).
    ///
    /// ```
    /// # use std::future::Future;
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// assert!(std::pin::pin!(a.send_async(b"hi")).poll(&mut cx).is_ready());
    /// assert_eq!(b.recv()?, b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn send_async<'a>(&'a mut self, msg: &'a [u8]) -> impl Future<Output = Result<()>> + 'a {
        let mut w = Waiter::new();
        std::future::poll_fn(move |cx| {
            self.poll_end("send_async", &mut w, cx, RawPipe::send_notify, |raw| {
                raw.send_until(msg, Deadline::after(Duration::ZERO))
            })
        })
    }

    /// [`recv`](PipeEnd::recv) as a future (see
    /// [`send_async`](PipeEnd::send_async)). Dropping it before it
    /// finishes takes nothing (a streamed message it has begun to take
    /// stays with the end, for the next receive).
    ///
    /// # Errors
    /// As [`recv`](PipeEnd::recv).
    ///
    /// ```
    /// # use std::future::Future;
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// a.send(b"hi")?;
    /// let std::task::Poll::Ready(m) = std::pin::pin!(b.recv_async()).poll(&mut cx) else { panic!() };
    /// assert_eq!(m?, b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn recv_async(&mut self) -> impl Future<Output = Result<Vec<u8>>> + '_ {
        let mut w = Waiter::new();
        std::future::poll_fn(move |cx| {
            self.poll_end("recv_async", &mut w, cx, RawPipe::recv_notify, |raw| {
                raw.recv_until(Deadline::after(Duration::ZERO))
            })
        })
    }

    /// One poll of a pipe future: try without waiting, arm the direction's
    /// notify (`notify` of the raw end), try again, else register and stay
    /// pending (see `future::Waiter`).
    #[cfg(not(loom))]
    fn poll_end<T>(
        &mut self,
        name: &'static str,
        w: &mut Waiter,
        cx: &std::task::Context<'_>,
        notify: fn(&RawPipe<'static>) -> Result<&'static crate::raw::notify::Notify>,
        mut op: impl FnMut(&mut RawPipe<'static>) -> Result<T>,
    ) -> Poll<Result<T>> {
        let mut attempt = |raw: &mut RawPipe<'static>| match op(raw) {
            Err(Error::Timeout { .. }) => None,
            r => Some(r),
        };
        if let Some(r) = attempt(self.raw_mut()) {
            w.done();
            return Poll::Ready(r.or_named(self.at(name)));
        }
        let n = match notify(self.raw()) {
            Ok(n) => n,
            Err(e) => return Poll::Ready(Err(e).or_named(self.at(name))),
        };
        let armed = n.arm();
        if let Some(r) = attempt(self.raw_mut()) {
            w.done();
            return Poll::Ready(r.or_named(self.at(name)));
        }
        w.sleep(cx, &[(n.futex(), armed)], &self.raw().watch_targets());
        Poll::Pending
    }

    /// Sets how long this end's blocking calls spin before they sleep:
    /// [`Spin::Adaptive`] (the default), [`Spin::Never`], or [`Spin::UpTo`]
    /// a duration. The other end keeps its own setting.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// a.set_spin(shmkit::Spin::Never);
    /// assert_eq!(a.spin(), shmkit::Spin::Never);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.raw().set_spin(spin);
    }

    /// This end's spin setting (see [`set_spin`](PipeEnd::set_spin)).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// assert_eq!(a.spin(), shmkit::Spin::Adaptive);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spin(&self) -> Spin {
        self.raw().spin()
    }

    /// "A message to receive": for a [`WaitSet`](crate::WaitSet) or
    /// [`wait`](crate::wait). Ready when a receive would not wait: bytes
    /// have arrived, or the peer closed its end or died. Passing `&end`
    /// means the same. A [`WaitSet`](crate::WaitSet) refuses it on a
    /// send-only end.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// assert!(!b.readable().is_ready());
    /// a.send(b"hi")?;
    /// assert!(b.readable().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn readable(&self) -> Interest<'_> {
        Interest::new(Source::PipeRecv(self.raw()))
    }

    /// "Room to send a message of `len` bytes": for a
    /// [`WaitSet`](crate::WaitSet) or [`wait`](crate::wait). Ready when such
    /// a send would not wait for room (for a message larger than the ring:
    /// when streaming it can start), or the peer is gone. A
    /// [`WaitSet`](crate::WaitSet) refuses it on a receive-only end.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// assert!(a.writable(100).is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn writable(&self, len: usize) -> Interest<'_> {
        Interest::new(Source::PipeSend(self.raw(), len))
    }

    /// Whether the other end is gone (dropped, or its process died). Reads
    /// the peer's liveness on every call; `&self`, so a shared end can ask.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let b = shmkit::Pipe::open(a.name())?;
    /// assert!(!a.is_disconnected());
    /// drop(b);
    /// assert!(a.is_disconnected());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.raw().is_disconnected()
    }

    /// Whether this end can send.
    ///
    /// ```
    /// assert!(shmkit::Pipe::create_unique()?.can_send());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn can_send(&self) -> bool {
        self.raw().can_send()
    }

    /// Whether this end can receive.
    ///
    /// ```
    /// assert!(shmkit::Pipe::create_unique()?.can_recv());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn can_recv(&self) -> bool {
        self.raw().can_recv()
    }

    /// Bytes in each direction's ring.
    ///
    /// ```
    /// assert_eq!(shmkit::Pipe::create_unique()?.capacity(), shmkit::DEFAULT_PIPE_CAPACITY);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.raw().capacity()
    }

    /// The largest message, in bytes.
    ///
    /// ```
    /// assert_eq!(shmkit::Pipe::create_unique()?.max_message(), shmkit::DEFAULT_MAX_MESSAGE);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.raw().max_message()
    }
}

#[cfg(feature = "serde")]
impl PipeEnd {
    /// Sends any serialisable value (encoded with postcard 1, see the crate docs' wire format).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_serde(&vec![Some(1u8), None])?;
    /// assert_eq!(b.recv_serde::<Vec<Option<u8>>>()?, [Some(1), None]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.send(&crate::typed::encode(value)?)
            .or_named(self.at("send_serde"))
    }

    /// Receives the next message and decodes it; one that does not decode
    /// is consumed and reported as [`Error::InvalidArgument`]. The value is
    /// decoded from a private copy of the message, never from shared memory.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_serde("text")?;
    /// assert_eq!(b.recv_serde::<String>()?, "text");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        // Decoded from a private copy: bytes in the ring could be changed
        // by a hostile process while the decoder reads them.
        crate::typed::decode(&self.recv().or_named(self.at("recv_serde"))?)
    }

    /// [`recv_serde`](PipeEnd::recv_serde) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// assert!(matches!(b.try_recv_serde::<u8>(), Err(shmkit::Error::Empty { .. })));
    /// a.try_send_serde(&4u8)?;
    /// assert_eq!(b.try_recv_serde::<u8>()?, 4);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        crate::typed::decode(&self.try_recv().or_named(self.at("try_recv_serde"))?)
    }

    /// [`recv_serde`](PipeEnd::recv_serde), waiting at most `timeout`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let r = a.recv_serde_timeout::<u8>(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_serde_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T> {
        crate::typed::decode(
            &self
                .recv_timeout(timeout)
                .or_named(self.at("recv_serde_timeout"))?,
        )
    }

    /// [`recv_serde_timeout`](PipeEnd::recv_serde_timeout) until `deadline`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let r = a.recv_serde_deadline::<u8>(std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_serde_deadline<T: serde::de::DeserializeOwned>(
        &mut self,
        deadline: std::time::Instant,
    ) -> Result<T> {
        crate::typed::decode(
            &self
                .recv_deadline(deadline)
                .or_named(self.at("recv_serde_deadline"))?,
        )
    }

    /// [`send_serde`](PipeEnd::send_serde) if there is room now, else
    /// [`Error::Full`].
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.try_send_serde("x")?;
    /// assert_eq!(b.recv_serde::<String>()?, "x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send_serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.try_send(&crate::typed::encode(value)?)
            .or_named(self.at("try_send_serde"))
    }

    /// [`send_serde`](PipeEnd::send_serde), waiting for room at most
    /// `timeout`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_serde_timeout("x", std::time::Duration::from_secs(1))?;
    /// assert_eq!(b.recv_serde::<String>()?, "x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_serde_timeout<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<()> {
        self.send_timeout(&crate::typed::encode(value)?, timeout)
            .or_named(self.at("send_serde_timeout"))
    }

    /// [`send_serde_timeout`](PipeEnd::send_serde_timeout) until `deadline`.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.send_serde_deadline("x", std::time::Instant::now())?; // room now: no wait
    /// assert_eq!(b.recv_serde::<String>()?, "x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_serde_deadline<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
        deadline: std::time::Instant,
    ) -> Result<()> {
        self.send_deadline(&crate::typed::encode(value)?, deadline)
            .or_named(self.at("send_serde_deadline"))
    }
}

/// Room for one message in a pipe's ring, written in place; see
/// [`PipeEnd::reserve`].
///
/// The slice is the ring's shared memory, bounded once at reserve and
/// always inside the ring. The peer does not touch it before commit; a
/// hostile process mapping the pipe could read it early or change it while
/// you write (the message sent is what the ring holds at commit), but can
/// never make you touch memory outside the ring.
pub struct SendGrant<'a>(RawSendGrant<'a, 'static>);

impl SendGrant<'_> {
    /// Sends the message.
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// a.reserve(0)?.commit();
    /// assert_eq!(b.recv()?, b"");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit(self) {
        self.0.commit();
    }

    /// Sends only the first `len` bytes (at most the reserved length).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let mut g = a.reserve(100)?;
    /// g[..2].copy_from_slice(b"ok");
    /// g.commit_len(2);
    /// assert_eq!(b.recv()?, b"ok");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit_len(self, len: usize) {
        self.0.commit_len(len);
    }
}

impl Deref for SendGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for SendGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl fmt::Debug for SendGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGrant")
            .field("len", &self.len())
            .finish()
    }
}

/// A received message, in place in the ring when possible; consumed when
/// dropped. See [`PipeEnd::recv_ref`].
///
/// In place, the slice is the ring's shared memory, bounded once when the
/// message was received and always inside the ring. A well-behaved writer
/// does not touch it until this value drops; a hostile process mapping the
/// pipe can change its bytes while you read them (two reads may differ), but
/// can never make you read outside the ring. If the peer is not trusted,
/// validate a copy ([`PipeEnd::recv`]), not the slice.
pub struct RecvRef<'a>(RawRecvRef<'a, 'static>);

impl Deref for RecvRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for RecvRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvRef").field("len", &self.len()).finish()
    }
}

/// Waiting on a pipe end waits for a message: [`PipeEnd::readable`].
impl Waitable for PipeEnd {
    fn interest(&self) -> Interest<'_> {
        self.readable()
    }
}
