//! A bounded buffer between producer and consumer processes, built on two
//! `Condition`s over one `Lock` ("not empty" and "not full"), as in
//! Python:
//!
//! ```python
//! lock = Lock()
//! not_empty, not_full = Condition(lock), Condition(lock)
//!
//! def producer(buf, k, n):
//!     for i in range(n):
//!         with not_full:
//!             not_full.wait_for(lambda: len(buf) < CAP)
//!             buf.append((k, i))
//!             not_empty.notify()
//!
//! def consumer(buf, total, taken):
//!     while True:
//!         with not_empty:
//!             not_empty.wait_for(lambda: len(buf) > 0 or taken.value == total)
//!             if not buf: return
//!             item = buf.pop(0)
//!             taken.value += 1
//!             not_full.notify()
//!             if taken.value == total: not_empty.notify_all()
//! ```
//!
//! Two producers and two consumers, each its own process; the buffer holds
//! 4 items. Every item is consumed exactly once, and each producer's items
//! in the order it made them.
//!
//! Run it with `cargo run --release --example cond_producer_consumer`.

mod common;

use std::process::ExitCode;

use common::{Result, Role};
use shmkit::{Array, Condition, Lock};

/// Places in the buffer.
const CAP: u64 = 4;
/// Buffer layout: [taken, made, sum, ring of CAP items].
const TAKEN: usize = 0;
const MADE: usize = 1;
const SUM: usize = 2;
const RING: usize = 3;
const PRODUCERS: u64 = 2;
const CONSUMERS: usize = 2;

fn items() -> u64 {
    if common::quick() {
        200
    } else {
        5000
    }
}

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        let r = match role.name() {
            "producer" => producer(&role),
            "consumer" => consumer(&role),
            other => Err(format!("unknown role {other}").into()),
        };
        return common::finish(r);
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// The two conditions and the buffer, opened by name.
struct Shared {
    not_empty: Condition,
    not_full: Condition,
    buf: Array<u64>,
}

fn open(role: &Role) -> Result<Shared> {
    Ok(Shared {
        not_empty: Condition::open(role.arg(0)?)?,
        not_full: Condition::open(role.arg(1)?)?,
        buf: Array::open(role.arg(2)?)?,
    })
}

/// Makes items `k << 32 | i` for `i` in `0..items`.
fn producer(role: &Role) -> Result {
    let s = open(role)?;
    let k: u64 = role.num(3)?;
    for i in 0..items() {
        let mut g = s.not_full.lock()?;
        g.wait_for(|| {
            let b = s.buf.lock().expect("buffer lock");
            b[MADE] - b[TAKEN] < CAP
        })?;
        {
            let mut b = s.buf.lock()?;
            let at = RING + (b[MADE] % CAP) as usize;
            b[at] = (k << 32) | i;
            b[MADE] += 1;
        }
        // Both conditions use one lock: `g` holds it for `not_empty` too.
        s.not_empty.notify(1)?;
        drop(g);
    }
    Ok(())
}

/// Takes items until all were taken; checks each producer's order.
fn consumer(role: &Role) -> Result {
    let s = open(role)?;
    let total = PRODUCERS * items();
    let mut last = [None::<u64>; PRODUCERS as usize];
    let mut took = 0u64;
    loop {
        let mut g = s.not_empty.lock()?;
        g.wait_for(|| {
            let b = s.buf.lock().expect("buffer lock");
            b[MADE] > b[TAKEN] || b[TAKEN] == total
        })?;
        let item = {
            let mut b = s.buf.lock()?;
            if b[MADE] == b[TAKEN] {
                None
            } else {
                let item = b[RING + (b[TAKEN] % CAP) as usize];
                b[TAKEN] += 1;
                b[SUM] += item & 0xffff_ffff;
                Some((item, b[TAKEN] == total))
            }
        };
        let Some((item, all)) = item else { break };
        s.not_full.notify(1)?;
        if all {
            // Wake the other consumers: nothing more will come.
            g.notify_all()?;
        }
        drop(g);
        let (k, i) = ((item >> 32) as usize, item & 0xffff_ffff);
        if k >= last.len() || last[k].is_some_and(|l| l >= i) {
            return Err(format!("out of order: producer {k} item {i} after {:?}", last).into());
        }
        last[k] = Some(i);
        took += 1;
    }
    println!("  consumer {}: took {took} items", std::process::id());
    Ok(())
}

fn parent() -> Result {
    let n = items();
    let lock = Lock::create(&common::name("lock"))?;
    let again = Lock::open(lock.name())?;
    let not_empty = Condition::create_over(Some(&common::name("not-empty")), lock)?;
    let not_full = Condition::create_over(Some(&common::name("not-full")), again)?;
    let buf = Array::<u64>::create(&common::name("buf"), RING + CAP as usize, 0)?;
    let args = [not_empty.name(), not_full.name(), buf.name()];
    let consumers = common::spawn_n(CONSUMERS, "consumer", &args)?;
    let producers = common::spawn_n(PRODUCERS as usize, "producer", &args)?;
    common::join_all(producers)?;
    common::join_all(consumers)?;
    let b = buf.to_vec();
    let want = PRODUCERS * n * (n - 1) / 2;
    println!(
        "consumed {} of {} items, sum {} (expected {want})",
        b[TAKEN],
        PRODUCERS * n,
        b[SUM]
    );
    println!(
        "every item once: {}",
        if b[TAKEN] == PRODUCERS * n && b[SUM] == want {
            "yes"
        } else {
            "no"
        }
    );
    Ok(())
}
