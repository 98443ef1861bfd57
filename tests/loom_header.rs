//! Loom model of the segment header's init protocol (`src/raw/header.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release --test loom_header` (or `ci/loom.sh`).
//!
//! What it checks: an opener that sees the header published (`read()`
//! returns `Some`) sees every field the creator wrote before `publish`,
//! never a half-initialised header, and never the zeroes of a fresh object.
//!
//! Why it can fail: every field is stored and loaded `Relaxed`; only the
//! `Release` store of `state` in `publish` and the `Acquire` load in `read`
//! order them. Loom keeps, for each atomic, every store a thread may still
//! observe, so if either side were weakened to `Relaxed` it would hand the
//! opener a stale (zero) field and the assertion below fires (checked by
//! hand when this model was written: `publish` with `Ordering::Relaxed`
//! fails within a few executions).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::raw::header::{Fingerprint, Header, HeaderFields, Kind};
use shmkit::sync::loom_support;

const PID: u32 = 4242;
const START: u64 = 777;

fn fields() -> HeaderFields {
    HeaderFields::new(
        Kind::Array,
        Fingerprint {
            size: 4,
            align: 4,
            hash: 0x0123_4567_89ab_cdef,
        },
        64 + 16 + 4 * 10,
        10,
    )
}

/// A creator claims, writes and publishes; one opener reads concurrently.
#[test]
fn opener_never_sees_half_initialised_header() {
    loom_support::model(false, || {
        let h = Arc::new(Header::new());

        let creator = {
            let h = h.clone();
            thread::spawn(move || {
                h.claim(PID, START);
                h.write(&fields());
                h.publish();
            })
        };

        match h.read() {
            Some(f) => {
                assert_eq!(f, fields(), "opener saw a half-initialised header");
                // `claim` comes before `publish` too, so it is visible.
                assert_eq!(h.creator(), (PID, START));
            }
            None => {
                // Not published yet: the creator's fields may or may not be
                // visible, but nothing may claim to be ready.
            }
        }

        creator.join().unwrap();
        // After join (a happens-before edge) the header is complete.
        assert_eq!(h.read(), Some(fields()));
    });
}

/// Two openers poll while the creator initialises: each one that sees
/// `Some` sees all of it, and once one has seen it, a later read by the same
/// opener still does (`state` never goes back).
#[test]
fn two_openers_polling() {
    loom_support::model(false, || {
        let h = Arc::new(Header::new());

        let creator = {
            let h = h.clone();
            thread::spawn(move || {
                h.claim(PID, START);
                h.write(&fields());
                h.publish();
            })
        };
        let opener = {
            let h = h.clone();
            thread::spawn(move || {
                let first = h.read();
                if let Some(f) = first {
                    assert_eq!(f, fields());
                    assert_eq!(h.read(), Some(fields()), "published header went back");
                }
            })
        };

        if let Some(f) = h.read() {
            assert_eq!(f, fields());
        }

        creator.join().unwrap();
        opener.join().unwrap();
    });
}
