//! Leases: a message taken under a lease stays in its slot until it is
//! acked; if the lease ends any other way (dropped, or its holder died) the
//! message is given back and delivered again. And `join`: waiting until
//! every message put has been taken and every lease acked.
//!
//! # States
//!
//! | state                            | meaning                                  | who ends it |
//! |----------------------------------|------------------------------------------|-------------|
//! | `READING | LONG | LEASE`, `who`, `p` | leased to participant `who`           | the holder: ack (free for `p + slots`) or give back (`BACK(p)`); anyone who finds `who` dead: `BACK(p)` |
//! | `BACK(p)`                        | message `p` given back, behind the head  | a consumer that finds the head empty: takes it (a new claim, from exactly `BACK(p)`); a producer a lap on: puts it again, in place, as position `p + slots` |
//!
//! A lease is taken like a zero-copy [`GetGrant`](super::GetGrant): a CAS
//! of the head slot's state from "message ready" to the claim, then the
//! head moves on. The slot stays claimed while the lease is held (it keeps
//! its slot, not its room: the producer that laps round to it waits).
//!
//! **Where given-back messages go.** `BACK` sits behind the head, so the
//! next get at the head does not see it. It is delivered either when the
//! queue runs empty (a get that finds nothing at the head looks for `BACK`
//! states, when the `backs` hint says there may be some), or when
//! producers lap round to its slot, which put it again as their next
//! position. Either way it comes after the messages queued when it was
//! given back that are still there: to the back of the queue, as
//! Python's `JoinableQueue` users re-`put` a failed job.
//!
//! **Deliveries.** The slot header's `deliveries` is set to 0 by the
//! producer and raised by each lease's claimant under its claim, so a
//! lease knows how many leases the message has been given under.
//!
//! # Crash cases
//!
//! | killed …                                 | left behind              | recovered by |
//! |------------------------------------------|--------------------------|--------------|
//! | after raising the leases hint, before the claim | the hint one too high | nobody (costs a look) |
//! | holding a lease (any time up to the ack's CAS) | the lease claim     | a get that finds the head empty, with liveness (`check_dead`); a producer a lap on; `join`; the next holder of the dead one's participant entry: `BACK(p)`, then delivered again |
//! | after the ack's CAS                      | the leases hint too high | nobody (costs a look); the message is acked, once |
//! | giving back, after raising `backs`       | the hint too high, or `BACK(p)` | as above |
//! | taking a `BACK` (a new claim)            | a claim of its own       | as for any claim of its kind |
//!
//! A message is acked exactly once: only the ack's CAS, from the holder's
//! exact claim word, frees the slot, and a lease claim is ended by anyone
//! else only when its holder is dead ("no such task"; an unknown answer is
//! alive), so a live holder's ack never races a redelivery.

use super::*;

impl<'a> RawQueue<'a> {
    /// After the head was found empty (or the queue closed and drained):
    /// takes a message given back, if the hints say there may be one.
    /// With `check_dead`, a lease whose holder died is given back first.
    pub(super) fn claim_back(
        &self,
        need: Option<usize>,
        flags: u64,
        check_dead: bool,
    ) -> Result<Option<(Claim, usize, u32)>> {
        let (leases, backs) = self.ctl.lease.0.get();
        if (leases, backs) == (0, 0) {
            return Ok(None);
        }
        let check_dead = leases != 0 && (check_dead || self.dead_scan_due());
        if backs == 0 && !check_dead {
            return Ok(None);
        }
        let who = self.me()?;
        let h = self.ctl.head.0.load(Ordering::Acquire);
        for k in 0..self.slots as usize {
            let hdr = self.hdr_at(k);
            let Some(s) = self.back_at(hdr, h, check_dead) else {
                continue;
            };
            if !self.fits(hdr, s, need)? {
                continue;
            }
            let pos = s & POS_MASK;
            // The slot must be the position's (a `BACK` scribbled into
            // another slot is left alone).
            let back = h.wrapping_sub(p40(h).wrapping_sub(pos) & POS_MASK);
            if self.slot_of(back) != k {
                continue;
            }
            let mine = claim(READING | flags, who, pos);
            if self.claim_slot(hdr, s, mine) {
                self.ctl.lease.0.lower(BACK_ONE);
                let c = Claim {
                    pos,
                    slot: k,
                    word: mine,
                };
                let (len, n) = self.claimed(c, need)?;
                return Ok(Some((c, len, n)));
            }
        }
        Ok(None)
    }

