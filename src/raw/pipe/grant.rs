//! The zero-copy views: room reserved for writing, a message held for
//! reading.

use super::*;

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
    pub(super) end: &'g mut RawPipe<'a>,
    pub(super) pos: u64,
    pub(super) len: usize,
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
    pub(super) inner: RefInner<'g, 'a>,
}

pub(super) enum RefInner<'g, 'a> {
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
