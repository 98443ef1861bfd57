//! Unit tests that need the queue's internals: a claim taken from its owner
//! (by a wrong liveness verdict or a hostile write) is never overwritten by
//! the owner's publish, release or give-back (issue 14, defect 1).

use super::*;

/// A 64-byte-aligned heap region for a queue of `layout`.
struct Region {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Region {
    fn new(q: &QueueLayout) -> Region {
        let size = RawQueue::required_size(q).unwrap();
        let layout = std::alloc::Layout::from_size_align(size, 64).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Region { ptr, layout }
    }
    fn queue(&self, q: &QueueLayout) -> RawQueue<'_> {
        // SAFETY: the region lives as long as the returned handle borrows it.
        unsafe { RawQueue::init_in(self.ptr, self.layout.size(), q).unwrap() }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

const L: QueueLayout = QueueLayout {
    capacity: 2,
    max_message: 8,
};

#[test]
fn commit_of_a_stolen_claim_fails_and_overwrites_nothing() {
    let r = Region::new(&L);
    let q = r.queue(&L);
    let mut g = q.try_reserve(2).unwrap();
    g.copy_from_slice(b"hi");
    let pos = g.claim.pos;
    // Someone decided we were dead and skipped our position.
    q.hdr(pos).state.store(SKIP | p40(pos), Ordering::SeqCst);
    assert!(matches!(g.commit(), Err(Error::Corrupted { .. })));
    assert_eq!(q.hdr(pos).state.load(Ordering::SeqCst), SKIP | p40(pos));
    // The queue steps over the skipped position and works on.
    assert!(matches!(q.try_get(), Err(Error::Empty { .. })));
    q.try_put(b"ok").unwrap();
    assert_eq!(q.try_get().unwrap(), b"ok");
}

#[test]
fn release_of_a_stolen_read_fails_and_overwrites_nothing() {
    let r = Region::new(&L);
    let q = r.queue(&L);
    q.try_put(b"a").unwrap();
    let g = q.try_get_ref().unwrap();
    let pos = g.claim.pos;
    let freed = p40(pos + q.slots);
    // Recovered by someone as a dead reader's, then claimed by a producer.
    let theirs = claim(WRITING, 7, freed);
    q.hdr(pos).state.store(theirs, Ordering::SeqCst);
    drop(g);
    assert_eq!(q.hdr(pos).state.load(Ordering::SeqCst), theirs);
}

#[test]
fn put_whose_claim_is_stolen_is_retried_not_lost() {
    let r = Region::new(&L);
    let q = r.queue(&L);
    // Take the claim, lose it, publish fails: put_until retries at a new
    // position, so a plain put is not lost.
    let c = match q.claim_put(false, false).unwrap() {
        Try::Done(c) => c,
        _ => panic!("room"),
    };
    q.hdr(c.pos)
        .state
        .store(SKIP | p40(c.pos), Ordering::SeqCst);
    assert!(q.publish(c, 1, |b| b[0] = 1).is_err());
    q.try_put(b"x").unwrap();
    assert_eq!(q.try_get().unwrap(), b"x");
}

#[test]
fn a_fresh_handle_takes_its_own_entry_and_gives_it_back() {
    let r = Region::new(&L);
    let a = r.queue(&L);
    // SAFETY: the region outlives the handle.
    let b = unsafe { RawQueue::attach(r.ptr, r.layout.size()).unwrap() };
    let (ia, ib) = (a.me().unwrap(), b.me().unwrap());
    assert_ne!(ia, ib);
    drop(b);
    assert_eq!(a.ctl.procs[ib as usize].load(Ordering::SeqCst), 0);
}

#[test]
fn a_leaked_grant_is_recovered_when_its_handle_drops() {
    let r = Region::new(&L);
    let a = r.queue(&L);
    {
        // SAFETY: the region outlives the handle.
        let b = unsafe { RawQueue::attach(r.ptr, r.layout.size()).unwrap() };
        std::mem::forget(b.try_reserve(1).unwrap());
    }
    a.try_put(b"z").unwrap();
    assert_eq!(a.try_get().unwrap(), b"z");
    assert!(a.is_empty());
}

#[test]
fn the_participant_table_fills_with_a_clear_error() {
    let r = Region::new(&L);
    let first = r.queue(&L);
    let handles: Vec<_> = (1..PROCS)
        .map(|_| {
            // SAFETY: the region outlives the handles.
            unsafe { RawQueue::attach(r.ptr, r.layout.size()) }
        })
        .collect();
    assert!(handles.iter().all(|h| h.is_ok()));
    // SAFETY: as above.
    let more = unsafe { RawQueue::attach(r.ptr, r.layout.size()) };
    assert!(matches!(more, Err(Error::InvalidArgument(_))));
    drop(handles);
    drop(first);
    // SAFETY: as above.
    assert!(unsafe { RawQueue::attach(r.ptr, r.layout.size()) }.is_ok());
}

/// Regression: a sleeper watches the participants it saw when it went to
/// sleep (see `sync::watch`). One that joined afterwards was not watched:
/// its death mid-claim was seen only at the sleeper's periodic look, a
/// second later, instead of at once. Joining now wakes the sleepers, who
/// look again and watch the newcomer too.
#[test]
fn a_participant_joining_wakes_the_sleepers_to_watch_it() {
    use crate::sys::test_support::{asleep, until};
    let r = Region::new(&L);
    let q = r.queue(&L);
    let init = match crate::sync::probe_process(1) {
        crate::sys::Probe::Running(start) => crate::sync::TaskStamp::new(1, start).0,
        p => panic!("process 1: {p:?}"),
    };
    std::thread::scope(|s| {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let q = &q;
        let getter = s.spawn(move || {
            tid_tx.send(crate::sys::gettid()).unwrap();
            q.get_timeout(Duration::from_secs(60))
        });
        let tid = tid_rx.recv().unwrap();
        until("the getter asleep", || asleep(tid));
        let before = q.get_notify().futex().word().load(Ordering::SeqCst);
        q.register(init).unwrap();
        let after = q.get_notify().futex().word().load(Ordering::SeqCst);
        q.try_put(b"x").unwrap();
        assert_eq!(getter.join().unwrap().unwrap(), b"x");
        assert_ne!(
            after, before,
            "the sleeper was not woken by a new participant"
        );
    });
}
