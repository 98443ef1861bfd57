//! The zero-copy grants: a place reserved for writing, a message held for
//! reading.

use super::*;

/// Room for one message, written in place; see [`Queue::reserve`](crate::Queue::reserve).
///
/// The bytes are the slot's own, in shared memory: this process holds the
/// slot's claim, so no process that follows the protocol reads or writes
/// them until the grant is committed or dropped. A hostile or buggy process
/// can still write them at any time; the grant then holds what it wrote,
/// never memory outside the slot.
pub struct PutGrant<'a> {
    pub(super) queue: &'a RawQueue<'a>,
    pub(super) claim: Claim,
    pub(super) len: usize,
    pub(super) done: bool,
}

impl PutGrant<'_> {
    /// Sends the message (all `len` bytes, as written).
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the claim was taken from this process (which
    /// only a peer that wrote over the queue, or a wrong liveness verdict,
    /// can do): the message is not sent.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut g = q.reserve(2)?;
    /// g[0] = 1;
    /// g[1] = 2;
    /// g.commit()?;
    /// assert_eq!(q.get()?, [1, 2]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.queue.publish(self.claim, self.len, |_| {})
    }

    /// Sends only the first `len` bytes (at most the reserved length).
    ///
    /// # Errors
    /// As for [`commit`](PutGrant::commit).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut g = q.reserve(16)?;
    /// g[..2].copy_from_slice(b"hi");
    /// g.commit_len(2)?;
    /// assert_eq!(q.get()?, b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn commit_len(mut self, len: usize) -> Result<()> {
        self.len = len.min(self.len);
        self.commit()
    }
}

impl Deref for PutGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the WRITING claim on the slot until commit or drop,
        // so no process that follows the protocol touches it; len <=
        // max_message (checked in reserve), the slot's size. A hostile
        // writer can change the bytes, not the bounds.
        unsafe { std::slice::from_raw_parts(self.queue.data_at(self.claim.slot), self.len) }
    }
}

impl DerefMut for PutGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.queue.data_at(self.claim.slot), self.len) }
    }
}

impl Drop for PutGrant<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.queue.abandon(self.claim);
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
///
/// The bytes are the slot's own, in shared memory. While the grant lives,
/// this process holds the slot's claim, so no process that follows the
/// protocol writes them. A hostile or buggy process can: the reader then
/// sees bytes that change under it (copy them out first if that matters),
/// never memory outside the slot, whose bounds were checked once, under the
/// claim.
pub struct GetGrant<'a> {
    pub(super) queue: &'a RawQueue<'a>,
    pub(super) claim: Claim,
    pub(super) len: usize,
}

impl Deref for GetGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the READING claim on the slot until drop; `len` is
        // what the claim returned, checked against max_message (the slot's
        // size) under the claim.
        unsafe { std::slice::from_raw_parts(self.queue.data_at(self.claim.slot), self.len) }
    }
}

impl Drop for GetGrant<'_> {
    fn drop(&mut self) {
        // A claim taken from us meanwhile is someone else's now: nothing to
        // free.
        let _ = self.queue.release(self.claim);
    }
}

impl fmt::Debug for GetGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetGrant").field("len", &self.len).finish()
    }
}
