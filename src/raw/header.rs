//! The segment header and its init protocol.
//!
//! Layout (64 bytes, `repr(C)`, every field little-endian-native and
//! accessed atomically, since another process may write it at any time):
//!
//! | offset | field          | meaning                                              |
//! |--------|----------------|------------------------------------------------------|
//! | 0      | magic          | [`MAGIC`]                                            |
//! | 8      | version        | [`FORMAT_VERSION`]                                   |
//! | 12     | kind           | [`Kind`] code                                        |
//! | 16     | type_size      | `size_of` the payload type (0 if none)               |
//! | 20     | type_align     | `align_of` the payload type (0 if none)              |
//! | 24     | type_hash      | FNV-1a of the payload type's name (0 if none)        |
//! | 32     | total_len      | length of the whole segment, header included         |
//! | 40     | state          | `INIT` (0) until the creator publishes `READY` (1)   |
//! | 44     | creator_pid    | the creator's pid, written first                     |
//! | 48     | creator_start  | the creator's start time (bits 0..40), so a reused pid can't fool; its pid namespace's tag (bits 40..64, 0 if unknown), so a pid of another namespace is not looked up here |
//! | 56     | aux            | kind-specific: an Array's element count, else 0      |
//!
//! Protocol: the creator writes `creator_pid`/`creator_start` as soon as the
//! object has its length, then the other fields, then initialises the
//! payload, then stores `state = READY` with `Release`. An opener loads
//! `state` with `Acquire`; only after it sees `READY` does it read the other
//! fields, which are then the creator's (the loom model `tests/loom_header.rs`
//! checks this). It never trusts them: [`Header::check`] validates each.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// "SHMKIT" followed by two bytes that make a text file unlikely to match.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\x00\xA7");
/// The version of the shared-memory format this build reads and writes.
pub const FORMAT_VERSION: u32 = 3;
/// The header's size; the payload starts at this offset.
pub const HEADER_LEN: usize = 64;

const INIT: u32 = 0;
const READY: u32 = 1;

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// A plain [`Segment`](crate::Segment) of bytes.
    Raw = 1,
    /// A [`Value`](crate::Value).
    Value = 2,
    /// An [`Array`](crate::Array).
    Array = 3,
    /// A [`Lock`](crate::Lock).
    Lock = 4,
    /// An [`Event`](crate::Event).
    Event = 5,
    /// A pipe (two one-way rings).
    Pipe = 6,
    /// A bounded multi-producer, multi-consumer queue.
    Queue = 7,
    /// An [`RLock`](crate::RLock) (recursive lock).
    RLock = 8,
    /// A [`Semaphore`](crate::Semaphore) or
    /// [`BoundedSemaphore`](crate::BoundedSemaphore) (the core's flag tells
    /// them apart).
    Semaphore = 9,
    /// A [`Barrier`](crate::Barrier).
    Barrier = 11,
    /// A [`Condition`](crate::Condition).
    Condition = 10,
}

impl Kind {
    /// The kind's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Raw => "Segment",
            Kind::Value => "Value",
            Kind::Array => "Array",
            Kind::Lock => "Lock",
            Kind::Event => "Event",
            Kind::Pipe => "Pipe",
            Kind::Queue => "Queue",
            Kind::RLock => "RLock",
            Kind::Semaphore => "Semaphore",
            Kind::Barrier => "Barrier",
            Kind::Condition => "Condition",
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Raw,
            2 => Kind::Value,
            3 => Kind::Array,
            4 => Kind::Lock,
            5 => Kind::Event,
            6 => Kind::Pipe,
            7 => Kind::Queue,
            8 => Kind::RLock,
            9 => Kind::Semaphore,
            11 => Kind::Barrier,
            10 => Kind::Condition,
            _ => return None,
        })
    }
}

/// The payload type a segment was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// `size_of::<T>()`.
    pub size: u32,
    /// `align_of::<T>()`.
    pub align: u32,
    /// FNV-1a 64 of `type_name::<T>()`.
    pub hash: u64,
}

impl Fingerprint {
    /// No payload type.
    pub const NONE: Fingerprint = Fingerprint {
        size: 0,
        align: 0,
        hash: 0,
    };

    /// The fingerprint of `T`.
    pub fn of<T>() -> Fingerprint {
        Fingerprint {
            size: std::mem::size_of::<T>() as u32,
            align: std::mem::align_of::<T>() as u32,
            hash: fnv1a(std::any::type_name::<T>().as_bytes()),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fields of a header, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    /// Magic number.
    pub magic: u64,
    /// Format version.
    pub version: u32,
    /// Kind code.
    pub kind: u32,
    /// Payload type.
    pub fingerprint: Fingerprint,
    /// Whole length of the segment.
    pub total_len: u64,
    /// Kind-specific (an Array's element count).
    pub aux: u64,
}

impl HeaderFields {
    /// The fields a creator writes for `kind`.
    pub fn new(kind: Kind, fingerprint: Fingerprint, total_len: u64, aux: u64) -> HeaderFields {
        HeaderFields {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind: kind as u32,
            fingerprint,
            total_len,
            aux,
        }
    }
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a shmkit segment.
    BadMagic,
    /// Another format version.
    Version(u32),
    /// Another kind (raw code).
    Kind(u32),
    /// Another payload type.
    Type,
    /// `total_len` differs from the object's real length.
    Length(u64),
}

/// The header at the start of every segment.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    type_size: AtomicU32,
    type_align: AtomicU32,
    type_hash: AtomicU64,
    total_len: AtomicU64,
    state: AtomicU32,
    creator_pid: AtomicU32,
    creator_start: AtomicU64,
    aux: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Header>() == HEADER_LEN);
    assert!(std::mem::align_of::<Header>() == 64);
};

