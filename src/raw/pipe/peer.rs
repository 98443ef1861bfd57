//! The peer: whether it is gone, and how an end waits for it (spin, sleep,
//! death watch).

use super::*;

/// What an end knows of its peer, and how it waits for it.
/// How hard [`Peer::gone_by`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// The closed flag; the clock every 256th look; `/proc` rate-limited.
    Cheap,
    /// The closed flag; the clock; `/proc` rate-limited.
    Timed,
    /// The closed flag and `/proc`, now.
    Force,
}

#[derive(Debug)]
pub(super) struct Peer<'a> {
    pub(super) end: &'a EndCtl,
    pub(super) gone: bool,
    /// The death watch on the peer's process, kept from one sleep to the
    /// next (registering costs a mutex and a few hash lookups, too much for
    /// every sleep of a ping-pong); made anew when the peer or the word
    /// slept on changes. The word lives in the pipe's memory, mapped for
    /// `'a`, which outlives this handle.
    pub(super) watched: Option<PeerWatch>,
    /// How long a wait spins before it sleeps.
    pub(super) spin: AdaptiveSpin,
    /// When the peer's liveness was last read (monotonic nanoseconds).
    pub(super) last_check: u64,
    /// Unforced liveness looks since the handle was made.
    pub(super) looks: u32,
}

/// The peer to watch for death: none before it has opened its end (stamp
/// 0). A zero stamp would be "unwatchable", and a sleeper waiting for a
/// peer to come would wake every liveness interval for nothing; the peer's
/// `attach` wakes the sleepers instead.
pub(super) fn peer_targets(stamp: TaskStamp) -> Vec<Target> {
    if stamp.0 == 0 {
        Vec::new()
    } else {
        vec![Target::Process(stamp)]
    }
}

/// See [`Peer::watched`]: the word's address, the peer's stamp, the death
/// epoch when it was made, the watch.
pub(super) struct PeerWatch {
    word: usize,
    stamp: u64,
    deaths: u64,
    watch: sync::Watch,
}

impl std::fmt::Debug for PeerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerWatch")
            .field("stamp", &self.stamp)
            .finish_non_exhaustive()
    }
}

