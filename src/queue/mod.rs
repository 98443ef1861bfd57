//! `Queue`: a named, bounded, multi-producer multi-consumer message queue.

mod iter;
mod roles;

pub use iter::{QueueIter, QueueTryIter, QueueValues};
pub use roles::{QueueReceiver, QueueSender};

use std::fmt;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, OrNamed, Origin, Result};
#[cfg(not(loom))]
use crate::future::{poll_one, Waiter};
use crate::handle::{named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::wait::Source;
use crate::raw::Spin;
use crate::raw::{GetGrant, PutGrant, QueueLayout, RawQueue};
use crate::segment::{Options, Spec};
use crate::sync::Deadline;
use crate::waitset::{Interest, Waitable};
#[cfg(not(loom))]
use std::future::Future;

/// A bounded queue of byte messages shared by every process that opens its
/// name (Python's `multiprocessing.Queue`, with Boost's fixed maximum message
/// size), built on [`RawQueue`].
///
/// Any number of processes put and get; each message is delivered exactly
/// once, in order per producer. A process killed at any instruction leaves
/// no torn message and no hole: a put that had not returned is dropped, a
/// message handed to a consumer that died goes with it (unless it was taken
/// under a lease, [`get_lease`](Queue::get_lease): then it is delivered
/// again), and everything else keeps flowing. An empty message is a
/// message.
///
/// | call                       | when full / empty                      |
/// |----------------------------|----------------------------------------|
/// | `put`, `get`               | wait as long as it takes               |
/// | `try_put`, `try_get`       | [`Error::Full`] / [`Error::Empty`] now |
/// | `put_timeout`, `get_timeout` | [`Error::Timeout`] after the duration  |
///
/// After [`close`](Queue::close), puts fail with [`Error::Closed`], gets
/// drain what is left and then fail with `Closed`, and blocked callers wake.
///
/// ```
/// use shmkit::Queue;
///
/// let q = Queue::create_unique(16, 64)?;
/// let other = Queue::open(q.name())?; // as another process would
/// q.put(b"hello")?;
/// q.put(b"")?;
/// assert_eq!(other.get()?, b"hello");
/// assert_eq!(other.len(), 1);
/// assert_eq!(other.try_get()?, b"");
/// assert!(matches!(other.try_get(), Err(shmkit::Error::Empty { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Queue(Named<RawQueue<'static>>);

impl Core for RawQueue<'static> {
    type View = RawQueue<'static>;

    fn spec() -> Spec {
        Spec::of(Kind::Queue)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, _created: bool) -> Result<Self::View> {
        if len < RawQueue::ctl_size() {
            return Err(Error::corrupted(
                "",
                format!("a payload of {len} bytes cannot hold a queue"),
            ));
        }
        // SAFETY: the caller's contract is `RawQueue::attach`'s. The payload
        // is used only through RawQueue handles; attach reads and checks
        // its configuration once.
        unsafe { RawQueue::attach(p, len) }
    }
}

