//! Counting room: the positions between the head and the tail that cost
//! capacity, which are all of them but the `SKIP`s (positions of grants
//! dropped uncommitted after a later position was taken, or of dead puts).
//! A `SKIP` keeps its slot until the head steps over it, but not its room;
//! the ring's spare slots ([`slots_for`](super::slots_for)) are what let
//! it. The `holes` hint in the control block says when counting is needed.

use super::*;

impl<'a> RawQueue<'a> {
    /// The positions in `[h, t)` that count against the capacity: all of
    /// them but the `SKIP`s. They are counted (one state load per position,
    /// at most `slots`) only while the `holes` hint says some may exist; a
    /// count that finds none sets the hint back to 0. A range that cannot
    /// be (`t` before `h`, or more than `slots` apart: indices scribbled or
    /// read mid-move) is returned as it is (0 if backwards), uncounted.
    pub(super) fn live(&self, h: u64, t: u64) -> u64 {
        let n = t.wrapping_sub(h);
        if (n as i64) < 0 {
            return 0;
        }
        if n > self.slots {
            return n;
        }
        let hint = self.ctl.holes.load(Ordering::Acquire);
        if hint == 0 {
            return n;
        }
        let mut skips = 0;
        for k in 0..n {
            let p = h.wrapping_add(k);
            if self.hdr(p).state.load(Ordering::Acquire) == SKIP | p40(p) {
                skips += 1;
            }
        }
        if skips == 0 {
            // A hole being made now raised the hint before its SKIP, so
            // this can only hide it (its room comes back when the head
            // passes it, as for a hole made before the hint existed).
            let _ = self
                .ctl
                .holes
                .compare_exchange(hint, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        n - skips
    }

    /// Whether a put could take the position at `t` as far as the count
    /// goes, with the head at `h` (see [`live`](RawQueue::live)).
    #[inline]
    pub(super) fn room_by_count(&self, h: u64, t: u64) -> bool {
        t.wrapping_sub(h) < self.capacity || self.live(h, t) < self.capacity
    }

    /// Raises the `holes` hint, before a `SKIP` is made.
    pub(super) fn hole_coming(&self) {
        self.ctl.holes.fetch_add(1, Ordering::AcqRel);
    }

    /// Lowers the `holes` hint, after a `SKIP` was stepped over (or was
    /// not made after all).
    pub(super) fn hole_gone(&self) {
        self.ctl.holes.fetch_sub(1, Ordering::AcqRel);
    }
}
