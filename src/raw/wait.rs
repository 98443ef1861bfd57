//! Waiting on many cores at once: the algorithm under [`WaitSet`](crate::WaitSet).
//!
//! # Algorithm
//!
//! Every source has a futex word that changes whenever its readiness may
//! change (a queue's `not_empty`/`not_full` event counts, a pipe ring's
//! `readable`/`writable`, an event's own word) and a readiness check that
//! reads shared state once and claims nothing. A wait:
//!
//! 1. checks every source; any ready: return them all (level-triggered);
//! 2. arms every source: registers as a sleeper on its word (the sleepers
//!    bit of a `Notify`, `WAITERS` of an event) and notes the value, then a
//!    SeqCst fence (inside `arm`);
//! 3. checks every source again: a change published before step 2 is seen
//!    here, and one published after it finds the sleepers bit and wakes;
//! 4. sleeps on all the words at once (`futex_waitv`, one syscall) until
//!    one changes, the deadline, or the liveness interval;
//! 5. after a sleep that ended by the interval, the next check also reads
//!    liveness: a source blocked by a dead claimant or a dead peer is ready
//!    (a dead queue claim is recovered as a consumer or producer would).
//!
//! | source         | ready when                                                       |
//! |----------------|------------------------------------------------------------------|
//! | queue get      | a message or a skipped put at the head, or closed; a dead put at the head |
//! | queue put      | room at the tail (by slot and by count), or closed; a dead claim in the way |
//! | pipe receive   | bytes published, the peer's end closed, the peer's process dead  |
//! | pipe send      | room for a message of the given length, peer closed or dead      |
//! | event          | the flag is up                                                   |
//! | lock           | free, a stale hand-off, or its owner's thread dead               |
//!
//! Ready says the matching `try_` call would not say `Empty`/`Full` when
//! the check ran; another consumer may take the message first, so callers
//! use `try_` calls after a wait and wait again on `Empty`/`Full`.
//!
//! # Crash cases
//!
//! The wait claims nothing, so a waiter that dies leaves at most a sleepers
//! bit behind (one spurious wake for the next notifier, as for any
//! sleeper). A peer that dies is noticed within one liveness interval.
//! A peer that scribbles a word can make the wait return early (it then
//! re-checks and sleeps again), never read out of bounds: the checks read
//! atomics only and compare them, they index nothing.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::raw::{RawEvent, RawLock, RawPipe, RawQueue};
use crate::sync::{self, Deadline, Futex, Target};

/// The most sources one wait can watch: the kernel's limit for one
/// `futex_waitv` call.
pub(crate) const MAX_SOURCES: usize = sync::WAIT_ANY_MAX;

/// One thing to wait for.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// A message to get (or the queue closed).
    QueueGet(&'a RawQueue<'a>),
    /// Room to put (or the queue closed).
    QueuePut(&'a RawQueue<'a>),
    /// A message to receive (or the peer gone).
    PipeRecv(&'a RawPipe<'a>),
    /// Room to send a message of this length (or the peer gone).
    PipeSend(&'a RawPipe<'a>, usize),
    /// The flag up.
    Event(&'a RawEvent),
    /// The lock free (or its owner dead).
    Lock(&'a RawLock),
    /// The process exited.
    #[cfg(not(loom))]
    Exit(&'a crate::raw::exit::RawExit),
}

impl<'a> Source<'a> {
    /// Refuses a source that can never be ready the way it is asked for.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Source::PipeRecv(p) => p.recv_notify().map(drop),
            Source::PipeSend(p, _) => p.send_notify().map(drop),
            _ => Ok(()),
        }
    }

    /// See the module documentation.
    pub(crate) fn ready(&self, check_dead: bool) -> bool {
        match *self {
            Source::QueueGet(q) => q.get_ready(check_dead),
            Source::QueuePut(q) => q.put_ready(check_dead),
            Source::PipeRecv(p) => p.recv_ready(check_dead),
            Source::PipeSend(p, len) => p.send_ready(len, check_dead),
            Source::Event(e) => e.is_set(),
            Source::Lock(l) => l.free_ready(check_dead),
            #[cfg(not(loom))]
            Source::Exit(x) => x.exited(),
        }
    }

    /// The tasks whose death makes this source ready (see `sync::watch`).
    fn watch_targets(&self) -> Vec<Target> {
        match *self {
            Source::QueueGet(q) | Source::QueuePut(q) => q.watch_targets(),
            Source::PipeRecv(p) | Source::PipeSend(p, _) => p.watch_targets(),
            Source::Event(_) => Vec::new(),
            Source::Lock(l) => l.owner_target(),
            #[cfg(not(loom))]
            Source::Exit(x) => vec![x.target()],
        }
    }

    /// Registers as a sleeper; the word and the value to sleep on.
    fn arm(&self) -> Option<(&'a Futex, u32)> {
        match *self {
            Source::QueueGet(q) => {
                let n = q.get_notify();
                Some((n.futex(), n.arm()))
            }
            Source::QueuePut(q) => {
                let n = q.put_notify();
                Some((n.futex(), n.arm()))
            }
            Source::PipeRecv(p) => p.recv_notify().ok().map(|n| (n.futex(), n.arm())),
            Source::PipeSend(p, _) => p.send_notify().ok().map(|n| (n.futex(), n.arm())),
            Source::Event(e) => Some((e.futex(), e.arm())),
            Source::Lock(l) => Some(l.arm()),
            #[cfg(not(loom))]
            Source::Exit(x) => Some(x.armed()),
        }
    }
}

