//! Getting: claiming the message at the head and releasing its slot.

use super::*;

impl<'a> RawQueue<'a> {
    // ---- get ------------------------------------------------------------

    /// Claims the message at the head, or else one given back:
    /// `Done((claim, len, deliveries))` (deliveries: see
    /// [`claimed`](RawQueue::claimed)). `need` is
    /// checked against the length before claiming: a message longer than
    /// `need` is left in place ([`Error::BufferTooSmall`]).
    pub(super) fn claim_get(
        &self,
        need: Option<usize>,
        flags: u64,
        check_dead: bool,
    ) -> Result<Try<(Claim, usize, u32)>> {
        let r = self.claim_head(need, flags, check_dead);
        match r {
            Ok(Try::Empty) => match self.claim_back(need, flags, check_dead)? {
                Some(got) => Ok(Try::Done(got)),
                None => match self.empty_or_disconnected(check_dead) {
                    Err(Error::Disconnected { .. }) => {
                        self.nothing_given_back(need, flags, Error::Disconnected { origin: ORIGIN })
                    }
                    r => r,
                },
            },
            // Closed and drained at the head: a message given back (or a
            // dead holder's lease, looked for with liveness now) is still
            // to be delivered; a live lease may yet come back, so `Closed`
            // is said only once none is held.
            Err(Error::Closed { .. }) => match self.claim_back(need, flags, true)? {
                Some(got) => Ok(Try::Done(got)),
                None if self.lease_held() => Ok(Try::Empty),
                None => self.nothing_given_back(need, flags, Error::Closed { origin: ORIGIN }),
            },
            r => r,
        }
    }

    /// The verdict `end` (`Closed`, `Disconnected`) was reached after a
    /// scan found no lease held; a lease given back after `claim_back` had
    /// looked, but before that scan, is a message to get all the same.
    /// Looking again here finds it: giving back raises the `backs` hint
    /// before the state becomes `BACK`, and the scan saw that state (or
    /// the `leases` hint lowered after it).
    fn nothing_given_back(
        &self,
        need: Option<usize>,
        flags: u64,
        end: Error,
    ) -> Result<Try<(Claim, usize, u32)>> {
        match self.claim_back(need, flags, false)? {
            Some(got) => Ok(Try::Done(got)),
            None => Err(end),
        }
    }

