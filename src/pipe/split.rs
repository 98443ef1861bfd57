//! A pipe end split into a sending half and a receiving half
//! ([`PipeEnd::split`]), and the iterator over received messages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::{PipeEnd, RecvRef, SendGrant};
use crate::error::{Error, OrNamed, Origin, Result};
use crate::raw::wait::Source;
use crate::raw::{RawPipe, Spin};
use crate::segment::Segment;
use crate::sync::Deadline;
use crate::waitset::{Interest, Waitable};

impl PipeEnd {
    /// Splits this end into a sending half and a receiving half that two
    /// threads can own, each with its own waiting state: a thread blocked
    /// in [`PipeReceiver::recv`] does not hold up the other's
    /// [`PipeSender::send`]. The end closes (the peer sees `Disconnected`)
    /// when both halves have dropped; the segment is removed then if this
    /// end would have removed it. A half of a one-way end that lacks the
    /// direction fails its calls as the end would
    /// ([`Error::InvalidArgument`]).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, mut rx) = a.split();
    /// let echo = std::thread::spawn(move || {
    ///     let m = b.recv().unwrap();
    ///     b.send(&m).unwrap();
    /// });
    /// let reader = std::thread::spawn(move || rx.recv());
    /// tx.send(b"ping")?;
    /// assert_eq!(reader.join().unwrap()?, b"ping");
    /// echo.join().unwrap();
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn split(self) -> (PipeSender, PipeReceiver) {
        let (raw, seg) = self.0.into_parts();
        let seg = Arc::new(seg);
        let (tx, rx) = raw.split();
        (
            PipeSender {
                raw: tx,
                seg: seg.clone(),
            },
            PipeReceiver { raw: rx, seg },
        )
    }

    /// The messages, each taken by a blocking [`recv`](PipeEnd::recv),
    /// until the peer is gone and nothing is left (see [`PipeIter`]).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// b.send(b"1")?;
    /// b.send(b"2")?;
    /// drop(b);
    /// assert_eq!(a.iter().count(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn iter(&mut self) -> PipeIter<'_> {
        let (raw, name) = self.named_mut().view_mut_and_name();
        PipeIter {
            raw,
            name,
            end: None,
        }
    }
}

impl<'a> IntoIterator for &'a mut PipeEnd {
    type Item = Vec<u8>;
    type IntoIter = PipeIter<'a>;

    fn into_iter(self) -> PipeIter<'a> {
        self.iter()
    }
}

/// The messages received on a pipe end, each by a blocking receive: from
/// [`PipeEnd::iter`], [`PipeReceiver::iter`] or `for m in &mut end`. It
/// ends when a receive fails: [`Error::Disconnected`] (the peer is gone and
/// nothing is left) is the normal end; [`error`](PipeIter::error) says why.
///
/// ```
/// let mut a = shmkit::Pipe::create_unique()?;
/// let mut b = shmkit::Pipe::open(a.name())?;
/// b.send(b"x")?;
/// drop(b);
/// let mut it = a.iter();
/// assert_eq!(it.next(), Some(b"x".to_vec()));
/// assert_eq!(it.next(), None);
/// assert!(matches!(it.error(), Some(shmkit::Error::Disconnected { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct PipeIter<'a> {
    raw: &'a mut RawPipe<'static>,
    name: &'a crate::error::Name,
    end: Option<Error>,
}

impl PipeIter<'_> {
    /// Why the iteration ended (`None` while it goes on).
    ///
    /// ```
    /// let mut a = shmkit::Pipe::create_unique()?;
    /// drop(shmkit::Pipe::open(a.name())?);
    /// let mut it = a.iter();
    /// assert!(it.next().is_none());
    /// assert!(it.error().is_some());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn error(&self) -> Option<&Error> {
        self.end.as_ref()
    }
}

impl Iterator for PipeIter<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.end.is_some() {
            return None;
        }
        match self.raw.recv_until(Deadline::NEVER) {
            Ok(m) => Some(m),
            Err(e) => {
                let mut e = e;
                e.set_origin("Pipe", self.name, "iter");
                self.end = Some(e);
                None
            }
        }
    }
}