named_handle! {
    impl Queue {
        what: "queue",
        path: "shmkit::Queue",
        make: "shmkit::Queue::create_unique(4, 16)?",
        open_errors: "[`Error::Corrupted`] for an impossible configuration (capacity and message size come from the segment)",
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Queue {
    fn create_inner(
        name: Option<&str>,
        capacity: usize,
        max_message: usize,
        opts: &Options,
    ) -> Result<Queue> {
        let layout = QueueLayout {
            capacity,
            max_message,
        };
        let size = RawQueue::required_size(&layout)?;
        let init = |p: *mut u8, len: usize| {
            // SAFETY: `p` is the fresh, unpublished payload of `len` bytes.
            unsafe { RawQueue::init_in(p, len, &layout) }.map(drop)
        };
        Named::create(name, 0, size, opts, init).map(Queue)
    }

    fn from_named(n: Named<RawQueue<'static>>) -> Queue {
        Queue(n)
    }

    fn named(&self) -> &Named<RawQueue<'static>> {
        &self.0
    }

    /// Names this queue and operation `op` in an error (for `or_named`).
    #[inline]
    pub(crate) fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.0.at("Queue", op)
    }

    /// A non-blocking call's answer, named (see `error::named_now`).
    #[inline(always)]
    fn now<T>(
        &self,
        r: Result<Option<T>>,
        op: &'static str,
        not_now: fn(Origin) -> Error,
    ) -> Result<T> {
        self.0.now(r, "Queue", op, not_now)
    }

    #[inline]
    pub(crate) fn raw(&self) -> &RawQueue<'static> {
        self.0.view()
    }

    /// Creates an empty queue named `name` that holds up to `capacity`
    /// messages of up to `max_message` bytes each. A `max_message` of 0 is
    /// allowed: every message is empty, and the queue carries only their
    /// count and order (a token queue); a longer one is
    /// [`Error::MessageTooLarge`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero capacity or a queue too large
    /// to map; the errors of [`Segment::create`](crate::Segment::create).
    ///
    /// ```
    /// # let name = format!("shmkit-doc-queue-{}", std::process::id());
    /// let q = shmkit::Queue::create(&name, 8, 128)?;
    /// assert_eq!((q.capacity(), q.max_message()), (8, 128));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str, capacity: usize, max_message: usize) -> Result<Queue> {
        Queue::create_inner(Some(name), capacity, max_message, &Options::new())
    }

    /// [`create`](Queue::create) with [`Options`].
    ///
    /// ```
    /// # let name = format!("shmkit-doc-queuew-{}", std::process::id());
    /// let q = shmkit::Queue::create_with(&name, 8, 128, &shmkit::Options::new().mode(0o660))?;
    /// # let _ = q;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(
        name: &str,
        capacity: usize,
        max_message: usize,
        opts: &Options,
    ) -> Result<Queue> {
        Queue::create_inner(Some(name), capacity, max_message, opts)
    }

    /// Creates a queue under a fresh unique name.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// assert!(q.name().starts_with("shmkit-"));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique(capacity: usize, max_message: usize) -> Result<Queue> {
        Queue::create_inner(None, capacity, max_message, &Options::new())
    }

    /// Puts a copy of `msg`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] (nothing is put), [`Error::Closed`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"abc")?;
    /// assert!(matches!(q.put(&[0; 17]), Err(shmkit::Error::MessageTooLarge { len: 17, max: 16, .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put(&self, msg: &[u8]) -> Result<()> {
        self.raw()
            .put_until(msg, Some(Deadline::NEVER))
            .or_named(self.at("put"))
    }

    /// [`put_timeout`](Queue::put_timeout) with a deadline instead of a
    /// timeout: waits for room until `deadline` (a deadline already past
    /// tries once). Handy when one budget covers several calls.
    ///
    /// # Errors
    /// As [`put_timeout`](Queue::put_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// q.put_deadline(b"a", deadline)?;
    /// assert!(matches!(q.put_deadline(b"b", deadline), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_deadline(&self, msg: &[u8], deadline: std::time::Instant) -> Result<()> {
        self.put_timeout(msg, until(deadline))
            .or_named(self.at("put_deadline"))
    }

    /// [`get_timeout`](Queue::get_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`get_timeout`](Queue::get_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put(b"a")?;
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(q.get_deadline(deadline)?, b"a");
    /// assert!(matches!(q.get_deadline(deadline), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_deadline(&self, deadline: std::time::Instant) -> Result<Vec<u8>> {
        self.get_timeout(until(deadline))
            .or_named(self.at("get_deadline"))
    }

    /// [`get_into_timeout`](Queue::get_into_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`get_into_timeout`](Queue::get_into_timeout).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// let r = q.get_into_deadline(&mut [0; 16], std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_into_deadline(&self, buf: &mut [u8], deadline: std::time::Instant) -> Result<usize> {
        self.get_into_timeout(buf, until(deadline))
            .or_named(self.at("get_into_deadline"))
    }

    /// Puts a copy of `msg` if there is room now, else [`Error::Full`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.try_put(b"a")?;
    /// assert!(matches!(q.try_put(b"b"), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put(&self, msg: &[u8]) -> Result<()> {
        self.now(self.raw().put_now(msg), "try_put", Error::full)
    }

    /// Puts a copy of `msg`, waiting for room at most `timeout`, else
    /// [`Error::Timeout`] (never earlier).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put_timeout(b"a", Duration::from_millis(5))?;
    /// assert!(matches!(q.put_timeout(b"b", Duration::from_millis(5)), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.raw()
            .put_until(msg, Some(Deadline::after(timeout)))
            .or_named(self.at("put_timeout"))
    }

    /// Takes the next message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::Closed`] once closed and drained; [`Error::Corrupted`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"x")?;
    /// assert_eq!(q.get()?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get(&self) -> Result<Vec<u8>> {
        self.raw()
            .get_until(Some(Deadline::NEVER))
            .or_named(self.at("get"))
    }

    /// Takes the next message if there is one now, else [`Error::Empty`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// assert!(matches!(q.try_get(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get(&self) -> Result<Vec<u8>> {
        self.now(self.raw().get_now(), "try_get", Error::empty)
    }

    /// Takes the next message, waiting at most `timeout`, else
    /// [`Error::Timeout`] (never earlier).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// assert!(matches!(q.get_timeout(Duration::from_millis(5)), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.raw()
            .get_until(Some(Deadline::after(timeout)))
            .or_named(self.at("get_timeout"))
    }

    /// Takes the next message into `buf`, waiting as long as it takes;
    /// returns its length. A message longer than `buf` stays queued and the
    /// call fails with [`Error::BufferTooSmall`] saying how long it is.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"hello")?;
    /// let mut small = [0u8; 2];
    /// assert!(matches!(q.get_into(&mut small), Err(shmkit::Error::BufferTooSmall { needed: 5, .. })));
    /// let mut buf = [0u8; 16];
    /// let n = q.get_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"hello");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.raw()
            .get_into_until(buf, Some(Deadline::NEVER))
            .or_named(self.at("get_into"))
    }

    /// [`get_into`](Queue::get_into) without waiting: [`Error::Empty`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut buf = [0u8; 16];
    /// assert!(matches!(q.try_get_into(&mut buf), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.now(self.raw().get_into_now(buf), "try_get_into", Error::empty)
    }

    /// [`get_into`](Queue::get_into) waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut buf = [0u8; 16];
    /// assert!(matches!(q.get_into_timeout(&mut buf, Duration::from_millis(1)), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.raw()
            .get_into_until(buf, Some(Deadline::after(timeout)))
            .or_named(self.at("get_into_timeout"))
    }

    /// Reserves room for a message of `len` bytes, waiting as long as it
    /// takes, and gives it to be written in place (zero-copy). The message is
    /// sent by [`PutGrant::commit`]; a grant dropped without commit sends
    /// nothing and gives its room back at once. (Its position, if a later
    /// one was taken meanwhile, waits for the head to step over it: it costs
    /// no capacity, but holds one of the ring's spare slots, of which there
    /// are `capacity / 8`, at least one. Only when more such positions than
    /// that wait behind an open grant or an unread message does a put say
    /// `Full` with fewer than `capacity` messages queued.)
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Closed`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut grant = q.reserve(3)?;
    /// grant.copy_from_slice(b"abc");
    /// grant.commit()?;
    /// assert_eq!(q.get()?, b"abc");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve(&self, len: usize) -> Result<PutGrant<'_>> {
        self.reserve_until(len, Some(Deadline::NEVER))
            .or_named(self.at("reserve"))
    }

    /// [`reserve`](Queue::reserve) if there is room now, else [`Error::Full`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.try_reserve(1)?.commit()?;
    /// assert!(matches!(q.try_reserve(1), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_reserve(&self, len: usize) -> Result<PutGrant<'_>> {
        self.reserve_until(len, None)
            .or_named(self.at("try_reserve"))
    }

    /// [`reserve`](Queue::reserve), waiting for room at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`reserve`](Queue::reserve), and `Timeout`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put(b"full")?;
    /// let r = q.reserve_timeout(4, std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_timeout(&self, len: usize, timeout: Duration) -> Result<PutGrant<'_>> {
        self.reserve_until(len, Some(Deadline::after(timeout)))
            .or_named(self.at("reserve_timeout"))
    }

    /// [`reserve_timeout`](Queue::reserve_timeout) until `deadline` (a
    /// deadline already past tries once).
    ///
    /// # Errors
    /// As [`reserve_timeout`](Queue::reserve_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// q.reserve_deadline(1, deadline)?.commit()?;
    /// assert!(matches!(q.reserve_deadline(1, deadline), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_deadline(
        &self,
        len: usize,
        deadline: std::time::Instant,
    ) -> Result<PutGrant<'_>> {
        self.reserve_timeout(len, until(deadline))
            .or_named(self.at("reserve_deadline"))
    }

    fn reserve_until(&self, len: usize, deadline: Option<Deadline>) -> Result<PutGrant<'_>> {
        self.raw().reserve_until(len, deadline)
    }

    /// Takes the next message in place (zero-copy), waiting as long as it
    /// takes; its slot is freed when the grant drops.
    ///
    /// # Errors
    /// [`Error::Closed`] once closed and drained; [`Error::Corrupted`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"in place")?;
    /// let msg = q.get_ref()?;
    /// assert_eq!(&*msg, b"in place");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_ref(&self) -> Result<GetGrant<'_>> {
        self.get_ref_until(Some(Deadline::NEVER))
            .or_named(self.at("get_ref"))
    }

    /// [`get_ref`](Queue::get_ref) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// assert!(matches!(q.try_get_ref(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_ref(&self) -> Result<GetGrant<'_>> {
        self.get_ref_until(None).or_named(self.at("try_get_ref"))
    }

    /// [`get_ref`](Queue::get_ref), waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`get_ref`](Queue::get_ref), and `Timeout`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// let r = q.get_ref_timeout(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// q.put(b"x")?;
    /// assert_eq!(&*q.get_ref_timeout(std::time::Duration::from_secs(1))?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_ref_timeout(&self, timeout: Duration) -> Result<GetGrant<'_>> {
        self.get_ref_until(Some(Deadline::after(timeout)))
            .or_named(self.at("get_ref_timeout"))
    }

    /// [`get_ref_timeout`](Queue::get_ref_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`get_ref_timeout`](Queue::get_ref_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put(b"x")?;
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(&*q.get_ref_deadline(deadline)?, b"x");
    /// assert!(matches!(q.get_ref_deadline(deadline), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_ref_deadline(&self, deadline: std::time::Instant) -> Result<GetGrant<'_>> {
        self.get_ref_timeout(until(deadline))
            .or_named(self.at("get_ref_deadline"))
    }

    fn get_ref_until(&self, deadline: Option<Deadline>) -> Result<GetGrant<'_>> {
        self.raw().get_ref_until(deadline)
    }

    /// Puts the bytes of a plain-data value.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put_value(&[1u32, 2])?;
    /// assert_eq!(q.get_value::<[u32; 2]>()?, [1, 2]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_value<T: Pod>(&self, value: &T) -> Result<()> {
        self.put(bytemuck::bytes_of(value))
            .or_named(self.at("put_value"))
    }

    /// Takes the next message as a plain-data value, waiting as long as it
    /// takes.
    ///
    /// # Errors
    /// As [`get`](Queue::get), and [`Error::WrongSize`] for a message whose
    /// length is not `T`'s, longer or shorter: it is consumed and its bytes
    /// are in the error, so nothing is lost and the next typed get is not
    /// held up by it.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put_value(&7u64)?;
    /// assert_eq!(q.get_value::<u64>()?, 7);
    /// q.put(b"abc")?;
    /// match q.get_value::<u64>() {
    ///     Err(shmkit::Error::WrongSize { expected: 8, message, .. }) => assert_eq!(message, b"abc"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_value<T: Pod>(&self) -> Result<T> {
        crate::typed::take(&mut &*self, |q, b| q.get_into(b), |q| q.get())
            .or_named(self.at("get_value"))
    }

    /// [`get_value`](Queue::get_value) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// # Errors
    /// As [`get_value`](Queue::get_value), and `Empty`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// assert!(matches!(q.try_get_value::<u32>(), Err(shmkit::Error::Empty { .. })));
    /// q.put_value(&3u32)?;
    /// assert_eq!(q.try_get_value::<u32>()?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_value<T: Pod>(&self) -> Result<T> {
        crate::typed::take(&mut &*self, |q, b| q.try_get_into(b), |q| q.try_get())
            .or_named(self.at("try_get_value"))
    }

    /// [`get_value`](Queue::get_value), waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`get_value`](Queue::get_value), and `Timeout`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let r = q.get_value_timeout::<u32>(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_value_timeout<T: Pod>(&self, timeout: Duration) -> Result<T> {
        crate::typed::take(
            &mut &*self,
            |q, b| q.get_into_timeout(b, timeout),
            |q| q.get_timeout(timeout),
        )
        .or_named(self.at("get_value_timeout"))
    }

    /// [`get_value_timeout`](Queue::get_value_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`get_value_timeout`](Queue::get_value_timeout).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put_value(&7u32)?;
    /// assert_eq!(q.get_value_deadline::<u32>(std::time::Instant::now())?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_value_deadline<T: Pod>(&self, deadline: std::time::Instant) -> Result<T> {
        crate::typed::take(
            &mut &*self,
            |q, b| q.get_into_deadline(b, deadline),
            |q| q.get_deadline(deadline),
        )
        .or_named(self.at("get_value_deadline"))
    }

    /// [`put_value`](Queue::put_value) if there is room now, else
    /// [`Error::Full`].
    ///
    /// # Errors
    /// As [`try_put`](Queue::try_put).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.try_put_value(&1u8)?;
    /// assert!(matches!(q.try_put_value(&2u8), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put_value<T: Pod>(&self, value: &T) -> Result<()> {
        self.try_put(bytemuck::bytes_of(value))
            .or_named(self.at("try_put_value"))
    }

    /// [`put_value`](Queue::put_value), waiting for room at most `timeout`.
    ///
    /// # Errors
    /// As [`put_timeout`](Queue::put_timeout).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put_value(&1u8)?;
    /// let r = q.put_value_timeout(&2u8, std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_value_timeout<T: Pod>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.put_timeout(bytemuck::bytes_of(value), timeout)
            .or_named(self.at("put_value_timeout"))
    }

    /// [`put_value_timeout`](Queue::put_value_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`put_timeout`](Queue::put_timeout).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put_value_deadline(&7u32, std::time::Instant::now())?; // room now: no wait
    /// assert_eq!(q.get_value::<u32>()?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_value_deadline<T: Pod>(
        &self,
        value: &T,
        deadline: std::time::Instant,
    ) -> Result<()> {
        self.put_deadline(bytemuck::bytes_of(value), deadline)
            .or_named(self.at("put_value_deadline"))
    }

    /// Messages in the queue now (a snapshot, as Python's `qsize`).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"a")?;
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.raw().len()
    }

    /// Whether the queue is empty now.
    ///
    /// ```
    /// assert!(shmkit::Queue::create_unique(4, 16)?.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.raw().is_empty()
    }

    /// Whether the queue is full now.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 16)?;
    /// q.put(b"a")?;
    /// assert!(q.is_full());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.raw().is_full()
    }

    /// How many messages fit.
    ///
    /// ```
    /// assert_eq!(shmkit::Queue::create_unique(5, 16)?.capacity(), 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.raw().capacity()
    }

    /// The largest message, in bytes.
    ///
    /// ```
    /// assert_eq!(shmkit::Queue::create_unique(5, 16)?.max_message(), 16);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.raw().max_message()
    }

    /// Closes the queue for every process: puts fail with [`Error::Closed`],
    /// gets drain what is left and then fail with `Closed`, blocked callers
    /// wake.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"last")?;
    /// q.close();
    /// assert!(q.is_closed());
    /// assert!(matches!(q.put(b"x"), Err(shmkit::Error::Closed { .. })));
    /// assert_eq!(q.get()?, b"last");
    /// assert!(matches!(q.get(), Err(shmkit::Error::Closed { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn close(&self) {
        self.raw().close();
    }

    /// Whether the queue was closed.
    ///
    /// ```
    /// assert!(!shmkit::Queue::create_unique(4, 16)?.is_closed());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.raw().is_closed()
    }

    /// [`put`](Queue::put) as a future: waits for room without blocking
    /// the executor's thread (see [`WaitSet`](crate::WaitSet) for what
    /// wakes it, and the crate's async section). Runtime-agnostic. Dropping
    /// it before it finishes puts nothing.
    ///
    /// # Errors
    /// As [`put`](Queue::put).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 8)?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut put = std::pin::pin!(q.put_async(b"job"));
    /// assert!(put.as_mut().poll(&mut cx).is_ready());
    /// # use std::future::Future;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn put_async<'a>(&'a self, msg: &'a [u8]) -> impl Future<Output = Result<()>> + 'a {
        let mut w = Waiter::new();
        std::future::poll_fn(move |cx| {
            let attempt = |check_dead: bool| {
                if check_dead {
                    self.raw().put_ready(true);
                }
                match self.raw().try_put(msg) {
                    Err(Error::Full { .. }) => None,
                    r => Some(r.or_named(self.at("put_async"))),
                }
            };
            let n = self.raw().put_notify();
            poll_one(
                &mut w,
                cx,
                attempt,
                || (n.futex(), n.arm()),
                || self.raw().watch_targets(),
            )
        })
    }

    /// [`get`](Queue::get) as a future (see [`put_async`](Queue::put_async)).
    /// Dropping it before it finishes takes nothing.
    ///
    /// # Errors
    /// As [`get`](Queue::get).
    ///
    /// ```
    /// # use std::future::Future;
    /// # let q = shmkit::Queue::create_unique(1, 8)?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut get = std::pin::pin!(q.get_async());
    /// assert!(get.as_mut().poll(&mut cx).is_pending());
    /// q.put(b"job")?;
    /// let std::task::Poll::Ready(m) = get.as_mut().poll(&mut cx) else { panic!() };
    /// assert_eq!(m?, b"job");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn get_async(&self) -> impl Future<Output = Result<Vec<u8>>> + '_ {
        self.get_with("get_async", |raw| raw.try_get())
    }

    /// [`get_into`](Queue::get_into) as a future (see
    /// [`put_async`](Queue::put_async)).
    ///
    /// # Errors
    /// As [`get_into`](Queue::get_into).
    ///
    /// ```
    /// # use std::future::Future;
    /// # let q = shmkit::Queue::create_unique(1, 8)?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// q.put(b"job")?;
    /// let mut buf = [0u8; 8];
    /// let mut get = std::pin::pin!(q.get_into_async(&mut buf));
    /// assert!(matches!(get.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(3))));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn get_into_async<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = Result<usize>> + 'a {
        self.get_with("get_into_async", move |raw| raw.try_get_into(buf))
    }

    #[cfg(not(loom))]
    pub(crate) fn get_with<'a, T>(
        &'a self,
        op: &'static str,
        mut take: impl FnMut(&RawQueue<'static>) -> Result<T> + 'a,
    ) -> impl Future<Output = Result<T>> + 'a {
        let mut w = Waiter::new();
        std::future::poll_fn(move |cx| {
            let attempt = |check_dead: bool| {
                if check_dead {
                    self.raw().get_ready(true);
                }
                match take(self.raw()) {
                    Err(Error::Empty { .. }) => None,
                    r => Some(r.or_named(self.at(op))),
                }
            };
            let n = self.raw().get_notify();
            poll_one(
                &mut w,
                cx,
                attempt,
                || (n.futex(), n.arm()),
                || self.raw().watch_targets(),
            )
        })
    }

    /// Sets how long this handle's blocking calls (`put`, `get`, the
    /// `_timeout` forms) spin before they sleep: [`Spin::Adaptive`] (the
    /// default), [`Spin::Never`], or [`Spin::UpTo`] a duration. Other
    /// handles, in this process or others, keep their own setting.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// q.set_spin(shmkit::Spin::Never);
    /// assert_eq!(q.spin(), shmkit::Spin::Never);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.raw().set_spin(spin);
    }

    /// This handle's spin setting (see [`set_spin`](Queue::set_spin)).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// assert_eq!(q.spin(), shmkit::Spin::Adaptive);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spin(&self) -> Spin {
        self.raw().spin()
    }

    /// "A message to get": for a [`WaitSet`](crate::WaitSet) or
    /// [`wait`](crate::wait). Ready when [`try_get`](Queue::try_get) would
    /// not say `Empty` (a message, or the queue closed). Passing `&queue`
    /// means the same.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(2, 8)?;
    /// assert!(!q.readable().is_ready());
    /// q.put(b"x")?;
    /// assert!(q.readable().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn readable(&self) -> Interest<'_> {
        Interest::new(Source::QueueGet(self.raw()))
    }

    /// "Room to put": for a [`WaitSet`](crate::WaitSet) or
    /// [`wait`](crate::wait). Ready when [`try_put`](Queue::try_put) would
    /// not say `Full` (room, or the queue closed).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 8)?;
    /// assert!(q.writable().is_ready());
    /// q.put(b"x")?;
    /// assert!(!q.writable().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn writable(&self) -> Interest<'_> {
        Interest::new(Source::QueuePut(self.raw()))
    }
}

