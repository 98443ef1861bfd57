//! `RawBarrier` attached over fuzzer bytes (what a hostile or crashed peer
//! left in shared memory), driven by an arbitrary sequence of operations
//! with scribbles between them. Every call must return `Ok` or an `Error`
//! (never panic, never hang past its timeout of at most 1 ms).
//!
//! Model checks (only while no scribble could have interfered since the
//! last `reset`, and only on a barrier this run initialised):
//! - after `reset`: not broken, nobody waiting;
//! - after `abort`: broken, and `wait` is `BrokenBarrier`;
//! - a lone party of a 1-party barrier is released at once with index 0;
//! - a lone party of a larger barrier times out, and that breaks it;
//! - `parties` is what `init_in` was given; `n_waiting < parties`.
//! - `attach` over any bytes is `Ok` or `Err`; `init_in` on a misaligned or
//!   short region is `Err`.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::raw::RawBarrier;
use shmkit::Error;

const MAX_PARTIES: u32 = 8;
/// The control block and two banks of `MAX_PARTIES` slots.
const BUF_LEN: usize = 16 + 2 * 16 * MAX_PARTIES as usize;

#[repr(C, align(8))]
struct Region([u8; BUF_LEN]);

#[derive(Arbitrary, Debug)]
enum Op {
    /// `wait_timeout` of `n % 1001` microseconds.
    Wait(u16),
    /// `wait_with` an action that counts its runs, `n % 1001` µs.
    WaitAction(u16),
    Abort,
    Reset,
    Query,
    /// A peer writes byte `v` at `at % BUF_LEN`.
    Scribble {
        at: u8,
        v: u8,
    },
    /// A peer writes a whole 64-bit word (the state, a slot key or stamp).
    ScribbleWord {
        at: u8,
        v: u64,
    },
    /// `init_in` or `attach` over a sub-region.
    Probe {
        offset: u8,
        len: u8,
        parties: u8,
        init: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Initialise the barrier (else attach over the raw bytes).
    init: bool,
    parties: u8,
    bytes: Vec<u8>,
    ops: Vec<Op>,
}

/// `clean`: the model holds. A scribbled barrier may also leave a caller
/// no place to wait in (every slot taken): such a latecomer's timed wait
/// says `Timeout`, which is documented, but never on a clean barrier.
fn wait_result_ok(r: &Result<usize, Error>, parties: u32, clean: bool) -> bool {
    match r {
        Ok(i) => *i < parties as usize,
        Err(Error::BrokenBarrier { .. }) | Err(Error::Corrupted { .. }) => true,
        Err(Error::Timeout { .. }) if !clean => true,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fuzz_target!(|input: Input| {
    let mut region = Region([0; BUF_LEN]);
    for (d, s) in region.0.iter_mut().zip(&input.bytes) {
        *d = *s;
    }
    let base = region.0.as_mut_ptr();
    let parties = u32::from(input.parties) % MAX_PARTIES + 1;
    let b = if input.init {
        // SAFETY: `region` outlives `b` (both live to the end of this
        // closure) and is accessed only through barriers and raw writes
        // between calls, one thread at a time.
        Some(unsafe { RawBarrier::init_in(base, BUF_LEN, parties) }.expect("init_in"))
    } else {
        // SAFETY: as above; any bytes are attached.
        unsafe { RawBarrier::attach(base, BUF_LEN) }.ok()
    };
    let Some(b) = b else {
        return;
    };
    let parties = b.parties();
    assert!((1..=MAX_PARTIES).contains(&parties));
    // Whether the model holds: an initialised barrier not scribbled since.
    let mut clean = input.init;
    let runs = std::cell::Cell::new(0u32);
    for op in input.ops.iter().take(64) {
        match *op {
            Op::Wait(us) => {
                let was_broken = b.broken();
                let r = b.wait_timeout(Duration::from_micros(u64::from(us % 1001)));
                assert!(wait_result_ok(&r, parties, clean), "{r:?}");
                if clean {
                    match (parties, was_broken) {
                        (_, true) => {
                            assert!(matches!(r, Err(Error::BrokenBarrier { .. })), "{r:?}")
                        }
                        (1, false) => assert_eq!(r.unwrap(), 0),
                        _ => {
                            assert!(matches!(r, Err(Error::BrokenBarrier { .. })), "{r:?}");
                            assert!(b.broken(), "a timeout breaks the barrier");
                        }
                    }
                }
            }
            Op::WaitAction(us) => {
                let before = runs.get();
                let r = b.wait_with(Some(Duration::from_micros(u64::from(us % 1001))), &|| {
                    runs.set(runs.get() + 1)
                });
                assert!(wait_result_ok(&r, parties, clean), "{r:?}");
                if clean && r.is_ok() {
                    assert_eq!(runs.get(), before + 1, "the action runs once per trip");
                }
            }
            Op::Abort => {
                b.abort();
                if clean {
                    assert!(b.broken());
                    assert!(matches!(b.wait(), Err(Error::BrokenBarrier { .. })));
                }
            }
            Op::Reset => {
                b.reset();
                if clean {
                    assert!(!b.broken());
                    assert_eq!(b.n_waiting(), 0);
                }
            }
            Op::Query => {
                let n = b.n_waiting();
                let _ = b.broken();
                assert!(n <= parties);
                if clean {
                    assert!(n < parties);
                }
                let _ = format!("{b:?}");
            }
            Op::Scribble { at, v } => {
                let at = usize::from(at) % BUF_LEN;
                // SAFETY: in bounds; a plain byte write between calls, as a
                // peer's store (no call is running: one thread).
                unsafe { base.add(at).write_volatile(v) };
                clean = false;
            }
            Op::ScribbleWord { at, v } => {
                let at = (usize::from(at) % (BUF_LEN / 8)) * 8;
                // SAFETY: in bounds and 8-aligned; as above.
                unsafe { base.add(at).cast::<u64>().write_volatile(v) };
                clean = false;
            }
            Op::Probe {
                offset,
                len,
                parties: p,
                init,
            } => {
                // A separate scratch region, so the barrier under test is
                // not re-initialised behind the model's back.
                let mut scratch = Region([0; BUF_LEN]);
                scratch.0.copy_from_slice(&region.0);
                let off = usize::from(offset) % BUF_LEN;
                let len = usize::from(len).min(BUF_LEN - off);
                // SAFETY: `off..off+len` is inside `scratch`, which outlives
                // the handle made here (dropped at the end of the arm).
                let ptr = unsafe { scratch.0.as_mut_ptr().add(off) };
                let p = u32::from(p) % (MAX_PARTIES + 2);
                let r = if init {
                    // SAFETY: as above.
                    unsafe { RawBarrier::init_in(ptr, len, p) }
                } else {
                    // SAFETY: as above.
                    unsafe { RawBarrier::attach(ptr, len) }
                };
                if init {
                    let fits = off % 8 == 0 && p >= 1 && len >= 16 + 2 * 16 * p as usize;
                    assert_eq!(r.is_ok(), fits, "init_in off {off} len {len} parties {p}");
                }
                if let Ok(h) = r {
                    let _ = h.wait_timeout(Duration::ZERO);
                }
            }
        }
    }
});
