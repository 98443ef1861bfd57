//! Regression test for issue 14, defect 5: `inspect` (and so `list`) read
//! the header a second time after `open_kind` had validated it, and
//! `expect`ed it to still be published; a process rewriting the header in
//! between made it panic. Now the fields are read once.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::watchdog;

/// Offset of the header's `state` word (see `src/raw/header.rs`).
const STATE: usize = 40;

#[test]
fn inspect_never_panics_while_the_header_is_rewritten() {
    let _w = watchdog(Duration::from_secs(60));
    let lock = shmkit::Lock::create_unique().unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{}", lock.name()))
        .unwrap();
    let map = memmap2::MmapOptions::new().len(64).map_raw(&file).unwrap();
    // SAFETY: the mapping is 64 bytes, page-aligned, and lives until the end
    // of the test; the word is only accessed atomically here (and by
    // shmkit, which accesses every header field atomically).
    let state = unsafe { &*(map.as_mut_ptr().add(STATE) as *const AtomicU32) };
    assert_eq!(state.load(Ordering::Relaxed), 1, "published");
    let stop = AtomicBool::new(false);
    let iterations: usize = std::env::var("SHMKIT_REGRESS_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let (mut ok, mut err) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                state.store(0, Ordering::Relaxed);
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
                state.store(1, Ordering::Relaxed);
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
            }
        });
        for _ in 0..iterations {
            match shmkit::inspect(lock.name()) {
                Ok(info) => {
                    assert_eq!(info.kind, "Lock");
                    ok += 1;
                }
                Err(_) => err += 1,
            }
        }
        for _ in 0..2 {
            let _ = shmkit::list().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!("inspect: {ok} Ok, {err} Err");
}