/// Names the pipe in `seg` and operation `op` in an error (for `or_named`).
#[inline]
fn at<'a>(seg: &'a Segment, op: &'static str) -> impl FnOnce(&mut Error) + 'a {
    move |e| e.set_origin("Pipe", seg.origin_name(), op)
}

/// Maps a zero-timeout attempt's `Timeout` to the `try_` form's error.
pub(super) fn now_or<T>(r: Result<T>, not_now: fn(Origin) -> Error) -> Result<T> {
    match r {
        Err(Error::Timeout { origin }) => Err(not_now(origin)),
        r => r,
    }
}

/// The sending half of a split [`PipeEnd`] (see [`PipeEnd::split`]).
///
/// ```
/// let a = shmkit::Pipe::create_unique()?;
/// let mut b = shmkit::Pipe::open(a.name())?;
/// let (mut tx, _rx) = a.split();
/// tx.send(b"hi")?;
/// assert_eq!(b.recv()?, b"hi");
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct PipeSender {
    // Declared before `seg`: the half drops while the mapping lives.
    raw: RawPipe<'static>,
    seg: Arc<Segment>,
}

/// The receiving half of a split [`PipeEnd`] (see [`PipeEnd::split`]).
///
/// ```
/// let a = shmkit::Pipe::create_unique()?;
/// let mut b = shmkit::Pipe::open(a.name())?;
/// let (_tx, mut rx) = a.split();
/// b.send(b"hi")?;
/// assert_eq!(rx.recv()?, b"hi");
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct PipeReceiver {
    // Declared before `seg`, as in `PipeSender`.
    raw: RawPipe<'static>,
    seg: Arc<Segment>,
}

impl fmt::Debug for PipeSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeSender")
            .field("name", &self.seg.name())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PipeReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeReceiver")
            .field("name", &self.seg.name())
            .finish_non_exhaustive()
    }
}

/// What both halves have.
macro_rules! half_common {
    ($ty:ident, $pick:literal) => {
        impl $ty {
            /// The pipe's name.
            ///
            /// ```
            /// let a = shmkit::Pipe::create_unique()?;
            /// let name = a.name().to_owned();
            #[doc = $pick]
            /// assert_eq!(h.name(), name);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn name(&self) -> &str {
                self.seg.name()
            }

            /// Whether the other end is gone (dropped, or its process died).
            ///
            /// ```
            /// let a = shmkit::Pipe::create_unique()?;
            /// let b = shmkit::Pipe::open(a.name())?;
            #[doc = $pick]
            /// assert!(!h.is_disconnected());
            /// drop(b);
            /// assert!(h.is_disconnected());
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn is_disconnected(&self) -> bool {
                self.raw.is_disconnected()
            }

            /// The ring's capacity in bytes.
            ///
            /// ```
            /// let a = shmkit::Pipe::builder().capacity(4096).create_unique()?;
            #[doc = $pick]
            /// assert_eq!(h.capacity(), 4096);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn capacity(&self) -> usize {
                self.raw.capacity()
            }

            /// The largest message, in bytes.
            ///
            /// ```
            /// let a = shmkit::Pipe::builder().max_message(100).create_unique()?;
            #[doc = $pick]
            /// assert_eq!(h.max_message(), 100);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn max_message(&self) -> usize {
                self.raw.max_message()
            }

            /// Sets how long this half's blocking calls spin before they
            /// sleep (see [`PipeEnd::set_spin`]).
            ///
            /// ```
            /// let a = shmkit::Pipe::create_unique()?;
            #[doc = $pick]
            /// h.set_spin(shmkit::Spin::Never);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn set_spin(&self, spin: Spin) {
                self.raw.set_spin(spin)
            }
        }
    };
}

half_common!(PipeSender, "let (h, _rx) = a.split();");
half_common!(PipeReceiver, "let (_tx, h) = a.split();");

