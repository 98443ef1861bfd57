//! Cross-process primitives in named POSIX shared memory: what Python's
//! `multiprocessing` gives a Python programmer, for Rust programs that run as
//! several processes.
//!
//! | type                 | what it is                                        | Python            |
//! |----------------------|---------------------------------------------------|-------------------|
//! | [`Segment`]          | a named segment of bytes with a checked header    | `SharedMemory`    |
//! | [`Lock`]             | a lock that survives its holder's death           | `Lock`            |
//! | [`RLock`]            | a recursive lock, robust in the same way          | `RLock`           |
//! | [`Barrier`]          | lockstep for N parties; a dead party breaks it    | `Barrier`         |
//! | [`Condition`]        | a condition variable over a Lock/RLock; waiter death safe | `Condition` |
//! | [`Event`]            | a manual-reset event                              | `Event`           |
//! | [`Semaphore`]/[`BoundedSemaphore`] | counting semaphores whose guarded permits survive a dead holder | `Semaphore`, `BoundedSemaphore` |
//! | [`Value<T>`]         | one shared `T: Pod`, with a lock and atomics      | `Value`           |
//! | [`Array<T>`]         | a fixed-length shared `[T]`, with a lock          | `Array`           |
//! | [`Pipe`]/[`PipeEnd`] | a two-ended message channel                       | `Pipe`            |
//! | [`Queue`]            | a bounded MPMC queue of byte messages; leases redeliver a dead worker's job | `Queue`, `JoinableQueue` |
//! | [`WaitSet`]/[`wait`] | wait on many queues, pipes, events, locks and child exits at once | `connection.wait` |
//! | [`process`]          | worker processes: spawn by role, join, kill; they die with the parent | `Process`, `cpu_count` |
//! | [`raw`]              | the cores, to place in memory you manage          | —                 |
//!
//! Every object is created under a name (or [`create_unique`](Lock::create_unique))
//! and opened by that name from other processes. The creating handle removes
//! the name when it drops, unless told to [`keep`](Lock::keep) it; open
//! mappings stay valid.
//!
//! ```
//! use shmkit::{Lock, Value};
//!
//! let counter = Value::<u64>::create_unique(0)?;
//! // In another process: Value::<u64>::open(name)?
//! let other = Value::<u64>::open(counter.name())?;
//! other.fetch_add(5);
//! *counter.lock()? += 1;
//! assert_eq!(counter.load(), 6);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Safety model
//!
//! Shared memory is written by other processes, which may be buggy, hostile
//! or killed at any instruction. shmkit keeps only plain data there
//! (`repr(C)` integers and atomics, offsets instead of pointers), checks every
//! length, index and header field it reads before using it, and reports a bad
//! one as [`Error::Corrupted`] — never undefined behaviour. A lock whose
//! holder died is taken over and the new holder is told
//! ([`LockGuard::owner_died`]). Segments are created with mode 0600 unless
//! asked otherwise, and `open` refuses another user's segment by default.
//! Linux only (futex(2) and `/proc`); every process must share one PID
//! namespace so that liveness checks see each other.
//!
//! # Wire format of serde messages
//!
//! With the `serde` feature, `put_serde`/`get_serde` and
//! `send_serde`/`recv_serde` encode a value with
//! [postcard](https://docs.rs/postcard) 1.x: each message is one postcard
//! encoding of the value, nothing before or after it (no length prefix: the
//! queue or pipe frames the message). postcard's format is specified and
//! stable for its 1.x versions, so processes built with different shmkit
//! versions that share the feature's postcard major version read each
//! other's messages; a change of format would be a major version of
//! shmkit. A message that does not decode is consumed and reported as
//! [`Error::InvalidArgument`]; decoding reads a private copy, never the
//! shared bytes.
#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

mod array;
mod barrier;
mod condition;
mod error;
mod event;
#[cfg(not(loom))]
mod future;
mod handle;
mod lease;
mod lock;
mod pipe;
#[cfg(not(loom))]
pub mod process;
mod queue;
pub mod raw;
mod rlock;
mod segment;
mod semaphore;
#[doc(hidden)]
pub mod sync;
mod sys;
mod typed;
mod value;
mod waitset;

pub use array::{Array, ArrayGuard};
pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard, ConditionLock};
pub use error::{Error, Origin, Result};

/// The `bytemuck` crate, re-exported, so that a `Value`, `Array` or typed
/// message of your own struct needs no dependency of its own. Derive
/// [`Pod`] and [`Zeroable`] through it with `#[bytemuck(crate = ...)]`:
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq, shmkit::Pod, shmkit::Zeroable)]
/// #[bytemuck(crate = "shmkit::bytemuck")]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
/// let p = shmkit::Value::create_unique(Point { x: 1.0, y: 2.0 })?;
/// assert_eq!(p.load(), Point { x: 1.0, y: 2.0 });
/// # Ok::<(), shmkit::Error>(())
/// ```
pub use bytemuck;
/// Plain data that may live in shared memory (bytemuck's trait and derive;
/// see [`bytemuck`](mod@bytemuck)).
pub use bytemuck::Pod;
/// Data for which all-zero bytes are a valid value (bytemuck's trait and
/// derive; see [`bytemuck`](mod@bytemuck)).
pub use bytemuck::Zeroable;
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use pipe::{
    Pipe, PipeBuilder, PipeEnd, PipeIter, PipeReceiver, PipeSender, RecvRef, SendGrant,
    DEFAULT_MAX_MESSAGE, DEFAULT_PIPE_CAPACITY,
};
pub use queue::{Queue, QueueIter, QueueReceiver, QueueSender, QueueTryIter, QueueValues};
pub use raw::{Direction, GetGrant, Lease, PutGrant, Spin, Waited};
pub use rlock::{RLock, RLockGuard};
pub use segment::{
    inspect, inspect_with, list, prune, prune_dry_run, prune_name, unlink, Options, Segment,
    SegmentInfo, DEFAULT_INIT_TIMEOUT, MAX_LEN,
};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use value::{AtomicValue, Value, ValueGuard};
pub use waitset::{wait, Interest, Key, Ready, WaitSet, Waitable};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
