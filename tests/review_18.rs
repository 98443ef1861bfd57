//! Hostile review (rev18) of the two-word lock guard (removal of held-lock
//! records by address and thread) and of the queue's `try_` calls built on
//! `get_now`/`put_now`.
//!
//! A thread's record of the locks it holds is the only thing that may say
//! "you already hold it" (a lock word is shared memory, and a peer can
//! write our stamp into it). These tests take a lock through one mapping of
//! its segment and let it go through another (two handles of one segment),
//! then forge the thread's own stamp into the lock word, as a scribbling
//! peer would: a stale record left by the release would make the thread
//! believe it holds the lock (`Deadlock`, or a "nested" acquisition of a
//! lock nobody gave it).
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::{gettid, watchdog, Cleanup, Mapped};
use shmkit::{Condition, Error, Lock, Queue, RLock};

const WATCHDOG: Duration = Duration::from_secs(120);
/// How long a locker waits on a forged stamp before it says `Timeout`.
const SHORT: Duration = Duration::from_millis(20);

/// The offset and value of the lock word that `take` (which takes the lock
/// of segment `seg`) changed to the calling thread's stamp.
fn my_stamp_word(seg: &Mapped, take: impl FnOnce()) -> (usize, u64) {
    let before = seg.words();
    take();
    let after = seg.words();
    let tid = u64::from(gettid());
    let i = (0..before.len())
        .find(|&i| before[i] != after[i] && (after[i] >> 40) & ((1 << 22) - 1) == tid)
        .expect("the lock word, naming this thread");
    (i * 8, after[i])
}

/// An `RLock` taken through one handle and nested through a second handle
/// of the same segment, then let go level by level through the first and
/// last through the second: the thread's record of the lock (made at the
/// first handle's address) must go with the lock. A stamp of ours forged
/// into the free lock afterwards is then a live owner's, waited for
/// (`Timeout`), not a level of ours.
#[test]
fn rlock_released_through_another_handle_leaves_no_record() {
    let _w = watchdog(WATCHDOG);
    let a = RLock::create_unique().unwrap();
    let _c = Cleanup(vec![a.name().to_owned()]);
    let b = RLock::open(a.name()).unwrap();
    let seg = Mapped::open(a.name());
    let (at, stamp) = my_stamp_word(&seg, || assert!(!a.acquire(None).unwrap()));
    b.acquire(None).unwrap();
    assert_eq!(a.level(), 2);
    a.release().unwrap();
    b.release().unwrap();
    assert!(!a.is_locked());
    assert_eq!(seg.read(at), 0);

    seg.write(at, stamp);
    let r = a.acquire(Some(SHORT));
    seg.write(at, 0);
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "a forged stamp of ours taken for a held level: {r:?}"
    );
    assert!(matches!(b.release(), Err(Error::NotOwner { .. })));
}

/// A `Condition` over a `Lock`, waited on while the lock is held through a
/// guard of a second handle of the lock's segment: the wait lets the lock
/// go and takes it back, and the guard's drop lets it go for good. No
/// record of it may be left: a forged stamp of ours is then waited for
/// (`Timeout`), not `Deadlock`.
#[test]
fn condition_wait_under_another_handles_guard_leaves_no_record() {
    let _w = watchdog(WATCHDOG);
    let l1 = Lock::create_unique().unwrap();
    let mut c = Cleanup(vec![l1.name().to_owned()]);
    let l2 = Lock::open(l1.name()).unwrap();
    let seg = Mapped::open(l1.name());
    let cond = Condition::create_over(None, l1).unwrap();
    c.0.push(cond.name().to_owned());

    let mut g = None;
    let (at, stamp) = my_stamp_word(&seg, || g = Some(l2.lock().unwrap()));
    let w = cond.wait_timeout(Duration::from_millis(1)).unwrap();
    assert!(w.timed_out);
    drop(g);
    assert!(!l2.is_locked());
    assert_eq!(seg.read(at), 0);

    seg.write(at, stamp);
    let r = l2.lock_timeout(SHORT).map(drop);
    seg.write(at, 0);
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "a forged stamp of ours taken for a lock held: {r:?}"
    );
    // And the lock works as before.
    drop(l2.lock().unwrap());
}