impl PipeSender {
    /// Sends a copy of `msg`, waiting for room as long as it takes (see
    /// [`PipeEnd::send`]).
    ///
    /// # Errors
    /// As [`PipeEnd::send`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.send(b"x")?;
    /// assert_eq!(b.recv()?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.raw
            .send_until(msg, Deadline::NEVER)
            .or_named(at(&self.seg, "send"))
    }

    /// Sends, waiting for room at most `timeout` (see
    /// [`PipeEnd::send_timeout`]).
    ///
    /// # Errors
    /// As [`send`](PipeSender::send), and [`Error::Timeout`].
    ///
    /// ```
    /// let a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.send(&[0; 40])?;
    /// let r = tx.send_timeout(&[0; 40], std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.raw
            .send_until(msg, Deadline::after(timeout))
            .or_named(at(&self.seg, "send_timeout"))
    }

    /// [`send_timeout`](PipeSender::send_timeout) until `deadline` (a
    /// deadline already past tries once).
    ///
    /// # Errors
    /// As [`send_timeout`](PipeSender::send_timeout).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.send_deadline(b"x", std::time::Instant::now())?; // room now: no wait
    /// assert_eq!(b.recv()?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_deadline(&mut self, msg: &[u8], deadline: std::time::Instant) -> Result<()> {
        self.send_timeout(msg, crate::queue::until(deadline))
            .or_named(at(&self.seg, "send_deadline"))
    }

    /// Sends if the ring has room now, else [`Error::Full`] (see
    /// [`PipeEnd::try_send`]).
    ///
    /// # Errors
    /// As [`send`](PipeSender::send), and `Full`.
    ///
    /// ```
    /// let a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.try_send(&[0; 40])?;
    /// assert!(matches!(tx.try_send(&[0; 40]), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        now_or(
            self.raw
                .send_until(msg, Deadline::after(Duration::ZERO))
                .map(|()| 0),
            |origin| Error::Full { origin },
        )
        .map(drop)
        .or_named(at(&self.seg, "try_send"))
    }

    /// Sends the bytes of a plain-data value.
    ///
    /// # Errors
    /// As [`send`](PipeSender::send).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.send_value(&7u32)?;
    /// assert_eq!(b.recv_value::<u32>()?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_value<T: Pod>(&mut self, value: &T) -> Result<()> {
        self.send(bytemuck::bytes_of(value))
            .or_named(at(&self.seg, "send_value"))
    }

    /// [`send_value`](PipeSender::send_value) if the ring has room now,
    /// else `Full`.
    ///
    /// # Errors
    /// As [`try_send`](PipeSender::try_send).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.try_send_value(&7u32)?;
    /// assert_eq!(b.recv_value::<u32>()?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_send_value<T: Pod>(&mut self, value: &T) -> Result<()> {
        self.try_send(bytemuck::bytes_of(value))
            .or_named(at(&self.seg, "try_send_value"))
    }

    /// [`send_value`](PipeSender::send_value) waiting for room at most
    /// `timeout`.
    ///
    /// # Errors
    /// As [`send_timeout`](PipeSender::send_timeout).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.send_value_timeout(&7u32, std::time::Duration::from_millis(1))?;
    /// assert_eq!(b.recv_value::<u32>()?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_value_timeout<T: Pod>(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.send_timeout(bytemuck::bytes_of(value), timeout)
            .or_named(at(&self.seg, "send_value_timeout"))
    }

    /// [`send_value`](PipeSender::send_value) waiting for room until
    /// `deadline`.
    ///
    /// # Errors
    /// As [`send_deadline`](PipeSender::send_deadline).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.send_value_deadline(&7u32, std::time::Instant::now())?; // room now
    /// assert_eq!(b.recv_value::<u32>()?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn send_value_deadline<T: Pod>(
        &mut self,
        value: &T,
        deadline: std::time::Instant,
    ) -> Result<()> {
        self.send_deadline(bytemuck::bytes_of(value), deadline)
            .or_named(at(&self.seg, "send_value_deadline"))
    }

    /// Reserves room for a message of `len` bytes, written in place,
    /// waiting for room as long as it takes (see [`PipeEnd::reserve`]).
    ///
    /// # Errors
    /// As [`PipeEnd::reserve`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// let mut g = tx.reserve(3)?;
    /// g.copy_from_slice(b"abc");
    /// g.commit();
    /// assert_eq!(b.recv()?, b"abc");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<SendGrant<'_>> {
        self.raw
            .reserve_grant(len, Deadline::NEVER)
            .map(SendGrant)
            .or_named(at(&self.seg, "reserve"))
    }

    /// [`reserve`](PipeSender::reserve) if the ring has room now, else
    /// [`Error::Full`].
    ///
    /// # Errors
    /// As [`reserve`](PipeSender::reserve), and `Full`.
    ///
    /// ```
    /// let a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.try_reserve(40)?.commit();
    /// assert!(matches!(tx.try_reserve(40), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_reserve(&mut self, len: usize) -> Result<SendGrant<'_>> {
        now_or(
            self.raw.reserve_grant(len, Deadline::after(Duration::ZERO)),
            |origin| Error::Full { origin },
        )
        .map(SendGrant)
        .or_named(at(&self.seg, "try_reserve"))
    }

    /// [`reserve`](PipeSender::reserve), waiting for room at most
    /// `timeout` ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`reserve`](PipeSender::reserve), and `Timeout`.
    ///
    /// ```
    /// let a = shmkit::Pipe::builder().capacity(64).create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.reserve(40)?.commit();
    /// let r = tx.reserve_timeout(40, std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<SendGrant<'_>> {
        self.raw
            .reserve_grant(len, Deadline::after(timeout))
            .map(SendGrant)
            .or_named(at(&self.seg, "reserve_timeout"))
    }

    /// [`reserve_timeout`](PipeSender::reserve_timeout) until `deadline`
    /// (a deadline already past tries once).
    ///
    /// # Errors
    /// As [`reserve_timeout`](PipeSender::reserve_timeout).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (mut tx, _rx) = a.split();
    /// tx.reserve_deadline(0, std::time::Instant::now())?.commit(); // room now: no wait
    /// assert_eq!(b.recv()?, b"");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_deadline(
        &mut self,
        len: usize,
        deadline: std::time::Instant,
    ) -> Result<SendGrant<'_>> {
        self.raw
            .reserve_grant(len, Deadline::after(crate::queue::until(deadline)))
            .map(SendGrant)
            .or_named(at(&self.seg, "reserve_deadline"))
    }

    /// "Room to send a message of `len` bytes" (see
    /// [`PipeEnd::writable`]).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (tx, _rx) = a.split();
    /// assert!(tx.writable(10).is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn writable(&self, len: usize) -> Interest<'_> {
        Interest::new(Source::PipeSend(&self.raw, len))
    }
}