impl<'a> Peer<'a> {
    /// Fresh wait state for the peer at `end`.
    pub(super) fn of(end: &'a EndCtl) -> Peer<'a> {
        Peer {
            end,
            gone: false,
            watched: None,
            spin: AdaptiveSpin::new(),
            last_check: 0,
            looks: 0,
        }
    }

    /// Whether the other end is gone (closed, or its process died). Unless
    /// `force`, the closed flag is read every time but the clock only every
    /// 256th time, and `/proc` at most once per `LIVENESS_INTERVAL / 4`.
    pub(super) fn gone(&mut self, force: bool) -> bool {
        self.gone_by(if force { Look::Force } else { Look::Cheap })
    }

    /// Whether the other end is gone, looked at now (the closed flag and
    /// `/proc`), through `&self`: nothing is cached, so a later `gone`
    /// looks again.
    pub(super) fn gone_now(&self) -> bool {
        if self.gone || self.end.closed.load(Ordering::Acquire) != 0 {
            return true;
        }
        let stamp = TaskStamp(self.end.stamp.load(Ordering::Acquire));
        stamp.0 != 0 && !sync::task_alive(stamp.tid(), Some(stamp))
    }

    /// [`gone`](Peer::gone) without the every-256th-look count: the clock
    /// every time, `/proc` at most once per `LIVENESS_INTERVAL / 4`.
    pub(super) fn gone_timed(&mut self) -> bool {
        self.gone_by(Look::Timed)
    }

    pub(super) fn gone_by(&mut self, look: Look) -> bool {
        if self.gone {
            return true;
        }
        if self.end.closed.load(Ordering::Acquire) != 0 {
            self.gone = true;
            return true;
        }
        let stamp = TaskStamp(self.end.stamp.load(Ordering::Acquire));
        if stamp.0 == 0 {
            // Not opened yet: nobody to be disconnected from.
            return false;
        }
        if look == Look::Cheap {
            // Off the hot path: a clock read only every 256th look.
            self.looks = self.looks.wrapping_add(1);
            if self.looks % 256 != 0 {
                return false;
            }
        }
        let now = sync::now().as_nanos() as u64;
        if look != Look::Force
            && now.saturating_sub(self.last_check) < (sync::LIVENESS_INTERVAL / 4).as_nanos() as u64
        {
            return false;
        }
        self.last_check = now;
        if !sync::task_alive(stamp.tid(), Some(stamp)) {
            self.gone = true;
        }
        self.gone
    }

    /// Has the peer's exit wake sleepers on `word` (see [`Peer::watched`]):
    /// whether the watch found it dead already, and how long a sleep may
    /// last before it looks for itself. The kept watch is made anew after
    /// any death the watcher saw since it was made: a death between two
    /// sleeps woke nobody, and only a fresh registration reports it.
    pub(super) fn watch_peer(
        &mut self,
        word: &Futex,
        stamp: TaskStamp,
    ) -> (bool, std::time::Duration) {
        let addr = word as *const Futex as usize;
        let deaths = sync::deaths();
        let same = self
            .watched
            .as_ref()
            .is_some_and(|w| w.word == addr && w.stamp == stamp.0 && w.deaths == deaths);
        if !same {
            // Unregister the old one before the new one registers.
            self.watched = None;
            self.watched = Some(PeerWatch {
                word: addr,
                stamp: stamp.0,
                deaths,
                watch: sync::watch(word, &peer_targets(stamp)),
            });
        }
        let w = &self.watched.as_ref().expect("set above").watch;
        (w.dead, w.interval())
    }

    /// Spins (adaptively, unless the deadline has passed), then sleeps on
    /// `notify` until `ready()` holds, the deadline passes (`Timeout`) or
    /// the peer is gone (`Disconnected`). Every round does a bounded amount
    /// of work (`ready` is bounded), so a call with a passed deadline
    /// returns after one round whatever a peer writes.
    pub(super) fn wait(
        &mut self,
        notify: &Notify,
        deadline: Deadline,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        if !deadline.expired() {
            // Spin first (adaptively, see `AdaptiveSpin`): a reply often
            // comes within a microsecond.
            let got = self.spin.spin(deadline, || match ready() {
                Ok(false) => None,
                r => Some(r),
            });
            match got {
                Some(Ok(_)) => return Ok(()),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        let mut force_check = false;
        // A watch that finds the peer dead forces one liveness read per
        // call; if that read disagrees (the peer alive, or unknown), the
        // call sleeps with the short interval rather than loop.
        let mut looked_at_dead = false;
        loop {
            if self.gone(force_check) {
                // Last look: the peer may have sent before it went.
                if ready()? {
                    return Ok(());
                }
                return Err(Error::Disconnected { origin: ORIGIN });
            }
            if deadline.expired() {
                if ready()? {
                    return Ok(());
                }
                // Time's up: a peer that died says so rather than Timeout
                // (as a WaitSet reported it ready), with `/proc` read at
                // most once per LIVENESS_INTERVAL / 4.
                return Err(if self.gone_timed() {
                    Error::Disconnected { origin: ORIGIN }
                } else {
                    Error::Timeout { origin: ORIGIN }
                });
            }
            // Have the peer's exit wake us (see `sync::watch`): then the
            // sleep needs no short interval to notice a death.
            let deaths = sync::deaths();
            // (Under loom nothing is watched: skip the load, which would
            // only multiply the interleavings to explore.)
            let stamp = if cfg!(loom) {
                TaskStamp(0)
            } else {
                TaskStamp(self.end.stamp.load(Ordering::Acquire))
            };
            let (dead, interval) = self.watch_peer(notify.futex(), stamp);
            if dead && !looked_at_dead {
                looked_at_dead = true;
                force_check = true;
                continue;
            }
            let interval = if dead {
                sync::LIVENESS_INTERVAL
            } else {
                interval
            };
            let (until, is_deadline) = deadline.or_within(interval);
            let mut r = Ok(false);
            let peer = self.end;
            let woken = notify.sleep(until, || {
                r = ready();
                // A close that came before we set the sleepers bit must not
                // be slept through (its wake-all is already spent).
                !matches!(r, Ok(false)) || peer.closed.load(Ordering::Acquire) != 0
            });
            if r? {
                return Ok(());
            }
            if ready()? {
                return Ok(());
            }
            if !woken && is_deadline || deadline.expired() {
                // The top of the loop says Timeout, or Disconnected if the
                // peer died meanwhile (as a WaitSet would report it ready).
                continue;
            }
            force_check = !woken || sync::deaths() != deaths;
        }
    }
}