/// Python-style use of one `Condition` through two handles: acquired
/// through the first, waited on through the second, released through the
/// first. No record of the lock may be left behind.
#[test]
fn condition_used_through_two_handles_leaves_no_record() {
    let _w = watchdog(WATCHDOG);
    for plain in [false, true] {
        let c1 = if plain {
            Condition::create_plain(None).unwrap()
        } else {
            Condition::create_unique().unwrap()
        };
        let _c = Cleanup(vec![c1.name().to_owned()]);
        let c2 = Condition::open(c1.name()).unwrap();
        let seg = Mapped::open(c1.name());
        let (at, stamp) = my_stamp_word(&seg, || assert!(!c1.acquire(None).unwrap()));
        let w = c2.wait_timeout(Duration::from_millis(1)).unwrap();
        assert!(w.timed_out);
        c1.release().unwrap();
        assert_eq!(seg.read(at), 0, "plain: {plain}");

        seg.write(at, stamp);
        let r = c1.acquire(Some(SHORT));
        seg.write(at, 0);
        assert!(
            matches!(r, Err(Error::Timeout { .. })),
            "plain: {plain}: a forged stamp of ours taken for a lock held: {r:?}"
        );
        assert!(!c1.acquire(None).unwrap());
        c1.release().unwrap();
    }
}

/// Control: a stamp of ours forged into a lock this thread never took is
/// waited for, through either handle, with more than the inline number of
/// other locks held (the record spills), and guards dropped out of order.
#[test]
fn forged_stamp_is_never_deadlock_with_many_locks_held() {
    let _w = watchdog(WATCHDOG);
    let target = Lock::create_unique().unwrap();
    let mut c = Cleanup(vec![target.name().to_owned()]);
    let other = Lock::open(target.name()).unwrap();
    let seg = Mapped::open(target.name());
    let (at, stamp) = {
        let mut g = None;
        let r = my_stamp_word(&seg, || g = Some(target.lock().unwrap()));
        drop(g);
        r
    };
    let many: Vec<Lock> = (0..12).map(|_| Lock::create_unique().unwrap()).collect();
    c.0.extend(many.iter().map(|l| l.name().to_owned()));
    let mut guards: Vec<_> = many.iter().map(|l| Some(l.lock().unwrap())).collect();
    // Out of order: every third, then the rest from the front.
    for i in (0..guards.len()).step_by(3) {
        guards[i] = None;
    }
    seg.write(at, stamp);
    for l in [&target, &other] {
        let r = l.lock_timeout(SHORT).map(drop);
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    }
    seg.write(at, 0);
    for g in guards.iter_mut() {
        *g = None;
    }
    // Each of the many is free, and a relock of a held one is `Deadlock`.
    for l in &many {
        let g = l.lock().unwrap();
        assert!(matches!(l.try_lock(), Ok(None)));
        assert!(matches!(l.lock_timeout(SHORT), Err(Error::Deadlock { .. })));
        drop(g);
    }
    // A relock through the other handle of a held lock is `Deadlock`.
    let g = target.lock().unwrap();
    assert!(matches!(
        other.lock_timeout(SHORT),
        Err(Error::Deadlock { .. })
    ));
    drop(g);
    drop(other.lock().unwrap());
}

/// A leaked guard keeps its lock (and the record of it); the thread's later
/// locks of other locks are unaffected, and a relock of the leaked one is
/// `Deadlock`, through either handle.
#[test]
fn leaked_guard_keeps_its_lock() {
    let _w = watchdog(WATCHDOG);
    let a = Lock::create_unique().unwrap();
    let _c = Cleanup(vec![a.name().to_owned()]);
    let b = Lock::open(a.name()).unwrap();
    std::mem::forget(a.lock().unwrap());
    for _ in 0..20 {
        drop(Lock::create_unique().map(|l| {
            let _ = shmkit::unlink(l.name());
            drop(l.lock().unwrap());
        }));
    }
    assert!(matches!(a.lock_timeout(SHORT), Err(Error::Deadlock { .. })));
    assert!(matches!(b.lock_timeout(SHORT), Err(Error::Deadlock { .. })));
}

// ---- Queue: try_ calls -----------------------------------------------------

/// Every answer of the `try_` calls, named as the blocking calls' are.
#[test]
fn queue_try_calls_name_every_answer() {
    let _w = watchdog(WATCHDOG);
    let q = Queue::create_unique(1, 4).unwrap();
    let _c = Cleanup(vec![q.name().to_owned()]);
    let name = q.name().to_owned();
    let check = |e: &Error, op: &str| {
        let o = e.origin().unwrap_or_else(|| panic!("{e:?} has an origin"));
        assert_eq!(
            (o.kind(), o.name(), o.operation()),
            ("Queue", Some(name.as_str()), op)
        );
    };
    check(&q.try_get().unwrap_err(), "try_get");
    check(&q.try_get_into(&mut [0u8; 4]).unwrap_err(), "try_get_into");
    let e = q.try_put(b"12345").unwrap_err();
    assert!(matches!(e, Error::MessageTooLarge { len: 5, max: 4, .. }));
    check(&e, "try_put");
    q.try_put(b"1234").unwrap();
    let e = q.try_put(b"x").unwrap_err();
    assert!(matches!(e, Error::Full { .. }));
    check(&e, "try_put");
    let e = q.try_get_into(&mut [0u8; 3]).unwrap_err();
    assert!(matches!(e, Error::BufferTooSmall { .. }), "{e:?}");
    check(&e, "try_get_into");
    // The message stayed.
    assert_eq!(q.try_get_into(&mut [0u8; 4]).unwrap(), 4);
    q.try_put(b"ab").unwrap();
    q.close();
    let e = q.try_put(b"x").unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e:?}");
    check(&e, "try_put");
    // Closed, not drained: the message is still delivered.
    assert_eq!(q.try_get().unwrap(), b"ab");
    let e = q.try_get().unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e:?}");
    check(&e, "try_get");
    let e = q.try_get_into(&mut [0u8; 4]).unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e:?}");
    check(&e, "try_get_into");
}