    /// Whether looking for given-back messages (and, with `check_dead`,
    /// dead leases) may find any: the hints are not 0.
    fn backs_maybe(&self, check_dead: bool) -> bool {
        let (leases, backs) = self.ctl.lease.0.get();
        backs != 0 || (check_dead && leases != 0)
    }

    /// Whether a call that does not read liveness by itself (a `try_` call,
    /// a spin) should look for dead leases now (the caller has seen the
    /// `leases` hint not 0): at most once per liveness
    /// interval per handle, so that a consumer that only polls gets a dead
    /// holder's job back within that interval, without a `/proc` read per
    /// held lease on every poll.
    fn dead_scan_due(&self) -> bool {
        let now = sync::now().as_nanos() as u64;
        let last = self.lease_scan.get();
        if last != 0 && now.saturating_sub(last) < recover::STUCK.as_nanos() as u64 {
            return false;
        }
        self.lease_scan.set(now.max(1));
        true
    }

    /// Whether some slot holds a lease (a scan, only while the `leases`
    /// hint is not 0).
    pub(super) fn lease_held(&self) -> bool {
        if self.ctl.lease.0.get().0 == 0 {
            return false;
        }
        (0..self.slots as usize).any(|k| {
            self.hdr_at(k).state.load(Ordering::Acquire) & (KIND | LEASE) == READING | LEASE
        })
    }

    /// The `BACK` state of slot `hdr` if it holds one that fits (a position
    /// behind the head `h` by at most a lap), after giving back, with
    /// `check_dead`, a lease of a dead holder found there.
    fn back_at(&self, hdr: &SlotHdr, h: u64, check_dead: bool) -> Option<u64> {
        let mut s = hdr.state.load(Ordering::Acquire);
        if check_dead && s & (KIND | LEASE) == READING | LEASE && self.claimant_dead(s, true) {
            self.recover_claim(hdr, s);
            s = hdr.state.load(Ordering::Acquire);
        }
        if s & KIND != BACK || s & !(BACK | POS_MASK) != 0 {
            return None;
        }
        let d = diff40(s & POS_MASK, h);
        (d < 0 && d >= -(self.slots as i64)).then_some(s)
    }

    /// Whether a message given back is waiting (a scan, only when the
    /// `backs` hint is not 0; with `check_dead`, dead leases are given back
    /// on the way). For the sleep predicate and readiness.
    pub(super) fn back_waiting(&self, check_dead: bool) -> bool {
        if !self.backs_maybe(check_dead) {
            return false;
        }
        let h = self.ctl.head.0.load(Ordering::Acquire);
        let mut found = false;
        for k in 0..self.slots as usize {
            // Every slot is looked at, so that every dead lease is given
            // back in one pass.
            found |= self.back_at(self.hdr_at(k), h, check_dead).is_some();
        }
        found
    }

