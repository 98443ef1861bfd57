//! `RawCondition` (with the `RawLock` it is used with) attached over fuzzer
//! bytes and driven by an arbitrary sequence of operations, some with a
//! second thread notifying while this one waits.
//!
//! The bytes are what a hostile or crashed peer left: garbage slots (stamps
//! of dead or live tasks, `NOTIFIED` marks, the reserved bit), a garbage
//! ticket counter and `seq`. Every call must return `Ok` or an `Error`,
//! never panic or hang (waits are at most 2 ms; a garbage lock word is a
//! dead owner's, taken over, or a live one's, waited for at most 2 ms).
//! `Scribble` rewrites a byte between operations, as a peer would.
//!
//! Model checks (only while no scribble could have interfered):
//! - wait and notify without the lock are `NotOwner`;
//! - `notify(n)` returns at most `n` and at most `COND_SLOTS`;
//! - a wait that returns holds the lock again (owner is this thread);
//! - a wait with no notifier times out, since nothing released it;
//! - a notifier thread racing our wait releases at most what it asked.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::{RawCondition, RawLock, RawLockGuard, COND_SLOTS};
use shmkit::Error;

const LOCK_LEN: usize = 16;
const COND_LEN: usize = RawCondition::required_size();
const LEN: usize = LOCK_LEN + COND_LEN;

#[repr(C, align(8))]
struct Region([u8; LEN]);

#[derive(Arbitrary, Debug)]
enum Op {
    /// `lock_timeout` of `n % 2001` microseconds.
    Lock(u16),
    Unlock,
    /// `wait` for `n % 2001` microseconds (with or without the lock).
    Wait(u16),
    Notify(u8),
    NotifyAll,
    /// Waits while a second thread takes the lock and notifies `n`.
    WaitWithNotifier(u8),
    Waiting,
    /// A peer writes byte `v` at `at % LEN` (`at` scaled to reach slots).
    Scribble {
        at: u16,
        v: u8,
    },
    /// A peer writes a whole slot word at slot `i % COND_SLOTS`.
    ScribbleSlot {
        i: u8,
        word: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    lock: [u8; LOCK_LEN],
    /// The first bytes of the condition (the rest is zero).
    cond: Vec<u8>,
    ops: Vec<Op>,
}

fn my_tid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

fn us(n: u16) -> Duration {
    Duration::from_micros(u64::from(n % 2001))
}

fuzz_target!(|input: Input| {
    let mut region = Box::new(Region([0; LEN]));
    region.0[..LOCK_LEN].copy_from_slice(&input.lock);
    let n = input.cond.len().min(COND_LEN);
    region.0[LOCK_LEN..LOCK_LEN + n].copy_from_slice(&input.cond[..n]);
    let base: *mut u8 = region.0.as_mut_ptr();
    // SAFETY: `region` outlives both references (dropped at the end of this
    // closure, after them); 8-aligned; from here on its bytes are touched
    // only through the cores or by `Scribble`'s volatile writes (between
    // operations, while no other thread runs), standing for a peer's stores.
    let lock = unsafe { RawLock::attach(base, LOCK_LEN) }.expect("aligned");
    // SAFETY: as above; offset 16 is 8-aligned, COND_LEN bytes long.
    let cond = unsafe { RawCondition::attach(base.add(LOCK_LEN), COND_LEN) }.expect("aligned");
    let me = my_tid();

    let mut guard: Option<RawLockGuard<'_>> = None;
    let mut clean = false;

    for op in input.ops.iter().take(48) {
        match *op {
            Op::Lock(t) => {
                if guard.is_none() {
                    match lock.lock_timeout(us(t)) {
                        Ok(g) => {
                            guard = Some(g);
                            clean = true;
                        }
                        Err(Error::Timeout { .. }) | Err(Error::Deadlock { .. }) => {}
                        Err(e) => panic!("lock_timeout: {e}"),
                    }
                }
            }
            Op::Unlock => {
                guard = None;
            }
            Op::Wait(t) => {
                let held = guard.is_some();
                match cond.wait(lock, Some(us(t))) {
                    Ok(w) => {
                        if held && clean {
                            assert!(w.timed_out, "released with nobody notifying");
                            assert_eq!(lock.owner_tid(), Some(me), "wait returned unlocked");
                        }
                    }
                    Err(Error::NotOwner { .. }) => {
                        assert!(!(held && clean), "NotOwner while holding the lock");
                    }
                    Err(Error::Full { .. }) => {}
                    Err(e) => panic!("wait: {e}"),
                }
            }
            Op::Notify(k) => match cond.notify(lock, usize::from(k)) {
                Ok(r) => {
                    assert!(r <= usize::from(k) && r <= COND_SLOTS);
                    assert!(!(guard.is_none() && clean), "notify without the lock");
                }
                Err(Error::NotOwner { .. }) => {
                    assert!(!(guard.is_some() && clean), "NotOwner while holding")
                }
                Err(e) => panic!("notify: {e}"),
            },
            Op::NotifyAll => match cond.notify(lock, usize::MAX) {
                Ok(r) => assert!(r <= COND_SLOTS),
                Err(Error::NotOwner { .. }) => assert!(!(guard.is_some() && clean)),
                Err(e) => panic!("notify_all: {e}"),
            },
            Op::WaitWithNotifier(k) if guard.is_some() => {
                let k = usize::from(k % 4) + 1;
                std::thread::scope(|s| {
                    let notifier = s.spawn(|| {
                        // Gets the lock only once we wait (it is ours).
                        let g = lock.lock_timeout(Duration::from_millis(50)).ok()?;
                        let r = cond.notify(lock, k).ok();
                        drop(g);
                        r
                    });
                    let w = cond.wait(lock, Some(Duration::from_millis(100)));
                    let released = notifier.join().expect("notifier panicked");
                    if let Some(r) = released {
                        assert!(r <= k);
                    }
                    match w {
                        // Garbage slots naming live threads may be released
                        // in our stead: only the lock is checked.
                        Ok(_) if clean => assert_eq!(lock.owner_tid(), Some(me)),
                        Ok(_) | Err(Error::NotOwner { .. }) | Err(Error::Full { .. }) => {}
                        Err(e) => panic!("wait with notifier: {e}"),
                    }
                });
            }
            Op::WaitWithNotifier(_) => {}
            Op::Waiting => assert!(cond.waiting() <= COND_SLOTS),
            Op::Scribble { at, v } => {
                let at = usize::from(at) % LEN;
                // SAFETY: in bounds; a volatile byte store, as a peer's.
                unsafe { base.add(at).write_volatile(v) };
                clean = false;
            }
            Op::ScribbleSlot { i, word } => {
                let at = LOCK_LEN + 8 + (usize::from(i) % COND_SLOTS) * 16;
                // SAFETY: in bounds and 8-aligned (slots are 16 bytes from
                // offset 8 of the condition); a volatile store, as a peer's.
                unsafe { base.add(at).cast::<u64>().write_volatile(word) };
                clean = false;
            }
        }
    }
    drop(guard);
});