/// A leased message given back is taken again by `try_get` (the
/// given-back path of `claim_get`), and `Closed` waits for a live lease.
#[test]
fn queue_try_get_takes_a_given_back_message() {
    let _w = watchdog(WATCHDOG);
    let q = Queue::create_unique(2, 8).unwrap();
    let _c = Cleanup(vec![q.name().to_owned()]);
    q.try_put(b"job").unwrap();
    let lease = q.get_lease().unwrap();
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    q.close();
    // A live lease may come back: not `Closed` yet.
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    drop(lease);
    assert_eq!(q.try_get().unwrap(), b"job");
    assert!(matches!(q.try_get(), Err(Error::Closed { .. })));
}

/// A guard leaked, its lock's segment closed and unmapped (the record of
/// it stays, as a leaked guard's does), and a new lock mapped where it was
/// (mmap reuses the hole): the new lock is another lock. A stamp of ours
/// forged into it is waited for (`Timeout`), never `Deadlock` by the old
/// record's address.
#[test]
fn a_leaked_guards_record_is_not_a_new_lock_at_its_address() {
    let _w = watchdog(WATCHDOG);
    for _ in 0..20 {
        let old = Lock::create_unique().unwrap();
        let seg = Mapped::open(old.name());
        let mut g = None;
        let (at, stamp) = my_stamp_word(&seg, || g = Some(old.lock().unwrap()));
        std::mem::forget(g);
        drop(seg);
        // The creating handle's drop removes the name and unmaps.
        drop(old);

        let new = Lock::create_unique().unwrap();
        let _c = Cleanup(vec![new.name().to_owned()]);
        let seg = Mapped::open(new.name());
        seg.write(at, stamp);
        let r = new.lock_timeout(SHORT).map(drop);
        seg.write(at, 0);
        assert!(
            matches!(r, Err(Error::Timeout { .. })),
            "a forged stamp of ours in a new lock taken for the leaked one: {r:?}"
        );
    }
}

/// A forked child's copies of its parent's guards (of a `Lock`, nested
/// under an `RLock` level, more than the inline number) are not its own:
/// dropping them lets nothing go, the child waits for the parent's locks
/// (`Timeout`, not `Deadlock`), and the parent still holds them all.
#[test]
fn a_forked_childs_inherited_guards_let_nothing_go() {
    let _w = watchdog(WATCHDOG);
    let r = RLock::create_unique().unwrap();
    let locks: Vec<Lock> = (0..10).map(|_| Lock::create_unique().unwrap()).collect();
    let mut names: Vec<String> = locks.iter().map(|l| l.name().to_owned()).collect();
    names.push(r.name().to_owned());
    let _c = Cleanup(names);
    assert!(!r.acquire(None).unwrap());
    let guards: Vec<_> = locks.iter().map(|l| l.lock().unwrap()).collect();
    // SAFETY: fork(2); the child only calls shmkit and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut code = 0;
        // Out of order: the last first, then the rest.
        let mut guards = guards;
        drop(guards.pop());
        drop(guards);
        for l in &locks {
            if !l.is_locked() {
                code |= 1;
            }
            if !matches!(l.lock_timeout(SHORT), Err(Error::Timeout { .. })) {
                code |= 2;
            }
        }
        if !matches!(r.acquire(Some(SHORT)), Err(Error::Timeout { .. })) {
            code |= 4;
        }
        if !matches!(r.release(), Err(Error::NotOwner { .. })) {
            code |= 8;
        }
        // SAFETY: _exit(2) in the forked child.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waitpid(2) on our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child's failures (bits)");
    for l in &locks {
        assert!(l.is_locked());
        assert!(matches!(l.lock_timeout(SHORT), Err(Error::Deadlock { .. })));
    }
    assert_eq!(r.level(), 1);
    drop(guards);
    for l in &locks {
        drop(l.try_lock().unwrap().expect("free"));
    }
    r.release().unwrap();
    assert!(!r.is_locked());
}
