//! The byte ring under [`RawPipe`](super::RawPipe): one single-producer
//! single-consumer ring of length-prefixed records, and the writing and
//! reading halves that each end keeps of it.
//!
//! # The ring
//!
//! `tail` (bytes ever written, by the writer) and `head` (bytes ever read,
//! by the reader) are 64-bit counters on their own cache lines; the buffer
//! is `capacity` bytes (a power of two), indexed modulo. Each side keeps a
//! cached copy of the other's counter and reloads it only when it looks
//! out of room or out of data, so a message costs one store of each counter
//! and no cache-line ping-pong beyond them (the "cached indices" SPSC of
//! Lamport, refined by Giacomoni et al.'s FastForward and by crossbeam's
//! and rtrb's rings).
//!
//! A record is a 4-byte little-endian length, then the bytes, then padding
//! to 4. A record that fits in the ring is published with one `Release`
//! store of `tail` once all its bytes are in, so the reader sees it whole or
//! not at all. A larger one is streamed: the writer publishes as much as
//! fits, waits for room, and goes on; the reader collects the pieces in a
//! buffer of its own, grown as the bytes arrive, and delivers the message
//! whole. A length of `u32::MAX` is a skip record: nothing more before the
//! ring's start (written so that a message reserved in place is contiguous).
//!
//! # Untrusted counters
//!
//! The counters are positions in an endless stream and wrap at 2^64 (all
//! arithmetic on them is wrapping). Every counter read from shared memory,
//! at attach as at every reload, is read once and checked: the distance
//! `tail - head` must be within `0..=capacity`, else the read is
//! [`Error::Corrupted`]. Every count derived from them is therefore at most
//! `capacity`, and `copy_in`/`copy_out` check their own bounds again, so no
//! value in shared memory can make a copy leave the ring. A length prefix is
//! read once per message and checked against `max_message` and the
//! caller's buffer; a skip record where no writer makes one (at the ring's
//! start) is `Corrupted`, so a peer rewriting skip records cannot keep a
//! reader stepping over them.

use crate::error::{Error, Origin, Result};
use crate::raw::notify::Notify;
use crate::sync::{AtomicU64, Ordering};

/// The origin of this core's errors: it knows no name (the handle over
/// it adds its name and the operation).
const ORIGIN: Origin = Origin::new("RawPipe", "");

/// The length prefix of every record.
pub(crate) const LEN_BYTES: u64 = 4;

/// A length prefix that means "nothing more before the ring's start".
pub(crate) const SKIP: u32 = u32::MAX;

/// The stream bytes of a message of `len` bytes: prefix, bytes, padding to 4.
pub(crate) fn record_len(len: usize) -> u64 {
    LEN_BYTES + (len as u64).div_ceil(4) * 4
}

/// One cache line of its own.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(pub(crate) T);

/// One ring's counters and wake-ups.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RingCtl {
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    pub(crate) readable: Line<Notify>,
    pub(crate) writable: Line<Notify>,
}

fn bad_distance(what: &str, tail: u64, head: u64, cap: u64) -> Error {
    Error::corrupted(
        "",
        format!("pipe ring {what}: tail {tail} and head {head} are not within a ring of {cap}"),
    )
}

/// Checks that `tail` is at most `cap` bytes ahead of `head`.
fn check_distance(what: &str, tail: u64, head: u64, cap: u64) -> Result<()> {
    if tail.wrapping_sub(head) > cap {
        return Err(bad_distance(what, tail, head, cap));
    }
    Ok(())
}

/// The ring's bytes: `cap` bytes at `data`.
#[derive(Debug, Clone, Copy)]
struct Bytes {
    data: *mut u8,
    cap: u64,
}

