//! The blocking, timed and non-blocking entry points (and their zero-copy
//! forms) over the claim paths.

use super::*;

impl<'a> RawQueue<'a> {
    /// Copies out the message of our claim and frees its slot. The bytes
    /// are copied into `out` before the slot is freed; if the claim turns
    /// out to have been taken from us meanwhile, they may be torn, and the
    /// call fails.
    pub(super) fn take(&self, c: Claim, len: usize, out: &mut [u8]) -> Result<usize> {
        let dst = out.get_mut(..len).ok_or(Error::BufferTooSmall {
            needed: len,
            origin: ORIGIN,
        })?;
        // SAFETY: we hold the READING claim on this slot: its producer
        // published it (Release/Acquire) and nobody writes it until we free
        // it; len <= max_message was checked under the claim.
        let src = unsafe { std::slice::from_raw_parts(self.data_at(c.slot), len) };
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
        let (claim, len, _) = self.claim_get_until(None, LONG, deadline)?;
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
    /// assert!(matches!(q.try_get_ref(), Err(shmkit::Error::Empty { .. })));
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
    /// assert!(matches!(q.put_timeout(b"b", Duration::from_millis(1)), Err(shmkit::Error::Timeout { .. })));
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
    /// assert!(matches!(q.get_timeout(Duration::from_millis(1)), Err(shmkit::Error::Timeout { .. })));
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
    /// assert!(matches!(q.try_get(), Err(shmkit::Error::Empty { .. })));
    /// q.try_put(b"")?;
    /// assert_eq!(q.try_get()?, b"");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get(&self) -> Result<Vec<u8>> {
        named_now(self.get_now(), RAW, &Name::None, "try_get", Error::empty)
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
        named_now(
            self.get_into_now(buf),
            RAW,
            &Name::None,
            "try_get_into",
            Error::empty,
        )
    }

    /// `try_get` for a handle: `Ok(None)` where `try_get` says `Empty`,
    /// so that the handle builds its named error once, where it is
    /// returned (`Named::now`). An error made here and named on the way up
    /// cost an empty queue's `try_get` half again as much.
    pub(crate) fn get_now(&self) -> Result<Option<Vec<u8>>> {
        match self.claim_get(None, 0, false)? {
            Try::Done((c, len, _)) => self.take_vec(c, len).map(Some),
            _ => Ok(None),
        }
    }

    /// `try_get_into` for a handle, as [`get_now`](RawQueue::get_now).
    pub(crate) fn get_into_now(&self, buf: &mut [u8]) -> Result<Option<usize>> {
        match self.claim_get(Some(buf.len()), 0, false)? {
            Try::Done((c, len, _)) => self.take(c, len, buf).map(Some),
            _ => Ok(None),
        }
    }

    pub(crate) fn get_until(&self, deadline: Option<Deadline>) -> Result<Vec<u8>> {
        let (c, len, _) = self.claim_get_until(None, 0, deadline)?;
        self.take_vec(c, len)
    }

    /// [`take`](RawQueue::take) into a new `Vec` of the message's length.
    fn take_vec(&self, c: Claim, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.take(c, len, &mut v)?;
        Ok(v)
    }

    pub(crate) fn get_into_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        let (c, len, _) = self.claim_get_until(Some(buf.len()), 0, deadline)?;
        self.take(c, len, buf)
    }
}
