//! Sending: copying in (streamed when larger than the ring) and the
//! zero-copy reservation.

use super::*;

impl<'a> RawPipe<'a> {
    // ---- send -----------------------------------------------------------

    pub(super) fn tx(&mut self) -> Result<&mut Tx<'a>> {
        self.tx
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("this pipe end is receive-only".into()))
    }

    pub(super) fn check_send(&mut self, len: usize) -> Result<()> {
        self.check_owned()?;
        if len > self.max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_message,
                origin: ORIGIN,
            });
        }
        self.tx()?;
        if self.peer.gone(false) {
            return Err(Error::Disconnected { origin: ORIGIN });
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
}

/// Waits until the ring has `want` free bytes (deadline permitting).
pub(super) fn room(
    peer: &mut Peer<'_>,
    tx: &mut Tx<'_>,
    want: u64,
    deadline: Deadline,
) -> Result<()> {
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
