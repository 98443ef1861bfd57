//! Getting: claiming the message at the head and releasing its slot.

use super::*;

impl<'a> RawQueue<'a> {
    // ---- get ------------------------------------------------------------

    /// Claims the message at the head: `Done((claim, len))`. `need` is
    /// checked against the length before claiming: a message longer than
    /// `need` is left in place ([`Error::BufferTooSmall`]).
    pub(super) fn claim_get(
        &self,
        need: Option<usize>,
        long: bool,
        check_dead: bool,
    ) -> Result<Try<(Claim, usize)>> {
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
                    if let Some(cap) = need {
                        let len = hdr.len.load(Ordering::Relaxed) as usize;
                        if len > cap && len <= self.max_message {
                            // Make sure `len` is this message's: the state
                            // has not moved since we read it.
                            if hdr.state.load(Ordering::Acquire) == s {
                                return Err(Error::BufferTooSmall { needed: len });
                            }
                            h = ctl.head.0.load(Ordering::Relaxed);
                            continue;
                        }
                    }
                    let mine = claim(READING | if long { LONG } else { 0 }, who, h);
                    // SYNC POINT: AcqRel: whoever sees our claim also sees
                    // our participant entry's token (stored before).
                    if hdr
                        .state
                        .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
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
                        let len = hdr.len.load(Ordering::Relaxed) as usize;
                        let fits = need.map_or(len <= self.max_message, |cap| len <= cap);
                        if len > self.max_message || !fits {
                            let _ = self.release(c);
                            return Err(Error::corrupted(
                                "",
                                format!(
                                    "message length {len} exceeds the maximum {} (or changed \
                                     while it was being claimed)",
                                    self.max_message
                                ),
                            ));
                        }
                        return Ok(Try::Done((c, len)));
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
                (READING, _) if d == -slots && ctl.head.0.load(Ordering::Relaxed) == h => {
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
            Err(Error::Closed)
        } else {
            Ok(Try::Empty)
        }
    }

    /// After close: is there nothing left at or after `h`?
    pub(super) fn closed_and_drained(&self, h: u64) -> bool {
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        t.wrapping_sub(h) as i64 <= 0
    }

    /// Frees the slot of our READING claim for the next lap. Fails if the
    /// claim is no longer ours (someone took it for a dead one's).
    pub(super) fn release(&self, c: Claim) -> Result<()> {
        // SYNC POINT: Release pairs with the producer's Acquire in claim_put:
        // our reads of the message happen before its next write.
        let r = self.hdr_at(c.slot).state.compare_exchange(
            c.word,
            p40(c.pos.wrapping_add(self.slots)),
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.ctl.not_full.0.notify();
        r.map(drop).map_err(|_| Self::claim_lost("get", c.pos))
    }

    pub(super) fn claim_get_until(
        &self,
        need: Option<usize>,
        long: bool,
        deadline: Option<Deadline>,
    ) -> Result<(Claim, usize)> {
        self.wait_for(
            deadline,
            &self.ctl.not_empty.0,
            || self.message_maybe(),
            |check_dead| self.claim_get(need, long, check_dead),
        )
    }
}
