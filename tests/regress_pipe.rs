//! Pipe regressions (issue 14): each test failed on the code before its fix.
//!
//! The hostile-memory tests place a `RawPipe` on the heap with guard bytes
//! after it and write the shared words directly. The offsets below are the
//! `#[repr(C)]` layout of the pipe's control block (`src/raw/pipe.rs`):
//! configuration at 0, two 64-byte end records at 64, two rings' control
//! blocks of four 64-byte lines at 192, ring data from 704.
#![allow(clippy::disallowed_types)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::watchdog;
use shmkit::raw::{Direction, PipeLayout, RawPipe};
use shmkit::{Error, Pipe};

// ---- the largest single allocation of this thread ------------------------

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only records the request size
// in a const-initialised thread-local without a destructor (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
        // SAFETY: the caller's contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(new)));
        // SAFETY: the caller's contract.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The largest allocation `f` asked for on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|c| c.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

// ---- a pipe on the heap, with guard bytes after it ------------------------

const CTL: usize = 704;
const MAX_MESSAGE: usize = 8;
const GUARD: usize = 4096;
const GUARD_BYTE: u8 = 0xA5;

fn tail(r: usize) -> usize {
    192 + 256 * r
}
fn head(r: usize) -> usize {
    192 + 256 * r + 64
}

struct Region {
    ptr: *mut u8,
    len: usize,
    layout: Layout,
}

impl Region {
    fn new(len: usize) -> Region {
        let layout = Layout::from_size_align(len + GUARD, 64).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        // SAFETY: the guard lies inside the allocation.
        unsafe { std::ptr::write_bytes(ptr.add(len), GUARD_BYTE, GUARD) };
        Region { ptr, len, layout }
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: aligned, inside the region; the pipe's words are atomics.
        unsafe { &*self.ptr.add(off).cast::<AtomicU64>() }
    }

    fn set(&self, off: usize, v: u64) {
        self.word(off).store(v, Ordering::SeqCst);
    }

    fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len);
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: inside the region; a byte store racing with nothing
            // (the tests write while no end is inside a call).
            unsafe { self.ptr.add(off + i).write_volatile(*b) };
        }
    }

    fn guard_intact(&self) -> bool {
        // SAFETY: the guard lies inside the allocation.
        let g = unsafe { std::slice::from_raw_parts(self.ptr.add(self.len), GUARD) };
        g.iter().all(|&b| b == GUARD_BYTE)
    }
}

// SAFETY: the region is plain bytes reached through atomics or volatile
// byte stores; the tests share it between threads only through those.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

fn layout(capacity: usize, max_message: usize) -> PipeLayout {
    PipeLayout {
        capacity,
        max_message,
        direction: Direction::Duplex,
    }
}

/// A duplex pipe on the heap and its end 0 (end 1 is attached by the test).
fn heap_pipe<'a>(r: &'a Region, l: &PipeLayout) -> RawPipe<'a> {
    // SAFETY: the region outlives the ends, which are its only users.
    unsafe { RawPipe::init_in(r.ptr, r.len, l).unwrap() }
}

fn attach(r: &Region) -> shmkit::Result<RawPipe<'_>> {
    // SAFETY: as in `heap_pipe`.
    unsafe { RawPipe::attach(r.ptr, r.len) }
}

fn region_for(l: &PipeLayout) -> Region {
    let n = RawPipe::required_size(l).unwrap();
    assert_eq!(n, CTL + 2 * l.capacity, "the layout this file assumes");
    Region::new(n)
}

fn corrupted<T: std::fmt::Debug>(r: &shmkit::Result<T>) -> bool {
    matches!(r, Err(Error::Corrupted { .. }))
}

// ---- defect 2a: counters loaded at attach are checked ---------------------

/// Ring 1 (written by end 1) with tail 323 and head 0 on a 128-byte ring: a
/// 320-byte streamed send from the attaching end used to write 263 bytes
/// past the ring (release; debug builds panicked in `tx_free`).
#[test]
fn counters_read_at_attach_are_checked_like_at_refresh() {
    let l = layout(128, 1024);
    let r = region_for(&l);
    let _a = heap_pipe(&r, &l);
    r.set(tail(1), 323);
    r.set(head(1), 0);
    match attach(&r) {
        Err(e) => assert!(matches!(e, Error::Corrupted { .. }), "{e:?}"),
        Ok(mut b) => {
            let s = b.send(&[0x11; 320]);
            assert!(corrupted(&s), "{s:?}");
        }
    }
    assert!(r.guard_intact(), "bytes written past the ring");
}

