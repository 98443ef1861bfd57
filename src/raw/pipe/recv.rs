//! Receiving: into a buffer, a `Vec`, or in place.

use super::*;

impl<'a> RawPipe<'a> {
    // ---- receive --------------------------------------------------------

    pub(super) fn check_recv(&self) -> Result<()> {
        self.check_owned()?;
        if self.rx.is_none() {
            return Err(Error::InvalidArgument("this pipe end is send-only".into()));
        }
        Ok(())
    }

    /// Waits for the next whole message; checks its length, read once,
    /// against `need` (the caller's buffer) before anything is consumed.
    pub(super) fn complete_until(
        &mut self,
        need: Option<usize>,
        deadline: Deadline,
    ) -> Result<usize> {
        self.check_recv()?;
        let rx = self.rx.as_mut().expect("check_recv checked");
        let step = move |rx: &mut Rx<'_>| -> Result<Option<usize>> {
            let Some(len) = rx.peek_len()? else {
                return Ok(None);
            };
            if let Some(cap) = need {
                if len > cap {
                    return Err(Error::BufferTooSmall {
                        needed: len,
                        origin: ORIGIN,
                    });
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
            Err(Error::Timeout { .. }) => Ok(false),
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
    /// assert!(matches!(a.send_timeout(&[2; 40], Duration::ZERO), Err(shmkit::Error::Timeout { .. })));
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
    /// assert!(matches!(b.recv_timeout(Duration::ZERO), Err(shmkit::Error::Timeout { .. })));
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
    /// assert!(matches!(b.recv_into_timeout(&mut small, Duration::ZERO), Err(shmkit::Error::BufferTooSmall { needed: 5, .. })));
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
    /// assert!(matches!(b.recv_ref_timeout(Duration::ZERO), Err(shmkit::Error::Timeout { .. })));
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
    /// the peer's liveness (`/proc`) on every call.
    ///
    /// ```
    /// # use shmkit::raw::{Direction, PipeLayout, RawPipe};
    /// # let layout = PipeLayout { capacity: 64, max_message: 64, direction: Direction::Duplex };
    /// # let seg = shmkit::Segment::create_unique(RawPipe::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both ends and is used only through them.
    /// # let a = unsafe { RawPipe::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// # // SAFETY: as above.
    /// let b = unsafe { RawPipe::attach(seg.as_ptr(), seg.len())? };
    /// assert!(!a.is_disconnected());
    /// drop(b);
    /// assert!(a.is_disconnected());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.peer.gone_now()
    }
}
