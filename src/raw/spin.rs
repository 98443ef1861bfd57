//! `AdaptiveSpin`: how long a blocking call spins before it sleeps.
//!
//! A wake-up through the futex costs about 5 µs on a 2-core VM, a reply
//! caught by spinning well under 1 µs, so spinning first is what makes the
//! floor reachable. But two processes sharing one CPU never gain from it:
//! the spinner burns the time its peer needs. So the budget starts at
//! 20 µs, halves with every spin that does not pay (to none below 1 µs),
//! goes back up when one does, and while at none, every 256th wait probes
//! with a 60 µs spin to find out whether spinning pays again. The probe must
//! outlast a wake-up of the peer (5–45 µs here): when both sides of a ping-pong
//! have fallen back to sleeping, each reply needs one, and a shorter probe
//! would never see spinning pay.
//!
//! The state is process-local (in the handle), shared by the handle's
//! threads through relaxed atomics: it is a heuristic, races only blur it.

use crate::sync::{self, AtomicU32, AtomicU64, Ordering};

const START_NS: u64 = if cfg!(loom) { 0 } else { 20_000 };
const PROBE_EVERY: u32 = 256;
const PROBE_NS: u64 = 60_000;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct AdaptiveSpin {
    budget_ns: AtomicU64,
    waits_since_probe: AtomicU32,
}

impl AdaptiveSpin {
    pub(crate) fn new() -> AdaptiveSpin {
        AdaptiveSpin {
            budget_ns: AtomicU64::new(START_NS),
            waits_since_probe: AtomicU32::new(0),
        }
    }

    /// Spins until `ready()` gives `Some` or the budget is spent; records
    /// whether it paid.
    pub(crate) fn spin<T>(&self, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        let mut budget = self.budget_ns.load(Ordering::Relaxed);
        if budget == 0 {
            let n = self.waits_since_probe.fetch_add(1, Ordering::Relaxed) + 1;
            if n < PROBE_EVERY || cfg!(loom) {
                return None;
            }
            self.waits_since_probe.store(0, Ordering::Relaxed);
            budget = PROBE_NS;
        }
        let start = sync::now();
        let mut i = 0u32;
        loop {
            if let Some(v) = ready() {
                self.budget_ns
                    .store(START_NS.max(budget), Ordering::Relaxed);
                return Some(v);
            }
            i = i.wrapping_add(1);
            if i % 32 == 0 && (sync::now() - start).as_nanos() as u64 >= budget {
                let b = self.budget_ns.load(Ordering::Relaxed) / 2;
                self.budget_ns
                    .store(if b < 1_000 { 0 } else { b }, Ordering::Relaxed);
                return None;
            }
            sync::spin_loop();
        }
    }
}