    /// A producer at tail `t` found `BACK(t - slots)` (state `s`) in the
    /// slot of `t`: the message is put again, in place, as position `t`
    /// (its bytes and length are still in the slot), and the tail moves
    /// on.
    pub(super) fn redeliver_at(&self, hdr: &SlotHdr, s: u64, t: u64) {
        // SYNC POINT: AcqRel: Acquire pairs with the Release of whoever
        // gave the message back (and so with its producer's); Release with
        // the consumer's Acquire of the state.
        if hdr
            .state
            .compare_exchange(
                s,
                p40(t.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.ctl.lease.0.lower(BACK_ONE);
            self.help_tail(t);
            self.ctl.not_empty.0.notify();
        }
    }

    /// Gives the message of our lease `c` back, to be delivered again.
    pub(super) fn give_back(&self, c: Claim) -> Result<()> {
        let ok = self.end_claim(self.hdr_at(c.slot), c.word, BACK | p40(c.pos));
        self.ctl.not_empty.0.notify();
        // A producer that laps round to the slot may wait for it: it may
        // put the message again now.
        self.ctl.not_full.0.notify();
        if ok {
            Ok(())
        } else {
            Err(Self::claim_lost("lease", c.pos))
        }
    }

    /// Whether every message put has been taken, and every lease acked: no
    /// position between head and tail counts (see `live`), and no slot
    /// holds a lease or a message given back (looked for only when the
    /// hints say there may be some). With `check_dead`, a dead holder's
    /// lease is given back on the way (and so counts as not done).
    fn settled(&self, check_dead: bool) -> bool {
        if check_dead {
            // A dead producer's open position at the head is nobody's to
            // step over if no consumer runs: do it here.
            self.help_head_a_little(true);
        }
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        let h = self.ctl.head.0.load(Ordering::Acquire);
        if self.live(h, t) != 0 {
            return false;
        }
        if self.hdr(t).state.load(Ordering::Acquire) == p40(t.wrapping_add(1)) {
            // A message put again in place at `t` by a producer that has
            // not moved the tail yet (or died before it could).
            self.help_tail(t);
            return false;
        }
        if self.ctl.lease.0.get() == (0, 0) {
            return true;
        }
        let mut pending = false;
        for k in 0..self.slots as usize {
            let hdr = self.hdr_at(k);
            let s = hdr.state.load(Ordering::Acquire);
            if s & (KIND | LEASE) == READING | LEASE {
                pending = true;
                if !check_dead {
                    break;
                }
                // Every dead lease is given back in one pass.
                if self.claimant_dead(s, true) {
                    self.recover_claim(hdr, s);
                }
            } else if s & KIND == BACK {
                pending = true;
                if !check_dead {
                    break;
                }
            }
        }
        // A message given back and put again in place by a producer during
        // the scan moved the tail: then look again.
        !pending && self.ctl.tail.0.load(Ordering::Acquire) == t
    }

    pub(crate) fn get_lease_until(&self, deadline: Option<Deadline>) -> Result<Lease<'_>> {
        let (claim, len, deliveries) = self.claim_get_until(None, LONG | LEASE, deadline)?;
        Ok(Lease {
            queue: self,
            claim,
            len,
            deliveries,
            done: false,
            owner: sync::current_process().0,
        })
    }

    pub(crate) fn join_until(&self, deadline: Deadline) -> Result<()> {
        self.wait_for(
            Some(deadline),
            &self.ctl.not_full.0,
            || self.settled(false),
            |check_dead| {
                Ok(if self.settled(check_dead) {
                    Try::Done(())
                } else {
                    Try::Empty
                })
            },
        )
    }

    /// Takes the next message under a lease if one is there now; see
    /// [`Queue::get_lease`](crate::Queue::get_lease).
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Closed`] (closed and nothing left),
    /// [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"job")?;
    /// let lease = q.try_get_lease()?;
    /// assert_eq!(&*lease, b"job");
    /// drop(lease); // not acked: given back
    /// let again = q.try_get_lease()?;
    /// assert!(again.redelivered());
    /// again.ack()?;
    /// assert!(matches!(q.try_get_lease(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_lease(&self) -> Result<Lease<'_>> {
        self.get_lease_until(None)
    }

    /// Takes the next message under a lease, waiting as long as it takes;
    /// see [`Queue::get_lease`](crate::Queue::get_lease).
    ///
    /// # Errors
    /// [`Error::Closed`] (closed and nothing left), [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"job")?;
    /// q.get_lease()?.ack()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease(&self) -> Result<Lease<'_>> {
        self.get_lease_until(Some(Deadline::NEVER))
    }

    /// Takes the next message under a lease, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Closed`], [`Error::Corrupted`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// let r = q.get_lease_timeout(Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease_timeout(&self, timeout: Duration) -> Result<Lease<'_>> {
        self.get_lease_until(Some(Deadline::after(timeout)))
    }

    /// Waits until every message put has been taken and every lease acked;
    /// see [`Queue::join`](crate::Queue::join).
    ///
    /// # Errors
    /// [`Error::Corrupted`].
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"job")?;
    /// q.try_get_lease()?.ack()?;
    /// q.join()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.join_until(Deadline::NEVER)
    }

    /// As [`join`](RawQueue::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Corrupted`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmkit::raw::{QueueLayout, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives `q`.
    /// # let q = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.try_put(b"job")?;
    /// let lease = q.try_get_lease()?;
    /// assert!(matches!(q.join_timeout(Duration::from_millis(1)), Err(shmkit::Error::Timeout { .. })));
    /// lease.ack()?;
    /// q.join_timeout(Duration::from_millis(1))?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(Deadline::after(timeout))
    }
}