/// The same for ring 0's counters, which end 1 reads: a reader whose head
/// is far from the writer's tail reads nothing out of the ring.
#[test]
fn a_reader_with_a_hostile_head_at_attach_reads_nothing_out_of_bounds() {
    let l = layout(128, 1024);
    let r = region_for(&l);
    let mut a = heap_pipe(&r, &l);
    r.set(head(0), 1000);
    let b = attach(&r);
    if let Ok(mut b) = b {
        let _ = a.send_timeout(&[3; 100], Duration::ZERO);
        let got = b.recv_timeout(Duration::ZERO);
        assert!(
            corrupted(&got) || matches!(got, Err(Error::Timeout { .. })),
            "{got:?}"
        );
    }
    assert!(r.guard_intact());
}

// ---- defect 9: counters near 2^64 -----------------------------------------

/// Hostile but self-consistent counters close to `u64::MAX` in both rings:
/// every call returns `Ok` or an error, none panics on overflow. (Messages
/// fit the ring: one thread cannot drain a streamed one while sending it.)
#[test]
fn counters_near_the_top_of_u64_never_panic() {
    for base in [u64::MAX - 3, u64::MAX - 67, u64::MAX - 127, u64::MAX] {
        let l = layout(128, 1024);
        let r = region_for(&l);
        let mut a = heap_pipe(&r, &l);
        for ring in 0..2 {
            r.set(tail(ring), base);
            r.set(head(ring), base);
        }
        let Ok(mut b) = attach(&r) else { continue };
        let mut buf = [0u8; 64];
        for i in 0..300usize {
            let len = (i * 29) % 120;
            let _ = b.send_timeout(&vec![i as u8; len], Duration::ZERO);
            let _ = a.send_timeout(&vec![i as u8; len % 100], Duration::ZERO);
            let _ = a.recv_timeout(Duration::ZERO);
            let _ = b.recv_into_timeout(&mut buf, Duration::ZERO);
            if let Ok(mut g) = b.reserve_timeout(len % 100, Duration::ZERO) {
                g.fill(7);
                g.commit();
            }
            let _ = a.recv_ref_timeout(Duration::ZERO).map(|m| m.len());
        }
        assert!(r.guard_intact());
    }
}

// ---- defect 8: a hostile length prefix ------------------------------------

/// A length prefix of almost 4 GiB (with the configuration's max_message
/// scribbled to match before the receiver attached): the receiver allocates
/// for the bytes that arrived, not for the length the prefix claims.
#[test]
fn a_hostile_length_prefix_allocates_only_for_bytes_that_arrive() {
    let l = layout(128, 1024);
    let r = region_for(&l);
    let _a = heap_pipe(&r, &l);
    r.set(MAX_MESSAGE, u64::from(u32::MAX - 1));
    let mut b = attach(&r).unwrap();
    // Ring 0 (end 0 to end 1): a prefix claiming 0xFFFF_FFF0 bytes, then 64.
    r.write(CTL, &0xFFFF_FFF0u32.to_le_bytes());
    r.write(CTL + 4, &[9; 64]);
    r.set(tail(0), 68);
    let (got, largest) = largest_allocation(|| b.recv_timeout(Duration::ZERO));
    assert!(matches!(got, Err(Error::Timeout { .. })), "{got:?}");
    assert!(
        largest < 1 << 20,
        "the receiver asked for {largest} bytes for 64 that arrived"
    );
    assert!(r.guard_intact());
}

// ---- defect 12: a peer that rewrites skip records -------------------------

/// A skip record at the ring's start (which no writer makes: a skip pads a
/// record to the ring's start) is corruption; so a peer cannot keep a
/// non-blocking receive stepping over skip records it keeps rewriting.
#[test]
fn a_skip_record_at_the_start_of_the_ring_is_corrupted() {
    let l = layout(128, 1024);
    let r = region_for(&l);
    let _a = heap_pipe(&r, &l);
    let mut b = attach(&r).unwrap();
    r.write(CTL, &u32::MAX.to_le_bytes());
    r.set(tail(0), 128);
    let got = b.recv_timeout(Duration::ZERO);
    assert!(corrupted(&got), "{got:?}");
}

