//! Findings of the `queue_ops` fuzz target (`fuzz/fuzz_targets/queue_ops.rs`),
//! frozen as unit tests: each drives the minimized operation sequence through
//! the public `raw::RawQueue` API on a 64-aligned heap region, as the target
//! does. A test that fails on the current queue is `#[ignore]`d with the
//! reason; the fix removes the `ignore`.
//!
//! Where a finding needs a scribbled word (`head`, `tail`, a slot state), the
//! word is found by watching the bytes change (the first put moves `tail`
//! from 0 to 1, the first get `head`), so the tests do not hard-code the
//! control block's layout.

mod common;

use common::Region;
use shmkit::Error;

/// The offset of the first word that `f` moves from 0 to 1 (the control
/// block comes before the slots, whose state words move too).
fn word_moved_by(r: &Region, f: impl FnOnce()) -> usize {
    let before = r.words();
    f();
    let after = r.words();
    let moved: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] == 0 && after[i] == 1)
        .collect();
    moved.first().expect("an index word moves 0 -> 1") * 8
}

/// Offsets of `tail` and `head` in a queue of this shape (found on a
/// scratch copy).
fn tail_and_head(capacity: usize, max_message: usize) -> (usize, usize) {
    let (r, ql) = Region::for_queue(capacity, max_message);
    let q = r.init(&ql);
    let tail = word_moved_by(&r, || q.try_put(b"x").unwrap());
    let head = word_moved_by(&r, || drop(q.try_get().unwrap()));
    (tail, head)
}

/// Finding 1 (issue 14 #9). fuzz input: `Scribble(Tail, Add(-1))`, `TryPut`.
/// A `tail` of `u64::MAX` (a hostile or garbage value) makes `try_put`
/// panic with "attempt to add with overflow" in `claim_put` (`t + 1`,
/// src/raw/queue.rs:697) in debug and fuzz builds; a release build wraps.
/// Expected: `Ok` or an `Error`, never a panic.
#[test]
fn tail_at_u64_max_does_not_panic_put() {
    let (tail, _) = tail_and_head(4, 28);
    let (r, ql) = Region::for_queue(4, 28);
    let q = r.init(&ql);
    r.write(tail, u64::MAX);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.try_put(b"").map(drop)));
    assert!(res.is_ok(), "try_put panicked with tail = u64::MAX");
}

/// Finding 2 (issue 14 #2b, the "tail a lap ahead" half). No scribble.
/// fuzz input (capacity 4): reserve, reserve, drop the 2nd, drop the 1st,
/// put "m", reserve, reserve, reserve, drop all three, get. Minimal form
/// with capacity 2 below: two abandoned reservations leave `head` lagging
/// (only the one at the head moves it), a `try_reserve` is then granted a
/// slot whose previous lap's position (1) the head has not passed, and once
/// that grant is dropped too the slot's state is `head + 2 * slots`, which
/// `claim_get` does not expect: `try_get` says
/// `Corrupted { "queue slot state 0x5 does not fit head 1" }` forever and
/// "m" (acknowledged by `try_put`) is never delivered.
#[test]
fn abandoned_reservations_do_not_wedge_the_queue() {
    let (r, ql) = Region::for_queue(2, 8);
    let q = r.init(&ql);
    // Positions 0 and 1; 1 is abandoned away from the head, then 0 at the
    // head (head -> 1).
    let g0 = q.try_reserve(1).unwrap();
    let g1 = q.try_reserve(1).unwrap();
    drop(g1);
    drop(g0);
    // Position 2. Then one message and no open grant: room for one more
    // (position 3, slot 1 again).
    q.try_put(b"m").unwrap();
    let g3 = q.try_reserve(1).unwrap();
    drop(g3);
    let got = q.try_get();
    assert_eq!(got.as_deref().ok(), Some(&b"m"[..]), "try_get: {got:?}");
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    q.try_put(b"n").unwrap();
    assert_eq!(q.try_get().unwrap(), b"n");
}

/// The same, through two handles (as two processes): the reservations are
/// made and dropped by one, the put and get by the other.
#[test]
fn abandoned_reservations_do_not_wedge_the_queue_two_handles() {
    let (r, ql) = Region::for_queue(2, 8);
    let a = r.init(&ql);
    let b = r.attach();
    let g0 = a.try_reserve(1).unwrap();
    let g1 = a.try_reserve(1).unwrap();
    drop(g1);
    drop(g0);
    b.try_put(b"m").unwrap();
    drop(a.try_reserve(1).unwrap());
    let got = b.try_get();
    assert_eq!(got.as_deref().ok(), Some(&b"m"[..]), "try_get: {got:?}");
}