/// A message taken under a lease: read it in place, then [`ack`] it. A
/// lease that ends any other way gives the message back, to be delivered
/// again (to this or another consumer, marked
/// [`redelivered`](Lease::redelivered)): dropped without ack (the explicit
/// form is [`nack`]), leaked, or held by a process that dies. See
/// [`Queue::get_lease`](crate::Queue::get_lease).
///
/// The bytes are the slot's own, in shared memory, as for a
/// [`GetGrant`](super::GetGrant): no process that follows the protocol
/// writes them while the lease is held; a hostile one can (the reader sees
/// bytes change, never memory outside the slot).
///
/// [`ack`]: Lease::ack
/// [`nack`]: Lease::nack
pub struct Lease<'a> {
    queue: &'a RawQueue<'a>,
    claim: Claim,
    len: usize,
    deliveries: u32,
    done: bool,
    /// The process that took it: a copy inherited across `fork` ends
    /// nothing.
    owner: u64,
}

impl Lease<'_> {
    /// Acknowledges the message: it is done, and never delivered again.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the lease was taken from this process (only
    /// a write over the queue's memory can do that): the message may be
    /// delivered again. [`Error::InvalidArgument`] in a child that
    /// inherited the lease across `fork` (the parent's lease is left
    /// alone; dropping it there does nothing either).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(2, 8)?;
    /// q.put(b"job")?;
    /// q.get_lease()?.ack()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn ack(mut self) -> Result<()> {
        self.done = true;
        self.mine()?;
        self.queue.release(self.claim)
    }

    /// Refuses a lease inherited across `fork`: the parent holds it.
    fn mine(&self) -> Result<()> {
        if self.owner == sync::current_process().0 {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "this lease was taken by another process (inherited across fork): only \
                 that process can end it"
                    .into(),
            ))
        }
    }

    /// Gives the message back, to be delivered again (what dropping the
    /// lease does, with the error reported).
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the lease was taken from this process;
    /// [`Error::InvalidArgument`] in a child that inherited it across
    /// `fork`.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(2, 8)?;
    /// q.put(b"job")?;
    /// q.get_lease()?.nack()?;
    /// let again = q.get_lease()?;
    /// assert_eq!(again.deliveries(), 2);
    /// again.ack()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn nack(mut self) -> Result<()> {
        self.done = true;
        self.mine()?;
        self.queue.give_back(self.claim)
    }

    /// How many leases the message has been given under, this one
    /// included: 1 the first time.
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(2, 8)?;
    /// q.put(b"job")?;
    /// let lease = q.get_lease()?;
    /// assert_eq!(lease.deliveries(), 1);
    /// # lease.ack()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Whether the message was delivered before, under a lease that ended
    /// without an ack (a consumer that died, or gave it back).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(2, 8)?;
    /// q.put(b"job")?;
    /// assert!(!q.get_lease()?.redelivered()); // dropped: given back
    /// assert!(q.get_lease()?.redelivered());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn redelivered(&self) -> bool {
        self.deliveries > 1
    }
}

impl Deref for Lease<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the lease claim on the slot until ack, give-back
        // or drop; `len` was checked against max_message (the slot's size)
        // under the claim.
        unsafe { std::slice::from_raw_parts(self.queue.data_at(self.claim.slot), self.len) }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.done && self.mine().is_ok() {
            // A claim taken from us meanwhile is someone else's now.
            let _ = self.queue.give_back(self.claim);
        }
    }
}

impl fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("len", &self.len)
            .field("deliveries", &self.deliveries)
            .finish()
    }
}
