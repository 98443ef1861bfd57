//! For runtime builders: several of shmkit's raw cores — a `RawQueue`, a
//! `RawLock` and a `RawEvent` — placed side by side in one shared-memory
//! region that the program creates and owns itself, with the
//! `shared_memory` crate rather than shmkit. The cores need nothing from
//! shmkit's own segments: any mapping shared by the processes will do.
//!
//! Layout of the region (every core at an offset, no pointers inside):
//!
//! ```text
//! 0          RawQueue   (capacity 16, messages of up to 64 bytes; 64-aligned)
//! L          RawLock    (16 bytes, 8-aligned), L = queue size rounded up to 64
//! L + 16     RawEvent   (4 bytes)
//! L + 64     u64 total, only touched under the lock
//! ```
//!
//! Workers attach the same cores, say "ready" on the queue, wait for the
//! event, add to the total under the lock, and say "done". Python has no
//! direct equivalent; the nearest is placing several `multiprocessing`
//! objects' state in one `shared_memory.SharedMemory` block yourself.
//! Run it with `cargo run --release --example embed`.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::{Result, Role};
use shared_memory::{Shmem, ShmemConf};
use shmkit::raw::{QueueLayout, RawEvent, RawLock, RawQueue};
use shmkit::Error;

const QUEUE: QueueLayout = QueueLayout {
    capacity: 16,
    max_message: 64,
};
/// Additions per worker.
const ADDS: u64 = 10_000;

/// Where each core lives in the region.
struct Layout {
    queue_len: usize,
    lock: usize,
    event: usize,
    total: usize,
    len: usize,
}

impl Layout {
    fn new() -> Result<Layout> {
        let queue_len = RawQueue::required_size(&QUEUE)?;
        let lock = queue_len.next_multiple_of(64);
        Ok(Layout {
            queue_len,
            lock,
            event: lock + RawLock::required_size(),
            total: lock + 64,
            len: lock + 128,
        })
    }
}

/// The cores in one region, as this process sees them.
struct Cores<'a> {
    queue: RawQueue<'a>,
    lock: &'a RawLock,
    event: &'a RawEvent,
    total: *mut u64,
}