    /// [`claim_get`](RawQueue::claim_get) at the head only. `flags`: 0 for
    /// a plain get, `LONG` for a zero-copy grant, `LONG | LEASE` for a
    /// lease.
    fn claim_head(
        &self,
        need: Option<usize>,
        flags: u64,
        check_dead: bool,
    ) -> Result<Try<(Claim, usize, u32)>> {
        let who = self.me()?;
        let ctl = self.ctl;
        let slots = self.slots as i64;
        let mut patience = Patience::default();
        let mut h = ctl.head.0.load(Ordering::Relaxed);
        for _ in 0..BUDGET {
            let slot = self.slot_of(h);
            let hdr = self.hdr_at(slot);
            // SYNC POINT: Acquire pairs with the producer's Release in `publish`.
            let s = hdr.state.load(Ordering::Acquire);
            let d = diff40(s, h);
            match (s & KIND, d) {
                (0, 1) if s == p40(h.wrapping_add(1)) => {
                    if !self.fits(hdr, s, need)? {
                        h = ctl.head.0.load(Ordering::Relaxed);
                        continue;
                    }
                    let mine = claim(READING | flags, who, h);
                    // SYNC POINT: AcqRel: whoever sees our claim also sees
                    // our participant entry's token (stored before).
                    if self.claim_slot(hdr, s, mine) {
                        let _ = ctl.head.0.compare_exchange(
                            h,
                            h.wrapping_add(1),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        let c = Claim {
                            pos: h,
                            slot,
                            word: mine,
                        };
                        // The length, read once under our claim, checked
                        // here and then used: a rewrite after the check
                        // above is caught, never trusted.
                        return self.claimed(c, need).map(|(len, n)| Try::Done((c, len, n)));
                    }
                }
                (0, 0) if s == p40(h) => {
                    if ctl.head.0.load(Ordering::Relaxed) == h {
                        let t = ctl.tail.0.load(Ordering::Acquire);
                        if t.wrapping_sub(h) as i64 > 0 && !patience.spent() {
                            // Position h was claimed and is being given back
                            // (an abandoned grant): wait for that to finish.
                            self.settle(hdr, s, &mut patience);
                        } else {
                            return self.empty_or_closed(h);
                        }
                    }
                }
                (WRITING, 0) => {
                    if self.claimant_dead(s, check_dead) {
                        self.recover_claim(hdr, s);
                    } else if ctl.head.0.load(Ordering::Relaxed) == h {
                        let t = ctl.tail.0.load(Ordering::Acquire);
                        let later = t.wrapping_sub(h) as i64 > 1;
                        if s & LONG == 0 && later && !patience.spent() {
                            // A plain put is copying its message in, and
                            // later positions may be ready already: its copy
                            // takes nanoseconds unless it is preempted.
                            self.settle(hdr, s, &mut patience);
                        } else {
                            // Being written by a live producer: not there yet.
                            return Ok(Try::Empty);
                        }
                    }
                }
                // The consumer of h - slots has not freed the slot yet, so
                // nothing can have been put at h.
                // The same for a message of h - slots given back (which
                // `claim_back` then takes).
                (READING | BACK, _) if d == -slots && ctl.head.0.load(Ordering::Relaxed) == h => {
                    return self.empty_or_closed(h);
                }
                // A skipped position, a claimed read, or a head a lap behind.
                _ => {
                    if !self.help_head(h, check_dead) {
                        sync::spin_loop();
                    }
                }
            }
            h = ctl.head.0.load(Ordering::Relaxed);
        }
        Err(self.no_progress("head", h))
    }

    pub(super) fn empty_or_closed<T>(&self, h: u64) -> Result<Try<T>> {
        if self.is_closed() && self.closed_and_drained(h) {
            Err(Error::Closed { origin: ORIGIN })
        } else {
            Ok(Try::Empty)
        }
    }

    /// After close: is there nothing left at or after `h`?
    pub(super) fn closed_and_drained(&self, h: u64) -> bool {
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        t.wrapping_sub(h) as i64 <= 0
    }

    /// Before claiming the message in `hdr` (state `s`) for a buffer of
    /// `need` bytes: `Ok(true)` if it fits (or there is no buffer),
    /// [`Error::BufferTooSmall`] if it is longer and still there (the state
    /// has not moved, so the length read is this message's), `Ok(false)` if
    /// it was longer but the state moved meanwhile (look again).
    pub(super) fn fits(&self, hdr: &SlotHdr, s: u64, need: Option<usize>) -> Result<bool> {
        let Some(cap) = need else {
            return Ok(true);
        };
        let len = hdr.len.load(Ordering::Relaxed) as usize;
        if len <= cap || len > self.max_message {
            // A length past the maximum is caught under the claim.
            return Ok(true);
        }
        if hdr.state.load(Ordering::Acquire) == s {
            return Err(Error::BufferTooSmall {
                needed: len,
                origin: ORIGIN,
            });
        }
        Ok(false)
    }

    /// CASes `hdr`'s state from `s` to our claim `mine`, raising the
    /// leases hint first for a lease (and lowering it again if the CAS
    /// fails).
    pub(super) fn claim_slot(&self, hdr: &SlotHdr, s: u64, mine: u64) -> bool {
        let lease = mine & LEASE != 0;
        if lease {
            self.ctl.lease.0.raise(LEASE_ONE);
        }
        // SYNC POINT: AcqRel: Acquire pairs with the producer's Release in
        // `publish` (or whoever gave the message back); whoever sees our
        // claim also sees our participant entry's token (stored before).
        let ok = hdr
            .state
            .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if !ok && lease {
            self.ctl.lease.0.lower(LEASE_ONE);
        }
        ok
    }

    /// After a claim `c` of a message: its length, read once under the
    /// claim, checked here and then used (a rewrite after the check before
    /// the claim is caught, never trusted). A lease also counts a delivery
    /// and returns the count (0 for other claims). A bad length gives the
    /// claim up and is `Corrupted`.
    pub(super) fn claimed(&self, c: Claim, need: Option<usize>) -> Result<(usize, u32)> {
        let hdr = self.hdr_at(c.slot);
        let len = hdr.len.load(Ordering::Relaxed) as usize;
        let fits = need.map_or(len <= self.max_message, |cap| len <= cap);
        if len > self.max_message || !fits {
            let _ = self.release(c);
            return Err(Error::corrupted(
                "",
                format!(
                    "message length {len} exceeds the maximum {} (or changed while it was \
                     being claimed)",
                    self.max_message
                ),
            ));
        }
        let mut n = 0;
        if c.word & LEASE != 0 {
            n = hdr.deliveries.load(Ordering::Relaxed).saturating_add(1);
            hdr.deliveries.store(n, Ordering::Relaxed);
        }
        Ok((len, n))
    }

    /// Frees the slot of our READING claim for the next lap (for a lease:
    /// acks it). Fails if the claim is no longer ours (someone took it for
    /// a dead one's).
    pub(super) fn release(&self, c: Claim) -> Result<()> {
        // SYNC POINT: Release pairs with the producer's Acquire in claim_put:
        // our reads of the message happen before its next write.
        let r = self.hdr_at(c.slot).state.compare_exchange(
            c.word,
            p40(c.pos.wrapping_add(self.slots)),
            Ordering::Release,
            Ordering::Relaxed,
        );
        if r.is_ok() && c.word & LEASE != 0 {
            self.ctl.lease.0.lower(LEASE_ONE);
            if self.is_closed() {
                // Gets that wait for the last lease after close may say
                // `Closed` now.
                self.ctl.not_empty.0.notify();
            }
        }
        self.ctl.not_full.0.notify();
        r.map(drop).map_err(|_| Self::claim_lost("get", c.pos))
    }

    pub(super) fn claim_get_until(
        &self,
        need: Option<usize>,
        flags: u64,
        deadline: Option<Deadline>,
    ) -> Result<(Claim, usize, u32)> {
        self.wait_for(
            deadline,
            &self.ctl.not_empty.0,
            || self.message_maybe(),
            |check_dead| self.claim_get(need, flags, check_dead),
        )
    }
}