impl PipeReceiver {
    /// Receives the next message, waiting as long as it takes (see
    /// [`PipeEnd::recv`]).
    ///
    /// # Errors
    /// As [`PipeEnd::recv`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send(b"x")?;
    /// assert_eq!(rx.recv()?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.raw
            .recv_until(Deadline::NEVER)
            .or_named(at(&self.seg, "recv"))
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv`](PipeReceiver::recv), and [`Error::Timeout`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// let r = rx.recv_timeout(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.raw
            .recv_until(Deadline::after(timeout))
            .or_named(at(&self.seg, "recv_timeout"))
    }

    /// [`recv_timeout`](PipeReceiver::recv_timeout) until `deadline`.
    ///
    /// # Errors
    /// As [`recv_timeout`](PipeReceiver::recv_timeout).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// let r = rx.recv_deadline(std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_deadline(&mut self, deadline: std::time::Instant) -> Result<Vec<u8>> {
        self.recv_timeout(crate::queue::until(deadline))
            .or_named(at(&self.seg, "recv_deadline"))
    }

    /// Receives if a message is there now, else [`Error::Empty`].
    ///
    /// # Errors
    /// As [`recv`](PipeReceiver::recv), and `Empty`.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// assert!(matches!(rx.try_recv(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        match self.raw.recv_until(Deadline::after(Duration::ZERO)) {
            Err(Error::Timeout { origin }) => Err(Error::Empty { origin }),
            r => r,
        }
        .or_named(at(&self.seg, "try_recv"))
    }

    /// Receives into `buf` (see [`PipeEnd::recv_into`]).
    ///
    /// # Errors
    /// As [`PipeEnd::recv_into`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send(b"abc")?;
    /// let mut buf = [0; 8];
    /// assert_eq!(rx.recv_into(&mut buf)?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.raw
            .recv_into_until(buf, Deadline::NEVER)
            .or_named(at(&self.seg, "recv_into"))
    }

    /// [`recv_into`](PipeReceiver::recv_into), waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`recv_into`](PipeReceiver::recv_into), and `Timeout`.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// let r = rx.recv_into_timeout(&mut [0; 8], std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.raw
            .recv_into_until(buf, Deadline::after(timeout))
            .or_named(at(&self.seg, "recv_into_timeout"))
    }

    /// [`recv_into_timeout`](PipeReceiver::recv_into_timeout) until
    /// `deadline`.
    ///
    /// # Errors
    /// As [`recv_into_timeout`](PipeReceiver::recv_into_timeout).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send(b"abc")?;
    /// assert_eq!(rx.recv_into_deadline(&mut [0; 8], std::time::Instant::now())?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_into_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: std::time::Instant,
    ) -> Result<usize> {
        self.recv_into_timeout(buf, crate::queue::until(deadline))
            .or_named(at(&self.seg, "recv_into_deadline"))
    }

    /// [`recv_into`](PipeReceiver::recv_into) if a message is there now.
    ///
    /// # Errors
    /// As [`recv_into`](PipeReceiver::recv_into), and `Empty`.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// assert!(matches!(rx.try_recv_into(&mut [0; 8]), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        now_or(
            self.raw
                .recv_into_until(buf, Deadline::after(Duration::ZERO)),
            |origin| Error::Empty { origin },
        )
        .or_named(at(&self.seg, "try_recv_into"))
    }

    /// Receives the next message as a plain-data value (see
    /// [`PipeEnd::recv_value`]).
    ///
    /// # Errors
    /// As [`PipeEnd::recv_value`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send_value(&3u16)?;
    /// assert_eq!(rx.recv_value::<u16>()?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_value<T: Pod>(&mut self) -> Result<T> {
        crate::typed::take(
            &mut self.raw,
            |r, b| r.recv_into_until(b, Deadline::NEVER),
            |r| r.recv_until(Deadline::NEVER),
        )
        .or_named(at(&self.seg, "recv_value"))
    }

    /// [`recv_value`](PipeReceiver::recv_value) if a message is there now,
    /// else `Empty`.
    ///
    /// # Errors
    /// As [`PipeEnd::try_recv_value`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// assert!(matches!(rx.try_recv_value::<u16>(), Err(shmkit::Error::Empty { .. })));
    /// b.send_value(&3u16)?;
    /// assert_eq!(rx.try_recv_value::<u16>()?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_value<T: Pod>(&mut self) -> Result<T> {
        crate::typed::take(self, |r, b| r.try_recv_into(b), |r| r.try_recv())
            .or_named(at(&self.seg, "try_recv_value"))
    }

    /// [`recv_value`](PipeReceiver::recv_value) waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`PipeEnd::recv_value_timeout`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// let r = rx.recv_value_timeout::<u16>(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_value_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T> {
        crate::typed::take(
            self,
            |r, b| r.recv_into_timeout(b, timeout),
            |r| r.recv_timeout(timeout),
        )
        .or_named(at(&self.seg, "recv_value_timeout"))
    }

    /// [`recv_value`](PipeReceiver::recv_value) waiting until `deadline`.
    ///
    /// # Errors
    /// As [`PipeEnd::recv_value_deadline`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send_value(&3u16)?;
    /// assert_eq!(rx.recv_value_deadline::<u16>(std::time::Instant::now())?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_value_deadline<T: Pod>(&mut self, deadline: std::time::Instant) -> Result<T> {
        crate::typed::take(
            self,
            |r, b| r.recv_into_deadline(b, deadline),
            |r| r.recv_deadline(deadline),
        )
        .or_named(at(&self.seg, "recv_value_deadline"))
    }

    /// Receives the next message in place, waiting as long as it takes
    /// (see [`PipeEnd::recv_ref`]); consumed when the returned value drops.
    ///
    /// # Errors
    /// As [`PipeEnd::recv`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send(b"look")?;
    /// assert_eq!(&*rx.recv_ref()?, b"look");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_ref(&mut self) -> Result<RecvRef<'_>> {
        self.raw
            .recv_ref_grant(Deadline::NEVER)
            .map(RecvRef)
            .or_named(at(&self.seg, "recv_ref"))
    }

    /// [`recv_ref`](PipeReceiver::recv_ref) if a message is there now,
    /// else [`Error::Empty`].
    ///
    /// # Errors
    /// As [`recv_ref`](PipeReceiver::recv_ref), and `Empty`.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// assert!(matches!(rx.try_recv_ref(), Err(shmkit::Error::Empty { .. })));
    /// b.send(b"x")?;
    /// assert_eq!(&*rx.try_recv_ref()?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv_ref(&mut self) -> Result<RecvRef<'_>> {
        now_or(
            self.raw.recv_ref_grant(Deadline::after(Duration::ZERO)),
            |origin| Error::Empty { origin },
        )
        .map(RecvRef)
        .or_named(at(&self.seg, "try_recv_ref"))
    }

    /// [`recv_ref`](PipeReceiver::recv_ref), waiting at most `timeout`
    /// ([`Error::Timeout`], never earlier).
    ///
    /// # Errors
    /// As [`recv_ref`](PipeReceiver::recv_ref), and `Timeout`.
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let _b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// let r = rx.recv_ref_timeout(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvRef<'_>> {
        self.raw
            .recv_ref_grant(Deadline::after(timeout))
            .map(RecvRef)
            .or_named(at(&self.seg, "recv_ref_timeout"))
    }

    /// [`recv_ref_timeout`](PipeReceiver::recv_ref_timeout) until
    /// `deadline`.
    ///
    /// # Errors
    /// As [`recv_ref_timeout`](PipeReceiver::recv_ref_timeout).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send(b"x")?;
    /// assert_eq!(&*rx.recv_ref_deadline(std::time::Instant::now())?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recv_ref_deadline(&mut self, deadline: std::time::Instant) -> Result<RecvRef<'_>> {
        self.raw
            .recv_ref_grant(Deadline::after(crate::queue::until(deadline)))
            .map(RecvRef)
            .or_named(at(&self.seg, "recv_ref_deadline"))
    }

    /// Waits up to `timeout` for a message to be readable (see
    /// [`PipeEnd::poll`]).
    ///
    /// # Errors
    /// As [`PipeEnd::poll`].
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// assert!(!rx.poll(std::time::Duration::ZERO)?);
    /// b.send(b"")?;
    /// assert!(rx.poll(std::time::Duration::ZERO)?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Duration) -> Result<bool> {
        self.raw
            .poll_until(Deadline::after(timeout))
            .or_named(at(&self.seg, "poll"))
    }

    /// [`poll`](PipeReceiver::poll) until `deadline`: `Ok(false)` once it has
    /// passed (never earlier) with nothing readable.
    ///
    /// # Errors
    /// As [`poll`](PipeReceiver::poll).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// assert!(!rx.poll_deadline(std::time::Instant::now())?);
    /// b.send(b"x")?;
    /// assert!(rx.poll_deadline(std::time::Instant::now())?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn poll_deadline(&mut self, deadline: std::time::Instant) -> Result<bool> {
        self.poll(crate::queue::until(deadline))
            .or_named(at(&self.seg, "poll_deadline"))
    }

    /// The messages, each by a blocking receive (see [`PipeIter`]).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, mut rx) = a.split();
    /// b.send(b"1")?;
    /// drop(b);
    /// assert_eq!(rx.iter().count(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn iter(&mut self) -> PipeIter<'_> {
        PipeIter {
            raw: &mut self.raw,
            name: self.seg.origin_name(),
            end: None,
        }
    }

    /// "A message to receive" (see [`PipeEnd::readable`]).
    ///
    /// ```
    /// let a = shmkit::Pipe::create_unique()?;
    /// let mut b = shmkit::Pipe::open(a.name())?;
    /// let (_tx, rx) = a.split();
    /// assert!(!rx.readable().is_ready());
    /// b.send(b"x")?;
    /// assert!(rx.readable().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn readable(&self) -> Interest<'_> {
        Interest::new(Source::PipeRecv(&self.raw))
    }
}

impl<'a> IntoIterator for &'a mut PipeReceiver {
    type Item = Vec<u8>;
    type IntoIter = PipeIter<'a>;

    fn into_iter(self) -> PipeIter<'a> {
        self.iter()
    }
}

/// Waiting on a receiving half waits for a message.
impl Waitable for PipeReceiver {
    fn interest(&self) -> Interest<'_> {
        self.readable()
    }
}