impl Default for Header {
    fn default() -> Self {
        Header::new()
    }
}

impl Header {
    /// An all-zero header (what a fresh object holds), for models and tests.
    pub fn new() -> Header {
        Header {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            kind: AtomicU32::new(0),
            type_size: AtomicU32::new(0),
            type_align: AtomicU32::new(0),
            type_hash: AtomicU64::new(0),
            total_len: AtomicU64::new(0),
            state: AtomicU32::new(INIT),
            creator_pid: AtomicU32::new(0),
            creator_start: AtomicU64::new(0),
            aux: AtomicU64::new(0),
        }
    }

    /// Step 1 of creation: who is creating.
    pub fn claim(&self, pid: u32, start: u64) {
        self.creator_pid.store(pid, Ordering::Relaxed);
        self.creator_start.store(start, Ordering::Relaxed);
    }

    /// Step 2: the fields. Not visible to openers until [`publish`](Self::publish).
    pub fn write(&self, f: &HeaderFields) {
        self.magic.store(f.magic, Ordering::Relaxed);
        self.version.store(f.version, Ordering::Relaxed);
        self.kind.store(f.kind, Ordering::Relaxed);
        self.type_size.store(f.fingerprint.size, Ordering::Relaxed);
        self.type_align
            .store(f.fingerprint.align, Ordering::Relaxed);
        self.type_hash.store(f.fingerprint.hash, Ordering::Relaxed);
        self.total_len.store(f.total_len, Ordering::Relaxed);
        self.aux.store(f.aux, Ordering::Relaxed);
    }

    /// Step 3, after the payload is initialised: make everything visible.
    // SYNC POINT: pairs with the Acquire load in `read`.
    pub fn publish(&self) {
        self.state.store(READY, Ordering::Release);
    }

    /// The creator's pid and start time (0 if not written yet).
    pub fn creator(&self) -> (u32, u64) {
        (
            self.creator_pid.load(Ordering::Relaxed),
            self.creator_start.load(Ordering::Relaxed),
        )
    }

    /// The fields, once the creator has published them; `None` before.
    pub fn read(&self) -> Option<HeaderFields> {
        // SYNC POINT: pairs with the Release store in `publish`.
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        Some(HeaderFields {
            magic: self.magic.load(Ordering::Relaxed),
            version: self.version.load(Ordering::Relaxed),
            kind: self.kind.load(Ordering::Relaxed),
            fingerprint: Fingerprint {
                size: self.type_size.load(Ordering::Relaxed),
                align: self.type_align.load(Ordering::Relaxed),
                hash: self.type_hash.load(Ordering::Relaxed),
            },
            total_len: self.total_len.load(Ordering::Relaxed),
            aux: self.aux.load(Ordering::Relaxed),
        })
    }

    /// The fields as they are now, published or not, with whether they are
    /// published: for telling a segment whose creator died before it
    /// published (its magic is written, its state is not) from memory that
    /// is not shmkit's. Unpublished fields may be half written.
    ///
    /// ```
    /// use shmkit::raw::header::{Fingerprint, Header, HeaderFields, Kind, MAGIC};
    ///
    /// let h = Header::new();
    /// h.claim(7, 0);
    /// h.write(&HeaderFields::new(Kind::Lock, Fingerprint::NONE, 128, 0));
    /// assert_eq!(h.read_any(), (false, h.read_any().1));
    /// assert_eq!(h.read_any().1.magic, MAGIC);
    /// h.publish();
    /// assert!(h.read_any().0);
    /// ```
    pub fn read_any(&self) -> (bool, HeaderFields) {
        if let Some(f) = self.read() {
            return (true, f);
        }
        (
            false,
            HeaderFields {
                magic: self.magic.load(Ordering::Relaxed),
                version: self.version.load(Ordering::Relaxed),
                kind: self.kind.load(Ordering::Relaxed),
                fingerprint: Fingerprint {
                    size: self.type_size.load(Ordering::Relaxed),
                    align: self.type_align.load(Ordering::Relaxed),
                    hash: self.type_hash.load(Ordering::Relaxed),
                },
                total_len: self.total_len.load(Ordering::Relaxed),
                aux: self.aux.load(Ordering::Relaxed),
            },
        )
    }

    /// Checks published fields against what the opener expects, in the order
    /// that gives the most useful error: magic, version, kind, type, length.
    pub fn check(
        f: &HeaderFields,
        kind: Kind,
        fingerprint: Fingerprint,
        real_len: u64,
    ) -> Result<(), HeaderError> {
        if f.magic != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if f.version != FORMAT_VERSION {
            return Err(HeaderError::Version(f.version));
        }
        if f.kind != kind as u32 {
            return Err(HeaderError::Kind(f.kind));
        }
        if f.fingerprint != fingerprint {
            return Err(HeaderError::Type);
        }
        if f.total_len != real_len {
            return Err(HeaderError::Length(f.total_len));
        }
        Ok(())
    }

    /// The kind's name for a raw code, for messages.
    pub fn kind_name(code: u32) -> String {
        Kind::from_code(code).map_or_else(|| format!("unknown kind {code}"), |k| k.name().into())
    }
}
