//! The queue's participants and its recovery steps: who a claim belongs
//! to, whether that process lives, and what anyone may do about a claim
//! whose owner died, a skipped position or a lagging head.
//!
//! # The participant table
//!
//! `PROCS` entries in the control block, each 0 (free) or the
//! [`TaskStamp`] (pid and start time) of the process that holds it. A
//! claim's `who` field is an entry's index, so a claim names its process
//! exactly, whatever later happens to the pid.
//!
//! | entry               | meaning                           | a claim naming it is |
//! |---------------------|-----------------------------------|----------------------|
//! | 0                   | free                              | garbage: recovered   |
//! | stamp, task alive   | a live participant (or "unknown") | left alone           |
//! | stamp, no such task | its process died                  | recovered            |
//! | index >= `PROCS`    | —                                 | garbage: recovered   |
//!
//! - Taking an entry: a handle takes a free entry with a CAS from 0. If none
//!   is free it takes the entry of a dead process with a CAS from the exact
//!   stamp it saw dead, and then, before it makes any claim of its own,
//!   recovers every claim that still names the entry (they are all the dead
//!   process's). So an entry is never reassigned while a live claim names it,
//!   and a pid reused by a stranger can neither keep a dead claim alive (the
//!   stranger has an entry of its own) nor make a live one look dead.
//! - After `fork`, the child's first claim sees that the process stamp is no
//!   longer the one it registered under, and takes an entry of its own: its
//!   claims are never made in its parent's name.
//! - A handle that drops recovers any claim of its own that is still there
//!   (a grant that was leaked with `mem::forget`) and frees its entry.
//! - A process that dies holding an entry leaves it to be reclaimed as
//!   above. Liveness is read through [`sync::task_alive`], for which only
//!   "no such task" is dead: an answer the OS could not give counts as
//!   alive, so nobody is robbed on a guess.
//!
//! # Crash cases
//!
//! | killed ...                        | left behind                | recovered by                     |
//! |-----------------------------------|----------------------------|----------------------------------|
//! | after claiming WRITING            | `WRITING(p)`               | anyone at the head or the tail a lap on: `SKIP(p)` |
//! | after claiming READING            | `READING(p)`               | the producer a lap on, or a consumer at the head: free for `p + slots` |
//! | between a claim and an index move | index behind               | anyone: helps the index on       |
//! | mid give-back (abandon)           | free `p` behind the tail   | the next consumer: waits briefly, then `Empty`; a stale producer fills it |
//! | while taking an entry             | entry with its stamp       | the next registrant (dead stamp) |
//! | while recovering                  | a CAS done or not          | CASes from exact states: idempotent |

use std::time::Duration;

use super::{
    claimant, diff40, p40, Error, RawQueue, SlotHdr, BACK, BACK_ONE, KIND, LEASE, LEASE_ONE, LONG,
    POS_MASK, READING, SKIP, WRITING,
};
use crate::error::Result;
use crate::sync::{self, Futex, Ordering, Target, TaskStamp};

/// Entries in the table of participants.
pub(super) const PROCS: usize = if cfg!(loom) { 8 } else { 256 };

/// `reg_stamp` while one thread takes a new entry for the handle.
const REGISTERING: u64 = 1;

/// How long `settle` spins before it yields to let a preempted claimant run.
#[cfg(not(fuzzing))]
const SPIN_IN_FLIGHT: Duration = Duration::from_micros(50);
/// Under the fuzzer, in proportion to its `IN_FLIGHT`.
#[cfg(fuzzing)]
const SPIN_IN_FLIGHT: Duration = Duration::from_micros(20);

/// How long one `try_` call has waited for copies in flight (see
/// [`RawQueue::settle`]). A call may meet several in a row: the copy at the
/// head finishes, another consumer takes it, and the next position is being
/// copied too. A one-shot "waited" flag said `Empty` at the second one
/// (regression `try_get_after_own_put_is_never_empty`); the time is shared
/// instead.
#[derive(Default)]
pub(super) struct Patience {
    since: Option<Duration>,
    spent: bool,
    waits: u32,
}

