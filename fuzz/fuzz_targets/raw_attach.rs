//! `RawLock` and `RawEvent` attached over fuzzer bytes, driven by an
//! arbitrary sequence of operations, checked against what one thread alone
//! must observe.
//!
//! The bytes are what a hostile or crashed peer left in shared memory: the
//! cores must accept any of them (`attach` never fails on content), and no
//! operation may crash or hang. A garbage lock word names a "dead owner"
//! (or a live one, e.g. pid 1): it is taken over, or waited for at most
//! the 2 ms the operations allow. `Scribble` rewrites a byte between
//! operations, as a peer would.
//!
//! Model checks (each only while no scribble could have interfered):
//! - after `set`, `is_set()`; after `clear`, `!is_set()`;
//!   `wait_timeout(0) == is_set()`;
//! - a guard we got means `is_locked()` and `owner_tid()` is our thread;
//! - while we hold the lock, `try_lock` is `None`;
//! - once our last guard is dropped, the lock is free: `try_lock` succeeds.
//! - `attach` on a misaligned or short region is `Err`, never a panic.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::{RawEvent, RawLock, RawLockGuard};

const LOCK_LEN: usize = 16;
const EVENT_LEN: usize = 4;
const BUF_LEN: usize = 24;

/// The region: the lock at 0..16, the event at 16..20, slack to 24.
#[repr(C, align(8))]
struct Region([u8; BUF_LEN]);

#[derive(Arbitrary, Debug)]
enum Op {
    TryLock,
    /// `lock_timeout` of `n % 2001` microseconds (0..=2 ms).
    LockTimeout(u16),
    /// Drops the newest guard we hold.
    Unlock,
    Set,
    Clear,
    IsSet,
    WaitZero,
    /// A peer writes byte `v` at `at % 20`.
    Scribble {
        at: u8,
        v: u8,
    },
    /// `attach` over a sub-region: must be `Ok` exactly when aligned and
    /// long enough.
    Probe {
        offset: u8,
        len: u8,
        event: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    lock: [u8; LOCK_LEN],
    event: [u8; EVENT_LEN],
    ops: Vec<Op>,
}

fn my_tid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

fuzz_target!(|input: Input| {
    let mut region = Region([0; BUF_LEN]);
    region.0[..LOCK_LEN].copy_from_slice(&input.lock);
    region.0[LOCK_LEN..LOCK_LEN + EVENT_LEN].copy_from_slice(&input.event);
    let base: *mut u8 = region.0.as_mut_ptr();
    // SAFETY: `region` outlives both references (it is dropped after them,
    // at the end of this closure), is 8-aligned, and from here on its bytes
    // are only touched through the cores or by `Scribble`'s single-byte
    // volatile writes, which stand for another process's stores.
    let lock = unsafe { RawLock::attach(base, LOCK_LEN) }.expect("aligned, 16 bytes");
    // SAFETY: as above; offset 16 is 4-aligned and 4 bytes long.
    let event =
        unsafe { RawEvent::attach(base.add(LOCK_LEN), EVENT_LEN) }.expect("aligned, 4 bytes");
    let me = my_tid();

    let mut guards: Vec<RawLockGuard<'_>> = Vec::new();
    // No scribble since our newest acquisition / since our last event op.
    let mut lock_clean = false;
    let mut event_clean = false;
    let mut event_known: Option<bool> = None;

    for op in input.ops.iter().take(64) {
        match *op {
            Op::TryLock => {
                let held = !guards.is_empty() && lock_clean;
                match lock.try_lock() {
                    Ok(Some(g)) => {
                        assert!(!held, "try_lock took a lock this thread holds");
                        guards.push(g);
                        // A second guard needs a scribble since the first.
                        lock_clean = guards.len() == 1;
                    }
                    Ok(None) => {}
                    Err(e) => panic!("try_lock failed: {e}"),
                }
            }
            Op::LockTimeout(us) => {
                let held = !guards.is_empty() && lock_clean;
                let t = Duration::from_micros(u64::from(us % 2001));
                match lock.lock_timeout(t) {
                    Ok(g) => {
                        assert!(!held, "lock_timeout took a lock this thread holds");
                        guards.push(g);
                        lock_clean = guards.len() == 1;
                    }
                    Err(shmkit::Error::Deadlock { .. }) => {}
                    Err(shmkit::Error::Timeout { .. }) => {
                        assert!(!held, "lock_timeout on our own lock: Timeout, not Deadlock");
                    }
                    Err(e) => panic!("lock_timeout failed: {e}"),
                }
            }
            Op::Unlock => {
                let had = guards.pop().is_some();
                if had && !guards.is_empty() {
                    // The older guards are stale (a scribble made them).
                    lock_clean = false;
                }
                if had && guards.is_empty() && lock_clean {
                    // Our only guard is gone and nobody scribbled since we
                    // took it: the lock must be free for anyone.
                    assert!(!lock.is_locked(), "locked after the only holder unlocked");
                    let g = lock
                        .try_lock()
                        .expect("try_lock")
                        .expect("free lock after unlock, yet try_lock fails");
                    assert!(!g.owner_died());
                    drop(g);
                }
            }
            Op::Set => {
                event.set();
                event_known = Some(true);
                event_clean = true;
            }
            Op::Clear => {
                event.clear();
                event_known = Some(false);
                event_clean = true;
            }
            Op::IsSet => {
                let s = event.is_set();
                if event_clean {
                    if let Some(k) = event_known {
                        assert_eq!(s, k, "is_set disagrees with the last set/clear");
                    }
                }
            }
            Op::WaitZero => {
                let before = event.is_set();
                assert_eq!(event.wait_timeout(Duration::ZERO), before);
            }
            Op::Scribble { at, v } => {
                let at = usize::from(at) % (LOCK_LEN + EVENT_LEN);
                // SAFETY: in bounds of `region`; a volatile byte store, as a
                // peer process's store would be.
                unsafe { base.add(at).write_volatile(v) };
                if at < LOCK_LEN {
                    lock_clean = false;
                } else {
                    event_clean = false;
                }
            }
            Op::Probe {
                offset,
                len,
                event: is_event,
            } => {
                let offset = usize::from(offset) % BUF_LEN;
                let len = usize::from(len) % (BUF_LEN - offset + 1);
                // SAFETY: `offset + len <= BUF_LEN`: the sub-region is inside
                // `region`; an `Ok` result is dropped unused.
                let p = unsafe { base.add(offset) };
                let (ok, align, need) = if is_event {
                    // SAFETY: as above.
                    (unsafe { RawEvent::attach(p, len) }.is_ok(), 4, EVENT_LEN)
                } else {
                    // SAFETY: as above.
                    (unsafe { RawLock::attach(p, len) }.is_ok(), 8, LOCK_LEN)
                };
                assert_eq!(ok, (p as usize) % align == 0 && len >= need);
            }
        }
        if !guards.is_empty() {
            if lock_clean {
                assert!(lock.is_locked(), "holding a guard, yet not locked");
                assert_eq!(
                    lock.owner_tid(),
                    Some(me),
                    "holding a guard, yet owned by another"
                );
            }
        }
    }
    drop(guards);
});
