//! `RawSemaphore` over fuzzer bytes (a hostile peer's count, flags and
//! holder table), driven by an arbitrary sequence of operations; and the
//! same operations on a clean semaphore, checked against a counter model.
//!
//! The hostile instance must give `Ok` or an `Error` for every operation,
//! never a panic, a wrap of the count, or a hang: its table's stamps name
//! arbitrary pids (dead ones are recovered, live ones such as pid 1 are
//! waited for at most the 2 ms the timed operation allows). `Scribble`
//! rewrites a byte between operations, as a peer would.
//!
//! The clean instance, until a scribble touches it, must agree with the
//! model: `value()` is the model's count; `try_acquire` succeeds exactly
//! when it is positive; `release(n)` succeeds exactly when `n > 0` and the
//! count stays within the bound (the initial value when bounded, else
//! `MAX_VALUE`), and changes nothing when it fails; a dropped guard gives
//! its permit back, a kept one does not.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::{RawSemaphore, RawSemaphoreGuard, MAX_VALUE};
use shmkit::Error;

const LEN: usize = RawSemaphore::required_size();
const WORDS: usize = LEN / 8;

#[repr(C, align(8))]
struct Region([u64; WORDS]);

#[derive(Arbitrary, Debug)]
enum Op {
    TryAcquire,
    /// `acquire_timeout` of `n % 2001` microseconds (0..=2 ms).
    AcquireTimeout(u16),
    /// Drops the newest guard.
    Drop,
    /// Keeps the newest guard's permit without a guard.
    Keep,
    Release(u32),
    Value,
    /// A peer writes byte `v` at `at % LEN`.
    Scribble {
        at: u16,
        v: u8,
        clean: bool,
    },
    /// `attach` over a sub-region: `Ok` exactly when aligned and long enough.
    Probe {
        offset: u16,
        len: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    hostile: [u64; WORDS],
    value: u8,
    bounded: bool,
    ops: Vec<Op>,
}

struct Clean<'a> {
    sem: &'a RawSemaphore,
    guards: Vec<RawSemaphoreGuard<'a>>,
    /// The model's count, while no scribble touched the instance.
    model: Option<u32>,
    limit: u32,
}

impl Clean<'_> {
    /// The count after `n` guards give their permits back at count `m`. A
    /// bounded semaphore never passes its bound: `release(n)` may have
    /// filled the places the guards' permits would go back to (Python
    /// allows that up to the bound), and those permits are then dropped.
    /// An unbounded one only saturates.
    fn give_back(&self, m: u32, n: u32) -> u32 {
        let c = m.saturating_add(n);
        if self.limit < MAX_VALUE {
            c.min(self.limit)
        } else {
            c
        }
    }
}