/// The same with a concurrent peer that keeps the ring full of skip records
/// as fast as the reader consumes them: every non-blocking receive returns
/// (here: `Corrupted`).
#[test]
fn a_peer_rewriting_skip_records_cannot_keep_a_try_recv_busy() {
    let _w = watchdog(Duration::from_secs(60));
    let l = layout(64, 1024);
    let r = region_for(&l);
    let _a = heap_pipe(&r, &l);
    let mut b = attach(&r).unwrap();
    r.write(CTL, &u32::MAX.to_le_bytes());
    let stop = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while stop.load(Ordering::Relaxed) == 0 {
                let h = r.word(head(0)).load(Ordering::Acquire);
                r.set(tail(0), h.wrapping_add(64));
            }
        });
        for _ in 0..1000 {
            let got = b.recv_timeout(Duration::ZERO);
            assert!(
                corrupted(&got) || matches!(got, Err(Error::Timeout { .. })),
                "{got:?}"
            );
        }
        stop.store(1, Ordering::Relaxed);
    });
}

// ---- defect 2: recv_into against a well-behaved writer ---------------------

fn ping_pong_small_buffer(rounds: usize, use_value: bool) {
    let _w = watchdog(Duration::from_secs(120));
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..rounds {
            a.send(&[i as u8; 64]).unwrap();
            assert_eq!(a.recv().unwrap(), b"ack");
        }
        a
    });
    let mut small = [0u8; 8];
    for i in 0..rounds {
        // The ring is usually empty here: the writer is sending right now.
        if use_value {
            // A typed receive takes the longer message and returns it.
            match b.recv_value::<u64>() {
                Err(Error::WrongSize {
                    expected: 8,
                    message,
                    ..
                }) => {
                    assert_eq!(message, [i as u8; 64], "round {i}")
                }
                r => panic!("round {i}: {r:?}"),
            }
        } else {
            let r = b.recv_into(&mut small);
            assert!(
                matches!(r, Err(Error::BufferTooSmall { needed: 64, .. })),
                "round {i}: {r:?}"
            );
            assert_eq!(b.recv().unwrap(), [i as u8; 64]);
        }
        b.send(b"ack").unwrap();
    }
    drop(writer.join().unwrap());
}

fn rounds() -> usize {
    std::env::var("SHMKIT_REGRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// `recv_into` with an 8-byte buffer while 64-byte messages arrive: always
/// `BufferTooSmall`, never a panic (it used to panic at `dst[..len]` when
/// the message arrived between two looks at the ring).
#[test]
fn recv_into_a_small_buffer_never_panics_while_messages_arrive() {
    ping_pong_small_buffer(rounds(), false);
}

/// The same through `recv_value`.
#[test]
fn recv_value_never_panics_while_longer_messages_arrive() {
    ping_pong_small_buffer(rounds(), true);
}

// ---- defect 6: a pipe end inherited across fork ---------------------------

/// A forked child's inherited end is not its own: every call there fails
/// with `InvalidArgument`, and dropping it there leaves the parent's pipe
/// open. The parent goes on using both ends.
#[test]
fn an_end_inherited_across_fork_is_refused_in_the_child() {
    let _w = watchdog(Duration::from_secs(60));
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    a.send(b"before").unwrap();
    // SAFETY: the child only uses the pipe ends and then _exits; glibc's
    // malloc is usable in a forked child.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let refused = |r: shmkit::Result<()>| matches!(r, Err(Error::InvalidArgument(_)));
        let mut ok = refused(b.send(b"from the child"));
        ok &= refused(b.recv_timeout(Duration::ZERO).map(|_| ()));
        ok &= refused(a.send(b"from the child"));
        ok &= refused(b.poll(Duration::ZERO).map(|_| ()));
        ok &= refused(b.reserve(1).map(|_| ()));
        drop(b);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child could use the parent's end"
    );
    assert!(
        !a.is_disconnected(),
        "the child's drop closed the parent's end"
    );
    assert_eq!(b.recv().unwrap(), b"before");
    b.send(b"after").unwrap();
    assert_eq!(a.recv().unwrap(), b"after");
}
