//! A semaphore-limited pool of "downloads", each in a process of its own:
//! at most `LIMIT` run at once, however many processes are started. One
//! download process dies holding its permit (it exits without giving it
//! back, as a crash would); its permit comes back to the pool, so the
//! others still all run and the semaphore is whole at the end. Python's
//! `Semaphore` would lose that permit for good.
//!
//! Mirrors the Python idiom:
//!
//! ```python
//! def download(sem, url):
//!     with sem:                 # at most 3 at a time
//!         fetch(url)
//!
//! sem = Semaphore(3)
//! procs = [Process(target=download, args=(sem, u)) for u in urls]
//! for p in procs: p.start()
//! for p in procs: p.join()
//! ```
//!
//! Run it with `cargo run --release --example download_pool`.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::{Result, Role};
use shmkit::{Array, Semaphore, Value};

/// Downloads allowed at once.
const LIMIT: u32 = 3;
/// Downloads to do.
const DOWNLOADS: usize = 10;
/// The download whose process dies holding its permit.
const CRASHER: usize = 4;

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        let r = match role.name() {
            "download" => download(&role),
            "crash" => crash(&role),
            other => Err(format!("unknown role {other}").into()),
        };
        return common::finish(r);
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// The pieces every download process opens: the semaphore, the number of
/// downloads running now and the most seen at once, and the sizes fetched.
struct Shared {
    sem: Semaphore,
    running: Value<u64>,
    peak: Value<u64>,
    sizes: Array<u64>,
}

impl Shared {
    fn open(role: &Role) -> Result<Shared> {
        Ok(Shared {
            sem: Semaphore::open(role.arg(0)?)?,
            running: Value::open(role.arg(1)?)?,
            peak: Value::open(role.arg(2)?)?,
            sizes: Array::open(role.arg(3)?)?,
        })
    }

    /// Counts this download in, and the peak with it.
    fn enter(&self) {
        let now = self.running.fetch_add(1) + 1;
        let mut peak = self.peak.load();
        while now > peak {
            match self.peak.compare_exchange(peak, now) {
                Ok(_) => break,
                Err(seen) => peak = seen,
            }
        }
    }
}

/// One download: waits for a permit, "fetches" (sleeps a little), records
/// the size, gives the permit back (the guard's drop).
fn download(role: &Role) -> Result {
    let s = Shared::open(role)?;
    let i: usize = role.num(4)?;
    let permit = s.sem.acquire()?;
    s.enter();
    std::thread::sleep(Duration::from_millis(if common::quick() { 5 } else { 40 }));
    let size = 1000 + i as u64 * 17;
    s.sizes.set(i, size)?;
    s.running.fetch_sub(1);
    let recovered = permit.recovered();
    drop(permit);
    println!(
        "  download {i} (process {}): {size} bytes{}",
        std::process::id(),
        if recovered {
            ", on a permit recovered from a dead process"
        } else {
            ""
        }
    );
    Ok(())
}

/// A download that dies holding its permit: it exits at once, running no
/// destructor, as a crash (or SIGKILL) would.
fn crash(role: &Role) -> Result {
    let s = Shared::open(role)?;
    let i: usize = role.num(4)?;
    let _permit = s.sem.acquire()?;
    s.enter();
    s.running.fetch_sub(1);
    println!(
        "  download {i} (process {}): crashed holding its permit",
        std::process::id()
    );
    std::process::exit(3);
}

fn parent() -> Result {
    let sem = Semaphore::create(&common::name("slots"), LIMIT)?;
    let running = Value::create(&common::name("running"), 0u64)?;
    let peak = Value::create(&common::name("peak"), 0u64)?;
    let sizes = Array::<u64>::create(&common::name("sizes"), DOWNLOADS, 0)?;
    println!("{DOWNLOADS} downloads, at most {LIMIT} at once:");
    let args = |i: usize| {
        vec![
            sem.name().to_owned(),
            running.name().to_owned(),
            peak.name().to_owned(),
            sizes.name().to_owned(),
            i.to_string(),
        ]
    };
    let a = args(CRASHER);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut crasher = shmkit::process::spawn("crash", &a)?;
    let status = crasher.join()?;
    if status.code() != Some(3) {
        return Err(format!("the crashing download ended with {status}").into());
    }
    let mut workers = Vec::new();
    for i in (0..DOWNLOADS).filter(|&i| i != CRASHER) {
        let a = args(i);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        workers.push(common::spawn("download", &a)?);
    }
    common::join_all(workers)?;
    let done = sizes.to_vec().iter().filter(|&&s| s > 0).count();
    println!("downloads done: {done} of {}", DOWNLOADS - 1);
    println!("peak at once: {} (limit {LIMIT})", peak.load());
    // The crashed download's permit came back when a worker found none
    // free; if the workers never needed it, it comes back now.
    let reclaimed = sem.reclaim();
    println!(
        "permits free at the end: {} of {LIMIT} ({reclaimed} reclaimed from the dead at the end)",
        sem.value()
    );
    Ok(())
}