/// Collects into `out` the indices of the ready sources; whether any is.
fn collect(sources: &[Source<'_>], check_dead: bool, out: &mut Vec<usize>) -> bool {
    out.clear();
    out.extend(
        sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ready(check_dead))
            .map(|(i, _)| i),
    );
    !out.is_empty()
}

/// Waits until at least one of `sources` is ready or `deadline` passes.
/// On return `out` holds the indices of every source that was ready at the
/// last check (empty on timeout). Returns false on timeout. Never returns
/// before the deadline with nothing ready; with no sources, sleeps until the
/// deadline.
///
/// # Errors
/// [`Error::InvalidArgument`] for more than [`MAX_SOURCES`] sources.
pub(crate) fn wait(
    sources: &[Source<'_>],
    deadline: Deadline,
    out: &mut Vec<usize>,
) -> Result<bool> {
    if sources.len() > MAX_SOURCES {
        return Err(too_many(sources.len()));
    }
    let _pass = LockWakes::new(sources);
    wait_inner(sources, deadline, out)
}

fn wait_inner(sources: &[Source<'_>], deadline: Deadline, out: &mut Vec<usize>) -> Result<bool> {
    let mut words: Vec<(&Futex, u32)> = Vec::with_capacity(sources.len());
    // The lock sources armed, with the wake count they armed at.
    let mut locks: Vec<(&RawLock, u32)> = Vec::new();
    let mut check_dead = false;
    let mut looked_at_dead = false;
    loop {
        if collect(sources, check_dead, out) {
            return Ok(true);
        }
        if deadline.expired() {
            // One last look, with liveness, so that a wait of zero still
            // sees a dead peer.
            return Ok(collect(sources, true, out));
        }
        // Have the exit of anyone a source depends on wake us (see
        // `sync::watch`), then arm every source.
        let deaths = sync::deaths();
        let mut interval = sync::WATCHED_INTERVAL;
        let mut dead = false;
        let mut watches = Vec::with_capacity(sources.len());
        words.clear();
        locks.clear();
        for s in sources {
            let Some((word, val)) = s.arm() else {
                continue;
            };
            if let Source::Lock(l) = s {
                locks.push((*l, val));
            }
            let targets = s.watch_targets();
            if !targets.is_empty() {
                let w = sync::watch(word, &targets);
                interval = interval.min(w.interval());
                dead |= w.dead;
                watches.push(w);
            }
            words.push((word, val));
        }
        if dead && !looked_at_dead {
            looked_at_dead = true;
            check_dead = true;
            continue;
        }
        if collect(sources, false, out) {
            return Ok(true);
        }
        let (until, is_deadline) = deadline.or_within(interval);
        let woken = if words.is_empty() {
            sleep_until(until)
        } else {
            sync::wait_any(&words, until)
        };
        drop(watches);
        undo_handoffs(&locks);
        if !woken && is_deadline {
            return Ok(collect(sources, true, out));
        }
        check_dead = !woken || sync::deaths() != deaths;
    }
}

/// Sleeps until `until` with nothing to wake it (a wait on no sources).
fn sleep_until(until: Option<Duration>) -> bool {
    let f = Futex::new(0);
    // Nobody wakes `f`: this returns at `until` (or spuriously).
    f.wait(0, until)
}

pub(crate) fn too_many(n: usize) -> Error {
    Error::InvalidArgument(format!(
        "a wait can watch at most {MAX_SOURCES} sources (one futex_waitv call), not {n}; \
         split them over several threads or wait sets"
    ))
}

/// One look at every source, for a future: the indices of the ready ones
/// in `out`; whether any is.
#[cfg(not(loom))]
pub(crate) fn poll_once(sources: &[Source<'_>], check_dead: bool, out: &mut Vec<usize>) -> bool {
    collect(sources, check_dead, out)
}

/// Arms every source (as a sleeper), for a future: the words and values
/// to be woken on, and every task whose death makes a source ready.
#[cfg(not(loom))]
pub(crate) fn arm_all<'a>(
    sources: &[Source<'a>],
    locks: &mut Vec<(&'a RawLock, u32)>,
) -> (Vec<(&'a Futex, u32)>, Vec<Target>) {
    let mut words = Vec::with_capacity(sources.len());
    let mut targets = Vec::new();
    locks.clear();
    for s in sources {
        if let Some(w) = s.arm() {
            if let Source::Lock(l) = *s {
                locks.push((l, w.1));
            }
            words.push(w);
            targets.extend(s.watch_targets());
        }
    }
    (words, targets)
}

/// After a sleep: gives up a fresh fair hand-off that an unlock may have
/// sent to this wait, which cannot take it (see
/// [`RawLock::undo_handoff_since`]).
pub(crate) fn undo_handoffs(locks: &[(&RawLock, u32)]) {
    for &(l, since) in locks {
        l.undo_handoff_since(since);
    }
}

/// An unlock wakes one sleeper. A wait on a lock may take that wake-up in
/// the stead of a locker still asleep, and the unlock has cleared
/// `WAITERS`, so nothing else will wake the locker. This guard reads each
/// lock's wake count when a wait begins and, when it drops, passes a
/// wake-up on for every lock whose count moved meanwhile
/// ([`RawLock::pass_wake`]).
pub(crate) struct LockWakes<'s, 'a> {
    sources: &'s [Source<'a>],
    /// Index of a lock source, and its wake count at the start.
    seqs: Vec<(usize, u32)>,
}

impl<'s, 'a> LockWakes<'s, 'a> {
    pub(crate) fn new(sources: &'s [Source<'a>]) -> LockWakes<'s, 'a> {
        let seqs = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Source::Lock(l) => Some((i, l.wake_seq())),
                _ => None,
            })
            .collect();
        LockWakes { sources, seqs }
    }

    #[cfg(not(loom))]
    pub(crate) fn sources(&self) -> &'s [Source<'a>] {
        self.sources
    }
}

impl Drop for LockWakes<'_, '_> {
    fn drop(&mut self) {
        for &(i, seq) in &self.seqs {
            if let Some(Source::Lock(l)) = self.sources.get(i) {
                l.pass_wake(seq);
            }
        }
    }
}

/// Under loom: waits on raw cores, as a `WaitSet` does on handles (which
/// need segments, not available in a model).
#[cfg(loom)]
pub mod model {
    use super::*;

    /// Waits, with no deadline, until a message can be got from `q` or
    /// `ev` is set; returns the ready ones (0: the queue, 1: the event).
    pub fn wait_get_or_set(q: &RawQueue<'_>, ev: &RawEvent) -> Vec<usize> {
        let mut out = Vec::new();
        let ready = wait(
            &[Source::QueueGet(q), Source::Event(ev)],
            Deadline::NEVER,
            &mut out,
        )
        .expect("wait");
        assert!(ready, "an untimed wait returned with nothing ready");
        out
    }
}