fuzz_target!(|input: Input| {
    let mut hostile = Region(input.hostile);
    let mut clean = Region([0; WORDS]);
    let hbase: *mut u8 = hostile.0.as_mut_ptr().cast();
    let cbase: *mut u8 = clean.0.as_mut_ptr().cast();
    // SAFETY: `hostile` outlives `h` (dropped at the end of this closure),
    // is 8-aligned and `LEN` bytes; from here on its bytes are touched only
    // through the core or by `Scribble`'s single-byte volatile stores,
    // which stand for another process's.
    let h = unsafe { RawSemaphore::attach(hbase, LEN) }.expect("aligned, long enough");
    let value = u32::from(input.value % 8);
    // SAFETY: as above, for `clean`.
    let c = unsafe { RawSemaphore::init_in(cbase, LEN, value, input.bounded) }.expect("init");
    let mut cl = Clean {
        sem: c,
        guards: Vec::new(),
        model: Some(value),
        limit: if input.bounded { value } else { MAX_VALUE },
    };
    let mut hguards: Vec<RawSemaphoreGuard<'_>> = Vec::new();

    for op in input.ops.iter().take(64) {
        match *op {
            Op::TryAcquire => {
                match h.try_acquire() {
                    Ok(Some(g)) => hguards.push(g),
                    Ok(None) => {}
                    Err(e) => panic!("hostile try_acquire: {e}"),
                }
                let got = cl.sem.try_acquire().expect("try_acquire");
                if let Some(m) = cl.model {
                    assert_eq!(got.is_some(), m > 0, "try_acquire vs count {m}");
                    cl.model = Some(m - u32::from(got.is_some()));
                }
                cl.guards.extend(got);
            }
            Op::AcquireTimeout(us) => {
                let t = Duration::from_micros(u64::from(us % 2001));
                match h.acquire_timeout(t) {
                    Ok(g) => hguards.push(g),
                    Err(Error::Timeout { .. }) => {}
                    Err(e) => panic!("hostile acquire_timeout: {e}"),
                }
                match cl.sem.acquire_timeout(t) {
                    Ok(g) => {
                        if let Some(m) = cl.model {
                            assert!(m > 0, "acquired at count 0");
                            cl.model = Some(m - 1);
                        }
                        cl.guards.push(g);
                    }
                    Err(Error::Timeout { .. }) => {
                        if let Some(m) = cl.model {
                            assert_eq!(m, 0, "timed out with {m} free");
                        }
                    }
                    Err(e) => panic!("acquire_timeout: {e}"),
                }
            }
            Op::Drop => {
                drop(hguards.pop());
                if cl.guards.pop().is_some() {
                    cl.model = cl.model.map(|m| cl.give_back(m, 1));
                }
            }
            Op::Keep => {
                if let Some(g) = hguards.pop() {
                    g.keep();
                }
                if let Some(g) = cl.guards.pop() {
                    g.keep();
                }
            }
            Op::Release(n) => {
                let before = h.value();
                match h.release(n) {
                    Ok(()) => assert!(n > 0),
                    Err(Error::InvalidArgument(_)) => assert_eq!(n, 0),
                    Err(Error::TooManyReleases { .. }) => {}
                    Err(e) => panic!("hostile release: {e}"),
                }
                let _ = before;
                let r = cl.sem.release(n);
                if let Some(m) = cl.model {
                    let fits = n > 0 && m.checked_add(n).is_some_and(|s| s <= cl.limit);
                    assert_eq!(
                        r.is_ok(),
                        fits,
                        "release({n}) at {m} of {}: {r:?}",
                        cl.limit
                    );
                    if fits {
                        cl.model = Some(m + n);
                    }
                }
            }
            Op::Value => {
                let _ = h.value();
                let _ = h.protected_holders();
                let _ = format!("{h:?}");
            }
            Op::Scribble { at, v, clean } => {
                let at = usize::from(at) % LEN;
                let base = if clean { cbase } else { hbase };
                // SAFETY: in bounds of the region; a volatile byte store, as
                // a peer process's store would be.
                unsafe { base.add(at).write_volatile(v) };
                if clean {
                    cl.model = None;
                }
            }
            Op::Probe { offset, len } => {
                let offset = usize::from(offset) % LEN;
                let len = usize::from(len) % (LEN - offset + 1);
                // SAFETY: `offset + len <= LEN`: inside `hostile`; an `Ok`
                // result is dropped unused.
                let p = unsafe { hbase.add(offset) };
                // SAFETY: as above.
                let ok = unsafe { RawSemaphore::attach(p, len) }.is_ok();
                assert_eq!(ok, (p as usize) % 8 == 0 && len >= LEN);
            }
        }
        if let Some(m) = cl.model {
            assert_eq!(cl.sem.value(), m, "value vs model");
        }
    }
    drop(hguards);
    let held = cl.guards.len() as u32;
    let expected = cl.model.map(|m| cl.give_back(m, held));
    drop(cl.guards);
    if let Some(e) = expected {
        assert_eq!(c.value(), e, "guards gave back their permits");
    }
});