impl Patience {
    /// Has the call waited its share? Under loom, one wait is the share, so
    /// that the models stay finite.
    pub(super) fn spent(&self) -> bool {
        self.spent || (cfg!(loom) && self.waits > 0)
    }
}

/// How long a claim must look stuck before its claimant's liveness is read.
pub(super) const STUCK: Duration = if cfg!(loom) {
    Duration::ZERO
} else {
    sync::LIVENESS_INTERVAL
};

impl RawQueue<'_> {
    /// This handle's participant index in the current process, taking a new
    /// entry if the process is not the one that registered (a child after
    /// `fork`, or the first call).
    #[inline]
    pub(super) fn me(&self) -> Result<u32> {
        let cur = sync::current_process().0;
        if self.reg_stamp.load(Ordering::Acquire) == cur {
            return Ok(self.reg_idx.load(Ordering::Relaxed));
        }
        self.reregister(cur)
    }

    #[cold]
    fn reregister(&self, cur: u64) -> Result<u32> {
        loop {
            let old = self.reg_stamp.load(Ordering::Acquire);
            if old == cur {
                return Ok(self.reg_idx.load(Ordering::Relaxed));
            }
            if old == REGISTERING {
                sync::spin_loop();
                continue;
            }
            if self
                .reg_stamp
                .compare_exchange(old, REGISTERING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // An entry registered under another stamp is the process we were
            // forked from (or an earlier identity of ours): not ours to free.
            return match self.register(cur) {
                Ok(i) => {
                    self.reg_idx.store(i, Ordering::Relaxed);
                    self.reg_stamp.store(cur, Ordering::Release);
                    Ok(i)
                }
                Err(e) => {
                    self.reg_stamp.store(old, Ordering::Release);
                    Err(e)
                }
            };
        }
    }

    /// The processes a sleeper on this queue waits for, to be woken when
    /// one dies (see `sync::watch`): every participant but this process.
    /// Any of them may hold the claim that keeps the sleeper out, now or by
    /// the time it sleeps.
    pub(crate) fn watch_targets(&self) -> Vec<Target> {
        if cfg!(loom) {
            // Nothing is watched under loom (`sync::watch` is a stub), and
            // these loads would only multiply the interleavings to explore.
            return Vec::new();
        }
        let me = sync::current_process().0;
        let mut v: Vec<u64> = self
            .ctl
            .procs
            .iter()
            .map(|e| e.load(Ordering::Acquire))
            .filter(|&s| s != 0 && s != me && s != REGISTERING)
            .collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter()
            .map(|s| Target::Process(TaskStamp(s)))
            .collect()
    }

    /// Has the exit of every other participant wake sleepers on `word` (see
    /// `sync::watch`): whether a participant was found dead already, and
    /// how long a sleep may last before it looks for itself. The watch is
    /// kept in the handle from one sleep to the next (registering costs a
    /// table scan, a mutex and hash lookups: too much for every sleep of a
    /// ping-pong) and made anew when the participants changed
    /// (`procs_epoch`) or the watcher saw a death since (a death between
    /// two sleeps woke nobody, and only a fresh registration reports it).
    pub(super) fn watch_all(&self, word: &Futex) -> (bool, Duration) {
        #[cfg(loom)]
        {
            // Nothing is watched under loom (`sync::watch` is a stub).
            let w = sync::watch(word, &[]);
            (w.dead, w.interval())
        }
        #[cfg(not(loom))]
        {
            let addr = word as *const Futex as usize;
            let epoch = self.ctl.procs_epoch.load(Ordering::Acquire);
            let deaths = sync::deaths();
            let Ok(mut kept) = self.watched.lock() else {
                // Poisoned (a panic elsewhere): no watch, short sleeps.
                return (false, sync::LIVENESS_INTERVAL);
            };
            if let Some(w) = kept
                .iter()
                .find(|w| w.word == addr && w.epoch == epoch && w.deaths == deaths)
            {
                return (w.watch.dead, w.watch.interval());
            }
            // Register the new watch before the old one leaves, so that a
            // sleeper of another thread on the same word stays watched.
            let watch = sync::watch(word, &self.watch_targets());
            let r = (watch.dead, watch.interval());
            kept.retain(|w| w.word != addr);
            kept.push(QueueWatch {
                word: addr,
                epoch,
                deaths,
                watch,
            });
            r
        }
    }

    /// Takes an entry of the participant table for `me`.
    pub(super) fn register(&self, me: u64) -> Result<u32> {
        let procs = &self.ctl.procs;
        for (i, e) in procs.iter().enumerate() {
            if e.load(Ordering::Relaxed) == 0
                && e.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.set_token(i, me);
                self.ctl.roles[i].store(self.role, Ordering::SeqCst);
                self.joined();
                self.ctl.procs_epoch.fetch_add(1, Ordering::Release);
                self.newcomer();
                return Ok(i as u32);
            }
        }
        for (i, e) in procs.iter().enumerate() {
            let cur = e.load(Ordering::Acquire);
            if cur != 0
                && !self.entry_alive(i, cur)
                && e.compare_exchange(cur, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                // Every claim naming entry i now is the dead process's: we
                // have made none yet.
                self.set_token(i, me);
                self.ctl.roles[i].store(self.role, Ordering::SeqCst);
                self.joined();
                self.ctl.procs_epoch.fetch_add(1, Ordering::Release);
                self.recover_all_of(i as u32);
                self.newcomer();
                return Ok(i as u32);
            }
        }
        Err(Error::InvalidArgument(format!(
            "RawQueue: all {PROCS} entries of the participant table belong to live \
             processes; drop unused handles"
        )))
    }

    /// A participant joined: sleepers watch the participants they saw when
    /// they went to sleep, so they look again and watch this one too (else
    /// its death would be seen only at their periodic look). Costs nothing
    /// when nobody sleeps.
    fn newcomer(&self) {
        if !cfg!(loom) {
            self.get_notify().notify();
            self.put_notify().notify();
        }
    }

    /// Gives this handle's entry back (when it drops), after recovering any
    /// claim of ours still in the slots (a leaked grant).
    pub(super) fn unregister(&self) {
        let cur = sync::current_process().0;
        if self.reg_stamp.load(Ordering::Acquire) != cur {
            // Inherited across fork and never used here: the entry is the
            // parent's.
            return;
        }
        let i = self.reg_idx.load(Ordering::Relaxed);
        self.recover_all_of(i);
        if let Some(e) = self.ctl.procs.get(i as usize) {
            // The role goes first (see `links`): a look that still sees the
            // entry counts it for nobody.
            if e.load(Ordering::Acquire) == cur {
                self.ctl.roles[i as usize].store(0, Ordering::SeqCst);
            }
            if e.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.ctl.procs_epoch.fetch_add(1, Ordering::Release);
                self.left(self.role);
            }
        }
    }

    /// Recovers every claim that names entry `i` (whose owner is gone).
    fn recover_all_of(&self, i: u32) {
        for k in 0..self.slots {
            let hdr = self.hdr(k);
            let s = hdr.state.load(Ordering::Acquire);
            if s & (READING | WRITING) != 0 && claimant(s) == i {
                self.recover_claim(hdr, s);
            }
        }
    }

    /// Records the token of the process `me` that now holds entry `i`.
    fn set_token(&self, i: usize, me: u64) {
        let token = sync::process_token(TaskStamp(me).tid()).unwrap_or(0);
        self.ctl.tokens[i].store(token, Ordering::Release);
    }

    /// Whether participant `who` (an index from a claim) is alive, or may be.
    fn participant_alive(&self, who: u32) -> bool {
        match self.ctl.procs.get(who as usize) {
            Some(e) => {
                let v = e.load(Ordering::Acquire);
                v != 0 && self.entry_alive(who as usize, v)
            }
            None => false,
        }
    }

    /// Whether the process of entry `i`, which holds stamp `v`, may be
    /// alive: its pid runs with its start time, and, where both are known,
    /// with its token. The token tells apart a process that reused the pid
    /// within the same clock tick of start time (10 ms), which the start
    /// time cannot.
    pub(super) fn entry_alive(&self, i: usize, v: u64) -> bool {
        if !stamp_alive(v) {
            return false;
        }
        let recorded = self.ctl.tokens[i].load(Ordering::Acquire);
        if recorded == 0 {
            return true;
        }
        match sync::process_token(TaskStamp(v).tid()) {
            Some(now) => now == recorded,
            None => true,
        }
    }

    /// Whether the claimant of `s` is dead, read only once the same claim
    /// has blocked us for [`STUCK`] (or at once when `now` is true, and at
    /// first sight of a zero-copy grant's claim).
    pub(super) fn claimant_dead(&self, s: u64, now: bool) -> bool {
        let who = claimant(s);
        if who == self.reg_idx.load(Ordering::Relaxed)
            && self.reg_stamp.load(Ordering::Acquire) == sync::current_process().0
        {
            // Our own handle: a thread of ours is mid-operation.
            return false;
        }
        if !now {
            let t = sync::now().as_nanos() as u64;
            if self.stuck.0.load(Ordering::Relaxed) != s {
                self.stuck.0.store(s, Ordering::Relaxed);
                self.stuck.1.store(t, Ordering::Relaxed);
                // A plain claim in our way is almost always about to end;
                // a zero-copy grant (LONG) may be held for long, so its
                // owner's liveness is read once at first sight: a grant
                // left by a dead process is not reported as a held one.
                if !STUCK.is_zero() && s & LONG == 0 {
                    return false;
                }
            } else if t.saturating_sub(self.stuck.1.load(Ordering::Relaxed))
                < STUCK.as_nanos() as u64
            {
                return false;
            }
        }
        !self.participant_alive(who)
    }

    /// Undoes a dead claimant's claim `s` with a CAS from exactly `s`: a
    /// put becomes `SKIP` (the head steps over it), a lease is given back
    /// (`BACK`: delivered again), a plain get frees the slot for the next
    /// lap (its message went with the dead consumer).
    pub(super) fn recover_claim(&self, hdr: &SlotHdr, s: u64) {
        let pos = s & POS_MASK;
        let to = match s & (READING | WRITING) {
            WRITING => SKIP | pos,
            READING if s & LEASE != 0 => BACK | pos,
            READING => p40(pos.wrapping_add(self.slots)),
            _ => return,
        };
        if self.end_claim(hdr, s, to) {
            self.ctl.not_empty.0.notify();
            self.ctl.not_full.0.notify();
        }
    }

    /// CASes a claim's state `s` (ours, or a dead one's) to `to`, keeping
    /// the hints right: `holes` and `backs` are raised before a `SKIP` or
    /// `BACK` is made (and lowered again if the CAS fails), `leases`
    /// lowered after a lease claim is gone.
    pub(super) fn end_claim(&self, hdr: &SlotHdr, s: u64, to: u64) -> bool {
        let hints = &self.ctl.lease.0;
        match to & KIND {
            SKIP => self.hole_coming(),
            BACK => {
                hints.raise(BACK_ONE);
            }
            _ => {}
        }
        // SYNC POINT: AcqRel: Release for whoever takes the slot next (the
        // message bytes, our reads of them); Acquire for the claim's own
        // writes when it is a dead one's.
        let ok = hdr
            .state
            .compare_exchange(s, to, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ok && s & (READING | LEASE) == READING | LEASE {
            hints.lower(LEASE_ONE);
        }
        if !ok {
            match to & KIND {
                SKIP => self.hole_gone(),
                BACK => {
                    hints.lower(BACK_ONE);
                }
                _ => {}
            }
        }
        ok
    }

    /// Steps the head over position `h`, which holds `SKIP` (state `s`):
    /// frees the slot for the next lap, then moves the head on.
    pub(super) fn step_over(&self, h: u64, s: u64) {
        if self
            .hdr(h)
            .state
            .compare_exchange(
                s,
                p40(h.wrapping_add(self.slots)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.hole_gone();
            self.ctl.not_full.0.notify();
        }
        self.help_head_on(h);
    }

    fn help_head_on(&self, h: u64) {
        let _ = self.ctl.head.0.compare_exchange(
            h,
            h.wrapping_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Helps the head on over position `h` where that needs no message to
    /// be taken: a skipped position, a dead put, a read already claimed (by
    /// a live or dead consumer), or a head a lap behind. Returns whether it
    /// did anything.
    pub(super) fn help_head(&self, h: u64, check_dead: bool) -> bool {
        let hdr = self.hdr(h);
        let s = hdr.state.load(Ordering::Acquire);
        let d = diff40(s, h);
        let slots = self.slots as i64;
        match (s & KIND, d) {
            (SKIP, 0) if s == SKIP | p40(h) => {
                self.step_over(h, s);
                true
            }
            (WRITING, 0) => {
                let dead = self.claimant_dead(s, check_dead);
                if dead {
                    self.recover_claim(hdr, s);
                }
                dead
            }
            (READING, 0) => {
                if self.claimant_dead(s, check_dead) {
                    self.recover_claim(hdr, s);
                }
                self.help_head_on(h);
                true
            }
            (0, _) if d == slots || d == slots + 1 => {
                self.help_head_on(h);
                true
            }
            (k, _) if k != 0 && d == slots => {
                self.help_head_on(h);
                true
            }
            _ => false,
        }
    }

    /// Waits a little for the state of `hdr` to move on from `s`: a plain
    /// put or get in flight. All the waits of one call share `patience`, so
    /// the call waits at most [`IN_FLIGHT`](super::IN_FLIGHT) in all however
    /// many in-flight copies it meets one after another.
    pub(super) fn settle(&self, hdr: &SlotHdr, s: u64, patience: &mut Patience) {
        patience.waits += 1;
        if cfg!(loom) {
            sync::spin_loop();
            return;
        }
        for i in 0u32.. {
            if hdr.state.load(Ordering::Acquire) != s {
                return;
            }
            if i % 64 == 63 {
                let now = sync::now();
                let start = *patience.since.get_or_insert(now);
                let waited = now.saturating_sub(start);
                if waited >= super::IN_FLIGHT {
                    patience.spent = true;
                    return;
                }
                if waited >= SPIN_IN_FLIGHT {
                    // The claimant may be preempted, possibly on this CPU:
                    // let it run.
                    sync::yield_now();
                    continue;
                }
            }
            sync::spin_loop();
        }
    }

    /// The error for a claim loop that used up its budget.
    pub(super) fn no_progress(&self, index: &str, pos: u64) -> Error {
        Error::corrupted(
            "",
            format!(
                "queue state at {index} {pos} kept changing for {} steps without the queue \
                 moving (written by a process that does not follow the protocol)",
                super::BUDGET
            ),
        )
    }

    /// The error for a claim of ours that someone else ended.
    pub(super) fn claim_lost(op: &str, pos: u64) -> Error {
        Error::corrupted(
            "",
            format!(
                "the {op} at position {pos} lost its claim to another process (a wrong \
                 liveness verdict, or a write over the queue); nothing was {}",
                if op == "put" { "sent" } else { "taken" }
            ),
        )
    }
}

/// Whether the process named by a participant entry may be alive.
fn stamp_alive(v: u64) -> bool {
    let st = TaskStamp(v);
    sync::task_alive(st.tid(), Some(st))
}

/// A death watch kept by a queue handle (see [`RawQueue::watch_all`]).
#[cfg(not(loom))]
pub(crate) struct QueueWatch {
    /// The address of the word slept on (a notify in the queue's memory,
    /// mapped as long as the handle lives).
    word: usize,
    /// `procs_epoch` and the death epoch when it was made.
    epoch: u32,
    deaths: u64,
    watch: sync::Watch,
}

#[cfg(not(loom))]
impl std::fmt::Debug for QueueWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueWatch")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_entries_are_dead() {
        // tid 0 never names a running task.
        assert!(!stamp_alive(0));
    }

    #[test]
    fn this_process_is_alive() {
        assert!(stamp_alive(sync::current_process().0));
    }
}
