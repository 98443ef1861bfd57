//! The raw cores: `#[repr(C)]`, pointer-free state machines that work in any
//! memory — a segment of their own, a region a runtime manages, the heap
//! under loom, or a fuzzer's bytes.
//!
//! Each core offers `required_size()`, `unsafe init_in(ptr, len)` and
//! `unsafe attach(ptr, len)`; the public handles ([`Lock`](crate::Lock),
//! [`Event`](crate::Event), …) are a [`Segment`](crate::Segment) plus one
//! core. Runtime builders can place many cores in one region:
//!
//! ```
//! use shmkit::raw::{RawEvent, RawLock};
//! use shmkit::Segment;
//!
//! let seg = Segment::create_unique(RawLock::required_size() + RawEvent::required_size())?;
//! // SAFETY: the segment stays mapped while `lock` and `event` are used, and
//! // these bytes are used only through these cores.
//! let lock = unsafe { RawLock::init_in(seg.as_ptr(), RawLock::required_size())? };
//! // SAFETY: as above, for the bytes after the lock.
//! let event = unsafe { RawEvent::init_in(seg.as_ptr().add(RawLock::required_size()), RawEvent::required_size())? };
//! let held = lock.lock()?;
//! event.set();
//! drop(held);
//! assert!(event.is_set());
//! # Ok::<(), shmkit::Error>(())
//! ```

pub(crate) mod barrier;
mod condition;
mod event;
#[cfg(not(loom))]
pub(crate) mod exit;
pub mod header;
pub(crate) mod lock;
pub(crate) mod notify;
mod pipe;
mod queue;
mod ring;
mod rlock;
mod semaphore;
pub(crate) mod spin;
pub(crate) mod wait;

#[cfg(loom)]
pub use barrier::model as barrier_model;
pub use barrier::{RawBarrier, MAX_PARTIES};
pub use condition::{CondLock, RawCondition, Waited, COND_RECHECK, COND_SLOTS};
pub use event::RawEvent;
pub use lock::{RawLock, RawLockGuard};
#[cfg(loom)]
pub use pipe::model as pipe_model;
pub use pipe::{Direction, PipeLayout, RawPipe, RawRecvRef, RawSendGrant};
#[cfg(loom)]
pub use queue::model as queue_model;
pub use queue::{GetGrant, Lease, PutGrant, QueueLayout, QueueRole, RawQueue};
pub use rlock::{Acquired, RawRLock, RawRLockGuard};
pub use semaphore::{RawSemaphore, RawSemaphoreGuard, HOLDER_SLOTS, MAX_VALUE};
pub use spin::Spin;
#[cfg(loom)]
pub use wait::model as wait_model;

use crate::error::{Error, Result};

/// Checks that `len` bytes at `ptr` can hold a `T`: aligned and long enough.
pub(crate) fn check_region<T>(ptr: *mut u8, len: usize, what: &str) -> Result<()> {
    let need = std::mem::size_of::<T>();
    if ptr.is_null() || (ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Error::InvalidArgument(format!(
            "{what}: region at {ptr:p} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    if len < need {
        return Err(Error::InvalidArgument(format!(
            "{what}: region of {len} bytes is smaller than the {need} it needs"
        )));
    }
    Ok(())
}
