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

use std::time::Duration;

use crate::sync::{self, AtomicU32, AtomicU64, Deadline, Ordering};

/// How long a blocking call spins before it sleeps on the futex: a
/// per-handle setting (`Queue::set_spin`, `PipeEnd::set_spin`, and the raw
/// cores' `set_spin`).
///
/// Spinning catches a reply that comes within microseconds without the
/// cost of a futex wake-up (about 5 µs), but burns a CPU that a peer on the
/// same core may need.
///
/// ```
/// use std::time::Duration;
/// let q = shmkit::Queue::create_unique(4, 64)?;
/// q.set_spin(shmkit::Spin::Never); // sleep at once: no CPU burnt
/// q.set_spin(shmkit::Spin::UpTo(Duration::from_micros(5)));
/// assert_eq!(q.spin(), shmkit::Spin::UpTo(Duration::from_micros(5)));
/// q.set_spin(shmkit::Spin::Adaptive);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spin {
    /// Spin up to 20 µs, halving the budget (down to none) while spinning
    /// does not pay and probing now and then whether it pays again (the
    /// default).
    #[default]
    Adaptive,
    /// Never spin: sleep at once.
    Never,
    /// Spin up to this long every time (never past the call's deadline),
    /// then sleep. `UpTo(Duration::ZERO)` is `Never`, and reads back so.
    UpTo(Duration),
}

/// `budget` ns, or less if `deadline` comes first.
pub(crate) fn cap(budget: u64, deadline: Deadline) -> u64 {
    match deadline.at() {
        None => budget,
        Some(d) => budget.min(
            d.saturating_sub(sync::now())
                .as_nanos()
                .min(u128::from(u64::MAX)) as u64,
        ),
    }
}

/// `mode` encodings: adaptive, or a fixed budget in ns (0: never).
const ADAPTIVE: u64 = u64::MAX;

const START_NS: u64 = if cfg!(loom) { 0 } else { 20_000 };
const PROBE_EVERY: u32 = 256;
const PROBE_NS: u64 = 60_000;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct AdaptiveSpin {
    budget_ns: AtomicU64,
    waits_since_probe: AtomicU32,
    /// [`ADAPTIVE`], or a fixed budget in ns.
    mode: AtomicU64,
}

impl AdaptiveSpin {
    pub(crate) fn new() -> AdaptiveSpin {
        AdaptiveSpin {
            budget_ns: AtomicU64::new(START_NS),
            waits_since_probe: AtomicU32::new(0),
            mode: AtomicU64::new(ADAPTIVE),
        }
    }

    pub(crate) fn set(&self, spin: Spin) {
        let m = match spin {
            Spin::Adaptive => ADAPTIVE,
            Spin::Never => 0,
            Spin::UpTo(d) => (d.as_nanos().min(u128::from(ADAPTIVE - 1))) as u64,
        };
        self.mode.store(m, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Spin {
        match self.mode.load(Ordering::Relaxed) {
            ADAPTIVE => Spin::Adaptive,
            0 => Spin::Never,
            n => Spin::UpTo(Duration::from_nanos(n)),
        }
    }

    /// Spins until `ready()` gives `Some`, the budget is spent or
    /// `deadline` passes (a spin never outlasts the caller's timeout);
    /// records whether it paid.
    pub(crate) fn spin<T>(
        &self,
        deadline: Deadline,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let mode = self.mode.load(Ordering::Relaxed);
        if mode != ADAPTIVE {
            return Self::spin_fixed(cap(mode, deadline), ready);
        }
        let mut budget = self.budget_ns.load(Ordering::Relaxed);
        if budget == 0 {
            let n = self.waits_since_probe.fetch_add(1, Ordering::Relaxed) + 1;
            if n < PROBE_EVERY || cfg!(loom) {
                return None;
            }
            self.waits_since_probe.store(0, Ordering::Relaxed);
            budget = PROBE_NS;
        }
        let budget_left = cap(budget, deadline);
        let start = sync::now();
        let mut i = 0u32;
        loop {
            if let Some(v) = ready() {
                // (Under loom START_NS is 0 and the max does nothing.)
                #[allow(clippy::unnecessary_min_or_max)]
                let back = START_NS.max(budget);
                self.budget_ns.store(back, Ordering::Relaxed);
                return Some(v);
            }
            if budget_left < budget
                && i % 32 == 31
                && (sync::now() - start).as_nanos() as u64 >= budget_left
            {
                // The caller's deadline, not the budget, ended it: nothing
                // learnt.
                return None;
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

    /// A fixed budget: spin up to `ns` (0: not at once), learn nothing.
    fn spin_fixed<T>(ns: u64, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        if ns == 0 {
            return None;
        }
        let start = sync::now();
        let mut i = 0u32;
        loop {
            if let Some(v) = ready() {
                return Some(v);
            }
            i = i.wrapping_add(1);
            if i % 32 == 0 && (sync::now() - start).as_nanos() as u64 >= ns {
                return None;
            }
            sync::spin_loop();
        }
    }
}
