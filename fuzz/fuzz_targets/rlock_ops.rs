//! `RawRLock` over fuzzer bytes (a hostile peer's lock word), driven by an
//! arbitrary sequence of operations, checked against a level counter.
//!
//! Any bytes are accepted: a garbage word names a dead owner (taken over)
//! or a live one such as pid 1 (waited for at most the 2 ms a timed
//! operation allows). No operation may panic or hang. `Scribble` rewrites
//! a byte between operations, as a peer would.
//!
//! Model checks, while no scribble happened since our outermost
//! acquisition: `level()` is the model's level; a nested acquisition
//! always succeeds at once; a release at level 0 is `NotOwner` and changes
//! nothing; once the level is back to 0 the lock is free (`try_acquire`
//! succeeds).
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::RawRLock;
use shmkit::Error;

const LEN: usize = RawRLock::required_size();

#[repr(C, align(8))]
struct Region([u8; LEN]);

#[derive(Arbitrary, Debug)]
enum Op {
    TryAcquire,
    /// `acquire_timeout` of `n % 2001` microseconds (0..=2 ms).
    AcquireTimeout(u16),
    Release,
    Level,
    /// A peer writes byte `v` at `at % LEN`.
    Scribble {
        at: u8,
        v: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    lock: [u8; LEN],
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let mut region = Region(input.lock);
    let base: *mut u8 = region.0.as_mut_ptr();
    // SAFETY: `region` outlives `l` (dropped at the end of this closure), is
    // 8-aligned and `LEN` bytes; its bytes are touched only through the
    // core or by `Scribble`'s volatile byte stores (a peer's stores).
    let l = unsafe { RawRLock::attach(base, LEN) }.expect("aligned, long enough");
    // Our level, while it can be trusted (no scribble since we took it).
    let mut level: Option<u32> = Some(0);
    let mut held = 0u32; // acquisitions not yet released, trusted or not

    for op in input.ops.iter().take(64) {
        match *op {
            Op::TryAcquire => match l.try_acquire() {
                Ok(Some(_)) => {
                    held += 1;
                    level = level.map(|n| n + 1);
                }
                Ok(None) => {
                    if let Some(n) = level {
                        assert_eq!(n, 0, "a nested try_acquire failed at level {n}");
                    }
                }
                Err(e) => panic!("try_acquire: {e}"),
            },
            Op::AcquireTimeout(us) => {
                let t = Duration::from_micros(u64::from(us % 2001));
                match l.acquire_timeout(t) {
                    Ok(_) => {
                        held += 1;
                        level = level.map(|n| n + 1);
                    }
                    Err(Error::Timeout { .. }) => {
                        if let Some(n) = level {
                            assert_eq!(n, 0, "a nested acquire timed out at level {n}");
                        }
                    }
                    Err(e) => panic!("acquire_timeout: {e}"),
                }
            }
            Op::Release => {
                let r = l.release();
                match (&r, level) {
                    (Ok(()), Some(n)) => {
                        assert!(n > 0, "released at level 0");
                        level = Some(n - 1);
                        held -= 1;
                        if n == 1 {
                            assert!(!l.is_locked(), "locked after the last release");
                            assert!(l.try_acquire().expect("try").is_some(), "free lock refused");
                            l.release().expect("release what we just took");
                        }
                    }
                    (Err(Error::NotOwner { .. }), Some(n)) => {
                        assert_eq!(n, 0, "NotOwner at level {n}")
                    }
                    (Ok(()), None) => held = held.saturating_sub(1),
                    (Err(Error::NotOwner { .. }), None) => {}
                    (Err(e), _) => panic!("release: {e}"),
                }
                if held == 0 && level.is_none() {
                    // Nothing of ours left to trust or distrust: start over.
                    let _ = l.release();
                }
            }
            Op::Level => {
                let n = l.level();
                if let Some(m) = level {
                    assert_eq!(n, m, "level vs model");
                }
                let _ = (l.is_locked(), l.owner_tid(), format!("{l:?}"));
            }
            Op::Scribble { at, v } => {
                let at = usize::from(at) % LEN;
                // SAFETY: in bounds of `region`; a volatile byte store, as a
                // peer process's store would be.
                unsafe { base.add(at).write_volatile(v) };
                level = None;
            }
        }
    }
    // Leave no level record behind for the next input (the record is
    // thread-local and the next input reuses this thread): release until
    // the lock says we do not hold it.
    for _ in 0..=held {
        if l.release().is_err() {
            break;
        }
    }
});