impl Bytes {
    /// Copies `src` into the ring at stream position `pos` (wrapping).
    /// The caller checked that these bytes are free (not published, or
    /// already released by the reader).
    fn copy_in(self, pos: u64, src: &[u8]) -> Result<()> {
        let cap = self.cap as usize;
        if src.len() > cap {
            return Err(Error::corrupted("", "pipe write longer than its ring"));
        }
        let at = (pos % self.cap) as usize;
        let first = src.len().min(cap - at);
        // SAFETY: `data` is this ring's `cap` bytes (checked against the
        // region at attach); `at + first <= cap`, and the rest,
        // `src.len() - first <= cap - first`, wraps to the start: when it is
        // not zero, `first == cap - at`, so the rest is `<= at`. Nobody else
        // touches free bytes, and a hostile process writing them anyway only
        // changes their values.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.data.add(at), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.data, src.len() - first);
        }
        Ok(())
    }

    /// Copies the bytes at stream position `pos` (wrapping) into `dst`. The
    /// caller checked that they are published and not yet released.
    fn copy_out(self, pos: u64, dst: &mut [u8]) -> Result<()> {
        let cap = self.cap as usize;
        if dst.len() > cap {
            return Err(Error::corrupted("", "pipe read longer than its ring"));
        }
        let at = (pos % self.cap) as usize;
        let first = dst.len().min(cap - at);
        // SAFETY: as in `copy_in`, with the roles of ring and buffer swapped:
        // both pieces lie inside the ring's `cap` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(at), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.data,
                dst.as_mut_ptr().add(first),
                dst.len() - first,
            );
        }
        Ok(())
    }

    /// `len` contiguous bytes at stream position `pos`, if they do not wrap.
    fn contiguous(self, pos: u64, len: usize) -> Option<(*mut u8, usize)> {
        let at = pos % self.cap;
        // `at < cap <= 2^40`: no overflow.
        (len as u64 <= self.cap - at).then(|| {
            // SAFETY: `at + len <= cap`: inside the ring.
            (unsafe { self.data.add(at as usize) }, len)
        })
    }
}

/// The writing half of a ring, with its process-local cache.
#[derive(Debug)]
pub(crate) struct Tx<'a> {
    ctl: &'a RingCtl,
    bytes: Bytes,
    /// Bytes ever written (ours).
    tail: u64,
    /// The reader's head as last read; `tail - head_cache <= cap` always.
    head_cache: u64,
}

impl<'a> Tx<'a> {
    /// The writing half of the ring `ctl` whose `cap` bytes are at `data`.
    /// Checks the counters it loads.
    pub(crate) fn attach(ctl: &'a RingCtl, data: *mut u8, cap: u64) -> Result<Tx<'a>> {
        let tail = ctl.tail.0.load(Ordering::Acquire);
        let head = ctl.head.0.load(Ordering::Acquire);
        check_distance("at attach", tail, head, cap)?;
        Ok(Tx {
            ctl,
            bytes: Bytes { data, cap },
            tail,
            head_cache: head,
        })
    }

    pub(crate) fn ctl(&self) -> &'a RingCtl {
        self.ctl
    }

    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Free bytes by the cached head (at most `cap`).
    pub(crate) fn free(&self) -> u64 {
        // `tail - head_cache <= cap` (checked whenever head_cache is set,
        // and tail only advances into free room).
        self.bytes
            .cap
            .saturating_sub(self.tail.wrapping_sub(self.head_cache))
    }

    /// Whether `want` bytes are free now, by a fresh look at the reader's
    /// counter; a counter out of bounds also says yes (the next send
    /// reports it as `Corrupted` rather than waiting).
    pub(crate) fn room_now(&self, want: u64) -> bool {
        let head = self.ctl.head.0.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        used > self.bytes.cap || self.bytes.cap - used >= want
    }

    /// Reloads the reader's counter; checks it.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        let head = self.ctl.head.0.load(Ordering::Acquire);
        check_distance("head", self.tail, head, self.bytes.cap)?;
        self.head_cache = head;
        Ok(())
    }

    /// Copies `src` to the stream at `tail + offset` (not yet published).
    pub(crate) fn write_at(&self, offset: u64, src: &[u8]) -> Result<()> {
        self.bytes.copy_in(self.tail.wrapping_add(offset), src)
    }

    /// Moves the tail on by `n` bytes (not yet published).
    pub(crate) fn advance(&mut self, n: u64) {
        self.tail = self.tail.wrapping_add(n);
    }

    /// Publishes everything up to the tail.
    pub(crate) fn publish(&self) {
        // SYNC POINT: Release pairs with the reader's Acquire load of tail.
        self.ctl.tail.0.store(self.tail, Ordering::Release);
        self.ctl.readable.0.notify();
    }

    /// The tail's offset in the ring.
    pub(crate) fn tail_offset(&self) -> u64 {
        self.tail % self.bytes.cap
    }

    /// `len` bytes at stream position `pos`, where a reservation made them
    /// contiguous and free.
    pub(crate) fn reserved(&self, pos: u64, len: usize) -> Option<(*mut u8, usize)> {
        self.bytes.contiguous(pos, len)
    }
}

