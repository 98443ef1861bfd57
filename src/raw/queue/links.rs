//! Roles and disconnect: which handles send, which receive, and what a
//! receiver is told once every sender has gone (and a sender once every
//! receiver has).
//!
//! # State
//!
//! Each participant entry (see [`recover`](super::recover)) has a role word
//! in `roles[i]`, written by the handle that holds the entry: `SEND`,
//! `RECV`, or both (the both-ways handle, and the raw default). The
//! `closed` word of the control block holds, beside `CLOSED`:
//!
//! | bit               | set by                                             | cleared by |
//! |-------------------|----------------------------------------------------|------------|
//! | `EVER_SENDER`     | a send-only handle taking its entry                | never      |
//! | `EVER_RECEIVER`   | a receive-only handle taking its entry             | never      |
//! | `CHECK_SENDERS`   | a handle giving up `SEND` (drop, role change) once `EVER_SENDER`; a look that found no live sender | a look ([`gone`](RawQueue::gone)) that found a live sender, before it scans again |
//! | `CHECK_RECEIVERS` | the same for `RECV`                                | the same   |
//!
//! # Rules
//!
//! - Disconnect needs a dedicated role: a queue whose handles are all
//!   both-ways (every queue before roles existed) is never disconnected, and
//!   a receiver that was made before any sender is not told "disconnected"
//!   while it waits for the first one (`EVER_SENDER` is still clear).
//! - A receiver is disconnected when `EVER_SENDER` is set, no entry with
//!   `SEND` belongs to a live process (only "no such task" is dead, as
//!   everywhere), and nothing is left to get: the queue is drained and no
//!   lease is held that could come back. A sender is disconnected when
//!   `EVER_RECEIVER` is set and no entry with `RECV` is alive; what it
//!   already put stays in the queue.
//! - The `CHECK_*` bits are hints, never verdicts: whoever sees one scans
//!   the table itself. A look that finds nobody leaves the bit set; one
//!   that finds somebody clears the bit *before* it scans a second time,
//!   and sets it again (waking the sleepers of its side) if that scan finds
//!   nobody; a leaver clears its role *before* it sets the bit. So a
//!   leaver's bit is either seen by a look that starts after it, or the
//!   look's second scan already misses the leaver; and the bit is hidden
//!   from sleepers only while somebody was just found, and they are woken
//!   if that turns out wrong.
//! - Disconnect is not latched: a sender that opens later reconnects the
//!   queue, and receivers get its messages.
//! - A leaver wakes the sleepers of the other side. A sender that dies
//!   leaves no bit: its death wakes the sleepers that watch the queue's
//!   participants (`sync::watch`), which then look with liveness
//!   (`check_dead`). Calls that do not sleep look on their own every 256th
//!   time, at most once per quarter liveness interval.
//!
//! # Crash cases
//!
//! | killed ...                          | left behind                    | effect |
//! |-------------------------------------|--------------------------------|--------|
//! | between taking an entry and its role | an entry with role 0 (or the last owner's) | counted as neither, or as the old role, until the entry is reused: a dead process counts for nobody |
//! | between clearing its role and the bit | role 0, no bit                | the next periodic or death-woken look finds nobody |
//! | any time while holding a role       | a live-looking role on a dead entry | dead by liveness: counts for nobody |

use super::*;

/// A handle that sends (puts).
pub(crate) const SEND: u32 = 1;
/// A handle that receives (gets).
pub(crate) const RECV: u32 = 2;
/// A both-ways handle.
pub(crate) const BOTH: u32 = SEND | RECV;

/// Bits of the control block's `closed` word (see the module docs).
pub(super) const CLOSED: u32 = 1;
pub(super) const EVER_SENDER: u32 = 2;
pub(super) const EVER_RECEIVER: u32 = 4;
pub(super) const CHECK_SENDERS: u32 = 8;
pub(super) const CHECK_RECEIVERS: u32 = 16;

/// Calls between two unprompted looks (each also limited by the clock).
const LOOK_EVERY: u64 = 256;

/// What a queue handle does, for disconnect (see
/// [`RawQueue::set_role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueRole {
    /// Puts and gets: counts as a sender and as a receiver (the default).
    #[default]
    Both,
    /// Only puts.
    Sender,
    /// Only gets.
    Receiver,
}

impl QueueRole {
    fn bits(self) -> u32 {
        match self {
            QueueRole::Both => BOTH,
            QueueRole::Sender => SEND,
            QueueRole::Receiver => RECV,
        }
    }
}