/// Finding 3 (issue 14 #15). No scribble. fuzz input (capacity 8): seven
/// puts, reserve, drop it uncommitted, `try_put` -> `Full`. Minimal form:
/// capacity 2, put "a", reserve and drop it (not at the head, so `head`
/// stays), then `try_put("b")` says `Full` and `len()` says 2 although one
/// message is queued and no grant is held: the abandoned position keeps its
/// room until a consumer steps over it.
#[test]
fn abandoned_reservation_gives_its_room_back() {
    let (r, ql) = Region::for_queue(2, 8);
    let q = r.init(&ql);
    q.try_put(b"a").unwrap();
    drop(q.try_reserve(1).unwrap());
    assert_eq!(q.len(), 1, "len counts the abandoned reservation");
    assert!(!q.is_full(), "is_full with one message of two");
    let r2 = q.try_put(b"b");
    assert!(r2.is_ok(), "try_put: {r2:?}");
    assert_eq!(q.try_get().unwrap(), b"a");
    assert_eq!(q.try_get().unwrap(), b"b");
}

/// Found by `fuzz/fuzz_targets/queue_ops.rs` (strict mode, no scribble but
/// a configuration byte) on branch h-fuzz; a variant of issue 14 #15 that
/// the fix above does not cover: the reservation dropped uncommitted sits
/// behind an *open* one, which is committed afterwards. Then two messages
/// and one abandoned position are in a queue of capacity 4, no grant is
/// held, and a put still says `Full`: the abandoned position keeps its
/// room until a consumer steps over it. Fixed by giving a queue more slots
/// than its capacity (`slots_for`) and not counting `SKIP` positions.
#[test]
fn abandoned_reservation_behind_an_open_one_gives_its_room_back() {
    let (r, ql) = Region::for_queue(4, 39);
    let q = r.init(&ql);
    let g1 = q.try_reserve(11).unwrap();
    let g2 = q.try_reserve(11).unwrap();
    q.try_put(&[1; 21]).unwrap();
    q.try_put(&[2; 21]).unwrap();
    drop(g2);
    g1.commit().unwrap();
    let r3 = q.try_put(&[3; 21]);
    assert!(
        r3.is_ok(),
        "try_put with 3 of 4 taken and no grant held: {r3:?}"
    );
}

/// The general form of the finding above: positions abandoned behind an
/// open grant cost no capacity, up to the ring's spare slots
/// (`slots() - capacity()`), and `len` never counts them.
#[test]
fn abandoned_positions_behind_an_open_grant_cost_no_capacity() {
    let (r, ql) = Region::for_queue(16, 8);
    let q = r.init(&ql);
    let spare = q.slots() - q.capacity();
    assert!(spare >= 2, "slots {} for capacity 16", q.slots());
    let first = q.try_reserve(1).unwrap();
    for i in 0..spare as u8 {
        let g = q.try_reserve(1).unwrap();
        q.try_put(&[i]).unwrap();
        drop(g);
    }
    assert_eq!(q.len(), 1 + spare, "len counts abandoned positions");
    let mut n = 1 + spare;
    while n < 16 {
        let r = q.try_put(&[100 + n as u8]);
        assert!(r.is_ok(), "put {n} of 16: {r:?}");
        n += 1;
    }
    assert!(q.is_full());
    assert!(matches!(q.try_put(b"x"), Err(Error::Full { .. })));
    let mut first = first;
    first[0] = 7;
    first.commit().unwrap();
    let mut got = vec![q.try_get().unwrap()];
    while let Ok(m) = q.try_get() {
        got.push(m);
    }
    let mut want = vec![vec![7u8]];
    want.extend((0..spare as u8).map(|i| vec![i]));
    want.extend((1 + spare..16).map(|n| vec![100 + n as u8]));
    assert_eq!(got, want);
    assert!(q.is_empty());
}

/// Beyond the spare slots, abandoned positions behind an open grant keep
/// their slots (a put says `Full` with fewer than `capacity` messages, as
/// documented on `slots`), are never counted by `len`, and give their slots
/// back as soon as the head passes them.
#[test]
fn abandoned_positions_beyond_the_spare_slots_wait_for_the_head() {
    let (r, ql) = Region::for_queue(4, 8);
    let q = r.init(&ql);
    let mut first = q.try_reserve(1).unwrap();
    // Two reservations, the first dropped: one hole, no message; until the
    // ring has no slot left.
    let mut holes = 0;
    loop {
        assert!(holes < 100, "no end of holes");
        let a = match q.try_reserve(1) {
            Ok(a) => a,
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("reserve: {e:?}"),
        };
        let b = match q.try_reserve(1) {
            Ok(b) => b,
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("reserve: {e:?}"),
        };
        drop(a);
        drop(b);
        holes += 1;
        assert_eq!(q.len(), 1, "len after {holes} holes");
    }
    // The open grant's slot and one for the last reservation are not holes.
    assert_eq!(holes, q.slots() - 2);
    assert!(!q.is_empty());
    first[0] = 9;
    first.commit().unwrap();
    assert_eq!(q.try_get().unwrap(), [9]);
    for i in 0..4u8 {
        q.try_put(&[i]).unwrap();
    }
    assert!(matches!(q.try_put(b"x"), Err(Error::Full { .. })));
    for i in 0..4u8 {
        assert_eq!(q.try_get().unwrap(), [i]);
    }
    assert!(q.is_empty());
}
