//! Who waits in a `RawBarrier`: each arrival names its process in the
//! slot it owns, and sleepers read the slots of their generation to watch
//! and judge the other parties (see the module documentation of
//! `raw::barrier`).

use super::*;

/// The most processes a sleeper registers for a death watch.
const MAX_WATCHED: usize = 256;

impl RawBarrier<'_> {
    /// Names this process in slot `i` for generation `g`, which it owns by
    /// its arrival: CASes from the values read, stamp first, then the key
    /// (Release, so a reader that sees the key sees the stamp).
    pub(super) fn record(&self, i: u32, g: u32, me: TaskStamp) {
        if i >= self.parties {
            return;
        }
        let Some(slot) = self.bank(g).get(i as usize) else {
            return;
        };
        let old = slot.stamp.load(Ordering::Relaxed);
        let _ = slot
            .stamp
            .compare_exchange(old, me.0, Ordering::Relaxed, Ordering::Relaxed);
        let key = slot.key.load(Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire key load in `parties_in`.
        let _ = slot.key.compare_exchange(
            key,
            VALID | u64::from(g),
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Calls `f` with every other party waiting in `s` (generation `g`):
    /// the stamps in the slots tagged `g` below the count (every slot while
    /// `TRIPPING`), and a tripper's pid (stamp with start 0) when its slot
    /// is not written yet. Each slot is read once: key, then stamp.
    fn parties_in(&self, s: u64, g: u32, me: TaskStamp, mut f: impl FnMut(TaskStamp) -> bool) {
        let tripping = s & TRIPPING != 0;
        let n = if tripping {
            self.parties
        } else {
            count(s).min(self.parties)
        };
        let mut tripper_named = !tripping;
        let tripper = count(s);
        for slot in self.bank(g).iter().take(n as usize) {
            // SYNC POINT: Acquire pairs with the Release key CAS in `record`.
            if slot.key.load(Ordering::Acquire) != VALID | u64::from(g) {
                continue;
            }
            let stamp = TaskStamp(slot.stamp.load(Ordering::Relaxed));
            tripper_named |= stamp.tid() == tripper;
            if stamp.tid() == 0 || stamp.tid() == me.tid() {
                continue;
            }
            if f(stamp) {
                return;
            }
        }
        if !tripper_named && tripper != me.tid() {
            f(TaskStamp::new(tripper, TaskStamp::START_UNKNOWN));
        }
    }

    /// For loom models: whether a waiting party would now find the party
    /// `pid` among those it watches (or the barrier broken already), i.e.
    /// whether the others must notice its death by themselves.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn names(&self, pid: u32) -> bool {
        let s = self.ctl.state.load(Ordering::Acquire);
        let mut hit = s & BROKEN != 0;
        self.parties_in(s, gen(s), TaskStamp(0), |p| {
            hit |= p.tid() == pid;
            hit
        });
        hit
    }

    /// The processes a sleeper of generation `g` watches: the other
    /// parties' (deduplicated; at most [`MAX_WATCHED`], beyond which the
    /// sleeper is not fully watched and looks for itself at the liveness
    /// interval).
    pub(super) fn targets(&self, s: u64, g: u32, me: TaskStamp) -> Vec<Target> {
        let mut t = Vec::new();
        self.parties_in(s, g, me, |p| {
            t.push(p.0);
            false
        });
        t.sort_unstable();
        t.dedup();
        t.truncate(MAX_WATCHED);
        t.into_iter()
            .map(|p| Target::Process(TaskStamp(p)))
            .collect()
    }

    /// The slots of generation `g`: two banks of `parties` slots, used by
    /// alternate generations, so that a party of `g` that writes its slot
    /// late (stalled between its arrival and `record` while its generation
    /// tripped) writes where generation `g + 1` does not look. (With more
    /// processes than parties, a party stalled for two whole generations
    /// can still write over a slot of `g + 2`; see the crash cases.)
    fn bank(&self, g: u32) -> &[Slot] {
        let n = self.parties as usize;
        let b = (g % 2) as usize * n;
        self.slots.get(b..b + n).unwrap_or(&[])
    }

    /// Whether a party waiting in `s` is dead (only "no such task").
    pub(super) fn any_dead(&self, s: u64, g: u32, me: TaskStamp) -> bool {
        let mut dead = false;
        self.parties_in(s, g, me, |p| {
            let stamp = p.start_known().then_some(p);
            dead = sync::liveness(p.tid(), stamp) == Liveness::Dead;
            dead
        });
        dead
    }
}

/// Heap barriers for loom models (only under `--cfg loom`).
#[cfg(loom)]
pub mod model {
    use super::*;

    /// A barrier on the heap, the same algorithm as in a segment.
    pub struct HeapBarrier {
        ctl: BarrierCtl,
        slots: Vec<Slot>,
    }

    impl HeapBarrier {
        /// An empty barrier for `parties` parties.
        pub fn new(parties: u32) -> HeapBarrier {
            HeapBarrier {
                ctl: BarrierCtl::new(parties),
                slots: (0..2 * parties).map(|_| Slot::new()).collect(),
            }
        }

        /// A handle.
        pub fn handle(&self) -> RawBarrier<'_> {
            RawBarrier::from_parts(&self.ctl, &self.slots)
        }
    }
}