/// A message larger than the ring, being collected.
#[derive(Debug)]
struct Partial {
    bytes: Vec<u8>,
    len: usize,
}

/// The reading half of a ring, with its process-local cache and a message
/// being streamed in.
#[derive(Debug)]
pub(crate) struct Rx<'a> {
    ctl: &'a RingCtl,
    bytes: Bytes,
    max_message: usize,
    /// Bytes ever read (ours).
    head: u64,
    /// The writer's tail as last read; `tail_cache - head <= cap` always.
    tail_cache: u64,
    partial: Option<Partial>,
}

/// Where a completed message goes.
pub(crate) enum Out<'b> {
    Vec,
    Buf(&'b mut [u8]),
}

impl<'a> Rx<'a> {
    /// The reading half of the ring `ctl` whose `cap` bytes are at `data`.
    pub(crate) fn attach(
        ctl: &'a RingCtl,
        data: *mut u8,
        cap: u64,
        max_message: usize,
    ) -> Result<Rx<'a>> {
        let head = ctl.head.0.load(Ordering::Acquire);
        let tail = ctl.tail.0.load(Ordering::Acquire);
        check_distance("at attach", tail, head, cap)?;
        Ok(Rx {
            ctl,
            bytes: Bytes { data, cap },
            max_message,
            head,
            tail_cache: head,
            partial: None,
        })
    }

    pub(crate) fn ctl(&self) -> &'a RingCtl {
        self.ctl
    }

    /// Whether the writer has published bytes we have not read, by a fresh
    /// look at its counter (a counter out of bounds also says yes: the
    /// next receive reports it).
    pub(crate) fn has_bytes(&self) -> bool {
        self.ctl.tail.0.load(Ordering::Acquire) != self.head
    }

    fn avail(&self) -> u64 {
        self.tail_cache.wrapping_sub(self.head)
    }

    fn refresh(&mut self) -> Result<()> {
        let tail = self.ctl.tail.0.load(Ordering::Acquire);
        check_distance("tail", tail, self.head, self.bytes.cap)?;
        self.tail_cache = tail;
        Ok(())
    }

    /// Whether `n` bytes are readable, reloading the writer's counter if needed.
    fn readable(&mut self, n: u64) -> Result<bool> {
        if self.avail() >= n {
            return Ok(true);
        }
        self.refresh()?;
        Ok(self.avail() >= n)
    }

    /// Consumes `n` bytes and tells the writer.
    fn consume(&mut self, n: u64) {
        self.head = self.head.wrapping_add(n);
        // SYNC POINT: Release pairs with the writer's Acquire load of head:
        // our reads of these bytes happen before it overwrites them.
        self.ctl.head.0.store(self.head, Ordering::Release);
        self.ctl.writable.0.notify();
    }

    /// The length of the next message, read once from its prefix, without
    /// consuming it, once the prefix is readable (or the message is being
    /// streamed in). A skip record before it is consumed on the way; a
    /// second one (no writer makes two in a row) is `Corrupted`.
    pub(crate) fn peek_len(&mut self) -> Result<Option<usize>> {
        if let Some(p) = &self.partial {
            return Ok(Some(p.len));
        }
        for _ in 0..2 {
            if !self.readable(LEN_BYTES)? {
                return Ok(None);
            }
            let mut h = [0u8; LEN_BYTES as usize];
            self.bytes.copy_out(self.head, &mut h)?;
            let len = u32::from_le_bytes(h);
            if len == SKIP {
                let at = self.head % self.bytes.cap;
                let skip = self.bytes.cap - at;
                if at == 0 || skip % 4 != 0 {
                    return Err(Error::corrupted(
                        "",
                        format!("pipe skip record at ring offset {at}"),
                    ));
                }
                if !self.readable(skip)? {
                    return Ok(None);
                }
                self.consume(skip);
                continue;
            }
            let len = len as usize;
            if len > self.max_message {
                return Err(Error::corrupted(
                    "",
                    format!(
                        "pipe message length {len} exceeds the maximum {}",
                        self.max_message
                    ),
                ));
            }
            return Ok(Some(len));
        }
        Err(Error::corrupted("", "two pipe skip records in a row"))
    }

    /// Tries to complete the message of `len` bytes that `peek_len` just
    /// reported: `Ok(true)` when it is whole (in the partial buffer if
    /// streamed, else still in the ring after its prefix).
    pub(crate) fn try_complete(&mut self, len: usize) -> Result<bool> {
        let cap = self.bytes.cap;
        let total = record_len(len);
        if self.partial.is_none() && total <= cap {
            return self.readable(total);
        }
        // Streamed: take the prefix once, then whatever is there. The buffer
        // grows with the bytes that arrive, never ahead of them beyond one
        // ring's worth, so a hostile prefix costs no allocation by itself.
        if self.partial.is_none() {
            self.consume(LEN_BYTES);
            self.partial = Some(Partial {
                bytes: Vec::with_capacity(len.min(cap as usize)),
                len,
            });
        }
        loop {
            let p = self.partial.as_mut().expect("set above");
            let missing = p.len - p.bytes.len();
            if missing == 0 {
                // The padding after the bytes.
                let pad = total - LEN_BYTES - len as u64;
                if !self.readable(pad)? {
                    return Ok(false);
                }
                self.consume(pad);
                return Ok(true);
            }
            // `avail <= cap` (checked when tail_cache was loaded).
            let avail = self.tail_cache.wrapping_sub(self.head) as usize;
            if avail == 0 {
                if !self.readable(1)? {
                    return Ok(false);
                }
                continue;
            }
            let n = avail.min(missing);
            let old = p.bytes.len();
            p.bytes.resize(old + n, 0);
            let r = self.bytes.copy_out(self.head, &mut p.bytes[old..]);
            if let Err(e) = r {
                p.bytes.truncate(old);
                return Err(e);
            }
            self.consume(n as u64);
        }
    }

    /// Takes the completed message of `len` bytes (see `try_complete`).
    pub(crate) fn take(&mut self, len: usize, out: Out<'_>) -> Result<Option<Vec<u8>>> {
        if let Out::Buf(dst) = &out {
            if dst.len() < len {
                return Err(Error::BufferTooSmall {
                    needed: len,
                    origin: ORIGIN,
                });
            }
        }
        if let Some(p) = self.partial.take() {
            return Ok(match out {
                Out::Vec => Some(p.bytes),
                Out::Buf(dst) => {
                    dst[..len].copy_from_slice(&p.bytes[..len]);
                    None
                }
            });
        }
        let at = self.head.wrapping_add(LEN_BYTES);
        let r = match out {
            Out::Vec => {
                // `len < cap`: a message in the ring is no longer than it.
                let mut v = vec![0u8; len];
                self.bytes.copy_out(at, &mut v)?;
                Some(v)
            }
            Out::Buf(dst) => {
                self.bytes.copy_out(at, &mut dst[..len])?;
                None
            }
        };
        self.consume(record_len(len));
        Ok(r)
    }

    /// The completed message of `len` bytes where it lies, if it is in the
    /// ring (not streamed) and contiguous: its stream position.
    pub(crate) fn in_place(&self, len: usize) -> Option<u64> {
        let at = self.head.wrapping_add(LEN_BYTES);
        (self.partial.is_none() && self.bytes.contiguous(at, len).is_some()).then_some(at)
    }

    /// The bytes of the in-place message at `pos` (from `in_place`).
    pub(crate) fn bytes_at(&self, pos: u64, len: usize) -> Option<(*mut u8, usize)> {
        self.bytes.contiguous(pos, len)
    }

    /// Consumes the in-place message of `len` bytes.
    pub(crate) fn release_in_place(&mut self, len: usize) {
        self.consume(record_len(len));
    }
}
