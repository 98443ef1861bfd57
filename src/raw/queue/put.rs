//! Putting: claiming a place at the tail, publishing or abandoning it.

use super::*;

impl<'a> RawQueue<'a> {
    // ---- put ------------------------------------------------------------

    /// Claims the slot for the next position, or says why not. `long`
    /// marks a zero-copy grant.
    pub(super) fn claim_put(&self, long: bool, check_dead: bool) -> Result<Try<Claim>> {
        // One load for closing and disconnect (see `links`): 0 on a queue
        // that is neither closed nor has dedicated roles.
        let c = self.ctl.closed.load(Ordering::Acquire);
        if c != 0 {
            self.put_gate(c, check_dead)?;
        }
        let who = self.me()?;
        let ctl = self.ctl;
        let slots = self.slots as i64;
        let mut patience = Patience::default();
        let mut t = ctl.tail.0.load(Ordering::Relaxed);
        for _ in 0..BUDGET {
            if t.wrapping_sub(self.seen_head.get()) >= self.capacity {
                let h = ctl.head.0.load(Ordering::Acquire);
                self.seen_head.set(h);
                if !self.room_by_count(h, t) {
                    // Full by count, unless the head is held up by what
                    // needs no consumer (a skipped or dead put).
                    if !self.help_head(h, check_dead) {
                        let t2 = ctl.tail.0.load(Ordering::Relaxed);
                        if t2 == t {
                            return Ok(Try::Full);
                        }
                    }
                    t = ctl.tail.0.load(Ordering::Relaxed);
                    continue;
                }
            }
            let slot = self.slot_of(t);
            let hdr = self.hdr_at(slot);
            // SYNC POINT: Acquire pairs with the consumer's Release that freed
            // the slot, so its reads of the old message are done.
            let s = hdr.state.load(Ordering::Acquire);
            let d = diff40(s, t);
            let kind = s & KIND;
            match (kind, d) {
                (0, 0) if s == p40(t) => {
                    let mine = claim(WRITING | if long { LONG } else { 0 }, who, t);
                    // SYNC POINT: AcqRel: whoever sees our claim also sees
                    // our participant entry's token (stored before).
                    if hdr
                        .state
                        .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.help_tail(t);
                        return Ok(Try::Done(Claim {
                            pos: t,
                            slot,
                            word: mine,
                        }));
                    }
                }
                // Position t is taken (claimed, written, skipped, or read
                // and freed already): help the tail on.
                (0, _) if d == 1 || d == slots || d == slots + 1 => self.help_tail(t),
                (k, _) if k != 0 && (d == 0 || d == slots) => self.help_tail(t),
                // The message of t - slots is still there: full.
                (0, _) if d == 1 - slots => {
                    if ctl.tail.0.load(Ordering::Relaxed) == t {
                        return Ok(Try::Full);
                    }
                }
                // Position t - slots was abandoned: it is at the head; step
                // over it as a consumer would.
                (SKIP, _) if d == -slots => self.step_over(t.wrapping_sub(self.slots), s),
                // The message of t - slots was leased and given back: it is
                // put again, in place, as position t's; ours goes after it.
                (BACK, _) if d == -slots => self.redeliver_at(hdr, s, t),
                (READING, _) if d == -slots => {
                    if self.claimant_dead(s, check_dead) {
                        // The reader of t - slots died: free the slot for t.
                        self.recover_claim(hdr, s);
                    } else if s & LONG == 0 && !patience.spent() {
                        // A plain get is copying the old message out: it
                        // takes nanoseconds unless its thread is preempted.
                        self.settle(hdr, s, &mut patience);
                    } else if ctl.tail.0.load(Ordering::Relaxed) == t {
                        return Ok(Try::Full);
                    }
                }
                // The put of t - slots is at the head: the queue is full.
                (WRITING, _) if d == -slots => {
                    if self.claimant_dead(s, check_dead) {
                        self.recover_claim(hdr, s);
                    } else if ctl.tail.0.load(Ordering::Relaxed) == t {
                        return Ok(Try::Full);
                    }
                }
                _ => sync::spin_loop(),
            }
            t = ctl.tail.0.load(Ordering::Relaxed);
        }
        Err(self.no_progress("tail", t))
    }

    /// Moves the tail past position `t` if it is still there.
    #[inline]
    pub(super) fn help_tail(&self, t: u64) {
        let _ = self.ctl.tail.0.compare_exchange(
            t,
            t.wrapping_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Writes `len` bytes via `fill` into the claimed slot and publishes it.
    /// Fails (and nothing is published) if the claim is no longer ours.
    pub(super) fn publish(&self, c: Claim, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<()> {
        let hdr = self.hdr_at(c.slot);
        // SAFETY: we hold the WRITING claim on this slot: no one else reads
        // or writes its data until we publish; len <= max_message, checked
        // by the caller, and the slot has max_message data bytes.
        fill(unsafe { std::slice::from_raw_parts_mut(self.data_at(c.slot), len) });
        hdr.len.store(len as u32, Ordering::Relaxed);
        hdr.deliveries.store(0, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the consumer's Acquire load of state.
        let r = hdr.state.compare_exchange(
            c.word,
            p40(c.pos.wrapping_add(1)),
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.ctl.not_empty.0.notify();
        r.map(drop).map_err(|_| Self::claim_lost("put", c.pos))
    }

    /// Gives the claimed slot up without a message. If no later position
    /// was claimed, the position itself is given back (the tail moves back
    /// over it, and the room is free at once); otherwise it becomes `SKIP`,
    /// which the head steps over.
    pub(super) fn abandon(&self, c: Claim) {
        let hdr = self.hdr_at(c.slot);
        let free = p40(c.pos);
        if hdr
            .state
            .compare_exchange(c.word, free, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // Not ours any more: someone recovered it.
            return;
        }
        let back = self.ctl.tail.0.compare_exchange(
            c.pos.wrapping_add(1),
            c.pos,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        if back.is_err() {
            // A later position is claimed: leave a hole for the head to step
            // over. The CAS fails only if a producer took position `pos`
            // again in the meantime, which fills the hole.
            self.hole_coming();
            if hdr
                .state
                .compare_exchange(free, SKIP | free, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                self.hole_gone();
            } else {
                let h = self.ctl.head.0.load(Ordering::Acquire);
                if h == c.pos {
                    self.step_over(h, SKIP | free);
                }
                self.ctl.not_empty.0.notify();
            }
        }
        self.ctl.not_full.0.notify();
    }

    pub(super) fn check_len(&self, len: usize) -> Result<()> {
        if len > self.max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_message,
                origin: ORIGIN,
            });
        }
        Ok(())
    }

    /// Puts a copy of `msg` if there is room now.
    ///
    /// Like every `try_` call, it waits (for at most about 2 ms) for a get
    /// that is copying out the message of the slot it needs, so it says
    /// [`Error::Full`] only when the queue holds `capacity` positions, or
    /// when that get is stuck (its thread preempted, or a zero-copy
    /// [`GetGrant`] held open).
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::Closed`], [`Error::MessageTooLarge`] (and
    /// nothing is put), [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 1, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"one")?;
    /// assert!(matches!(q.try_put(b"two"), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put(&self, msg: &[u8]) -> Result<()> {
        named_now(self.put_now(msg), RAW, &Name::None, "try_put", Error::full)
    }

    /// `try_put` for a handle: `Ok(None)` where `try_put` says `Full` (see
    /// [`get_now`](RawQueue::get_now)).
    pub(crate) fn put_now(&self, msg: &[u8]) -> Result<Option<()>> {
        self.put_with(msg, || {
            Ok(match self.claim_put(false, false)? {
                Try::Done(c) => Some(c),
                _ => None,
            })
        })
    }

    /// Puts a copy of `msg`, waiting for room until `deadline` (`None`:
    /// only try once; `Some(Deadline::NEVER)`: as long as it takes).
    pub(crate) fn put_until(&self, msg: &[u8], deadline: Option<Deadline>) -> Result<()> {
        self.put_with(msg, || self.claim_put_until(false, deadline).map(Some))
            .map(drop)
    }

    /// Puts a copy of `msg` at the position `claim` gets (`None`: no room
    /// now, and nothing is put). A claim taken from us by a mistaken
    /// recovery is retried at a new position (the message is still ours to
    /// copy); a few such losses in a row mean someone keeps writing over
    /// our claims.
    fn put_with(
        &self,
        msg: &[u8],
        mut claim: impl FnMut() -> Result<Option<Claim>>,
    ) -> Result<Option<()>> {
        self.check_len(msg.len())?;
        let mut attempt = 1;
        loop {
            let Some(c) = claim()? else {
                return Ok(None);
            };
            match self.publish(c, msg.len(), |buf| buf.copy_from_slice(msg)) {
                Ok(()) => return Ok(Some(())),
                Err(e) if attempt == 3 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }

    pub(super) fn claim_put_until(&self, long: bool, deadline: Option<Deadline>) -> Result<Claim> {
        self.wait_for(
            deadline,
            &self.ctl.not_full.0,
            || self.room_maybe(),
            |check_dead| self.claim_put(long, check_dead),
        )
    }

    /// A cheap look: might a put succeed now (or should a sleeper wake)?
    /// Not while the slot at the tail still holds, or is being read or
    /// written for, the previous lap, or the count is full and the head
    /// holds nothing to step over: their owners notify when they are done
    /// (or are found dead at the next liveness check).
    pub(super) fn room_maybe(&self) -> bool {
        if self.is_closed() || self.check_pending(RECV) {
            return true;
        }
        let t = self.ctl.tail.0.load(Ordering::Relaxed);
        let h = self.ctl.head.0.load(Ordering::Acquire);
        if !self.room_by_count(h, t) {
            return self.hdr(h).state.load(Ordering::Acquire) & KIND == SKIP;
        }
        let s = self.hdr(t).state.load(Ordering::Acquire);
        let d = diff40(s, t);
        let busy = match s & KIND {
            0 => d == 1 - self.slots as i64,
            SKIP | BACK => false,
            _ => d == -(self.slots as i64),
        };
        !busy
    }
}