impl RawQueue<'_> {
    /// Gives this handle the role `role` from now on (see the `links`
    /// module of the source for the protocol). A handle starts as
    /// [`QueueRole::Both`]. Once a queue has had a `Sender`, receivers get
    /// [`Error::Disconnected`] when no live process holds a sending role
    /// and nothing is left to get; once it has had a `Receiver`, senders
    /// get it when no live process holds a receiving role. Giving up a role
    /// counts as leaving. The role is not enforced: it only says whom this
    /// handle counts as.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the participant table is full (a
    /// handle that must take a new entry after `fork`).
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, QueueRole, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both handles.
    /// let mut rx = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// rx.set_role(QueueRole::Receiver)?;
    /// # // SAFETY: as above.
    /// let mut tx = unsafe { RawQueue::attach(seg.as_ptr(), seg.len())? };
    /// tx.set_role(QueueRole::Sender)?;
    /// tx.put(b"last")?;
    /// drop(tx);
    /// assert_eq!(rx.get()?, b"last");
    /// assert!(matches!(rx.try_get(), Err(shmkit::Error::Disconnected { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_role(&mut self, role: QueueRole) -> Result<()> {
        let role = role.bits();
        let i = self.me()? as usize;
        let old = self.role;
        self.role = role;
        if let Some(r) = self.ctl.roles.get(i) {
            r.store(role, Ordering::SeqCst);
        }
        self.joined();
        self.left(old & !role);
        Ok(())
    }

    /// Publishes that a dedicated role has been taken (after the role word
    /// of the entry is written).
    pub(super) fn joined(&self) {
        let ever = match self.role {
            SEND => EVER_SENDER,
            RECV => EVER_RECEIVER,
            _ => 0,
        };
        if ever != 0 && self.ctl.closed.load(Ordering::Acquire) & ever == 0 {
            self.ctl.closed.fetch_or(ever, Ordering::SeqCst);
        }
    }

    /// This handle gave up the roles `lost` (after its entry's role word
    /// says so): the other side looks whether anybody with them is left.
    pub(super) fn left(&self, lost: u32) {
        let c = self.ctl.closed.load(Ordering::SeqCst);
        if lost & SEND != 0 && c & EVER_SENDER != 0 {
            self.ctl.closed.fetch_or(CHECK_SENDERS, Ordering::SeqCst);
            self.get_notify().notify_all();
        }
        if lost & RECV != 0 && c & EVER_RECEIVER != 0 {
            self.ctl.closed.fetch_or(CHECK_RECEIVERS, Ordering::SeqCst);
            self.put_notify().notify_all();
        }
    }

    /// Whether no live participant holds `role` (`SEND` or `RECV`), by a
    /// scan of the table with liveness. A look that finds nobody leaves the
    /// role's check bit set (sets it if it was clear); one that finds
    /// somebody while the bit is set clears it and scans again, and sets it
    /// again (and wakes the side's sleepers) if that second scan finds
    /// nobody. So the bit is hidden only while a look has just found
    /// somebody: a sleeper that looked meanwhile and went back to sleep is
    /// woken if the look then turns out to find nobody.
    pub(super) fn gone(&self, role: u32) -> bool {
        let check = if role == SEND {
            CHECK_SENDERS
        } else {
            CHECK_RECEIVERS
        };
        if !self.holder_alive(role) {
            if self.ctl.closed.load(Ordering::SeqCst) & check == 0 {
                self.ctl.closed.fetch_or(check, Ordering::SeqCst);
            }
            return true;
        }
        if self.ctl.closed.load(Ordering::SeqCst) & check == 0 {
            return false;
        }
        // Cleared before the second scan: a leaver that sets the bit after
        // this keeps it set; one that set it before has cleared its role
        // before that, so the second scan does not count it.
        self.ctl.closed.fetch_and(!check, Ordering::SeqCst);
        if self.holder_alive(role) {
            return false;
        }
        self.ctl.closed.fetch_or(check, Ordering::SeqCst);
        if role == SEND {
            self.get_notify().notify_all();
        } else {
            self.put_notify().notify_all();
        }
        true
    }

    /// Whether an entry with `role` belongs to a live process (a scan of
    /// the table with liveness).
    fn holder_alive(&self, role: u32) -> bool {
        self.ctl.roles.iter().enumerate().any(|(i, r)| {
            if r.load(Ordering::SeqCst) & role == 0 {
                return false;
            }
            let e = self.ctl.procs[i].load(Ordering::SeqCst);
            e != 0 && self.entry_alive(i, e)
        })
    }

    /// Whether an unprompted look is due: every [`LOOK_EVERY`]th call, at
    /// most once per quarter liveness interval.
    fn look_due(&self) -> bool {
        let n = self.link_looks.get().wrapping_add(1);
        self.link_looks.set(n);
        if n % LOOK_EVERY != 0 {
            return false;
        }
        let now = sync::now().as_nanos() as u64;
        if now.saturating_sub(self.link_looked.get())
            < (sync::LIVENESS_INTERVAL / 4).as_nanos() as u64
        {
            return false;
        }
        self.link_looked.set(now);
        true
    }

    /// Before a put claims (the `closed` word `c` is not 0): `Closed`, or
    /// `Disconnected` when every receiver has gone. With `check_dead` (a
    /// blocked put that woke) it looks at once.
    #[cold]
    pub(super) fn put_gate(&self, c: u32, check_dead: bool) -> Result<()> {
        if c & CLOSED != 0 {
            return Err(Error::Closed { origin: ORIGIN });
        }
        if c & EVER_RECEIVER == 0 || self.role & RECV != 0 {
            return Ok(());
        }
        let due = c & CHECK_RECEIVERS != 0 || check_dead || self.look_due();
        if due && self.gone(RECV) {
            return Err(Error::Disconnected { origin: ORIGIN });
        }
        Ok(())
    }

    /// A get found nothing: `Empty`, or `Disconnected` when every sender
    /// has gone and nothing is left that could still be got (the queue is
    /// drained and no lease is held that could come back).
    pub(super) fn empty_or_disconnected<T>(&self, check_dead: bool) -> Result<Try<T>> {
        let c = self.ctl.closed.load(Ordering::Acquire);
        if c & EVER_SENDER == 0 || self.role & SEND != 0 {
            return Ok(Try::Empty);
        }
        let due = c & CHECK_SENDERS != 0 || check_dead || self.look_due();
        if !due || !self.gone(SEND) {
            return Ok(Try::Empty);
        }
        let h = self.ctl.head.0.load(Ordering::Acquire);
        if !self.closed_and_drained(h) || self.lease_held() {
            return Ok(Try::Empty);
        }
        Err(Error::Disconnected { origin: ORIGIN })
    }

    /// For sleepers and readiness: might the other side have gone (a check
    /// bit is set for it)? `role` is the side this handle waits on.
    pub(super) fn check_pending(&self, role: u32) -> bool {
        let c = self.ctl.closed.load(Ordering::Relaxed);
        let (ever, check) = if role == SEND {
            (EVER_SENDER, CHECK_SENDERS)
        } else {
            (EVER_RECEIVER, CHECK_RECEIVERS)
        };
        c & check != 0 && c & ever != 0 && self.role & role == 0
    }

    /// Readiness with liveness (a waiter on many that woke after a death):
    /// is the side `role` gone? Looks only where disconnect applies.
    pub(super) fn gone_now(&self, role: u32) -> bool {
        let ever = if role == SEND {
            EVER_SENDER
        } else {
            EVER_RECEIVER
        };
        self.ctl.closed.load(Ordering::Acquire) & ever != 0
            && self.role & role == 0
            && self.gone(role)
    }

    /// Whether this handle's other side has gone: for a receive-only
    /// handle, every sender; for a send-only handle, every receiver. A
    /// both-ways handle is never disconnected (it is both sides itself).
    /// Messages may still be left to get.
    ///
    /// ```
    /// # use shmkit::raw::{QueueLayout, QueueRole, RawQueue};
    /// # let layout = QueueLayout { capacity: 2, max_message: 8 };
    /// # let seg = shmkit::Segment::create_unique(RawQueue::required_size(&layout)?)?;
    /// # // SAFETY: the segment outlives both handles.
    /// let mut tx = unsafe { RawQueue::init_in(seg.as_ptr(), seg.len(), &layout)? };
    /// tx.set_role(QueueRole::Sender)?;
    /// # // SAFETY: as above.
    /// let mut rx = unsafe { RawQueue::attach(seg.as_ptr(), seg.len())? };
    /// rx.set_role(QueueRole::Receiver)?;
    /// assert!(!tx.is_disconnected());
    /// drop(rx);
    /// assert!(tx.is_disconnected());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        match self.role {
            RECV => self.gone_now(SEND),
            SEND => self.gone_now(RECV),
            _ => false,
        }
    }
}