#[cfg(feature = "serde")]
impl Queue {
    /// Puts any serialisable value (encoded with postcard 1, see the crate docs' wire format). Encoding happens
    /// before anything is reserved, so a value that fails to encode, or is
    /// too large, leaves the queue as it was.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// q.put_serde(&("job", 42u32))?;
    /// let (what, n): (String, u32) = q.get_serde()?;
    /// assert_eq!((what.as_str(), n), ("job", 42));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_serde<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.put(&crate::typed::encode(value)?)
            .or_named(self.at("put_serde"))
    }

    /// Takes the next message and decodes it, waiting as long as it takes.
    /// A message that does not decode is consumed and reported as
    /// [`Error::InvalidArgument`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// q.put_serde(&vec![1u8, 2, 3])?;
    /// assert_eq!(q.get_serde::<Vec<u8>>()?, [1, 2, 3]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        // Decoded from a private copy: bytes in shared memory may change
        // under a decoder while a hostile peer writes them.
        crate::typed::decode(&self.get().or_named(self.at("get_serde"))?)
    }

    /// [`get_serde`](Queue::get_serde) if a message is there now, else
    /// [`Error::Empty`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// assert!(matches!(q.try_get_serde::<u8>(), Err(shmkit::Error::Empty { .. })));
    /// q.try_put_serde(&1u8)?;
    /// assert_eq!(q.try_get_serde::<u8>()?, 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        crate::typed::decode(&self.try_get().or_named(self.at("try_get_serde"))?)
    }

    /// [`get_serde`](Queue::get_serde), waiting at most `timeout`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 64)?;
    /// let r = q.get_serde_timeout::<u8>(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_serde_timeout<T: serde::de::DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T> {
        crate::typed::decode(
            &self
                .get_timeout(timeout)
                .or_named(self.at("get_serde_timeout"))?,
        )
    }

    /// [`get_serde_timeout`](Queue::get_serde_timeout) until `deadline`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 64)?;
    /// let r = q.get_serde_deadline::<u8>(std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_serde_deadline<T: serde::de::DeserializeOwned>(
        &self,
        deadline: std::time::Instant,
    ) -> Result<T> {
        crate::typed::decode(
            &self
                .get_deadline(deadline)
                .or_named(self.at("get_serde_deadline"))?,
        )
    }

    /// [`put_serde`](Queue::put_serde) if there is room now, else
    /// [`Error::Full`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 64)?;
    /// q.try_put_serde("a")?;
    /// assert!(matches!(q.try_put_serde("b"), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put_serde<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.try_put(&crate::typed::encode(value)?)
            .or_named(self.at("try_put_serde"))
    }

    /// [`put_serde`](Queue::put_serde), waiting for room at most `timeout`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 64)?;
    /// q.put_serde("a")?;
    /// let r = q.put_serde_timeout("b", std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_serde_timeout<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> Result<()> {
        self.put_timeout(&crate::typed::encode(value)?, timeout)
            .or_named(self.at("put_serde_timeout"))
    }

    /// [`put_serde_timeout`](Queue::put_serde_timeout) until `deadline`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(1, 64)?;
    /// q.put_serde_deadline("x", std::time::Instant::now())?; // room now: no wait
    /// assert_eq!(q.get_serde::<String>()?, "x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_serde_deadline<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: std::time::Instant,
    ) -> Result<()> {
        self.put_deadline(&crate::typed::encode(value)?, deadline)
            .or_named(self.at("put_serde_deadline"))
    }
}

/// Waiting on a queue waits for a message: [`Queue::readable`].
impl Waitable for Queue {
    fn interest(&self) -> Interest<'_> {
        self.readable()
    }
}

/// The time left until `deadline` (zero once it has passed).
pub(crate) fn until(deadline: std::time::Instant) -> Duration {
    deadline.saturating_duration_since(std::time::Instant::now())
}
