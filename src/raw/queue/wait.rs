//! Waiting: the spin, the sleep and the death watch shared by puts and
//! gets, the spin setting, and readiness for waiting on many.

use super::*;

impl<'a> RawQueue<'a> {
    /// The waiting shared by puts and gets: try `claim`; without a deadline,
    /// say why not (`Full`/`Empty`); else spin (adaptively), then sleep on
    /// `notify` until `maybe()` says to look again, for at most the liveness
    /// interval at a time, after which `claim` also reads the liveness of
    /// whoever blocks it. Never times out early.
    pub(super) fn wait_for<T>(
        &self,
        deadline: Option<Deadline>,
        notify: &Notify,
        maybe: impl Fn() -> bool,
        claim: impl Fn(bool) -> Result<Try<T>>,
    ) -> Result<T> {
        let mut spun = false;
        let mut check_dead = false;
        let mut looked_at_dead = false;
        loop {
            let not_now = match claim(check_dead)? {
                Try::Done(v) => return Ok(v),
                Try::Full => Error::Full { origin: ORIGIN },
                Try::Empty => Error::Empty { origin: ORIGIN },
            };
            let Some(deadline) = deadline else {
                return Err(not_now);
            };
            if !spun {
                spun = true;
                let got = self.spin.spin(deadline, || match claim(false) {
                    Ok(Try::Done(v)) => Some(Ok(v)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                });
                match got {
                    Some(r) => return r,
                    None => continue,
                }
            }
            if deadline.expired() {
                // One last look, reading the liveness of whoever blocks us,
                // so that a zero timeout still steps over a dead claim.
                return match claim(true)? {
                    Try::Done(v) => Ok(v),
                    _ => Err(Error::Timeout { origin: ORIGIN }),
                };
            }
            // Have a participant's exit wake us (see `sync::watch`): then
            // the sleep needs no short interval to notice a death.
            let deaths = sync::deaths();
            let (dead, interval) = self.watch_all(notify.futex());
            if dead && !looked_at_dead {
                // A participant is dead already: one look with liveness
                // (its entry may stay in the table long after).
                looked_at_dead = true;
                check_dead = true;
                continue;
            }
            let (until, is_deadline) = deadline.or_within(interval);
            let woken = notify.sleep(until, &maybe);
            if !woken && is_deadline {
                // One last look, then Timeout.
                return match claim(true)? {
                    Try::Done(v) => Ok(v),
                    _ => Err(Error::Timeout { origin: ORIGIN }),
                };
            }
            check_dead = !woken || sync::deaths() != deaths;
        }
    }

    /// Sets how long this handle's blocking calls spin before they sleep.
    ///
    /// ```
    /// # let layout = shmkit::raw::QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(shmkit::raw::RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the queue and is used only through it.
    /// let q = unsafe { shmkit::raw::RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// q.set_spin(shmkit::Spin::Never);
    /// assert_eq!(q.spin(), shmkit::Spin::Never);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Spin) {
        self.spin.set(spin);
    }

    /// This handle's spin setting.
    ///
    /// ```
    /// # let layout = shmkit::raw::QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(shmkit::raw::RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives the queue and is used only through it.
    /// let q = unsafe { shmkit::raw::RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// assert_eq!(q.spin(), shmkit::Spin::Adaptive);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spin(&self) -> Spin {
        self.spin.get()
    }

    // ---- readiness, for waiting on many ----------------------------------

    /// The word a waiter for "a message to get" sleeps on.
    pub(crate) fn get_notify(&self) -> &Notify {
        &self.ctl.not_empty.0
    }

    /// The word a waiter for "room to put" sleeps on.
    pub(crate) fn put_notify(&self) -> &Notify {
        &self.ctl.not_full.0
    }

    /// Whether a get would find something now: a message at the head, or
    /// the queue closed. First it helps the head over what needs no
    /// consumer (a skipped put; with `check_dead`, a put whose producer
    /// died), as a consumer would, so that such a position does not make
    /// the queue look ready.
    pub(crate) fn get_ready(&self, check_dead: bool) -> bool {
        self.help_head_a_little(check_dead);
        self.message_maybe()
            || self.back_waiting(check_dead)
            || check_dead && self.gone_now(SEND) && self.message_maybe()
    }

    /// Whether a put would find room now (or the queue closed). First it
    /// helps the head on (see `get_ready`) and, with `check_dead`, frees a
    /// last-lap slot at the tail whose reader or writer died, as a blocked
    /// producer would.
    pub(crate) fn put_ready(&self, check_dead: bool) -> bool {
        self.help_head_a_little(check_dead);
        if check_dead {
            let t = self.ctl.tail.0.load(Ordering::Relaxed);
            let hdr = self.hdr(t);
            let s = hdr.state.load(Ordering::Acquire);
            if s & KIND & (READING | WRITING) != 0
                && diff40(s, t) == -(self.slots as i64)
                && self.claimant_dead(s, true)
            {
                self.recover_claim(hdr, s);
                self.help_head_a_little(false);
            }
        }
        self.room_maybe() || check_dead && self.gone_now(RECV)
    }

    /// A bounded number of `help_head` steps.
    pub(super) fn help_head_a_little(&self, check_dead: bool) {
        for _ in 0..8 {
            let h = self.ctl.head.0.load(Ordering::Relaxed);
            if !self.help_head(h, check_dead) {
                break;
            }
        }
    }

    /// A cheap look: might a get succeed now (or should a sleeper wake)?
    /// Not while the slot at the head is free or being written: the
    /// producer notifies when it publishes (or is found dead at the next
    /// liveness check).
    pub(super) fn message_maybe(&self) -> bool {
        if self.is_closed() || self.check_pending(SEND) {
            // Something left to drain, or nothing more can come (then the
            // get says `Closed`, or `Disconnected` once every sender may
            // have gone: it looks); not while the only thing that may still
            // come is a held lease given back (its end notifies).
            let h = self.ctl.head.0.load(Ordering::Acquire);
            return !self.closed_and_drained(h) || !self.lease_held() || self.back_waiting(false);
        }
        let h = self.ctl.head.0.load(Ordering::Relaxed);
        let s = self.hdr(h).state.load(Ordering::Acquire);
        let d = diff40(s, h);
        let waiting = match s & KIND {
            0 | WRITING => d == 0,
            READING | BACK => d == -(self.slots as i64),
            _ => false,
        };
        !waiting || self.back_waiting(false)
    }
}