impl<'a> Cores<'a> {
    /// Places fresh cores in `shm` (the creator, before anyone else looks).
    ///
    /// # Safety
    /// `shm` must outlive `'a`, nobody may use the region yet, and it must
    /// be used only through these cores afterwards.
    unsafe fn init_in(shm: &'a Shmem, at: &Layout) -> Result<Cores<'a>> {
        let base = shm.as_ptr();
        if shm.len() < at.len {
            return Err(format!("region of {} bytes, need {}", shm.len(), at.len).into());
        }
        // SAFETY: every range below lies inside the region (checked just
        // above), is aligned for its core (the mapping is page-aligned and
        // the offsets are multiples of 64 or 16), is used only through that
        // core, and the caller guarantees the region outlives 'a.
        unsafe {
            let queue = RawQueue::init_in(base, at.queue_len, &QUEUE)?;
            let lock = RawLock::init_in(base.add(at.lock), RawLock::required_size())?;
            let event = RawEvent::init_in(base.add(at.event), RawEvent::required_size())?;
            let total = base.add(at.total).cast::<u64>();
            total.write(0);
            Ok(Cores {
                queue,
                lock,
                event,
                total,
            })
        }
    }

    /// Attaches the cores another process placed in `shm`.
    ///
    /// # Safety
    /// As for [`init_in`](Cores::init_in), except that the region is
    /// already initialised.
    unsafe fn attach(shm: &'a Shmem, at: &Layout) -> Result<Cores<'a>> {
        let base = shm.as_ptr();
        if shm.len() < at.len {
            return Err(format!("region of {} bytes, need {}", shm.len(), at.len).into());
        }
        // SAFETY: as in `init_in`; attach accepts any bytes (a bad queue
        // configuration is an error, not undefined behaviour).
        unsafe {
            Ok(Cores {
                queue: RawQueue::attach(base, at.queue_len)?,
                lock: RawLock::attach(base.add(at.lock), RawLock::required_size())?,
                event: RawEvent::attach(base.add(at.event), RawEvent::required_size())?,
                total: base.add(at.total).cast::<u64>(),
            })
        }
    }

    /// Adds `n` to the total under the lock.
    fn add(&self, n: u64) -> Result {
        let _held = self.lock.lock()?;
        // SAFETY: `total` is inside the region, 8-aligned, and only read or
        // written by a holder of `lock`, which we are until `_held` drops.
        unsafe { self.total.write(self.total.read() + n) };
        Ok(())
    }

    /// The total, read under the lock.
    fn total(&self) -> Result<u64> {
        let _held = self.lock.lock()?;
        // SAFETY: as in `add`.
        Ok(unsafe { self.total.read() })
    }

    /// Puts a message, waiting while the queue is full. (`RawQueue` offers
    /// only non-blocking calls; the blocking ones belong to `Queue`.)
    fn put(&self, msg: &str) -> Result {
        loop {
            match self.queue.try_put(msg.as_bytes()) {
                Err(Error::Full { .. }) => std::thread::sleep(Duration::from_micros(100)),
                r => return Ok(r?),
            }
        }
    }

    /// Takes a message, waiting while the queue is empty (and Ctrl-C is not
    /// pressed).
    fn get(&self) -> Result<String> {
        loop {
            match self.queue.try_get() {
                Err(Error::Empty { .. }) => {
                    common::check()?;
                    std::thread::sleep(Duration::from_micros(100));
                }
                r => return Ok(String::from_utf8(r?)?),
            }
        }
    }
}

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(worker(&role));
    }
    common::on_ctrl_c();
    common::finish(parent())
}

fn worker(role: &Role) -> Result {
    let at = Layout::new()?;
    let shm = ShmemConf::new().os_id(role.arg(0)?).open()?;
    // SAFETY: `shm` outlives `cores` (declared after it, dropped before it)
    // and the region is used only through the cores.
    let cores = unsafe { Cores::attach(&shm, &at)? };
    let me = role.arg(1)?;
    cores.put(&format!("worker {me} (pid {}) ready", std::process::id()))?;
    cores.event.wait();
    for _ in 0..ADDS {
        cores.add(1)?;
    }
    cores.put(&format!("worker {me} added {ADDS}"))?;
    Ok(())
}

fn parent() -> Result {
    let at = Layout::new()?;
    let id = format!("/{}", common::name("region"));
    // The region is the `shared_memory` crate's: it unlinks the name when
    // `shm` (its owner) drops, on every way out of this function.
    let shm = ShmemConf::new().size(at.len).os_id(&id).create()?;
    println!(
        "region {id}: {} bytes from the shared_memory crate, mapped at {:p}",
        shm.len(),
        shm.as_ptr()
    );
    println!(
        "  RawQueue at 0 ({} bytes), RawLock at {}, RawEvent at {}, total at {}",
        at.queue_len, at.lock, at.event, at.total
    );
    // SAFETY: `shm` outlives `cores`, nobody else has the name yet, and the
    // region is used only through the cores.
    let cores = unsafe { Cores::init_in(&shm, &at)? };

    let n = common::workers();
    let workers = common::spawn_n(n, "worker", &[&id])?;
    for _ in 0..n {
        println!("  {}", cores.get()?);
    }
    println!("  all {n} ready; setting the event");
    cores.event.set();
    for _ in 0..n {
        println!("  {}", cores.get()?);
    }
    common::join_all(workers)?;
    let total = cores.total()?;
    println!(
        "total under the RawLock: {total} (expected {})",
        n as u64 * ADDS
    );
    if total != n as u64 * ADDS {
        return Err("lost updates".into());
    }
    Ok(())
}
